/**
 * The live feed's events followed in the database (src/store/postgres/event-follower.ts) on a real
 * PostgreSQL 15: events written by two gateways' stores reach a follower once each, in seq order;
 * an event committed before an earlier seq's transaction is held back until it commits; the hole
 * a rolled-back transaction leaves is passed after the wait.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startPostgres, waitFor, type PostgresServer } from '@checkpoint/test-support';
import type { LiveEvent } from '../src/store/events.js';
import { followPostgresEvents, type EventFollower } from '../src/store/postgres/event-follower.js';
import { createPostgresEventStore } from '../src/store/postgres/events.js';
import { migratePostgres } from '../src/store/postgres/migrations.js';
import { createPostgresOperationalStore } from '../src/store/postgres/operational.js';
import { makeScreening } from './helpers/world.js';

let server: PostgresServer;
let schemas = 0;
const pools: pg.Pool[] = [];
const followers: EventFollower[] = [];
beforeAll(async () => {
  server = await startPostgres();
}, 90_000);
afterAll(async () => {
  await Promise.all(followers.map((f) => f.stop()));
  await Promise.all(pools.map((p) => p.end()));
  await server?.stop();
});

/** Connection settings on a new, migrated schema. */
async function freshSchema(): Promise<pg.ClientConfig> {
  const conn = { host: server.socketDir, port: server.port, user: server.user, database: server.database };
  const schema = `follow_${++schemas}`;
  const admin = new pg.Client(conn);
  await admin.connect();
  await admin.query(`CREATE SCHEMA ${schema}`);
  await admin.end();
  const config = { ...conn, options: `-c search_path=${schema}` };
  const pool = pool_(config);
  await migratePostgres(pool);
  return config;
}
function pool_(config: pg.ClientConfig): pg.Pool {
  const pool = new pg.Pool({ ...config, max: 4 });
  pools.push(pool);
  return pool;
}
function follow(config: pg.ClientConfig, gapWaitMs: number) {
  const delivered: LiveEvent[] = [];
  const follower = followPostgresEvents({ connection: config, events: createPostgresEventStore(pool_(config)), fromSeq: 0, onEvents: (e) => delivered.push(...e), gapWaitMs });
  followers.push(follower);
  return { follower, delivered };
}
const policy = { escalateAfterMs: 60_000, invalidStormCount: 3, invalidStormWindowMs: 60_000 };

describe('following the live feed in PostgreSQL', () => {
  it('delivers the events two gateways write, each once, in seq order', async () => {
    const config = await freshSchema();
    const { delivered } = follow(config, 2_000);
    let n = 0;
    const [a, b] = [createPostgresOperationalStore(pool_(config), policy, () => `a-${++n}`), createPostgresOperationalStore(pool_(config), policy, () => `b-${++n}`)];
    const screenings = Array.from({ length: 60 }, (_, i) => makeScreening({ checkpoint: `gate-${i % 4}`, decision: i % 6 === 0 ? 'secondary_check' : 'pass' }));
    await Promise.all(screenings.map((s, i) => (i % 2 ? a : b).ingestScreening(s, 1_000 + i)));
    const all = await a.eventsAfter(0, 1_000);
    await waitFor(() => delivered.length >= all.length, { what: `${all.length} events delivered (have ${delivered.length})`, timeoutMs: 30_000 });
    expect(delivered.map((e) => e.seq)).toEqual(all.map((e) => e.seq));
    expect(new Set(delivered.filter((e) => e.type === 'screening').map((e) => (e.data as { id: string }).id))).toEqual(new Set(screenings.map((s) => s.id)));
  }, 90_000);

  it('holds back an event committed before an earlier one until that one commits', async () => {
    const config = await freshSchema();
    // A wait far longer than the test: the hole must be waited out, not given up on.
    const { follower, delivered } = follow(config, 600_000);
    const pool = pool_(config);
    const early = await pool.connect();
    try {
      await early.query('BEGIN');
      await createPostgresEventStore(early).append('device', { n: 'early' }, 1);
      await createPostgresEventStore(pool).append('device', { n: 'later' }, 2);
      await waitFor(() => follower.waiting(), { what: 'follower waiting at the hole', timeoutMs: 30_000 });
      expect(delivered).toEqual([]);
      await early.query('COMMIT');
      await waitFor(() => delivered.length === 2, { what: 'both delivered once the early one committed', timeoutMs: 30_000 });
      expect(delivered.map((e) => e.data)).toEqual([{ n: 'early' }, { n: 'later' }]);
    } finally {
      early.release();
    }
  }, 90_000);

  it('passes the hole a rolled-back transaction leaves, after the wait', async () => {
    const config = await freshSchema();
    const { delivered } = follow(config, 300);
    const pool = pool_(config);
    const rolledBack = await pool.connect();
    try {
      await createPostgresEventStore(pool).append('device', { n: 'first' }, 1);
      await rolledBack.query('BEGIN');
      await createPostgresEventStore(rolledBack).append('device', { n: 'never' }, 2);
      await rolledBack.query('ROLLBACK');
      await createPostgresEventStore(pool).append('device', { n: 'after the hole' }, 3);
      await waitFor(() => delivered.length === 2, { what: 'the event after a rolled-back one delivered after the wait', timeoutMs: 30_000 });
      expect(delivered.map((e) => e.data)).toEqual([{ n: 'first' }, { n: 'after the hole' }]);
      expect(delivered[1]!.seq).toBe(delivered[0]!.seq + 2);
    } finally {
      rolledBack.release();
    }
  }, 90_000);
});
