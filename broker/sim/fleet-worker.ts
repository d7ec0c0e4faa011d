/**
 * One worker process of `sim:fleet`: opens its share of the simulated checkpoints (persistent
 * MQTT sessions with their own users), and while told to run, publishes QoS 1 screenings at
 * Poisson-distributed times. Reports over IPC: sessions connected, then batches of accepted
 * (PUBACKed) screening ids with their send times, then a final count.
 */
import mqtt, { type MqttClient } from 'mqtt';
import { nextArrivalMs, simScreening, simUlid, type SimDevice } from './fleet-core.js';

export type WorkerCommand =
  | { type: 'open'; urls: string[]; devices: SimDevice[]; connectConcurrency: number }
  /** `screening`: protocol-valid screenings (ULID ids) a gateway stores; `minimal`: `{id, t}` for the sim's own reader. */
  | { type: 'run'; ratePerCheckpoint: number; durationS: number; payload?: 'minimal' | 'screening' }
  | { type: 'close' };

export type WorkerReport =
  | { type: 'opened'; connected: number; failed: string[] }
  | { type: 'accepted'; ids: Array<[string, number]> }
  | { type: 'ran'; published: number; failedPublishes: number }
  | { type: 'closed' };

const send = (report: WorkerReport) => process.send!(report);
const clients: MqttClient[] = [];

function servers(urls: string[], start: number) {
  const list = urls.map((raw) => {
    const u = new URL(raw);
    return { host: u.hostname, port: Number(u.port || 1883), protocol: 'mqtt' as const };
  });
  return [...list.slice(start % list.length), ...list.slice(0, start % list.length)];
}

async function open(urls: string[], devices: SimDevice[], concurrency: number): Promise<void> {
  const failed: string[] = [];
  let next = 0;
  const connectOne = async (device: SimDevice, index: number) => {
    const client = mqtt.connect({
      servers: servers(urls, index),
      protocol: 'mqtt',
      clientId: device.name,
      username: device.name,
      password: device.password,
      clean: false,
      keepalive: 60,
      reconnectPeriod: 500 + Math.round(Math.random() * 1000),
      connectTimeout: 30_000,
    });
    clients.push(client);
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => (failed.push(device.name), resolve()), 60_000);
      client.once('connect', () => (clearTimeout(timer), resolve()));
    });
  };
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < devices.length) {
        const i = next++;
        await connectOne(devices[i]!, i);
      }
    }),
  );
  send({ type: 'opened', connected: clients.filter((c) => c.connected).length, failed });
}

async function run(devices: SimDevice[], ratePerCheckpoint: number, durationS: number, payload: 'minimal' | 'screening'): Promise<void> {
  const endAt = Date.now() + durationS * 1000;
  let published = 0;
  let failedPublishes = 0;
  let batch: Array<[string, number]> = [];
  const flush = setInterval(() => {
    if (batch.length > 0) send({ type: 'accepted', ids: batch });
    batch = [];
  }, 250);
  const timers = new Set<NodeJS.Timeout>();
  let pending = 0;
  let allDone: () => void = () => {};
  const done = new Promise<void>((resolve) => (allDone = resolve));
  devices.forEach((device, i) => {
    const client = clients[i]!;
    const topic = `checkpoint/v1/${device.site}/${device.checkpoint}/screening`;
    let n = 0;
    const schedule = () => {
      const timer = setTimeout(() => {
        timers.delete(timer);
        if (Date.now() >= endAt) return;
        const sentAt = Date.now();
        const id = payload === 'screening' ? simUlid(sentAt, Math.random) : `${device.name}-${n++}`;
        published++;
        pending++;
        const body = payload === 'screening' ? simScreening(device, id, sentAt) : { id, t: sentAt };
        client.publish(topic, JSON.stringify(body), { qos: 1 }, (err) => {
          if (err) failedPublishes++;
          else batch.push([id, sentAt]);
          if (--pending === 0 && Date.now() >= endAt) allDone();
        });
        schedule();
      }, nextArrivalMs(ratePerCheckpoint, Math.random()));
      timers.add(timer);
    };
    schedule();
  });
  await new Promise((resolve) => setTimeout(resolve, durationS * 1000));
  for (const t of timers) clearTimeout(t);
  // Publishes still waiting for PUBACK: give them until the parent's drain ends them.
  if (pending > 0) await Promise.race([done, new Promise((resolve) => setTimeout(resolve, 30_000))]);
  clearInterval(flush);
  if (batch.length > 0) send({ type: 'accepted', ids: batch });
  send({ type: 'ran', published, failedPublishes });
}

let devices: SimDevice[] = [];
process.on('message', (command: WorkerCommand) => {
  void (async () => {
    switch (command.type) {
      case 'open':
        devices = command.devices;
        await open(command.urls, devices, command.connectConcurrency);
        return;
      case 'run':
        await run(devices, command.ratePerCheckpoint, command.durationS, command.payload ?? 'minimal');
        return;
      case 'close':
        await Promise.all(clients.map((c) => c.endAsync(true)));
        send({ type: 'closed' });
        process.disconnect();
        return;
    }
  })().catch((error: Error) => {
    process.stderr.write(`sim:fleet worker ${process.pid}: ${error.stack ?? error.message}\n`);
    process.exit(1);
  });
});
