/** Screenings on PostgreSQL (the contract: ../screenings.ts). */
import { summarizeRow, type PayloadRow, type ScreeningStore } from '../screenings.js';
import { num, type Queryable } from './values.js';

export function createPostgresScreeningStore(pool: Queryable): ScreeningStore<'async'> {
  return {
    async insert(s, receivedMs, tsReplaced) {
      const tsMs = Date.parse(s.ts);
      if (!Number.isFinite(tsMs)) throw new Error(`screening ${s.id}: ts is not an instant`);
      const r = await pool.query(
        `INSERT INTO screenings (id, ts_ms, site, checkpoint, decision, mask, temperature_c, payload, received_ms, ts_replaced)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (id) DO NOTHING`,
        [s.id, tsMs, s.site, s.checkpoint, s.decision, s.mask, s.temperatureC, JSON.stringify(s), receivedMs, tsReplaced?.length ? JSON.stringify(tsReplaced) : null],
      );
      return (r.rowCount ?? 0) > 0;
    },
    async summary(id) {
      const { rows } = await pool.query<PayloadRow>('SELECT payload, ts_replaced FROM screenings WHERE id = $1', [id]);
      return rows[0] ? summarizeRow(rows[0]) : null;
    },
    async list(f) {
      const where: string[] = [];
      const args: Array<string | number> = [];
      const add = (sql: string, value: string | number) => {
        args.push(value);
        where.push(sql.replace('?', `$${args.length}`));
      };
      if (f.site) add('site = ?', f.site);
      if (f.checkpoint) add('checkpoint = ?', f.checkpoint);
      if (f.fromMs !== undefined) add('ts_ms >= ?', f.fromMs);
      if (f.toMs !== undefined) add('ts_ms < ?', f.toMs);
      if (f.decision) add('decision = ?', f.decision);
      args.push(f.limit);
      const { rows } = await pool.query<PayloadRow>(
        `SELECT payload, ts_replaced FROM screenings ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY ts_ms DESC, id COLLATE "C" DESC LIMIT $${args.length}`,
        args,
      );
      return rows.map(summarizeRow);
    },
    async countInvalid(site, checkpoint, fromMs, toMs, exceptId) {
      const { rows } = await pool.query<{ n: string }>(
        `SELECT count(*) AS n FROM screenings WHERE site = $1 AND checkpoint = $2 AND decision = 'invalid' AND ts_ms BETWEEN $3 AND $4 AND id != $5`,
        [site, checkpoint, fromMs, toMs, exceptId],
      );
      return num(rows[0]?.n);
    },
    async deleteReceivedBefore(ms) {
      return (await pool.query('DELETE FROM screenings WHERE received_ms < $1', [ms])).rowCount ?? 0;
    },
  };
}
