/**
 * One worker process of `sim:fleet`: opens its share of the simulated checkpoints (persistent
 * MQTT sessions with their own users), and while told to run, publishes QoS 1 screenings at
 * Poisson-distributed times (resending those whose publish failed, as an agent's outbox does) and
 * QoS 0 telemetry at a fixed interval. Reports over IPC: sessions connected, then batches of accepted
 * (PUBACKed) screening ids with their send times, then a final count; with `subscribeCmd`, each
 * session subscribes to its `cmd` topic (QoS 1) as agents do, and the commands received are reported.
 */
import mqtt, { type MqttClient } from 'mqtt';
import { reconnectDelay, serverList } from '@checkpoint/protocol';
import { nextArrivalMs, simScreening, simTelemetry, simUlid, type SimDevice } from './fleet-core.js';

export type WorkerCommand =
  /** subscribeCmd: subscribe each session to its `cmd` topic (QoS 1) on every connect, as agents do. */
  | { type: 'open'; urls: string[]; devices: SimDevice[]; connectConcurrency: number; reconnectMs?: number; subscribeCmd?: boolean }
  /** `screening`: protocol-valid screenings (ULID ids) a gateway stores; `minimal`: `{id, t}` for the sim's own reader. */
  | {
      type: 'run';
      ratePerCheckpoint: number;
      durationS: number;
      payload?: 'minimal' | 'screening';
      /** QoS 0 telemetry per checkpoint every this many seconds (0 or absent: none). */
      telemetryEveryS?: number;
      /** How long after the load failed publishes are still resent (default 30 s). */
      retryForS?: number;
    }
  | { type: 'close' };

export type WorkerReport =
  /** subscribed: sessions whose `cmd` subscription was granted when they first connected. */
  | { type: 'opened'; connected: number; subscribed: number; failed: string[] }
  | { type: 'accepted'; ids: Array<[string, number]> }
  /** Commands devices received: id and receive time (every copy). */
  | { type: 'commands'; received: Array<[string, number]> }
  /** failedPublishes: never acknowledged, resends included; resent: publishes sent again; telemetry: QoS 0 messages sent. */
  | { type: 'ran'; published: number; failedPublishes: number; resent: number; telemetry: number }
  | { type: 'closed' };

const send = (report: WorkerReport) => process.send!(report);
const clients: MqttClient[] = [];

/**
 * Reconnect as an agent in cluster mode does (`reconnectDelay`, as edge-agent's connection.ts
 * calls it: mean `reconnectMs`, 30 s by default in cluster mode, doubled per failed attempt up to
 * 30 s, drawn from [0.5, 1.5) times the mean). A fixed short period made the 3,333 sessions of a
 * killed node a storm the survivors never got out of (docs/scale.md).
 */
let reconnectMs = 30_000;
const reconnectWait = (failures: number) => reconnectDelay(failures, reconnectMs, Math.max(30_000, reconnectMs));

/** Commands received since the last report, sent to the parent every 250 ms. */
let commandsReceived: Array<[string, number]> = [];
const reportCommands = setInterval(() => {
  if (commandsReceived.length > 0) send({ type: 'commands', received: commandsReceived });
  commandsReceived = [];
}, 250);

async function open(urls: string[], devices: SimDevice[], concurrency: number, subscribeCmd: boolean): Promise<void> {
  const failed: string[] = [];
  let subscribed = 0;
  let next = 0;
  const connectOne = async (device: SimDevice, index: number) => {
    const client = mqtt.connect({
      servers: serverList(urls, index),
      protocol: 'mqtt',
      clientId: device.name,
      username: device.name,
      password: device.password,
      clean: false,
      keepalive: 60,
      reconnectPeriod: reconnectWait(0),
      connectTimeout: 30_000,
    });
    let failures = 0;
    client.on('connect', () => (failures = 0));
    client.prependListener('close', () => (client.options.reconnectPeriod = reconnectWait(failures++)));
    clients.push(client);
    const cmdTopic = `checkpoint/v1/${device.site}/${device.checkpoint}/cmd`;
    // As the agent: subscribe on every connect (the session may be new), read commands.
    let firstSubscription: Promise<boolean> | undefined;
    if (subscribeCmd) {
      client.on('connect', () => {
        const granted = client.subscribeAsync(cmdTopic, { qos: 1 }).then(
          (grants) => grants.every((g) => g.qos !== 128),
          () => false,
        );
        firstSubscription ??= granted;
      });
      client.on('message', (topic, payload) => {
        if (topic !== cmdTopic) return;
        try {
          commandsReceived.push([(JSON.parse(payload.toString()) as { id: string }).id, Date.now()]);
        } catch {
          // not one of ours
        }
      });
    }
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => (failed.push(device.name), resolve()), 60_000);
      client.once('connect', () => (clearTimeout(timer), resolve()));
    });
    if (firstSubscription && (await Promise.race([firstSubscription, new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 60_000))]))) subscribed++;
  };
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < devices.length) {
        const i = next++;
        await connectOne(devices[i]!, i);
      }
    }),
  );
  send({ type: 'opened', connected: clients.filter((c) => c.connected).length, subscribed, failed });
}

async function run(devices: SimDevice[], o: Extract<WorkerCommand, { type: 'run' }>): Promise<void> {
  const { ratePerCheckpoint, durationS } = o;
  const payload = o.payload ?? 'minimal';
  const endAt = Date.now() + durationS * 1000;
  // A publish that failed (connection lost mid-flight) is resent until this long after the load,
  // as an agent's outbox does: it is lost only if it never gets its PUBACK.
  const giveUpAt = endAt + (o.retryForS ?? 30) * 1000;
  let published = 0;
  let failedPublishes = 0;
  let resent = 0;
  let telemetry = 0;
  let batch: Array<[string, number]> = [];
  const flush = setInterval(() => {
    if (batch.length > 0) send({ type: 'accepted', ids: batch });
    batch = [];
  }, 250);
  const timers = new Set<NodeJS.Timeout>();
  const later = (ms: number, fn: () => void) => {
    const timer = setTimeout(() => {
      timers.delete(timer);
      fn();
    }, ms);
    timers.add(timer);
  };
  let pending = 0;
  let allDone: () => void = () => {};
  const done = new Promise<void>((resolve) => (allDone = resolve));
  devices.forEach((device, i) => {
    const client = clients[i]!;
    const topic = `checkpoint/v1/${device.site}/${device.checkpoint}/screening`;
    let n = 0;
    const attempt = (id: string, body: string, firstSentAt: number) => {
      client.publish(topic, body, { qos: 1 }, (err) => {
        if (!err) batch.push([id, firstSentAt]);
        else if (Date.now() < giveUpAt) {
          resent++;
          return later(1000 + Math.random() * 1000, () => attempt(id, body, firstSentAt));
        } else failedPublishes++;
        if (--pending === 0 && Date.now() >= endAt) allDone();
      });
    };
    const schedule = () =>
      later(nextArrivalMs(ratePerCheckpoint, Math.random()), () => {
        if (Date.now() >= endAt) return;
        const sentAt = Date.now();
        const id = payload === 'screening' ? simUlid(sentAt, Math.random) : `${device.name}-${n++}`;
        published++;
        pending++;
        attempt(id, JSON.stringify(payload === 'screening' ? simScreening(device, id, sentAt) : { id, t: sentAt }), sentAt);
        schedule();
      });
    schedule();
    // Telemetry as agents send it: QoS 0, every `telemetryEveryS`, from a random phase.
    const every = (o.telemetryEveryS ?? 0) * 1000;
    if (every > 0) {
      const telemetryTopic = `checkpoint/v1/${device.site}/${device.checkpoint}/telemetry`;
      const tick = () => {
        if (Date.now() >= endAt) return;
        if (client.connected) {
          telemetry++;
          client.publish(telemetryTopic, JSON.stringify(simTelemetry(device, Date.now())), { qos: 0 });
        }
        later(every, tick);
      };
      later(Math.random() * every, tick);
    }
  });
  await new Promise((resolve) => setTimeout(resolve, durationS * 1000));
  // Publishes still waiting for PUBACK (or to be resent): given until giveUpAt.
  if (pending > 0) await Promise.race([done, new Promise((resolve) => setTimeout(resolve, giveUpAt - Date.now() + 2000))]);
  for (const t of timers) clearTimeout(t);
  clearInterval(flush);
  if (batch.length > 0) send({ type: 'accepted', ids: batch });
  send({ type: 'ran', published, failedPublishes: failedPublishes + pending, resent, telemetry });
}

let devices: SimDevice[] = [];
process.on('message', (command: WorkerCommand) => {
  void (async () => {
    switch (command.type) {
      case 'open':
        devices = command.devices;
        reconnectMs = command.reconnectMs ?? reconnectMs;
        await open(command.urls, devices, command.connectConcurrency, command.subscribeCmd ?? false);
        return;
      case 'run':
        await run(devices, command);
        return;
      case 'close':
        await Promise.all(clients.map((c) => c.endAsync(true)));
        clearInterval(reportCommands);
        send({ type: 'closed' });
        process.disconnect();
        return;
    }
  })().catch((error: Error) => {
    process.stderr.write(`sim:fleet worker ${process.pid}: ${error.stack ?? error.message}\n`);
    process.exit(1);
  });
});
