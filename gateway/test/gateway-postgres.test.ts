/**
 * The gateway in-process with its operational store on a real PostgreSQL (store.backend postgres)
 * and our real broker: screenings and telemetry over MQTT land in PostgreSQL once each (duplicates
 * too), /healthz names the backend and the role (the only gateway leads), the leader escalates
 * alerts and drains the spool into the series store (SQLite here), and the metrics say it leads.
 * A follower (the lock held elsewhere) stores what it receives but leaves the spool alone, and
 * drains it once it leads.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MqttClient } from 'mqtt';
import pg from 'pg';
import { checkpointTopics } from '@checkpoint/protocol';
import { makeTempDir, startPostgres, waitFor, type PostgresServer } from '@checkpoint/test-support';
import { createGateway, type Gateway } from '../src/index.js';
import type { SeriesPoint } from '../src/series/points.js';
import { FLEET_MAP } from './fleet-world.js';
import { ApiClient, API_PASSWORD, connectEdge, gatewayConfig, makeScreening, openSse, publishScreenings, startTestBroker, type TestBroker } from './helpers/world.js';

let postgres: PostgresServer;
let broker: TestBroker;
let gateway: Gateway;
let edge: MqttClient;
const written: SeriesPoint[] = [];

beforeAll(async () => {
  [postgres, broker] = await Promise.all([startPostgres(), startTestBroker()]);
  gateway = await createGateway(
    gatewayConfig({
      dataDir: makeTempDir('gw-pg-data'),
      mqttUrl: broker.url,
      store: { backend: 'postgres', postgres: { url: postgres.url, poolSize: 4, leaderRetryMs: 200, leaderCheckMs: 200 } },
      alerts: { escalateAfterS: 1, checkIntervalMs: 200 },
    }),
    { onSeriesWritten: (points) => written.push(...points) },
  );
  await waitFor(() => gateway.mqttConnected(), { what: 'gateway connected to the broker' });
  edge = await connectEdge(broker.url, 'gate-1');
}, 120_000);

afterAll(async () => {
  await edge?.endAsync();
  await gateway?.close();
  await broker?.close();
  await postgres?.stop();
});

const metricValue = async (name: string, labels = '') => {
  const text = await (await fetch(`${gateway.url}/metrics`)).text();
  const line = text.split('\n').find((l) => (labels ? l.startsWith(`${name}{`) && l.includes(labels) : l.startsWith(`${name} `)));
  return line ? Number(line.split(' ').pop()) : NaN;
};

describe('a gateway on PostgreSQL', () => {
  it('leads (the only one): /healthz names the backend and the role, the leader gauge is 1', async () => {
    await waitFor(() => gateway.role() === 'leader', { what: 'leadership taken' });
    const res = await fetch(`${gateway.url}/healthz`);
    expect(res.status).toBe(200);
    expect(((await res.json()) as { store: unknown }).store).toEqual({ backend: 'postgres', role: 'leader' });
    expect(await metricValue('checkpoint_gateway_leader')).toBe(1);
  });

  it('stores each screening once in PostgreSQL, even when the edge publishes it again; the spool drains into the series store', async () => {
    const screenings = Array.from({ length: 60 }, (_, i) => makeScreening({ trackId: i }));
    await publishScreenings(edge, [...screenings, ...screenings.slice(0, 15)]);
    await waitFor(async () => (await gateway.store.screenings({ checkpoint: 'gate-1', limit: 1000 })).length >= 60, { what: '60 screenings in PostgreSQL' });
    const stored = await gateway.store.screenings({ checkpoint: 'gate-1', limit: 1000 });
    expect(stored.map((s) => s.id).sort()).toEqual(screenings.map((s) => s.id).sort());
    await waitFor(async () => (await metricValue('checkpoint_gateway_messages_total', 'result="duplicate"')) === 15, { what: '15 duplicates counted' });
    // Every screening's point reached the series store once, and the shared spool is empty.
    await waitFor(async () => (await gateway.spoolDepth()) === 0, { what: 'spool drained' });
    // A duplicate is not spooled again: one point per screening.
    expect(written.filter((p) => p.measurement === 'screening')).toHaveLength(60);
    expect(await metricValue('checkpoint_gateway_spool_depth')).toBe(0);
  });

  it('keeps the device\'s last telemetry in PostgreSQL', async () => {
    const telemetry = {
      ts: new Date().toISOString(),
      site: 'hq',
      checkpoint: 'gate-1',
      fps: 8.7,
      stages: { decode: 4.1, inference: 7.5, thermometry: 0.3 },
      cpuTempC: 61.2,
      ambientC: 21.5,
      blackbody: { setC: 35, measuredC: 34.62, status: 'ok' },
      queueDepth: 3,
      rssMb: 228.4,
    };
    await edge.publishAsync(checkpointTopics.telemetry({ site: 'hq', checkpoint: 'gate-1' }), JSON.stringify(telemetry), { qos: 1 });
    await waitFor(async () => (await gateway.store.devices()).some((d) => d.checkpoint === 'gate-1' && d.telemetry?.fps === 8.7), { what: 'telemetry stored' });
  });

  it('the leader escalates an alert not acknowledged in time', async () => {
    const referral = makeScreening({ decision: 'secondary_check', trackId: 999 });
    await publishScreenings(edge, [referral]);
    await waitFor(async () => (await gateway.store.alerts({ checkpoint: 'gate-1', limit: 100 })).some((a) => a.screeningId === referral.id && a.escalatedAt !== null), {
      what: 'alert escalated',
      timeoutMs: 15_000,
    });
  });
});

describe('two gateways on one PostgreSQL', () => {
  it('answer the same API calls with one session, and each live feed shows what the other stored', async () => {
    const second = await createGateway(
      gatewayConfig({
        dataDir: makeTempDir('gw-pg-second'),
        mqttUrl: broker.url,
        store: { backend: 'postgres', postgres: { url: postgres.url, poolSize: 4, leaderRetryMs: 200, leaderCheckMs: 200 } },
      }),
    );
    try {
      await waitFor(() => second.mqttConnected(), { what: 'second gateway connected' });
      expect(second.role()).toBe('follower');
      // One user, added through the first gateway, logs in on the second; its token works on the first.
      await gateway.users.add({ name: 'guard-pg', role: 'guard' }, API_PASSWORD);
      const onSecond = await ApiClient.login(second.url, 'guard-pg');
      const onFirst = new ApiClient(gateway.url, onSecond.token);
      const sseFirst = openSse(`${gateway.url}/api/live?access_token=${onSecond.token}`);
      const sseSecond = openSse(`${second.url}/api/live?access_token=${onSecond.token}`);
      try {
        const liveClients = async (gw: Gateway) => Number(((await (await fetch(`${gw.url}/healthz`)).json()) as { liveClients: number }).liveClients);
        await waitFor(async () => (await liveClients(gateway)) === 1 && (await liveClients(second)) === 1, { what: 'both live feeds connected' });
        const referral = makeScreening({ decision: 'secondary_check', trackId: 4242 });
        await publishScreenings(edge, [referral]);
        const hasAlert = (events: { event: string; data: { alert?: { screeningId?: string } } }[]) => events.some((x) => x.event === 'alert' && x.data.alert?.screeningId === referral.id);
        await sseFirst.waitFor(hasAlert, 'the alert on the first gateway\'s feed');
        await sseSecond.waitFor(hasAlert, 'the alert on the second gateway\'s feed');
        const a = await onFirst.get('/api/alerts?checkpoint=gate-1');
        const b = await onSecond.get('/api/alerts?checkpoint=gate-1');
        expect(a.status).toBe(200);
        expect(b.body).toEqual(a.body);
        const alert = (a.body.alerts as { id: string; screeningId: string }[]).find((x) => x.screeningId === referral.id)!;
        expect(alert).toBeDefined();
        // Acknowledged on the second: the first answers with the acknowledgement, and a second one is refused.
        expect((await onSecond.post(`/api/alerts/${alert.id}/ack`, { outcome: 'cleared' })).status).toBe(200);
        expect((await onFirst.post(`/api/alerts/${alert.id}/ack`, { outcome: 'cleared' })).status).toBe(409);
        expect((await onFirst.get(`/api/alerts/${alert.id}`)).body).toMatchObject({ id: alert.id, status: 'closed', acknowledgement: { by: 'guard-pg', outcome: 'cleared' } });
      } finally {
        sseFirst.close();
        sseSecond.close();
      }
    } finally {
      await second.close();
    }
  });
});

describe('OPC UA and the robot fleet on PostgreSQL', () => {
  it('start with the gateway; the leading gateway leads the fleet and serves it over the API', async () => {
    await postgres.createDatabase('withfleet');
    const url = postgres.url.replace(/\/[^/]*$/, '/withfleet');
    const full = await createGateway(
      gatewayConfig({
        dataDir: makeTempDir('gw-pg-full'),
        mqttUrl: broker.url,
        store: { backend: 'postgres', postgres: { url, leaderRetryMs: 200, leaderCheckMs: 200 } },
        opcua: { enabled: true, port: 0 },
        fleet: { map: FLEET_MAP },
      }),
    );
    try {
      expect(full.opcua?.port).toBeGreaterThan(0);
      await waitFor(() => full.role() === 'leader' && full.fleet!.isLeading(), { what: 'gateway and fleet lead' });
      await full.users.add({ name: 'dispatcher-pg', role: 'dispatcher' }, API_PASSWORD);
      const api = await ApiClient.login(full.url, 'dispatcher-pg');
      const robots = await api.get('/api/robots');
      expect(robots.status).toBe(200);
    } finally {
      await full.close();
    }
  });
});

describe('a gateway on PostgreSQL that follows', () => {
  it('stores what it receives, leaves the shared spool alone, and drains it once it leads', async () => {
    await postgres.createDatabase('follower');
    const url = postgres.url.replace(/\/[^/]*$/, '/follower');
    // Another leader, as far as the gateway can tell: the test holds the leadership lock.
    const holder = new pg.Client({ connectionString: url });
    await holder.connect();
    const lock = await holder.query<{ acquired: boolean }>(`SELECT pg_try_advisory_lock(hashtextextended('checkpoint-gateway', 0)) AS acquired`);
    expect(lock.rows[0]!.acquired).toBe(true);
    const followerWritten: SeriesPoint[] = [];
    const follower = await createGateway(
      gatewayConfig({
        dataDir: makeTempDir('gw-pg-follower'),
        mqttUrl: broker.url,
        store: { backend: 'postgres', postgres: { url, leaderRetryMs: 100, leaderCheckMs: 200 } },
      }),
      { onSeriesWritten: (points) => followerWritten.push(...points) },
    );
    try {
      await waitFor(() => follower.mqttConnected() && follower.role() === 'follower', { what: 'follower connected' });
      const screenings = Array.from({ length: 20 }, (_, i) => makeScreening({ trackId: 500 + i }));
      await publishScreenings(edge, screenings);
      await waitFor(async () => (await follower.store.screenings({ limit: 1000 })).length === 20, { what: '20 screenings stored by the follower' });
      // Well past the writer's 100 ms flush interval: a follower's writer does not touch the spool.
      await waitFor(async () => ((await (await fetch(`${follower.url}/healthz`)).json()) as { series: { spoolDepth: number } }).series.spoolDepth === 20, { what: 'spool depth 20 in /healthz' });
      expect(await follower.spoolDepth()).toBe(20);
      expect(followerWritten).toEqual([]);
      expect(((await (await fetch(`${follower.url}/healthz`)).json()) as { store: unknown }).store).toEqual({ backend: 'postgres', role: 'follower' });
      const gauge = (await (await fetch(`${follower.url}/metrics`)).text()).split('\n').find((l) => l.startsWith('checkpoint_gateway_leader '));
      expect(gauge).toBe('checkpoint_gateway_leader 0');

      await holder.end();
      await waitFor(() => follower.role() === 'leader', { what: 'the follower leads once the lock is free' });
      await waitFor(async () => (await follower.spoolDepth()) === 0, { what: 'spool drained by the new leader' });
      expect(followerWritten.filter((p) => p.measurement === 'screening')).toHaveLength(20);
    } finally {
      await holder.end().catch(() => undefined);
      await follower.close();
    }
  });
});
