/**
 * The live feed's events on PostgreSQL (the contract: ../events.ts). `seq` is an identity column:
 * never reused, but — unlike SQLite, where one writer commits at a time — two transactions can
 * commit their events out of seq order: a reader following `after(seq)` across several writing
 * gateways waits at holes (../../cluster/event-order.ts, postgres/event-follower.ts).
 */
import type { EventStore, LiveEvent } from '../events.js';
import { num, type Queryable } from './values.js';

/** The channel a committed transaction with events notifies (postgres/event-follower.ts listens). */
export const EVENTS_CHANNEL = 'checkpoint_events';

export function createPostgresEventStore(pool: Queryable): EventStore<'async'> {
  return {
    async append(type, data, atMs) {
      // Followers on other gateways wake on the notification, sent when this transaction commits
      // (several in one transaction are one: same channel, same payload).
      await pool.query(`WITH added AS (INSERT INTO events (type, data, at_ms) VALUES ($1, $2, $3) RETURNING seq) SELECT pg_notify('${EVENTS_CHANNEL}', '') FROM added`, [
        type,
        JSON.stringify(data),
        atMs,
      ]);
    },
    async after(seq, limit) {
      const { rows } = await pool.query<{ seq: string; type: LiveEvent['type']; data: unknown }>('SELECT seq, type, data FROM events WHERE seq > $1 ORDER BY seq LIMIT $2', [seq, limit]);
      return rows.map((r) => ({ seq: num(r.seq), type: r.type, data: r.data }));
    },
    async range() {
      const { rows } = await pool.query<{ first: string | null; last: string | null; given: string | null }>(
        `SELECT min(seq) AS first, max(seq) AS last,
           (SELECT last_value FROM pg_sequences WHERE schemaname = current_schema() AND sequencename = 'events_seq_seq') AS given
         FROM events`,
      );
      // pg_sequences.last_value: the last seq handed out, null when none was.
      const r = rows[0]!;
      const last = r.last !== null ? num(r.last) : num(r.given);
      return { first: r.first !== null ? num(r.first) : last + 1, last };
    },
    async deleteBefore(ms) {
      const result = await pool.query('DELETE FROM events WHERE at_ms < $1', [ms]);
      return result.rowCount ?? 0;
    },
  };
}
