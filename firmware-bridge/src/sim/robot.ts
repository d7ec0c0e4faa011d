/**
 * `createSimulatedRobot`: a RobotModel on a clock, speaking either
 *  - `serial`: the MCU side of PROTOCOL.md on a serial port (a pty in tests), i.e. what robot
 *    firmware would do; firmware-bridge on the other end makes it a VDA 5050 vehicle; or
 *  - `mqtt`: VDA 5050 directly (connection with last will, factsheet, state, order, instantActions).
 * Faults can be injected at any time (e-stop, errors, battery, a dropped link, garbage bytes).
 */
import { randomBytes } from 'node:crypto';
import mqtt, { type MqttClient } from 'mqtt';
import { SerialPort } from 'serialport';
import {
  parseVda5050,
  vda5050Header,
  vda5050Topic,
  type EStop,
  type RobotAddress,
  type Vda5050Factsheet,
  type Vda5050Node,
  type Vda5050State,
} from '@checkpoint/protocol';
import { SerialLink } from '../serial/link.js';
import type { Message } from '../serial/messages.js';
import { RobotModel, type ModelSnapshot, type RobotModelOptions } from './model.js';

export type SimTransport =
  | { kind: 'mqtt'; url: string; username?: string; password?: string }
  | { kind: 'serial'; path: string; baudRate?: number };

export interface SimulatedRobotOptions extends RobotModelOptions {
  manufacturer: string;
  serialNumber: string;
  transport: SimTransport;
  /** Simulated seconds per real second (default 1). */
  timeScale?: number;
  tickMs?: number;
  /** State/status at least this often (VDA 5050: every 30 s; serial status default 250 ms). */
  reportMs?: number;
  heartbeatMs?: number;
  capabilities?: string[];
  firmware?: string;
}

export type Fault =
  | { kind: 'estop'; eStop: EStop }
  | { kind: 'error'; errorType: string; level: 'WARNING' | 'FATAL'; description?: string }
  | { kind: 'clear-errors' }
  | { kind: 'battery'; pct: number }
  /** Serial: nothing in or out for `ms` (a pulled cable). MQTT: drop the connection without DISCONNECT. */
  | { kind: 'link-drop'; ms: number }
  /** Serial: write this many random bytes onto the line. */
  | { kind: 'garbage'; bytes: number };

export interface SimulatedRobot {
  readonly address: RobotAddress;
  readonly model: RobotModel;
  snapshot(): ModelSnapshot;
  inject(fault: Fault): void;
  /** Serial link statistics (frames, CRC errors, retransmits...), null for MQTT robots. */
  linkStats(): SerialLink['stats'] | null;
  /** graceful: VDA 5050 OFFLINE before disconnecting (MQTT); false = like a crash. */
  close(options?: { graceful?: boolean }): Promise<void>;
}

const DEFAULT_CAPABILITIES = ['pick', 'drop', 'waitForTrigger', 'disinfect', 'startCharging', 'stopCharging'];

export async function createSimulatedRobot(options: SimulatedRobotOptions): Promise<SimulatedRobot> {
  const model = new RobotModel(options);
  const address = { manufacturer: options.manufacturer, serialNumber: options.serialNumber };
  const timeScale = options.timeScale ?? 1;
  const tickMs = options.tickMs ?? 100;
  const capabilities = options.capabilities ?? DEFAULT_CAPABILITIES;
  const front = options.transport.kind === 'mqtt' ? await mqttFront(options, model, capabilities) : await serialFront(options, model, capabilities);

  let lastTick = Date.now();
  let lastReport = 0;
  const reportMs = options.reportMs ?? (options.transport.kind === 'mqtt' ? 30_000 : 250);
  const timer = setInterval(() => {
    const now = Date.now();
    const event = model.step(((now - lastTick) / 1000) * timeScale);
    lastTick = now;
    if (event || now - lastReport >= reportMs) {
      lastReport = now;
      front.report();
    }
  }, tickMs);

  return {
    address,
    model,
    snapshot: () => model.snapshot(),
    linkStats: () => front.linkStats(),
    inject(fault) {
      switch (fault.kind) {
        case 'estop':
          model.setEStop(fault.eStop);
          break;
        case 'error':
          model.addError(fault.errorType, fault.level, fault.description);
          break;
        case 'clear-errors':
          model.clearErrors();
          break;
        case 'battery':
          model.setBattery(fault.pct);
          break;
        default:
          front.fault(fault);
          return;
      }
      front.report();
    },
    async close(o = {}) {
      clearInterval(timer);
      await front.close(o.graceful ?? true);
    },
  };
}

interface Front {
  report(): void;
  fault(f: Fault): void;
  linkStats(): SerialLink['stats'] | null;
  close(graceful: boolean): Promise<void>;
}

// ---- VDA 5050 over MQTT -------------------------------------------------------------------------------

async function mqttFront(o: SimulatedRobotOptions, model: RobotModel, capabilities: string[]): Promise<Front> {
  if (o.transport.kind !== 'mqtt') throw new Error('unreachable');
  const robot = { manufacturer: o.manufacturer, serialNumber: o.serialNumber };
  const headerIds = { state: 0, connection: 0, factsheet: 0, visualization: 0 };
  const header = (topic: keyof typeof headerIds) => vda5050Header(robot, headerIds[topic]++);
  const connection = (connectionState: 'ONLINE' | 'OFFLINE' | 'CONNECTIONBROKEN') => JSON.stringify({ ...header('connection'), connectionState });
  const seenInstant = new Set<string>();
  const connect = () =>
    mqtt.connectAsync(o.transport.kind === 'mqtt' ? o.transport.url : '', {
      clientId: `sim-${o.manufacturer}-${o.serialNumber}`,
      username: o.transport.kind === 'mqtt' ? o.transport.username : undefined,
      password: o.transport.kind === 'mqtt' ? o.transport.password : undefined,
      keepalive: 15,
      reconnectPeriod: 1000,
      clean: true,
      will: { topic: vda5050Topic(robot, 'connection'), payload: Buffer.from(connection('CONNECTIONBROKEN')), qos: 1, retain: true },
    });
  let client: MqttClient = await connect();

  const publishState = () => {
    const s = model.snapshot();
    const msg: Vda5050State = { ...header('state'), ...stateBody(s) };
    // QoS 0 as VDA 5050 §6.2 asks (see bridge.ts: QoS 1 publishers are disconnected during a cluster's elections).
    client.publish(vda5050Topic(robot, 'state'), JSON.stringify(msg), { qos: 0 });
  };
  const publishFactsheet = (c: MqttClient) => {
    const factsheet: Vda5050Factsheet = { ...header('factsheet'), ...factsheetBody(capabilities, model.speed) };
    return c.publishAsync(vda5050Topic(robot, 'factsheet'), JSON.stringify(factsheet), { qos: 1, retain: true });
  };
  const wire = (c: MqttClient) => {
    c.on('message', (topic, payload) => {
      if (topic.endsWith('/order')) {
        const parsed = parseVda5050('order', payload, robot);
        if (parsed.ok) model.acceptOrder(parsed.value);
        else model.addError('validationError', 'WARNING', parsed.message.slice(0, 1000));
      } else {
        const parsed = parseVda5050('instantActions', payload, robot);
        if (!parsed.ok) model.addError('validationError', 'WARNING', parsed.message.slice(0, 1000));
        for (const a of parsed.ok ? parsed.value.actions : []) {
          if (seenInstant.has(a.actionId)) continue;
          seenInstant.add(a.actionId);
          model.instantAction(a);
          // VDA 5050: a factsheetRequest is answered with the factsheet.
          if (a.actionType === 'factsheetRequest') void publishFactsheet(c);
        }
      }
      publishState();
    });
    c.on('connect', () => {
      c.publish(vda5050Topic(robot, 'connection'), connection('ONLINE'), { qos: 1, retain: true });
      publishState();
    });
  };
  const start = async (c: MqttClient) => {
    wire(c);
    // QoS 0 as VDA 5050 §6.2 asks. The session is clean, so QoS 1 would keep nothing while offline
    // either; on a NATS cluster it would cost a JetStream consumer per topic (docs/scale.md).
    await c.subscribeAsync([vda5050Topic(robot, 'order'), vda5050Topic(robot, 'instantActions')], { qos: 0 });
    await c.publishAsync(vda5050Topic(robot, 'connection'), connection('ONLINE'), { qos: 1, retain: true });
    await publishFactsheet(c);
    publishState();
  };
  await start(client);
  return {
    report: publishState,
    linkStats: () => null,
    fault(f) {
      if (f.kind === 'link-drop') {
        // A crash of the network link: no DISCONNECT, so the broker publishes the will.
        client.stream.destroy();
        client.end(true);
        setTimeout(() => {
          void connect().then(async (c) => {
            client = c;
            await start(c);
          });
        }, f.ms);
      }
    },
    async close(graceful) {
      if (graceful && client.connected) {
        await client.publishAsync(vda5050Topic(robot, 'connection'), connection('OFFLINE'), { qos: 1, retain: true });
        await client.endAsync();
      } else {
        client.stream.destroy();
        await client.endAsync(true);
      }
    },
  };
}

export function stateBody(s: ModelSnapshot): Omit<Vda5050State, 'headerId' | 'timestamp' | 'version' | 'manufacturer' | 'serialNumber'> {
  return {
    orderId: s.orderId,
    orderUpdateId: s.orderUpdateId,
    lastNodeId: s.lastNodeId,
    lastNodeSequenceId: s.lastNodeSequenceId,
    driving: s.driving,
    paused: s.paused,
    distanceSinceLastNode: s.distanceSinceLastNode,
    operatingMode: 'AUTOMATIC',
    nodeStates: s.nodeStates,
    edgeStates: s.edgeStates,
    agvPosition: { ...s.position, theta: Math.max(-Math.PI, Math.min(Math.PI, s.position.theta)), positionInitialized: true },
    velocity: {},
    actionStates: s.actionStates.slice(-200),
    batteryState: { batteryCharge: s.batteryPct, charging: s.charging },
    errors: s.errors,
    safetyState: { eStop: s.eStop, fieldViolation: false },
  };
}

function factsheetBody(capabilities: string[], speed: number): Omit<Vda5050Factsheet, 'headerId' | 'timestamp' | 'version' | 'manufacturer' | 'serialNumber'> {
  return {
    typeSpecification: { seriesName: 'checkpoint-sim', agvKinematic: 'DIFF', agvClass: 'CARRIER', maxLoadMass: 20, localizationTypes: ['NATURAL'], navigationTypes: ['AUTONOMOUS'] },
    physicalParameters: { speedMin: 0, speedMax: speed, accelerationMax: 0.5, decelerationMax: 0.5, heightMin: 0.3, heightMax: 1.5, width: 0.6, length: 0.8 },
    // heightMin and these three are required by the official 2.0.0 factsheet schema.
    protocolLimits: { maxStringLens: {}, maxArrayLens: {}, timing: { minOrderInterval: 0.1, minStateInterval: 0.1 } },
    protocolFeatures: {
      optionalParameters: [],
      agvActions: [
        ...capabilities.map((actionType) => ({ actionType, actionScopes: ['NODE' as const] })),
        ...['cancelOrder', 'startPause', 'stopPause', 'stateRequest', 'factsheetRequest', 'stopCharging', 'trigger'].map((actionType) => ({ actionType, actionScopes: ['INSTANT' as const] })),
      ],
    },
    agvGeometry: {},
    loadSpecification: {},
  };
}

// ---- the MCU side of the serial protocol -----------------------------------------------------------------

async function serialFront(o: SimulatedRobotOptions, model: RobotModel, capabilities: string[]): Promise<Front> {
  if (o.transport.kind !== 'serial') throw new Error('unreachable');
  const port = new SerialPort({ path: o.transport.path, baudRate: o.transport.baudRate ?? 115200, autoOpen: false });
  await new Promise<void>((resolve, reject) => port.open((err) => (err ? reject(err) : resolve())));
  let mutedUntil = 0;
  const muted = () => Date.now() < mutedUntil;
  const link = new SerialLink((bytes) => {
    if (!muted() && port.isOpen) port.write(bytes);
  });
  port.on('data', (chunk: Buffer) => {
    if (!muted()) link.feed(chunk);
  });
  port.on('error', () => {});
  const started = Date.now();

  // Order assembly: STEP by STEP into the model (a new token = a new order, then order updates).
  let token = -1;
  let updateId = 0;
  let lastStep: Vda5050Node | null = null;
  const sentStatus = new Map<string, string>();
  const send = (m: Message) => void link.send(m).catch(() => {});

  link.on('message', (m) => {
    switch (m.type) {
      case 'step': {
        const node: Vda5050Node = {
          nodeId: m.nodeId,
          sequenceId: m.nodeSeq,
          released: true,
          nodePosition: { x: m.xMm / 1000, y: m.yMm / 1000, mapId: o.mapId ?? 'floor-0' },
          actions: m.actions.map((a) => ({
            actionId: String(a.ref),
            actionType: a.type,
            blockingType: a.blocking,
            actionParameters: a.params.map((p) => ({ key: p.key, value: p.value })),
          })),
        };
        if (m.orderToken !== token || m.edgeLengthMm === 0) {
          token = m.orderToken;
          updateId = 0;
          model.acceptOrder({ orderId: `token-${token}`, orderUpdateId: 0, nodes: [node], edges: [] });
        } else if (lastStep) {
          updateId += 1;
          const stitch = { ...lastStep, actions: [] };
          model.acceptOrder({
            orderId: `token-${token}`,
            orderUpdateId: updateId,
            nodes: [stitch, node],
            edges: [
              {
                edgeId: `${lastStep.nodeId}--${node.nodeId}`,
                sequenceId: node.sequenceId - 1,
                released: true,
                startNodeId: lastStep.nodeId,
                endNodeId: node.nodeId,
                length: m.edgeLengthMm / 1000,
                ...(m.maxSpeedMmS ? { maxSpeed: m.maxSpeedMmS / 1000 } : {}),
                actions: [],
              },
            ],
          });
        }
        lastStep = node;
        break;
      }
      case 'cancel':
        model.instantAction({ actionType: 'cancelOrder', actionId: `cancel-${Date.now()}`, blockingType: 'HARD' });
        break;
      case 'trigger':
        model.instantAction({ actionType: 'trigger', actionId: `trigger-${Date.now()}`, blockingType: 'NONE', actionParameters: [{ key: 'actionId', value: String(m.ref) }] });
        break;
      case 'pause':
        model.instantAction({ actionType: m.paused ? 'startPause' : 'stopPause', actionId: `pause-${Date.now()}`, blockingType: 'HARD' });
        break;
      default:
        break;
    }
    report();
  });

  const hello = (): Message => ({
    type: 'hello',
    manufacturer: o.manufacturer,
    serialNumber: o.serialNumber,
    firmware: o.firmware ?? 'sim-1.0.0',
    speedMmS: Math.round(model.speed * 1000),
    capabilities,
  });
  let helloAcked = false;
  let saying = false;
  const sayHello = (): void => {
    if (saying) return;
    saying = true;
    link.send(hello()).then(
      () => {
        saying = false;
        helloAcked = true;
      },
      () => {
        saying = false;
        setTimeout(() => sayHello(), 500);
      },
    );
  };
  sayHello();

  const report = () => {
    if (!helloAcked) return;
    const s = model.snapshot();
    send({
      type: 'status',
      orderToken: Math.max(0, token),
      lastNodeId: s.lastNodeId,
      lastNodeSeq: s.lastNodeSequenceId,
      driving: s.driving,
      charging: s.charging,
      paused: s.paused,
      fieldViolation: false,
      batteryPermille: Math.round(s.batteryPct * 10),
      eStop: s.eStop,
      xMm: s.position.x * 1000,
      yMm: s.position.y * 1000,
      thetaMrad: s.position.theta * 1000,
      errors: s.errors.slice(0, 8).map((e) => ({ fatal: e.errorLevel === 'FATAL', errorType: e.errorType.slice(0, 64), description: (e.errorDescription ?? '').slice(0, 128) })),
    });
    for (const a of s.actionStates) {
      const ref = Number(a.actionId);
      if (!Number.isInteger(ref)) continue;
      const key = `${a.actionStatus}|${a.resultDescription ?? ''}`;
      if (sentStatus.get(a.actionId) === key) continue;
      sentStatus.set(a.actionId, key);
      send({ type: 'action', ref, status: a.actionStatus, result: a.resultDescription ?? '' });
    }
  };
  const heartbeat = setInterval(() => {
    if (!muted()) send({ type: 'heartbeat', uptimeMs: Date.now() - started });
    // PROTOCOL.md: nothing from the bridge for 2 s (it restarted, the cable was out) and the MCU
    // says HELLO again; the bridge binds a link only by a HELLO.
    if (helloAcked && Date.now() - link.lastReceivedAt > 2000) {
      helloAcked = false;
      sayHello();
    }
  }, o.heartbeatMs ?? 500);

  return {
    report,
    linkStats: () => link.stats,
    fault(f) {
      if (f.kind === 'link-drop') {
        mutedUntil = Date.now() + f.ms;
        // After the outage the MCU says hello again, like after a reconnect.
        setTimeout(() => {
          helloAcked = false;
          sayHello();
        }, f.ms + 10);
      } else if (f.kind === 'garbage' && port.isOpen) {
        port.write(randomBytes(f.bytes));
      }
    },
    async close() {
      clearInterval(heartbeat);
      link.close();
      if (port.isOpen) await new Promise<void>((resolve) => port.close(() => resolve()));
    },
  };
}
