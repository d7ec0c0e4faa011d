/**
 * QoS 1 publish -> deliver throughput and latency, with authentication and the topic ACL on,
 * against our aedes broker and a real Mosquitto (same users, exported files), in one run.
 *
 *   npm run bench            (in broker/)
 *   node ../scripts/run-ts.mjs bench/throughput.ts [--publishers 4] [--messages 5000] [--window 64] [--json]
 *
 * Each publisher is an edge user sending screening-sized JSON to its own checkpoint's
 * `screening` topic with at most `window` unacknowledged messages; one gateway subscriber
 * (QoS 1, clean session) receives everything. Latency = receive time - send time (one clock:
 * all clients run in this process); each broker runs in its own process. Loopback only.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import mqtt, { type MqttClient } from 'mqtt';
import { startMosquitto } from '@checkpoint/test-support';
import { exportMosquitto, openUserStore } from '../src/index.js';

const { values: opts } = parseArgs({
  options: {
    publishers: { type: 'string', default: '4' },
    messages: { type: 'string', default: '5000' },
    window: { type: 'string', default: '64' },
    json: { type: 'boolean', default: false },
  },
});
const PUBLISHERS = Number(opts.publishers);
const MESSAGES = Number(opts.messages);
const WINDOW = Number(opts.window);
const WARMUP = 500;
const PASSWORD = 'bench-password-1';
const here = fileURLToPath(new URL('.', import.meta.url));

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

async function measure(broker: string, url: string): Promise<Result> {
  const subscriber = await connect(url, 'gateway');
  await subscriber.subscribeAsync('checkpoint/v1/+/+/screening', { qos: 1 });
  const publishers = await Promise.all(Array.from({ length: PUBLISHERS }, (_, i) => connect(url, `edge-${i}`)));
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

async function startOurBroker(dataDir: string): Promise<{ url: string; stop: () => Promise<void> }> {
  const child = spawn(process.execPath, [join(here, '../../scripts/run-ts.mjs'), join(here, 'serve.ts'), dataDir], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
      const m = /PORT (\d+)/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    child.once('exit', (code) => reject(new Error(`broker process exited with ${code}`)));
  });
  return {
    url: `mqtt://127.0.0.1:${port}`,
    stop: () => new Promise((resolve) => (child.once('exit', () => resolve()), child.kill('SIGTERM'))),
  };
}

const dir = mkdtempSync(join(tmpdir(), 'checkpoint-broker-bench-'));
try {
  const store = openUserStore(join(dir, 'users.sqlite'));
  for (let i = 0; i < PUBLISHERS; i++) await store.add({ name: `edge-${i}`, role: 'edge', site: 'bench', checkpoint: `gate-${i}` }, PASSWORD);
  await store.add({ name: 'gateway', role: 'gateway' }, PASSWORD);
  const exported = exportMosquitto(store, join(dir, 'mosquitto'));
  store.close();

  const ours = await startOurBroker(dir);
  const aedesResult = await measure('aedes (checkpoint-broker)', ours.url);
  await ours.stop();

  const mosquitto = await startMosquitto({
    acl: readFileSync(exported.aclFile, 'utf8'),
    extraConfig: `allow_anonymous false\npassword_file ${exported.passwordFile}`,
  });
  const mosquittoResult = await measure('mosquitto', mosquitto.url);
  await mosquitto.stop();

  const results = [aedesResult, mosquittoResult];
  const ratio = Math.round((aedesResult.perSecond / mosquittoResult.perSecond) * 100) / 100;
  if (opts.json) {
    print(JSON.stringify({ publishers: PUBLISHERS, messagesPerPublisher: MESSAGES, window: WINDOW, results, throughputRatio: ratio }, null, 2));
  } else {
    print(`QoS 1, auth + ACL, ${PUBLISHERS} publishers x ${MESSAGES} messages (window ${WINDOW}), 1 subscriber, loopback`);
    print('broker                      msg/s   p50 ms  p90 ms  p99 ms  max ms');
    for (const r of results) {
      print(`${r.broker.padEnd(26)} ${String(r.perSecond).padStart(6)}  ${[r.latencyMs.p50, r.latencyMs.p90, r.latencyMs.p99, r.latencyMs.max].map((x) => x.toFixed(1).padStart(6)).join('  ')}`);
    }
    print(`throughput ratio aedes / mosquitto: ${ratio}`);
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
