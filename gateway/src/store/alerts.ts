/**
 * Alerts: the records the alert workflow (alerts.ts, pure) opens, updates, escalates, groups and
 * closes. This module only keeps them; what changes and when is decided in ../alerts.ts.
 */
import type { Decision } from '@checkpoint/protocol';
import type { Alert, AlertKind, AlertStatus, Outcome } from '../alerts.js';
import type { Backend, Result } from './backend.js';
import type { Db } from './db.js';
import type { ScreeningSummary } from './screenings.js';
import { whereGiven } from './sql-filter.js';

export interface AlertFilter {
  status?: AlertStatus;
  site?: string;
  checkpoint?: string;
  sinceMs?: number;
  limit: number;
}

export interface AlertStore<B extends Backend = 'sync'> {
  /** Inserts or replaces the mutable fields of the alert with this id. */
  save(alert: Alert): Result<void, B>;
  get(id: string): Result<Alert | null, B>;
  /** The newest alert of this checkpoint and kind that is not closed. */
  activeOf(site: string, checkpoint: string, kind: AlertKind): Result<Alert | null, B>;
  /** Every alert not closed. */
  active(): Result<Alert[], B>;
  /** Open screening alerts for invalid screenings of a checkpoint, opened at or after `sinceMs`. */
  openInvalidSince(site: string, checkpoint: string, sinceMs: number): Result<Alert[], B>;
  /** Newest first (opened, then id). */
  list(f: AlertFilter): Result<Alert[], B>;
  /** Deletes closed alerts closed before `ms`; how many went. */
  deleteClosedBefore(ms: number): Result<number, B>;
}

/** An alert as a row of `alerts` (both backends). */
export interface AlertRow {
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

export function toAlert(r: AlertRow): Alert {
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

export function alertRow(a: Alert): AlertRow {
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

/** What the API, the live feed and OPC UA show of an alert. */
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

export function createSqliteAlertStore(db: Db): AlertStore {
  const st = {
    upsert: db.prepare(
      `INSERT INTO alerts (id, kind, severity, status, site, checkpoint, screening_id, decision, reasons, count, opened_ms, last_ms,
         resolved_ms, escalated_ms, ack_by, ack_ms, outcome, note, closed_ms, grouped_into)
       VALUES (@id, @kind, @severity, @status, @site, @checkpoint, @screening_id, @decision, @reasons, @count, @opened_ms, @last_ms,
         @resolved_ms, @escalated_ms, @ack_by, @ack_ms, @outcome, @note, @closed_ms, @grouped_into)
       ON CONFLICT(id) DO UPDATE SET status = excluded.status, reasons = excluded.reasons, count = excluded.count, last_ms = excluded.last_ms,
         resolved_ms = excluded.resolved_ms, escalated_ms = excluded.escalated_ms, ack_by = excluded.ack_by, ack_ms = excluded.ack_ms,
         outcome = excluded.outcome, note = excluded.note, closed_ms = excluded.closed_ms, grouped_into = excluded.grouped_into`,
    ),
    byId: db.prepare<[string], AlertRow>('SELECT * FROM alerts WHERE id = ?'),
    activeOf: db.prepare<[string, string, string], AlertRow>(
      `SELECT * FROM alerts WHERE site = ? AND checkpoint = ? AND kind = ? AND status != 'closed' ORDER BY opened_ms DESC LIMIT 1`,
    ),
    active: db.prepare<[], AlertRow>(`SELECT * FROM alerts WHERE status != 'closed'`),
    openInvalidSince: db.prepare<[string, string, number], AlertRow>(
      `SELECT * FROM alerts WHERE site = ? AND checkpoint = ? AND kind = 'screening' AND decision = 'invalid' AND status = 'open' AND opened_ms >= ?`,
    ),
    deleteClosedBefore: db.prepare(`DELETE FROM alerts WHERE status = 'closed' AND closed_ms < ?`),
  };
  return {
    save(alert) {
      st.upsert.run(alertRow(alert));
    },
    get(id) {
      const row = st.byId.get(id);
      return row ? toAlert(row) : null;
    },
    activeOf(site, checkpoint, kind) {
      const row = st.activeOf.get(site, checkpoint, kind);
      return row ? toAlert(row) : null;
    },
    active: () => st.active.all().map(toAlert),
    openInvalidSince: (site, checkpoint, sinceMs) => st.openInvalidSince.all(site, checkpoint, sinceMs).map(toAlert),
    list(f) {
      const { where, args } = whereGiven([
        ['status = ?', f.status],
        ['site = ?', f.site],
        ['checkpoint = ?', f.checkpoint],
        ['opened_ms >= ?', f.sinceMs],
      ]);
      const sql = `SELECT * FROM alerts ${where} ORDER BY opened_ms DESC, id DESC LIMIT ?`;
      return db
        .prepare<Array<string | number>, AlertRow>(sql)
        .all(...args, f.limit)
        .map(toAlert);
    },
    deleteClosedBefore: (ms) => st.deleteClosedBefore.run(ms).changes,
  };
}
