/**
 * Real parts for the fleet's end-to-end tests and benchmark: our broker with auth and ACL (users of
 * roles gateway, robot, bridge, edge), the gateway with a site map, simulated robots speaking VDA
 * 5050 on MQTT (native) or the serial protocol over a socat pty through the firmware-bridge.
 */
import { symlinkSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { pino } from 'pino';
import { createBroker, openUserStore, type Broker } from '@checkpoint/broker';
import { startBridge, createSimulatedRobot, type Bridge, type SimulatedRobot } from '@checkpoint/firmware-bridge';
import { vda5050Header, type RobotAddress } from '@checkpoint/protocol';
import { makeTempDir, openPtyPair, type PtyPair } from '@checkpoint/test-support';
import { GatewayConfigSchema } from '../src/config.js';
import { createGateway, type Gateway } from '../src/index.js';
import { API_PASSWORD, BROKER_PASSWORD } from './helpers/world.js';

export const MANUFACTURER = 'acme';

/**
 *   P3 (0,20) ---\          W1 (20,20) --- W2 (30,20)
 *   P2 (0,10) ---- H (10,10) --/
 *   P1 (0,0)  ---/          \-- PH (20,0) --- G2 (30,0) --- G2b (40,0)     zone gate-2-area = G2, G2b
 *    |                            |
 *   CH1 (0,-10)                 CH2 (30,-10)
 */
export const FLEET_MAP = {
  nodes: [
    { id: 'P1', x: 0, y: 0, kind: 'parking' },
    { id: 'P2', x: 0, y: 10, kind: 'parking' },
    { id: 'P3', x: 0, y: 20, kind: 'parking' },
    { id: 'H', x: 10, y: 10, name: 'Hall' },
    { id: 'PH', x: 20, y: 0, kind: 'pharmacy', name: 'Pharmacy' },
    { id: 'W1', x: 20, y: 20, kind: 'ward', name: 'Ward 1' },
    { id: 'W2', x: 30, y: 20, kind: 'ward', name: 'Ward 2' },
    { id: 'G2', x: 30, y: 0, kind: 'gate', name: 'Gate 2' },
    { id: 'G2b', x: 40, y: 0, kind: 'gate' },
    { id: 'CH1', x: 0, y: -10, kind: 'charger' },
    { id: 'CH2', x: 30, y: -10, kind: 'charger' },
  ],
  edges: [
    { from: 'P1', to: 'H' },
    { from: 'P2', to: 'H' },
    { from: 'P3', to: 'H' },
    { from: 'H', to: 'PH' },
    { from: 'H', to: 'W1' },
    { from: 'W1', to: 'W2' },
    { from: 'PH', to: 'G2' },
    { from: 'G2', to: 'G2b' },
    { from: 'P1', to: 'CH1' },
    { from: 'PH', to: 'CH2' },
  ],
  zones: [{ id: 'gate-2-area', nodes: ['G2', 'G2b'], checkpoint: 'gate-2' }],
};

export const FLEET_RULES = [
  { id: 'disinfect-after-referral', when: { alertAcknowledged: { outcome: 'referred', checkpoint: 'gate-2' } }, then: { type: 'disinfection', target: 'checkpoint-zone', priority: 90, durationS: 10 } },
];

export const DELIVERY_ACTIONS = ['pick', 'drop', 'waitForTrigger', 'startCharging', 'stopCharging'];
export const UV_ACTIONS = ['disinfect', 'waitForTrigger', 'startCharging', 'stopCharging'];

export interface RobotSpec {
  serialNumber: string;
  startNode: string;
  x: number;
  y: number;
  speed: number;
  timeScale: number;
  capabilities: string[];
  batteryPct?: number;
  transport: 'mqtt' | 'serial';
}

export interface FleetWorld {
  dir: string;
  broker: Broker;
  url: string;
  gateway: Gateway;
  robots: Map<string, SimulatedRobot>;
  /** Serial robots: their pty pair (close it to unplug the robot). */
  ptys: Map<string, PtyPair>;
  bridge: Bridge | null;
  startGateway(): Promise<Gateway>;
  /** The gateway's SQLite file, read-only (series_points, fleet_tasks). */
  sql<T>(query: string, ...args: unknown[]): T[];
  close(): Promise<void>;
}

/** The gateway config for these tests; OPC UA off (when that section exists) so that parallel files do not share its port. */
export function fleetGatewayConfig(dataDir: string, mqttUrl: string, fleet: Record<string, unknown> = {}) {
  const opcua = 'opcua' in GatewayConfigSchema.properties ? { opcua: { enabled: false } } : {};
  return {
    dataDir,
    logLevel: 'silent',
    http: { host: '127.0.0.1', port: 0 },
    mqtt: { url: mqttUrl, username: 'gw', password: BROKER_PASSWORD, clientId: `gw-fleet-${Math.random().toString(36).slice(2, 8)}`, reconnectMs: 200 },
    influx: { url: null },
    series: { flushIntervalMs: 100, retryMinMs: 50, retryMaxMs: 1000 },
    fleet: { map: FLEET_MAP, rules: FLEET_RULES, tickMs: 200, ...fleet },
    ...opcua,
  };
}

/** The broker user of a robot another maker built (fleet-third-party.test.ts): robot-<manufacturer>-<serial>, lower case. */
export const robotUserName = (r: RobotAddress) => `robot-${r.manufacturer}-${r.serialNumber}`.toLowerCase();

export async function startFleetWorld(
  specs: RobotSpec[],
  options: { fleet?: Record<string, unknown>; extraRobotUsers?: string[]; otherMakersRobots?: RobotAddress[] } = {},
): Promise<FleetWorld> {
  const dir = makeTempDir('fleet-e2e');
  const users = openUserStore(join(dir, 'users.sqlite'), { mosquittoHashIterations: 0 });
  await users.add({ name: 'gw', role: 'gateway' }, BROKER_PASSWORD);
  await users.add({ name: 'edge-gate-2', role: 'edge', site: 'hq', checkpoint: 'gate-2' }, BROKER_PASSWORD);
  const native = specs.filter((s) => s.transport === 'mqtt');
  const serial = specs.filter((s) => s.transport === 'serial');
  for (const s of [...native.map((r) => r.serialNumber), ...(options.extraRobotUsers ?? [])]) {
    await users.add({ name: `robot-${s.toLowerCase()}`, role: 'robot', robot: { manufacturer: MANUFACTURER, serialNumber: s } }, BROKER_PASSWORD);
  }
  for (const r of options.otherMakersRobots ?? []) await users.add({ name: robotUserName(r), role: 'robot', robot: r }, BROKER_PASSWORD);
  if (serial.length) await users.add({ name: 'bridge', role: 'bridge', robots: serial.map((s) => ({ manufacturer: MANUFACTURER, serialNumber: s.serialNumber })) }, BROKER_PASSWORD);
  const broker = await createBroker({
    config: { dataDir: dir, host: '127.0.0.1', mqtt: { port: 0 }, metrics: { port: null }, logLevel: 'silent', sysIntervalS: 0, persistence: 'memory' },
    users,
  });
  const url = `mqtt://127.0.0.1:${broker.ports.mqtt}`;
  const dataDir = join(dir, 'gateway');
  const config = fleetGatewayConfig(dataDir, url, options.fleet);

  const world: FleetWorld = {
    dir,
    broker,
    url,
    gateway: null as unknown as Gateway,
    robots: new Map(),
    ptys: new Map(),
    bridge: null,
    async startGateway() {
      world.gateway = await createGateway(config);
      for (const role of ['guard', 'dispatcher', 'engineer', 'admin'] as const) await world.gateway.users.add({ name: role, role }, API_PASSWORD);
      return world.gateway;
    },
    sql<T>(query: string, ...args: unknown[]): T[] {
      const db = new Database(join(dataDir, 'gateway.sqlite'), { readonly: true, fileMustExist: true });
      try {
        return db.prepare(query).all(...args) as T[];
      } finally {
        db.close();
      }
    },
    async close() {
      await Promise.all([...world.robots.values()].map((r) => r.close().catch(() => undefined)));
      await world.bridge?.close();
      for (const p of world.ptys.values()) await p.close();
      await world.gateway?.close();
      await broker.close();
      users.close();
    },
  };
  await world.startGateway();

  const common = (s: RobotSpec) => ({
    manufacturer: MANUFACTURER,
    serialNumber: s.serialNumber,
    startNode: s.startNode,
    x: s.x,
    y: s.y,
    speed: s.speed,
    timeScale: s.timeScale,
    batteryPct: s.batteryPct ?? 90,
    capabilities: s.capabilities,
  });
  const bridgeRobots = [];
  for (const s of serial) {
    const pair = await openPtyPair();
    // The bridge opens a stable link name (like /dev/serial/by-id/...), the simulated MCU the other end.
    const link = join(dir, `tty-${s.serialNumber}`);
    symlinkSync(pair.a, link);
    world.ptys.set(s.serialNumber, pair);
    bridgeRobots.push({ port: link, baudRate: 115200, manufacturer: MANUFACTURER, serialNumber: s.serialNumber });
    world.robots.set(s.serialNumber, await createSimulatedRobot({ ...common(s), transport: { kind: 'serial', path: pair.b } }));
  }
  if (bridgeRobots.length) {
    world.bridge = await startBridge({ mqtt: { url, username: 'bridge', password: BROKER_PASSWORD }, robots: bridgeRobots, logger: pino({ level: 'silent' }), statePeriodMs: 1000, linkTimeoutMs: 1000 });
  }
  for (const s of native) {
    world.robots.set(
      s.serialNumber,
      // State every 2 s besides every change (VDA 5050 asks for at least every 30 s): a restarted gateway hears sooner.
      await createSimulatedRobot({ ...common(s), reportMs: 2000, transport: { kind: 'mqtt', url, username: `robot-${s.serialNumber.toLowerCase()}`, password: BROKER_PASSWORD } }),
    );
  }
  return world;
}

/** A protocol-valid VDA 5050 state of a robot that is not simulated (bad-input tests). */
export function rawState(robot: RobotAddress, headerId: number, timestamp: Date, over: Record<string, unknown> = {}) {
  return {
    ...vda5050Header(robot, headerId, timestamp),
    orderId: '',
    orderUpdateId: 0,
    lastNodeId: 'W1',
    lastNodeSequenceId: 0,
    driving: false,
    operatingMode: 'MANUAL',
    nodeStates: [],
    edgeStates: [],
    actionStates: [],
    batteryState: { batteryCharge: 80, charging: false },
    errors: [],
    safetyState: { eStop: 'NONE', fieldViolation: false },
    ...over,
  };
}

/** Prometheus sample value (0 when absent). */
export async function metricValue(gatewayUrl: string, name: string, labels = ''): Promise<number> {
  const text = await (await fetch(`${gatewayUrl}/metrics`)).text();
  const line = text.split('\n').find((l) => (labels ? l.startsWith(`${name}{`) && l.includes(labels) : l.startsWith(`${name} `)));
  return line ? Number(line.split(' ').pop()) : 0;
}
