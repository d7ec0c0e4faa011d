/**
 * QoS 1 publish -> deliver throughput and latency, with authentication, the topic ACL and
 * persistence on, against our aedes broker and a real Mosquitto (same users and rules, exported
 * by `exportMosquitto`), in one run.
 *
 *   npm run bench -w broker
 *   node ../scripts/run-ts.mjs bench/throughput.ts [--publishers 4] [--messages 5000] [--window 64] [--rounds 3] [--clean] [--cpu-prof DIR] [--json]
 *   BENCH_BROKER_NODE_FLAGS='--max-semi-space-size=32' npm run bench -w broker   (node flags for our broker's process)
 *
 * Each publisher is an edge user sending screening-sized JSON to its own checkpoint's
 * `screening` topic with at most `window` unacknowledged messages; one gateway subscriber
 * receives everything, as the gateway does: QoS 1 on a persistent session (clean: false, fixed
 * client id), so both brokers keep its in-flight messages in their persistence (`--clean` for a
 * clean session). Both brokers run in their own process, started once; every round measures both,
 * alternating which goes first, after a warm-up on fresh connections. Latency = receive time -
 * send time, both read from `performance.now()` in this one process (all clients run here).
 * Loopback only. Nothing may be lost: a round fails naming what it missed.
 *
 * A third row (`--reference`, on by default) runs our broker with the same auth and ACL but its
 * sessions and queues in memory only: no PUBACK waits for the disk. It is not a configuration to
 * deploy (a restart loses every queued message); it shows what aedes itself costs, so the ceiling
 * any persistence could reach is measured in the same run.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import mqtt, { type MqttClient } from 'mqtt';
import { startMosquitto } from '@checkpoint/test-support';
import { exportMosquitto, openUserStore } from '../src/index.js';

const { values: opts } = parseArgs({
  allowNegative: true,
  options: {
    publishers: { type: 'string', default: '4' },
    messages: { type: 'string', default: '5000' },
    window: { type: 'string', default: '64' },
    rounds: { type: 'string', default: '3' },
    clean: { type: 'boolean', default: false },
    /** Also measure our broker without persistence (--no-reference to skip). */
    reference: { type: 'boolean', default: true },
    /** Write a V8 CPU profile of our broker's process into this directory (node --cpu-prof). */
    'cpu-prof': { type: 'string' },
    json: { type: 'boolean', default: false },
  },
});
const PUBLISHERS = Number(opts.publishers);
const MESSAGES = Number(opts.messages);
const WINDOW = Number(opts.window);
const ROUNDS = Number(opts.rounds);
const WARMUP_PER_PUBLISHER = 1000;
/** A round with no message for this long has lost some: it fails instead of hanging. */
const STALL_MS = 30_000;
const PASSWORD = 'bench-password-1';
const SUBSCRIBER_ID = 'checkpoint-gateway-bench';
const here = fileURLToPath(new URL('.', import.meta.url));

interface Result {
  broker: string;
  round: number;
  messages: number;
  duplicates: number;
  seconds: number;
  perSecond: number;
  latencyMs: { p50: number; p90: number; p99: number; max: number };
  /** CPU time (user + system) the broker's process used per message, in microseconds. */
  cpuUsPerMessage: number;
  loadAverage: number;
}

interface BrokerUnderTest {
  name: string;
  url: string;
  pid: number;
  stop(): Promise<void>;
}

function connect(url: string, username: string, options: mqtt.IClientOptions = {}): Promise<MqttClient> {
  const client = mqtt.connect(url, { username, password: PASSWORD, reconnectPeriod: 0, clean: true, ...options });
  return new Promise((resolve, reject) => {
    client.once('connect', () => resolve(client));
    client.once('error', reject);
  });
}

const print = (line: string) => process.stdout.write(`${line}\n`);
const percentile = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
const round2 = (x: number) => Math.round(x * 100) / 100;
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const load1 = () => round2(loadavg()[0]!);
/** CPU seconds (user + system) a process has used so far: on a loaded box, a steadier cost figure than wall time. */
const cpuSeconds = (pid: number) => {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (USER_HZ = 100)
};

async function measure(broker: BrokerUnderTest, roundNo: number): Promise<Result> {
  const subscriber = await connect(broker.url, 'gateway', { clean: opts.clean, clientId: SUBSCRIBER_ID });
  await subscriber.subscribeAsync('checkpoint/v1/+/+/screening', { qos: 1 });
  const publishers = await Promise.all(Array.from({ length: PUBLISHERS }, (_, i) => connect(broker.url, `edge-${i}`)));
  const filler = 'x'.repeat(300); // ~ a screening message's size

  /** Sends `count` messages per publisher; resolves when every one has been received. */
  const run = async (count: number, tag: string) => {
    const expected = count * PUBLISHERS;
    const seen = new Set<string>();
    const latencies: number[] = [];
    let duplicates = 0;
    let lastProgress = performance.now();
    let done!: () => void;
    let fail!: (error: Error) => void;
    const all = new Promise<void>((resolve, reject) => ((done = resolve), (fail = reject)));
    const onMessage = (_topic: string, payload: Buffer) => {
      const receivedAt = performance.now();
      const m = JSON.parse(payload.toString()) as { tag: string; p: number; n: number; t: number };
      if (m.tag !== tag) return; // a message of an earlier run redelivered to the persistent session
      const key = `${m.p}/${m.n}`;
      if (seen.has(key)) return void duplicates++;
      seen.add(key);
      latencies.push(receivedAt - m.t);
      lastProgress = receivedAt;
      if (seen.size === expected) done();
    };
    subscriber.on('message', onMessage);
    const watchdog = setInterval(() => {
      if (performance.now() - lastProgress > STALL_MS) fail(new Error(`${broker.name} round ${roundNo}: received ${seen.size} of ${expected} messages, none for ${STALL_MS / 1000} s`));
    }, 1000);
    const start = performance.now();
    try {
      await Promise.all(
        publishers.map(async (client, p) => {
          const topic = `checkpoint/v1/bench/gate-${p}/screening`;
          let inFlight = 0;
          let wake: () => void = () => {};
          for (let n = 0; n < count; n++) {
            while (inFlight >= WINDOW) await new Promise<void>((resolve) => (wake = resolve));
            inFlight++;
            client.publish(topic, JSON.stringify({ tag, p, n, t: performance.now(), filler }), { qos: 1 }, () => {
              inFlight--;
              wake();
            });
          }
        }),
      );
      await all;
    } finally {
      clearInterval(watchdog);
      subscriber.off('message', onMessage);
    }
    const seconds = (performance.now() - start) / 1000;
    return { seconds, latencies, duplicates };
  };

  await run(WARMUP_PER_PUBLISHER, `warmup-${roundNo}`);
  const cpuBefore = cpuSeconds(broker.pid);
  const { seconds, latencies, duplicates } = await run(MESSAGES, `round-${roundNo}`);
  const cpuUsed = cpuSeconds(broker.pid) - cpuBefore;
  await Promise.all([subscriber, ...publishers].map((c) => c.endAsync()));
  latencies.sort((a, b) => a - b);
  if (latencies[0]! < 0) throw new Error(`${broker.name}: negative latency ${latencies[0]} ms: the measurement is wrong`);
  return {
    broker: broker.name,
    round: roundNo,
    messages: latencies.length,
    duplicates,
    seconds: round2(seconds),
    perSecond: Math.round(latencies.length / seconds),
    latencyMs: { p50: round2(percentile(latencies, 50)), p90: round2(percentile(latencies, 90)), p99: round2(percentile(latencies, 99)), max: round2(latencies.at(-1)!) },
    cpuUsPerMessage: Math.round((cpuUsed * 1e6) / latencies.length),
    loadAverage: load1(),
  };
}

const OURS = 'aedes (checkpoint-broker)';
const OURS_IN_MEMORY = 'aedes, memory only (ref)';

async function startOurBroker(dataDir: string, persistence: 'level' | 'memory'): Promise<BrokerUnderTest> {
  const profile = opts['cpu-prof'] && persistence === 'level' ? ['--cpu-prof', '--cpu-prof-dir', opts['cpu-prof']] : [];
  const nodeFlags = (process.env.BENCH_BROKER_NODE_FLAGS ?? '').split(' ').filter(Boolean);
  const child = spawn(process.execPath, [...nodeFlags, ...profile, join(here, '../../scripts/run-ts.mjs'), join(here, 'serve.ts'), dataDir, persistence], { stdio: ['ignore', 'pipe', 'inherit'] });
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
    name: persistence === 'level' ? OURS : OURS_IN_MEMORY,
    url: `mqtt://127.0.0.1:${port}`,
    pid: child.pid!,
    stop: () => new Promise((resolve) => (child.once('exit', () => resolve()), child.kill('SIGTERM'))),
  };
}

const dir = mkdtempSync(join(tmpdir(), 'checkpoint-broker-bench-'));
const brokers: BrokerUnderTest[] = [];
try {
  const store = openUserStore(join(dir, 'users.sqlite'));
  for (let i = 0; i < PUBLISHERS; i++) await store.add({ name: `edge-${i}`, role: 'edge', site: 'bench', checkpoint: `gate-${i}` }, PASSWORD);
  await store.add({ name: 'gateway', role: 'gateway' }, PASSWORD);
  const exported = exportMosquitto(store, join(dir, 'mosquitto'));
  store.close();

  const loadAtStart = load1();
  brokers.push(await startOurBroker(dir, 'level'));
  const mosquitto = await startMosquitto({
    acl: readFileSync(exported.aclFile, 'utf8'),
    persistence: true,
    // The exported config (password file, ACL, packet limit; the ACL file is written by
    // startMosquitto, whose `allow_anonymous true` the exported `false` overrides); and, as aedes does, no cap on
    // messages queued or in flight to a subscriber (Mosquitto drops QoS 1 messages past 1000
    // queued by default, which a bench must not count as delivered or wait for).
    extraConfig: [
      ...readFileSync(exported.configFile, 'utf8').split('\n').filter((line) => !/^(acl_file|persistence)\b/.test(line)),
      'max_queued_messages 0',
      'max_inflight_messages 0',
    ].join('\n'),
  });
  brokers.push({ name: 'mosquitto', url: mosquitto.url, pid: mosquitto.pid, stop: () => mosquitto.stop() });
  if (opts.reference) brokers.push(await startOurBroker(dir, 'memory'));

  // Auth really is on for both: a client without credentials is refused.
  for (const broker of brokers) {
    const anonymous = await connect(broker.url, '', { username: undefined, password: undefined }).then(
      (client) => client.endAsync().then(() => true),
      () => false,
    );
    if (anonymous) throw new Error(`${broker.name} accepted an anonymous client: the bench must run with authentication on`);
  }

  const results: Result[] = [];
  for (let r = 1; r <= ROUNDS; r++) {
    const order = r % 2 === 1 ? brokers : [...brokers].reverse();
    for (const broker of order) results.push(await measure(broker, r));
  }

  const summary = brokers.map((b) => {
    const mine = results.filter((r) => r.broker === b.name);
    return {
      broker: b.name,
      perSecond: median(mine.map((r) => r.perSecond)),
      p99: median(mine.map((r) => r.latencyMs.p99)),
      p50: median(mine.map((r) => r.latencyMs.p50)),
      cpuUsPerMessage: median(mine.map((r) => r.cpuUsPerMessage)),
    };
  });
  const named = (name: string) => summary.find((s) => s.broker === name);
  const aedes = named(OURS)!;
  const mosq = named('mosquitto')!;
  const reference = named(OURS_IN_MEMORY);
  const throughputRatio = round2(aedes.perSecond / mosq.perSecond);
  const p99Ratio = round2(aedes.p99 / mosq.p99);
  const cpuRatio = round2(aedes.cpuUsPerMessage / mosq.cpuUsPerMessage);
  const referenceRatios = reference && {
    throughput: round2(reference.perSecond / mosq.perSecond),
    p99: round2(reference.p99 / mosq.p99),
    cpu: round2(reference.cpuUsPerMessage / mosq.cpuUsPerMessage),
  };
  const loadAtEnd = load1();
  if (opts.json) {
    print(JSON.stringify({ publishers: PUBLISHERS, messagesPerPublisher: MESSAGES, window: WINDOW, rounds: ROUNDS, cleanSession: opts.clean, loadAverage: { start: loadAtStart, end: loadAtEnd }, results, medians: summary, throughputRatio, p99Ratio, cpuRatio, referenceRatios }, null, 2));
  } else {
    print(`QoS 1, auth + ACL + persistence, ${PUBLISHERS} publishers x ${MESSAGES} messages (window ${WINDOW}), 1 subscriber (${opts.clean ? 'clean' : 'persistent'} session), loopback, ${ROUNDS} rounds`);
    print(`load average (1 min): ${loadAtStart} at start, ${loadAtEnd} at end, ${availableParallelism()} cores`);
    print('round  broker                      msg/s   p50 ms  p90 ms  p99 ms  max ms  CPU us/msg  dup  load');
    for (const r of results) {
      print(
        `${String(r.round).padStart(5)}  ${r.broker.padEnd(26)} ${String(r.perSecond).padStart(6)}  ${[r.latencyMs.p50, r.latencyMs.p90, r.latencyMs.p99, r.latencyMs.max].map((x) => x.toFixed(1).padStart(6)).join('  ')}  ${String(r.cpuUsPerMessage).padStart(10)}  ${String(r.duplicates).padStart(3)}  ${r.loadAverage.toFixed(2)}`,
      );
    }
    for (const s of summary) print(`median ${s.broker.padEnd(26)} ${String(s.perSecond).padStart(6)} msg/s, p50 ${s.p50.toFixed(1)} ms, p99 ${s.p99.toFixed(1)} ms, ${s.cpuUsPerMessage} us CPU per message`);
    print(`throughput ratio aedes / mosquitto: ${throughputRatio} (target >= 1.0: ${throughputRatio >= 1 ? 'met' : 'NOT met'})`);
    print(`p99 ratio aedes / mosquitto: ${p99Ratio} (target <= 2.0: ${p99Ratio <= 2 ? 'met' : 'NOT met'})`);
    print(`CPU per message ratio aedes / mosquitto: ${cpuRatio}`);
    if (referenceRatios) {
      print(
        `reference, aedes without persistence / mosquitto: throughput ${referenceRatios.throughput}, p99 ${referenceRatios.p99}, CPU per message ${referenceRatios.cpu} (the ceiling for any persistence under aedes; not a deployable setting)`,
      );
    }
  }
} finally {
  for (const broker of brokers) await broker.stop();
  rmSync(dir, { recursive: true, force: true });
}
