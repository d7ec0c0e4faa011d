/**
 * The gateway's shapes as the dashboards read them, and the guard screen's state as pure
 * functions: merging alerts from REST and the live feed (by id, never twice), which cards to
 * show, and which checkpoints cannot screen.
 */
/** `cannot_screen`: the agent could not screen this person at all (a reason says why): a manual check. */
export type Decision = 'pass' | 'secondary_check' | 'invalid' | 'cannot_screen';
export type MaskState = 'mask' | 'no_mask' | 'unknown';
export type AlertStatus = 'open' | 'acknowledged' | 'closed';
export type Outcome = 'cleared' | 'referred' | 'false_alarm' | 'retest';
export const OUTCOMES: readonly Outcome[] = ['cleared', 'referred', 'false_alarm', 'retest'];

export interface ScreeningSummary {
  id: string;
  ts: string;
  site: string;
  checkpoint: string;
  decision: Decision;
  reasons: string[];
  mask: MaskState;
  temperatureC: number | null;
  thresholdC: number;
  mode: 'absolute' | 'relative';
  snapshot: boolean;
  /** Which camera found the face (newer agents); `thermal`: the visible model missed it. */
  detectedBy?: 'visible' | 'thermal' | 'both';
}

export interface Alert {
  id: string;
  kind: 'screening' | 'invalid_storm' | 'checkpoint_offline' | 'checkpoint_fault';
  severity: string;
  status: AlertStatus;
  site: string;
  checkpoint: string;
  screeningId: string | null;
  decision: Decision | null;
  reasons: string[];
  count: number;
  openedAt: string;
  lastAt: string;
  resolvedAt: string | null;
  escalatedAt: string | null;
  acknowledgement: { by: string; at: string; outcome: Outcome; note: string | null } | null;
  closedAt: string | null;
  groupedInto: string | null;
  screening: ScreeningSummary | null;
}

export type ReferenceStatus = 'ok' | 'not_configured' | 'not_seen' | 'unstable' | 'stale';

export interface SourceStatus {
  kind: string;
  status: 'ok' | 'starting' | 'error' | 'stopped';
  error?: string;
}

export interface Device {
  site: string;
  checkpoint: string;
  status: 'online' | 'offline' | 'unknown';
  lastSeen: string;
  stateAt: string | null;
  versions: Record<string, string> | null;
  model: { name: string; sha256: string } | null;
  sources: { thermal: SourceStatus; visible: SourceStatus | null } | null;
  calibration: { reference: ReferenceStatus; mode: 'absolute' | 'relative'; thresholdC: number; homography: boolean } | null;
  telemetry: {
    ts: string;
    fps: number;
    /** Median stage times over the agent's reporting interval, ms (decode, inference, thermometry, ...). */
    stages: Record<string, number>;
    queueDepth: number;
    cpuTempC: number | null;
    ambientC: number | null;
    blackbody: { setC: number; measuredC: number | null; status: ReferenceStatus } | null;
    rssMb: number | null;
  } | null;
}

export const checkpointKey = (x: { site: string; checkpoint: string }) => `${x.site}/${x.checkpoint}`;

const STATUS_RANK: Record<AlertStatus, number> = { open: 0, acknowledged: 1, closed: 2 };

/**
 * Which of two versions of one alert is newer. REST answers and live events can cross, so the
 * later state wins: status only moves forward (open → acknowledged → closed), then lastAt, then
 * a resolution; on a tie the one that arrived last.
 */
export function newerAlert(a: Alert, b: Alert): Alert {
  if (STATUS_RANK[a.status] !== STATUS_RANK[b.status]) return STATUS_RANK[a.status] > STATUS_RANK[b.status] ? a : b;
  const at = Date.parse(a.lastAt) - Date.parse(b.lastAt);
  if (at !== 0) return at > 0 ? a : b;
  if ((a.resolvedAt === null) !== (b.resolvedAt === null)) return a.resolvedAt !== null ? a : b;
  if ((a.escalatedAt === null) !== (b.escalatedAt === null)) return a.escalatedAt !== null ? a : b;
  return b;
}

/** Merge alerts into a map by id (pure: returns a new map when something changed). */
export function mergeAlerts(current: ReadonlyMap<string, Alert>, incoming: readonly Alert[]): Map<string, Alert> {
  const next = new Map(current);
  for (const a of incoming) {
    const had = next.get(a.id);
    next.set(a.id, had ? newerAlert(had, a) : a);
  }
  return next;
}

/**
 * Cards for the guard: open screening alerts (people to check). Escalated first (they waited too
 * long), then oldest first: the person who has waited longest is at the top-left of the wall.
 */
export function guardCards(alerts: ReadonlyMap<string, Alert>): Alert[] {
  return [...alerts.values()]
    .filter((a) => a.kind === 'screening' && a.status === 'open' && a.decision !== null && a.decision !== 'pass')
    .sort(
      (a, b) =>
        Number(b.escalatedAt !== null) - Number(a.escalatedAt !== null) ||
        Date.parse(a.openedAt) - Date.parse(b.openedAt) ||
        (a.id < b.id ? -1 : a.id > b.id ? 1 : 0),
    );
}

export type ProblemKey = 'unknown' | 'offline' | 'thermal_error' | 'visible_error' | 'no_blackbody' | 'invalid_storm';

export interface Banner {
  site: string;
  checkpoint: string;
  problems: ProblemKey[];
}

/** Why a checkpoint cannot screen right now, from its device state (the gateway's fault rules). */
export function deviceProblems(d: Device): ProblemKey[] {
  if (d.status === 'offline') return ['offline'];
  // Never reported, or the gateway cannot tell: not known to be screening.
  if (d.status === 'unknown' || !d.sources) return ['unknown'];
  const p: ProblemKey[] = [];
  if (d.sources?.thermal.status === 'error') p.push('thermal_error');
  if (d.sources?.visible?.status === 'error') p.push('visible_error');
  if (d.calibration?.reference === 'not_seen' && d.calibration.mode === 'absolute') p.push('no_blackbody');
  return p;
}

/** One red banner per checkpoint that cannot screen (device state, plus open invalid-screening storms). */
export function banners(devices: readonly Device[], alerts: ReadonlyMap<string, Alert>): Banner[] {
  const byKey = new Map<string, Banner>();
  const add = (site: string, checkpoint: string, problem: ProblemKey) => {
    const key = checkpointKey({ site, checkpoint });
    const b = byKey.get(key) ?? { site, checkpoint, problems: [] };
    if (!b.problems.includes(problem)) b.problems.push(problem);
    byKey.set(key, b);
  };
  for (const d of devices) for (const p of deviceProblems(d)) add(d.site, d.checkpoint, p);
  for (const a of alerts.values()) if (a.kind === 'invalid_storm' && a.status !== 'closed' && a.resolvedAt === null) add(a.site, a.checkpoint, 'invalid_storm');
  return [...byKey.values()].sort((a, b) => checkpointKey(a).localeCompare(checkpointKey(b)));
}

// --- the guard screen's one state banner ----------------------------------------------------

export type LiveState = 'connecting' | 'live' | 'reconnecting' | 'unauthorized';

/**
 * What the full-width banner says, most serious first. It is green ("ok") only when the screen
 * has loaded, is live, knows at least one checkpoint and every checkpoint is known to be
 * screening, and nobody waits: a guard never sees an all-clear the screen does not know is true.
 */
export type ScreenState =
  | { kind: 'signed_out' }
  | { kind: 'outage' }
  | { kind: 'load_error'; message: string }
  | { kind: 'loading' }
  | { kind: 'not_screening'; checkpoints: string[]; waiting: number }
  | { kind: 'no_checkpoints'; waiting: number }
  | { kind: 'waiting'; waiting: number }
  | { kind: 'ok' };

export function screenState(input: { live: LiveState; loaded: boolean; loadError: string | null; devices: readonly Device[]; problems: readonly Banner[]; waiting: number }): ScreenState {
  const { live, loaded, loadError, devices, problems, waiting } = input;
  if (live === 'unauthorized') return { kind: 'signed_out' };
  if (live === 'reconnecting') return { kind: 'outage' };
  if (loadError !== null) return { kind: 'load_error', message: loadError };
  if (!loaded || live !== 'live') return { kind: 'loading' };
  if (problems.length > 0) return { kind: 'not_screening', checkpoints: problems.map((p) => p.checkpoint), waiting };
  if (devices.length === 0) return { kind: 'no_checkpoints', waiting };
  if (waiting > 0) return { kind: 'waiting', waiting };
  return { kind: 'ok' };
}

/** Whether a state needs the alarm tone (something stopped working), not the chime. */
export const isAlarm = (s: ScreenState) => s.kind === 'signed_out' || s.kind === 'outage' || s.kind === 'load_error' || s.kind === 'not_screening';

export type SoundPolicy = 'repeat' | 'once' | 'off';

/**
 * Which sound to play now, if any (pure; the page asks every second). A new person chimes at
 * once; with `repeat`, the chime comes back every `intervalMs` while anyone waits, and the alarm
 * tone every `intervalMs` while something is broken (a new problem sounds at once). `once` sounds
 * only on something new; `off` never.
 */
export function soundDue(input: {
  policy: SoundPolicy;
  intervalMs: number;
  nowMs: number;
  lastSoundMs: number | null;
  newPerson: boolean;
  newProblem: boolean;
  waiting: number;
  alarm: boolean;
}): 'alarm' | 'chime' | null {
  const { policy, intervalMs, nowMs, lastSoundMs, newPerson, newProblem, waiting, alarm } = input;
  if (policy === 'off') return null;
  if (newProblem) return 'alarm';
  if (newPerson) return 'chime';
  if (policy === 'once') return null;
  const due = lastSoundMs === null || nowMs - lastSoundMs >= intervalMs;
  if (!due) return null;
  if (alarm) return 'alarm';
  if (waiting > 0) return 'chime';
  return null;
}

/** "3 min", "1 h 5 min" from milliseconds (pure; the words come from the caller's catalogue). */
export function elapsedParts(ms: number): { h: number; min: number; s: number } {
  const total = Math.max(0, Math.floor(ms / 1000));
  return { h: Math.floor(total / 3600), min: Math.floor((total % 3600) / 60), s: total % 60 };
}

/** Replace or add a device (live `device` events carry the whole view). */
export function upsertDevice(devices: readonly Device[], d: Device): Device[] {
  const key = checkpointKey(d);
  const rest = devices.filter((x) => checkpointKey(x) !== key);
  return [...rest, d].sort((a, b) => checkpointKey(a).localeCompare(checkpointKey(b)));
}

// --- statistics ----------------------------------------------------------------------------

export interface StatsBucket {
  start: string;
  /** `cannot_screen` is absent from gateways before it was counted. */
  counts: { pass: number; secondary_check: number; invalid: number; cannot_screen?: number };
  temperatureC: { n: number; p50: number | null; p90: number | null; p99: number | null };
}
export interface CheckpointStats {
  site: string;
  checkpoint: string;
  buckets: StatsBucket[];
}

/** Screened, secondary checks and their rate over a checkpoint's buckets (pure). */
export function totals(s: CheckpointStats) {
  let screened = 0;
  let secondary = 0;
  let invalid = 0;
  let cannotScreen = 0;
  for (const b of s.buckets) {
    const missed = b.counts.cannot_screen ?? 0;
    screened += b.counts.pass + b.counts.secondary_check + b.counts.invalid + missed;
    secondary += b.counts.secondary_check;
    invalid += b.counts.invalid;
    cannotScreen += missed;
  }
  return { screened, secondary, invalid, cannotScreen, rate: screened ? secondary / screened : null };
}

/** Counts per bin of a list of values (pure): bins of `width` from `from`, values outside go to the end bins. */
export function histogram(values: number[], from: number, to: number, width: number): { start: number; count: number }[] {
  const n = Math.max(1, Math.round((to - from) / width));
  const bins = Array.from({ length: n }, (_, i) => ({ start: from + i * width, count: 0 }));
  for (const v of values) {
    const i = Math.min(n - 1, Math.max(0, Math.floor((v - from) / width + 1e-9)));
    bins[i]!.count++;
  }
  return bins;
}

/**
 * Every bucket of the period, zeros where nothing was screened (the API lists only buckets with
 * data). Buckets are aligned to the epoch like InfluxQL's GROUP BY time() (pure).
 */
export function fillBuckets(buckets: readonly StatsBucket[], fromMs: number, toMs: number, intervalMs: number): StatsBucket[] {
  const byStart = new Map(buckets.map((b) => [Date.parse(b.start), b]));
  const out: StatsBucket[] = [];
  for (let t = Math.floor(fromMs / intervalMs) * intervalMs; t < toMs; t += intervalMs) {
    out.push(byStart.get(t) ?? { start: new Date(t).toISOString(), counts: { pass: 0, secondary_check: 0, invalid: 0, cannot_screen: 0 }, temperatureC: { n: 0, p50: null, p90: null, p99: null } });
  }
  return out;
}
