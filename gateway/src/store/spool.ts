/**
 * The time-series spool: points queued in the transaction of what they describe, leaving only
 * once the series store accepted them; points it refused for good are kept aside (counted).
 */
import type { SeriesPoint } from '../series/points.js';
import type { Backend, Result } from './backend.js';
import type { Db } from './db.js';

export interface SpoolRow {
  seq: number;
  point: SeriesPoint;
  enqueuedMs: number;
}

export interface SpoolStore<B extends Backend = 'sync'> {
  enqueue(point: SeriesPoint, atMs: number): Result<void, B>;
  /** Oldest first. */
  head(limit: number): Result<SpoolRow[], B>;
  /** The rows up to `lastSeq` were accepted: they leave the spool. */
  done(lastSeq: number): Result<void, B>;
  /** One point the series store refuses for good: moved aside (counted, not retried). */
  reject(seq: number, error: string, atMs: number): Result<void, B>;
  depth(): Result<number, B>;
  rejectedCount(): Result<number, B>;
  /** Deletes refused points kept since before `ms`; how many went. */
  deleteRejectedBefore(ms: number): Result<number, B>;
}

export function createSqliteSpoolStore(db: Db): SpoolStore {
  const st = {
    enqueue: db.prepare('INSERT INTO series_spool (point, enqueued_ms) VALUES (?, ?)'),
    head: db.prepare<[number], { seq: number; point: string; enqueued_ms: number }>('SELECT seq, point, enqueued_ms FROM series_spool ORDER BY seq LIMIT ?'),
    done: db.prepare('DELETE FROM series_spool WHERE seq <= ?'),
    keepRejected: db.prepare('INSERT OR REPLACE INTO series_rejected (seq, point, error, at_ms) SELECT seq, point, ?, ? FROM series_spool WHERE seq = ?'),
    remove: db.prepare('DELETE FROM series_spool WHERE seq = ?'),
    depth: db.prepare<[], { n: number }>('SELECT count(*) AS n FROM series_spool'),
    rejectedCount: db.prepare<[], { n: number }>('SELECT count(*) AS n FROM series_rejected'),
    deleteRejectedBefore: db.prepare('DELETE FROM series_rejected WHERE at_ms < ?'),
  };
  const reject = db.transaction((seq: number, error: string, atMs: number) => {
    st.keepRejected.run(error.slice(0, 1000), atMs, seq);
    st.remove.run(seq);
  });
  return {
    enqueue(point, atMs) {
      st.enqueue.run(JSON.stringify(point), atMs);
    },
    head: (limit) => st.head.all(limit).map((r) => ({ seq: r.seq, point: JSON.parse(r.point) as SeriesPoint, enqueuedMs: r.enqueued_ms })),
    done(lastSeq) {
      st.done.run(lastSeq);
    },
    reject(seq, error, atMs) {
      reject(seq, error, atMs);
    },
    depth: () => st.depth.get()!.n,
    rejectedCount: () => st.rejectedCount.get()!.n,
    deleteRejectedBefore: (ms) => st.deleteRejectedBefore.run(ms).changes,
  };
}
