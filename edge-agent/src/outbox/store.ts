/**
 * Durable outbox (SQLite, WAL, synchronous=FULL): a screening is written here before anything
 * is sent, and removed only when the broker has acknowledged it (PUBACK). A broker outage or a
 * restart of the agent therefore loses nothing, and what was acknowledged is never resent.
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
}

export class OutboxStore {
  private readonly db: Database.Database;
  private readonly insert: Database.Statement;
  private readonly remove: Database.Statement;
  private readonly countStmt: Database.Statement;
  private readonly after: Database.Statement;
  private readonly trim: Database.Statement;
  /** Messages dropped because the outbox was full, since open. */
  dropped = 0;

  constructor(
    file: string,
    private readonly options: OutboxStoreOptions = { maxMessages: 100_000 },
  ) {
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
    this.trim = this.db.prepare('DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox ORDER BY seq LIMIT ?)');
  }

  /** Stores messages atomically (a screening and its snapshot go together). */
  enqueue(messages: Array<Omit<OutboxMessage, 'seq' | 'createdMs'>>, now = Date.now()): number[] {
    const seqs = this.db.transaction(() => {
      const ids = messages.map((m) => Number(this.insert.run(m.topic, m.payload, m.qos, now).lastInsertRowid));
      const excess = this.count() - this.options.maxMessages;
      if (excess > 0) {
        this.trim.run(excess);
        this.dropped += excess;
      }
      return ids;
    })();
    return seqs;
  }

  /** Up to `limit` messages with seq greater than `afterSeq`, oldest first. */
  peek(afterSeq: number, limit: number): OutboxMessage[] {
    return this.after.all(afterSeq, limit) as OutboxMessage[];
  }

  acknowledge(seq: number): void {
    this.remove.run(seq);
  }

  count(): number {
    return (this.countStmt.get() as { n: number }).n;
  }

  close(): void {
    this.db.close();
  }
}
