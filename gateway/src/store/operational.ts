/**
 * The operational store: the ingest and alert workflows over the aggregate stores of this folder
 * (screenings, alerts, devices, snapshots, audit, events, spool; fleet.ts, users.ts). Every
 * ingest is one transaction that stores the message, queues its time-series point in the spool,
 * applies the alert changes, appends live-feed events and audit rows, so a message is either
 * wholly stored (and may be acknowledged to the broker) or not at all. Retention deletes what
 * each aggregate keeps past its time, in one transaction.
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
import { deviceStatePoint, screeningPoint, telemetryPoint, type SeriesPoint } from '../series/points.js';
import type { ReplacedTimestamp } from '../ingest/classify.js';
import { alertView, createSqliteAlertStore, type AlertFilter, type AlertView } from './alerts.js';
import { createSqliteAuditStore, type AuditEntry } from './audit.js';
import type { Db } from './db.js';
import { createSqliteDeviceStore, type DeviceView } from './devices.js';
import { createSqliteEventStore, type LiveEvent } from './events.js';
import { createSqliteFailedMessageStore } from './failed-messages.js';
import { createFleetStore } from './fleet.js';
import { createSqliteScreeningStore, summarize, type ScreeningFilter, type ScreeningSummary } from './screenings.js';
import { createSqliteSnapshotStore } from './snapshots.js';
import { createSqliteSpoolStore, type SpoolRow } from './spool.js';
import { createUserStore } from './users.js';

// The views and records callers know from here (api, opcua, series writer).
export { alertView, summarize };
export type { AlertFilter, AlertView, AuditEntry, DeviceView, LiveEvent, ScreeningFilter, ScreeningSummary, SpoolRow };
export type { DeviceTelemetry } from './devices.js';

/** A series point flagged with the timestamps the gateway replaced (a string field, always). */
function flagged(point: SeriesPoint, tsReplaced: ReplacedTimestamp[] | undefined): SeriesPoint {
  if (tsReplaced?.length) point.fields.tsReplaced = tsReplaced.map((r) => `${r.path}=${r.original}`).join(',');
  return point;
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

/** The operational store's interface: ingest (one transaction each), the alert workflow, queries, spool, retention. */
export interface OperationalStore {
  /** `tsReplaced`: the message's ts named no instant and was replaced by the receive time (flagged). */
  ingestScreening(s: Screening, receivedMs: number, tsReplaced?: ReplacedTimestamp[]): IngestOutcome;
  ingestState(s: CheckpointState, receivedMs: number, tsReplaced?: ReplacedTimestamp[]): IngestOutcome;
  ingestTelemetry(t: Telemetry, receivedMs: number, tsReplaced?: ReplacedTimestamp[]): IngestOutcome;
  ingestSnapshot(where: { site: string; checkpoint: string }, screeningId: string, jpeg: Buffer, receivedMs: number): IngestOutcome;
  acknowledgeAlert(id: string, ack: { by: string; outcome: Outcome; note: string | null }, nowMs: number): AckOutcome;
  /**
   * `listener` runs inside every successful acknowledgement's transaction (whoever acknowledged:
   * API, OPC UA), after the alert changed; what it writes commits with the acknowledgement.
   * Returns an unsubscribe function.
   */
  onAcknowledged(listener: (alert: Alert, atMs: number) => void): () => void;
  /** Escalations and storm resolutions due at `nowMs`. */
  runPeriodic(nowMs: number): AlertChange[];
  audit(atMs: number, actor: string, action: string, target: string | null, detail?: unknown): void;
  /** Keeps a message that failed for a reason retrying cannot cure (ingest_failed). */
  setAside(topic: string, payload: Buffer, error: string, atMs: number): void;
  alert(id: string): AlertView | null;
  alerts(f: AlertFilter): AlertView[];
  screenings(f: ScreeningFilter): ScreeningSummary[];
  devices(): DeviceView[];
  snapshot(screeningId: string): { jpeg: Buffer; site: string; checkpoint: string } | null;
  auditLog(limit: number, beforeSeq?: number): AuditEntry[];
  eventsAfter(seq: number, limit: number): LiveEvent[];
  eventRange(): { first: number; last: number };
  spoolHead(limit: number): SpoolRow[];
  spoolDone(lastSeq: number): void;
  spoolReject(seq: number, error: string, atMs: number): void;
  spoolDepth(): number;
  rejectedCount(): number;
  retention(nowMs: number, p: RetentionPolicy): RetentionResult;
}

export function createOperationalStore(db: Db, policy: AlertPolicy, newId: () => string): OperationalStore {
  const screenings = createSqliteScreeningStore(db);
  const alerts = createSqliteAlertStore(db);
  const devices = createSqliteDeviceStore(db);
  const snapshots = createSqliteSnapshotStore(db);
  const auditTrail = createSqliteAuditStore(db);
  const events = createSqliteEventStore(db);
  const spool = createSqliteSpoolStore(db);
  const failed = createSqliteFailedMessageStore(db);
  const fleet = createFleetStore(db);
  const users = createUserStore(db);
  // The time series without InfluxDB (series/sqlite.ts keeps them; retention applies here).
  const deleteSeriesBefore = db.prepare('DELETE FROM series_points WHERE ts_ms < ?');

  const screeningSummaryOf = (id: string | null) => (id ? screenings.summary(id) : null);

  /** Persist alert changes with their audit rows and live-feed events (inside a transaction). */
  function applyAlertChanges(changes: AlertChange[], actor: string, atMs: number, detail: (c: AlertChange) => unknown = () => null): void {
    for (const change of changes) {
      alerts.save(change.alert);
      auditTrail.append(atMs, actor, `alert.${change.action}`, change.alert.id, detail(change) ?? { kind: change.alert.kind, site: change.alert.site, checkpoint: change.alert.checkpoint });
      events.append('alert', { action: change.action, alert: alertView(change.alert, screeningSummaryOf(change.alert.screeningId)) }, atMs);
    }
  }

  const ingestScreening = db.transaction((s: Screening, receivedMs: number, tsReplaced?: ReplacedTimestamp[]): IngestOutcome => {
    if (!screenings.insert(s, receivedMs, tsReplaced)) return { stored: false, alertChanges: [] };
    const tsMs = Date.parse(s.ts);
    devices.seen(s.site, s.checkpoint, receivedMs);
    spool.enqueue(flagged(screeningPoint(s), tsReplaced), receivedMs);
    events.append('screening', summarize(s, tsReplaced), receivedMs);
    let changes: AlertChange[] = [];
    if (s.decision !== 'pass') {
      const windowStart = tsMs - policy.invalidStormWindowMs;
      changes = screeningAlertChanges(
        { id: s.id, tsMs, site: s.site, checkpoint: s.checkpoint, decision: s.decision, reasons: s.reasons },
        {
          activeStorm: alerts.activeOf(s.site, s.checkpoint, 'invalid_storm'),
          recentInvalidCount: s.decision === 'invalid' ? screenings.countInvalid(s.site, s.checkpoint, windowStart, tsMs, s.id) : 0,
          recentInvalidAlerts: s.decision === 'invalid' ? alerts.openInvalidSince(s.site, s.checkpoint, windowStart) : [],
        },
        policy,
        newId,
      );
      applyAlertChanges(changes, 'system', receivedMs, (c) => ({ kind: c.alert.kind, site: s.site, checkpoint: s.checkpoint, screeningId: s.id, decision: s.decision }));
    }
    return { stored: true, alertChanges: changes };
  });

  const ingestState = db.transaction((state: CheckpointState, receivedMs: number, tsReplaced?: ReplacedTimestamp[]): IngestOutcome => {
    const tsMs = Date.parse(state.ts);
    const previous = devices.stateJson(state.site, state.checkpoint);
    devices.seen(state.site, state.checkpoint, receivedMs);
    // The retained state comes again on every subscription: the same state changes nothing.
    // (Arrival order, not ts, decides: the offline last will carries its connect-time ts.)
    const json = JSON.stringify(state);
    if (previous === json) return { stored: false, alertChanges: [] };
    devices.setState(state, json, tsMs);
    spool.enqueue(flagged(deviceStatePoint(state), tsReplaced), receivedMs);
    const changes = deviceStateAlertChanges(
      state,
      { activeOffline: alerts.activeOf(state.site, state.checkpoint, 'checkpoint_offline'), activeFault: alerts.activeOf(state.site, state.checkpoint, 'checkpoint_fault') },
      receivedMs,
      newId,
    );
    applyAlertChanges(changes, 'system', receivedMs);
    events.append('device', devices.get(state.site, state.checkpoint), receivedMs);
    return { stored: true, alertChanges: changes };
  });

  const ingestTelemetry = db.transaction((t: Telemetry, receivedMs: number, tsReplaced?: ReplacedTimestamp[]): IngestOutcome => {
    devices.seen(t.site, t.checkpoint, receivedMs);
    devices.setTelemetry(t);
    spool.enqueue(flagged(telemetryPoint(t), tsReplaced), receivedMs);
    return { stored: true, alertChanges: [] };
  });

  const ackListeners = new Set<(alert: Alert, atMs: number) => void>();
  const acknowledgeAlert = db.transaction(
    (id: string, ack: { by: string; outcome: Outcome; note: string | null }, nowMs: number): AckOutcome => {
      const alert = alerts.get(id);
      if (!alert) return { ok: false, reason: 'not_found', message: `no alert ${id}` };
      const result = acknowledge(alert, ack, nowMs);
      if (result.ok) {
        applyAlertChanges([result.change], ack.by, nowMs, () => ({ outcome: ack.outcome, note: ack.note !== null }));
        for (const listener of ackListeners) listener(result.change.alert, nowMs);
      }
      return result;
    },
  );

  const runPeriodic = db.transaction((nowMs: number): AlertChange[] => {
    const changes = periodicChanges(alerts.active(), nowMs, policy);
    applyAlertChanges(changes, 'system', nowMs);
    return changes;
  });

  /** Deletes health data past its retention; returns how many rows went. */
  const retention = db.transaction((nowMs: number, p: RetentionPolicy): RetentionResult => {
    // By receipt, not by the device's ts: a device clock in 1970 or 2090 must neither lose its
    // screenings at once nor keep them for ever.
    const removed = screenings.deleteReceivedBefore(nowMs - p.screeningsMs);
    const snapshotCount = snapshots.deleteReceivedBefore(nowMs - p.snapshotsMs);
    const eventCount = events.deleteBefore(nowMs - p.eventsMs);
    const sessions = users.pruneSessions(nowMs);
    // The rest default to "kept" when absent (callers that predate them).
    const olderThan = (ms: number | undefined, remove: (beforeMs: number) => number) => (ms === undefined ? 0 : remove(nowMs - ms));
    const seriesPoints = olderThan(p.seriesMs, (ms) => deleteSeriesBefore.run(ms).changes);
    const alertCount = olderThan(p.alertsMs, alerts.deleteClosedBefore);
    const tasks = olderThan(p.tasksMs, fleet.deleteFinishedBefore);
    const auditRows = olderThan(p.auditMs, auditTrail.deleteBefore);
    const rejected = olderThan(p.rejectedMs, spool.deleteRejectedBefore) + olderThan(p.rejectedMs, failed.deleteBefore);
    const result = { screenings: removed, snapshots: snapshotCount, events: eventCount, sessions, seriesPoints, alerts: alertCount, tasks, audit: auditRows, rejected };
    if (removed + snapshotCount + seriesPoints + alertCount + tasks + auditRows + rejected > 0) {
      auditTrail.append(nowMs, 'system', 'retention', null, { screenings: removed, snapshots: snapshotCount, seriesPoints, alerts: alertCount, tasks, audit: auditRows, rejected });
    }
    return result;
  });

  return {
    ingestScreening: (s, receivedMs, tsReplaced) => ingestScreening(s, receivedMs, tsReplaced),
    ingestState: (s, receivedMs, tsReplaced) => ingestState(s, receivedMs, tsReplaced),
    ingestTelemetry: (t, receivedMs, tsReplaced) => ingestTelemetry(t, receivedMs, tsReplaced),
    ingestSnapshot: (where, screeningId, jpeg, receivedMs) => ({ stored: snapshots.insert(where, screeningId, jpeg, receivedMs), alertChanges: [] }),
    acknowledgeAlert: (id, ack, nowMs) => acknowledgeAlert(id, ack, nowMs),
    onAcknowledged(listener) {
      ackListeners.add(listener);
      return () => ackListeners.delete(listener);
    },
    runPeriodic: (nowMs) => runPeriodic(nowMs),
    audit: (atMs, actor, action, target, detail = null) => auditTrail.append(atMs, actor, action, target, detail),
    setAside: (topic, payload, error, atMs) => failed.add(topic, payload, error, atMs),

    alert(id) {
      const alert = alerts.get(id);
      return alert ? alertView(alert, screeningSummaryOf(alert.screeningId)) : null;
    },
    alerts: (f) => alerts.list(f).map((a) => alertView(a, screeningSummaryOf(a.screeningId))),
    screenings: (f) => screenings.list(f),
    devices: () => devices.list(),
    snapshot: (screeningId) => snapshots.get(screeningId),
    auditLog: (limit, beforeSeq) => auditTrail.list(limit, beforeSeq),

    eventsAfter: (seq, limit) => events.after(seq, limit),
    eventRange: () => events.range(),

    spoolHead: (limit) => spool.head(limit),
    spoolDone: (lastSeq) => spool.done(lastSeq),
    spoolReject: (seq, error, atMs) => spool.reject(seq, error, atMs),
    spoolDepth: () => spool.depth(),
    rejectedCount: () => spool.rejectedCount(),

    retention: (nowMs, p) => retention(nowMs, p),
  };
}
