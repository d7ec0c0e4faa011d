/**
 * Statistics: people screened per hour per checkpoint (by decision), the secondary-check rate,
 * temperature percentiles per hour (GET /api/stats/checkpoints, from the time series) and the
 * distribution of measured temperatures over the same period (GET /api/screenings).
 */
import { useEffect, useState } from 'preact/hooks';
import { useApp } from '../app.js';
import { Legend, Lines, StackedBars } from '../components/charts.js';
import { useI18n } from '../i18n/index.js';
import { checkpointKey, fillBuckets, histogram, totals, type CheckpointStats, type ScreeningSummary } from '../model.js';

const RANGES = { '24h': { hours: 24, interval: '1h', intervalMs: 3_600_000 }, '7d': { hours: 24 * 7, interval: '6h', intervalMs: 6 * 3_600_000 } } as const;
type Range = keyof typeof RANGES;

export function StatsPage() {
  const { api } = useApp();
  const { t, number, dateTime, time } = useI18n();
  const [range, setRange] = useState<Range>('24h');
  const [stats, setStats] = useState<CheckpointStats[] | null>(null);
  const [temps, setTemps] = useState<number[]>([]);
  const [thresholdC, setThresholdC] = useState<number | null>(null);
  const [error, setError] = useState<string | null>(null);

  useEffect(() => {
    let stale = false;
    const { hours, interval, intervalMs } = RANGES[range];
    const toMs = Date.now();
    const from = new Date(toMs - hours * 3_600_000).toISOString();
    Promise.all([
      api.get<{ checkpoints: CheckpointStats[] }>(`/api/stats/checkpoints?from=${encodeURIComponent(from)}&interval=${interval}`),
      api.get<{ screenings: ScreeningSummary[] }>(`/api/screenings?from=${encodeURIComponent(from)}&limit=10000`),
    ])
      .then(([s, sc]) => {
        if (stale) return;
        setStats(s.checkpoints.map((c) => ({ ...c, buckets: fillBuckets(c.buckets, Date.parse(from), toMs, intervalMs) })));
        setTemps(sc.screenings.map((x) => x.temperatureC).filter((v): v is number => v !== null));
        // The threshold in force: the one the newest screening was judged against.
        setThresholdC(sc.screenings.reduce<ScreeningSummary | null>((a, x) => (!a || x.ts > a.ts ? x : a), null)?.thresholdC ?? null);
        setError(null);
      })
      .catch((err: Error) => !stale && setError(err.message));
    return () => {
      stale = true;
    };
  }, [range]);

  const decisionSeries = [
    { name: t('decision.pass'), className: 's-pass' },
    { name: t('decision.secondary_check'), className: 's-secondary' },
    { name: t('decision.invalid'), className: 's-invalid' },
    { name: t('decision.cannot_screen'), className: 's-cannot-screen' },
  ];
  const bins = histogram(temps, 34, 40, 0.2);

  return (
    <div class="stats">
      <h1>{t('stats.title')}</h1>
      <label>
        <span>{t('stats.range')}</span>{' '}
        <select value={range} onChange={(e) => setRange(e.currentTarget.value as Range)}>
          <option value="24h">{t('stats.last24h')}</option>
          <option value="7d">{t('stats.last7d')}</option>
        </select>
      </label>
      {error && (
        <p class="error" role="alert">
          {t('common.loadError', { message: error })}
        </p>
      )}
      {stats === null && !error && <p>{t('common.loading')}</p>}
      {stats !== null && stats.length === 0 && <p>{t('stats.noData')}</p>}
      {stats !== null && stats.length > 0 && (
        <>
          <section aria-labelledby="rate-h">
            <h2 id="rate-h">{t('stats.secondaryRate')}</h2>
            <table class="rates">
              <thead>
                <tr>
                  <th scope="col">{t('stats.checkpoint')}</th>
                  <th scope="col">{t('stats.screened')}</th>
                  <th scope="col">{t('decision.secondary_check')}</th>
                  <th scope="col">{t('decision.invalid')}</th>
                  <th scope="col">{t('decision.cannot_screen')}</th>
                  <th scope="col">{t('stats.rate')}</th>
                </tr>
              </thead>
              <tbody>
                {stats.map((s) => {
                  const x = totals(s);
                  return (
                    <tr key={checkpointKey(s)} data-checkpoint={checkpointKey(s)}>
                      <th scope="row">{s.checkpoint}</th>
                      <td>{number(x.screened)}</td>
                      <td>{number(x.secondary)}</td>
                      <td>{number(x.invalid)}</td>
                      <td>{number(x.cannotScreen)}</td>
                      <td>{x.rate === null ? '—' : `${number(x.rate * 100, 1)} %`}</td>
                    </tr>
                  );
                })}
              </tbody>
            </table>
          </section>
          {stats.map((s) => (
            <section key={checkpointKey(s)} aria-labelledby={`per-${s.checkpoint}`}>
              <h2 id={`per-${s.checkpoint}`}>{t('stats.perHour', { checkpoint: s.checkpoint })}</h2>
              <StackedBars
                label={t('stats.perHour', { checkpoint: s.checkpoint })}
                labels={s.buckets.map((b) => (range === '7d' ? dateTime(b.start) : time(b.start).slice(0, 5)))}
                series={[
                  { ...decisionSeries[0]!, values: s.buckets.map((b) => b.counts.pass) },
                  { ...decisionSeries[1]!, values: s.buckets.map((b) => b.counts.secondary_check) },
                  { ...decisionSeries[2]!, values: s.buckets.map((b) => b.counts.invalid) },
                  { ...decisionSeries[3]!, values: s.buckets.map((b) => b.counts.cannot_screen ?? 0) },
                ]}
              />
              <Legend series={decisionSeries} />
              <h3>{t('stats.percentiles')}</h3>
              <Lines
                label={t('stats.percentiles')}
                labels={s.buckets.map((b) => (range === '7d' ? dateTime(b.start) : time(b.start).slice(0, 5)))}
                digits={1}
                unit="°C"
                {...(thresholdC !== null ? { threshold: { value: thresholdC, label: t('stats.thresholdLine', { t: number(thresholdC, 1) }) } } : {})}
                series={[
                  { name: 'p50', className: 's-p50', values: s.buckets.map((b) => b.temperatureC.p50) },
                  { name: 'p90', className: 's-p90', values: s.buckets.map((b) => b.temperatureC.p90) },
                  { name: 'p99', className: 's-p99', values: s.buckets.map((b) => b.temperatureC.p99) },
                ]}
              />
              <Legend
                series={[
                  { name: 'p50', className: 's-p50' },
                  { name: 'p90', className: 's-p90' },
                  { name: 'p99', className: 's-p99' },
                ]}
              />
            </section>
          ))}
          <section aria-labelledby="dist-h">
            <h2 id="dist-h">{t('stats.distribution', { n: number(temps.length) })}</h2>
            <StackedBars
              label={t('stats.distribution', { n: number(temps.length) })}
              labels={bins.map((b) => number(b.start, 1))}
              series={[{ name: t('stats.people'), className: 's-temp', values: bins.map((b) => b.count) }]}
            />
          </section>
        </>
      )}
    </div>
  );
}
