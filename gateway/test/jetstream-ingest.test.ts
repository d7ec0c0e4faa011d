/**
 * Cluster mode ingest (issue #18) against a real 3-node NATS cluster (nats-server 2.9, JetStream,
 * MQTT listener) with the users and permissions of `checkpoint-broker nats-export`: a gateway
 * with `ingest.source: jetstream` (SQLite: one replica; a second consumer client on the same
 * durable shows the sharing), real mqtt.js devices publishing QoS 1 screenings and QoS 0
 * telemetry, a command round trip, and a kill -9 of the node leading `$MQTT_msgs` mid-stream.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import mqtt, { type MqttClient } from 'mqtt';
import { connect as natsConnect, type NatsConnection } from 'nats';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { exportNats, openUserStore } from '@checkpoint/broker';
import { checkpointTopics, type Screening } from '@checkpoint/protocol';
import { makeTempDir, startNatsCluster, waitFor, type NatsCluster } from '@checkpoint/test-support';
import { createGateway, type Gateway } from '../src/index.js';
import { resolveGatewayConfig } from '../src/config.js';
import { INGEST_FILTER, MQTT_STREAM, startJetStreamConsumer } from '../src/ingest/jetstream-consumer.js';
import { API_PASSWORD, ApiClient, makeScreening } from './helpers/world.js';

const PASSWORD = 'nats-test-password-1';
const OPERATOR_PASSWORD = 'nats-operator-password-1';
const EDGE = { site: 'hq', checkpoint: 'gate-1' } as const;
const log = (line: string) => console.log(`[jetstream-ingest] ${line}`);

let cluster: NatsCluster;
let gateway: Gateway;
let reader: Database.Database;
let admin: NatsConnection;
/** When each screening id was first handed to the gateway's store, and how often. */
const ingested = new Map<string, { atMs: number; copies: number }>();
/** Telemetry messages per storeBatch call that stored some (group commit of QoS 0). */
const telemetryBatches: number[] = [];

const storedIds = () => new Set(reader.prepare<[], { id: string }>('SELECT id FROM screenings').all().map((r) => r.id));

function connectDevice(options: mqtt.IClientOptions & { node?: number } = {}): Promise<MqttClient> {
  const { node = 0, ...rest } = options;
  // Every node listed: mqtt.js moves to the next one when its node dies.
  const servers = cluster.nodes.map((_, i) => cluster.nodes[(node + i) % cluster.nodes.length]!).map((n) => ({ host: n.host, port: n.mqttPort }));
  const client = mqtt.connect({ servers, protocol: 'mqtt', username: 'edge-gate-1', password: PASSWORD, reconnectPeriod: 200, connectTimeout: 5000, ...rest });
  client.on('error', () => undefined); // reconnects by itself; refusals show up as timeouts below
  return new Promise((resolve) => client.once('connect', () => resolve(client)));
}

/** The node (`n1`...) a NATS client named `name` is connected to (monitoring /connz). */
async function nodeHolding(name: string): Promise<string | undefined> {
  for (const n of cluster.nodes.filter((node) => node.running)) {
    const connz = (await (await fetch(`${n.monitorUrl}/connz?limit=1000`)).json()) as { connections?: Array<{ name?: string }> };
    if (connz.connections?.some((c) => c.name === name)) return n.name;
  }
  return undefined;
}

/** Publishes QoS 1 until each is acknowledged (what the agent's outbox does), `window` at a time. */
async function publishAll(client: MqttClient, screenings: Screening[], window: number, onAck: (s: Screening) => void): Promise<{ retries: number }> {
  let next = 0;
  let retries = 0;
  const worker = async () => {
    while (next < screenings.length) {
      const s = screenings[next++]!;
      for (;;) {
        try {
          await client.publishAsync(checkpointTopics.screening(s), JSON.stringify(s), { qos: 1 });
          onAck(s);
          break;
        } catch {
          retries++;
          await new Promise((resolve) => setTimeout(resolve, 200));
        }
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(window, screenings.length) }, worker));
  return { retries };
}

/** A second replica on the shared durable consumer: it takes its share of the stream, stores nothing, and shows each message it took to `took`. */
function startSecondReplica(took: (m: { topic: string; payload: Buffer }) => void) {
  return startJetStreamConsumer({
    nats: resolveGatewayConfig({ nats: { servers: cluster.natsUrls, user: 'gw', password: PASSWORD, fetchBatch: 20 } }).nats,
    retry: { storeRetryMinMs: 20, storeRetryMaxMs: 1000 },
    groupCommit: { batchMaxMessages: 50, batchMaxWaitMs: 5 },
    sink: {
      storeBatch: async (messages) => {
        messages.forEach(took);
        return { stored: messages.length };
      },
    },
    log: pino({ level: 'silent' }),
  });
}

beforeAll(async () => {
  const dir = makeTempDir('gw-jetstream');
  const users = openUserStore(join(dir, 'users.sqlite'), { scrypt: { N: 1024, r: 8, p: 1 }, mosquittoHashIterations: 0, natsBcryptCost: 4 });
  await users.add({ name: 'gw', role: 'gateway' }, PASSWORD);
  await users.add({ name: 'edge-gate-1', role: 'edge', ...EDGE }, PASSWORD);
  const exported = exportNats(users, join(dir, 'auth.conf'));
  users.close();
  expect(exported.exported).toEqual(['edge-gate-1', 'gw']);
  // A test-only operator (plain password: nats-server accepts it) to move the stream leader.
  const authorization = readFileSync(exported.file, 'utf8').replace(
    '  users = [\n',
    `  users = [\n    { user: "operator", password: ${JSON.stringify(OPERATOR_PASSWORD)}, permissions: { publish: ">", subscribe: ">" } }\n`,
  );
  cluster = await startNatsCluster({ authorization });
  // nats-server creates $MQTT_msgs at the first MQTT connection, and the gateway's consumer must
  // exist before devices publish (interest retention): on a fresh cluster the gateway makes that
  // first connection itself, with its MQTT settings.
  gateway = await createGateway({
    dataDir: join(dir, 'gateway'),
    logLevel: process.env.GW_TEST_LOG ?? 'silent',
    http: { host: '127.0.0.1', port: 0 },
    opcua: { enabled: false },
    ingest: { source: 'jetstream' },
    mqtt: { url: cluster.mqttUrls[1], username: 'gw', password: PASSWORD },
    nats: { servers: cluster.natsUrls, user: 'gw', password: PASSWORD, fetchBatch: 50 },
  }, {
    onIngested(messages, atMs) {
      const telemetry = messages.filter((m) => m.topic.endsWith('/telemetry')).length;
      if (telemetry) telemetryBatches.push(telemetry);
      for (const m of messages) {
        if (!m.topic.endsWith('/screening')) continue;
        const id = (JSON.parse(m.payload.toString()) as { id: string }).id;
        const seen = ingested.get(id);
        if (seen) seen.copies++;
        else ingested.set(id, { atMs, copies: 1 });
      }
    },
  });
  await waitFor(() => gateway.mqttConnected(), { what: 'gateway pulling from its JetStream consumer', timeoutMs: 30_000 });
  reader = new Database(join(gateway.config.dataDir, 'gateway.sqlite'), { readonly: true });
  admin = await natsConnect({ servers: cluster.natsUrls, user: 'operator', pass: OPERATOR_PASSWORD });
}, 120_000);

afterAll(async () => {
  await admin?.close();
  reader?.close();
  await gateway?.close();
  await cluster?.stop();
});

describe('gateway ingest from a NATS cluster (ingest.source: jetstream)', () => {
  it('reads nats-server\'s own MQTT stream through one durable consumer (the internal names, pinned)', async () => {
    // As the gateway user: its nats-export grants cover these lookups.
    const gw = await natsConnect({ servers: cluster.natsUrls, user: 'gw', pass: PASSWORD });
    onTestFinished(() => gw.close());
    const jsm = await gw.jetstreamManager({ checkAPI: false });
    const stream = await jsm.streams.info(MQTT_STREAM);
    expect(stream.config.subjects).toEqual(['$MQTT.msgs.>']);
    expect(stream.config.retention).toBe('interest');
    expect(stream.config.num_replicas).toBe(3);
    const consumer = await jsm.consumers.info(MQTT_STREAM, 'checkpoint-gateway');
    expect(consumer.config.filter_subject).toBe(INGEST_FILTER);
    expect(consumer.config.filter_subject).toBe('$MQTT.msgs.checkpoint.v1.>');
    expect(consumer.config.ack_policy).toBe('explicit');
    expect(consumer.config.durable_name).toBe('checkpoint-gateway');
  });

  it('stores QoS 1 screenings once each, and QoS 0 telemetry from the queue subscription', async () => {
    const device = await connectDevice({ clientId: 'edge-hq-gate-1-a' });
    const screenings = Array.from({ length: 200 }, (_, i) => makeScreening({ trackId: i }));
    await publishAll(device, screenings, 16, () => undefined);
    await waitFor(() => screenings.every((s) => storedIds().has(s.id)), { what: '200 screenings stored', timeoutMs: 30_000 });
    const telemetry = { ts: new Date().toISOString(), ...EDGE, fps: 8.7, stages: { decode: 4.1 }, cpuTempC: 61.2, ambientC: 21.5, blackbody: { setC: 35, measuredC: 34.6, status: 'ok' }, queueDepth: 0, rssMb: 200 };
    await device.publishAsync(checkpointTopics.telemetry(EDGE), JSON.stringify(telemetry), { qos: 0 });
    await waitFor(() => gateway.store.devices().find((d) => d.checkpoint === EDGE.checkpoint)?.telemetry?.ts === telemetry.ts, { what: 'QoS 0 telemetry stored', timeoutMs: 10_000 });
    await device.endAsync();
    expect(screenings.filter((s) => (ingested.get(s.id)?.copies ?? 0) > 1)).toEqual([]);
  }, 60_000);

  it('stores a burst of QoS 0 telemetry by group commit, every message and fewer transactions than messages', async () => {
    const device = await connectDevice({ clientId: 'edge-hq-gate-1-burst' });
    onTestFinished(() => device.endAsync());
    telemetryBatches.length = 0;
    const t0 = Date.now();
    const burst = Array.from({ length: 500 }, (_, i) => ({
      ts: new Date(t0 + i).toISOString(), ...EDGE, fps: 9, stages: { decode: 4 }, cpuTempC: 60, ambientC: 21, blackbody: null, queueDepth: i,
    }));
    for (const t of burst) device.publish(checkpointTopics.telemetry(EDGE), JSON.stringify(t), { qos: 0 });
    await waitFor(() => telemetryBatches.reduce((a, b) => a + b, 0) >= burst.length, { what: '500 telemetry messages stored', timeoutMs: 20_000 });
    expect(telemetryBatches.reduce((a, b) => a + b, 0)).toBe(burst.length);
    expect(telemetryBatches.length).toBeLessThan(burst.length);
    expect(gateway.store.devices().find((d) => d.checkpoint === EDGE.checkpoint)?.telemetry?.queueDepth).toBe(499);
  }, 60_000);

  it('sends a command the device gets as QoS 1 and returns its cmd/ack, which came through the stream', async () => {
    await gateway.users.add({ name: 'engineer', role: 'engineer' }, API_PASSWORD);
    const engineer = await ApiClient.login(gateway.url, 'engineer');
    const device = await connectDevice({ clientId: 'edge-hq-gate-1-cmd', clean: false, node: 1 });
    const granted = await device.subscribeAsync(checkpointTopics.cmd(EDGE), { qos: 1 });
    expect(granted[0]!.qos).toBe(1);
    const got: number[] = [];
    device.on('message', (_topic, payload, packet) => {
      got.push(packet.qos);
      const cmd = JSON.parse(payload.toString()) as { id: string; type: string };
      void device.publishAsync(checkpointTopics.cmdAck(EDGE), JSON.stringify({ id: cmd.id, ts: new Date().toISOString(), ok: true, detail: { type: cmd.type } }), { qos: 1 });
    });
    const res = await engineer.post(`/api/checkpoints/${EDGE.site}/${EDGE.checkpoint}/cmd`, { type: 'ping' });
    expect(res.status).toBe(200);
    expect(res.body.ack).toMatchObject({ id: res.body.command.id, ok: true });
    expect(got).toEqual([1]);
    await device.endAsync();
  }, 60_000);

  it('shares the durable consumer: a second replica takes part of the stream, nothing is lost', async () => {
    const replicaIds = new Set<string>();
    const replica = startSecondReplica((m) => {
      if (m.topic.endsWith('/screening')) replicaIds.add((JSON.parse(m.payload.toString()) as { id: string }).id);
    });
    try {
      await waitFor(() => replica.connected(), { what: 'second replica pulling', timeoutMs: 20_000 });
      const device = await connectDevice({ clientId: 'edge-hq-gate-1-share' });
      const screenings = Array.from({ length: 400 }, (_, i) => makeScreening({ trackId: i }));
      await publishAll(device, screenings, 4, () => undefined);
      await device.endAsync();
      await waitFor(() => screenings.every((s) => storedIds().has(s.id) || replicaIds.has(s.id)), { what: 'every screening taken by one replica or the other', timeoutMs: 30_000 });
      const byGateway = screenings.filter((s) => storedIds().has(s.id)).length;
      const byReplica = screenings.filter((s) => replicaIds.has(s.id)).length;
      log(`400 screenings shared: gateway ${byGateway}, second replica ${byReplica}`);
      expect(byGateway).toBeGreaterThan(0);
      expect(byReplica).toBeGreaterThan(0);
    } finally {
      await replica.close();
    }
  }, 90_000);

  it('answers every command API call with its ack, also when the ack came through the stream to the other replica', async () => {
    // The other replica takes its share of the stream (acks included) and stores nothing.
    let acksTakenByReplica = 0;
    const replica = startSecondReplica((m) => {
      if (m.topic.endsWith('/cmd/ack')) acksTakenByReplica++;
    });
    const device = await connectDevice({ clientId: 'edge-hq-gate-1-cmd-shared', clean: false, node: 2 });
    try {
      await waitFor(() => replica.connected(), { what: 'second replica pulling', timeoutMs: 20_000 });
      await device.subscribeAsync(checkpointTopics.cmd(EDGE), { qos: 1 });
      device.on('message', (_topic, payload) => {
        const cmd = JSON.parse(payload.toString()) as { id: string; type: string };
        void device.publishAsync(checkpointTopics.cmdAck(EDGE), JSON.stringify({ id: cmd.id, ts: new Date().toISOString(), ok: true, detail: { type: cmd.type } }), { qos: 1 });
      });
      const engineer = await ApiClient.login(gateway.url, 'engineer');
      // Until the other replica took at least two of the acks from the stream (the case this is about), at most 20 commands.
      const answers: Array<{ status: number; acked: boolean; ms: number }> = [];
      while (answers.length < 20 && (acksTakenByReplica < 2 || answers.length < 4)) {
        const startedAt = Date.now();
        const res = await engineer.post(`/api/checkpoints/${EDGE.site}/${EDGE.checkpoint}/cmd`, { type: 'ping' });
        answers.push({ status: res.status, acked: res.body.ack?.id === res.body.command?.id && res.body.ack?.ok === true, ms: Date.now() - startedAt });
      }
      log(`${answers.length} commands, ${acksTakenByReplica} of their acks taken from the stream by the other replica; slowest answer ${Math.max(...answers.map((a) => a.ms))} ms`);
      expect(acksTakenByReplica).toBeGreaterThanOrEqual(2);
      expect(answers.filter((a) => a.status !== 200 || !a.acked)).toEqual([]);
    } finally {
      await device.endAsync();
      await replica.close();
    }
  }, 120_000);

  it('delivers what a replica that died held unacknowledged to the surviving one after the ack wait', async () => {
    // The dying replica: pulls like a gateway, stores nothing, acks nothing, then its connection ends.
    const doomed = await natsConnect({ servers: cluster.natsUrls, user: 'gw', pass: PASSWORD });
    const held = new Set<string>();
    const pull = await (await doomed.jetstream().consumers.get(MQTT_STREAM, 'checkpoint-gateway')).fetch({ max_messages: 1000, expires: 30_000 });
    void (async () => {
      for await (const m of pull) if (m.subject.endsWith('.screening')) held.add((JSON.parse(m.string()) as { id: string }).id);
    })().catch(() => undefined);
    const device = await connectDevice({ clientId: 'edge-hq-gate-1-doomed' });
    const screenings: Screening[] = [];
    for (let round = 0; round < 20 && held.size === 0; round++) {
      const more = Array.from({ length: 20 }, (_, i) => makeScreening({ trackId: round * 20 + i }));
      screenings.push(...more);
      await publishAll(device, more, 4, () => undefined);
      await waitFor(() => more.every((s) => held.has(s.id) || storedIds().has(s.id)), { what: 'each screening taken by one replica', timeoutMs: 10_000 });
    }
    await device.endAsync();
    expect(held.size).toBeGreaterThan(0);
    const diedAt = Date.now();
    await doomed.close();
    await waitFor(() => screenings.every((s) => storedIds().has(s.id)), {
      what: () => `every screening stored (${screenings.filter((s) => !storedIds().has(s.id)).length} of ${screenings.length} missing)`,
      timeoutMs: 40_000,
    });
    const lastHeld = Math.max(...[...held].map((id) => ingested.get(id)?.atMs ?? 0));
    log(`a replica died holding ${held.size} of ${screenings.length} screenings unacknowledged: all stored by the other ${((lastHeld - diedAt) / 1000).toFixed(1)} s later (ack wait ${gateway.config.nats.ackWaitS} s)`);
  }, 90_000);

  it('loses no acknowledged screening when the node leading $MQTT_msgs (and holding the gateway\'s connection) is killed mid-stream, and resumes', async () => {
    const device = await connectDevice({ clientId: 'edge-hq-gate-1-kill' });
    const screenings = Array.from({ length: 1500 }, (_, i) => makeScreening({ trackId: i }));
    const acked = new Set<string>();
    let killedAt = 0;
    let victim = '';
    const jsm = await admin.jetstreamManager({ checkAPI: false });
    const killer = (async () => {
      await waitFor(() => acked.size >= 400, { what: '400 screenings acknowledged before the kill', timeoutMs: 60_000 });
      // The worst case: the stream leader is also the node the gateway's NATS connection is on.
      const gatewayNode = await nodeHolding('checkpoint-gateway checkpoint-gateway');
      let leader = (await jsm.streams.info(MQTT_STREAM)).cluster?.leader;
      for (let i = 0; i < 10 && leader !== gatewayNode; i++) {
        await admin.request(`$JS.API.STREAM.LEADER.STEPDOWN.${MQTT_STREAM}`, undefined, { timeout: 5000 }).catch(() => undefined);
        await waitFor(async () => ((leader = (await jsm.streams.info(MQTT_STREAM)).cluster?.leader) ?? '') !== '', { what: `a ${MQTT_STREAM} leader`, timeoutMs: 15_000 });
      }
      const node = cluster.nodes.find((n) => n.name === leader);
      if (!node) throw new Error(`no node leads ${MQTT_STREAM} (leader ${leader})`);
      victim = `${node.name}${leader === gatewayNode ? ', the gateway\'s node' : `, not the gateway's node ${gatewayNode}`}`;
      killedAt = Date.now();
      await cluster.kill(node, 'SIGKILL');
    })();
    const started = Date.now();
    const { retries } = await publishAll(device, screenings, 16, (s) => acked.add(s.id));
    await killer;
    const publishS = (Date.now() - started) / 1000;
    const missing = () => [...acked].filter((id) => !storedIds().has(id)).length;
    await waitFor(() => missing() === 0, {
      what: () => `every acknowledged screening stored (${missing()} of ${acked.size} missing; killed ${victim})`,
      timeoutMs: 60_000,
    }).catch(async (error: Error) => {
      const gone = screenings.map((s, i) => ({ i, id: s.id })).filter((s) => acked.has(s.id) && !storedIds().has(s.id));
      const info = await jsm.consumers.info(MQTT_STREAM, 'checkpoint-gateway').catch((e: Error) => e.message);
      log(`DIAG missing ${JSON.stringify(gone)} consumer ${JSON.stringify(info)}`);
      throw error;
    });
    await device.endAsync();

    const stored = storedIds();
    const lost = [...acked].filter((id) => !stored.has(id));
    const duplicates = screenings.filter((s) => (ingested.get(s.id)?.copies ?? 0) > 1).length;
    const times = screenings.map((s) => ingested.get(s.id)?.atMs ?? 0).sort((a, b) => a - b);
    const after = times.filter((t) => t > killedAt);
    // The longest pause in storing that ended after the kill: ingest stopped, then resumed.
    let longestGap = 0;
    for (let i = 1; i < times.length; i++) if (times[i]! > killedAt) longestGap = Math.max(longestGap, times[i]! - Math.max(times[i - 1]!, killedAt));
    const allStoredS = (times[times.length - 1]! - killedAt) / 1000;
    log(
      `kill -9 of ${victim} (${MQTT_STREAM} leader) after 400 acks: ${acked.size}/${screenings.length} acknowledged, ${lost.length} lost, ` +
        `${duplicates} delivered twice to the store (absorbed), ${retries} publishes resent; longest ingest gap after the kill ${(longestGap / 1000).toFixed(1)} s, ` +
        `last screening stored ${allStoredS.toFixed(1)} s after the kill; publishing took ${publishS.toFixed(1)} s`,
    );
    expect(acked.size).toBe(screenings.length);
    expect(lost).toEqual([]);
    expect(screenings.filter((s) => !stored.has(s.id))).toEqual([]);
    expect(after.length).toBeGreaterThan(0);
  }, 180_000);
});
