/** Messages set aside by ingest, on PostgreSQL (the contract: ../failed-messages.ts). */
import type { FailedMessageStore } from '../failed-messages.js';
import { num, type Queryable } from './values.js';

export function createPostgresFailedMessageStore(pool: Queryable): FailedMessageStore<'async'> {
  return {
    async add(topic, payload, error, atMs) {
      await pool.query('INSERT INTO ingest_failed (topic, payload, error, at_ms) VALUES ($1, $2, $3, $4)', [topic.slice(0, 1000), payload, error.slice(0, 1000), atMs]);
    },
    async list(limit) {
      const { rows } = await pool.query<{ seq: string; topic: string; payload: Buffer; error: string; at_ms: string }>('SELECT * FROM ingest_failed ORDER BY seq LIMIT $1', [limit]);
      return rows.map((r) => ({ seq: num(r.seq), topic: r.topic, payload: r.payload, error: r.error, atMs: num(r.at_ms) }));
    },
    async deleteBefore(ms) {
      return (await pool.query('DELETE FROM ingest_failed WHERE at_ms < $1', [ms])).rowCount ?? 0;
    },
  };
}
