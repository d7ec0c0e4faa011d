/**
 * The guard screen, for a wall monitor or a tablet at the gate: one card per person who needs a
 * secondary check (newest first), a chime and a flash when one arrives, one-tap acknowledgement
 * with the outcome, a red banner per checkpoint that cannot screen, and otherwise a calm
 * "screening normally" with the people passed today. Screening is not diagnosis: the cards say
 * "secondary check required", never anything medical.
 */
import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import { ApiError } from '../api.js';
import { useApp } from '../app.js';
import { Chime } from '../chime.js';
import { useI18n, type MessageKey } from '../i18n/index.js';
import {
  banners,
  checkpointKey,
  guardCards,
  mergeAlerts,
  OUTCOMES,
  upsertDevice,
  type Alert,
  type Device,
  type Outcome,
  type ScreeningSummary,
} from '../model.js';

const FLASH_MS = 4000;
const startOfToday = () => new Date(new Date().setHours(0, 0, 0, 0)).getTime();

export function GuardPage() {
  const { api, live } = useApp();
  const { t, number } = useI18n();
  const [alerts, setAlerts] = useState<Map<string, Alert>>(new Map());
  const [devices, setDevices] = useState<Device[]>([]);
  /** Passes today: screening id → [checkpoint key, ts ms]; a Set-like map so REST and live never count one twice. */
  const [passes, setPasses] = useState<Map<string, [string, number]>>(new Map());
  const [flashing, setFlashing] = useState(false);
  const [loadError, setLoadError] = useState<string | null>(null);
  const [today, setToday] = useState(startOfToday);
  const chime = useMemo(() => new Chime(), []);
  const [muted, setMuted] = useState(chime.muted);
  const [needsGesture, setNeedsGesture] = useState(false);
  const known = useRef<Set<string> | null>(null);
  const flashTimer = useRef<ReturnType<typeof setTimeout>>();

  // The latest state lives in refs too: live events arrive between renders.
  const alertsRef = useRef(alerts);
  const passesRef = useRef(passes);

  /** New cards (not seen before on this screen) chime and flash; the first load is silent. */
  const applyAlerts = (incoming: Alert[], initialLoad = false) => {
    const next = mergeAlerts(alertsRef.current, incoming);
    const cards = guardCards(next);
    const silent = initialLoad && !known.current;
    known.current ??= new Set();
    if (!silent && cards.some((c) => !known.current!.has(c.id))) {
      chime.play();
      setNeedsGesture(chime.needsGesture);
      setFlashing(true);
      clearTimeout(flashTimer.current);
      flashTimer.current = setTimeout(() => setFlashing(false), FLASH_MS);
    }
    for (const c of cards) known.current.add(c.id);
    alertsRef.current = next;
    setAlerts(next);
  };

  const addPasses = (list: ScreeningSummary[]) => {
    const fresh = list.filter((s) => s.decision === 'pass' && !passesRef.current.has(s.id));
    if (fresh.length === 0) return;
    const next = new Map(passesRef.current);
    for (const s of fresh) next.set(s.id, [checkpointKey(s), Date.parse(s.ts)]);
    passesRef.current = next;
    setPasses(next);
  };

  const loadAll = async () => {
    try {
      const from = new Date(startOfToday()).toISOString();
      const [a, d, s] = await Promise.all([
        api.get<{ alerts: Alert[] }>('/api/alerts?status=open&limit=500'),
        api.get<{ devices: Device[] }>('/api/devices'),
        api.get<{ screenings: ScreeningSummary[] }>(`/api/screenings?decision=pass&from=${encodeURIComponent(from)}&limit=10000`),
      ]);
      applyAlerts(a.alerts, true);
      setDevices(d.devices);
      addPasses(s.screenings);
      setLoadError(null);
    } catch (err) {
      setLoadError((err as Error).message);
    }
  };

  useEffect(() => {
    const offs = [
      live.on('open', (e) => {
        if (!(e.data as { resumed: boolean }).resumed) void loadAll();
      }),
      live.on('resync', () => void loadAll()),
      live.on('alert', (e) => applyAlerts([(e.data as { alert: Alert }).alert])),
      live.on('device', (e) => {
        if (e.data) setDevices((ds) => upsertDevice(ds, e.data as Device));
      }),
      live.on('screening', (e) => addPasses([e.data as ScreeningSummary])),
    ];
    // Already connected before this page opened (navigation): load now.
    if (live.status === 'live') void loadAll();
    const midnight = setInterval(() => setToday(startOfToday()), 60_000);
    return () => {
      for (const off of offs) off();
      clearInterval(midnight);
      clearTimeout(flashTimer.current);
      chime.close();
    };
  }, [live]);

  useEffect(() => setNeedsGesture(chime.needsGesture), []);

  const cards = guardCards(alerts);
  const problems = banners(devices, alerts);
  const passedBy = new Map<string, number>();
  for (const [key, ts] of passes.values()) if (ts >= today) passedBy.set(key, (passedBy.get(key) ?? 0) + 1);
  const broken = new Set(problems.map(checkpointKey));
  const healthy = devices.filter((d) => !broken.has(checkpointKey(d)));

  const acknowledged = (a: Alert) => applyAlerts([a]);

  return (
    <div class={`guard${flashing ? ' flash' : ''}`} data-flash={flashing ? 'on' : 'off'}>
      <div class="guard-toolbar">
        <h1>{t('guard.title')}</h1>
        <span class="waiting" aria-live="polite">
          {t('guard.waiting', { n: number(cards.length) })}
        </span>
        {needsGesture && (
          <button
            type="button"
            class="secondary"
            onClick={() => {
              void chime.unlock().then(() => setNeedsGesture(chime.needsGesture));
            }}
          >
            {t('guard.enableSound')}
          </button>
        )}
        <button
          type="button"
          class="secondary"
          aria-pressed={muted}
          onClick={() => {
            chime.setMuted(!muted);
            setMuted(!muted);
          }}
        >
          {muted ? t('guard.soundOff') : t('guard.soundOn')}
        </button>
      </div>
      {loadError && (
        <p class="error" role="alert">
          {t('common.loadError', { message: loadError })}
        </p>
      )}
      <section aria-label={t('guard.bannersLabel')} class="banners">
        {problems.map((b) => (
          <div class="banner" role="alert" key={checkpointKey(b)} data-checkpoint={checkpointKey(b)}>
            <strong>{t('guard.cannotScreen', { checkpoint: b.checkpoint })}</strong>
            <span>{b.problems.map((p) => t(`problem.${p}`)).join(' · ')}</span>
          </div>
        ))}
      </section>
      <section aria-label={t('guard.cardsLabel')} class="cards">
        {cards.map((a) => (
          <AlertCard key={a.id} alert={a} onAcknowledged={acknowledged} />
        ))}
      </section>
      {cards.length === 0 && (
        <section class="calm" aria-label={t('guard.calmLabel')}>
          {healthy.length > 0 || problems.length === 0 ? <p class="calm-title">{t('guard.normal')}</p> : null}
          <ul>
            {healthy.map((d) => (
              <li key={checkpointKey(d)} data-checkpoint={checkpointKey(d)}>
                <span class="cp">{d.checkpoint}</span>
                <span class="passed">{t('guard.passedToday', { n: number(passedBy.get(checkpointKey(d)) ?? 0) })}</span>
              </li>
            ))}
          </ul>
        </section>
      )}
    </div>
  );
}

function useSnapshot(screening: ScreeningSummary | null): { url: string | null; state: 'none' | 'loading' | 'loaded' | 'missing' } {
  const { api } = useApp();
  const [url, setUrl] = useState<string | null>(null);
  const [state, setState] = useState<'none' | 'loading' | 'loaded' | 'missing'>(screening?.snapshot ? 'loading' : 'none');
  useEffect(() => {
    if (!screening?.snapshot) return;
    let cancelled = false;
    let created: string | null = null;
    // The JPEG is a separate MQTT message and may land a moment after the screening: retry a few times.
    (async () => {
      for (const wait of [0, 500, 1000, 2000, 4000, 8000]) {
        if (wait) await new Promise((r) => setTimeout(r, wait));
        if (cancelled) return;
        try {
          created = await api.blobUrl(`/api/snapshots/${screening.id}`);
          if (cancelled) return URL.revokeObjectURL(created);
          setUrl(created);
          setState('loaded');
          return;
        } catch (err) {
          if (!(err instanceof ApiError && err.status === 404)) break;
        }
      }
      if (!cancelled) setState('missing');
    })();
    return () => {
      cancelled = true;
      if (created) URL.revokeObjectURL(created);
    };
  }, [screening?.id]);
  return { url, state };
}

function AlertCard({ alert, onAcknowledged }: { alert: Alert; onAcknowledged: (a: Alert) => void }) {
  const { api } = useApp();
  const { t, time, number } = useI18n();
  const s = alert.screening;
  const snap = useSnapshot(s);
  const [note, setNote] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const secondary = alert.decision === 'secondary_check';
  const titleId = `card-${alert.id}`;

  const ack = async (outcome: Outcome) => {
    setBusy(true);
    setError(null);
    try {
      onAcknowledged(await api.post<Alert>(`/api/alerts/${alert.id}/ack`, { outcome, ...(note.trim() ? { note: note.trim() } : {}) }));
    } catch (err) {
      if (err instanceof ApiError && err.status === 409) {
        // Someone else acknowledged it first: show the current state.
        onAcknowledged(await api.get<Alert>(`/api/alerts/${alert.id}`));
      } else {
        setError((err as Error).message);
      }
    } finally {
      setBusy(false);
    }
  };

  return (
    <article
      class={`card ${secondary ? 'card-secondary' : 'card-invalid'}`}
      aria-labelledby={titleId}
      data-alert-id={alert.id}
      data-decision={alert.decision ?? undefined}
      data-detected-by={s?.detectedBy}
    >
      <h2 id={titleId}>{secondary ? t('guard.secondaryCheck') : t('guard.screenAgain')}</h2>
      <div class="card-body">
        <figure class="snapshot">
          {snap.url ? (
            <img src={snap.url} alt={t('guard.snapshotAlt')} data-snapshot="loaded" />
          ) : (
            <div class="snapshot-placeholder" data-snapshot={snap.state}>
              {snap.state === 'loading' ? t('guard.snapshotLoading') : t('guard.snapshotNone')}
            </div>
          )}
        </figure>
        <dl class="facts">
          <div class="temp">
            <dt>{t('guard.temperature')}</dt>
            <dd>
              <span class="temp-value">{s?.temperatureC != null ? `${number(s.temperatureC, 1)} °C` : t('guard.noReading')}</span>
              {s && <span class="threshold">{t('guard.threshold', { t: number(s.thresholdC, 1) })}</span>}
            </dd>
          </div>
          <div>
            <dt>{t('guard.mask')}</dt>
            <dd>{s ? t(`mask.${s.mask}`) : '—'}</dd>
          </div>
          <div>
            <dt>{t('guard.reasons')}</dt>
            <dd>
              <ul class="reasons">
                {alert.reasons.map((r) => (
                  <li key={r}>{t(reasonKey(r))}</li>
                ))}
              </ul>
            </dd>
          </div>
          <div>
            <dt>{t('guard.where')}</dt>
            <dd>
              {alert.checkpoint} · <time dateTime={s?.ts ?? alert.openedAt}>{time(s?.ts ?? alert.openedAt)}</time>
              {alert.escalatedAt && <span class="escalated"> · {t('guard.escalated')}</span>}
            </dd>
          </div>
        </dl>
      </div>
      <div class="ack" role="group" aria-label={t('guard.ackLabel')}>
        <label class="note">
          <span>{t('guard.note')}</span>
          <input value={note} maxLength={1000} onInput={(e) => setNote(e.currentTarget.value)} />
        </label>
        <div class="outcomes">
          {OUTCOMES.map((o) => (
            <button type="button" key={o} disabled={busy} class={`outcome outcome-${o}`} data-outcome={o} onClick={() => void ack(o)}>
              {t(`outcome.${o}`)}
            </button>
          ))}
        </div>
        {error && (
          <p class="error" role="alert">
            {error}
          </p>
        )}
      </div>
    </article>
  );
}

const REASON_KEYS = new Set([
  'elevated_temperature',
  'no_mask',
  'multiple_faces',
  'face_too_small',
  'no_reference',
  'unstable_reference',
  'too_cold_retry',
  'too_hot_ambient',
  'no_thermal_face',
  'too_few_frames',
]);
function reasonKey(r: string): MessageKey {
  return (REASON_KEYS.has(r) ? `reason.${r}` : 'reason.other') as MessageKey;
}
