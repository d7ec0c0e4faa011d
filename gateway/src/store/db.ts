/**
 * The gateway's SQLite file (better-sqlite3, WAL): operational state, the time-series spool and,
 * without InfluxDB, the series themselves. One file so that "stored" and "queued for the time
 * series" commit together.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';

export type Db = Database.Database;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS screenings (
  id TEXT PRIMARY KEY,
  ts_ms INTEGER NOT NULL,
  site TEXT NOT NULL,
  checkpoint TEXT NOT NULL,
  decision TEXT NOT NULL,
  mask TEXT NOT NULL,
  temperature_c REAL,
  payload TEXT NOT NULL,
  received_ms INTEGER NOT NULL,
  -- JSON [{path, original, problem}] when the device's ts named no instant and ts_ms is the receive time.
  ts_replaced TEXT
);
CREATE INDEX IF NOT EXISTS screenings_by_time ON screenings(ts_ms);
CREATE INDEX IF NOT EXISTS screenings_by_receipt ON screenings(received_ms);
CREATE INDEX IF NOT EXISTS screenings_by_checkpoint ON screenings(site, checkpoint, ts_ms);

-- The time-series writer's durable queue: rows leave only once the series store accepted them.
CREATE TABLE IF NOT EXISTS series_spool (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  point TEXT NOT NULL,
  enqueued_ms INTEGER NOT NULL
);
-- Points the series store refused one by one (e.g. a field type conflict): kept, counted, not retried.
CREATE TABLE IF NOT EXISTS series_rejected (
  seq INTEGER PRIMARY KEY,
  point TEXT NOT NULL,
  error TEXT NOT NULL,
  at_ms INTEGER NOT NULL
);

-- Messages that failed to store for a reason retrying cannot cure (a bug): kept, counted, acknowledged.
CREATE TABLE IF NOT EXISTS ingest_failed (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  topic TEXT NOT NULL,
  payload BLOB NOT NULL,
  error TEXT NOT NULL,
  at_ms INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS devices (
  site TEXT NOT NULL,
  checkpoint TEXT NOT NULL,
  status TEXT NOT NULL DEFAULT 'unknown',
  state TEXT,
  state_ts_ms INTEGER,
  telemetry TEXT,
  last_seen_ms INTEGER NOT NULL,
  PRIMARY KEY (site, checkpoint)
);

CREATE TABLE IF NOT EXISTS alerts (
  id TEXT PRIMARY KEY,
  kind TEXT NOT NULL,
  severity TEXT NOT NULL,
  status TEXT NOT NULL,
  site TEXT NOT NULL,
  checkpoint TEXT NOT NULL,
  screening_id TEXT,
  decision TEXT,
  reasons TEXT NOT NULL,
  count INTEGER NOT NULL,
  opened_ms INTEGER NOT NULL,
  last_ms INTEGER NOT NULL,
  resolved_ms INTEGER,
  escalated_ms INTEGER,
  ack_by TEXT,
  ack_ms INTEGER,
  outcome TEXT,
  note TEXT,
  closed_ms INTEGER,
  grouped_into TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS alerts_one_per_screening ON alerts(screening_id) WHERE screening_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS alerts_active ON alerts(status, site, checkpoint, kind);
CREATE INDEX IF NOT EXISTS alerts_by_time ON alerts(opened_ms);

CREATE TABLE IF NOT EXISTS snapshots (
  screening_id TEXT PRIMARY KEY,
  site TEXT NOT NULL,
  checkpoint TEXT NOT NULL,
  received_ms INTEGER NOT NULL,
  jpeg BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS snapshots_by_time ON snapshots(received_ms);

CREATE TABLE IF NOT EXISTS users (
  name TEXT PRIMARY KEY,
  role TEXT NOT NULL,
  password_hash TEXT NOT NULL,
  created_ms INTEGER NOT NULL,
  updated_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
  token_hash TEXT PRIMARY KEY,
  user TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
  created_ms INTEGER NOT NULL,
  expires_ms INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS audit (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  at_ms INTEGER NOT NULL,
  actor TEXT NOT NULL,
  action TEXT NOT NULL,
  target TEXT,
  detail TEXT
);

-- The live feed: SSE event ids are these sequence numbers (Last-Event-ID resume).
CREATE TABLE IF NOT EXISTS events (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  type TEXT NOT NULL,
  data TEXT NOT NULL,
  at_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_time ON events(at_ms);

-- Robot fleet: every task (full snapshot with its history, JSON) and the last known record of each robot.
CREATE TABLE IF NOT EXISTS fleet_tasks (
  id TEXT PRIMARY KEY,
  type TEXT NOT NULL,
  status TEXT NOT NULL,
  robot TEXT,
  alert_id TEXT,
  created_ms INTEGER NOT NULL,
  updated_ms INTEGER NOT NULL,
  task TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS fleet_tasks_by_status ON fleet_tasks(status, created_ms);
CREATE TABLE IF NOT EXISTS fleet_robots (
  key TEXT PRIMARY KEY,
  updated_ms INTEGER NOT NULL,
  record TEXT NOT NULL
);

-- Time series when no InfluxDB is configured. One row per (measurement, series, time), like InfluxDB.
CREATE TABLE IF NOT EXISTS series_points (
  measurement TEXT NOT NULL,
  series_key TEXT NOT NULL,
  time_ns TEXT NOT NULL,
  ts_ms INTEGER NOT NULL,
  site TEXT,
  checkpoint TEXT,
  tags TEXT NOT NULL,
  fields TEXT NOT NULL,
  PRIMARY KEY (measurement, series_key, time_ns)
);
CREATE INDEX IF NOT EXISTS series_points_by_time ON series_points(measurement, ts_ms);
`;

export function openDatabase(dataDir: string, options: { synchronous?: 'normal' | 'full'; busyTimeoutMs?: number } = {}): Db {
  mkdirSync(dataDir, { recursive: true });
  const file = join(dataDir, 'gateway.sqlite');
  let db: Db;
  try {
    db = new Database(file);
  } catch (err) {
    throw new Error(`cannot open ${file}: ${(err as Error).message}`, { cause: err });
  }
  db.pragma('journal_mode = WAL');
  db.pragma(`synchronous = ${options.synchronous === 'full' ? 'FULL' : 'NORMAL'}`);
  db.pragma('foreign_keys = ON');
  // Waiting for another process's lock blocks the event loop (API, health): keep it short; ingest
  // retries asynchronously, the series writer backs off, the API answers 503.
  db.pragma(`busy_timeout = ${Math.trunc(options.busyTimeoutMs ?? 200)}`);
  db.exec(SCHEMA);
  migrate(db);
  return db;
}

/** Columns added after a table was first created (CREATE TABLE IF NOT EXISTS leaves old files as they were). */
function migrate(db: Db): void {
  const columns = db.prepare<[], { name: string }>('SELECT name FROM pragma_table_info(\'screenings\')').all().map((c) => c.name);
  if (!columns.includes('ts_replaced')) db.exec('ALTER TABLE screenings ADD COLUMN ts_replaced TEXT');
}
