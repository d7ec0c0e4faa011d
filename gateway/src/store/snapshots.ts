/** Face snapshots (JPEG, health data) by screening id; the first one sent for a screening is kept. */
import type { Backend, Result } from './backend.js';
import type { Db } from './db.js';

export interface Snapshot {
  jpeg: Buffer;
  site: string;
  checkpoint: string;
}

export interface SnapshotStore<B extends Backend = 'sync'> {
  /** False when this screening has a snapshot already (nothing changed). */
  insert(where: { site: string; checkpoint: string }, screeningId: string, jpeg: Buffer, receivedMs: number): Result<boolean, B>;
  get(screeningId: string): Result<Snapshot | null, B>;
  /** Deletes those received before `ms`; how many went. */
  deleteReceivedBefore(ms: number): Result<number, B>;
}

export function createSqliteSnapshotStore(db: Db): SnapshotStore {
  const st = {
    insert: db.prepare('INSERT OR IGNORE INTO snapshots (screening_id, site, checkpoint, received_ms, jpeg) VALUES (?, ?, ?, ?, ?)'),
    get: db.prepare<[string], Snapshot>('SELECT jpeg, site, checkpoint FROM snapshots WHERE screening_id = ?'),
    deleteBefore: db.prepare('DELETE FROM snapshots WHERE received_ms < ?'),
  };
  return {
    insert: (where, screeningId, jpeg, receivedMs) => st.insert.run(screeningId, where.site, where.checkpoint, receivedMs, jpeg).changes > 0,
    get: (screeningId) => st.get.get(screeningId) ?? null,
    deleteReceivedBefore: (ms) => st.deleteBefore.run(ms).changes,
  };
}
