/** MQTT messages set aside because storing them failed for a reason retrying cannot cure (kept, counted, acknowledged). */
import type { Backend, Result } from './backend.js';
import type { Db } from './db.js';

export interface FailedMessage {
  seq: number;
  topic: string;
  payload: Buffer;
  error: string;
  atMs: number;
}

export interface FailedMessageStore<B extends Backend = 'sync'> {
  /** Topic and error are cut to 1000 characters. */
  add(topic: string, payload: Buffer, error: string, atMs: number): Result<void, B>;
  /** Oldest first. */
  list(limit: number): Result<FailedMessage[], B>;
  /** Deletes those set aside before `ms`; how many went. */
  deleteBefore(ms: number): Result<number, B>;
}

export function createSqliteFailedMessageStore(db: Db): FailedMessageStore {
  const st = {
    add: db.prepare('INSERT INTO ingest_failed (topic, payload, error, at_ms) VALUES (?, ?, ?, ?)'),
    list: db.prepare<[number], { seq: number; topic: string; payload: Buffer; error: string; at_ms: number }>('SELECT * FROM ingest_failed ORDER BY seq LIMIT ?'),
    deleteBefore: db.prepare('DELETE FROM ingest_failed WHERE at_ms < ?'),
  };
  return {
    add(topic, payload, error, atMs) {
      st.add.run(topic.slice(0, 1000), payload, error.slice(0, 1000), atMs);
    },
    list: (limit) => st.list.all(limit).map((r) => ({ seq: r.seq, topic: r.topic, payload: r.payload, error: r.error, atMs: r.at_ms })),
    deleteBefore: (ms) => st.deleteBefore.run(ms).changes,
  };
}
