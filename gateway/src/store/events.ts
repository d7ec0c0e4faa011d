/**
 * The live feed's events: appended in the transaction of what they report, read by sequence
 * number (the SSE event id, for Last-Event-ID resume). Sequence numbers are never reused, even
 * after retention deleted every event.
 */
import type { Backend, Result } from './backend.js';
import type { Db } from './db.js';

export interface LiveEvent {
  seq: number;
  type: 'alert' | 'screening' | 'device' | 'robot' | 'task';
  data: unknown;
}

export interface EventStore<B extends Backend = 'sync'> {
  append(type: LiveEvent['type'], data: unknown, atMs: number): Result<void, B>;
  /** Oldest first. */
  after(seq: number, limit: number): Result<LiveEvent[], B>;
  /** Oldest and newest seq; with no events, `last` is the last seq ever given (0 if none) and `first` = last + 1. */
  range(): Result<{ first: number; last: number }, B>;
  /** Deletes events older than `ms`; how many went. */
  deleteBefore(ms: number): Result<number, B>;
}

export function createSqliteEventStore(db: Db): EventStore {
  const st = {
    append: db.prepare('INSERT INTO events (type, data, at_ms) VALUES (?, ?, ?)'),
    after: db.prepare<[number, number], { seq: number; type: LiveEvent['type']; data: string }>('SELECT seq, type, data FROM events WHERE seq > ? ORDER BY seq LIMIT ?'),
    range: db.prepare<[], { first: number | null; last: number | null }>('SELECT min(seq) AS first, max(seq) AS last FROM events'),
    lastGiven: db.prepare<[], { seq: number }>("SELECT seq FROM sqlite_sequence WHERE name = 'events'"),
    deleteBefore: db.prepare('DELETE FROM events WHERE at_ms < ?'),
  };
  return {
    append(type, data, atMs) {
      st.append.run(type, JSON.stringify(data), atMs);
    },
    after: (seq, limit) => st.after.all(seq, limit).map((r) => ({ seq: r.seq, type: r.type, data: JSON.parse(r.data) })),
    range() {
      const r = st.range.get()!;
      const last = r.last ?? st.lastGiven.get()?.seq ?? 0;
      return { first: r.first ?? last + 1, last };
    },
    deleteBefore: (ms) => st.deleteBefore.run(ms).changes,
  };
}
