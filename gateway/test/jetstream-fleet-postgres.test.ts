/* eslint-disable @typescript-eslint/no-explicit-any -- JSON bodies of API responses, checked by the tests that read them */
/**
 * The robot fleet in cluster mode (issue #18): a 3-node NATS cluster (users and permissions from
 * `checkpoint-broker nats-export`: a gateway user, one user per robot, an edge), ONE PostgreSQL,
 * TWO gateway replicas with `ingest.source: jetstream` and a site map, and two simulated VDA 5050
 * robots speaking MQTT to different nodes.
 *
 * - The robots connect before any gateway exists: their `connection` and `factsheet` are
 *   retained, and the replicas must learn them from the cluster (robots ONLINE with capabilities).
 * - Both replicas use the default `mqtt.clientId`: their robot connections must not take turns.
 * - Tasks go in through the API; orders reach the robots through the cluster, their states come
 *   back; the leading replica is killed with SIGKILL while both robots drive, the other adopts
 *   the running orders; then the NATS node both replicas' robot connections started on is killed
 *   too, and the tasks submitted after it are dispatched and complete.
 * - No task is dispatched twice (one order id per task, update ids only rising), and every
 *   screening an edge had acknowledged meanwhile is stored.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exportNats, openUserStore } from '@checkpoint/broker';
import type { SimulatedRobot } from '@checkpoint/firmware-bridge';
import { checkpointTopics, serverList, type Screening } from '@checkpoint/protocol';
import {
  logTail,
  makeTempDir,
  startNatsCluster,
  startPostgres,
  waitFor,
  type NatsCluster,
  type PostgresServer,
  type ServerProcess,
} from '@checkpoint/test-support';
import { createPostgresUserStore } from '../src/store/postgres/users.js';
import { FLEET_MAP, MANUFACTURER } from './fleet-world.js';
import { startGatewayProcess, startRecordingRobot, type GatewayProcess, type ReceivedOrder } from './helpers/fleet-processes.js';
import { API_PASSWORD, ApiClient, makeScreening } from './helpers/world.js';

const PASSWORD = 'nats-fleet-password-1';
const SERIALS = ['DEL-1', 'DEL-2'] as const;
/** The node both replicas' connections start on; killed once the survivor leads. */
const GATEWAY_NODE = 0;
/** Where the robots and the edge connect: not the node that is killed. */
const ROBOT_NODES = [1, 2] as const;
const EDGE_NODE = 2;

let cluster: NatsCluster;
let postgres: PostgresServer;
let pool: pg.Pool;
let dir: string;
let edge: MqttClient | undefined;
const gateways: ServerProcess[] = [];
const robots: SimulatedRobot[] = [];

beforeAll(async () => {
  dir = makeTempDir('gw-js-fleet');
  const users = openUserStore(join(dir, 'users.sqlite'), { scrypt: { N: 1024, r: 8, p: 1 }, mosquittoHashIterations: 0, natsBcryptCost: 4 });
  await users.add({ name: 'gw', role: 'gateway' }, PASSWORD);
  await users.add({ name: 'edge-gate-1', role: 'edge', site: 'hq', checkpoint: 'gate-1' }, PASSWORD);
  for (const serial of SERIALS) await users.add({ name: `robot-${serial.toLowerCase()}`, role: 'robot', robot: { manufacturer: MANUFACTURER, serialNumber: serial } }, PASSWORD);
  const exported = exportNats(users, join(dir, 'auth.conf'));
  users.close();
  expect(exported.skipped).toEqual([]);
  [cluster, postgres] = await Promise.all([startNatsCluster({ authorization: readFileSync(exported.file, 'utf8') }), startPostgres()]);
  pool = new pg.Pool({ connectionString: postgres.url, max: 2 });
}, 120_000);

afterAll(async () => {
  await Promise.all(gateways.map((g) => g.stop({ signal: 'SIGKILL' })));
  await Promise.all(robots.map((r) => r.close({ graceful: false }).catch(() => undefined)));
  await edge?.endAsync().catch(() => undefined);
  await pool?.end();
  await cluster?.stop();
  await postgres?.stop();
});

const count = async (sql: string, params: unknown[] = []) => Number((await pool.query<{ n: string }>(sql, params)).rows[0]!.n);

/** Every node's URL, starting at `node` (what an installer lists; the order says where a client starts). */
const urlsFrom = (urls: string[], node: number) => [...urls.slice(node), ...urls.slice(0, node)];

/** A gateway replica: cluster mode, the shared database, a site map; `mqtt.clientId` left at its default on purpose. */
async function startReplica(name: string): Promise<GatewayProcess> {
  const g = await startGatewayProcess(dir, name, {
    dataDir: join(dir, name),
    logLevel: 'silent',
    http: { host: '127.0.0.1', port: 0 },
    opcua: { enabled: false },
    influx: { url: null },
    ingest: { source: 'jetstream' },
    mqtt: { urls: urlsFrom(cluster.mqttUrls, GATEWAY_NODE), username: 'gw', password: PASSWORD, reconnectMs: 200 },
    nats: { servers: urlsFrom(cluster.natsUrls, GATEWAY_NODE), user: 'gw', password: PASSWORD, fetchBatch: 100 },
    store: { backend: 'postgres', postgres: { url: postgres.url } },
    fleet: { map: FLEET_MAP, rules: [], tickMs: 200, reloadMs: 500 },
  });
  gateways.push(g.proc);
  return g;
}

/** A delivery robot on one node of the cluster, with its own user. */
async function startRobot(serial: (typeof SERIALS)[number], node: number, startNode: string, x: number, y: number, received: ReceivedOrder[]): Promise<SimulatedRobot> {
  const robot = await startRecordingRobot({ serial, startNode, x, y, url: cluster.mqttUrls[node]!, username: `robot-${serial.toLowerCase()}`, password: PASSWORD }, received);
  robots.push(robot);
  return robot;
}

/** QoS 1 screenings one after another until stopped, as an agent's outbox sends them (every node listed). */
function publishThroughout(client: MqttClient, everyMs: number) {
  const acknowledged: Screening[] = [];
  let failed = 0;
  let stopped = false;
  const done = (async () => {
    let trackId = 0;
    while (!stopped) {
      const s = makeScreening({ trackId: trackId++ });
      try {
        await client.publishAsync(checkpointTopics.screening(s), JSON.stringify(s), { qos: 1 });
        acknowledged.push(s);
      } catch {
        // Not acknowledged (an election under way): the outbox would send it again; not counted.
        failed++;
      }
      await new Promise((resolve) => setTimeout(resolve, everyMs));
    }
  })();
  return {
    acknowledged,
    failed: () => failed,
    async stop() {
      stopped = true;
      await done;
    },
  };
}

describe('the robot fleet in cluster mode: two gateway replicas, three NATS nodes, one PostgreSQL', () => {
  it('learns retained robot state, dispatches through the cluster, and survives a SIGKILL of the leading replica and of a NATS node', async () => {
    // The robots first: what they retain (connection ONLINE, factsheet) is all a late replica has of them.
    const received: ReceivedOrder[] = [];
    await startRobot('DEL-1', ROBOT_NODES[0], 'P1', 0, 0, received);
    await startRobot('DEL-2', ROBOT_NODES[1], 'P2', 0, 10, received);

    const started = await Promise.all([startReplica('a'), startReplica('b')]);
    const roles = await waitFor(
      async () => {
        const r = await Promise.all(started.map((g) => g.role()));
        return r.includes('leader') && r.includes('follower') ? r : null;
      },
      { what: 'one replica leading, the other following', timeoutMs: 30_000 },
    );
    const leader = started[roles.indexOf('leader')]!;
    const survivor = started[roles.indexOf('follower')]!;
    await createPostgresUserStore(pool).add({ name: 'dispatcher', role: 'dispatcher' }, API_PASSWORD);
    const atLeader = await ApiClient.login(leader.url, 'dispatcher');
    const atSurvivor = await ApiClient.login(survivor.url, 'dispatcher');

    const robotIds = SERIALS.map((s) => `${MANUFACTURER}/${s}`);
    const robotsReady = async (api: ApiClient) => {
      const listed = (await api.get('/api/robots')).body.robots as any[];
      return robotIds.every((id) => listed.some((r) => r.id === id && r.connection === 'ONLINE' && r.available && r.capabilities.length > 0));
    };
    await waitFor(() => robotsReady(atLeader), { what: () => `both robots ONLINE with their factsheet at the leader\n${logTail(leader.logFile)}`, timeoutMs: 30_000 });
    // Both connections up all along: two replicas with one configured client id do not push each other off.
    for (const g of started) expect(readFileSync(g.logFile, 'utf8').match(/"connection":"robots".*connected to broker/g) ?? [], `${g.name}'s robot connection`).toHaveLength(1);

    // An edge publishes throughout, to another node.
    edge = mqtt.connect({ servers: serverList(cluster.mqttUrls, EDGE_NODE), username: 'edge-gate-1', password: PASSWORD, clientId: 'edge-hq-gate-1', reconnectPeriod: 200, connectTimeout: 5000 });
    edge.on('error', () => undefined); // reconnects by itself
    await new Promise((resolve) => edge!.once('connect', resolve));
    const screenings = publishThroughout(edge, 25);

    const task = async (id: string, api = atSurvivor) => (await api.get(`/api/tasks/${id}`)).body.task;
    const describeTask = async (id: string) => {
      const t = await task(id);
      return `${id} on ${t.robotId ?? '-'}: ${t.status}; ${JSON.stringify(t.history.map((h: any) => `${h.at.slice(11, 23)} ${h.status}: ${h.reason}`))}`;
    };
    const until = async (probe: () => Promise<unknown>, what: string, timeoutMs: number, ids: string[], g: GatewayProcess) => {
      try {
        await waitFor(probe, { what, timeoutMs, intervalMs: 50 });
      } catch (error) {
        throw new Error(`${(error as Error).message}\n${(await Promise.all(ids.map(describeTask))).join('\n')}\n${logTail(g.logFile)}`);
      }
    };

    // A delivery through the leader, a patrol of three rounds through the follower (stored queued, dispatched by the leader).
    const delivery = await atLeader.post('/api/tasks', { type: 'delivery', from: 'PH', to: 'W2', what: 'insulin', confirmRecipient: false });
    expect(delivery.status).toBe(201);
    const patrol = await atSurvivor.post('/api/tasks', { type: 'patrol', nodes: ['W1', 'W2'], repeat: 3 });
    expect(patrol.status).toBe(201);
    const before = [delivery.body.task.id as string, patrol.body.task.id as string];
    const driving = (i: number) => robots[i]!.snapshot();
    await until(
      async () => (await Promise.all(before.map((id) => task(id, atLeader)))).every((t) => t.status === 'underway') && [0, 1].every((i) => driving(i).orderId !== ''),
      'both tasks underway, both robots on the orders they got through the cluster',
      30_000,
      before,
      leader,
    );

    // SIGKILL of the leading replica while both robots drive.
    const killedAt = Date.now();
    await leader.proc.stop({ signal: 'SIGKILL' });
    await waitFor(async () => (await survivor.role()) === 'leader', { what: () => `the survivor leading\n${logTail(survivor.logFile)}`, timeoutMs: 30_000, intervalMs: 20 });
    await until(
      async () => (await Promise.all(before.map((id) => task(id)))).every((t) => t.status === 'completed' || t.history.some((h: any) => h.reason.includes(`order ${t.orderId} adopted`))),
      'both running orders adopted by the survivor',
      30_000,
      before,
      survivor,
    );
    console.log(`[jetstream-fleet] leading replica killed: the survivor had adopted the running orders ${Date.now() - killedAt} ms later`);

    // Then the NATS node the survivor's robot connection (and NATS connection) started on.
    await cluster.kill(GATEWAY_NODE);
    const after: string[] = [];
    for (const body of [
      { type: 'delivery', from: 'W1', to: 'PH', what: 'blood samples', confirmRecipient: false },
      { type: 'delivery', from: 'PH', to: 'W1', what: 'gloves', confirmRecipient: false },
    ]) {
      const res = await atSurvivor.post('/api/tasks', body);
      expect(res.status).toBe(201);
      after.push(res.body.task.id as string);
    }
    for (const id of [...before, ...after]) await until(async () => (await task(id)).status === 'completed', `task ${id} completed`, 60_000, [id], survivor);
    await waitFor(async () => (await survivor.role()) === 'leader' && (await fetch(`${survivor.url}/healthz`)).status === 200, {
      what: () => `the survivor healthy (its connections moved to another node)\n${logTail(survivor.logFile)}`,
      timeoutMs: 30_000,
    });

    // No task dispatched twice: one order id per task, sent to one robot, update ids rising, nothing refused.
    for (const id of [...before, ...after]) {
      const t = await task(id);
      const orders = received.filter((o) => o.orderId.startsWith(`${id}-`));
      expect(new Set(orders.map((o) => o.orderId)), `orders of ${id}: ${JSON.stringify(orders)}\n${await describeTask(id)}`).toEqual(new Set([t.orderId]));
      expect(new Set(orders.map((o) => o.robot))).toEqual(new Set([t.robotId.split('/')[1]]));
      const updateIds = orders.map((o) => o.orderUpdateId);
      expect(updateIds, `update ids of ${t.orderId}`).toEqual([...updateIds].sort((x, y) => x - y));
      expect(new Set(updateIds).size, `update ids of ${t.orderId} sent once each`).toBe(updateIds.length);
      expect(t.attempts).toBe(1);
    }
    expect(received.filter((o) => o.result === 'rejected'), 'orders the robots refused').toEqual([]);
    // The patrol's three rounds: the order and two updates, whichever replica sent them.
    expect(received.filter((o) => o.orderId.startsWith(`${before[1]}-`)).map((o) => o.orderUpdateId)).toEqual([0, 1, 2]);

    // Screenings kept flowing beside the fleet: every acknowledged one stored.
    await screenings.stop();
    const ids = screenings.acknowledged.map((s) => s.id);
    expect(ids.length).toBeGreaterThan(100);
    const stored = () => count('SELECT count(*) AS n FROM screenings WHERE id = ANY($1)', [ids]);
    let storedNow = 0;
    await waitFor(async () => (storedNow = await stored()) === ids.length, { what: () => `${storedNow} of ${ids.length} acknowledged screenings stored\n${logTail(survivor.logFile)}`, timeoutMs: 60_000 });
    console.log(`[jetstream-fleet] ${ids.length} screenings acknowledged and stored; ${screenings.failed()} publishes not acknowledged (node kill)`);
  }, 300_000);
});
