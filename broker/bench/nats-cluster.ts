/**
 * QoS 1 publish -> deliver throughput and latency through a 3-node NATS cluster (JetStream,
 * MQTT listener, R3 message stream, users and permissions from nats-export), against one
 * Mosquitto with the same users (mosquitto-export) as the baseline, in one run.
 *
 *   node ../scripts/run-ts.mjs bench/nats-cluster.ts [--publishers 4] [--messages 2000] [--window 16] [--json]   (in broker/)
 *
 * Each publisher is an edge user sending screening-sized JSON to its own checkpoint's
 * `screening` topic with at most `window` unacknowledged messages (the agent's default
 * maxInFlight is 16); publishers are spread over the nodes, one gateway subscriber (QoS 1) on
 * the first node receives everything. Latency = receive time - send time (one clock). Every
 * server runs in its own process on this machine, loopback only: the cluster's three nodes
 * share the same cores, so this is a floor for separate machines, not a per-node figure.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import mqtt, { type MqttClient } from 'mqtt';
import { startMosquitto, startNatsCluster } from '@checkpoint/test-support';
import { exportMosquitto, openUserStore } from '../src/index.js';
import { exportNats } from '../src/nats-export.js';

const { values: opts } = parseArgs({
  options: {
    publishers: { type: 'string', default: '4' },
    messages: { type: 'string', default: '2000' },
    window: { type: 'string', default: '16' },
    json: { type: 'boolean', default: false },
  },
});
const PUBLISHERS = Number(opts.publishers);
const MESSAGES = Number(opts.messages);
const WINDOW = Number(opts.window);
const WARMUP = 500;
const PASSWORD = 'bench-password-1';

interface Result {
  broker: string;
  messages: number;
  seconds: number;
  perSecond: number;
  latencyMs: { p50: number; p90: number; p99: number; max: number };
}

function connect(url: string, username: string): Promise<MqttClient> {
  const client = mqtt.connect(url, { username, password: PASSWORD, reconnectPeriod: 0, clean: true });
  return new Promise((resolve, reject) => {
    client.once('connect', () => resolve(client));
    client.once('error', reject);
  });
}

const print = (line: string) => process.stdout.write(`${line}\n`);
const percentile = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;

async function measure(broker: string, urls: string[]): Promise<Result> {
  const url = urls[0]!;
  const subscriber = await connect(url, 'gateway');
  await subscriber.subscribeAsync('checkpoint/v1/+/+/screening', { qos: 1 });
  // Publishers spread over the nodes (a cluster's clients are); the subscriber is on the first.
  const publishers = await Promise.all(Array.from({ length: PUBLISHERS }, (_, i) => connect(urls[i % urls.length]!, `edge-${i}`)));
  const filler = 'x'.repeat(300); // ~ a screening message's size

  const run = async (count: number) => {
    const latencies: number[] = [];
    let received = 0;
    let done: () => void = () => {};
    const all = new Promise<void>((resolve) => (done = resolve));
    const onMessage = (_topic: string, payload: Buffer) => {
      const sentAt = Number(JSON.parse(payload.toString()).t);
      latencies.push(performance.now() - sentAt);
      if (++received === count * PUBLISHERS) done();
    };
    subscriber.on('message', onMessage);
    const start = performance.now();
    await Promise.all(
      publishers.map(async (client, i) => {
        const topic = `checkpoint/v1/bench/gate-${i}/screening`;
        let inFlight = 0;
        let wake: () => void = () => {};
        for (let n = 0; n < count; n++) {
          while (inFlight >= WINDOW) await new Promise<void>((resolve) => (wake = resolve));
          inFlight++;
          client.publish(topic, JSON.stringify({ t: performance.now(), n, filler }), { qos: 1 }, () => {
            inFlight--;
            wake();
          });
        }
      }),
    );
    await all;
    const seconds = (performance.now() - start) / 1000;
    subscriber.off('message', onMessage);
    return { seconds, latencies };
  };

  await run(WARMUP / PUBLISHERS);
  const { seconds, latencies } = await run(MESSAGES);
  await Promise.all([subscriber, ...publishers].map((c) => c.endAsync()));
  latencies.sort((a, b) => a - b);
  const round = (x: number) => Math.round(x * 100) / 100;
  return {
    broker,
    messages: latencies.length,
    seconds: round(seconds),
    perSecond: Math.round(latencies.length / seconds),
    latencyMs: { p50: round(percentile(latencies, 50)), p90: round(percentile(latencies, 90)), p99: round(percentile(latencies, 99)), max: round(latencies.at(-1)!) },
  };
}

const dir = mkdtempSync(join(tmpdir(), 'checkpoint-nats-bench-'));
try {
  const store = openUserStore(join(dir, 'users.sqlite'), { natsBcryptCost: 4 });
  for (let i = 0; i < PUBLISHERS; i++) await store.add({ name: `edge-${i}`, role: 'edge', site: 'bench', checkpoint: `gate-${i}` }, PASSWORD);
  await store.add({ name: 'gateway', role: 'gateway' }, PASSWORD);
  const mosquittoFiles = exportMosquitto(store, join(dir, 'mosquitto'));
  const natsFile = exportNats(store, join(dir, 'nats', 'auth.conf'));
  store.close();

  const loadBefore = loadavg()[0]!;
  const mosquitto = await startMosquitto({
    acl: readFileSync(mosquittoFiles.aclFile, 'utf8'),
    extraConfig: `allow_anonymous false\npassword_file ${mosquittoFiles.passwordFile}`,
  });
  let mosquittoResult: Result;
  try {
    mosquittoResult = await measure('mosquitto (1 node)', [mosquitto.url]);
  } finally {
    await mosquitto.stop();
  }

  const cluster = await startNatsCluster({ authorization: readFileSync(natsFile.file, 'utf8') });
  let natsResult: Result;
  try {
    natsResult = await measure('nats 2.9 (3 nodes, R3)', cluster.mqttUrls);
  } finally {
    await cluster.stop();
  }

  const results = [mosquittoResult, natsResult];
  const ratio = Math.round((natsResult.perSecond / mosquittoResult.perSecond) * 100) / 100;
  const load = { before: Math.round(loadBefore * 100) / 100, after: Math.round(loadavg()[0]! * 100) / 100 };
  if (opts.json) {
    print(JSON.stringify({ publishers: PUBLISHERS, messagesPerPublisher: MESSAGES, window: WINDOW, results, throughputRatio: ratio, loadAverage1m: load }, null, 2));
  } else {
    print(`QoS 1, auth + ACL, ${PUBLISHERS} publishers x ${MESSAGES} messages (window ${WINDOW}), 1 subscriber, loopback, one machine`);
    print('broker                      msg/s   p50 ms  p90 ms  p99 ms  max ms');
    for (const r of results) {
      print(`${r.broker.padEnd(26)} ${String(r.perSecond).padStart(6)}  ${[r.latencyMs.p50, r.latencyMs.p90, r.latencyMs.p99, r.latencyMs.max].map((x) => x.toFixed(1).padStart(6)).join('  ')}`);
    }
    print(`throughput ratio nats cluster / mosquitto: ${ratio}; load average (1 min) ${load.before} before, ${load.after} after`);
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
