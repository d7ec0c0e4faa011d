/**
 * Durable outbox (SQLite, WAL, synchronous=FULL): a screening is written here before anything
 * is sent, and removed only when the broker has acknowledged it (PUBACK). A broker outage or a
 * restart of the agent therefore loses nothing, and what was acknowledged is never resent.
 *
 * Bounded by count and by bytes (snapshots are ~30 KB JPEGs, screenings ~700 bytes): past
 * either cap, the oldest snapshots go first, then the oldest other messages; both are counted.
 */
import Database from 'better-sqlite3';

export interface OutboxMessage {
  seq: number;
  topic: string;
  payload: Buffer;
  qos: 0 | 1 | 2;
  createdMs: number;
}

export interface OutboxStoreOptions {
  /** Oldest messages are dropped past this many (an edge box has a small SD card). */
  maxMessages: number;
  /** ... and past this many payload bytes (snapshots first). */
  maxBytes?: number;
}

export const DEFAULT_OUTBOX_LIMITS: Required<OutboxStoreOptions> = { maxMessages: 100_000, maxBytes: 256 * 1024 * 1024 };

const isSnapshotTopic = (topic: string) => /\/snapshot\/[^/]+$/.test(topic);

export class OutboxStore {
  private readonly db: Database.Database;
  private readonly insert: Database.Statement;
  private readonly remove: Database.Statement;
  private readonly countStmt: Database.Statement;
  private readonly after: Database.Statement;
  private readonly bySeq: Database.Statement;
  private readonly oldest: Database.Statement;
  private readonly oldestSnapshots: Database.Statement;
  private readonly removeSized: Database.Statement;
  private readonly limits: Required<OutboxStoreOptions>;
  /** Payload bytes held (kept in step with inserts and deletes; summed once at open). */
  private bytes: number;
  /** Messages dropped because the outbox was full, since open (snapshots included). */
  dropped = 0;
  /** Of those, snapshots, and the payload bytes dropped. */
  droppedSnapshots = 0;
  droppedBytes = 0;

  constructor(file: string, options: OutboxStoreOptions = DEFAULT_OUTBOX_LIMITS) {
    this.limits = { ...DEFAULT_OUTBOX_LIMITS, ...options };
    this.db = new Database(file);
    this.db.pragma('journal_mode = WAL');
    // FULL: a message reported as stored survives a power cut, not only a crash.
    this.db.pragma('synchronous = FULL');
    this.db.exec(`CREATE TABLE IF NOT EXISTS outbox (
      seq INTEGER PRIMARY KEY AUTOINCREMENT,
      topic TEXT NOT NULL,
      payload BLOB NOT NULL,
      qos INTEGER NOT NULL,
      created_ms INTEGER NOT NULL)`);
    this.insert = this.db.prepare('INSERT INTO outbox (topic, payload, qos, created_ms) VALUES (?, ?, ?, ?)');
    this.remove = this.db.prepare('DELETE FROM outbox WHERE seq = ?');
    this.countStmt = this.db.prepare('SELECT count(*) AS n FROM outbox');
    this.after = this.db.prepare(
      'SELECT seq, topic, payload, qos, created_ms AS createdMs FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?',
    );
    this.bySeq = this.db.prepare('SELECT seq, topic, payload, qos, created_ms AS createdMs FROM outbox WHERE seq = ?');
    this.oldest = this.db.prepare('SELECT seq, topic, length(payload) AS size FROM outbox ORDER BY seq LIMIT ?');
    // Snapshot topics end in /snapshot/<id>; scanning from the oldest stops at the first few.
    this.oldestSnapshots = this.db.prepare(`SELECT seq, topic, length(payload) AS size FROM outbox WHERE topic GLOB '*/snapshot/*' ORDER BY seq LIMIT ?`);
    this.removeSized = this.db.prepare('DELETE FROM outbox WHERE seq = ? RETURNING length(payload) AS size');
    this.bytes = (this.db.prepare('SELECT coalesce(sum(length(payload)), 0) AS n FROM outbox').get() as { n: number }).n;
  }

  /** Drops the oldest snapshots, then the oldest messages, until both caps hold (inside a transaction). */
  private enforceLimits(): void {
    let count = this.count();
    const over = () => count > this.limits.maxMessages || this.bytes > this.limits.maxBytes;
    for (const candidates of [this.oldestSnapshots, this.oldest]) {
      while (over()) {
        const rows = candidates.all(256) as Array<{ seq: number; topic: string; size: number }>;
        if (rows.length === 0) break;
        for (const row of rows) {
          if (!over()) break;
          this.remove.run(row.seq);
          count--;
          this.bytes -= row.size;
          this.dropped++;
          this.droppedBytes += row.size;
          if (isSnapshotTopic(row.topic)) this.droppedSnapshots++;
        }
      }
    }
  }

  /** Stores messages atomically (a screening and its snapshot go together). */
  enqueue(messages: Array<Omit<OutboxMessage, 'seq' | 'createdMs'>>, now = Date.now()): number[] {
    const seqs = this.db.transaction(() => {
      const ids = messages.map((m) => Number(this.insert.run(m.topic, m.payload, m.qos, now).lastInsertRowid));
      this.bytes += messages.reduce((sum, m) => sum + m.payload.length, 0);
      this.enforceLimits();
      return ids;
    })();
    return seqs;
  }

  /** Up to `limit` messages with seq greater than `afterSeq`, oldest first. */
  peek(afterSeq: number, limit: number): OutboxMessage[] {
    return this.after.all(afterSeq, limit) as OutboxMessage[];
  }

  /** The message `seq`, unless it was acknowledged or dropped by the caps. */
  get(seq: number): OutboxMessage | undefined {
    return this.bySeq.get(seq) as OutboxMessage | undefined;
  }

  acknowledge(seq: number): void {
    // Already gone when the caps dropped it while it was in flight.
    const row = this.removeSized.get(seq) as { size: number } | undefined;
    if (row) this.bytes -= row.size;
  }

  /** Payload bytes waiting. */
  byteSize(): number {
    return this.bytes;
  }

  count(): number {
    return (this.countStmt.get() as { n: number }).n;
  }

  close(): void {
    this.db.close();
  }
}
