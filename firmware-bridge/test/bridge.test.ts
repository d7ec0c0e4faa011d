/**
 * End to end over real parts: our broker (auth + ACL), a socat pty pair with the simulated MCU on
 * one end and the bridge on the other, a native VDA 5050 simulated robot on MQTT, and the test as
 * master control. Both robots must look the same from the master's side.
 */
import { rmSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import mqtt, { type MqttClient } from 'mqtt';
import { pino } from 'pino';
import { createBroker, openUserStore, type Broker, type UserStore } from '@checkpoint/broker';
import { makeTempDir, openPtyPair, waitFor, type PtyPair } from '@checkpoint/test-support';
import { parseVda5050, parseVda5050Topic, vda5050Header, vda5050Topic, type Vda5050Order, type Vda5050State } from '@checkpoint/protocol';
import { startBridge, type Bridge } from '../src/bridge/bridge.js';
import { createSimulatedRobot, type SimulatedRobot } from '../src/sim/robot.js';

const PASSWORD = 'test-password-1';
const NATIVE = { manufacturer: 'acme', serialNumber: 'NATIVE-1' };
const SERIAL = { manufacturer: 'acme', serialNumber: 'SERIAL-1' };

let dir: string;
let store: UserStore;
let broker: Broker;
let url: string;
let master: MqttClient;
let pair: PtyPair;
let portLink: string;
let bridge: Bridge;
let serialRobot: SimulatedRobot;
let nativeRobot: SimulatedRobot;

/** Everything the master received, parsed, per robot and channel; invalid robot messages fail the test. */
const received: Array<{ robot: string; channel: string; value: Record<string, unknown>; at: number }> = [];
const invalid: string[] = [];
const states = (robot: { serialNumber: string }) => received.filter((m) => m.robot === robot.serialNumber && m.channel === 'state').map((m) => m.value as unknown as Vda5050State);
const lastState = (robot: { serialNumber: string }) => states(robot).at(-1);
const connections = (robot: { serialNumber: string }) =>
  received.filter((m) => m.robot === robot.serialNumber && m.channel === 'connection').map((m) => m.value.connectionState as string);

const headerIds = new Map<string, number>();
const nextHeader = (robot: typeof NATIVE, channel: string) => {
  const key = `${robot.serialNumber}/${channel}`;
  const h = headerIds.get(key) ?? 0;
  headerIds.set(key, h + 1);
  return vda5050Header(robot, h);
};
const X: Record<string, number> = { A: 0, B: 2, C: 4 };

/** An order along `path` with a 2 s drop at the end; long edges (given length) take a while to drive. */
function publishOrder(robot: typeof NATIVE, orderId: string, actionId: string, path = ['A', 'B', 'C'], edgeLengthM = 2): Vda5050Order {
  const order: Vda5050Order = {
    ...nextHeader(robot, 'order'),
    orderId,
    orderUpdateId: 0,
    nodes: path.map((nodeId, i) => ({
      nodeId,
      sequenceId: 2 * i,
      released: true,
      nodePosition: { x: X[nodeId]!, y: 0, mapId: 'floor-0' },
      actions: i === path.length - 1 ? [{ actionType: 'drop', actionId, blockingType: 'HARD' as const, actionParameters: [{ key: 'durationS', value: 2 }] }] : [],
    })),
    edges: path.slice(1).map((to, i) => ({ edgeId: `${path[i]}-${to}`, sequenceId: 2 * i + 1, released: true, startNodeId: path[i]!, endNodeId: to, length: edgeLengthM, actions: [] })),
  };
  master.publish(vda5050Topic(robot, 'order'), JSON.stringify(order), { qos: 1 });
  return order;
}

const done = (robot: typeof NATIVE, orderId: string, actionId: string) => {
  const s = lastState(robot);
  return (
    s?.orderId === orderId &&
    s.nodeStates.length === 0 &&
    s.lastNodeId === 'C' &&
    s.actionStates.some((a) => a.actionId === actionId && a.actionStatus === 'FINISHED')
  );
};

const simOptions = {
  startNode: 'A',
  speed: 2,
  timeScale: 10,
  tickMs: 50,
  batteryPct: 80,
};

beforeAll(async () => {
  dir = makeTempDir('firmware-bridge-test');
  store = openUserStore(join(dir, 'users.sqlite'), { mosquittoHashIterations: 0 });
  await store.add({ name: 'native-1', role: 'robot', robot: NATIVE }, PASSWORD);
  await store.add({ name: 'bridge-1', role: 'bridge', robots: [SERIAL] }, PASSWORD);
  await store.add({ name: 'master', role: 'gateway' }, PASSWORD);
  broker = await createBroker({ config: { logLevel: 'silent', metrics: { port: null }, mqtt: { port: 0 }, host: '127.0.0.1', dataDir: dir, persistence: 'memory' }, users: store });
  url = `mqtt://127.0.0.1:${broker.ports.mqtt}`;

  master = await mqtt.connectAsync(url, { username: 'master', password: PASSWORD, clientId: 'test-master' });
  master.on('message', (topic, payload) => {
    const t = parseVda5050Topic(topic);
    if (!t) return;
    const parsed = parseVda5050(t.channel, payload, t);
    if (!parsed.ok) invalid.push(`${topic}: ${parsed.message}`);
    else received.push({ robot: t.serialNumber, channel: t.channel, value: parsed.value as unknown as Record<string, unknown>, at: Date.now() });
  });
  await master.subscribeAsync('uagv/v2/#', { qos: 1 });

  // The bridge opens a stable path (like /dev/serial/by-id/...), which we point at a pty.
  pair = await openPtyPair();
  portLink = join(dir, 'robot-tty');
  symlinkSync(pair.a, portLink);
  bridge = await startBridge({
    mqtt: { url, username: 'bridge-1', password: PASSWORD },
    robots: [{ port: portLink, baudRate: 115200, ...SERIAL }],
    linkTimeoutMs: 1000,
    reopenMs: 200,
    statePeriodMs: 1000,
    // The simulated robots run 10 times faster than real ones: pass a node in a few ms of wall time.
    // With the default 100 ms (10 states/s) a node passed in between is coalesced away.
    stateMinIntervalMs: 10,
    retransmitMs: 100,
    logger: pino({ level: 'silent' }),
  });
  serialRobot = await createSimulatedRobot({ ...SERIAL, ...simOptions, transport: { kind: 'serial', path: pair.b }, heartbeatMs: 200 });
  nativeRobot = await createSimulatedRobot({ ...NATIVE, ...simOptions, transport: { kind: 'mqtt', url, username: 'native-1', password: PASSWORD } });
  await waitFor(() => connections(SERIAL).at(-1) === 'ONLINE' && connections(NATIVE).at(-1) === 'ONLINE', { what: 'both robots ONLINE', timeoutMs: 10_000 });
});

afterAll(async () => {
  await nativeRobot?.close();
  await serialRobot?.close();
  await bridge?.close();
  await pair?.close();
  await master?.endAsync();
  await broker?.close();
  store?.close();
});

describe('firmware-bridge with a serial and a native simulated robot', () => {
  it('both publish a retained factsheet with their capabilities', async () => {
    await waitFor(() => received.filter((m) => m.channel === 'factsheet').length >= 2, { what: 'two factsheets' });
    for (const robot of [SERIAL, NATIVE]) {
      const f = received.find((m) => m.robot === robot.serialNumber && m.channel === 'factsheet')!.value as { protocolFeatures: { agvActions: Array<{ actionType: string }> } };
      expect(f.protocolFeatures.agvActions.map((a) => a.actionType)).toEqual(expect.arrayContaining(['drop', 'waitForTrigger', 'cancelOrder']));
      // Fields the official 2.0.0 factsheet schema requires (other makers' masters validate against it).
      expect(f).toMatchObject({
        physicalParameters: { heightMin: expect.any(Number) },
        protocolLimits: { maxStringLens: {}, maxArrayLens: {}, timing: { minOrderInterval: expect.any(Number), minStateInterval: expect.any(Number) } },
      });
    }
  });

  it('drive an order to completion with correct state messages, through duplicates and line garbage', async () => {
    publishOrder(NATIVE, 'order-n1', 'drop-n1');
    publishOrder(SERIAL, 'order-s1', 'drop-s1');
    // The same order again (a QoS 1 redelivery or a master retry) is ignored, not restarted.
    await waitFor(() => states(SERIAL).some((s) => s.orderId === 'order-s1'), { what: 'the serial robot to take order-s1' });
    publishOrder(SERIAL, 'order-s1', 'drop-s1');
    serialRobot.inject({ kind: 'garbage', bytes: 200 });
    await waitFor(() => done(NATIVE, 'order-n1', 'drop-n1') && done(SERIAL, 'order-s1', 'drop-s1'), { what: 'both orders finished', timeoutMs: 20_000 });

    for (const robot of [NATIVE, SERIAL]) {
      const seen = states(robot).filter((s) => s.orderId.startsWith('order-'));
      // They passed B, drove, and ran the drop action through RUNNING to FINISHED.
      expect(seen.some((s) => s.lastNodeId === 'B')).toBe(true);
      expect(seen.some((s) => s.driving)).toBe(true);
      expect(seen.some((s) => s.actionStates.some((a) => a.actionType === 'drop' && a.actionStatus === 'RUNNING'))).toBe(true);
      const last = seen.at(-1)!;
      expect(last).toMatchObject({ lastNodeId: 'C', lastNodeSequenceId: 4, driving: false, nodeStates: [], edgeStates: [] });
      expect(last.agvPosition).toMatchObject({ x: expect.closeTo(4, 1), y: expect.closeTo(0, 1) });
      expect(last.batteryState.batteryCharge).toBeLessThan(80);
      // headerIds only ever increase per topic.
      const ids = states(robot).map((s) => s.headerId);
      expect(ids).toEqual([...ids].sort((a, b) => a - b));
    }
    expect(invalid).toEqual([]);
    const stats = bridge.stats()[0]!;
    expect(stats.ordersAccepted).toBe(1);
    expect(stats.ordersDuplicate).toBe(1);
    const decoderErrors = Object.values(stats.link!.decoder.errors).reduce((a, b) => a + b, 0);
    expect(decoderErrors).toBeGreaterThan(0); // the garbage was seen, counted, and survived
  });

  it('counts and drops invalid VDA 5050 payloads with a clear cause', async () => {
    master.publish(vda5050Topic(SERIAL, 'order'), '{"orderId": 7}', { qos: 1 });
    master.publish(vda5050Topic(SERIAL, 'instantActions'), 'not json', { qos: 1 });
    await waitFor(() => Object.keys(bridge.stats()[0]!.invalidPayloads).length === 2, { what: 'invalid payloads counted' });
    expect(bridge.stats()[0]!.invalidPayloads).toEqual({ 'invalid-order': 1, 'invalid-instantActions': 1 });
    // The native robot reports a validationError in its state instead of crashing.
    master.publish(vda5050Topic(NATIVE, 'order'), JSON.stringify({ ...vda5050Header(NATIVE, 99), orderId: 'x' }), { qos: 1 });
    await waitFor(() => lastState(NATIVE)?.errors.some((e) => e.errorType === 'validationError'), { what: 'validationError in native state' });
  });

  it('rejects an order that does not start where the robot is, and cancels one with cancelOrder', async () => {
    for (const robot of [NATIVE, SERIAL]) publishOrder(robot, `order-far-${robot.serialNumber}`, `drop-far-${robot.serialNumber}`);
    await waitFor(() => [NATIVE, SERIAL].every((r) => lastState(r)?.errors.some((e) => e.errorType === 'noRouteError')), {
      what: 'orders starting at A (robots are at C) rejected with noRouteError',
    });
    for (const robot of [NATIVE, SERIAL]) publishOrder(robot, `order-back-${robot.serialNumber}`, `drop-back-${robot.serialNumber}`, ['C', 'B', 'A'], 20);
    await waitFor(() => [NATIVE, SERIAL].every((r) => lastState(r)?.orderId === `order-back-${r.serialNumber}` && lastState(r)!.driving), { what: 'both driving back' });
    for (const robot of [NATIVE, SERIAL]) {
      master.publish(
        vda5050Topic(robot, 'instantActions'),
        JSON.stringify({ ...nextHeader(robot, 'instantActions'), actions: [{ actionType: 'cancelOrder', actionId: `cancel-${robot.serialNumber}`, blockingType: 'HARD' }] }),
        { qos: 1 },
      );
    }
    const cancelled = (r: typeof NATIVE) => {
      const s = lastState(r);
      return s?.actionStates.some((a) => a.actionId === `cancel-${r.serialNumber}` && a.actionStatus === 'FINISHED') && s.nodeStates.length === 0 && !s.driving;
    };
    await waitFor(() => cancelled(NATIVE) && cancelled(SERIAL), { what: 'cancelOrder FINISHED on both', timeoutMs: 10_000 });
    for (const robot of [NATIVE, SERIAL]) {
      const s = lastState(robot)!;
      expect(s.actionStates.find((a) => a.actionId === `drop-back-${robot.serialNumber}`)?.actionStatus).toBe('FAILED');
      expect(s.lastNodeId).not.toBe('A'); // stopped on the way
    }
  });

  it('marks the serial robot CONNECTIONBROKEN when its pty closes, and ONLINE again when the port comes back', async () => {
    await serialRobot.close();
    await pair.close();
    await waitFor(() => connections(SERIAL).at(-1) === 'CONNECTIONBROKEN', { what: 'CONNECTIONBROKEN after the pty closed', timeoutMs: 5000 });
    expect(connections(NATIVE).at(-1)).toBe('ONLINE');

    pair = await openPtyPair();
    rmSync(portLink);
    symlinkSync(pair.a, portLink);
    serialRobot = await createSimulatedRobot({ ...SERIAL, ...simOptions, startNode: 'B', x: 2, transport: { kind: 'serial', path: pair.b }, heartbeatMs: 200 });
    await waitFor(() => connections(SERIAL).at(-1) === 'ONLINE', { what: 'ONLINE after the port came back', timeoutMs: 10_000 });
  });

  it('publishes CONNECTIONBROKEN when heartbeats stop (serial) or the MQTT link dies (native: the broker sends the will)', async () => {
    serialRobot.inject({ kind: 'link-drop', ms: 2500 });
    nativeRobot.inject({ kind: 'link-drop', ms: 2500 });
    await waitFor(() => connections(SERIAL).at(-1) === 'CONNECTIONBROKEN' && connections(NATIVE).at(-1) === 'CONNECTIONBROKEN', {
      what: 'both CONNECTIONBROKEN',
      timeoutMs: 5000,
    });
    await waitFor(() => connections(SERIAL).at(-1) === 'ONLINE' && connections(NATIVE).at(-1) === 'ONLINE', { what: 'both back ONLINE', timeoutMs: 10_000 });
  });
});
