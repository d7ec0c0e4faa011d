/* eslint-disable @typescript-eslint/no-explicit-any -- JSON bodies of API responses, checked by the tests that read them */
/**
 * Timestamps that match the wire pattern but name no instant (a leap second, month 13), on every
 * channel, against real parts (our broker, influxd, the gateway with a site map): each message
 * is stored at the gateway's receive time and flagged, alerts still open, nothing is counted as a
 * duplicate, and the series writer keeps going. A poison point already in the spool (as the old
 * code wrote them) is set aside and counted, for InfluxDB and for SQLite series.
 */
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import mqtt, { type MqttClient } from 'mqtt';
import { createBroker, openUserStore, type Broker, type UserStore } from '@checkpoint/broker';
import { checkpointTopics, vda5050Topic, type Command } from '@checkpoint/protocol';
import { makeTempDir, startInfluxd, waitFor, type InfluxdServer } from '@checkpoint/test-support';
import { createGateway, type Gateway } from '../../src/index.js';
import { API_PASSWORD, ApiClient, BROKER_PASSWORD, gatewayConfig, makeScreening } from '../helpers/world.js';
import { FLEET_MAP, MANUFACTURER, metricValue, rawState } from '../fleet-world.js';

const LEAP = '2024-12-31T23:59:60Z';
const MONTH_13 = '2024-13-45T25:61:61Z';
const where = { site: 'hq', checkpoint: 'gate-1' };
const robot = { manufacturer: MANUFACTURER, serialNumber: 'BOT-1' };

let dir: string;
let users: UserStore;
let broker: Broker;
let brokerUrl: string;
let influxd: InfluxdServer;
let gateway: Gateway;
let edge: MqttClient;
let guard: ApiClient;
let engineer: ApiClient;
let dispatcher: ApiClient;

async function connect(username: string): Promise<MqttClient> {
  const client = mqtt.connect(brokerUrl, { username, password: BROKER_PASSWORD, clientId: `${username}-${Math.random().toString(36).slice(2, 8)}`, reconnectPeriod: 200 });
  await new Promise<void>((resolve, reject) => {
    client.once('connect', () => resolve());
    client.once('error', reject);
  });
  return client;
}

/** Spool a point the way the gateway before this fix did for a bad ts ("NaN000000"), through a second connection. */
function spoolPoisonPoint(dataDir: string): void {
  const db = new Database(join(dataDir, 'gateway.sqlite'));
  try {
    db.pragma('busy_timeout = 5000');
    const point = { measurement: 'telemetry', tags: where, fields: { fps: 9, queueDepth: 0 }, timeNs: 'NaN000000' };
    db.prepare('INSERT INTO series_spool (point, enqueued_ms) VALUES (?, ?)').run(JSON.stringify(point), Date.now());
  } finally {
    db.close();
  }
}

beforeAll(async () => {
  dir = makeTempDir('gw-bad-ts');
  users = openUserStore(join(dir, 'users.sqlite'), { mosquittoHashIterations: 0 });
  await users.add({ name: 'gw', role: 'gateway' }, BROKER_PASSWORD);
  await users.add({ name: 'edge-gate-1', role: 'edge', site: 'hq', checkpoint: 'gate-1' }, BROKER_PASSWORD);
  await users.add({ name: 'robot-bot-1', role: 'robot', robot }, BROKER_PASSWORD);
  [broker, influxd] = await Promise.all([
    createBroker({ config: { dataDir: dir, host: '127.0.0.1', mqtt: { port: 0 }, metrics: { port: null }, logLevel: 'silent', sysIntervalS: 0, persistence: 'memory' }, users }),
    startInfluxd({ database: 'checkpoint' }),
  ]);
  brokerUrl = `mqtt://127.0.0.1:${broker.ports.mqtt}`;
  gateway = await createGateway(
    gatewayConfig({ dataDir: join(dir, 'gateway'), mqttUrl: brokerUrl, influxUrl: influxd.url, fleet: { map: FLEET_MAP, tickMs: 200 }, commands: { timeoutMs: 5000 } }),
  );
  for (const role of ['guard', 'dispatcher', 'engineer'] as const) await gateway.users.add({ name: role, role }, API_PASSWORD);
  await waitFor(() => gateway.mqttConnected(), { what: 'gateway connected' });
  edge = await connect('edge-gate-1');
  [guard, engineer, dispatcher] = await Promise.all(['guard', 'engineer', 'dispatcher'].map((u) => ApiClient.login(gateway.url, u)));
}, 120_000);

afterAll(async () => {
  await edge?.endAsync();
  await gateway?.close();
  await broker?.close();
  users?.close();
  await influxd?.stop();
});

describe('timestamps that name no instant', () => {
  it('a feverish screening is stored at the receive time, flagged, alerted, and reaches InfluxDB (never a "duplicate")', async () => {
    const fevers = [{ ...makeScreening({ decision: 'secondary_check' }), ts: LEAP }, { ...makeScreening({ decision: 'secondary_check' }), ts: MONTH_13 }];
    const before = Date.now();
    for (const s of fevers) await edge.publishAsync(checkpointTopics.screening(s), JSON.stringify(s), { qos: 1 });
    const ok = makeScreening({ decision: 'pass' });
    await edge.publishAsync(checkpointTopics.screening(ok), JSON.stringify(ok), { qos: 1 });

    await waitFor(async () => (await guard.get('/api/screenings?limit=100')).body.screenings.length === 3, { what: 'three screenings stored' });
    const stored = (await guard.get('/api/screenings?limit=100')).body.screenings as any[];
    for (const [i, s] of fevers.entries()) {
      const row = stored.find((r) => r.id === s.id);
      expect(Date.parse(row.ts)).toBeGreaterThanOrEqual(before - 1);
      expect(row.tsReplaced).toEqual([{ path: '/ts', original: [LEAP, MONTH_13][i], problem: expect.stringMatching(/not a real instant/) }]);
      expect(row.temperatureC).toBe(s.temperatureC);
    }
    expect(stored.find((r) => r.id === ok.id).tsReplaced).toBeUndefined();
    const alerts = (await guard.get('/api/alerts?limit=100')).body.alerts as any[];
    for (const s of fevers) expect(alerts.some((a) => a.screeningId === s.id && a.status === 'open')).toBe(true);
    expect(await metricValue(gateway.url, 'checkpoint_gateway_messages_total', 'channel="screening",result="duplicate"')).toBe(0);
    expect(await metricValue(gateway.url, 'checkpoint_gateway_replaced_timestamps_total', 'channel="screening"')).toBe(2);

    await waitFor(async () => {
      const rows = await influxd.influx.query<{ id: string; tsReplaced: string | null }>('SELECT "id", "tsReplaced" FROM "checkpoint_raw"."screening"');
      return rows.length === 3;
    }, { what: 'three screenings in InfluxDB' });
    const rows = await influxd.influx.query<{ id: string; tsReplaced: string | null }>('SELECT "id", "tsReplaced" FROM "checkpoint_raw"."screening"');
    expect(rows.filter((r) => r.tsReplaced !== null).map((r) => r.id).sort()).toEqual(fevers.map((s) => s.id).sort());
  });

  it('telemetry and state with such a ts are stored and flagged, and the writer keeps writing', async () => {
    const telemetry = { ts: LEAP, ...where, fps: 9, stages: { detect: 40 }, queueDepth: 0, cpuTempC: 50, ambientC: 22, blackbody: null };
    await edge.publishAsync(checkpointTopics.telemetry(where), JSON.stringify(telemetry), { qos: 1 });
    const state = { ts: MONTH_13, ...where, status: 'online' };
    await edge.publishAsync(checkpointTopics.state(where), JSON.stringify(state), { qos: 1, retain: true });
    await waitFor(async () => {
      const d = ((await guard.get('/api/devices')).body.devices as any[]).find((x) => x.checkpoint === 'gate-1');
      return d?.status === 'online' && d?.telemetry?.fps === 9;
    }, { what: 'device online with telemetry' });
    expect(await metricValue(gateway.url, 'checkpoint_gateway_replaced_timestamps_total', 'channel="telemetry"')).toBe(1);
    expect(await metricValue(gateway.url, 'checkpoint_gateway_replaced_timestamps_total', 'channel="state"')).toBe(1);
    // A screening after them still reaches InfluxDB: the writer was not stopped.
    const after = makeScreening();
    await edge.publishAsync(checkpointTopics.screening(after), JSON.stringify(after), { qos: 1 });
    await waitFor(async () => (await influxd.influx.query(`SELECT "id" FROM "checkpoint_raw"."screening" WHERE "id" = '${after.id}'`)).length === 1, { what: 'later screening in InfluxDB' });
    const telemetryRows = await influxd.influx.query<{ tsReplaced: string }>('SELECT "fps", "tsReplaced" FROM "checkpoint_raw"."telemetry"');
    expect(telemetryRows.map((r) => r.tsReplaced)).toEqual([`/ts=${LEAP}`]);
    const stateRows = await influxd.influx.query<{ tsReplaced: string }>('SELECT "online", "tsReplaced" FROM "checkpoint_raw"."device_state"');
    expect(stateRows.map((r) => r.tsReplaced)).toEqual([`/ts=${MONTH_13}`]);
    // InfluxDB shows a point before its write's answer reached the gateway, which then empties the spool.
    await waitFor(() => gateway.spoolDepth() === 0, { what: 'spool drained after the write' });
  });

  it('a cmd/ack with such a ts still answers its command', async () => {
    const agent = await connect('edge-gate-1');
    await agent.subscribeAsync(checkpointTopics.cmd(where), { qos: 1 });
    agent.on('message', (_topic, payload) => {
      const cmd = JSON.parse(payload.toString()) as Command;
      void agent.publishAsync(checkpointTopics.cmdAck(where), JSON.stringify({ id: cmd.id, ts: LEAP, ok: true }), { qos: 1 });
    });
    const res = await engineer.post('/api/checkpoints/hq/gate-1/cmd', { type: 'ping' });
    await agent.endAsync();
    expect(res.status).toBe(200);
    expect(res.body.ack).toMatchObject({ id: res.body.command.id, ok: true });
    expect(await metricValue(gateway.url, 'checkpoint_gateway_replaced_timestamps_total', 'channel="cmd/ack"')).toBe(1);
  });

  it('a VDA 5050 state with such a timestamp is taken by the fleet and written as robot_state', async () => {
    const bot = await connect('robot-bot-1');
    const state = { ...rawState(robot, 1, new Date()), timestamp: '2025-02-29T12:00:00.000Z', batteryState: { batteryCharge: 64, charging: false } };
    await bot.publishAsync(vda5050Topic(robot, 'state'), JSON.stringify(state), { qos: 1 });
    await bot.endAsync();
    await waitFor(async () => ((await dispatcher.get('/api/robots')).body.robots as any[]).some((r) => r.id === `${MANUFACTURER}/BOT-1` && r.battery === 64), { what: 'robot known to the fleet' });
    expect(await metricValue(gateway.url, 'checkpoint_gateway_replaced_timestamps_total', 'channel="robot/state"')).toBe(1);
    await waitFor(async () => (await influxd.influx.query('SELECT "batteryPct" FROM "checkpoint_raw"."robot_state"')).length === 1, { what: 'robot_state in InfluxDB' });
  });

  it('a poison point already in the spool is set aside and counted; the InfluxDB writer goes on', async () => {
    spoolPoisonPoint(gateway.config.dataDir);
    const next = makeScreening();
    await edge.publishAsync(checkpointTopics.screening(next), JSON.stringify(next), { qos: 1 });
    await waitFor(async () => (await influxd.influx.query(`SELECT "id" FROM "checkpoint_raw"."screening" WHERE "id" = '${next.id}'`)).length === 1, { what: 'screening after the poison point in InfluxDB' });
    await waitFor(() => gateway.spoolDepth() === 0, { what: 'spool drained' });
    expect(gateway.store.rejectedCount()).toBe(1);
    const health = (await (await fetch(`${gateway.url}/healthz`)).json()) as any;
    expect(health).toMatchObject({ status: 'ok', series: { writing: 'ok', spoolDepth: 0, rejected: 1 } });
  });
});

describe('SQLite series', () => {
  it('a poison point in the spool is set aside and counted; later points are written', async () => {
    const sqliteGateway = await createGateway(gatewayConfig({ dataDir: makeTempDir('gw-bad-ts-sqlite'), mqttUrl: brokerUrl }));
    try {
      await waitFor(() => sqliteGateway.mqttConnected(), { what: 'second gateway connected' });
      spoolPoisonPoint(sqliteGateway.config.dataDir);
      const telemetry = { ts: MONTH_13, ...where, fps: 7, stages: {}, queueDepth: 0, cpuTempC: null, ambientC: null, blackbody: null };
      await edge.publishAsync(checkpointTopics.telemetry(where), JSON.stringify(telemetry), { qos: 1 });
      const db = new Database(join(sqliteGateway.config.dataDir, 'gateway.sqlite'), { readonly: true });
      try {
        await waitFor(() => (db.prepare(`SELECT count(*) AS n FROM series_points WHERE measurement = 'telemetry' AND json_extract(fields, '$.fps') = 7`).get() as { n: number }).n === 1, {
          what: 'telemetry in SQLite series',
        });
        await waitFor(() => sqliteGateway.spoolDepth() === 0, { what: 'spool drained' });
        expect(sqliteGateway.store.rejectedCount()).toBe(1);
        const point = db.prepare(`SELECT ts_ms, json_extract(fields, '$.tsReplaced') AS flag FROM series_points WHERE measurement = 'telemetry'`).get() as { ts_ms: number; flag: string };
        expect(point.flag).toBe(`/ts=${MONTH_13}`);
        expect(Math.abs(point.ts_ms - Date.now())).toBeLessThan(60_000);
      } finally {
        db.close();
      }
    } finally {
      await sqliteGateway.close();
    }
  });
});
