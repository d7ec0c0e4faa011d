/**
 * The operational store: what the API reads and the alert workflow needs, on the SQLite file of
 * db.ts. Every ingest is one transaction that stores the message, queues its time-series point
 * in the spool, applies the alert changes, appends live-feed events and audit rows — so a
 * message is either wholly stored (and may be acknowledged to the broker) or not at all.
 */
import type { CheckpointState, Decision, Screening, Telemetry } from '@checkpoint/protocol';
import {
  acknowledge,
  deviceStateAlertChanges,
  periodicChanges,
  screeningAlertChanges,
  type AckResult,
  type Alert,
  type AlertChange,
  type AlertKind,
  type AlertPolicy,
  type AlertStatus,
  type Outcome,
} from '../alerts.js';
import { deviceStatePoint, screeningPoint, telemetryPoint, type SeriesPoint } from '../series/points.js';
import type { Db } from './db.js';
import type { ReplacedTimestamp } from '../ingest/classify.js';

interface AlertRow {
  id: string;
  kind: AlertKind;
  severity: Alert['severity'];
  status: AlertStatus;
  site: string;
  checkpoint: string;
  screening_id: string | null;
  decision: Decision | null;
  reasons: string;
  count: number;
  opened_ms: number;
  last_ms: number;
  resolved_ms: number | null;
  escalated_ms: number | null;
  ack_by: string | null;
  ack_ms: number | null;
  outcome: Outcome | null;
  note: string | null;
  closed_ms: number | null;
  grouped_into: string | null;
}

function toAlert(r: AlertRow): Alert {
  return {
    id: r.id,
    kind: r.kind,
    severity: r.severity,
    status: r.status,
    site: r.site,
    checkpoint: r.checkpoint,
    screeningId: r.screening_id,
    decision: r.decision,
    reasons: JSON.parse(r.reasons) as string[],
    count: r.count,
    openedAt: r.opened_ms,
    lastAt: r.last_ms,
    resolvedAt: r.resolved_ms,
    escalatedAt: r.escalated_ms,
    ack: r.ack_by !== null && r.ack_ms !== null && r.outcome !== null ? { by: r.ack_by, at: r.ack_ms, outcome: r.outcome, note: r.note } : null,
    closedAt: r.closed_ms,
    groupedInto: r.grouped_into,
  };
}

function alertRow(a: Alert): AlertRow {
  return {
    id: a.id,
    kind: a.kind,
    severity: a.severity,
    status: a.status,
    site: a.site,
    checkpoint: a.checkpoint,
    screening_id: a.screeningId,
    decision: a.decision,
    reasons: JSON.stringify(a.reasons),
    count: a.count,
    opened_ms: a.openedAt,
    last_ms: a.lastAt,
    resolved_ms: a.resolvedAt,
    escalated_ms: a.escalatedAt,
    ack_by: a.ack?.by ?? null,
    ack_ms: a.ack?.at ?? null,
    outcome: a.ack?.outcome ?? null,
    note: a.ack?.note ?? null,
    closed_ms: a.closedAt,
    grouped_into: a.groupedInto,
  };
}

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

/** What the API and the live feed show of a screening (health data: authenticated users only). */
export interface ScreeningSummary {
  id: string;
  ts: string;
  site: string;
  checkpoint: string;
  decision: Decision;
  reasons: string[];
  mask: Screening['mask'];
  temperatureC: number | null;
  thresholdC: number;
  mode: Screening['mode'];
  snapshot: boolean;
  /** Set when the device's ts named no instant: `ts` is then the gateway's receive time. */
  tsReplaced?: ReplacedTimestamp[];
  /** Which camera found the face (newer agents only). */
  detectedBy?: Screening['detectedBy'];
}

export function summarize(s: Screening, tsReplaced?: ReplacedTimestamp[] | null): ScreeningSummary {
  return {
    id: s.id,
    ts: s.ts,
    site: s.site,
    checkpoint: s.checkpoint,
    decision: s.decision,
    reasons: s.reasons,
    mask: s.mask,
    temperatureC: s.temperatureC,
    thresholdC: s.thresholdC,
    mode: s.mode,
    snapshot: s.snapshot,
    ...(tsReplaced?.length ? { tsReplaced } : {}),
    ...(s.detectedBy ? { detectedBy: s.detectedBy } : {}),
  };
}

/** A series point flagged with the timestamps the gateway replaced (a string field, always). */
function flagged(point: SeriesPoint, tsReplaced: ReplacedTimestamp[] | undefined): SeriesPoint {
  if (tsReplaced?.length) point.fields.tsReplaced = tsReplaced.map((r) => `${r.path}=${r.original}`).join(',');
  return point;
}

export function alertView(a: Alert, screening: ScreeningSummary | null = null) {
  return {
    id: a.id,
    kind: a.kind,
    severity: a.severity,
    status: a.status,
    site: a.site,
    checkpoint: a.checkpoint,
    screeningId: a.screeningId,
    decision: a.decision,
    reasons: a.reasons,
    count: a.count,
    openedAt: iso(a.openedAt)!,
    lastAt: iso(a.lastAt)!,
    resolvedAt: iso(a.resolvedAt),
    escalatedAt: iso(a.escalatedAt),
    acknowledgement: a.ack ? { by: a.ack.by, at: iso(a.ack.at)!, outcome: a.ack.outcome, note: a.ack.note } : null,
    closedAt: iso(a.closedAt),
    groupedInto: a.groupedInto,
    screening,
  };
}
export type AlertView = ReturnType<typeof alertView>;

export interface DeviceView {
  site: string;
  checkpoint: string;
  status: 'online' | 'offline' | 'unknown';
  lastSeen: string;
  stateAt: string | null;
  versions: Record<string, string> | null;
  model: { name: string; sha256: string } | null;
  sources: CheckpointState['sources'] | null;
  calibration: CheckpointState['calibration'] | null;
  /** The agent's last telemetry: fps, median stage times (ms), blackbody reading, outbox, CPU, memory. */
  telemetry: DeviceTelemetry | null;
}

export type DeviceTelemetry = Pick<Telemetry, 'ts' | 'fps' | 'stages' | 'queueDepth' | 'cpuTempC' | 'ambientC' | 'blackbody'> & { rssMb: number | null };

export interface LiveEvent {
  seq: number;
  type: 'alert' | 'screening' | 'device' | 'robot' | 'task';
  data: unknown;
}

export interface IngestOutcome {
  /** False for a duplicate (already stored): nothing else happened. */
  stored: boolean;
  alertChanges: AlertChange[];
}

export interface AlertFilter {
  status?: AlertStatus;
  site?: string;
  checkpoint?: string;
  sinceMs?: number;
  limit: number;
}

export interface ScreeningFilter {
  site?: string;
  checkpoint?: string;
  fromMs?: number;
  toMs?: number;
  decision?: Decision;
  limit: number;
}

export interface SpoolRow {
  seq: number;
  point: SeriesPoint;
  enqueuedMs: number;
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

export interface AuditEntry {
  seq: number;
  at: string;
  actor: string;
  action: string;
  target: string | null;
  detail: unknown;
}

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
  const st = {
    insertScreening: db.prepare(
      `INSERT OR IGNORE INTO screenings (id, ts_ms, site, checkpoint, decision, mask, temperature_c, payload, received_ms, ts_replaced)
       VALUES (@id, @ts_ms, @site, @checkpoint, @decision, @mask, @temperature_c, @payload, @received_ms, @ts_replaced)`,
    ),
    spool: db.prepare('INSERT INTO series_spool (point, enqueued_ms) VALUES (?, ?)'),
    event: db.prepare('INSERT INTO events (type, data, at_ms) VALUES (?, ?, ?)'),
    audit: db.prepare('INSERT INTO audit (at_ms, actor, action, target, detail) VALUES (?, ?, ?, ?, ?)'),
    seen: db.prepare(
      `INSERT INTO devices (site, checkpoint, last_seen_ms) VALUES (?, ?, ?)
       ON CONFLICT(site, checkpoint) DO UPDATE SET last_seen_ms = max(last_seen_ms, excluded.last_seen_ms)`,
    ),
    upsertAlert: db.prepare(
      `INSERT INTO alerts (id, kind, severity, status, site, checkpoint, screening_id, decision, reasons, count, opened_ms, last_ms,
         resolved_ms, escalated_ms, ack_by, ack_ms, outcome, note, closed_ms, grouped_into)
       VALUES (@id, @kind, @severity, @status, @site, @checkpoint, @screening_id, @decision, @reasons, @count, @opened_ms, @last_ms,
         @resolved_ms, @escalated_ms, @ack_by, @ack_ms, @outcome, @note, @closed_ms, @grouped_into)
       ON CONFLICT(id) DO UPDATE SET status = excluded.status, reasons = excluded.reasons, count = excluded.count, last_ms = excluded.last_ms,
         resolved_ms = excluded.resolved_ms, escalated_ms = excluded.escalated_ms, ack_by = excluded.ack_by, ack_ms = excluded.ack_ms,
         outcome = excluded.outcome, note = excluded.note, closed_ms = excluded.closed_ms, grouped_into = excluded.grouped_into`,
    ),
    activeAlertOf: db.prepare<[string, string, string], AlertRow>(
      `SELECT * FROM alerts WHERE site = ? AND checkpoint = ? AND kind = ? AND status != 'closed' ORDER BY opened_ms DESC LIMIT 1`,
    ),
    recentInvalid: db.prepare<[string, string, number, number, string], { n: number }>(
      `SELECT count(*) AS n FROM screenings WHERE site = ? AND checkpoint = ? AND decision = 'invalid' AND ts_ms BETWEEN ? AND ? AND id != ?`,
    ),
    recentInvalidAlerts: db.prepare<[string, string, number], AlertRow>(
      `SELECT * FROM alerts WHERE site = ? AND checkpoint = ? AND kind = 'screening' AND decision = 'invalid' AND status = 'open' AND opened_ms >= ?`,
    ),
    alertById: db.prepare<[string], AlertRow>('SELECT * FROM alerts WHERE id = ?'),
    activeAlerts: db.prepare<[], AlertRow>(`SELECT * FROM alerts WHERE status != 'closed'`),
    device: db.prepare<[string, string], { state: string | null }>('SELECT state FROM devices WHERE site = ? AND checkpoint = ?'),
    screeningPayload: db.prepare<[string], { payload: string; ts_replaced: string | null }>('SELECT payload, ts_replaced FROM screenings WHERE id = ?'),
    setState: db.prepare('UPDATE devices SET status = ?, state = ?, state_ts_ms = ? WHERE site = ? AND checkpoint = ?'),
    setTelemetry: db.prepare('UPDATE devices SET telemetry = ? WHERE site = ? AND checkpoint = ?'),
    insertSnapshot: db.prepare('INSERT OR IGNORE INTO snapshots (screening_id, site, checkpoint, received_ms, jpeg) VALUES (?, ?, ?, ?, ?)'),
    deviceRow: db.prepare<[string, string], DeviceRow>('SELECT * FROM devices WHERE site = ? AND checkpoint = ?'),
  };

  function appendEvent(type: LiveEvent['type'], data: unknown, atMs: number): void {
    st.event.run(type, JSON.stringify(data), atMs);
  }

  function audit(atMs: number, actor: string, action: string, target: string | null, detail: unknown = null): void {
    st.audit.run(atMs, actor, action, target, detail === null ? null : JSON.stringify(detail));
  }

  function screeningSummaryOf(id: string | null): ScreeningSummary | null {
    if (!id) return null;
    const row = st.screeningPayload.get(id);
    return row ? summarizeRow(row) : null;
  }

  /** Persist alert changes with their audit rows and live-feed events (inside a transaction). */
  function applyAlertChanges(changes: AlertChange[], actor: string, atMs: number, detail: (c: AlertChange) => unknown = () => null): void {
    for (const change of changes) {
      st.upsertAlert.run(alertRow(change.alert));
      audit(atMs, actor, `alert.${change.action}`, change.alert.id, detail(change) ?? { kind: change.alert.kind, site: change.alert.site, checkpoint: change.alert.checkpoint });
      appendEvent('alert', { action: change.action, alert: alertView(change.alert, screeningSummaryOf(change.alert.screeningId)) }, atMs);
    }
  }

  const queuePoint = (point: SeriesPoint, atMs: number) => st.spool.run(JSON.stringify(point), atMs);

  const ingestScreening = db.transaction((s: Screening, receivedMs: number, tsReplaced?: ReplacedTimestamp[]): IngestOutcome => {
    const tsMs = Date.parse(s.ts);
    // A NaN here would make the NOT NULL insert a silent IGNORE (counted as a duplicate): refuse loudly.
    if (!Number.isFinite(tsMs)) throw new Error(`screening ${s.id}: ts is not an instant`);
    const inserted = st.insertScreening.run({
      id: s.id,
      ts_ms: tsMs,
      site: s.site,
      checkpoint: s.checkpoint,
      decision: s.decision,
      mask: s.mask,
      temperature_c: s.temperatureC,
      payload: JSON.stringify(s),
      received_ms: receivedMs,
      ts_replaced: tsReplaced?.length ? JSON.stringify(tsReplaced) : null,
    });
    if (inserted.changes === 0) return { stored: false, alertChanges: [] };
    st.seen.run(s.site, s.checkpoint, receivedMs);
    queuePoint(flagged(screeningPoint(s), tsReplaced), receivedMs);
    appendEvent('screening', summarize(s, tsReplaced), receivedMs);
    let changes: AlertChange[] = [];
    if (s.decision !== 'pass') {
      const storm = st.activeAlertOf.get(s.site, s.checkpoint, 'invalid_storm');
      const windowStart = tsMs - policy.invalidStormWindowMs;
      changes = screeningAlertChanges(
        { id: s.id, tsMs, site: s.site, checkpoint: s.checkpoint, decision: s.decision, reasons: s.reasons },
        {
          activeStorm: storm ? toAlert(storm) : null,
          recentInvalidCount: s.decision === 'invalid' ? st.recentInvalid.get(s.site, s.checkpoint, windowStart, tsMs, s.id)!.n : 0,
          recentInvalidAlerts: s.decision === 'invalid' ? st.recentInvalidAlerts.all(s.site, s.checkpoint, windowStart).map(toAlert) : [],
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
    const previous = st.device.get(state.site, state.checkpoint);
    st.seen.run(state.site, state.checkpoint, receivedMs);
    // The retained state comes again on every subscription: the same state changes nothing.
    // (Arrival order, not ts, decides: the offline last will carries its connect-time ts.)
    const json = JSON.stringify(state);
    if (previous?.state === json) return { stored: false, alertChanges: [] };
    st.setState.run(
      state.status,
      json,
      tsMs,
      state.site,
      state.checkpoint,
    );
    queuePoint(flagged(deviceStatePoint(state), tsReplaced), receivedMs);
    const off = st.activeAlertOf.get(state.site, state.checkpoint, 'checkpoint_offline');
    const fault = st.activeAlertOf.get(state.site, state.checkpoint, 'checkpoint_fault');
    const changes = deviceStateAlertChanges(state, { activeOffline: off ? toAlert(off) : null, activeFault: fault ? toAlert(fault) : null }, receivedMs, newId);
    applyAlertChanges(changes, 'system', receivedMs);
    appendEvent('device', deviceView(state.site, state.checkpoint), receivedMs);
    return { stored: true, alertChanges: changes };
  });

  const ingestTelemetry = db.transaction((t: Telemetry, receivedMs: number, tsReplaced?: ReplacedTimestamp[]): IngestOutcome => {
    st.seen.run(t.site, t.checkpoint, receivedMs);
    st.setTelemetry.run(JSON.stringify(t), t.site, t.checkpoint);
    queuePoint(flagged(telemetryPoint(t), tsReplaced), receivedMs);
    return { stored: true, alertChanges: [] };
  });

  function ingestSnapshot(where: { site: string; checkpoint: string }, screeningId: string, jpeg: Buffer, receivedMs: number): IngestOutcome {
    const r = st.insertSnapshot.run(screeningId, where.site, where.checkpoint, receivedMs, jpeg);
    return { stored: r.changes > 0, alertChanges: [] };
  }

  function deviceView(site: string, checkpoint: string): DeviceView | null {
    const row = st.deviceRow.get(site, checkpoint);
    return row ? toDeviceView(row) : null;
  }

  const ackListeners = new Set<(alert: Alert, atMs: number) => void>();
  const acknowledgeAlert = db.transaction(
    (id: string, ack: { by: string; outcome: Outcome; note: string | null }, nowMs: number): AckOutcome => {
      const row = st.alertById.get(id);
      if (!row) return { ok: false, reason: 'not_found', message: `no alert ${id}` };
      const result = acknowledge(toAlert(row), ack, nowMs);
      if (result.ok) {
        applyAlertChanges([result.change], ack.by, nowMs, () => ({ outcome: ack.outcome, note: ack.note !== null }));
        for (const listener of ackListeners) listener(result.change.alert, nowMs);
      }
      return result;
    },
  );

  const runPeriodic = db.transaction((nowMs: number): AlertChange[] => {
    const changes = periodicChanges(st.activeAlerts.all().map(toAlert), nowMs, policy);
    applyAlertChanges(changes, 'system', nowMs);
    return changes;
  });

  const spoolReject = db.transaction((seq: number, error: string, atMs: number) => {
    db.prepare('INSERT OR REPLACE INTO series_rejected (seq, point, error, at_ms) SELECT seq, point, ?, ? FROM series_spool WHERE seq = ?').run(error.slice(0, 1000), atMs, seq);
    db.prepare('DELETE FROM series_spool WHERE seq = ?').run(seq);
  });

  /** Deletes health data past its retention; returns how many rows went. */
  const retention = db.transaction((nowMs: number, p: RetentionPolicy) => {
    // By receipt, not by the device's ts: a device clock in 1970 or 2090 must neither lose its
    // screenings at once nor keep them for ever.
    const screenings = db.prepare('DELETE FROM screenings WHERE received_ms < ?').run(nowMs - p.screeningsMs).changes;
    const snapshots = db.prepare('DELETE FROM snapshots WHERE received_ms < ?').run(nowMs - p.snapshotsMs).changes;
    const events = db.prepare('DELETE FROM events WHERE at_ms < ?').run(nowMs - p.eventsMs).changes;
    const sessions = db.prepare('DELETE FROM sessions WHERE expires_ms <= ?').run(nowMs).changes;
    const olderThan = (ms: number | undefined, sql: string) => (ms === undefined ? 0 : db.prepare(sql).run(nowMs - ms).changes);
    const seriesPoints = olderThan(p.seriesMs, 'DELETE FROM series_points WHERE ts_ms < ?');
    const alerts = olderThan(p.alertsMs, `DELETE FROM alerts WHERE status = 'closed' AND closed_ms < ?`);
    const tasks = olderThan(p.tasksMs, `DELETE FROM fleet_tasks WHERE status IN ('completed', 'failed', 'cancelled') AND updated_ms < ?`);
    const auditRows = olderThan(p.auditMs, 'DELETE FROM audit WHERE at_ms < ?');
    const rejected = olderThan(p.rejectedMs, 'DELETE FROM series_rejected WHERE at_ms < ?') + olderThan(p.rejectedMs, 'DELETE FROM ingest_failed WHERE at_ms < ?');
    const result = { screenings, snapshots, events, sessions, seriesPoints, alerts, tasks, audit: auditRows, rejected };
    if (screenings + snapshots + seriesPoints + alerts + tasks + auditRows + rejected > 0) {
      audit(nowMs, 'system', 'retention', null, { screenings, snapshots, seriesPoints, alerts, tasks, audit: auditRows, rejected });
    }
    return result;
  });

  return {
    ingestScreening: (s: Screening, receivedMs: number, tsReplaced?: ReplacedTimestamp[]) => ingestScreening(s, receivedMs, tsReplaced),
    ingestState: (s: CheckpointState, receivedMs: number, tsReplaced?: ReplacedTimestamp[]) => ingestState(s, receivedMs, tsReplaced),
    ingestTelemetry: (t: Telemetry, receivedMs: number, tsReplaced?: ReplacedTimestamp[]) => ingestTelemetry(t, receivedMs, tsReplaced),
    ingestSnapshot,
    acknowledgeAlert: (id: string, ack: { by: string; outcome: Outcome; note: string | null }, nowMs: number) => acknowledgeAlert(id, ack, nowMs),
    onAcknowledged(listener: (alert: Alert, atMs: number) => void) {
      ackListeners.add(listener);
      return () => ackListeners.delete(listener);
    },
    runPeriodic: (nowMs: number) => runPeriodic(nowMs),
    audit,

    alert(id: string): AlertView | null {
      const row = st.alertById.get(id);
      return row ? alertView(toAlert(row), screeningSummaryOf(row.screening_id)) : null;
    },
    alerts(f: AlertFilter): AlertView[] {
      const where: string[] = [];
      const args: Array<string | number> = [];
      if (f.status) {
        where.push('status = ?');
        args.push(f.status);
      }
      if (f.site) {
        where.push('site = ?');
        args.push(f.site);
      }
      if (f.checkpoint) {
        where.push('checkpoint = ?');
        args.push(f.checkpoint);
      }
      if (f.sinceMs !== undefined) {
        where.push('opened_ms >= ?');
        args.push(f.sinceMs);
      }
      const sql = `SELECT * FROM alerts ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY opened_ms DESC, id DESC LIMIT ?`;
      return db
        .prepare<Array<string | number>, AlertRow>(sql)
        .all(...args, f.limit)
        .map((r) => alertView(toAlert(r), screeningSummaryOf(r.screening_id)));
    },
    screenings(f: ScreeningFilter): ScreeningSummary[] {
      const where: string[] = [];
      const args: Array<string | number> = [];
      if (f.site) {
        where.push('site = ?');
        args.push(f.site);
      }
      if (f.checkpoint) {
        where.push('checkpoint = ?');
        args.push(f.checkpoint);
      }
      if (f.fromMs !== undefined) {
        where.push('ts_ms >= ?');
        args.push(f.fromMs);
      }
      if (f.toMs !== undefined) {
        where.push('ts_ms < ?');
        args.push(f.toMs);
      }
      if (f.decision) {
        where.push('decision = ?');
        args.push(f.decision);
      }
      const sql = `SELECT payload, ts_replaced FROM screenings ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY ts_ms DESC, id DESC LIMIT ?`;
      return db
        .prepare<Array<string | number>, { payload: string; ts_replaced: string | null }>(sql)
        .all(...args, f.limit)
        .map(summarizeRow);
    },
    devices(): DeviceView[] {
      return db.prepare<[], DeviceRow>('SELECT * FROM devices ORDER BY site, checkpoint').all().map(toDeviceView);
    },
    snapshot(screeningId: string): { jpeg: Buffer; site: string; checkpoint: string } | null {
      return (
        db
          .prepare<[string], { jpeg: Buffer; site: string; checkpoint: string }>('SELECT jpeg, site, checkpoint FROM snapshots WHERE screening_id = ?')
          .get(screeningId) ?? null
      );
    },
    auditLog(limit: number, beforeSeq?: number) {
      return db
        .prepare<[number, number], { seq: number; at_ms: number; actor: string; action: string; target: string | null; detail: string | null }>(
          'SELECT * FROM audit WHERE seq < ? ORDER BY seq DESC LIMIT ?',
        )
        .all(beforeSeq ?? Number.MAX_SAFE_INTEGER, limit)
        .map((r) => ({ seq: r.seq, at: new Date(r.at_ms).toISOString(), actor: r.actor, action: r.action, target: r.target, detail: r.detail ? JSON.parse(r.detail) : null }));
    },

    // --- live feed ----------------------------------------------------------------------------
    eventsAfter(seq: number, limit: number): LiveEvent[] {
      return db
        .prepare<[number, number], { seq: number; type: LiveEvent['type']; data: string }>('SELECT seq, type, data FROM events WHERE seq > ? ORDER BY seq LIMIT ?')
        .all(seq, limit)
        .map((r) => ({ seq: r.seq, type: r.type, data: JSON.parse(r.data) }));
    },
    /** Oldest and newest event seq (0 when none). */
    eventRange(): { first: number; last: number } {
      const r = db.prepare<[], { first: number | null; last: number | null }>('SELECT min(seq) AS first, max(seq) AS last FROM events').get()!;
      const last = r.last ?? (db.prepare<[], { seq: number }>("SELECT seq FROM sqlite_sequence WHERE name = 'events'").get()?.seq ?? 0);
      return { first: r.first ?? last + 1, last };
    },

    // --- time-series spool --------------------------------------------------------------------
    spoolHead(limit: number): SpoolRow[] {
      return db
        .prepare<[number], { seq: number; point: string; enqueued_ms: number }>('SELECT seq, point, enqueued_ms FROM series_spool ORDER BY seq LIMIT ?')
        .all(limit)
        .map((r) => ({ seq: r.seq, point: JSON.parse(r.point) as SeriesPoint, enqueuedMs: r.enqueued_ms }));
    },
    /** The batch [.., lastSeq] was accepted: drop it from the spool. */
    spoolDone(lastSeq: number): void {
      db.prepare('DELETE FROM series_spool WHERE seq <= ?').run(lastSeq);
    },
    /** One point the series store refuses for good: keep it aside (counted, not retried). */
    spoolReject: (seq: number, error: string, atMs: number) => spoolReject(seq, error, atMs),
    spoolDepth(): number {
      return db.prepare<[], { n: number }>('SELECT count(*) AS n FROM series_spool').get()!.n;
    },
    rejectedCount(): number {
      return db.prepare<[], { n: number }>('SELECT count(*) AS n FROM series_rejected').get()!.n;
    },

    retention: (nowMs: number, p: RetentionPolicy) => retention(nowMs, p),
  };
}

function summarizeRow(r: { payload: string; ts_replaced: string | null }): ScreeningSummary {
  return summarize(JSON.parse(r.payload) as Screening, r.ts_replaced ? (JSON.parse(r.ts_replaced) as ReplacedTimestamp[]) : null);
}

interface DeviceRow {
  site: string;
  checkpoint: string;
  status: DeviceView['status'];
  state: string | null;
  state_ts_ms: number | null;
  telemetry: string | null;
  last_seen_ms: number;
}

function toDeviceView(r: DeviceRow): DeviceView {
  const state = r.state ? (JSON.parse(r.state) as CheckpointState) : null;
  const t = r.telemetry ? (JSON.parse(r.telemetry) as Telemetry) : null;
  return {
    site: r.site,
    checkpoint: r.checkpoint,
    status: r.status,
    lastSeen: new Date(r.last_seen_ms).toISOString(),
    stateAt: iso(r.state_ts_ms),
    versions: state?.versions ?? null,
    model: state?.model ?? null,
    sources: state?.sources ?? null,
    calibration: state?.calibration ?? null,
    telemetry: t
      ? { ts: t.ts, fps: t.fps, stages: t.stages, queueDepth: t.queueDepth, cpuTempC: t.cpuTempC, ambientC: t.ambientC, blackbody: t.blackbody, rssMb: t.rssMb ?? null }
      : null,
  };
}
