/**
 * Faults with the operational store on a real PostgreSQL (store.backend postgres), as faults.test.ts
 * does on SQLite: the gateway process killed with SIGKILL in the middle of ingest and started
 * again loses and duplicates nothing; InfluxDB stopped for a while: the spool grows in PostgreSQL
 * and drains, once, when InfluxDB is back.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { InfluxDB } from 'influx';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  findExecutable,
  freePort,
  influxdConfig,
  launchServer,
  logTail,
  makeTempDir,
  spawnServer,
  startInfluxd,
  startPostgres,
  waitFor,
  type InfluxdServer,
  type PostgresServer,
  type ServerProcess,
} from '@checkpoint/test-support';
import { createGateway } from '../src/index.js';
import { connectEdge, gatewayConfig, makeScreening, publishScreenings, startTestMosquitto } from './helpers/world.js';

const REPO = fileURLToPath(new URL('../../', import.meta.url));

async function influxCounts(influx: InfluxDB): Promise<{ n: number; d: number }> {
  const rows = (await influx.query('SELECT count("id") AS n, count(distinct("id")) AS d FROM "checkpoint_raw"."screening"')) as unknown as Array<{ n: number; d: number }>;
  return { n: rows[0]?.n ?? 0, d: rows[0]?.d ?? 0 };
}

/** A database of its own on the shared server, and a pool on it for the test's own queries. */
async function database(name: string): Promise<{ url: string; pool: pg.Pool; count(sql: string): Promise<number> }> {
  await postgres.createDatabase(name);
  const url = postgres.url.replace(/\/[^/]*$/, `/${name}`);
  const pool = new pg.Pool({ connectionString: url, max: 2 });
  pools.push(pool);
  return { url, pool, count: async (sql) => Number((await pool.query<{ n: string }>(sql)).rows[0]!.n) };
}

// Mosquitto, not our broker: see startTestMosquitto.
let broker: { url: string; close(): Promise<void> };
let postgres: PostgresServer;
const pools: pg.Pool[] = [];
beforeAll(async () => {
  [broker, postgres] = await Promise.all([startTestMosquitto(['gate-1']), startPostgres()]);
}, 120_000);
afterAll(async () => {
  await Promise.all(pools.map((p) => p.end()));
  await broker?.close();
  await postgres?.stop();
});

describe('gateway on PostgreSQL killed with SIGKILL mid-ingest', () => {
  let influxd: InfluxdServer;
  let child: ServerProcess | null = null;
  afterAll(async () => {
    await child?.stop({ signal: 'SIGKILL' });
    await influxd?.stop();
  });

  it('loses and duplicates nothing after a restart', async () => {
    const [db, influx] = await Promise.all([database('kill'), startInfluxd({ database: 'checkpoint' })]);
    influxd = influx;
    const dir = makeTempDir('gw-pg-kill');
    const dataDir = join(dir, 'data');
    const port = await freePort();
    const configFile = join(dir, 'gateway.json');
    const { dataDir: _d, mqtt, ...rest } = gatewayConfig({ dataDir, mqttUrl: broker.url, influxUrl: influxd.url });
    writeFileSync(configFile, JSON.stringify({ ...rest, mqtt: { ...mqtt, clientId: 'gw-pg-kill-test' }, series: { batchSize: 500, flushIntervalMs: 200, retryMinMs: 50, retryMaxMs: 1000 } }));
    // The store from the environment, as an operator would set it.
    const env = { ...process.env, CHECKPOINT_DATA_DIR: dataDir, CHECKPOINT_HTTP_PORT: String(port), CHECKPOINT_LOG_LEVEL: 'warn', CHECKPOINT_STORE: 'postgres', CHECKPOINT_POSTGRES_URL: db.url };
    const health = async () => (await (await fetch(`http://127.0.0.1:${port}/healthz`)).json()) as { store: { role: string }; series: { spoolDepth: number } };
    const start = async () => {
      const proc = spawnServer('node', [join(REPO, 'scripts/run-ts.mjs'), 'gateway/test/fixtures/gateway-process.ts', 'run', '--config', configFile], {
        logFile: join(dir, 'gateway.log'),
        env,
        cwd: REPO,
      });
      await waitFor(async () => (await fetch(`http://127.0.0.1:${port}/healthz`)).status === 200, { what: `gateway process healthy\n${logTail(join(dir, 'gateway.log'))}`, timeoutMs: 60_000 });
      return proc;
    };
    child = await start();

    const edge = await connectEdge(broker.url, 'gate-1');
    const screenings = Array.from({ length: 3000 }, (_, i) => makeScreening({ trackId: i, decision: i % 10 === 0 ? 'secondary_check' : 'pass' }));
    // A few in flight at a time, so that the stream is still going when the gateway dies.
    const publishing = publishScreenings(edge, screenings, 4);
    await waitFor(async () => (await db.count('SELECT count(*) AS n FROM screenings')) >= 300, { what: '300 screenings stored before the kill', timeoutMs: 60_000, intervalMs: 5 });
    await child.stop({ signal: 'SIGKILL' });
    // What the killed process had committed (the edge keeps publishing while the gateway is gone).
    const atKill = await db.count('SELECT count(*) AS n FROM screenings');
    const spooledAtKill = await db.count('SELECT count(*) AS n FROM series_spool');
    console.log(`PostgreSQL: SIGKILL after ${atKill} of ${screenings.length} screenings stored, ${spooledAtKill} points still spooled`);
    child = await start();
    await publishing;
    await edge.endAsync();

    await waitFor(async () => (await db.count('SELECT count(*) AS n FROM screenings')) === screenings.length, { what: 'all screenings in PostgreSQL after the restart', timeoutMs: 120_000 });
    await waitFor(async () => (await db.count('SELECT count(*) AS n FROM series_spool')) === 0, { what: 'spool drained', timeoutMs: 60_000 });
    expect(await db.count('SELECT count(DISTINCT id) AS n FROM screenings')).toBe(screenings.length);
    expect(await influxCounts(influxd.influx)).toEqual({ n: screenings.length, d: screenings.length });
    // One alert per referral, none twice.
    expect(await db.count('SELECT count(*) AS n FROM alerts')).toBe(300);
    expect(await db.count('SELECT count(DISTINCT screening_id) AS n FROM alerts')).toBe(300);
    expect((await health()).store.role).toBe('leader');
    expect(atKill).toBeGreaterThanOrEqual(300);
    expect(atKill).toBeLessThan(screenings.length);
    await child.stop();
    child = null;
  }, 300_000);
});

describe('InfluxDB stopped for a while (store on PostgreSQL)', () => {
  it('spools in PostgreSQL while InfluxDB is down and drains everything, once, when it is back', async () => {
    const db = await database('outage');
    // influxd on a fixed dir and port, so that it can be stopped and started again with its data.
    const dir = makeTempDir('gw-pg-influx-outage');
    const httpPort = await freePort();
    const configFile = join(dir, 'influxdb.conf');
    writeFileSync(configFile, influxdConfig({ dir, httpPort, rpcPort: await freePort() }));
    const launch = () =>
      launchServer({
        name: 'influxd',
        command: findExecutable('influxd', 'influxdb'),
        args: ['run', '-config', configFile],
        logFile: join(dir, 'influxd.log'),
        timeoutMs: 30_000,
        readyWhat: 'ping',
        isReady: async () => (await fetch(`http://127.0.0.1:${httpPort}/ping`)).status === 204,
      });
    let influxd = await launch();
    const influx = new InfluxDB({ host: '127.0.0.1', port: httpPort, database: 'checkpoint' });
    const gateway = await createGateway(
      gatewayConfig({
        dataDir: makeTempDir('gw-pg-outage-data'),
        mqttUrl: broker.url,
        influxUrl: `http://127.0.0.1:${httpPort}/checkpoint`,
        logLevel: process.env.GW_TEST_LOG ?? 'silent',
        store: { backend: 'postgres', postgres: { url: db.url, leaderRetryMs: 200, leaderCheckMs: 200 } },
      }),
    );
    const edge = await connectEdge(broker.url, 'gate-1');
    try {
      await waitFor(() => gateway.mqttConnected() && gateway.role() === 'leader', { what: 'gateway connected and leading' });
      const first = Array.from({ length: 300 }, (_, i) => makeScreening({ trackId: i }));
      await publishScreenings(edge, first);
      await waitFor(async () => (await influxCounts(influx)).n === 300, { what: 'first 300 in InfluxDB' });

      await influxd.stop();
      const second = Array.from({ length: 900 }, (_, i) => makeScreening({ trackId: i, decision: i % 3 === 0 ? 'invalid' : 'pass' }));
      await publishScreenings(edge, second);
      await waitFor(async () => (await gateway.store.screenings({ limit: 10_000 })).length === 1200, { what: 'all stored in PostgreSQL during the outage' });
      await waitFor(async () => {
        const health = (await (await fetch(`${gateway.url}/healthz`)).json()) as { status: string; series: { spoolDepth: number; writing: string } };
        return health.status === 'degraded' && health.series.writing === 'failing' && health.series.spoolDepth >= 900;
      }, { what: 'health says degraded with the points spooled' });
      expect(await db.count('SELECT count(*) AS n FROM series_spool')).toBeGreaterThanOrEqual(900);
      const errors = await gateway.metrics.registry.getSingleMetricAsString('checkpoint_gateway_series_write_errors_total');
      expect(errors).toMatch(/reason="unreachable"} [1-9]/);

      influxd = await launch();
      await waitFor(async () => (await gateway.spoolDepth()) === 0, { what: 'spool drained after InfluxDB returned', timeoutMs: 60_000 });
      expect(await influxCounts(influx)).toEqual({ n: 1200, d: 1200 });
      const ids = ((await influx.query('SELECT "id" FROM "checkpoint_raw"."screening"')) as unknown as Array<{ id: string }>).map((r) => r.id).sort();
      expect(ids).toEqual([...first, ...second].map((s) => s.id).sort());
    } finally {
      await edge.endAsync();
      await gateway.close();
      await influxd.stop();
    }
  }, 300_000);
});
