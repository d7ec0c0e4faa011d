/**
 * The gateway's PostgreSQL schema as numbered migrations, recorded in `schema_migrations`
 * (version, name, applied_at). `migratePostgres` applies the missing ones in order, in one
 * transaction, under an advisory lock, so that gateways starting together on one database apply
 * each migration once. Append-only, as the SQLite ones (../migrations.ts). Every aggregate has
 * its tables here (migration 3 completed them; 4 added provisioning).
 */
import type { Pool, PoolClient } from 'pg';

export interface PostgresMigration {
  version: number;
  name: string;
  sql: string;
}

export const POSTGRES_MIGRATIONS: readonly PostgresMigration[] = [
  {
    version: 1,
    name: 'events: the live feed (SSE ids are seq, never reused)',
    sql: `
      CREATE TABLE events (
        seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        type TEXT NOT NULL,
        data JSONB NOT NULL,
        at_ms BIGINT NOT NULL
      );
      CREATE INDEX events_by_time ON events (at_ms);
    `,
  },
  {
    version: 2,
    name: 'screenings, alerts, devices, snapshots, audit, spool, ingest_failed (as SQLite migration 1)',
    sql: `
      CREATE TABLE screenings (
        id TEXT PRIMARY KEY,
        ts_ms BIGINT NOT NULL,
        site TEXT NOT NULL,
        checkpoint TEXT NOT NULL,
        decision TEXT NOT NULL,
        mask TEXT NOT NULL,
        temperature_c DOUBLE PRECISION,
        payload TEXT NOT NULL,
        received_ms BIGINT NOT NULL,
        ts_replaced TEXT
      );
      CREATE INDEX screenings_by_time ON screenings (ts_ms);
      CREATE INDEX screenings_by_receipt ON screenings (received_ms);
      CREATE INDEX screenings_by_checkpoint ON screenings (site, checkpoint, ts_ms);

      CREATE TABLE alerts (
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
        opened_ms BIGINT NOT NULL,
        last_ms BIGINT NOT NULL,
        resolved_ms BIGINT,
        escalated_ms BIGINT,
        ack_by TEXT,
        ack_ms BIGINT,
        outcome TEXT,
        note TEXT,
        closed_ms BIGINT,
        grouped_into TEXT
      );
      CREATE UNIQUE INDEX alerts_one_per_screening ON alerts (screening_id) WHERE screening_id IS NOT NULL;
      CREATE INDEX alerts_by_place ON alerts (site, checkpoint, kind, opened_ms);
      CREATE INDEX alerts_by_time ON alerts (opened_ms);

      CREATE TABLE devices (
        site TEXT NOT NULL,
        checkpoint TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'unknown',
        state TEXT,
        state_ts_ms BIGINT,
        telemetry TEXT,
        last_seen_ms BIGINT NOT NULL,
        PRIMARY KEY (site, checkpoint)
      );

      CREATE TABLE snapshots (
        screening_id TEXT PRIMARY KEY,
        site TEXT NOT NULL,
        checkpoint TEXT NOT NULL,
        received_ms BIGINT NOT NULL,
        jpeg BYTEA NOT NULL
      );
      CREATE INDEX snapshots_by_time ON snapshots (received_ms);

      CREATE TABLE audit (
        seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        at_ms BIGINT NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT,
        detail TEXT
      );

      CREATE TABLE series_spool (
        seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        point TEXT NOT NULL,
        enqueued_ms BIGINT NOT NULL
      );
      CREATE TABLE series_rejected (
        seq BIGINT PRIMARY KEY,
        point TEXT NOT NULL,
        error TEXT NOT NULL,
        at_ms BIGINT NOT NULL
      );

      CREATE TABLE ingest_failed (
        seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        topic TEXT NOT NULL,
        payload BYTEA NOT NULL,
        error TEXT NOT NULL,
        at_ms BIGINT NOT NULL
      );
    `,
  },
  {
    version: 3,
    name: 'fleet tasks and robots, users and sessions (as SQLite migration 1)',
    sql: `
      CREATE TABLE fleet_tasks (
        id TEXT PRIMARY KEY,
        type TEXT NOT NULL,
        status TEXT NOT NULL,
        robot TEXT,
        alert_id TEXT,
        created_ms BIGINT NOT NULL,
        updated_ms BIGINT NOT NULL,
        task TEXT NOT NULL
      );
      CREATE INDEX fleet_tasks_by_status ON fleet_tasks (status, created_ms);
      CREATE TABLE fleet_robots (
        key TEXT PRIMARY KEY,
        updated_ms BIGINT NOT NULL,
        record TEXT NOT NULL
      );

      CREATE TABLE users (
        name TEXT PRIMARY KEY,
        role TEXT NOT NULL,
        password_hash TEXT NOT NULL,
        created_ms BIGINT NOT NULL,
        updated_ms BIGINT NOT NULL
      );
      -- "user" is reserved in PostgreSQL: the column is user_name here.
      CREATE TABLE sessions (
        token_hash TEXT PRIMARY KEY,
        user_name TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
        created_ms BIGINT NOT NULL,
        expires_ms BIGINT NOT NULL
      );
    `,
  },
  {
    version: 4,
    name: 'provisioning: checkpoints, enrollment tokens, model versions with their files, roll-outs (as provisioning/store.ts)',
    sql: `
      CREATE TABLE provisioned_devices (
        site TEXT NOT NULL,
        checkpoint TEXT NOT NULL,
        status TEXT NOT NULL,
        broker_user TEXT,
        registered_by TEXT NOT NULL,
        registered_ms BIGINT NOT NULL,
        enrolled_ms BIGINT,
        revoked_ms BIGINT,
        PRIMARY KEY (site, checkpoint)
      );
      CREATE TABLE enrollment_tokens (
        token_hash TEXT PRIMARY KEY,
        site TEXT NOT NULL,
        checkpoint TEXT NOT NULL,
        created_ms BIGINT NOT NULL,
        expires_ms BIGINT NOT NULL,
        used_ms BIGINT,
        invalidated_ms BIGINT
      );
      CREATE INDEX enrollment_tokens_by_device ON enrollment_tokens (site, checkpoint);
      CREATE TABLE model_versions (
        name TEXT NOT NULL,
        version TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        size_bytes BIGINT NOT NULL,
        file TEXT NOT NULL,
        published_by TEXT NOT NULL,
        published_ms BIGINT NOT NULL,
        PRIMARY KEY (name, version)
      );
      -- The files themselves, apart from the list (which is read often): any gateway serves any version.
      CREATE TABLE model_files (
        name TEXT NOT NULL,
        version TEXT NOT NULL,
        bytes BYTEA NOT NULL,
        PRIMARY KEY (name, version),
        FOREIGN KEY (name, version) REFERENCES model_versions (name, version)
      );
      CREATE TABLE rollouts (
        id TEXT PRIMARY KEY,
        status TEXT NOT NULL,
        created_ms BIGINT NOT NULL,
        updated_ms BIGINT NOT NULL,
        rollout TEXT NOT NULL
      );
      CREATE INDEX rollouts_by_status ON rollouts (status, created_ms);
    `,
  },
];

/** Any constant shared by every gateway: the advisory lock that serialises migrations. */
const MIGRATION_LOCK = 0x636b7074; // "ckpt"

export interface PostgresMigrationReport {
  from: number;
  to: number;
  applied: string[];
}

export async function migratePostgres(pool: Pool, migrations: readonly PostgresMigration[] = POSTGRES_MIGRATIONS): Promise<PostgresMigrationReport> {
  const latest = migrations.reduce((max, m) => Math.max(max, m.version), 0);
  const client: PoolClient = await pool.connect();
  try {
    await client.query('BEGIN');
    try {
      await client.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
      await client.query(`CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())`);
      const { rows } = await client.query<{ v: number | null }>('SELECT max(version) AS v FROM schema_migrations');
      const from = rows[0]?.v ?? 0;
      if (from > latest) throw new Error(`database schema version ${from} is newer than this gateway knows (${latest}): use the gateway that wrote it`);
      const pending = migrations.filter((m) => m.version > from).sort((a, b) => a.version - b.version);
      for (const m of pending) {
        await client.query(m.sql);
        await client.query('INSERT INTO schema_migrations (version, name) VALUES ($1, $2)', [m.version, m.name]);
      }
      await client.query('COMMIT');
      return { from, to: Math.max(from, ...pending.map((m) => m.version)), applied: pending.map((m) => `${m.version}: ${m.name}`) };
    } catch (error) {
      await client.query('ROLLBACK');
      throw error;
    }
  } finally {
    client.release();
  }
}
