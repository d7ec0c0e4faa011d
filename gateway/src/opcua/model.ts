/**
 * What the OPC UA address space shows, as pure functions of the gateway's live events (the rows
 * the SSE feed sends: `device`, `screening`, `alert`). The node-opcua adapter (server.ts) only
 * copies these values and condition states into nodes; everything that decides a value, its
 * quality or an alarm's state is here and tested without sockets.
 */
import { OUTCOMES, type AlertKind, type Outcome } from '../alerts.js';
import type { AlertView, DeviceView, LiveEvent, ScreeningSummary } from '../store/operational.js';
import type { RobotView } from './fleet-view.js';

/** OPC UA StatusCode names used for data quality. */
export type Quality = 'Good' | 'BadNotConnected' | 'BadWaitingForInitialData';

export interface VariableValue {
  value: boolean | string | number | null;
  quality: Quality;
  /** SourceTimestamp (ms): when the device said it; null = the server's time. */
  sourceTime: number | null;
}

export interface CheckpointModel {
  site: string;
  checkpoint: string;
  device: DeviceView | null;
  /** The newest screening's mode and threshold (used while the device state has no calibration). */
  lastScreening: { mode: string; thresholdC: number; at: number } | null;
  lastTemperature: { valueC: number; at: number } | null;
  /** Local calendar day (YYYY-MM-DD) the counters are for. */
  day: string;
  passedToday: number;
  secondaryChecksToday: number;
  /** Alerts of this checkpoint that are not closed, by id. */
  alerts: Map<string, AlertView>;
  /** Alerts closed since the adapter last took them (their conditions send a last event, then go). */
  closed: AlertView[];
}

export const CHECKPOINT_VARIABLES = [
  'Online',
  'ScreeningMode',
  'Threshold',
  'LastTemperature',
  'PassedToday',
  'SecondaryChecksToday',
  'OpenAlerts',
  'BlackbodyOk',
  'ModelSha256',
] as const;
export type CheckpointVariable = (typeof CHECKPOINT_VARIABLES)[number];

export const ROBOT_VARIABLES = ['Online', 'Battery', 'State', 'LastNode', 'CurrentTaskId', 'CurrentTaskType'] as const;
export type RobotVariable = (typeof ROBOT_VARIABLES)[number];

export const checkpointKey = (site: string, checkpoint: string) => `${site}/${checkpoint}`;

/** The local calendar day of a time, YYYY-MM-DD ("today" for the counters is the gateway's local day). */
export function localDay(ms: number): string {
  const d = new Date(ms);
  return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, '0')}-${String(d.getDate()).padStart(2, '0')}`;
}

export function startOfLocalDay(ms: number): number {
  const d = new Date(ms);
  d.setHours(0, 0, 0, 0);
  return d.getTime();
}

export function emptyCheckpoint(site: string, checkpoint: string, day: string): CheckpointModel {
  return { site, checkpoint, device: null, lastScreening: null, lastTemperature: null, day, passedToday: 0, secondaryChecksToday: 0, alerts: new Map(), closed: [] };
}

/** A new day starts the counters again. */
export function rollDay(cp: CheckpointModel, today: string): boolean {
  if (cp.day === today) return false;
  cp.day = today;
  cp.passedToday = 0;
  cp.secondaryChecksToday = 0;
  return true;
}

export function applyDevice(cp: CheckpointModel, device: DeviceView): void {
  cp.device = device;
}

/** `count` false: only the last temperature and settings (the day's counts come from elsewhere). */
export function applyScreening(cp: CheckpointModel, s: ScreeningSummary, count = true): void {
  const at = Date.parse(s.ts);
  if (!cp.lastScreening || at >= cp.lastScreening.at) cp.lastScreening = { mode: s.mode, thresholdC: s.thresholdC, at };
  if (s.temperatureC !== null && (!cp.lastTemperature || at >= cp.lastTemperature.at)) cp.lastTemperature = { valueC: s.temperatureC, at };
  if (count && localDay(at) === cp.day) {
    if (s.decision === 'pass') cp.passedToday += 1;
    else if (s.decision === 'secondary_check') cp.secondaryChecksToday += 1;
  }
}

export function applyAlert(cp: CheckpointModel, alert: AlertView): void {
  if (alert.status === 'closed') {
    // Only an alert the address space showed has a condition to close.
    if (cp.alerts.delete(alert.id)) cp.closed.push(alert);
  } else cp.alerts.set(alert.id, alert);
}

/** The site as the address space shows it, kept up to date from live events. */
export class SiteModel {
  readonly checkpoints = new Map<string, CheckpointModel>();

  constructor(public today: string) {}

  checkpoint(site: string, checkpoint: string): { cp: CheckpointModel; created: boolean } {
    const key = checkpointKey(site, checkpoint);
    const existing = this.checkpoints.get(key);
    if (existing) return { cp: existing, created: false };
    const cp = emptyCheckpoint(site, checkpoint, this.today);
    this.checkpoints.set(key, cp);
    return { cp, created: true };
  }

  /**
   * Applies one live event; returns the checkpoint it changed (null for events without one).
   * `countScreening` false: a screening the day's counts already hold (read at start).
   */
  apply(event: Pick<LiveEvent, 'type' | 'data'>, countScreening = true): CheckpointModel | null {
    switch (event.type) {
      case 'device': {
        const d = event.data as DeviceView | null;
        if (!d) return null;
        const { cp } = this.checkpoint(d.site, d.checkpoint);
        applyDevice(cp, d);
        return cp;
      }
      case 'screening': {
        const s = event.data as ScreeningSummary;
        const { cp } = this.checkpoint(s.site, s.checkpoint);
        applyScreening(cp, s, countScreening);
        return cp;
      }
      case 'alert': {
        const { alert } = event.data as { alert: AlertView };
        const { cp } = this.checkpoint(alert.site, alert.checkpoint);
        applyAlert(cp, alert);
        return cp;
      }
      default:
        return null;
    }
  }

  /** Resets the day counters when the local day changed; returns the checkpoints that changed. */
  rollDay(today: string): CheckpointModel[] {
    this.today = today;
    return [...this.checkpoints.values()].filter((cp) => rollDay(cp, today));
  }
}

/** Quality of a value the device reports: Bad while it is offline or before it said anything. */
function deviceQuality(cp: CheckpointModel, value: unknown): Quality {
  if (cp.device?.status === 'offline') return 'BadNotConnected';
  return value === null || value === undefined ? 'BadWaitingForInitialData' : 'Good';
}

export function checkpointValues(cp: CheckpointModel): Record<CheckpointVariable, VariableValue> {
  const d = cp.device;
  const stateAt = d?.stateAt ? Date.parse(d.stateAt) : null;
  const calibration = d?.calibration ?? null;
  const fromDevice = (value: boolean | string | number | null, sourceTime: number | null): VariableValue => ({
    value,
    quality: deviceQuality(cp, value),
    sourceTime,
  });
  const mode = calibration?.mode ?? cp.lastScreening?.mode ?? null;
  const thresholdC = calibration?.thresholdC ?? cp.lastScreening?.thresholdC ?? null;
  const settingsAt = calibration ? stateAt : (cp.lastScreening?.at ?? null);
  const known = d !== null && d.status !== 'unknown';
  return {
    Online: { value: known ? d.status === 'online' : null, quality: known ? 'Good' : 'BadWaitingForInitialData', sourceTime: stateAt },
    ScreeningMode: fromDevice(mode, settingsAt),
    Threshold: fromDevice(thresholdC, settingsAt),
    LastTemperature: fromDevice(cp.lastTemperature?.valueC ?? null, cp.lastTemperature?.at ?? null),
    PassedToday: { value: cp.passedToday, quality: 'Good', sourceTime: null },
    SecondaryChecksToday: { value: cp.secondaryChecksToday, quality: 'Good', sourceTime: null },
    OpenAlerts: { value: [...cp.alerts.values()].filter((a) => a.status === 'open').length, quality: 'Good', sourceTime: null },
    BlackbodyOk: fromDevice(calibration ? calibration.reference === 'ok' : null, stateAt),
    ModelSha256: fromDevice(d?.model?.sha256 ?? null, stateAt),
  };
}

export function robotValues(r: RobotView): Record<RobotVariable, VariableValue> {
  const at = r.updatedAt;
  const reported = (value: boolean | string | number | null): VariableValue => ({
    value,
    quality: !r.online ? 'BadNotConnected' : value === null ? 'BadWaitingForInitialData' : 'Good',
    sourceTime: at,
  });
  return {
    Online: { value: r.online, quality: 'Good', sourceTime: at },
    Battery: reported(r.batteryPct),
    State: { value: r.state, quality: 'Good', sourceTime: at },
    LastNode: reported(r.lastNodeId),
    // "No task" is a fact, not missing data: an empty string with Good quality.
    CurrentTaskId: { value: r.currentTaskId ?? '', quality: 'Good', sourceTime: at },
    CurrentTaskType: { value: r.currentTaskType ?? '', quality: 'Good', sourceTime: at },
  };
}

// --- Alarms & Conditions ------------------------------------------------------------------------

export const CONDITIONS = ['SecondaryCheckRequired', 'CannotScreen'] as const;
export type ConditionName = (typeof CONDITIONS)[number];

/** Which gateway alerts each condition stands for. */
export const CONDITION_ALERT_KINDS: Record<ConditionName, readonly AlertKind[]> = {
  SecondaryCheckRequired: ['screening'],
  CannotScreen: ['checkpoint_offline', 'checkpoint_fault', 'invalid_storm'],
};

/** OPC UA Severity (1..1000) of our alert severities. */
export const SEVERITY: Record<AlertView['severity'], number> = { critical: 900, major: 700, minor: 400 };

export interface ConditionState {
  /** The gateway alert this condition instance stands for (one instance per alert). */
  alertId: string;
  name: ConditionName;
  active: boolean;
  acked: boolean;
  /** False once the alert is closed: the instance sends its last event and is removed. */
  retain: boolean;
  severity: number;
  message: string;
  /** When the alert opened (ms). */
  time: number;
  /** Who acknowledged it and with which outcome (ClientUserId and Comment of the acknowledged event). */
  ack: { by: string; outcome: Outcome } | null;
}

/** The condition is over for a screening alert once acknowledged; for device alerts when resolved. */
function isActive(a: AlertView): boolean {
  if (a.status === 'closed') return false;
  return a.kind === 'screening' ? a.status === 'open' : a.resolvedAt === null;
}

const CAUSE: Partial<Record<AlertKind, string>> = {
  checkpoint_offline: 'checkpoint offline',
  checkpoint_fault: 'checkpoint fault',
  invalid_storm: 'repeated invalid screenings',
};

export function conditionNameOf(kind: AlertKind): ConditionName {
  return CONDITIONS.find((name) => CONDITION_ALERT_KINDS[name].includes(kind)) ?? 'CannotScreen';
}

/**
 * The state of the condition instance of one alert. The message depends on the alert only (not
 * on how many others wait), so an instance raises a new event (a new EventId) only when its own
 * state changes. Messages carry no health data (no temperatures, no screening reasons).
 */
export function conditionState(alert: AlertView): ConditionState {
  const name = conditionNameOf(alert.kind);
  const where = `${alert.site}/${alert.checkpoint}`;
  let message: string;
  if (name === 'SecondaryCheckRequired') {
    message = `Secondary check required at ${where} (alert ${alert.id})`;
  } else {
    const detail = alert.kind === 'checkpoint_fault' && alert.reasons.length ? `: ${alert.reasons.join(', ')}` : '';
    message = `Cannot screen at ${where}: ${CAUSE[alert.kind] ?? alert.kind}${detail} (alert ${alert.id})`;
  }
  const ack = alert.acknowledgement;
  return {
    alertId: alert.id,
    name,
    active: isActive(alert),
    acked: alert.status !== 'open',
    retain: alert.status !== 'closed',
    severity: SEVERITY[alert.severity],
    message,
    time: Date.parse(alert.openedAt),
    ack: ack ? { by: ack.by, outcome: ack.outcome as Outcome } : null,
  };
}

/**
 * The A&C Acknowledge method has only a comment; a secondary check needs its outcome. The comment
 * may start with one (`cleared`, `referred`, `false_alarm`/`false alarm`, `retest`), the rest is
 * the note. Without one, a device alert (CannotScreen) is acknowledged as `cleared`; a secondary
 * check is refused (use AcknowledgeAlert, or put the outcome first in the comment).
 */
export function parseAckComment(comment: string, condition: ConditionName): { outcome: Outcome; note: string | null } | null {
  const m = /^\s*(cleared|referred|false[ _-]alarm|retest)\b[\s:;,.-]*([\s\S]*)$/i.exec(comment);
  if (m) {
    const outcome = m[1]!.toLowerCase().replace(/[ -]/, '_') as Outcome;
    const note = m[2]!.trim();
    return OUTCOMES.includes(outcome) ? { outcome, note: note || null } : null;
  }
  if (condition === 'CannotScreen') return { outcome: 'cleared', note: comment.trim() || null };
  return null;
}
