/**
 * The bridge: for every configured serial robot, a serial port with the MCU protocol on one side
 * and an MQTT connection speaking VDA 5050 on the other, so the robot looks like a native one.
 *
 * - One MQTT client per robot, with the last will `connection: CONNECTIONBROKEN` (retained, QoS 1)
 *   for that robot, as VDA 5050 §6.14 asks of a vehicle.
 * - A link is bound to its robot by a HELLO naming the configured manufacturer/serial. A HELLO
 *   naming anyone else is refused (NACK, counted in `identityMismatches`, logged once per claimed
 *   identity) and unbinds the link; STATUS and ACTION on an unbound link are ignored (counted in
 *   `unboundMessages`), so an impostor can never speak for the configured robot.
 * - ONLINE once the bound MCU reports status; CONNECTIONBROKEN when
 *   the port closes or nothing valid arrived for `linkTimeoutMs` (heartbeats; counted in watchdog
 *   ticks, so a stall of this process is not taken for the robot's silence); the port is
 *   reopened every `reopenMs` until it comes back; OFFLINE on a graceful stop.
 * - order / instantActions (subscribed with QoS 0, VDA 5050 §6.2) are validated (invalid ones counted by cause and dropped with a
 *   clear log line), deduplicated by orderId/orderUpdateId and actionId, and sent as reliable serial
 *   commands; `state` (QoS 0, VDA 5050 §6.2) on every change (at most one per `stateMinIntervalMs`, the latest winning:
 *   a STATUS flood is coalesced) and at least every `statePeriodMs`.
 */
import mqtt, { type MqttClient } from 'mqtt';
import type { Logger } from 'pino';
import { SerialPort } from 'serialport';
import { parseVda5050, vda5050Header, vda5050Topic, type ConnectionState, type RobotAddress } from '@checkpoint/protocol';
import { SerialLink } from '../serial/link.js';
import type { Message } from '../serial/messages.js';
import { StateThrottle } from './state-throttle.js';
import { VdaAdapter } from './vda-adapter.js';
import { LinkSilence } from './link-silence.js';

export interface BridgeRobotConfig {
  port: string;
  baudRate: number;
  manufacturer: string;
  serialNumber: string;
  mapId?: string;
}

export interface BridgeOptions {
  mqtt: { url: string; username?: string; password?: string; keepaliveS?: number };
  robots: BridgeRobotConfig[];
  linkTimeoutMs?: number;
  reopenMs?: number;
  statePeriodMs?: number;
  /** At most one state per this many ms (default 100: 10 a second); changes in between are coalesced. */
  stateMinIntervalMs?: number;
  retransmitMs?: number;
  logger: Logger;
}

export interface RobotBridgeStats {
  robot: string;
  connection: ConnectionState | 'STARTING';
  portOpen: boolean;
  ordersAccepted: number;
  ordersDuplicate: number;
  ordersRejected: number;
  /** Invalid MQTT payloads by cause (e.g. `invalid-order`). */
  invalidPayloads: Record<string, number>;
  /** HELLOs naming another robot than the configured one (refused). */
  identityMismatches: number;
  /** STATUS/ACTION received on a link no valid HELLO has bound (ignored). */
  unboundMessages: number;
  /** States published, and state changes coalesced by the rate limit. */
  statesPublished: number;
  statesCoalesced: number;
  link: SerialLink['stats'] | null;
}

export interface Bridge {
  stats(): RobotBridgeStats[];
  close(): Promise<void>;
}

export async function startBridge(options: BridgeOptions): Promise<Bridge> {
  const robots = await Promise.all(options.robots.map((r) => startRobotBridge(r, options)));
  return {
    stats: () => robots.map((r) => r.stats()),
    async close() {
      await Promise.all(robots.map((r) => r.close()));
    },
  };
}

async function startRobotBridge(cfg: BridgeRobotConfig, o: BridgeOptions): Promise<{ stats(): RobotBridgeStats; close(): Promise<void> }> {
  const robot: RobotAddress = { manufacturer: cfg.manufacturer, serialNumber: cfg.serialNumber };
  const name = `${cfg.manufacturer}/${cfg.serialNumber}`;
  const log = o.logger.child({ robot: name, port: cfg.port });
  const linkTimeoutMs = o.linkTimeoutMs ?? 2000;
  const reopenMs = o.reopenMs ?? 1000;
  const statePeriodMs = o.statePeriodMs ?? 30_000;
  const headerIds = { state: 0, connection: 0, factsheet: 0 };
  const header = (t: keyof typeof headerIds) => vda5050Header(robot, headerIds[t]++);
  const stats: RobotBridgeStats = {
    robot: name,
    connection: 'STARTING',
    portOpen: false,
    ordersAccepted: 0,
    ordersDuplicate: 0,
    ordersRejected: 0,
    invalidPayloads: {},
    identityMismatches: 0,
    unboundMessages: 0,
    statesPublished: 0,
    statesCoalesced: 0,
    link: null,
  };
  const loggedCauses = new Set<string>();
  let closing = false;

  const connectionPayload = (connectionState: ConnectionState) => JSON.stringify({ ...header('connection'), connectionState });
  const client: MqttClient = await mqtt.connectAsync(o.mqtt.url, {
    clientId: `bridge-${cfg.manufacturer}-${cfg.serialNumber}`,
    username: o.mqtt.username,
    password: o.mqtt.password,
    keepalive: o.mqtt.keepaliveS ?? 15,
    reconnectPeriod: 1000,
    clean: true,
    will: { topic: vda5050Topic(robot, 'connection'), payload: Buffer.from(connectionPayload('CONNECTIONBROKEN')), qos: 1, retain: true },
  });
  client.on('error', (err) => log.warn({ err: err.message }, 'mqtt error'));

  const adapter = new VdaAdapter(cfg.mapId ? { mapId: cfg.mapId } : {});
  let link: SerialLink | null = null;
  let port: SerialPort | null = null;
  let online = false;
  let lastFactsheet: string | null = null;

  const setConnection = (state: ConnectionState, why: string) => {
    if (stats.connection === state) return;
    stats.connection = state;
    online = state === 'ONLINE';
    log.info({ connection: state }, `connection ${state}: ${why}`);
    client.publish(vda5050Topic(robot, 'connection'), connectionPayload(state), { qos: 1, retain: true });
  };
  const throttle = new StateThrottle<ReturnType<VdaAdapter['state']>>({
    minIntervalMs: o.stateMinIntervalMs ?? 100,
    key: (state) => JSON.stringify(state),
    publish: (state) => {
      if (!online) return;
      // QoS 0, as VDA 5050 §6.2 asks: the next state supersedes a lost one. A QoS 1 publisher is
      // also disconnected by nats-server (cluster mode) while a stream elects a leader: its will
      // would say CONNECTIONBROKEN and its task would be re-queued (docs/scale.md).
      client.publish(vda5050Topic(robot, 'state'), JSON.stringify({ ...header('state'), ...state }), { qos: 0 });
    },
  });
  const publishState = (force = false) => {
    if (!online) return;
    throttle.offer(adapter.state(), force);
    stats.statesPublished = throttle.stats.published;
    stats.statesCoalesced = throttle.stats.coalesced;
  };
  const command = (m: Message) => {
    if (!link) return;
    link.send(m).catch((err: Error) => log.warn({ command: m.type }, `serial command not delivered: ${err.message}`));
  };
  const countInvalid = (cause: string, message: string) => {
    stats.invalidPayloads[cause] = (stats.invalidPayloads[cause] ?? 0) + 1;
    if (!loggedCauses.has(cause)) {
      loggedCauses.add(cause);
      log.warn({ cause }, `dropped invalid payload (logged once per cause): ${message}`);
    }
  };

  // ---- MQTT → serial --------------------------------------------------------------------------
  client.on('message', (topic, payload) => {
    if (topic.endsWith('/order')) {
      const parsed = parseVda5050('order', payload, robot);
      if (!parsed.ok) return countInvalid('invalid-order', parsed.message);
      const result = adapter.onOrder(parsed.value);
      if (result.result === 'duplicate') {
        stats.ordersDuplicate += 1;
        return;
      }
      if (result.result === 'rejected') {
        stats.ordersRejected += 1;
        log.warn(`order ${parsed.value.orderId}/${parsed.value.orderUpdateId} rejected: ${result.error.errorDescription}`);
      } else {
        stats.ordersAccepted += 1;
        result.commands.forEach(command);
      }
      publishState();
    } else if (topic.endsWith('/instantActions')) {
      const parsed = parseVda5050('instantActions', payload, robot);
      if (!parsed.ok) return countInvalid('invalid-instantActions', parsed.message);
      adapter.onInstantActions(parsed.value).forEach(command);
      publishState(true);
    }
  });
  // QoS 0 as VDA 5050 §6.2 asks: the session is clean, so QoS 1 would keep nothing while offline
  // either; on a NATS cluster it would cost a JetStream consumer per topic (docs/scale.md).
  await client.subscribeAsync([vda5050Topic(robot, 'order'), vda5050Topic(robot, 'instantActions')], { qos: 0 });
  // Until the MCU has said hello, the robot is not reachable (and a stale retained ONLINE must go).
  setConnection('CONNECTIONBROKEN', 'waiting for the robot to say hello');

  // ---- serial port lifecycle ------------------------------------------------------------------
  let reopenTimer: NodeJS.Timeout | null = null;
  const scheduleReopen = () => {
    if (closing || reopenTimer) return;
    reopenTimer = setTimeout(() => {
      reopenTimer = null;
      openPort();
    }, reopenMs);
  };
  const lost = (why: string) => {
    link?.close();
    link = null;
    if (port?.isOpen) port.close(() => {});
    port = null;
    stats.portOpen = false;
    if (!closing) setConnection('CONNECTIONBROKEN', why);
    scheduleReopen();
  };
  const openPort = () => {
    if (closing) return;
    const p = new SerialPort({ path: cfg.port, baudRate: cfg.baudRate, autoOpen: false });
    p.open((err) => {
      if (err) {
        log.debug(`cannot open ${cfg.port}: ${err.message}`);
        return scheduleReopen();
      }
      port = p;
      stats.portOpen = true;
      log.info(`port ${cfg.port} open`);
      // Bound by a HELLO naming this robot; anything else on the line speaks for nobody.
      let bound = false;
      const l = new SerialLink((bytes) => p.write(bytes), {
        retransmitMs: o.retransmitMs ?? 200,
        refuse: (m) =>
          m.type === 'hello' && (m.manufacturer !== cfg.manufacturer || m.serialNumber !== cfg.serialNumber)
            ? `this port belongs to ${name}, not ${m.manufacturer}/${m.serialNumber}`
            : null,
      });
      link = l;
      stats.link = l.stats;
      l.lastReceivedAt = Date.now();
      p.on('data', (chunk: Buffer) => l.feed(chunk));
      p.on('close', () => {
        if (port === p) lost(`port ${cfg.port} closed`);
      });
      p.on('error', (e) => {
        if (port === p) lost(`port ${cfg.port} error: ${e.message}`);
      });
      l.on('invalid', (e) => log.debug(`undecodable serial message: ${e.message}`));
      l.on('refused', (m) => {
        if (m.type !== 'hello') return;
        stats.identityMismatches += 1;
        const claimed = `${m.manufacturer}/${m.serialNumber}`;
        if (!loggedCauses.has(`hello ${claimed}`) && loggedCauses.size < 100) {
          loggedCauses.add(`hello ${claimed}`);
          log.error({ claimed, expected: name }, `robot on ${cfg.port} says it is ${claimed}, expected ${name}: HELLO refused, link not bound (logged once per claimed identity; counted in identityMismatches)`);
        }
        if (bound) {
          bound = false;
          setConnection('CONNECTIONBROKEN', `another robot (${claimed}) took over ${cfg.port}`);
        }
      });
      l.on('message', (m) => {
        if ((m.type === 'status' || m.type === 'action') && !bound) {
          stats.unboundMessages += 1;
          if (!loggedCauses.has('unbound') && loggedCauses.size < 100) {
            loggedCauses.add('unbound');
            log.warn(`${m.type} on ${cfg.port} before a HELLO naming ${name}: ignored until the robot says hello (logged once; counted in unboundMessages)`);
          }
          return;
        }
        switch (m.type) {
          case 'hello': {
            bound = true;
            // The adapter (and the order it tracks) survives a link outage; the MCU keeps its order too.
            // Only when it changed: a robot repeating HELLO must not flood retained factsheets.
            const factsheet = JSON.stringify(VdaAdapter.factsheet(m));
            if (factsheet !== lastFactsheet) {
              lastFactsheet = factsheet;
              client.publish(vda5050Topic(robot, 'factsheet'), JSON.stringify({ ...header('factsheet'), ...VdaAdapter.factsheet(m) }), { qos: 1, retain: true });
            }
            log.info(`hello from firmware ${m.firmware}`);
            break;
          }
          case 'status':
            adapter.onStatus(m);
            if (!online) setConnection('ONLINE', 'robot reports status');
            publishState();
            break;
          case 'action':
            adapter.onAction(m);
            publishState();
            break;
          default:
            break;
        }
      });
    });
  };
  openPort();

  // Heartbeats to the MCU, the link watchdog, and the periodic state.
  let lastPeriodic = Date.now();
  const tickMs = Math.min(500, Math.max(50, linkTimeoutMs / 4));
  // Silence counted in ticks: a stall of this process (frames unread meanwhile) is not the robot's silence.
  const silence = new LinkSilence(tickMs, Date.now(), 0);
  const watchdog = setInterval(() => {
    if (link) {
      void link.send({ type: 'heartbeat', uptimeMs: Math.round(process.uptime() * 1000) });
      if (silence.tick(Date.now(), link.lastReceivedAt) > linkTimeoutMs && online) {
        setConnection('CONNECTIONBROKEN', `nothing valid from the robot for ${linkTimeoutMs} ms`);
      }
    }
    if (Date.now() - lastPeriodic >= statePeriodMs) {
      lastPeriodic = Date.now();
      publishState(true);
    }
  }, tickMs);

  return {
    stats: () => ({ ...stats, invalidPayloads: { ...stats.invalidPayloads } }),
    async close() {
      closing = true;
      clearInterval(watchdog);
      throttle.stop();
      if (reopenTimer) clearTimeout(reopenTimer);
      link?.close();
      if (port?.isOpen) await new Promise<void>((resolve) => port!.close(() => resolve()));
      if (client.connected) {
        await client.publishAsync(vda5050Topic(robot, 'connection'), connectionPayload('OFFLINE'), { qos: 1, retain: true });
      }
      await client.endAsync();
    },
  };
}
