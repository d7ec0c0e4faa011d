/** Alert records on PostgreSQL (the contract: ../alerts.ts). */
import { alertRow, toAlert, type AlertRow, type AlertStore } from '../alerts.js';
import { num, numOrNull, type Queryable } from './values.js';

type Int8 = 'opened_ms' | 'last_ms' | 'resolved_ms' | 'escalated_ms' | 'ack_ms' | 'closed_ms';
type PgAlertRow = Omit<AlertRow, Int8> & Record<Int8, string | null>;
const fromPg = (r: PgAlertRow) =>
  toAlert({
    ...r,
    opened_ms: num(r.opened_ms),
    last_ms: num(r.last_ms),
    resolved_ms: numOrNull(r.resolved_ms),
    escalated_ms: numOrNull(r.escalated_ms),
    ack_ms: numOrNull(r.ack_ms),
    closed_ms: numOrNull(r.closed_ms),
  });

const COLUMNS = [
  'id', 'kind', 'severity', 'status', 'site', 'checkpoint', 'screening_id', 'decision', 'reasons', 'count', 'opened_ms', 'last_ms',
  'resolved_ms', 'escalated_ms', 'ack_by', 'ack_ms', 'outcome', 'note', 'closed_ms', 'grouped_into',
] as const satisfies ReadonlyArray<keyof AlertRow>;
const MUTABLE = ['status', 'reasons', 'count', 'last_ms', 'resolved_ms', 'escalated_ms', 'ack_by', 'ack_ms', 'outcome', 'note', 'closed_ms', 'grouped_into'] as const;
const UPSERT = `INSERT INTO alerts (${COLUMNS.join(', ')}) VALUES (${COLUMNS.map((_, i) => `$${i + 1}`).join(', ')})
  ON CONFLICT (id) DO UPDATE SET ${MUTABLE.map((c) => `${c} = excluded.${c}`).join(', ')}`;

export function createPostgresAlertStore(pool: Queryable): AlertStore<'async'> {
  return {
    async save(alert) {
      const row = alertRow(alert);
      await pool.query(UPSERT, COLUMNS.map((c) => row[c]));
    },
    async get(id) {
      const { rows } = await pool.query<PgAlertRow>('SELECT * FROM alerts WHERE id = $1', [id]);
      return rows[0] ? fromPg(rows[0]) : null;
    },
    async activeOf(site, checkpoint, kind) {
      const { rows } = await pool.query<PgAlertRow>(
        `SELECT * FROM alerts WHERE site = $1 AND checkpoint = $2 AND kind = $3 AND status != 'closed' ORDER BY opened_ms DESC LIMIT 1`,
        [site, checkpoint, kind],
      );
      return rows[0] ? fromPg(rows[0]) : null;
    },
    async active() {
      return (await pool.query<PgAlertRow>(`SELECT * FROM alerts WHERE status != 'closed'`)).rows.map(fromPg);
    },
    async openInvalidSince(site, checkpoint, sinceMs) {
      const { rows } = await pool.query<PgAlertRow>(
        `SELECT * FROM alerts WHERE site = $1 AND checkpoint = $2 AND kind = 'screening' AND decision = 'invalid' AND status = 'open' AND opened_ms >= $3`,
        [site, checkpoint, sinceMs],
      );
      return rows.map(fromPg);
    },
    async list(f) {
      const where: string[] = [];
      const args: Array<string | number> = [];
      const add = (sql: string, value: string | number) => {
        args.push(value);
        where.push(sql.replace('?', `$${args.length}`));
      };
      if (f.status) add('status = ?', f.status);
      if (f.site) add('site = ?', f.site);
      if (f.checkpoint) add('checkpoint = ?', f.checkpoint);
      if (f.sinceMs !== undefined) add('opened_ms >= ?', f.sinceMs);
      args.push(f.limit);
      const { rows } = await pool.query<PgAlertRow>(
        `SELECT * FROM alerts ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY opened_ms DESC, id COLLATE "C" DESC LIMIT $${args.length}`,
        args,
      );
      return rows.map(fromPg);
    },
    async deleteClosedBefore(ms) {
      return (await pool.query(`DELETE FROM alerts WHERE status = 'closed' AND closed_ms < $1`, [ms])).rowCount ?? 0;
    },
  };
}
