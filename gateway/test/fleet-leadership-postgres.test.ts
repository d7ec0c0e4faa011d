/**
 * Two fleet services (two gateways' worth) on one PostgreSQL database, each with its own pool,
 * MQTT client and PG fleet store, and a simulated VDA 5050 robot on our broker: only the leader
 * sends orders; a task created on the follower is stored as queued and dispatched by the leader;
 * the follower refuses cancel with 503 + Retry-After; a hand-over mid-order (leader.follow(),
 * other.lead()) adopts the running order — one order id for the task, never a second order — and
 * the task completes.
 */
import { join } from 'node:path';
import Fastify from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import mqtt, { type MqttClient } from 'mqtt';
import pg from 'pg';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBroker, openUserStore, type Broker } from '@checkpoint/broker';
import { createSimulatedRobot, type SimulatedRobot } from '@checkpoint/firmware-bridge';
import { makeTempDir, startPostgres, waitFor, type PostgresServer } from '@checkpoint/test-support';
import type { Alert } from '../src/alerts.js';
import { registerFleetRoutes } from '../src/api/fleet.js';
import '../src/api/server.js'; // the request's session (type)
import { resolveGatewayConfig } from '../src/config.js';
import { createFleetService, FleetRequestError, loadFleetSetup, type FleetService } from '../src/fleet-service.js';
import { FLEET_SUBSCRIPTIONS } from '../src/ingest/consumer.js';
import { createGatewayMetrics } from '../src/metrics.js';
import { createPostgresFleetStore } from '../src/store/postgres/fleet.js';
import { migratePostgres } from '../src/store/postgres/migrations.js';
import { DELIVERY_ACTIONS, fleetGatewayConfig, MANUFACTURER } from './fleet-world.js';
import { BROKER_PASSWORD } from './helpers/world.js';

const SERIAL = 'DEL-L';
const ROBOT = `${MANUFACTURER}/${SERIAL}`;

interface Node {
  name: string;
  service: FleetService;
  client: MqttClient;
  pool: pg.Pool;
  /** Fires an acknowledgement at the service's rules (as the alert store would). */
  acknowledged(alert: Alert, atMs: number): void | Promise<void>;
  /** Orders this gateway published: order id and update id. */
  orders: Array<{ orderId: string; orderUpdateId: number }>;
  published: number;
}

let server: PostgresServer;
let broker: Broker;
let users: ReturnType<typeof openUserStore>;
let robot: SimulatedRobot;
const nodes: Node[] = [];
let ids = 0;

async function startNode(name: string, url: string, leading: boolean): Promise<Node> {
  const config = resolveGatewayConfig(fleetGatewayConfig(makeTempDir(`fleet-lead-${name}`), url, { reloadMs: 200, adoptTimeoutS: 60 }));
  const setup = (await loadFleetSetup(config.fleet))!;
  const pool = new pg.Pool({ host: server.socketDir, port: server.port, user: server.user, database: server.database, max: 4 });
  const client = await mqtt.connectAsync(url, { username: 'gw', password: BROKER_PASSWORD, clientId: `gw-${name}-${process.pid}`, reconnectPeriod: 200 });
  const node: Node = { name, pool, client, orders: [], published: 0, service: null as unknown as FleetService, acknowledged: () => undefined };
  node.service = createFleetService({
    config: config.fleet,
    setup,
    store: createPostgresFleetStore(pool),
    alerts: {
      onAcknowledged(listener) {
        node.acknowledged = listener;
        return () => undefined;
      },
    },
    publish: async (topic, payload) => {
      node.published += 1;
      if (topic.endsWith('/order')) {
        const order = JSON.parse(payload) as { orderId: string; orderUpdateId: number };
        node.orders.push({ orderId: order.orderId, orderUpdateId: order.orderUpdateId });
      }
      await client.publishAsync(topic, payload, { qos: 1 });
    },
    notifyLive: () => undefined,
    notifySeries: () => undefined,
    metrics: createGatewayMetrics({ spoolDepth: () => 0, rejected: () => 0, sseClients: () => 0, mqttConnected: () => client.connected }),
    log: pino({ level: 'silent' }),
    now: () => Date.now(),
    newId: () => `t${process.pid}x${++ids}`,
    leading,
  });
  client.on('message', (topic, payload) => {
    const done = node.service.handleMessage(topic, payload, Date.now());
    if (done) done.catch(() => undefined);
  });
  await client.subscribeAsync(FLEET_SUBSCRIPTIONS, { qos: 1 });
  nodes.push(node);
  return node;
}

beforeAll(async () => {
  server = await startPostgres();
  const migrator = new pg.Pool({ host: server.socketDir, port: server.port, user: server.user, database: server.database, max: 1 });
  await migratePostgres(migrator);
  await migrator.end();
  const dir = makeTempDir('fleet-lead-broker');
  users = openUserStore(join(dir, 'users.sqlite'), { mosquittoHashIterations: 0 });
  await users.add({ name: 'gw', role: 'gateway' }, BROKER_PASSWORD);
  await users.add({ name: `robot-${SERIAL.toLowerCase()}`, role: 'robot', robot: { manufacturer: MANUFACTURER, serialNumber: SERIAL } }, BROKER_PASSWORD);
  broker = await createBroker({
    config: { dataDir: dir, host: '127.0.0.1', mqtt: { port: 0 }, metrics: { port: null }, logLevel: 'silent', sysIntervalS: 0, persistence: 'memory' },
    users,
  });
}, 90_000);

afterAll(async () => {
  for (const n of nodes) n.service.close();
  await robot?.close().catch(() => undefined);
  for (const n of nodes) {
    await n.client.endAsync().catch(() => undefined);
    await n.pool.end().catch(() => undefined);
  }
  await broker?.close();
  users?.close();
  await server?.stop();
});

describe('the fleet led by one of two gateways on PostgreSQL', () => {
  it('dispatches only from the leader, takes tasks created on the follower, refuses cancel there, and adopts the running order on a hand-over', async () => {
    const url = `mqtt://127.0.0.1:${broker.ports.mqtt}`;
    const a = await startNode('a', url, true);
    const b = await startNode('b', url, false);
    await a.service.lead(); // a PostgreSQL start leads once the store has answered
    expect(a.service.isLeading()).toBe(true);
    expect(b.service.isLeading()).toBe(false);

    robot = await createSimulatedRobot({
      manufacturer: MANUFACTURER,
      serialNumber: SERIAL,
      startNode: 'P2',
      x: 0,
      y: 10,
      speed: 2,
      timeScale: 2,
      batteryPct: 90,
      capabilities: DELIVERY_ACTIONS,
      reportMs: 1000,
      transport: { kind: 'mqtt', url, username: `robot-${SERIAL.toLowerCase()}`, password: BROKER_PASSWORD },
    });
    // The leader knows the robot (online, factsheet, idle); the follower shows the record the leader stored.
    await waitFor(async () => (await a.service.robots()).some((r) => r.id === ROBOT && r.connection === 'ONLINE' && r.capabilities.length > 0 && r.available), {
      what: 'robot online and available at the leader',
      timeoutMs: 20_000,
    });
    await waitFor(async () => (await b.service.robots()).some((r) => r.id === ROBOT), { what: 'robot stored, seen by the follower', timeoutMs: 10_000 });

    // A task created on the follower: stored as queued, dispatched by the leader.
    const created = await b.service.submitTask({ type: 'delivery', from: 'PH', to: 'W2', what: 'insulin', confirmRecipient: false }, 'disp');
    expect(created.status).toBe('queued');
    expect(b.orders).toEqual([]);
    await waitFor(async () => (await b.service.task(created.id))?.status === 'underway', { what: 'task underway (dispatched by the leader)', timeoutMs: 20_000 });
    const taskOrders = (n: Node) => n.orders.filter((o) => o.orderId.startsWith(created.id));
    expect(taskOrders(a).length).toBeGreaterThan(0);
    expect(b.published).toBe(0);

    // The follower refuses to cancel: 503 with a Retry-After, and the task runs on.
    const refusal = await b.service.cancelTask(created.id, 'disp').then(
      () => null,
      (err: unknown) => err,
    );
    expect(refusal).toBeInstanceOf(FleetRequestError);
    expect(refusal).toMatchObject({ statusCode: 503, retryAfterS: expect.any(Number) as number });
    expect((refusal as Error).message).toContain('this gateway does not lead the fleet');
    expect((await a.service.task(created.id))?.status).toBe('underway');

    // Through the API route: 503 with Retry-After and the reason; creating a task there still works.
    const app = Fastify().withTypeProvider<TypeBoxTypeProvider>();
    app.decorateRequest('session', null);
    app.addHook('onRequest', async (request) => {
      request.session = { user: 'disp', role: 'dispatcher', expiresMs: Date.now() + 60_000, signedInMs: Date.now() };
    });
    registerFleetRoutes(app, b.service);
    const cancelled = await app.inject({ method: 'POST', url: `/api/tasks/${created.id}/cancel`, payload: {} });
    expect(cancelled.statusCode).toBe(503);
    expect(Number(cancelled.headers['retry-after'])).toBeGreaterThan(0);
    expect(cancelled.json()).toMatchObject({ statusCode: 503, error: 'Service Unavailable', message: expect.stringContaining('this gateway does not lead the fleet') as string });
    const paused = await app.inject({ method: 'POST', url: `/api/robots/${MANUFACTURER}/${SERIAL}/pause` });
    expect(paused.statusCode).toBe(503);
    expect(paused.headers['retry-after']).toBeDefined();
    const listed = await app.inject({ method: 'GET', url: '/api/tasks?limit=10' });
    expect(listed.statusCode).toBe(200);
    expect((listed.json() as { tasks: Array<{ id: string; status: string }> }).tasks).toContainEqual(expect.objectContaining({ id: created.id, status: 'underway' }));
    await app.close();

    // An acknowledgement on the follower: the rule's task is stored as queued (for the leader).
    const ackAt = Date.now();
    await b.acknowledged(
      { id: 'alert-1', site: 'hq', checkpoint: 'gate-2', ack: { by: 'guard', outcome: 'referred', at: ackAt, note: null } } as unknown as Alert,
      ackAt,
    );
    const ruled = (await b.service.tasks({ limit: 50 })).find((t) => t.alertId === 'alert-1');
    expect(ruled).toMatchObject({ type: 'disinfection', status: 'queued', ruleId: 'disinfect-after-referral' });

    // Hand over mid-order: the new leader adopts the order the robot runs.
    await a.service.follow();
    const publishedByA = a.published;
    await b.service.lead();
    expect(a.service.isLeading()).toBe(false);
    expect(b.service.isLeading()).toBe(true);
    expect((await b.service.task(created.id))?.status).toBe('underway');

    await waitFor(async () => (await b.service.task(created.id))?.status === 'completed', { what: 'task completed under the new leader', timeoutMs: 60_000 });
    const done = (await b.service.task(created.id))!;
    // One order for the task, sent once by the first leader; the new leader sent none for it.
    const orderIds = new Set([...taskOrders(a), ...taskOrders(b)].map((o) => o.orderId));
    expect([...orderIds]).toEqual([done.orderId]);
    expect(taskOrders(a).filter((o) => o.orderUpdateId === 0)).toHaveLength(1);
    expect(taskOrders(b)).toEqual([]);
    expect(done.attempts).toBe(1);
    expect(done.history.map((h) => h.reason)).toEqual(expect.arrayContaining([expect.stringContaining(`order ${done.orderId} adopted`)]));
    expect(done.history.some((h) => h.reason.includes('re-queued'))).toBe(false);
    // The old leader sent nothing after handing over.
    expect(a.published).toBe(publishedByA);
  }, 120_000);
});
