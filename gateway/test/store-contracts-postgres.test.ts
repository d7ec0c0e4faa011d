/**
 * The aggregate stores' contract tests (test/helpers/store-contracts.ts) on a real PostgreSQL 15
 * (test-support startPostgres: initdb in a temp dir, free port), for every aggregate. Each test
 * gets its own schema, migrated as a gateway would migrate its database. Also: migrations are recorded and applied once.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startPostgres, type PostgresServer } from '@checkpoint/test-support';
import { createPostgresAlertStore } from '../src/store/postgres/alerts.js';
import { createPostgresAuditStore } from '../src/store/postgres/audit.js';
import { createPostgresDeviceStore } from '../src/store/postgres/devices.js';
import { createPostgresEventStore } from '../src/store/postgres/events.js';
import { createPostgresFailedMessageStore } from '../src/store/postgres/failed-messages.js';
import { createPostgresFleetStore } from '../src/store/postgres/fleet.js';
import { createPostgresUserStore } from '../src/store/postgres/users.js';
import { createPostgresProvisioningStore } from '../src/store/postgres/provisioning.js';
import { createPostgresScreeningStore } from '../src/store/postgres/screenings.js';
import { createPostgresSnapshotStore } from '../src/store/postgres/snapshots.js';
import { createPostgresSpoolStore } from '../src/store/postgres/spool.js';
import { migratePostgres, POSTGRES_MIGRATIONS } from '../src/store/postgres/migrations.js';
import {
  alertStoreContract,
  auditStoreContract,
  deviceStoreContract,
  eventStoreContract,
  failedMessageStoreContract,
  fleetStoreContract,
  screeningStoreContract,
  snapshotStoreContract,
  spoolStoreContract,
  userStoreContract,
  provisioningStoreContract,
  type Factory,
} from './helpers/store-contracts.js';

let server: PostgresServer;
beforeAll(async () => {
  server = await startPostgres();
}, 90_000);
afterAll(async () => {
  await server?.stop();
});

let schemas = 0;
/** A pool on a new, empty schema of the test server (search_path set for every connection). */
async function freshSchema(): Promise<pg.Pool> {
  const schema = `contract_${++schemas}`;
  const admin = new pg.Client({ host: server.socketDir, port: server.port, user: server.user, database: server.database });
  await admin.connect();
  try {
    await admin.query(`CREATE SCHEMA ${schema}`);
  } finally {
    await admin.end();
  }
  return new pg.Pool({ host: server.socketDir, port: server.port, user: server.user, database: server.database, max: 4, options: `-c search_path=${schema}` });
}

function postgres<S>(create: (pool: pg.Pool) => S): Factory<S> {
  return async () => {
    const pool = await freshSchema();
    await migratePostgres(pool);
    return { store: create(pool), close: () => pool.end() };
  };
}

screeningStoreContract('PostgreSQL', postgres(createPostgresScreeningStore));
alertStoreContract('PostgreSQL', postgres(createPostgresAlertStore));
deviceStoreContract('PostgreSQL', postgres(createPostgresDeviceStore));
snapshotStoreContract('PostgreSQL', postgres(createPostgresSnapshotStore));
auditStoreContract('PostgreSQL', postgres(createPostgresAuditStore));
eventStoreContract('PostgreSQL', postgres(createPostgresEventStore));
spoolStoreContract('PostgreSQL', postgres(createPostgresSpoolStore));
failedMessageStoreContract('PostgreSQL', postgres(createPostgresFailedMessageStore));
fleetStoreContract(
  'PostgreSQL',
  postgres((pool) => ({ fleet: createPostgresFleetStore(pool), spool: createPostgresSpoolStore(pool), events: createPostgresEventStore(pool), audit: createPostgresAuditStore(pool) })),
);
userStoreContract('PostgreSQL', postgres((pool) => createPostgresUserStore(pool)));
provisioningStoreContract('PostgreSQL', postgres((pool) => createPostgresProvisioningStore(pool)));

describe('PostgreSQL migrations', () => {
  it('records each migration once, in one transaction, and refuses a newer database', async () => {
    const pool = await freshSchema();
    try {
      const latest = Math.max(...POSTGRES_MIGRATIONS.map((m) => m.version));
      // Two gateways starting together: the advisory lock lets one apply, the other finds it done.
      const reports = await Promise.all([migratePostgres(pool), migratePostgres(pool)]);
      expect(reports.map((r) => r.applied.length).sort()).toEqual([0, POSTGRES_MIGRATIONS.length]);
      const { rows } = await pool.query<{ version: number }>('SELECT version FROM schema_migrations ORDER BY version');
      expect(rows.map((r) => r.version)).toEqual(POSTGRES_MIGRATIONS.map((m) => m.version));
      // A failing migration leaves nothing behind.
      await expect(
        migratePostgres(pool, [...POSTGRES_MIGRATIONS, { version: latest + 1, name: 'half', sql: 'CREATE TABLE half (x INT); SELECT * FROM no_such_table' }]),
      ).rejects.toThrow(/no_such_table/);
      expect((await pool.query("SELECT to_regclass('half') AS t")).rows[0]).toEqual({ t: null });
      await pool.query('INSERT INTO schema_migrations (version, name) VALUES ($1, $2)', [latest + 7, 'from a newer gateway']);
      await expect(migratePostgres(pool)).rejects.toThrow(`database schema version ${latest + 7} is newer than this gateway knows (${latest})`);
    } finally {
      await pool.end();
    }
  });
});
