/* eslint-disable @typescript-eslint/no-explicit-any -- JSON bodies of API responses, checked by the tests that read them */
/**
 * The HTTP API on PostgreSQL (a real PostgreSQL 15 from test-support): two API instances, each
 * with its own pool and stores on one database, as two gateways behind a load balancer. Login and
 * roles, queries after ingesting through the store, acknowledging, the audit trail, the same
 * answers from both instances; and the live feed of each instance driven by the database's event
 * follower, so an alert created through instance A reaches a stream on instance B (SSE over HTTP).
 */
import type { AddressInfo } from 'node:net';
import pg from 'pg';
import pino from 'pino';
import { monotonicFactory } from 'ulid';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FastifyInstance } from 'fastify';
import { createLoginGuard } from '@checkpoint/broker';
import { freePort, makeTempDir, startPostgres, waitFor, type PostgresServer } from '@checkpoint/test-support';
import { LiveFeed } from '../src/api/live.js';
import { createApi } from '../src/api/server.js';
import { CommandDispatcher } from '../src/commands.js';
import { resolveGatewayConfig, type GatewayConfig } from '../src/config.js';
import { createGatewayMetrics } from '../src/metrics.js';
import type { SeriesStore } from '../src/series/store.js';
import { followPostgresEvents, type EventFollower } from '../src/store/postgres/event-follower.js';
import { createPostgresEventStore } from '../src/store/postgres/events.js';
import { migratePostgres } from '../src/store/postgres/migrations.js';
import { createPostgresOperationalStore, type AsyncOperationalStore } from '../src/store/postgres/operational.js';
import { createPostgresUserStore } from '../src/store/postgres/users.js';
import { API_PASSWORD, ApiClient, gatewayConfig, makeScreening, openSse } from './helpers/world.js';

const policy = { escalateAfterMs: 600_000, invalidStormCount: 5, invalidStormWindowMs: 60_000 };

interface Instance {
  url: string;
  store: AsyncOperationalStore;
  live: LiveFeed;
  follower: EventFollower;
  close(): Promise<void>;
}

let server: PostgresServer;
let connection: pg.ClientConfig;
const pools: pg.Pool[] = [];
let a: Instance;
let b: Instance;

/** createApi on the PostgreSQL stores of `pool`, listening on a free port. */
async function listenApi(pool: pg.Pool, config: GatewayConfig, live: LiveFeed, store: AsyncOperationalStore): Promise<{ app: FastifyInstance; url: string }> {
  const metrics = createGatewayMetrics({ spoolDepth: () => 0, rejected: () => 0, sseClients: () => live.size, mqttConnected: () => true });
  // No agent answers: a command times out after commands.timeoutMs (and is audited).
  const commands = new CommandDispatcher(async () => undefined, config.commands.timeoutMs);
  const series = { kind: 'sqlite', checkpointStats: async () => [] } as unknown as SeriesStore;
  const app = await createApi({
    config,
    store,
    users: createPostgresUserStore(pool, Date.now),
    loginGuard: createLoginGuard({ maxFailures: 50, windowMs: 60_000 }),
    series,
    metrics,
    live,
    commands,
    fleet: null,
    health: () => ({ healthy: true, body: { status: 'ok', liveClients: live.size } }),
    log: pino({ level: 'silent' }),
    now: Date.now,
  });
  await app.listen({ host: '127.0.0.1', port: 0 });
  return { app, url: `http://127.0.0.1:${(app.server.address() as AddressInfo).port}` };
}

/** One API instance as the composition root would build it on PostgreSQL: its own pool, stores, live feed and follower. */
async function startInstance(name: string): Promise<Instance> {
  const pool = new pg.Pool({ ...connection, max: 4 });
  pools.push(pool);
  const newId = monotonicFactory();
  const store = createPostgresOperationalStore(pool, policy, () => newId());
  const config = resolveGatewayConfig(gatewayConfig({ dataDir: makeTempDir(`api-pg-${name}`), mqttUrl: 'mqtt://127.0.0.1:1', commands: { timeoutMs: 200 } }));
  // The feed starts after what is in the database now; the follower drives it from there.
  const { last } = await store.eventRange();
  const live = new LiveFeed(store, { maxClients: 20, maxClientsPerUser: 5, stallTimeoutMs: 30_000, sessionCheckMs: 200 }, undefined, { kind: 'follower', fromSeq: last });
  const follower: EventFollower = followPostgresEvents({ connection, events: createPostgresEventStore(pool), fromSeq: last, onEvents: (events) => live.deliver(events), pollMs: 500 });
  const { app, url } = await listenApi(pool, config, live, store);
  return {
    url,
    store,
    live,
    follower,
    async close() {
      live.close();
      await follower.stop();
      await app.close();
    },
  };
}

beforeAll(async () => {
  server = await startPostgres();
  connection = { host: server.socketDir, port: server.port, user: server.user, database: server.database };
  const setup = new pg.Pool({ ...connection, max: 1 });
  pools.push(setup);
  await migratePostgres(setup);
  const users = createPostgresUserStore(setup);
  await users.add({ name: 'guard', role: 'guard' }, API_PASSWORD);
  await users.add({ name: 'engineer', role: 'engineer' }, API_PASSWORD);
  await users.add({ name: 'admin', role: 'admin' }, API_PASSWORD);
  [a, b] = await Promise.all([startInstance('a'), startInstance('b')]);
}, 120_000);

afterAll(async () => {
  await a?.close();
  await b?.close();
  await Promise.all(pools.map((p) => p.end()));
  await server?.stop();
});

const fetchStatus = async (url: string, headers: Record<string, string> = {}) => (await fetch(url, { headers })).status;

describe('the API on PostgreSQL', () => {
  it('logs in, checks roles, and shares sessions between instances (one database)', async () => {
    const guard = await ApiClient.login(a.url, 'guard');
    // The session made on A is valid on B: sessions live in the database.
    const me = await new ApiClient(b.url, guard.token).get('/api/auth/me');
    expect(me.status).toBe(200);
    expect(me.body).toMatchObject({ user: 'guard', role: 'guard' });
    expect(await fetchStatus(`${b.url}/api/alerts`)).toBe(401);
    expect((await new ApiClient(b.url, guard.token).get('/api/audit')).status).toBe(403);

    const wrong = await fetch(`${b.url}/api/auth/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'guard', password: 'not-the-password' }) });
    expect(wrong.status).toBe(401);

    // Renewed on B, the old token ends everywhere; logout on A ends the new one on B.
    const renewed = await new ApiClient(b.url, guard.token).post('/api/auth/renew');
    expect(renewed.status).toBe(200);
    expect(await fetchStatus(`${a.url}/api/auth/me`, { authorization: `Bearer ${guard.token}` })).toBe(401);
    const fresh = new ApiClient(a.url, renewed.body.token as string);
    expect((await fresh.get('/api/auth/me')).status).toBe(200);
    expect((await fresh.post('/api/auth/logout')).status).toBe(204);
    expect(await fetchStatus(`${b.url}/api/auth/me`, { authorization: `Bearer ${renewed.body.token as string}` })).toBe(401);

    const audit = await (await ApiClient.login(b.url, 'admin')).get('/api/audit?limit=100');
    expect(audit.status).toBe(200);
    const actions = audit.body.entries.filter((e: { actor: string }) => e.actor === 'guard').map((e: { action: string }) => e.action);
    expect(actions).toEqual(expect.arrayContaining(['auth.login', 'auth.login_failed', 'auth.renew']));
  });

  it('answers screenings, alerts and devices ingested through the store, the same on both instances', async () => {
    const site = 'hq';
    const checkpoint = 'gate-q';
    const pass = makeScreening({ checkpoint, decision: 'pass' });
    const fever = makeScreening({ checkpoint, decision: 'secondary_check', snapshot: true });
    await a.store.ingestScreening(pass, Date.now());
    await b.store.ingestScreening(fever, Date.now());
    const jpeg = Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), Buffer.alloc(500, 3), Buffer.from([0xff, 0xd9])]);
    await a.store.ingestSnapshot({ site, checkpoint }, fever.id, jpeg, Date.now());

    const onA = await ApiClient.login(a.url, 'guard');
    const onB = new ApiClient(b.url, onA.token);
    const screenings = await onA.get(`/api/screenings?checkpoint=${checkpoint}`);
    expect(screenings.status).toBe(200);
    expect(screenings.body.screenings.map((s: { id: string }) => s.id).sort()).toEqual([pass.id, fever.id].sort());
    expect((await onA.get(`/api/screenings?checkpoint=${checkpoint}&decision=secondary_check`)).body.screenings.map((s: { id: string }) => s.id)).toEqual([fever.id]);

    const alerts = await onB.get(`/api/alerts?status=open&checkpoint=${checkpoint}`);
    expect(alerts.body.alerts).toHaveLength(1);
    expect(alerts.body.alerts[0]).toMatchObject({ kind: 'screening', status: 'open', screeningId: fever.id, screening: { temperatureC: 38.1 } });

    const devices = await onA.get('/api/devices');
    expect(devices.body.devices.some((d: { site: string; checkpoint: string }) => d.site === site && d.checkpoint === checkpoint)).toBe(true);

    const snap = await onB.get(`/api/snapshots/${fever.id}`);
    expect(snap.status).toBe(200);
    expect(Buffer.compare(snap.body, jpeg)).toBe(0);

    // Both instances give the same answers.
    for (const path of [`/api/screenings?checkpoint=${checkpoint}`, `/api/alerts?checkpoint=${checkpoint}`, `/api/alerts/${alerts.body.alerts[0].id as string}`, '/api/devices']) {
      expect((await onB.get(path)).body, path).toEqual((await onA.get(path)).body);
    }
  });

  it('acknowledges an alert once (409 on the other instance), audited; commands are audited too', async () => {
    const checkpoint = 'gate-k';
    const fever = makeScreening({ checkpoint, decision: 'secondary_check' });
    await a.store.ingestScreening(fever, Date.now());
    const guardA = await ApiClient.login(a.url, 'guard');
    const guardB = new ApiClient(b.url, guardA.token);
    const alertId = (await guardB.get(`/api/alerts?status=open&checkpoint=${checkpoint}`)).body.alerts[0].id as string;

    const ack = await guardA.post(`/api/alerts/${alertId}/ack`, { outcome: 'false_alarm', note: 'sunburn' });
    expect(ack.status).toBe(200);
    expect(ack.body).toMatchObject({ id: alertId, status: 'closed', acknowledgement: { by: 'guard', outcome: 'false_alarm', note: 'sunburn' } });
    expect((await guardB.post(`/api/alerts/${alertId}/ack`, { outcome: 'cleared' })).status).toBe(409);
    expect((await guardB.get(`/api/alerts/${alertId}`)).body).toMatchObject({ status: 'closed' });
    expect((await guardB.get('/api/alerts/01ARZ3NDEKTSV4RRFFQ69G5FAV')).status).toBe(404);

    const engineer = await ApiClient.login(b.url, 'engineer');
    expect((await guardB.post(`/api/checkpoints/hq/${checkpoint}/cmd`, { type: 'ping' })).status).toBe(403);
    const cmd = await engineer.post(`/api/checkpoints/hq/${checkpoint}/cmd`, { type: 'ping' });
    expect(cmd.status).toBe(504);

    const admin = await ApiClient.login(a.url, 'admin');
    const adminB = new ApiClient(b.url, admin.token);
    const entries = (await admin.get('/api/audit?limit=200')).body.entries as Array<{ actor: string; action: string; target: string | null; detail: any }>;
    expect(entries.filter((e) => e.target === alertId).map((e) => `${e.actor}:${e.action}`).sort()).toEqual(['guard:alert.closed', 'system:alert.opened']);
    expect(entries.find((e) => e.action === 'command.sent' && e.target === `hq/${checkpoint}`)).toMatchObject({ actor: 'engineer', detail: { type: 'ping', result: 'timeout' } });
    // Newest first and paged by seq, the same on both instances.
    expect((await adminB.get('/api/audit?limit=200')).body.entries).toEqual(entries);
  });

  it("streams on instance B, driven by the database follower, what is written through instance A; both feeds are the same", async () => {
    // Both followers have delivered what earlier tests wrote: the streams start at the same "now".
    const { last } = await a.store.eventRange();
    await waitFor(() => a.follower.lastSeq() === last && b.follower.lastSeq() === last, { what: `both followers at seq ${last}` });
    const guardA = await ApiClient.login(a.url, 'guard');
    const sseB = openSse(`${b.url}/api/live?access_token=${guardA.token}`);
    const sseA = openSse(`${a.url}/api/live`, { authorization: `Bearer ${guardA.token}` });
    await waitFor(() => a.live.size === 1 && b.live.size === 1, { what: 'one stream on each instance' });

    const checkpoint = 'gate-l';
    const fever = makeScreening({ checkpoint, decision: 'secondary_check' });
    await a.store.ingestScreening(fever, Date.now());
    await sseB.waitFor((e) => e.some((x) => x.event === 'alert' && x.data.alert.screeningId === fever.id), 'the alert made through A on B');
    const opened = sseB.events.find((x) => x.event === 'alert' && x.data.alert.screeningId === fever.id)!;
    expect(opened.data).toMatchObject({ action: 'opened', alert: { kind: 'screening', status: 'open', checkpoint } });
    const alertId = opened.data.alert.id as string;

    // Acknowledged over A's API: the closing event reaches B's stream.
    expect((await guardA.post(`/api/alerts/${alertId}/ack`, { outcome: 'cleared' })).status).toBe(200);
    await sseB.waitFor((e) => e.some((x) => x.event === 'alert' && x.data.action === 'closed' && x.data.alert.id === alertId), 'the closing event on B');
    await sseA.waitFor((e) => e.length === sseB.events.length, `A's stream as long as B's (${sseB.events.length})`);
    expect(sseA.events).toEqual(sseB.events);
    const ids = sseB.events.map((e) => e.id!);
    expect(ids).toEqual([...ids].sort((x, y) => x - y));
    expect(new Set(ids).size).toBe(ids.length);
    expect(sseB.events.map((e) => e.event)).toEqual(['screening', 'alert', 'alert']);

    // Resuming on the other instance after the first event sends exactly the rest.
    sseB.close();
    const resumed = openSse(`${b.url}/api/live`, { authorization: `Bearer ${guardA.token}`, 'last-event-id': String(ids[0]) });
    await resumed.waitFor((e) => e.length === ids.length - 1, 'the events after the first');
    expect(resumed.events.map((e) => e.id)).toEqual(ids.slice(1));
    resumed.close();

    // Logout ends the streams on both instances (B finds out at its next session check).
    expect((await guardA.post('/api/auth/logout')).status).toBe(204);
    await sseA.waitFor((e) => e.some((x) => x.event === 'end'), 'end event on A');
    await waitFor(() => a.live.size === 0 && b.live.size === 0, { what: 'no streams left' });
    sseA.close();
  });

  it('answers 503 with Retry-After, not 500, when PostgreSQL cannot be reached', async () => {
    // Nothing listens on this port: every query fails to connect.
    const pool = new pg.Pool({ host: '127.0.0.1', port: await freePort(), user: 'checkpoint', database: 'checkpoint', max: 1, connectionTimeoutMillis: 2000 });
    pools.push(pool);
    const config = resolveGatewayConfig(gatewayConfig({ dataDir: makeTempDir('api-pg-down'), mqttUrl: 'mqtt://127.0.0.1:1' }));
    const live = new LiveFeed({ eventsAfter: async () => [], eventRange: async () => ({ first: 1, last: 0 }) }, undefined, undefined, { kind: 'follower', fromSeq: 0 });
    const newId = monotonicFactory();
    const { app, url } = await listenApi(pool, config, live, createPostgresOperationalStore(pool, policy, () => newId()));
    try {
      const res = await fetch(`${url}/api/alerts`, { headers: { authorization: 'Bearer some-token' } });
      expect(res.status).toBe(503);
      expect(res.headers.get('retry-after')).toBe('1');
      expect(((await res.json()) as { message: string }).message).toMatch(/database cannot be reached/);
      const login = await fetch(`${url}/api/auth/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'guard', password: API_PASSWORD }) });
      expect(login.status).toBe(503);
    } finally {
      live.close();
      await app.close();
    }
  });
});
