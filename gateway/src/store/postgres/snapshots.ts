/** Face snapshots on PostgreSQL (the contract: ../snapshots.ts). */
import type { Snapshot, SnapshotStore } from '../snapshots.js';
import type { Queryable } from './values.js';

export function createPostgresSnapshotStore(pool: Queryable): SnapshotStore<'async'> {
  return {
    async insert(where, screeningId, jpeg, receivedMs) {
      const r = await pool.query(
        'INSERT INTO snapshots (screening_id, site, checkpoint, received_ms, jpeg) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (screening_id) DO NOTHING',
        [screeningId, where.site, where.checkpoint, receivedMs, jpeg],
      );
      return (r.rowCount ?? 0) > 0;
    },
    async get(screeningId) {
      const { rows } = await pool.query<Snapshot>('SELECT jpeg, site, checkpoint FROM snapshots WHERE screening_id = $1', [screeningId]);
      return rows[0] ?? null;
    },
    async deleteReceivedBefore(ms) {
      return (await pool.query('DELETE FROM snapshots WHERE received_ms < $1', [ms])).rowCount ?? 0;
    },
  };
}
