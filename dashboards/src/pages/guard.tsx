/**
 * The guard screen, for a wall monitor or a tablet at the gate. A sticky header keeps what
 * matters in view: one full-width state banner (green only when every checkpoint is known to be
 * screening and the screen is live — never while loading, after a load error, during a gateway
 * outage or with a checkpoint down), each checkpoint's status, how many people wait, and robots
 * waiting at a gate for "area is clear". Below it a grid sized to the screen, one card per person
 * to check, escalated and oldest first. A sound policy (repeat / once / off) rings while people
 * wait and sounds an alarm while something is broken; an acknowledgement can be undone for a few
 * seconds before it is sent. Screening is not diagnosis: cards say "secondary check required".
 */
import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import { ApiError } from '../api.js';
import { useApp, useWall } from '../app.js';
import { Chime } from '../chime.js';
import { useI18n, type MessageKey } from '../i18n/index.js';
import {
  banners,
  checkpointKey,
  elapsedParts,
  guardCards,
  isAlarm,
  mergeAlerts,
  OUTCOMES,
  screenState,
  soundDue,
  upsertDevice,
  type Alert,
  type Device,
  type Outcome,
  type ScreeningSummary,
  type ScreenState,
  type SoundPolicy,
} from '../model.js';
import type { Task } from '../fleet.js';

const FLASH_MS = 4000;
/** How long an acknowledgement can be taken back before it is sent. */
export const UNDO_MS = 6000;
/** A robot waiting this long at a gate for "area is clear" is highlighted. */
const LONG_WAIT_MS = 3 * 60_000;
const startOfToday = () => new Date(new Date().setHours(0, 0, 0, 0)).getTime();

const SOUND_KEY = 'checkpoint.sound';
export type SoundSetting = 'repeat-15' | 'repeat-30' | 'repeat-60' | 'once' | 'off';
export const SOUND_SETTINGS: readonly SoundSetting[] = ['repeat-15', 'repeat-30', 'repeat-60', 'once', 'off'];
/** The sound setting remembered under `key` (the dispatch board keeps its own). */
export function loadSoundSetting(key = SOUND_KEY): SoundSetting {
  try {
    const v = localStorage.getItem(key) as SoundSetting | null;
    if (v && SOUND_SETTINGS.includes(v)) return v;
  } catch {
    // default
  }
  return 'repeat-30';
}
export const policyOf = (s: SoundSetting): { policy: SoundPolicy; intervalMs: number } =>
  s.startsWith('repeat-') ? { policy: 'repeat', intervalMs: Number(s.slice(7)) * 1000 } : { policy: s as SoundPolicy, intervalMs: 30_000 };

export type GateTask = Task & { checkpoints: string[] };

/** When the robot started waiting (the history note the fleet writes), else the task's last change. */
export function waitingSince(task: Pick<Task, 'history'>): number {
  for (let i = task.history.length - 1; i >= 0; i--) if (task.history[i]!.reason?.startsWith('waiting at')) return Date.parse(task.history[i]!.at);
  return Date.parse(task.history.at(-1)?.at ?? new Date().toISOString());
}

interface PendingAck {
  outcome: Outcome;
  note: string;
  dueMs: number;
}

export function GuardPage() {
  const { api, live, status } = useApp();
  const { wall, setWall } = useWall();
  const { t, number } = useI18n();
  const [alerts, setAlerts] = useState<Map<string, Alert>>(new Map());
  const [devices, setDevices] = useState<Device[]>([]);
  /** Passes today: screening id → [checkpoint key, ts ms]; a map so REST and live never count one twice. */
  const [passes, setPasses] = useState<Map<string, [string, number]>>(new Map());
  const [gateTasks, setGateTasks] = useState<GateTask[]>([]);
  const [pending, setPending] = useState<Map<string, PendingAck>>(new Map());
  const [ackErrors, setAckErrors] = useState<Map<string, string>>(new Map());
  const [flashing, setFlashing] = useState(false);
  const [loaded, setLoaded] = useState(false);
  const [loadError, setLoadError] = useState<string | null>(null);
  const [now, setNow] = useState(Date.now());
  const [today, setToday] = useState(startOfToday);
  const chime = useMemo(() => {
    const c = new Chime();
    c.muted = loadSoundSetting() === 'off';
    return c;
  }, []);
  const [sound, setSound] = useState<SoundSetting>(() => loadSoundSetting());
  const [needsGesture, setNeedsGesture] = useState(false);
  const known = useRef<Set<string> | null>(null);
  const flashTimer = useRef<ReturnType<typeof setTimeout>>();
  const outageSince = useRef<number | null>(null);
  const lastSound = useRef<number | null>(null);
  const newPerson = useRef(false);
  const lastAlarmKey = useRef('');

  // The latest state lives in refs too: live events arrive between renders.
  const alertsRef = useRef(alerts);
  const passesRef = useRef(passes);
  const pendingRef = useRef(pending);
  pendingRef.current = pending;

  /** New cards (not seen before on this screen) chime and flash; the first load is silent. */
  const applyAlerts = (incoming: Alert[], initialLoad = false) => {
    const next = mergeAlerts(alertsRef.current, incoming);
    const cards = guardCards(next);
    const silent = initialLoad && !known.current;
    known.current ??= new Set();
    if (!silent && cards.some((c) => !known.current!.has(c.id))) {
      newPerson.current = true;
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

  const loadGateTasks = async () => {
    try {
      setGateTasks((await api.get<{ tasks: GateTask[] }>('/api/gate-tasks')).tasks);
    } catch (err) {
      // No fleet on this gateway (404): nothing to confirm.
      if (err instanceof ApiError && err.status === 404) setGateTasks([]);
    }
  };

  const retryTimer = useRef<ReturnType<typeof setTimeout>>();
  // Loads can overlap (the live feed's 'open' and 'resync' both ask for one); only the newest
  // one's answer counts, so a slow, older answer never overwrites what a newer one found.
  const loadGeneration = useRef(0);
  const loadAll = async () => {
    clearTimeout(retryTimer.current);
    const generation = ++loadGeneration.current;
    try {
      const from = new Date(startOfToday()).toISOString();
      const [a, d, s] = await Promise.all([
        api.get<{ alerts: Alert[] }>('/api/alerts?status=open&limit=500'),
        api.get<{ devices: Device[] }>('/api/devices'),
        api.get<{ screenings: ScreeningSummary[] }>(`/api/screenings?decision=pass&from=${encodeURIComponent(from)}&limit=10000`),
      ]);
      if (generation !== loadGeneration.current) return;
      applyAlerts(a.alerts, true);
      setDevices(d.devices);
      addPasses(s.screenings);
      setLoadError(null);
      setLoaded(true);
    } catch (err) {
      if (generation !== loadGeneration.current) return;
      setLoadError((err as Error).message);
      // Keep trying: the banner stays red until the screen knows the state again.
      retryTimer.current = setTimeout(() => void loadAll(), 5000);
    }
    void loadGateTasks();
  };

  useEffect(() => {
    let taskTimer: ReturnType<typeof setTimeout> | undefined;
    const offs = [
      live.on('open', (e) => {
        // After an outage everything is reloaded: what changed meanwhile may have been pruned.
        if (!(e.data as { resumed: boolean }).resumed || outageSince.current !== null) void loadAll();
      }),
      live.on('resync', () => void loadAll()),
      live.on('alert', (e) => applyAlerts([(e.data as { alert: Alert }).alert])),
      live.on('device', (e) => {
        if (e.data) setDevices((ds) => upsertDevice(ds, e.data as Device));
      }),
      live.on('screening', (e) => addPasses([e.data as ScreeningSummary])),
      live.on('task', () => {
        // Coalesced: a driving robot sends many task updates.
        clearTimeout(taskTimer);
        taskTimer = setTimeout(() => void loadGateTasks(), 300);
      }),
    ];
    // Already connected before this page opened (navigation): load now.
    if (live.status === 'live') void loadAll();
    const ticker = setInterval(() => {
      setNow(Date.now());
      setToday(startOfToday());
    }, 1000);
    return () => {
      for (const off of offs) off();
      clearInterval(ticker);
      clearTimeout(taskTimer);
      clearTimeout(retryTimer.current);
      clearTimeout(flashTimer.current);
      chime.close();
    };
  }, [live]);

  useEffect(() => setNeedsGesture(chime.needsGesture), []);

  if (status === 'reconnecting') outageSince.current ??= now;
  else if (status === 'live') outageSince.current = null;

  const pendingIds = new Set(pending.keys());
  const cards = guardCards(alerts);
  const waiting = cards.filter((c) => !pendingIds.has(c.id)).length;
  const problems = banners(devices, alerts);
  const state = screenState({ live: status, loaded, loadError, devices, problems, waiting });
  const alarm = isAlarm(state);

  // Sound: checked every second (the ticker re-renders), so a policy change or a new problem acts at once.
  useEffect(() => {
    const alarmKey = alarm ? `${state.kind}:${problems.map((p) => `${checkpointKey(p)}=${p.problems.join('+')}`).join(',')}` : '';
    const newProblem = alarm && alarmKey !== lastAlarmKey.current;
    lastAlarmKey.current = alarmKey;
    const { policy, intervalMs } = policyOf(sound);
    const due = soundDue({ policy, intervalMs, nowMs: now, lastSoundMs: lastSound.current, newPerson: newPerson.current, newProblem, waiting, alarm });
    newPerson.current = false;
    if (due) {
      lastSound.current = now;
      chime.play(due);
      setNeedsGesture(chime.needsGesture);
    }
  });

  // Acknowledgements whose undo window has passed are sent now.
  useEffect(() => {
    for (const [id, p] of pending) if (p.dueMs <= now) void sendAck(id, p);
  }, [now]);

  const sendAck = async (id: string, p: PendingAck) => {
    if (!pendingRef.current.has(id)) return;
    const drop = () => {
      const next = new Map(pendingRef.current);
      next.delete(id);
      pendingRef.current = next;
      setPending(next);
    };
    drop();
    try {
      applyAlerts([await api.post<Alert>(`/api/alerts/${id}/ack`, { outcome: p.outcome, ...(p.note.trim() ? { note: p.note.trim() } : {}) })]);
    } catch (err) {
      if (err instanceof ApiError && err.status === 409) {
        // Someone else acknowledged it first: show the current state.
        applyAlerts([await api.get<Alert>(`/api/alerts/${id}`)]);
      } else {
        setAckErrors((m) => new Map(m).set(id, (err as Error).message));
      }
    }
  };

  const acknowledge = (id: string, outcome: Outcome, note: string) => {
    const next = new Map(pendingRef.current).set(id, { outcome, note, dueMs: Date.now() + UNDO_MS });
    pendingRef.current = next;
    setPending(next);
    setAckErrors((m) => {
      const n = new Map(m);
      n.delete(id);
      return n;
    });
  };
  const undo = (id: string) => {
    const next = new Map(pendingRef.current);
    next.delete(id);
    pendingRef.current = next;
    setPending(next);
  };

  const confirmAreaClear = async (id: string) => {
    try {
      await api.post(`/api/gate-tasks/${encodeURIComponent(id)}/area-clear`);
    } finally {
      void loadGateTasks();
    }
  };

  const passedBy = new Map<string, number>();
  for (const [key, ts] of passes.values()) if (ts >= today) passedBy.set(key, (passedBy.get(key) ?? 0) + 1);
  const problemBy = new Map(problems.map((b) => [checkpointKey(b), b]));
  const gateKeys = [...new Set([...devices.map(checkpointKey), ...problemBy.keys()])].sort();
  const stale = state.kind === 'outage' || state.kind === 'signed_out' || state.kind === 'load_error';

  return (
    <div class={`guard${flashing ? ' flash' : ''}${wall ? ' guard-wall' : ''}`} data-flash={flashing ? 'on' : 'off'} data-state={state.kind}>
      <div class="guard-head" data-guard-head>
        <StateBanner state={state} outageSince={outageSince.current} />
        <div class="guard-toolbar">
          <h1>{t('guard.title')}</h1>
          <span class="waiting" aria-live="polite">
            {t('guard.waiting', { n: number(waiting) })}
          </span>
          <ul class="gates" aria-label={t('guard.gatesLabel')}>
            {gateKeys.map((key) => {
              const b = problemBy.get(key);
              const cp = key.slice(key.indexOf('/') + 1);
              return b ? (
                <li class="banner" role="alert" key={key} data-checkpoint={key}>
                  <strong>{t('guard.cannotScreen', { checkpoint: cp })}</strong> <span>{b.problems.map((p) => t(`problem.${p}`)).join(' · ')}</span>
                </li>
              ) : (
                <li class="gate-ok" key={key} data-checkpoint={key}>
                  <strong>{cp}</strong> <span>{t('guard.gateScreening')}</span> · <span class="passed">{t('guard.passedToday', { n: number(passedBy.get(key) ?? 0) })}</span>
                </li>
              );
            })}
          </ul>
          <div class="guard-controls">
            {needsGesture && (
              <button type="button" class="secondary" onClick={() => void chime.unlock().then(() => setNeedsGesture(chime.needsGesture))}>
                {t('guard.enableSound')}
              </button>
            )}
            <label class="sound">
              <span>{t('guard.sound')}</span>
              <select
                value={sound}
                onChange={(e) => {
                  const v = e.currentTarget.value as SoundSetting;
                  try {
                    localStorage.setItem(SOUND_KEY, v);
                  } catch {
                    // not remembered
                  }
                  chime.setMuted(v === 'off');
                  setSound(v);
                }}
              >
                {SOUND_SETTINGS.map((s) => (
                  <option key={s} value={s}>
                    {t(`sound.${s}`)}
                  </option>
                ))}
              </select>
            </label>
            <button type="button" class="secondary" aria-pressed={wall} onClick={() => setWall(!wall)}>
              {wall ? t('guard.wallOff') : t('guard.wallOn')}
            </button>
          </div>
        </div>
        {gateTasks.length > 0 && (
          <section class="gate-tasks" aria-label={t('guard.gateTasksLabel')}>
            {gateTasks.map((task) => {
              const since = waitingSince(task);
              const long = now - since >= LONG_WAIT_MS;
              return (
                <div class={`gate-task${long ? ' gate-task-long' : ''}`} key={task.id} data-gate-task={task.id} role={long ? 'alert' : undefined}>
                  <span>
                    {t('guard.robotWaiting', { robot: (task.robotId ?? '').split('/').pop() ?? '', checkpoint: task.checkpoints.join(', '), task: t(`task.${task.type}`) })} ·{' '}
                    <strong>{t('guard.waitingFor', { time: formatElapsed(t, now - since) })}</strong>
                  </span>
                  <button type="button" onClick={() => void confirmAreaClear(task.id)}>
                    {t('dispatch.confirmAreaClear')}
                  </button>
                </div>
              );
            })}
          </section>
        )}
      </div>
      <section aria-label={t('guard.cardsLabel')} class={`cards${stale ? ' cards-stale' : ''}`} data-stale={stale ? 'yes' : 'no'}>
        {cards.map((a) => (
          <AlertCard
            key={a.id}
            alert={a}
            now={now}
            pending={pending.get(a.id) ?? null}
            error={ackErrors.get(a.id) ?? null}
            onAcknowledge={(o, note) => acknowledge(a.id, o, note)}
            onUndo={() => undo(a.id)}
          />
        ))}
      </section>
    </div>
  );
}

type T = ReturnType<typeof useI18n>['t'];
export function formatElapsed(t: T, ms: number): string {
  const { h, min, s } = elapsedParts(ms);
  if (h > 0) return t('time.hMin', { h, min });
  if (min > 0) return t('time.min', { min });
  return t('time.s', { s });
}

const STATE_TONE: Record<ScreenState['kind'], 'ok' | 'alarm' | 'warn' | 'neutral'> = {
  ok: 'ok',
  waiting: 'warn',
  loading: 'neutral',
  no_checkpoints: 'warn',
  not_screening: 'alarm',
  load_error: 'alarm',
  outage: 'alarm',
  signed_out: 'alarm',
};

function StateBanner({ state, outageSince }: { state: ScreenState; outageSince: number | null }) {
  const { t, time, number } = useI18n();
  const tone = STATE_TONE[state.kind];
  let title: string;
  let detail: string | null = null;
  switch (state.kind) {
    case 'ok':
      title = t('guard.normal');
      detail = t('guard.normalDetail');
      break;
    case 'waiting':
      title = t('guard.stateWaiting', { n: number(state.waiting) });
      detail = t('guard.normalDetail');
      break;
    case 'loading':
      title = t('guard.stateLoading');
      detail = t('guard.stateLoadingDetail');
      break;
    case 'no_checkpoints':
      title = t('guard.stateNoCheckpoints');
      break;
    case 'not_screening':
      title = t('guard.stateNotScreening', { checkpoints: state.checkpoints.join(', ') });
      detail = t('guard.stateNotScreeningDetail');
      break;
    case 'load_error':
      title = t('guard.stateLoadError');
      detail = t('common.loadError', { message: state.message });
      break;
    case 'outage':
      title = t('guard.stateOutage');
      detail = t('guard.stateOutageDetail', { since: outageSince === null ? '—' : time(outageSince) });
      break;
    case 'signed_out':
      title = t('session.signedOut');
      detail = t('session.signedOutHint');
      break;
  }
  return (
    <div class={`state-banner state-${tone}`} role={tone === 'alarm' ? 'alert' : 'status'} data-state={state.kind} data-tone={tone}>
      <strong>{title}</strong>
      {detail && <span>{detail}</span>}
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

/** Fields another engineer's edge agent may add: a screening it could not make, and which camera found the person. */
type ScreeningExtras = ScreeningSummary & { detectedBy?: 'visible' | 'thermal' | 'both'; decision: string };

function AlertCard({
  alert,
  now,
  pending,
  error,
  onAcknowledge,
  onUndo,
}: {
  alert: Alert;
  now: number;
  pending: PendingAck | null;
  error: string | null;
  onAcknowledge: (o: Outcome, note: string) => void;
  onUndo: () => void;
}) {
  const { t, time, number } = useI18n();
  const s = alert.screening as ScreeningExtras | null;
  const snap = useSnapshot(s);
  const [note, setNote] = useState('');
  const decision = (s?.decision ?? alert.decision) as string;
  const secondary = decision === 'secondary_check';
  const cannotScreen = decision === 'cannot_screen';
  const titleId = `card-${alert.id}`;
  const waited = now - Date.parse(alert.openedAt);

  return (
    <article
      class={`card ${secondary ? 'card-secondary' : 'card-invalid'}${alert.escalatedAt ? ' card-escalated' : ''}${pending ? ' card-pending' : ''}`}
      aria-labelledby={titleId}
      data-alert-id={alert.id}
      data-pending={pending ? 'yes' : 'no'}
      data-decision={alert.decision ?? undefined}
      data-detected-by={s?.detectedBy}
    >
      <div class="card-head">
        <h2 id={titleId}>{secondary ? t('guard.secondaryCheck') : cannotScreen ? t('guard.cannotScreenCard') : t('guard.screenAgain')}</h2>
        <span class="card-where">
          <strong>{alert.checkpoint}</strong> · <time dateTime={s?.ts ?? alert.openedAt}>{time(s?.ts ?? alert.openedAt)}</time> ·{' '}
          <span class={alert.escalatedAt ? 'card-waited escalated' : 'card-waited'} title={alert.escalatedAt ? t('guard.escalated') : undefined}>
            {t('guard.waitingFor', { time: formatElapsed(t, waited) })}
          </span>
        </span>
      </div>
      <div class="card-body">
        <figure class="snapshot">
          {snap.url ? (
            <img src={snap.url} alt={t('guard.snapshotAlt')} data-snapshot="loaded" />
          ) : (
            <div class="snapshot-placeholder" data-snapshot={snap.state}>
              {snap.state === 'loading' ? t('guard.snapshotLoading') : t('guard.snapshotNone')}
            </div>
          )}
          {snap.url && (
            <figcaption class="thermal-key">
              <span class="spot-key" aria-hidden="true" /> {t('guard.spotKey')} · {t('guard.cooler')} <span class="scale-key" aria-hidden="true" /> {t('guard.warmer')}
            </figcaption>
          )}
        </figure>
        <dl class="facts">
          <dt class="visually-hidden">{t('guard.temperature')}</dt>
          <dd class="temp">
            <span class="temp-value">{s?.temperatureC != null ? `${number(s.temperatureC, 1)} °C` : t('guard.noReading')}</span>
            {s && <span class="threshold">{t('guard.threshold', { t: number(s.thresholdC, 1) })}</span>}
          </dd>
          <dt class="visually-hidden">{t('guard.reasons')}</dt>
          <dd>
            <ul class="reasons">
              {alert.reasons.map((r) => (
                <li key={r}>{t(reasonKey(r))}</li>
              ))}
              {s?.detectedBy === 'thermal' && <li>{t('guard.foundByThermal')}</li>}
              {s?.detectedBy === 'visible' && <li>{t('guard.foundByVisible')}</li>}
            </ul>
          </dd>
          <dt class="visually-hidden">{t('guard.mask')}</dt>
          <dd class="mask">{s ? t(`mask.${s.mask}`) : '—'}</dd>
        </dl>
      </div>
      {pending ? (
        <div class="ack ack-pending" role="status">
          <span>{t('guard.ackPending', { outcome: t(`outcome.${pending.outcome}`), s: Math.max(0, Math.ceil((pending.dueMs - now) / 1000)) })}</span>
          <button type="button" class="secondary undo" onClick={onUndo}>
            {t('guard.undo')}
          </button>
        </div>
      ) : (
        <div class="ack" role="group" aria-label={t('guard.ackLabel')}>
          <div class="outcomes">
            {OUTCOMES.map((o) => (
              <button type="button" key={o} class={`outcome outcome-${o}`} data-outcome={o} onClick={() => onAcknowledge(o, note)}>
                {t(`outcome.${o}`)}
              </button>
            ))}
          </div>
          <label class="note">
            <span>{t('guard.note')}</span>
            <input value={note} maxLength={1000} onInput={(e) => setNote(e.currentTarget.value)} />
          </label>
          {error && (
            <p class="error" role="alert">
              {error}
            </p>
          )}
        </div>
      )}
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
