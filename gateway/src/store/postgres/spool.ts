/** The time-series spool on PostgreSQL (the contract: ../spool.ts). */
import type { SeriesPoint } from '../../series/points.js';
import type { SpoolStore } from '../spool.js';
import { num, type Queryable } from './values.js';

export function createPostgresSpoolStore(pool: Queryable): SpoolStore<'async'> {
  return {
    async enqueue(point, atMs) {
      await pool.query('INSERT INTO series_spool (point, enqueued_ms) VALUES ($1, $2)', [JSON.stringify(point), atMs]);
    },
    async head(limit) {
      const { rows } = await pool.query<{ seq: string; point: string; enqueued_ms: string }>('SELECT seq, point, enqueued_ms FROM series_spool ORDER BY seq LIMIT $1', [limit]);
      return rows.map((r) => ({ seq: num(r.seq), point: JSON.parse(r.point) as SeriesPoint, enqueuedMs: num(r.enqueued_ms) }));
    },
    async done(lastSeq) {
      await pool.query('DELETE FROM series_spool WHERE seq <= $1', [lastSeq]);
    },
    async reject(seq, error, atMs) {
      // One statement: the row leaves the spool and is kept aside, or neither.
      await pool.query(
        `WITH moved AS (DELETE FROM series_spool WHERE seq = $1 RETURNING seq, point)
         INSERT INTO series_rejected (seq, point, error, at_ms) SELECT seq, point, $2, $3 FROM moved
         ON CONFLICT (seq) DO UPDATE SET point = excluded.point, error = excluded.error, at_ms = excluded.at_ms`,
        [seq, error.slice(0, 1000), atMs],
      );
    },
    async depth() {
      return num((await pool.query<{ n: string }>('SELECT count(*) AS n FROM series_spool')).rows[0]?.n);
    },
    async rejectedCount() {
      return num((await pool.query<{ n: string }>('SELECT count(*) AS n FROM series_rejected')).rows[0]?.n);
    },
    async deleteRejectedBefore(ms) {
      return (await pool.query('DELETE FROM series_rejected WHERE at_ms < $1', [ms])).rowCount ?? 0;
    },
  };
}
