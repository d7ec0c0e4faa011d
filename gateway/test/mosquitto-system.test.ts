/* eslint-disable @typescript-eslint/no-explicit-any -- JSON bodies of API responses, checked by the tests that read them */
/**
 * The whole site on a real Mosquitto configured only with what `checkpoint-broker
 * mosquitto-export` writes from one user store (password file, ACL file, config lines): a real
 * edge agent (ONNX models, simulated replay), the gateway with a site map, the firmware-bridge
 * with a serial robot on a socat pty, and a native MQTT robot. Screenings reach the API exactly
 * once, both robots come ONLINE, a delivery task completes, and the exported ACL keeps each of
 * these clients inside its own topics.
 */
import { existsSync, readFileSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import mqtt, { type MqttClient } from 'mqtt';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exportMosquitto, openUserStore, type UserStore } from '@checkpoint/broker';
import { loadAgentConfig, runAgent, simulateToReplay } from '@checkpoint/edge-agent';
import { createSimulatedRobot, startBridge, type Bridge, type SimulatedRobot } from '@checkpoint/firmware-bridge';
import { checkpointTopics, vda5050Topic, type Screening } from '@checkpoint/protocol';
import { makeTempDir, openPtyPair, startMosquitto, waitFor, type MosquittoServer, type PtyPair } from '@checkpoint/test-support';
import { createGateway, type Gateway } from '../src/index.js';
import { DELIVERY_ACTIONS, fleetGatewayConfig, MANUFACTURER } from './fleet-world.js';
import { API_PASSWORD, ApiClient, BROKER_PASSWORD, makeScreening } from './helpers/world.js';

const SHARED = fileURLToPath(new URL('../../../shared/', import.meta.url));
const FACES_DIR = join(SHARED, 'datasets/mask-sample');
const MODELS_MIRROR = process.env.CHECKPOINT_MODELS_MIRROR ?? join(SHARED, 'models');
const haveShared = existsSync(FACES_DIR) && existsSync(MODELS_MIRROR);
if (!haveShared) console.warn(`mosquitto-system skipped: ${SHARED} (models mirror and datasets) is absent`);

const DEL_S = { manufacturer: MANUFACTURER, serialNumber: 'DEL-S' }; // serial, behind the bridge
const DEL_N = { manufacturer: MANUFACTURER, serialNumber: 'DEL-N' }; // native MQTT
const id = (r: { serialNumber: string }) => `${MANUFACTURER}/${r.serialNumber}`;

/** One user per role this site needs, all with the same test password. */
async function addSiteUsers(users: UserStore): Promise<void> {
  await users.add({ name: 'gw', role: 'gateway' }, BROKER_PASSWORD);
  await users.add({ name: 'edge-gate-1', role: 'edge', site: 'hq', checkpoint: 'gate-1' }, BROKER_PASSWORD);
  await users.add({ name: 'bridge', role: 'bridge', robots: [DEL_S] }, BROKER_PASSWORD);
  await users.add({ name: 'robot-del-n', role: 'robot', robot: DEL_N }, BROKER_PASSWORD);
}

const connect = (url: string, username: string, clientId: string): Promise<MqttClient> =>
  mqtt.connectAsync(url, { username, password: BROKER_PASSWORD, clientId, reconnectPeriod: 0 });

describe.skipIf(!haveShared)('edge agent, firmware-bridge and gateway on a Mosquitto configured by mosquitto-export', () => {
  const dir = makeTempDir('mosquitto-system');
  let userStore: UserStore;
  let mosquitto: MosquittoServer;
  let gateway: Gateway;
  let bridge: Bridge | null = null;
  const robots: SimulatedRobot[] = [];
  let pty: PtyPair | null = null;
  let dispatcher: ApiClient;
  let guard: ApiClient;
  const replayDir = join(dir, 'scene');

  beforeAll(async () => {
    userStore = openUserStore(join(dir, 'users.sqlite')); // default: keeps the Mosquitto-format hash
    await addSiteUsers(userStore);
    const exported = exportMosquitto(userStore, join(dir, 'mosquitto'));
    expect(exported.exported.sort()).toEqual(['bridge', 'edge-gate-1', 'gw', 'robot-del-n']);
    expect(exported.withoutHash).toEqual([]);

    // Only the exported files: no `users`/`acl` here, so test-support writes no password or ACL
    // file of its own; the generated config lines come after its `allow_anonymous true` and win.
    // Room for the gateway's persistent session (Mosquitto's default queue is 1000).
    const [server] = await Promise.all([
      startMosquitto({ persistence: true, extraConfig: `${readFileSync(exported.configFile, 'utf8')}max_queued_messages 1000000\n` }),
      simulateToReplay(replayDir, { facesDir: FACES_DIR, people: 8, feverRate: 0.25, maskRate: 0.5, seed: 11 }),
    ]);
    mosquitto = server;

    gateway = await createGateway(fleetGatewayConfig(join(dir, 'gateway'), mosquitto.url));
    await gateway.users.add({ name: 'dispatcher', role: 'dispatcher' }, API_PASSWORD);
    await gateway.users.add({ name: 'guard', role: 'guard' }, API_PASSWORD);
    dispatcher = await ApiClient.login(gateway.url, 'dispatcher');
    guard = await ApiClient.login(gateway.url, 'guard');
    await waitFor(() => gateway.mqttConnected(), { what: 'gateway connected to mosquitto' });

    const common = { manufacturer: MANUFACTURER, speed: 2, timeScale: 10, batteryPct: 90, capabilities: DELIVERY_ACTIONS };
    pty = await openPtyPair();
    const link = join(dir, 'tty-DEL-S'); // a stable name, like /dev/serial/by-id/...
    symlinkSync(pty.a, link);
    robots.push(await createSimulatedRobot({ ...common, serialNumber: DEL_S.serialNumber, startNode: 'P1', x: 0, y: 0, transport: { kind: 'serial', path: pty.b } }));
    bridge = await startBridge({
      mqtt: { url: mosquitto.url, username: 'bridge', password: BROKER_PASSWORD },
      robots: [{ port: link, baudRate: 115200, ...DEL_S }],
      logger: pino({ level: 'silent' }),
      statePeriodMs: 1000,
      linkTimeoutMs: 1000,
    });
    robots.push(
      await createSimulatedRobot({
        ...common,
        serialNumber: DEL_N.serialNumber,
        startNode: 'P2',
        x: 0,
        y: 10,
        reportMs: 2000,
        transport: { kind: 'mqtt', url: mosquitto.url, username: 'robot-del-n', password: BROKER_PASSWORD },
      }),
    );
  }, 60_000);

  afterAll(async () => {
    await Promise.all(robots.map((r) => r.close().catch(() => undefined)));
    await bridge?.close();
    await pty?.close();
    await gateway?.close();
    await mosquitto?.stop();
    userStore?.close();
  });

  it('carries screenings, robot states and a delivery task, and the exported ACL holds', async () => {
    // --- robots: both ONLINE in the API, one through the bridge, one native --------------------
    const robotList = async () => (await dispatcher.get('/api/robots')).body.robots as any[];
    await waitFor(
      async () => {
        const listed = await robotList();
        return [DEL_S, DEL_N].every((r) => listed.some((x) => x.id === id(r) && x.connection === 'ONLINE' && x.available && !x.driving));
      },
      { what: 'both robots ONLINE and idle in /api/robots', timeoutMs: 20_000 },
    );
    expect((await robotList()).map((r) => r.id)).toEqual([id(DEL_N), id(DEL_S)]);

    // --- a real edge agent on the replay -------------------------------------------------------
    const produced: Screening[] = [];
    const config = await loadAgentConfig(
      undefined,
      { CHECKPOINT_MODELS_MIRROR: MODELS_MIRROR, CHECKPOINT_MODELS_DIR: join(dir, 'models'), CHECKPOINT_LOG_LEVEL: 'silent' },
      {
        site: 'hq',
        checkpoint: 'gate-1',
        dataDir: join(dir, 'agent'),
        mqtt: { url: mosquitto.url, username: 'edge-gate-1', password: BROKER_PASSWORD, reconnectMs: 200 },
        source: { thermal: { kind: 'replay', dir: replayDir, realtime: false } },
        http: { port: 0 },
      },
    );
    const agent = await runAgent(config, { onScreening: (r) => produced.push(r.screening) });

    // Meanwhile, a delivery through the API, done by whichever robot the dispatcher picks.
    const created = await dispatcher.post('/api/tasks', { type: 'delivery', from: 'PH', to: 'W2', what: 'insulin', confirmRecipient: false });
    expect(created.status).toBe(201);
    const taskId = created.body.task.id as string;

    try {
      await agent.done;
      await waitFor(() => agent.outboxDepth() === 0, { what: 'agent outbox drained', timeoutMs: 20_000 });
    } finally {
      await agent.stop();
    }
    expect(produced.length).toBeGreaterThanOrEqual(6); // 8 simulated people

    // --- every screening in the API exactly once -----------------------------------------------
    const listed = async () => (await guard.get('/api/screenings?limit=10000')).body.screenings as Array<{ id: string; decision: string }>;
    await waitFor(async () => (await listed()).length >= produced.length, { what: `${produced.length} screenings in the API`, timeoutMs: 20_000 });
    await new Promise((r) => setTimeout(r, 300)); // would-be duplicates arrive late
    const api = await listed();
    expect(api.map((s) => s.id).sort()).toEqual(produced.map((s) => s.id).sort());
    const byId = new Map(produced.map((s) => [s.id, s.decision]));
    expect(api.every((s) => byId.get(s.id) === s.decision)).toBe(true);

    // --- the delivery completes on one of the two robots ---------------------------------------
    const task = async () => (await dispatcher.get(`/api/tasks/${taskId}`)).body.task;
    await waitFor(async () => (await task()).status === 'completed', { what: 'delivery completed', timeoutMs: 30_000 });
    const done = await task();
    expect([id(DEL_S), id(DEL_N)]).toContain(done.robotId);
    // Driven and acted on by the robot (pick at PH, drop at W2), not just marked done. Where it stands
    // now is not checked: an idle robot may already be on its way back to a parking place.
    expect((done.history as any[]).map((h) => h.status)).toEqual(expect.arrayContaining(['assigned', 'underway', 'completed']));
    expect(Object.keys(done.progress.actions).length).toBeGreaterThanOrEqual(2);
    expect(Object.values(done.progress.actions).every((s) => s === 'FINISHED')).toBe(true);

    // --- the exported ACL on Mosquitto: denied publishes are acknowledged and not delivered ------
    // A second gateway-role client sees every checkpoint and robot topic. Each publisher sends its
    // forged messages, then one it may send: Mosquitto keeps one client's messages in order, so
    // once that canary arrives, anything forged that got through would have arrived before it.
    const monitor = await connect(mosquitto.url, 'gw', 'acl-monitor');
    const seen: Array<{ topic: string; payload: string }> = [];
    monitor.on('message', (topic, payload) => seen.push({ topic, payload: payload.toString() }));
    await monitor.subscribeAsync(['checkpoint/v1/#', 'uagv/v2/#'], { qos: 1 });

    const forgedScreening = makeScreening({ checkpoint: 'gate-1' });
    const attempts: Array<{ user: string; forged: Array<[topic: string, payload: string]>; allowed: string }> = [
      {
        user: 'edge-gate-1',
        forged: [
          [vda5050Topic(DEL_N, 'order'), 'forged-by-edge'],
          [vda5050Topic(DEL_S, 'state'), 'forged-by-edge'],
          ['checkpoint/v1/hq/gate-2/screening', JSON.stringify(makeScreening({ checkpoint: 'gate-2' }))],
        ],
        allowed: 'checkpoint/v1/hq/gate-1/cmd/ack',
      },
      {
        user: 'robot-del-n',
        forged: [
          ['checkpoint/v1/hq/gate-1/screening', JSON.stringify(forgedScreening)],
          [vda5050Topic(DEL_S, 'state'), 'forged-by-robot'],
          [vda5050Topic(DEL_S, 'order'), 'forged-by-robot'],
        ],
        allowed: vda5050Topic(DEL_N, 'visualization'),
      },
      {
        user: 'bridge',
        forged: [
          [vda5050Topic(DEL_N, 'state'), 'forged-by-bridge'],
          [vda5050Topic(DEL_N, 'order'), 'forged-by-bridge'],
        ],
        allowed: vda5050Topic(DEL_S, 'visualization'),
      },
    ];
    for (const { user, forged, allowed } of attempts) {
      const client = await connect(mosquitto.url, user, `acl-${user}`);
      // The edge also tries to listen to the robots: Mosquitto grants the SUBSCRIBE but delivers nothing.
      const overheard: string[] = [];
      client.on('message', (topic) => overheard.push(topic));
      if (user === 'edge-gate-1') await client.subscribeAsync('uagv/v2/#', { qos: 1 });
      const subscribedAt = seen.length;
      for (const [topic, payload] of forged) await client.publishAsync(topic, payload, { qos: 1 }); // PUBACKed though denied
      const canary = `canary-${user}`;
      await client.publishAsync(allowed, canary, { qos: 1 });
      await waitFor(() => seen.some((m) => m.payload === canary), { what: `${user}'s allowed message at the monitor`, timeoutMs: 5_000 });
      if (user === 'edge-gate-1') {
        // Both robots report at least every 2 s: wait until the monitor heard each after the SUBSCRIBE.
        const heard = (r: typeof DEL_S) => seen.slice(subscribedAt).some((m) => m.topic === vda5050Topic(r, 'state') && !m.payload.startsWith('forged'));
        await waitFor(() => heard(DEL_S) && heard(DEL_N), { what: 'robot states after the edge subscribed', timeoutMs: 5_000 });
        // Not a fixed sleep: a command the edge may read, sent after those states, reaches it after
        // anything Mosquitto queued for it before (one client's deliveries keep their order).
        const cmdTopic = checkpointTopics.cmd({ site: 'hq', checkpoint: 'gate-1' });
        await client.subscribeAsync(cmdTopic, { qos: 1 });
        const flushed = new Promise<void>((resolve) => client.on('message', (topic, payload) => topic === cmdTopic && payload.toString() === 'flush' && resolve()));
        await monitor.publishAsync(cmdTopic, 'flush', { qos: 1 });
        await flushed;
        expect(overheard.filter((t) => t !== cmdTopic)).toEqual([]);
      }
      expect(client.connected).toBe(true);
      await client.endAsync();
      expect(seen.filter((m) => forged.some(([topic, payload]) => m.topic === topic && m.payload === payload))).toEqual([]);
    }
    await monitor.endAsync();
    // The forged screening did not reach the gateway either.
    expect((await listed()).some((s) => s.id === forgedScreening.id)).toBe(false);
    // A wrong password is refused (CONNACK 5): the exported password file is in force.
    await expect(mqtt.connectAsync(mosquitto.url, { username: 'edge-gate-1', password: 'wrong-password', reconnectPeriod: 0 })).rejects.toThrow(/Not authorized/i);
    // And anonymous clients are refused: the exported `allow_anonymous false` is in force.
    await expect(mqtt.connectAsync(mosquitto.url, { reconnectPeriod: 0 })).rejects.toThrow(/Not authorized/i);
  }, 60_000);
});
