/**
 * Devices (engineers): every edge agent with online state, last seen, versions, model and its
 * sha256, fps, queue depth and CPU temperature (sampled here from /api/devices while the page is
 * open), median stage times and memory, blackbody state with its last reading, calibration;
 * robots when the gateway has a fleet; and commands to an agent (threshold, ping, reference
 * check) with the agent's ack.
 */
import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import { ApiError } from '../api.js';
import { useApp } from '../app.js';
import { Legend, Lines } from '../components/charts.js';
import { fleetApi, type Robot } from '../fleet.js';
import { useI18n } from '../i18n/index.js';
import { checkpointKey, upsertDevice, type Device } from '../model.js';

const POLL_MS = 5000;
const KEEP_SAMPLES = 120;

interface Sample {
  ts: string;
  fps: number;
  queueDepth: number;
  cpuTempC: number | null;
}

export function DevicesPage() {
  const { api, live } = useApp();
  const { t } = useI18n();
  const [devices, setDevices] = useState<Device[]>([]);
  const [robots, setRobots] = useState<Robot[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const samples = useRef(new Map<string, Sample[]>());

  const record = (ds: Device[]) => {
    for (const d of ds) {
      if (!d.telemetry) continue;
      const key = checkpointKey(d);
      const list = samples.current.get(key) ?? [];
      if (list.at(-1)?.ts !== d.telemetry.ts) list.push(d.telemetry);
      samples.current.set(key, list.slice(-KEEP_SAMPLES));
    }
  };

  useEffect(() => {
    let stopped = false;
    const poll = async () => {
      try {
        const { devices: ds } = await api.get<{ devices: Device[] }>('/api/devices');
        if (stopped) return;
        record(ds);
        setDevices(ds);
        setError(null);
      } catch (err) {
        setError((err as Error).message);
      }
      fleetApi(api)
        .robots()
        .then((r) => !stopped && setRobots(r))
        .catch(() => !stopped && setRobots(null));
    };
    void poll();
    const timer = setInterval(() => void poll(), POLL_MS);
    const off = live.on('device', (e) => {
      if (e.data) setDevices((ds) => upsertDevice(ds, e.data as Device));
    });
    return () => {
      stopped = true;
      clearInterval(timer);
      off();
    };
  }, [api]);

  return (
    <div class="devices">
      <h1>{t('devices.title')}</h1>
      {error && (
        <p class="error" role="alert">
          {t('common.loadError', { message: error })}
        </p>
      )}
      {devices.length === 0 ? <p>{t('devices.none')}</p> : devices.map((d) => <DeviceCard key={checkpointKey(d)} device={d} samples={samples.current.get(checkpointKey(d)) ?? []} />)}
      {devices.length > 0 && <CommandForm devices={devices} />}
      {robots && robots.length > 0 && (
        <section aria-labelledby="robots-dev-h">
          <h2 id="robots-dev-h">{t('dispatch.robots')}</h2>
          <ul class="robot-list">
            {robots.map((r) => (
              <li key={r.id}>
                {r.manufacturer} {r.serialNumber} · {t(`connection.${r.connection}`)} · {r.battery === null ? '—' : `${Math.round(r.battery)} %`}
                {r.errors.length > 0 && ` · ${t('dispatch.errors', { n: r.errors.length })}`}
              </li>
            ))}
          </ul>
        </section>
      )}
    </div>
  );
}

function DeviceCard({ device: d, samples }: { device: Device; samples: Sample[] }) {
  const { t, dateTime, number } = useI18n();
  const headingId = `dev-${d.site}-${d.checkpoint}`;
  const labels = samples.map((s) => s.ts.slice(11, 19));
  const bb = d.telemetry?.blackbody ?? null;
  const stages = Object.entries(d.telemetry?.stages ?? {});
  return (
    <section class={`device device-${d.status}`} aria-labelledby={headingId} data-device={checkpointKey(d)}>
      <h2 id={headingId}>
        {d.site} / {d.checkpoint} <span class={`pill pill-${d.status}`}>{t(`deviceStatus.${d.status}`)}</span>
      </h2>
      <dl class="device-facts">
        <div>
          <dt>{t('devices.lastSeen')}</dt>
          <dd>{dateTime(d.lastSeen)}</dd>
        </div>
        <div>
          <dt>{t('devices.versions')}</dt>
          <dd>{d.versions ? Object.entries(d.versions).map(([k, v]) => `${k} ${v}`).join(', ') : '—'}</dd>
        </div>
        <div>
          <dt>{t('devices.model')}</dt>
          <dd>
            {d.model ? (
              <>
                {d.model.name}{' '}
                <code class="sha" title={d.model.sha256}>
                  sha256 {d.model.sha256.slice(0, 12)}…
                </code>
              </>
            ) : (
              '—'
            )}
          </dd>
        </div>
        <div>
          <dt>{t('devices.fps')}</dt>
          <dd>{d.telemetry ? number(d.telemetry.fps, 1) : '—'}</dd>
        </div>
        <div>
          <dt>{t('devices.queue')}</dt>
          <dd>{d.telemetry ? number(d.telemetry.queueDepth) : '—'}</dd>
        </div>
        <div>
          <dt>{t('devices.cpuTemp')}</dt>
          <dd>{d.telemetry?.cpuTempC != null ? `${number(d.telemetry.cpuTempC, 1)} °C` : '—'}</dd>
        </div>
        <div>
          <dt>{t('devices.stages')}</dt>
          <dd class="stage-times">{stages.length ? stages.map(([k, ms]) => `${k} ${number(ms, 1)}`).join(' · ') + ' ms' : '—'}</dd>
        </div>
        <div>
          <dt>{t('devices.memory')}</dt>
          <dd>{d.telemetry?.rssMb != null ? `${number(d.telemetry.rssMb, 0)} MB` : '—'}</dd>
        </div>
        <div>
          <dt>{t('devices.blackbody')}</dt>
          <dd>
            {d.calibration ? t(`reference.${d.calibration.reference}`) : '—'}
            {bb && <span class="bb-reading"> · {t('devices.blackbodyReading', { measured: bb.measuredC === null ? '—' : number(bb.measuredC, 2), set: number(bb.setC, 1) })}</span>}
          </dd>
        </div>
        <div>
          <dt>{t('devices.mode')}</dt>
          <dd>{d.calibration ? `${t(`mode.${d.calibration.mode}`)} · ${t('guard.threshold', { t: number(d.calibration.thresholdC, 1) })}` : '—'}</dd>
        </div>
        <div>
          <dt>{t('devices.cameras')}</dt>
          <dd>
            {d.sources
              ? [
                  `${t('devices.thermal')}: ${t(`source.${d.sources.thermal.status}`)}`,
                  d.sources.visible ? `${t('devices.visible')}: ${t(`source.${d.sources.visible.status}`)}` : null,
                ]
                  .filter(Boolean)
                  .join(' · ')
              : '—'}
          </dd>
        </div>
      </dl>
      {samples.length > 1 && (
        <div class="telemetry-chart">
          <Lines
            label={t('devices.telemetryChart', { checkpoint: d.checkpoint })}
            labels={labels}
            min={0}
            digits={0}
            series={[
              { name: t('devices.fps'), className: 's-fps', values: samples.map((s) => s.fps) },
              { name: t('devices.queue'), className: 's-queue', values: samples.map((s) => s.queueDepth) },
              { name: t('devices.cpuTemp'), className: 's-cpu', values: samples.map((s) => s.cpuTempC) },
            ]}
          />
          <Legend
            series={[
              { name: t('devices.fps'), className: 's-fps' },
              { name: t('devices.queue'), className: 's-queue' },
              { name: t('devices.cpuTemp'), className: 's-cpu' },
            ]}
          />
        </div>
      )}
    </section>
  );
}

type CommandKind = 'threshold' | 'ping' | 'check-reference';
type Result = { kind: 'ok'; id: string; detail?: string } | { kind: 'refused'; id: string; error: string } | { kind: 'timeout' } | { kind: 'error'; message: string };

function CommandForm({ devices }: { devices: Device[] }) {
  const { api } = useApp();
  const { t } = useI18n();
  const [target, setTarget] = useState(checkpointKey(devices[0]!));
  const [kind, setKind] = useState<CommandKind>('threshold');
  const current = devices.find((d) => checkpointKey(d) === target);
  const [threshold, setThreshold] = useState(String(current?.calibration?.thresholdC ?? 37.3));
  const [busy, setBusy] = useState(false);
  const [result, setResult] = useState<Result | null>(null);
  const body = useMemo(() => {
    if (kind === 'threshold') return { type: 'set-config', config: { screening: { thresholdC: Math.round(Number(threshold) * 10) / 10 } } };
    if (kind === 'ping') return { type: 'ping' };
    return { type: 'calibrate', action: 'check-reference' };
  }, [kind, threshold]);

  const send = async (e: Event) => {
    e.preventDefault();
    const [site, checkpoint] = target.split('/') as [string, string];
    setBusy(true);
    setResult(null);
    try {
      const r = await api.post<{ command: { id: string }; ack: { ok: boolean; error?: string; detail?: Record<string, unknown> } }>(`/api/checkpoints/${site}/${checkpoint}/cmd`, body);
      setResult(r.ack.ok ? { kind: 'ok', id: r.command.id, ...(r.ack.detail ? { detail: JSON.stringify(r.ack.detail) } : {}) } : { kind: 'refused', id: r.command.id, error: r.ack.error ?? '' });
    } catch (err) {
      setResult(err instanceof ApiError && err.status === 504 ? { kind: 'timeout' } : { kind: 'error', message: (err as Error).message });
    } finally {
      setBusy(false);
    }
  };

  return (
    <section aria-labelledby="cmd-h" class="command">
      <h2 id="cmd-h">{t('devices.command')}</h2>
      <form onSubmit={(e) => void send(e)}>
        <div class="field">
          <label htmlFor="cmd-target">{t('devices.target')}</label>
          <select id="cmd-target" value={target} onChange={(e) => setTarget(e.currentTarget.value)}>
            {devices.map((d) => (
              <option key={checkpointKey(d)} value={checkpointKey(d)}>
                {d.site} / {d.checkpoint}
              </option>
            ))}
          </select>
        </div>
        <div class="field">
          <label htmlFor="cmd-type">{t('devices.commandType')}</label>
          <select id="cmd-type" value={kind} onChange={(e) => setKind(e.currentTarget.value as CommandKind)}>
            <option value="threshold">{t('devices.cmd.threshold')}</option>
            <option value="ping">{t('devices.cmd.ping')}</option>
            <option value="check-reference">{t('devices.cmd.checkReference')}</option>
          </select>
        </div>
        {kind === 'threshold' && (
          <label>
            <span>{t('devices.thresholdC')}</span>
            <input type="number" min={30} max={45} step={0.1} required value={threshold} onInput={(e) => setThreshold(e.currentTarget.value)} />
          </label>
        )}
        <button type="submit" disabled={busy}>
          {busy ? t('devices.sending') : t('devices.send')}
        </button>
      </form>
      <div role="status" aria-live="polite" class="ack-result" data-ack={result?.kind ?? 'none'}>
        {result?.kind === 'ok' && t('devices.ackOk', { id: result.id })}
        {result?.kind === 'refused' && t('devices.ackRefused', { id: result.id, error: result.error })}
        {result?.kind === 'timeout' && t('devices.ackTimeout')}
        {result?.kind === 'error' && t('common.loadError', { message: result.message })}
      </div>
    </section>
  );
}
