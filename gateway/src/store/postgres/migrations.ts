/**
 * The gateway's PostgreSQL schema as numbered migrations, recorded in `schema_migrations`
 * (version, name, applied_at). `migratePostgres` applies the missing ones in order, in one
 * transaction, under an advisory lock, so that gateways starting together on one database apply
 * each migration once. Append-only, as the SQLite ones (../migrations.ts). Aggregates move here
 * one by one; so far: the live feed's events.
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
