/**
 * The operational store: the ingest and alert workflows over the aggregate stores of this folder
 * (screenings, alerts, devices, snapshots, audit, events, spool; fleet.ts, users.ts). Every
 * ingest is one transaction that stores the message, queues its time-series point in the spool,
 * applies the alert changes, appends live-feed events and audit rows, so a message is either
 * wholly stored (and may be acknowledged to the broker) or not at all. Retention deletes what
 * each aggregate keeps past its time, in one transaction.
 */
import type { CheckpointState, Screening, Telemetry } from '@checkpoint/protocol';
import type { Alert, AlertChange, AlertPolicy, Outcome } from '../alerts.js';
import type { ReplacedTimestamp } from '../ingest/classify.js';
import { alertView, createSqliteAlertStore, type AlertFilter, type AlertView } from './alerts.js';
import { createSqliteAuditStore, type AuditEntry } from './audit.js';
import { runSync, type Backend, type Result } from './backend.js';
import type { Db } from './db.js';
import { createSqliteDeviceStore, type DeviceView } from './devices.js';
import { createSqliteEventStore, type LiveEvent } from './events.js';
import { createSqliteFailedMessageStore } from './failed-messages.js';
import { createFleetStore } from './fleet.js';
import { createSqliteScreeningStore, summarize, type ScreeningFilter, type ScreeningSummary } from './screenings.js';
import { createSqliteSnapshotStore } from './snapshots.js';
import { createSqliteSpoolStore, type SpoolRow } from './spool.js';
import { createUserStore } from './users.js';
import * as workflows from './workflows.js';
import type { AckOutcome, IngestOutcome, RetentionPolicy, RetentionResult, WorkflowStores } from './workflows.js';

// The views and records callers know from here (api, opcua, series writer).
export { alertView, summarize };
export type { AlertFilter, AlertView, AuditEntry, DeviceView, LiveEvent, ScreeningFilter, ScreeningSummary, SpoolRow };
export type { DeviceTelemetry } from './devices.js';
export type { AckOutcome, IngestOutcome, RetentionPolicy, RetentionResult };

/**
 * The operational store's interface: ingest (one transaction each), the alert workflow, queries,
 * spool, retention. `OperationalStore` (B = 'sync') is the SQLite one, answering at once;
 * `OperationalStore<'async'>` the PostgreSQL one (postgres/operational.ts). Code that runs on
 * either takes `AnyOperationalStore` and awaits every answer (awaiting a plain value is free).
 */
export interface OperationalStore<B extends Backend = 'sync'> {
  /** `tsReplaced`: the message's ts named no instant and was replaced by the receive time (flagged). */
  ingestScreening(s: Screening, receivedMs: number, tsReplaced?: ReplacedTimestamp[]): Result<IngestOutcome, B>;
  ingestState(s: CheckpointState, receivedMs: number, tsReplaced?: ReplacedTimestamp[]): Result<IngestOutcome, B>;
  ingestTelemetry(t: Telemetry, receivedMs: number, tsReplaced?: ReplacedTimestamp[]): Result<IngestOutcome, B>;
  ingestSnapshot(where: { site: string; checkpoint: string }, screeningId: string, jpeg: Buffer, receivedMs: number): Result<IngestOutcome, B>;
  acknowledgeAlert(id: string, ack: { by: string; outcome: Outcome; note: string | null }, nowMs: number): Result<AckOutcome, B>;
  /**
   * `listener` runs on every successful acknowledgement (whoever acknowledged: API, OPC UA), after
   * the alert changed: on SQLite inside the acknowledgement's transaction (what it writes commits
   * with it), on PostgreSQL right after the commit. Returns an unsubscribe function.
   */
  onAcknowledged(listener: (alert: Alert, atMs: number) => void | Promise<void>): () => void;
  /** Escalations and storm resolutions due at `nowMs`. */
  runPeriodic(nowMs: number): Result<AlertChange[], B>;
  audit(atMs: number, actor: string, action: string, target: string | null, detail?: unknown): Result<void, B>;
  /** Keeps a message that failed for a reason retrying cannot cure (ingest_failed). */
  setAside(topic: string, payload: Buffer, error: string, atMs: number): Result<void, B>;
  alert(id: string): Result<AlertView | null, B>;
  alerts(f: AlertFilter): Result<AlertView[], B>;
  screenings(f: ScreeningFilter): Result<ScreeningSummary[], B>;
  devices(): Result<DeviceView[], B>;
  snapshot(screeningId: string): Result<{ jpeg: Buffer; site: string; checkpoint: string } | null, B>;
  auditLog(limit: number, beforeSeq?: number): Result<AuditEntry[], B>;
  eventsAfter(seq: number, limit: number): Result<LiveEvent[], B>;
  eventRange(): Result<{ first: number; last: number }, B>;
  spoolHead(limit: number): Result<SpoolRow[], B>;
  spoolDone(lastSeq: number): Result<void, B>;
  spoolReject(seq: number, error: string, atMs: number): Result<void, B>;
  spoolDepth(): Result<number, B>;
  rejectedCount(): Result<number, B>;
  retention(nowMs: number, p: RetentionPolicy): Result<RetentionResult, B>;
}

/** Either backend's operational store: every answer is a value or a promise of one (await it). */
export type AnyOperationalStore = OperationalStore<Backend>;

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
  const st: WorkflowStores<'sync'> = {
    screenings,
    alerts,
    devices,
    snapshots,
    audit: auditTrail,
    events,
    spool,
    failed,
    pruneSessions: (nowMs) => users.pruneSessions(nowMs),
    deleteFinishedTasksBefore: (ms) => fleet.deleteFinishedBefore(ms),
    deleteSeriesBefore: (ms) => deleteSeriesBefore.run(ms).changes,
  };

  // The workflows (workflows.ts), each in one SQLite transaction: nothing in them is awaited.
  // Ingest called inside a caller's transaction (group commit) runs in it without a savepoint of
  // its own: two statements less per message. The caller owns atomicity then: a message that throws
  // has its writes undone by the caller's savepoint, or by rolling the batch back.
  const inCallersTransaction = <A extends unknown[], R>(work: (...args: A) => R) => {
    const alone = db.transaction(work);
    return (...args: A): R => (db.inTransaction ? work(...args) : alone(...args));
  };
  const ingestScreening = inCallersTransaction((s: Screening, receivedMs: number, tsReplaced?: ReplacedTimestamp[]) =>
    runSync(workflows.ingestScreening(st, policy, newId, s, receivedMs, tsReplaced)),
  );
  const ingestState = inCallersTransaction((state: CheckpointState, receivedMs: number, tsReplaced?: ReplacedTimestamp[]) =>
    runSync(workflows.ingestState(st, newId, state, receivedMs, tsReplaced)),
  );
  const ingestTelemetry = inCallersTransaction((t: Telemetry, receivedMs: number, tsReplaced?: ReplacedTimestamp[]) =>
    runSync(workflows.ingestTelemetry(st, t, receivedMs, tsReplaced)),
  );

  const ackListeners = new Set<(alert: Alert, atMs: number) => void>();
  const acknowledgeAlert = db.transaction((id: string, ack: { by: string; outcome: Outcome; note: string | null }, nowMs: number): AckOutcome => {
    const result = runSync(workflows.acknowledgeAlert(st, id, ack, nowMs));
    if (result.ok) for (const listener of ackListeners) listener(result.change.alert, nowMs);
    return result;
  });

  const runPeriodic = db.transaction((nowMs: number): AlertChange[] => runSync(workflows.runPeriodic(st, policy, nowMs)));
  const retention = db.transaction((nowMs: number, p: RetentionPolicy): RetentionResult => runSync(workflows.retention(st, nowMs, p)));

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
