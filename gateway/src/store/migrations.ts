/**
 * The gateway's SQLite schema as numbered migrations. `PRAGMA user_version` records the last one
 * applied; `migrate` applies the missing ones in order, all in one transaction, when the file is
 * opened. Migrations are append-only: a released one is never edited (add a new one).
 *
 * Migration 1 is the schema as it was before versioning (user_version 0, tables made with
 * CREATE TABLE IF NOT EXISTS): written with IF NOT EXISTS, and adding the one column that came
 * later, so that a file made by any earlier gateway upgrades in place.
 */
import type { Db } from './db.js';

export interface Migration {
  version: number;
  name: string;
  up(db: Db): void;
}

const BASELINE = `
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

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'baseline: the schema before versioned migrations',
    up(db) {
      db.exec(BASELINE);
      // Files made before ts_replaced existed (CREATE TABLE IF NOT EXISTS left them as they were).
      const columns = db.prepare<[], { name: string }>("SELECT name FROM pragma_table_info('screenings')").all().map((c) => c.name);
      if (!columns.includes('ts_replaced')) db.exec('ALTER TABLE screenings ADD COLUMN ts_replaced TEXT');
    },
  },
  {
    version: 2,
    name: 'alerts: index for the active alert of a checkpoint and kind (looked up on every non-pass screening and state)',
    up(db) {
      db.exec('CREATE INDEX alerts_by_place ON alerts(site, checkpoint, kind, opened_ms)');
    },
  },
];

export interface MigrationReport {
  from: number;
  to: number;
  applied: string[];
}

/**
 * Applies the migrations above `user_version`, in one transaction (all or none). Refuses a file
 * from a newer gateway (a version it does not know), rather than guess at its schema.
 */
export function migrate(db: Db, migrations: readonly Migration[] = MIGRATIONS): MigrationReport {
  const latest = migrations.reduce((max, m) => Math.max(max, m.version), 0);
  // Up to date (the usual case, and a second connection such as a backup or a test's): no write lock taken.
  const current = db.pragma('user_version', { simple: true }) as number;
  if (current === latest) return { from: current, to: current, applied: [] };
  const run = db.transaction((): MigrationReport => {
    const from = db.pragma('user_version', { simple: true }) as number;
    if (from > latest) throw new Error(`database schema version ${from} is newer than this gateway knows (${latest}): use the gateway that wrote it, or restore a backup`);
    const pending = migrations.filter((m) => m.version > from).sort((a, b) => a.version - b.version);
    for (const m of pending) {
      m.up(db);
      db.pragma(`user_version = ${m.version}`);
    }
    return { from, to: Math.max(from, ...pending.map((m) => m.version)), applied: pending.map((m) => `${m.version}: ${m.name}`) };
  });
  // IMMEDIATE: two processes opening the same file at once must not both apply a migration.
  return run.immediate();
}
