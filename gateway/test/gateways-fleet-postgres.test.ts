/* eslint-disable @typescript-eslint/no-explicit-any -- JSON bodies of API responses, checked by the tests that read them */
/**
 * Two whole gateway processes on one PostgreSQL and one broker (Mosquitto), with a site map and
 * two simulated VDA 5050 robots speaking the real wire protocol, while an edge publishes
 * screenings throughout. Tasks go in through the API (a delivery the recipient confirms, a patrol
 * whose rounds go out as order updates); while both robots run their orders, the leading gateway
 * is killed with SIGKILL. The other takes the lead within seconds (measured), adopts the running
 * orders (every order the robots received is recorded: no task under two order ids, each order's
 * update ids only increase, the patrol's later rounds come from the survivor), the tasks complete,
 * tasks submitted to the survivor after the kill are dispatched and complete, every acknowledged
 * screening is stored exactly once, and each alert is escalated exactly once (audit): one before
 * the kill by the leader, one due after it by the survivor.
 */
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MqttClient } from 'mqtt';
import type { SimulatedRobot } from '@checkpoint/firmware-bridge';
import { checkpointTopics, type Screening } from '@checkpoint/protocol';
import { logTail, makeTempDir, startMosquitto, startPostgres, waitFor, type MosquittoServer, type PostgresServer, type ServerProcess } from '@checkpoint/test-support';
import { createPostgresUserStore } from '../src/store/postgres/users.js';
import { FLEET_MAP, MANUFACTURER } from './fleet-world.js';
import { startGatewayProcess, startRecordingRobot, type GatewayProcess, type ReceivedOrder } from './helpers/fleet-processes.js';
import { API_PASSWORD, ApiClient, BROKER_PASSWORD, connectEdge, gatewayConfig, makeScreening } from './helpers/world.js';

const SERIALS = ['DEL-1', 'DEL-2'];

let broker: MosquittoServer;
let postgres: PostgresServer;
let pool: pg.Pool;
let edge: MqttClient | undefined;
const gateways: ServerProcess[] = [];
const robots: SimulatedRobot[] = [];

/** Mosquitto with the gateway user (checkpoint and robot topics), the edge of gate-1, and one user per robot (its own topics). */
function startBroker(): Promise<MosquittoServer> {
  const users: Record<string, string> = { gw: BROKER_PASSWORD, 'edge-gate-1': BROKER_PASSWORD };
  const acl = ['user gw', 'topic readwrite checkpoint/v1/#', 'topic readwrite uagv/#'];
  acl.push('user edge-gate-1', 'topic write checkpoint/v1/hq/gate-1/#', 'topic read checkpoint/v1/hq/gate-1/cmd');
  for (const serial of SERIALS) {
    users[`robot-${serial.toLowerCase()}`] = BROKER_PASSWORD;
    acl.push(`user robot-${serial.toLowerCase()}`, `topic readwrite uagv/v2/${MANUFACTURER}/${serial}/#`);
  }
  // Persistent gateway sessions (clean: false) with room for what a gateway misses while it starts.
  return startMosquitto({ users, acl: acl.join('\n'), persistence: true, extraConfig: 'max_queued_messages 1000000' });
}

beforeAll(async () => {
  [broker, postgres] = await Promise.all([startBroker(), startPostgres()]);
  pool = new pg.Pool({ connectionString: postgres.url, max: 2 });
}, 120_000);

afterAll(async () => {
  await Promise.all(gateways.map((g) => g.stop({ signal: 'SIGKILL' })));
  await Promise.all(robots.map((r) => r.close({ graceful: false }).catch(() => undefined)));
  await edge?.endAsync().catch(() => undefined);
  await pool?.end();
  await broker?.stop();
  await postgres?.stop();
});

const count = async (sql: string, params: unknown[] = []) => Number((await pool.query<{ n: string }>(sql, params)).rows[0]!.n);

/** waitFor, whose timeout error also says what `explain` finds then (task histories, logs). */
async function until(probe: () => Promise<unknown>, what: string, timeoutMs: number, explain: () => Promise<string> | string = () => ''): Promise<void> {
  try {
    await waitFor(probe, { what, timeoutMs, intervalMs: 20 });
  } catch (err) {
    throw new Error(`${(err as Error).message}\n${await explain()}`);
  }
}

/** One of the two gateways: the shared database and broker, a site map, fast timers. */
async function startGateway(dir: string, name: string): Promise<GatewayProcess> {
  const { mqtt, ...rest } = gatewayConfig({ dataDir: join(dir, name), mqttUrl: broker.url });
  const g = await startGatewayProcess(dir, name, {
    ...rest,
    mqtt: { ...mqtt, clientId: `gw-fleet-pair-${name}` },
    alerts: { escalateAfterS: 4, checkIntervalMs: 200 },
    // Leadership timings left at their defaults (1000 ms): the hand-over measured is what an operator gets.
    store: { backend: 'postgres', postgres: { url: postgres.url } },
    fleet: { map: FLEET_MAP, rules: [], tickMs: 200, reloadMs: 500 },
  });
  gateways.push(g.proc);
  return g;
}

/** A delivery robot on the broker (10-15 s for a delivery across the map: still running when the leader dies). */
async function startRobot(serial: string, startNode: string, x: number, y: number, received: ReceivedOrder[]): Promise<SimulatedRobot> {
  const robot = await startRecordingRobot({ serial, startNode, x, y, url: broker.url, username: `robot-${serial.toLowerCase()}`, password: BROKER_PASSWORD }, received);
  robots.push(robot);
  return robot;
}

/** Publishes screenings one after another (QoS 1) until stopped; returns those the broker acknowledged. */
function publishThroughout(client: MqttClient, everyMs: number) {
  const acknowledged: Screening[] = [];
  const failed: string[] = [];
  let stopped = false;
  let wake: (() => void) | null = null;
  const done = (async () => {
    let trackId = 0;
    while (!stopped) {
      const s = makeScreening({ trackId: trackId++ });
      try {
        await client.publishAsync(checkpointTopics.screening(s), JSON.stringify(s), { qos: 1 });
        acknowledged.push(s);
      } catch (err) {
        failed.push(`${s.id}: ${(err as Error).message}`);
      }
      // A steady trickle, as at a real checkpoint (not a load test).
      await new Promise<void>((resolve) => {
        wake = resolve;
        setTimeout(resolve, everyMs);
      });
    }
  })();
  return {
    acknowledged,
    failed,
    async stop() {
      stopped = true;
      wake?.();
      await done;
    },
  };
}

describe('the robot fleet of two gateways on PostgreSQL', () => {
  it('the leader killed with SIGKILL mid-order: the other leads within seconds, adopts the running orders, dispatches the new tasks, escalates each alert once, and loses no screening', async () => {
    const dir = makeTempDir('gw-fleet-pair');
    // Both start together; whichever takes the lock first leads, the other follows.
    const started = await Promise.all([startGateway(dir, 'a'), startGateway(dir, 'b')]);
    const roles = await waitFor(
      async () => {
        const r = await Promise.all(started.map((g) => g.role()));
        return r.includes('leader') && r.includes('follower') ? r : null;
      },
      { what: 'one gateway leading, the other following', timeoutMs: 30_000 },
    );
    const leader = started[roles.indexOf('leader')]!;
    const survivor = started[roles.indexOf('follower')]!;

    // The dispatcher, in the users store both gateways share (PostgreSQL; the CLI's `user add` writes the gateway's SQLite file).
    await createPostgresUserStore(pool).add({ name: 'dispatcher', role: 'dispatcher' }, API_PASSWORD);
    const atLeader = await ApiClient.login(leader.url, 'dispatcher');
    const atSurvivor = await ApiClient.login(survivor.url, 'dispatcher');

    // The edge publishes throughout; an alert raised now is escalated (by the leader) before the kill.
    edge = await connectEdge(broker.url, 'gate-1');
    const screenings = publishThroughout(edge, 25);
    const earlyReferral = makeScreening({ trackId: 900_001, decision: 'secondary_check' });
    await edge.publishAsync(checkpointTopics.screening(earlyReferral), JSON.stringify(earlyReferral), { qos: 1 });
    const escalations = async (screeningId: string) =>
      count(`SELECT count(*) AS n FROM alerts a JOIN audit au ON au.action = 'alert.escalated' AND au.target = a.id WHERE a.screening_id = $1`, [screeningId]);

    const received: ReceivedOrder[] = [];
    await startRobot('DEL-1', 'P1', 0, 0, received);
    await startRobot('DEL-2', 'P2', 0, 10, received);
    const robotIds = SERIALS.map((s) => `${MANUFACTURER}/${s}`);
    await waitFor(
      async () => {
        const listed = (await atLeader.get('/api/robots')).body.robots as any[];
        return robotIds.every((id) => listed.some((r) => r.id === id && r.connection === 'ONLINE' && r.available && r.capabilities.length > 0 && !r.driving));
      },
      { what: 'both robots online and idle at the leader', timeoutMs: 30_000 },
    );

    // Two tasks through the API: a delivery on the leader (the recipient confirms at the ward: the order waits there), and a patrol
    // of three rounds on the follower (stored queued, dispatched by the leader; each next round goes out as an order update).
    const task = async (id: string, api = atSurvivor) => (await api.get(`/api/tasks/${id}`)).body.task;
    const describeTask = async (id: string) => {
      const t = await task(id);
      return `${id} on ${t.robotId ?? '-'}: ${t.status}; ${JSON.stringify(t.history.map((h: any) => `${h.at.slice(11, 23)} ${h.status}: ${h.reason}`))}`;
    };
    const confirmed = await atLeader.post('/api/tasks', { type: 'delivery', from: 'PH', to: 'W2', what: 'insulin', recipient: 'ward 2 nurse' });
    expect(confirmed.status).toBe(201);
    const viaFollower = await atSurvivor.post('/api/tasks', { type: 'patrol', nodes: ['W1', 'W2'], repeat: 3 });
    expect(viaFollower.status).toBe(201);
    expect(viaFollower.body.task.status).toBe('queued');
    const before = [confirmed.body.task.id as string, viaFollower.body.task.id as string];

    // Kill the leader while both robots drive their orders.
    const driving = (serial: string) => robots[SERIALS.indexOf(serial)]!.snapshot();
    await until(
      async () => {
        const tasks = await Promise.all(before.map((id) => task(id, atLeader)));
        return tasks.every((t) => t.status === 'underway') && SERIALS.every((s) => driving(s).orderId !== '' && driving(s).nodeStates.length > 0);
      },
      'both tasks underway, both robots on their orders',
      30_000,
      async () => (await Promise.all(before.map(describeTask))).join('\n'),
    );
    await waitFor(async () => (await escalations(earlyReferral.id)) === 1, { what: () => `the early alert escalated by the leader\n${logTail(leader.logFile)}`, timeoutMs: 30_000 });
    // A second alert, due after the kill (escalateAfterS 4).
    const lateReferral = makeScreening({ trackId: 900_002, decision: 'secondary_check' });
    await edge.publishAsync(checkpointTopics.screening(lateReferral), JSON.stringify(lateReferral), { qos: 1 });
    const runningAtKill = new Map(SERIALS.map((s) => [s, driving(s).orderId]));
    const killedAt = Date.now();
    await leader.proc.stop({ signal: 'SIGKILL' });

    // A task submitted to the survivor at once (it may still follow: stored queued, dispatched once it leads).
    const rightAfter = await atSurvivor.post('/api/tasks', { type: 'delivery', from: 'W1', to: 'PH', what: 'blood samples', confirmRecipient: false });
    expect(rightAfter.status).toBe(201);

    await waitFor(async () => (await survivor.role()) === 'leader', { what: () => `the survivor leading after the kill\n${logTail(survivor.logFile)}`, timeoutMs: 30_000, intervalMs: 10 });
    const lockMs = Date.now() - killedAt;
    // The fleet is led once the survivor adopted the orders the robots run (the task histories say so).
    await until(
      async () => (await Promise.all(before.map((id) => task(id)))).every((t) => t.history.some((h: any) => h.reason.includes(`order ${t.orderId} adopted`))),
      'both running orders adopted by the survivor',
      30_000,
      async () => `${(await Promise.all(before.map(describeTask))).join('\n')}\n${logTail(survivor.logFile)}`,
    );
    const adoptedMs = Date.now() - killedAt;
    console.log(`leading gateway killed with SIGKILL: the other held the lock ${lockMs} ms later and had adopted the running orders ${adoptedMs} ms later (leaderRetryMs 1000)`);
    expect(lockMs).toBeLessThan(10_000);
    expect(adoptedMs).toBeLessThan(15_000);
    // The robots were still on the orders they ran at the kill when the survivor adopted them.
    for (const id of before) {
      const t = await task(id);
      expect([...runningAtKill.values()]).toContain(t.orderId);
    }

    // A task submitted to the new leader.
    const afterLead = await atSurvivor.post('/api/tasks', { type: 'delivery', from: 'PH', to: 'W1', what: 'gloves', confirmRecipient: false });
    expect(afterLead.status).toBe(201);
    const after = [rightAfter.body.task.id as string, afterLead.body.task.id as string];

    // The recipient confirms through the survivor (only the leader may), and every task completes.
    await until(async () => (await task(before[0]!)).waitingFor === 'received', 'the delivery waiting for its recipient', 30_000, () => describeTask(before[0]!));
    const confirm = await atSurvivor.post(`/api/tasks/${before[0]}/confirm`, { kind: 'received' });
    expect(confirm.status).toBe(200);
    for (const id of [...before, ...after]) {
      await until(async () => (await task(id)).status === 'completed', `task ${id} completed`, 40_000, async () => `${await describeTask(id)}\n${logTail(survivor.logFile)}`);
    }

    // No task dispatched twice: one order id per task (sent to one robot), update ids only rising, nothing refused.
    const allTasks = [...before, ...after];
    for (const id of allTasks) {
      const t = await task(id);
      const orders = received.filter((o) => o.orderId.startsWith(`${id}-`));
      expect(new Set(orders.map((o) => o.orderId)), `orders of ${id}: ${JSON.stringify(orders)}`).toEqual(new Set([t.orderId]));
      expect(new Set(orders.map((o) => o.robot))).toEqual(new Set([t.robotId.split('/')[1]]));
      const updateIds = orders.map((o) => o.orderUpdateId);
      expect(updateIds, `update ids of ${t.orderId}`).toEqual([...updateIds].sort((x, y) => x - y));
      expect(new Set(updateIds).size, `update ids of ${t.orderId} sent once each`).toBe(updateIds.length);
      expect(t.attempts).toBe(1);
      expect(t.history.some((h: any) => h.reason.includes('re-queued'))).toBe(false);
    }
    expect(received.filter((o) => o.result === 'rejected'), 'orders the robots refused').toEqual([]);
    console.log(`orders the robots received: ${received.map((o) => `${o.robot} ${o.orderId.slice(-8)}#${o.orderUpdateId} ${o.result}`).join(', ')}`);
    for (const id of after) expect((await task(id)).history.some((h: any) => h.reason.includes('adopted'))).toBe(false);
    // The patrol's next rounds after the kill went out from the survivor, as updates of the adopted order.
    const patrolUpdates = received.filter((o) => o.orderId.startsWith(`${before[1]}-`) && o.orderUpdateId > 0);
    expect(patrolUpdates.map((o) => o.orderUpdateId)).toEqual([1, 2]);
    expect(patrolUpdates.at(-1)!.atMs).toBeGreaterThan(killedAt);

    // No screening lost: every acknowledged one stored exactly once.
    await screenings.stop();
    const referrals = [earlyReferral, lateReferral];
    const published = [...screenings.acknowledged, ...referrals];
    expect(screenings.failed).toEqual([]);
    expect(screenings.acknowledged.length).toBeGreaterThan(100);
    const ids = published.map((s) => s.id);
    const stored = () => count('SELECT count(*) AS n FROM screenings WHERE id = ANY($1)', [ids]);
    await until(async () => (await stored()) === ids.length, 'every acknowledged screening stored', 30_000, async () => `${await stored()} of ${ids.length} stored`);
    expect(await count('SELECT count(*) AS n FROM screenings')).toBe(ids.length);

    // Each alert escalated exactly once: the early one by the killed leader, the late one by the gateway leading when it came due.
    await waitFor(async () => (await escalations(lateReferral.id)) === 1, { what: () => `the late alert escalated\n${logTail(survivor.logFile)}`, timeoutMs: 30_000 });
    expect(await count('SELECT count(*) AS n FROM alerts')).toBe(2);
    expect(await count(`SELECT count(*) AS n FROM audit WHERE action = 'alert.escalated'`)).toBe(2);
    for (const s of referrals) expect(await escalations(s.id)).toBe(1);
    // The late one came due after the kill: the survivor took the escalation over.
    const escalatedAt = async (screeningId: string) =>
      Number((await pool.query<{ at_ms: string }>(`SELECT au.at_ms FROM alerts a JOIN audit au ON au.action = 'alert.escalated' AND au.target = a.id WHERE a.screening_id = $1`, [screeningId])).rows[0]!.at_ms);
    expect(await escalatedAt(earlyReferral.id)).toBeLessThan(killedAt);
    expect(await escalatedAt(lateReferral.id)).toBeGreaterThan(killedAt);
  }, 180_000);
});
