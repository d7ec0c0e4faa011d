/**
 * Issue 14, firmware-bridge, over a socat pty pair with a hand-driven MCU on the far end:
 * - a robot that said HELLO with another identity was acknowledged, and its next STATUS
 *   published the configured robot ONLINE with the impostor's state;
 * - a STATUS flood was republished one for one (94,000 QoS 1 publishes in 10 s).
 */
import { join } from 'node:path';
import { afterEach, beforeAll, afterAll, describe, expect, it } from 'vitest';
import mqtt, { type MqttClient } from 'mqtt';
import { pino } from 'pino';
import { SerialPort } from 'serialport';
import { createBroker, openUserStore, type Broker, type UserStore } from '@checkpoint/broker';
import { parseVda5050Topic } from '@checkpoint/protocol';
import { makeTempDir, openPtyPair, waitFor, type PtyPair } from '@checkpoint/test-support';
import { startBridge, type Bridge } from '../../src/bridge/bridge.js';
import { SerialLink } from '../../src/serial/link.js';
import type { Message } from '../../src/serial/messages.js';

const PASSWORD = 'test-password-1';
const ROBOT = { manufacturer: 'acme', serialNumber: 'SERIAL-1' };

let dir: string;
let store: UserStore;
let broker: Broker;
let master: MqttClient;
/** What the master received for ROBOT, in order. */
let received: Array<{ channel: string; value: Record<string, unknown> }> = [];
let pair: PtyPair | null = null;
let bridge: Bridge | null = null;
let mcu: { link: SerialLink; port: SerialPort } | null = null;

beforeAll(async () => {
  dir = makeTempDir('bridge-abuse');
  store = openUserStore(join(dir, 'users.sqlite'), { mosquittoHashIterations: 0 });
  await store.add({ name: 'bridge-1', role: 'bridge', robots: [ROBOT] }, PASSWORD);
  await store.add({ name: 'master', role: 'gateway' }, PASSWORD);
  broker = await createBroker({ config: { logLevel: 'silent', metrics: { port: null }, mqtt: { port: 0 }, host: '127.0.0.1', dataDir: dir, persistence: 'memory', sysIntervalS: 0 }, users: store });
  master = await mqtt.connectAsync(`mqtt://127.0.0.1:${broker.ports.mqtt}`, { username: 'master', password: PASSWORD, clientId: 'abuse-master' });
  master.on('message', (topic, payload) => {
    const t = parseVda5050Topic(topic);
    if (t?.serialNumber === ROBOT.serialNumber) received.push({ channel: t.channel, value: JSON.parse(payload.toString()) as Record<string, unknown> });
  });
  await master.subscribeAsync('uagv/v2/#', { qos: 1 });
});

afterEach(async () => {
  mcu?.link.close();
  if (mcu?.port.isOpen) await new Promise<void>((resolve) => mcu!.port.close(() => resolve()));
  await bridge?.close();
  await pair?.close();
  mcu = null;
  bridge = null;
  pair = null;
  received = [];
});

afterAll(async () => {
  await master?.endAsync();
  await broker?.close();
  store?.close();
});

/** The bridge on one end of a fresh pty pair, and a bare MCU link (no simulator) on the other. */
async function bridgeAndMcu(options: { stateMinIntervalMs?: number } = {}) {
  pair = await openPtyPair();
  bridge = await startBridge({
    mqtt: { url: `mqtt://127.0.0.1:${broker.ports.mqtt}`, username: 'bridge-1', password: PASSWORD },
    robots: [{ port: pair.a, baudRate: 115200, ...ROBOT }],
    linkTimeoutMs: 60_000, // heartbeats are not what these tests are about
    reopenMs: 200,
    statePeriodMs: 30_000,
    retransmitMs: 100,
    ...options,
    logger: pino({ level: 'silent' }),
  });
  const port = new SerialPort({ path: pair.b, baudRate: 115200, autoOpen: false });
  await new Promise<void>((resolve, reject) => port.open((err) => (err ? reject(err) : resolve())));
  const link = new SerialLink((bytes) => port.write(bytes), { retransmitMs: 100, maxRetries: 3 });
  port.on('data', (chunk: Buffer) => link.feed(chunk));
  mcu = { link, port };
  await waitFor(() => bridge!.stats()[0]!.portOpen, { what: 'bridge port open' });
  return link;
}

const hello = (who: { manufacturer: string; serialNumber: string }): Message => ({ type: 'hello', ...who, firmware: 'test-1', speedMmS: 500, capabilities: ['drop'] });
const status = (batteryPermille: number, xMm = 0): Message => ({
  type: 'status',
  orderToken: 0,
  lastNodeId: 'A',
  lastNodeSeq: 0,
  driving: false,
  charging: false,
  paused: false,
  fieldViolation: false,
  batteryPermille,
  eStop: 'NONE',
  xMm,
  yMm: 0,
  thetaMrad: 0,
  errors: [],
});
const connections = () => received.filter((m) => m.channel === 'connection').map((m) => m.value.connectionState);
const states = () => received.filter((m) => m.channel === 'state').map((m) => m.value as { batteryState: { batteryCharge: number }; agvPosition: { x: number } });

describe('serial robots that lie or flood', () => {
  it('refuses a HELLO naming another robot (NACK, counted) and ignores its STATUS: the configured robot never goes ONLINE with its state', { timeout: 30_000 }, async () => {
    const link = await bridgeAndMcu();
    await expect(link.send(hello({ manufacturer: 'acme', serialNumber: 'IMPOSTOR-9' }))).rejects.toThrow(/refused by the other end: this port belongs to acme\/SERIAL-1, not acme\/IMPOSTOR-9/);
    for (let i = 0; i < 20; i++) await link.send(status(110)); // battery 11 %: the impostor's
    await waitFor(() => bridge!.stats()[0]!.unboundMessages >= 20, { what: 'the impostor STATUS ignored' });
    expect(bridge!.stats()[0]!.identityMismatches).toBe(1);

    // The genuine robot then says hello on the same line: ONLINE, with its own state. MQTT keeps
    // the bridge's order, so anything the impostor had caused would have arrived before this.
    await link.send(hello(ROBOT));
    await link.send(status(770));
    await waitFor(() => states().length > 0, { what: 'a state after the genuine HELLO' });
    expect(connections()).toEqual(['CONNECTIONBROKEN', 'ONLINE']);
    expect(states().map((s) => s.batteryState.batteryCharge)).toEqual([77]);
  });

  it('unbinds the link when another robot says HELLO on a bound port (CONNECTIONBROKEN), and ignores what follows', { timeout: 30_000 }, async () => {
    const link = await bridgeAndMcu();
    await link.send(hello(ROBOT));
    await link.send(status(770));
    await waitFor(() => connections().at(-1) === 'ONLINE', { what: 'ONLINE' });
    await expect(link.send(hello({ manufacturer: 'evil', serialNumber: 'SERIAL-1' }))).rejects.toThrow(/refused/);
    await waitFor(() => connections().at(-1) === 'CONNECTIONBROKEN', { what: 'CONNECTIONBROKEN after the impostor HELLO' });
    await link.send(status(110));
    await waitFor(() => bridge!.stats()[0]!.unboundMessages >= 1, { what: 'the STATUS after it ignored' });
    expect(states().every((s) => s.batteryState.batteryCharge === 77)).toBe(true);
  });

  it('publishes a STATUS flood at most once per stateMinIntervalMs, the latest state winning', { timeout: 60_000 }, async () => {
    const link = await bridgeAndMcu({ stateMinIntervalMs: 100 });
    // A robot repeating HELLO republishes its (retained) factsheet only when it changed.
    for (let i = 0; i < 50; i++) await link.send(hello(ROBOT));
    const FLOOD = 10_000;
    const started = Date.now();
    for (let i = 1; i <= FLOOD; i++) {
      await link.send(status(500, i)); // every one a change: the robot moved 1 mm
      if (i % 500 === 0) await new Promise((resolve) => setImmediate(resolve)); // let the pty drain
    }
    const lastX = FLOOD / 1000;
    await waitFor(() => states().at(-1)?.agvPosition.x === lastX, { what: () => `the last STATUS (x=${lastX}) published (last seen x=${states().at(-1)?.agvPosition.x})`, timeoutMs: 20_000 });
    const elapsed = Date.now() - started;
    const stats = bridge!.stats()[0]!;
    console.log(`${FLOOD} STATUS in ${elapsed} ms -> ${states().length} states published, ${stats.statesCoalesced} coalesced, ${stats.link?.messagesReceived} messages received`);
    // One per 100 ms at most (+1 for the first, +1 for the trailing latest). Only the flood's own
    // states count (x > 0): the HELLOs before it may publish one too, outside the timed window.
    const flooded = states().filter((s) => (s.agvPosition?.x ?? 0) > 0);
    expect(flooded.length).toBeLessThanOrEqual(Math.ceil(elapsed / 100) + 2);
    expect(states().length).toBeLessThan(FLOOD / 10);
    const xs = states().map((s) => s.agvPosition.x);
    expect(xs).toEqual([...xs].sort((a, b) => a - b)); // in order, never an older state after a newer one
    expect(received.filter((m) => m.channel === 'factsheet')).toHaveLength(1);
  });
});
