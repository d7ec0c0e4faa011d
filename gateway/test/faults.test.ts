/**
 * Faults, with real servers: the gateway process killed with SIGKILL in the middle of ingest and
 * started again; InfluxDB stopped for a while and started again. In both, every screening ends
 * up exactly once in InfluxDB and in the API, and the spool drains.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { InfluxDB } from 'influx';
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
  waitFor,
  type InfluxdServer,
  type ServerProcess,
} from '@checkpoint/test-support';
import { createGateway } from '../src/index.js';
import { openDatabase } from '../src/store/db.js';
import { createUserStore } from '../src/store/users.js';
import { API_PASSWORD, ApiClient, connectEdge, gatewayConfig, makeScreening, publishScreenings, startTestMosquitto } from './helpers/world.js';

const REPO = fileURLToPath(new URL('../../', import.meta.url));

async function influxCounts(influx: InfluxDB): Promise<{ n: number; d: number }> {
  const rows = (await influx.query('SELECT count("id") AS n, count(distinct("id")) AS d FROM "checkpoint_raw"."screening"')) as unknown as Array<{ n: number; d: number }>;
  return { n: rows[0]?.n ?? 0, d: rows[0]?.d ?? 0 };
}

// Mosquitto, not our broker: see startTestMosquitto.
let broker: { url: string; close(): Promise<void> };
beforeAll(async () => {
  broker = await startTestMosquitto(['gate-1']);
});
afterAll(async () => {
  await broker?.close();
});

describe('gateway killed with SIGKILL mid-ingest', () => {
  let influxd: InfluxdServer;
  let child: ServerProcess | null = null;
  afterAll(async () => {
    await child?.stop({ signal: 'SIGKILL' });
    await influxd?.stop();
  });

  it('loses and duplicates nothing after a restart', async () => {
    influxd = await startInfluxd({ database: 'checkpoint' });
    const dir = makeTempDir('gw-kill');
    const dataDir = join(dir, 'data');
    const port = await freePort();
    const db = openDatabase(dataDir);
    await createUserStore(db).add({ name: 'guard', role: 'guard' }, API_PASSWORD);
    db.close();
    const configFile = join(dir, 'gateway.json');
    const { dataDir: _d, mqtt, ...rest } = gatewayConfig({ dataDir, mqttUrl: broker.url, influxUrl: influxd.url });
    writeFileSync(configFile, JSON.stringify({ ...rest, mqtt: { ...mqtt, clientId: 'gw-kill-test' }, series: { batchSize: 500, flushIntervalMs: 200, retryMinMs: 50, retryMaxMs: 1000 } }));
    const env = { ...process.env, CHECKPOINT_DATA_DIR: dataDir, CHECKPOINT_HTTP_PORT: String(port), CHECKPOINT_LOG_LEVEL: 'warn' };
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
    const api = await ApiClient.login(`http://127.0.0.1:${port}`, 'guard');
    const storedCount = async () => (await api.get('/api/screenings?limit=10000')).body.screenings.length as number;

    const edge = await connectEdge(broker.url, 'gate-1');
    const screenings = Array.from({ length: 4000 }, (_, i) => makeScreening({ trackId: i, decision: i % 10 === 0 ? 'secondary_check' : 'pass' }));
    // A few in flight at a time, so that the stream is still going when the gateway dies.
    const publishing = publishScreenings(edge, screenings, 4);
    const watch = openDatabase(dataDir);
    const stored = watch.prepare<[], { n: number }>('SELECT count(*) AS n FROM screenings');
    await waitFor(() => stored.get()!.n >= 400, { what: '400 screenings stored before the kill', timeoutMs: 60_000, intervalMs: 5 });
    watch.close();
    await child.stop({ signal: 'SIGKILL' });
    // What the killed process had committed (the edge keeps publishing while the gateway is gone).
    const dead = openDatabase(dataDir);
    const atKill = dead.prepare<[], { n: number }>('SELECT count(*) AS n FROM screenings').get()!.n;
    const spooledAtKill = dead.prepare<[], { n: number }>('SELECT count(*) AS n FROM series_spool').get()!.n;
    dead.close();
    console.log(`SIGKILL after ${atKill} of ${screenings.length} screenings stored, ${spooledAtKill} points still spooled`);
    child = await start();
    await publishing;
    await edge.endAsync();

    await waitFor(async () => (await storedCount()) === screenings.length, { what: 'all screenings in the API after the restart', timeoutMs: 120_000 });
    await waitFor(async () => ((await (await fetch(`http://127.0.0.1:${port}/healthz`)).json()) as { series: { spoolDepth: number } }).series.spoolDepth === 0, {
      what: 'spool drained',
      timeoutMs: 60_000,
    });
    expect(await influxCounts(influxd.influx)).toEqual({ n: screenings.length, d: screenings.length });
    const alerts = (await api.get('/api/alerts?limit=1000')).body.alerts as Array<{ screeningId: string }>;
    expect(alerts).toHaveLength(400);
    expect(new Set(alerts.map((a) => a.screeningId)).size).toBe(400);
    expect(atKill).toBeGreaterThanOrEqual(400);
    expect(atKill).toBeLessThan(screenings.length);
    await child.stop();
    child = null;
  }, 300_000);
});

describe('InfluxDB stopped for a while', () => {
  it('spools while InfluxDB is down and drains everything, once, when it is back', async () => {
    // influxd on a fixed dir and port, so that it can be stopped and started again with its data.
    const dir = makeTempDir('gw-influx-outage');
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
    const gateway = await createGateway(gatewayConfig({ dataDir: makeTempDir('gw-outage-data'), mqttUrl: broker.url, influxUrl: `http://127.0.0.1:${httpPort}/checkpoint`, logLevel: process.env.GW_TEST_LOG ?? 'silent' }));
    const edge = await connectEdge(broker.url, 'gate-1');
    try {
      await waitFor(() => gateway.mqttConnected(), { what: 'gateway connected' });
      const first = Array.from({ length: 500 }, (_, i) => makeScreening({ trackId: i }));
      await publishScreenings(edge, first);
      // The gateway created the database and its retention policy on start.
      await waitFor(async () => (await influxCounts(influx)).n === 500, { what: 'first 500 in InfluxDB' });

      await influxd.stop();
      const second = Array.from({ length: 1500 }, (_, i) => makeScreening({ trackId: i, decision: i % 3 === 0 ? 'invalid' : 'pass' }));
      await publishScreenings(edge, second);
      await waitFor(() => gateway.store.screenings({ limit: 10_000 }).length === 2000, { what: 'all stored in SQLite during the outage' });
      await waitFor(async () => {
        const health = (await (await fetch(`${gateway.url}/healthz`)).json()) as { status: string; series: { spoolDepth: number; writing: string } };
        return health.status === 'degraded' && health.series.writing === 'failing' && health.series.spoolDepth >= 1500;
      }, { what: 'health says degraded with the points spooled' });
      const errors = await gateway.metrics.registry.getSingleMetricAsString('checkpoint_gateway_series_write_errors_total');
      expect(errors).toMatch(/reason="unreachable"} [1-9]/);
      await new Promise((resolve) => setTimeout(resolve, 1500)); // a few retries with backoff

      influxd = await launch();
      await waitFor(() => gateway.spoolDepth() === 0, { what: 'spool drained after InfluxDB returned', timeoutMs: 60_000 });
      expect(await influxCounts(influx)).toEqual({ n: 2000, d: 2000 });
      const ids = ((await influx.query('SELECT "id" FROM "checkpoint_raw"."screening"')) as unknown as Array<{ id: string }>).map((r) => r.id).sort();
      expect(ids).toEqual([...first, ...second].map((s) => s.id).sort());
    } finally {
      await edge.endAsync();
      await gateway.close();
      await influxd.stop();
    }
  }, 300_000);
});

describe('points InfluxDB refuses', () => {
  it('isolates the refused points (field type conflict), keeps them aside, and writes the rest', async () => {
    const influxd = await startInfluxd({ database: 'checkpoint' });
    const gateway = await createGateway(gatewayConfig({ dataDir: makeTempDir('gw-reject'), mqttUrl: broker.url, influxUrl: influxd.url }));
    try {
      await waitFor(() => gateway.mqttConnected(), { what: 'gateway connected' });
      // Someone wrote blackbodyOffsetC as a string into today's shard: our float values now conflict.
      await influxd.influx.writePoints([{ measurement: 'screening', tags: { site: 'hq', checkpoint: 'gate-1', decision: 'pass', mask: 'mask' }, fields: { blackbodyOffsetC: 'x' } }], { retentionPolicy: 'checkpoint_raw' });
      const edge = await connectEdge(broker.url, 'gate-1');
      const screenings = Array.from({ length: 200 }, (_, i) => makeScreening({ trackId: i, blackbody: i % 4 === 0 ? { setC: 35, measuredC: 34.8, offsetC: 0.2 } : null }));
      await publishScreenings(edge, screenings);
      await edge.endAsync();
      await waitFor(() => gateway.spoolDepth() === 0 && gateway.store.screenings({ limit: 1000 }).length === 200, { what: 'spool empty' });
      expect(await influxCounts(influxd.influx)).toEqual({ n: 150, d: 150 });
      const rejected = await gateway.metrics.registry.getSingleMetricAsString('checkpoint_gateway_series_rejected_points');
      expect(rejected).toContain('checkpoint_gateway_series_rejected_points 50');
    } finally {
      await gateway.close();
      await influxd.stop();
    }
  }, 120_000);
});
