/**
 * The ingest, alert and retention workflows over the aggregate stores, written once for both
 * backends (generators: see `answer` in backend.ts). Each runs inside one transaction its caller
 * opens — SQLite's (operational.ts) or PostgreSQL's (postgres/operational.ts) — so a message is
 * stored whole (and may be acknowledged) or not at all.
 */
import type { CheckpointState, Screening, Telemetry } from '@checkpoint/protocol';
import {
  acknowledge,
  deviceStateAlertChanges,
  periodicChanges,
  screeningAlertChanges,
  type AckResult,
  type Alert,
  type AlertChange,
  type AlertPolicy,
  type Outcome,
} from '../alerts.js';
import type { ReplacedTimestamp } from '../ingest/classify.js';
import { deviceStatePoint, screeningPoint, telemetryPoint, type SeriesPoint } from '../series/points.js';
import { alertView, type AlertStore } from './alerts.js';
import type { AuditStore } from './audit.js';
import { answer, type Backend, type Result, type Workflow } from './backend.js';
import type { DeviceStore } from './devices.js';
import type { EventStore } from './events.js';
import type { FailedMessageStore } from './failed-messages.js';
import { summarize, type ScreeningStore } from './screenings.js';
import type { SnapshotStore } from './snapshots.js';
import type { SpoolStore } from './spool.js';

/** The stores a workflow works on, all on the transaction it runs in. */
export interface WorkflowStores<B extends Backend = Backend> {
  screenings: ScreeningStore<B>;
  alerts: AlertStore<B>;
  devices: DeviceStore<B>;
  snapshots: SnapshotStore<B>;
  audit: AuditStore<B>;
  events: EventStore<B>;
  spool: SpoolStore<B>;
  failed: FailedMessageStore<B>;
  /** Retention's deletes in the fleet, user and series aggregates. */
  pruneSessions(nowMs: number): Result<number, B>;
  deleteFinishedTasksBefore(ms: number): Result<number, B>;
  /** The series kept in the database without InfluxDB (SQLite only: 0 elsewhere). */
  deleteSeriesBefore(ms: number): Result<number, B>;
}

export interface IngestOutcome {
  /** False for a duplicate (already stored): nothing else happened. */
  stored: boolean;
  alertChanges: AlertChange[];
}

export interface RetentionPolicy {
  screeningsMs: number;
  snapshotsMs: number;
  eventsMs: number;
  /** The rest default to "kept" when absent (callers that predate them). */
  seriesMs?: number;
  alertsMs?: number;
  tasksMs?: number;
  auditMs?: number;
  rejectedMs?: number;
}

export interface RetentionResult {
  screenings: number;
  snapshots: number;
  events: number;
  sessions: number;
  seriesPoints: number;
  alerts: number;
  tasks: number;
  audit: number;
  rejected: number;
}

export type AckOutcome = AckResult | { ok: false; reason: 'not_found'; message: string };

/** A series point flagged with the timestamps the gateway replaced (a string field, always). */
export function flagged(point: SeriesPoint, tsReplaced: ReplacedTimestamp[] | undefined): SeriesPoint {
  if (tsReplaced?.length) point.fields.tsReplaced = tsReplaced.map((r) => `${r.path}=${r.original}`).join(',');
  return point;
}

/** Persists alert changes with their audit rows and live-feed events. */
export function* applyAlertChanges(
  st: WorkflowStores,
  changes: AlertChange[],
  actor: string,
  atMs: number,
  detail: (c: AlertChange) => unknown = () => null,
): Workflow<void> {
  for (const change of changes) {
    yield st.alerts.save(change.alert);
    yield st.audit.append(atMs, actor, `alert.${change.action}`, change.alert.id, detail(change) ?? { kind: change.alert.kind, site: change.alert.site, checkpoint: change.alert.checkpoint });
    const screening = change.alert.screeningId ? yield* answer(st.screenings.summary(change.alert.screeningId)) : null;
    yield st.events.append('alert', { action: change.action, alert: alertView(change.alert, screening) }, atMs);
  }
}

export function* ingestScreening(st: WorkflowStores, policy: AlertPolicy, newId: () => string, s: Screening, receivedMs: number, tsReplaced?: ReplacedTimestamp[]): Workflow<IngestOutcome> {
  // The hot path (a passing screening) yields directly: no helper generator per step.
  const inserted = (yield st.screenings.insert(s, receivedMs, tsReplaced)) as boolean;
  if (!inserted) return { stored: false, alertChanges: [] };
  const tsMs = Date.parse(s.ts);
  yield st.devices.seen(s.site, s.checkpoint, receivedMs);
  yield st.spool.enqueue(flagged(screeningPoint(s), tsReplaced), receivedMs);
  yield st.events.append('screening', summarize(s, tsReplaced), receivedMs);
  let changes: AlertChange[] = [];
  if (s.decision !== 'pass') {
    const windowStart = tsMs - policy.invalidStormWindowMs;
    const invalid = s.decision === 'invalid';
    changes = screeningAlertChanges(
      { id: s.id, tsMs, site: s.site, checkpoint: s.checkpoint, decision: s.decision, reasons: s.reasons },
      {
        activeStorm: yield* answer(st.alerts.activeOf(s.site, s.checkpoint, 'invalid_storm')),
        recentInvalidCount: invalid ? yield* answer(st.screenings.countInvalid(s.site, s.checkpoint, windowStart, tsMs, s.id)) : 0,
        recentInvalidAlerts: invalid ? yield* answer(st.alerts.openInvalidSince(s.site, s.checkpoint, windowStart)) : [],
      },
      policy,
      newId,
    );
    yield* applyAlertChanges(st, changes, 'system', receivedMs, (c) => ({ kind: c.alert.kind, site: s.site, checkpoint: s.checkpoint, screeningId: s.id, decision: s.decision }));
  }
  return { stored: true, alertChanges: changes };
}

export function* ingestState(st: WorkflowStores, newId: () => string, state: CheckpointState, receivedMs: number, tsReplaced?: ReplacedTimestamp[]): Workflow<IngestOutcome> {
  const tsMs = Date.parse(state.ts);
  const previous = yield* answer(st.devices.stateJson(state.site, state.checkpoint));
  yield st.devices.seen(state.site, state.checkpoint, receivedMs);
  // The retained state comes again on every subscription: the same state changes nothing.
  // (Arrival order, not ts, decides: the offline last will carries its connect-time ts.)
  const json = JSON.stringify(state);
  if (previous === json) return { stored: false, alertChanges: [] };
  yield st.devices.setState(state, json, tsMs);
  yield st.spool.enqueue(flagged(deviceStatePoint(state), tsReplaced), receivedMs);
  const changes = deviceStateAlertChanges(
    state,
    {
      activeOffline: yield* answer(st.alerts.activeOf(state.site, state.checkpoint, 'checkpoint_offline')),
      activeFault: yield* answer(st.alerts.activeOf(state.site, state.checkpoint, 'checkpoint_fault')),
    },
    receivedMs,
    newId,
  );
  yield* applyAlertChanges(st, changes, 'system', receivedMs);
  yield st.events.append('device', yield* answer(st.devices.get(state.site, state.checkpoint)), receivedMs);
  return { stored: true, alertChanges: changes };
}

export function* ingestTelemetry(st: WorkflowStores, t: Telemetry, receivedMs: number, tsReplaced?: ReplacedTimestamp[]): Workflow<IngestOutcome> {
  yield st.devices.seen(t.site, t.checkpoint, receivedMs);
  yield st.devices.setTelemetry(t);
  yield st.spool.enqueue(flagged(telemetryPoint(t), tsReplaced), receivedMs);
  return { stored: true, alertChanges: [] };
}

/** The acknowledgement; `ok` results carry the change (already saved, audited and in the feed). */
export function* acknowledgeAlert(st: WorkflowStores, id: string, ack: { by: string; outcome: Outcome; note: string | null }, nowMs: number): Workflow<AckOutcome> {
  const alert = yield* answer(st.alerts.get(id));
  if (!alert) return { ok: false, reason: 'not_found', message: `no alert ${id}` };
  const result = acknowledge(alert, ack, nowMs);
  if (result.ok) yield* applyAlertChanges(st, [result.change], ack.by, nowMs, () => ({ outcome: ack.outcome, note: ack.note !== null }));
  return result;
}

/** Escalations and storm resolutions due at `nowMs`; `only`: of the alerts it accepts (the others wait for the next run). */
export function* runPeriodic(st: WorkflowStores, policy: AlertPolicy, nowMs: number, only?: (alert: Alert) => boolean): Workflow<AlertChange[]> {
  const active = yield* answer(st.alerts.active());
  const changes = periodicChanges(only ? active.filter(only) : active, nowMs, policy);
  yield* applyAlertChanges(st, changes, 'system', nowMs);
  return changes;
}

/** Deletes what each aggregate keeps past its time; how many rows went. */
export function* retention(st: WorkflowStores, nowMs: number, p: RetentionPolicy): Workflow<RetentionResult> {
  // By receipt, not by the device's ts: a device clock in 1970 or 2090 must neither lose its
  // screenings at once nor keep them for ever.
  const removed = yield* answer(st.screenings.deleteReceivedBefore(nowMs - p.screeningsMs));
  const snapshotCount = yield* answer(st.snapshots.deleteReceivedBefore(nowMs - p.snapshotsMs));
  const eventCount = yield* answer(st.events.deleteBefore(nowMs - p.eventsMs));
  const sessions = yield* answer(st.pruneSessions(nowMs));
  // The rest default to "kept" when absent (callers that predate them).
  function* olderThan(ms: number | undefined, remove: (beforeMs: number) => number | Promise<number>): Workflow<number> {
    return ms === undefined ? 0 : yield* answer(remove(nowMs - ms));
  }
  const seriesPoints = yield* olderThan(p.seriesMs, (ms) => st.deleteSeriesBefore(ms));
  const alertCount = yield* olderThan(p.alertsMs, (ms) => st.alerts.deleteClosedBefore(ms));
  const tasks = yield* olderThan(p.tasksMs, (ms) => st.deleteFinishedTasksBefore(ms));
  const auditRows = yield* olderThan(p.auditMs, (ms) => st.audit.deleteBefore(ms));
  const rejected = (yield* olderThan(p.rejectedMs, (ms) => st.spool.deleteRejectedBefore(ms))) + (yield* olderThan(p.rejectedMs, (ms) => st.failed.deleteBefore(ms)));
  const result = { screenings: removed, snapshots: snapshotCount, events: eventCount, sessions, seriesPoints, alerts: alertCount, tasks, audit: auditRows, rejected };
  if (removed + snapshotCount + seriesPoints + alertCount + tasks + auditRows + rejected > 0) {
    yield st.audit.append(nowMs, 'system', 'retention', null, { screenings: removed, snapshots: snapshotCount, seriesPoints, alerts: alertCount, tasks, audit: auditRows, rejected });
  }
  return result;
}
