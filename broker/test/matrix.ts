/**
 * One allow/deny matrix, run with real mqtt.js clients against any broker URL: our aedes broker
 * (broker.test.ts) and a real Mosquitto fed the exported files (mosquitto.test.ts).
 */
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import type { Principal } from '../src/index.js';
import type { UserStore } from '../src/index.js';

export const PASSWORD = 'matrix-password-1';
const A = 'checkpoint/v1/hq/gate-1';
const B = 'checkpoint/v1/hq/gate-2';
const R = (serial: string) => `uagv/v2/acme/${serial}`;
const ULID = '01HZY3V6Q8J7K2M4N5P6R7S8T9';

export const USERS: Principal[] = [
  { name: 'edge-a', role: 'edge', site: 'hq', checkpoint: 'gate-1' },
  { name: 'edge-b', role: 'edge', site: 'hq', checkpoint: 'gate-2' },
  { name: 'robot-1', role: 'robot', robot: { manufacturer: 'acme', serialNumber: 'R1' } },
  { name: 'robot-2', role: 'robot', robot: { manufacturer: 'acme', serialNumber: 'R2' } },
  { name: 'bridge', role: 'bridge', robots: [{ manufacturer: 'acme', serialNumber: 'R3' }, { manufacturer: 'acme', serialNumber: 'R4' }] },
  { name: 'gateway', role: 'gateway' },
  { name: 'viewer', role: 'viewer' },
];

export type Case = { user: string; topic: string; allowed: boolean };

export const PUBLISH_CASES: Case[] = [
  ...['state', 'screening', 'telemetry', 'cmd/ack', `snapshot/${ULID}`].map((c) => ({ user: 'edge-a', topic: `${A}/${c}`, allowed: true })),
  ...[`${A}/cmd`, `${B}/screening`, `${B}/state`, `${B}/cmd/ack`, `${R('R1')}/state`, A, `${A}/screening/extra`, 'checkpoint/v1/hq/gate-1x/state']
    .map((topic) => ({ user: 'edge-a', topic, allowed: false })),
  ...['state', 'visualization', 'connection', 'factsheet'].map((c) => ({ user: 'robot-1', topic: `${R('R1')}/${c}`, allowed: true })),
  ...[`${R('R1')}/order`, `${R('R2')}/state`, `${A}/screening`].map((topic) => ({ user: 'robot-1', topic, allowed: false })),
  { user: 'bridge', topic: `${R('R3')}/state`, allowed: true },
  { user: 'bridge', topic: `${R('R4')}/connection`, allowed: true },
  { user: 'bridge', topic: `${R('R1')}/state`, allowed: false },
  { user: 'bridge', topic: `${R('R3')}/order`, allowed: false },
  ...[`${A}/cmd`, `${B}/cmd`, `${R('R1')}/order`, `${R('R2')}/instantActions`].map((topic) => ({ user: 'gateway', topic, allowed: true })),
  ...[`${A}/screening`, `${A}/state`, `${R('R1')}/state`].map((topic) => ({ user: 'gateway', topic, allowed: false })),
  ...[`${A}/state`, `${A}/cmd`, `${R('R1')}/order`].map((topic) => ({ user: 'viewer', topic, allowed: false })),
];

export const SUBSCRIBE_CASES: Case[] = [
  { user: 'edge-a', topic: `${A}/cmd`, allowed: true },
  ...[`${B}/cmd`, 'checkpoint/v1/#', 'checkpoint/v1/hq/+/cmd', '#', '+/v1/hq/gate-1/cmd', `${A}/#`, `${A}/screening`, '$SYS/#']
    .map((topic) => ({ user: 'edge-a', topic, allowed: false })),
  { user: 'robot-1', topic: `${R('R1')}/order`, allowed: true },
  { user: 'robot-1', topic: `${R('R1')}/instantActions`, allowed: true },
  ...[`${R('R2')}/order`, 'uagv/v2/acme/+/order', `${R('R1')}/#`, `${R('R1')}/state`].map((topic) => ({ user: 'robot-1', topic, allowed: false })),
  { user: 'bridge', topic: `${R('R3')}/order`, allowed: true },
  { user: 'bridge', topic: `${R('R4')}/instantActions`, allowed: true },
  { user: 'bridge', topic: `${R('R1')}/order`, allowed: false },
  ...['checkpoint/v1/#', 'uagv/v2/#', 'checkpoint/v1/+/+/screening', '$SYS/broker/#'].map((topic) => ({ user: 'gateway', topic, allowed: true })),
  ...['#', '$SYS/#', 'checkpoint/#'].map((topic) => ({ user: 'gateway', topic, allowed: false })),
  ...['checkpoint/v1/+/+/state', 'checkpoint/v1/+/+/screening', `${A}/telemetry`, 'checkpoint/v1/+/+/cmd/ack', 'uagv/v2/+/+/state', '$SYS/broker/#']
    .map((topic) => ({ user: 'viewer', topic, allowed: true })),
  ...['checkpoint/v1/+/+/snapshot/+', 'checkpoint/v1/#', 'checkpoint/v1/+/+/cmd', 'uagv/v2/+/+/order'].map((topic) => ({ user: 'viewer', topic, allowed: false })),
];

export async function addMatrixUsers(store: UserStore): Promise<void> {
  for (const user of USERS) await store.add(user, PASSWORD);
}

export async function connect(url: string, options: IClientOptions = {}): Promise<MqttClient> {
  const client = mqtt.connect(url, { reconnectPeriod: 0, connectTimeout: 10_000, ...options });
  await new Promise<void>((resolve, reject) => {
    client.once('connect', () => resolve());
    client.once('error', reject);
    client.once('close', () => reject(new Error(`connection to ${url} closed before CONNACK`)));
  });
  return client;
}

/** Subscribes and returns the broker's SUBACK return code (0..2 granted; 0x80 / 0x87 refused). */
export function subackCode(client: MqttClient, filter: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const onPacket = (packet: { cmd: string; granted?: Array<number | { qos: number }>; reasonCode?: number }) => {
      if (packet.cmd !== 'suback') return;
      client.off('packetreceive', onPacket);
      const g = packet.granted?.[0];
      resolve(typeof g === 'number' ? g : (g?.qos ?? -1));
    };
    client.on('packetreceive', onPacket);
    client.subscribe(filter, { qos: 1 }, (error) => {
      // mqtt.js reports a refused filter as an error too; the code came with the SUBACK.
      if (error && !/Unspecified|Not authorized|Subscribe error/i.test(error.message)) reject(error);
    });
  });
}

export function publishAsync(client: MqttClient, topic: string, payload: string | Buffer, qos: 0 | 1 = 1, retain = false): Promise<void> {
  return new Promise((resolve, reject) => client.publish(topic, payload, { qos, retain }, (error) => (error ? reject(error) : resolve())));
}

export interface MatrixResult {
  /** Publish cases whose outcome differed from `allowed`. */
  publishMismatches: Array<Case & { delivered: boolean }>;
  subscribeMismatches: Array<Case & { code: number }>;
  /** Whether every publisher was still connected after its denied publishes. */
  publishersStillConnected: boolean;
}

/**
 * Runs the matrix: each user gets one client; a gateway observer subscribed to everything it may
 * read records which publishes arrived. Denied publishes are QoS 1 and must still be acknowledged.
 */
export async function runMatrix(url: string, extra: IClientOptions = {}): Promise<MatrixResult> {
  const clients = new Map<string, MqttClient>();
  const observer = await connect(url, { ...extra, username: 'gateway', password: PASSWORD, clientId: 'matrix-observer' });
  try {
    for (const user of USERS) clients.set(user.name, await connect(url, { ...extra, username: user.name, password: PASSWORD, clientId: `matrix-${user.name}` }));
    const received = new Set<string>();
    const sentinel = `checkpoint/v1/matrix/sentinel/cmd`;
    let sentinelSeen: () => void = () => {};
    const sentinelArrived = new Promise<void>((resolve) => (sentinelSeen = resolve));
    observer.on('message', (topic, payload) => {
      if (topic === sentinel) sentinelSeen();
      else received.add(payload.toString());
    });
    for (const filter of ['checkpoint/v1/#', 'uagv/v2/#']) {
      if ((await subackCode(observer, filter)) >= 0x80) throw new Error(`observer could not subscribe ${filter}`);
    }

    const payloadOf = (c: Case, i: number) => `case-${i}-${c.user}-${c.topic}`;
    await Promise.all(PUBLISH_CASES.map((c, i) => publishAsync(clients.get(c.user)!, c.topic, payloadOf(c, i))));
    await publishAsync(observer, sentinel, 'sentinel');
    await sentinelArrived;
    const publishMismatches = PUBLISH_CASES.map((c, i) => ({ ...c, delivered: received.has(payloadOf(c, i)) })).filter((c) => c.delivered !== c.allowed);
    const publishersStillConnected = [...clients.values()].every((c) => c.connected);

    const subscribeMismatches: MatrixResult['subscribeMismatches'] = [];
    for (const c of SUBSCRIBE_CASES) {
      const code = await subackCode(clients.get(c.user)!, c.topic);
      if ((code < 0x80) !== c.allowed) subscribeMismatches.push({ ...c, code });
    }
    return { publishMismatches, subscribeMismatches, publishersStillConnected };
  } finally {
    await Promise.all([observer, ...clients.values()].map((c) => c.endAsync()));
  }
}

const PROBE_ULID = '01HZY3V6Q8J7K2M4N5P6R7S8T9';
/** Concrete topics of every contract channel for two checkpoints and four robots, plus near misses. */
export const PROBE_TOPICS: string[] = [
  ...['checkpoint/v1/hq/gate-1', 'checkpoint/v1/hq/gate-2'].flatMap((base) =>
    ['state', 'screening', 'telemetry', 'cmd', 'cmd/ack', `snapshot/${PROBE_ULID}`].map((c) => `${base}/${c}`),
  ),
  ...['R1', 'R2', 'R3', 'R4'].flatMap((serial) =>
    ['order', 'instantActions', 'state', 'visualization', 'connection', 'factsheet'].map((c) => `uagv/v2/acme/${serial}/${c}`),
  ),
  'other/v1/hq/gate-1/cmd',
  'checkpoint/v2/hq/gate-1/cmd',
];

export interface DeliveryResult {
  /** Messages a user received on a topic its grants do not let it read. */
  leaks: Array<{ user: string; topic: string }>;
  /** Allowed subscriptions that received none of the probes they match. */
  starved: Case[];
}

/**
 * Subscribe semantics checked by delivery, for brokers that accept every SUBSCRIBE and filter
 * per message (Mosquitto's acl_file does): every user subscribes to all its matrix filters,
 * a probe user publishes to every probe topic, and each user must receive exactly what its
 * grants (grantsFor, the oracle) let it read.
 */
export async function runDeliveryMatrix(url: string, probe: { username: string; password: string }, oracle: (user: string, topic: string) => boolean, matches: (topic: string, filter: string) => boolean): Promise<DeliveryResult> {
  const clients = new Map<string, MqttClient>();
  const received = new Map<string, Set<string>>();
  const publisher = await connect(url, { ...probe, clientId: 'matrix-probe' });
  try {
    for (const user of USERS) {
      const client = await connect(url, { username: user.name, password: PASSWORD, clientId: `delivery-${user.name}` });
      clients.set(user.name, client);
      const got = new Set<string>();
      received.set(user.name, got);
      client.on('message', (topic) => got.add(topic));
      for (const c of SUBSCRIBE_CASES.filter((s) => s.user === user.name)) await subackCode(client, c.topic);
    }
    for (const topic of PROBE_TOPICS) await publishAsync(publisher, topic, 'probe');
    // Allowed subscriptions must see their probes (or $SYS stats); then a last round trip per
    // user flushes anything still in flight before the leak check.
    const expectations = SUBSCRIBE_CASES.filter((c) => c.allowed);
    const deadline = Date.now() + 5_000;
    const satisfied = (c: Case) => [...received.get(c.user)!].some((t) => matches(t, c.topic));
    while (Date.now() < deadline && !expectations.every(satisfied)) await new Promise((r) => setTimeout(r, 50));
    await publishAsync(publisher, 'checkpoint/v1/hq/gate-1/cmd', 'flush');
    await new Promise((r) => setTimeout(r, 300));
    const leaks = [...received].flatMap(([user, topics]) => [...topics].filter((t) => !oracle(user, t)).map((topic) => ({ user, topic })));
    return { leaks, starved: expectations.filter((c) => !satisfied(c)) };
  } finally {
    await Promise.all([publisher, ...clients.values()].map((c) => c.endAsync()));
  }
}
