/**
 * `npm run bench` (in gateway/): screenings/s from MQTT into InfluxDB through the gateway, against
 * the ceiling of writing the same points straight to the same influxd in batches of 5000, in the
 * same run; and latency: publish -> stored (committed in SQLite, before the PUBACK) and
 * publish -> InfluxDB accepted, p50/p99/max.
 *
 * Real parts: influxd (Debian 1.6), Mosquitto as the broker (see bench/broker-session-check.ts
 * for why not our aedes broker yet), the gateway with its default settings, and 4 edges with 64
 * QoS 1 messages in flight each, in a child process (bench/ingest-publisher.ts) as devices are
 * their own machines. Everything shares this machine: the load average is printed with the figures.
 *
 * Every latency is one clock read twice: Date.now() in the publisher just before the publish, and
 * Date.now() in the gateway process when the batch holding the screening committed / when InfluxDB
 * accepted its point (same machine, same system clock; never the screening's own `ts`, which the
 * test helper spreads a millisecond apart and may run ahead of the clock).
 *
 * Two gateway runs: at capacity (edges as fast as the broker takes them: throughput, against the
 * ceiling), then paced at half the capacity just measured (latency when the gateway keeps up).
 *
 * First it prints where the CPU goes per screening, stage by stage (bench/ingest-stages.ts, CPU time
 * of this process, so it holds on a loaded machine), and with each gateway run the gateway
 * process's CPU per screening: on a shared 2-core machine the throughput is bounded by the CPU
 * share the gateway gets, and the CPU figure says what it would do with a core to itself.
 *
 * Options: --screenings N (default 20000); --rate R (offered screenings/s of the first run;
 * default: as fast as the broker takes them); --inflight M (Mosquitto's max_inflight_messages;
 * default: its own); --batch B (ingest.batchMaxMessages; 1 is one transaction per message, as
 * before group commit); --no-stages skips the stage split (to profile the gateway runs alone);
 * --backend sqlite|postgres|both (default both: the operational store on SQLite, then on a real
 * PostgreSQL started here, each against the same ceiling).
 */
import { fork } from 'node:child_process';
import { loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import { InfluxDB } from 'influx';
import { makeTempDir, startInfluxd, startMosquitto, startPostgres, waitFor, type PostgresServer } from '@checkpoint/test-support';
import { createGateway } from '../src/index.js';
import type { SeriesPoint } from '../src/series/points.js';
import type { Screening } from '@checkpoint/protocol';
import { BROKER_PASSWORD, gatewayConfig } from '../test/helpers/world.js';
import type { PublishJob, PublishReport } from './ingest-publisher.js';
import { formatStages, formatStatementCounts, measureStages } from './ingest-stages.js';

const out = (line = '') => process.stdout.write(`${line}\n`);
const arg = (name: string, fallback: number | null) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : fallback;
};
const N = arg('screenings', 20_000)!;
const RATE = arg('rate', null);

const INFLIGHT = arg('inflight', null);
const BATCH = arg('batch', null);
const backendArg = process.argv.includes('--backend') ? process.argv[process.argv.indexOf('--backend') + 1] : 'both';
if (!['sqlite', 'postgres', 'both'].includes(backendArg ?? '')) throw new Error(`--backend ${backendArg}: expected sqlite, postgres or both`);
const BACKENDS = (backendArg === 'both' ? ['sqlite', 'postgres'] : [backendArg]) as Array<'sqlite' | 'postgres'>;
const CHECKPOINTS = ['gate-1', 'gate-2', 'gate-3', 'gate-4'];
const WINDOW = 64;

const pct = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))]!;
const load = () => loadavg().map((l) => l.toFixed(2)).join(' ');
const summary = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  return { p50: pct(sorted, 50), p99: pct(sorted, 99), min: sorted[0]!, max: sorted[sorted.length - 1]! };
};

/** The edges in their own process; resolves with what it published and when. */
function publish(job: PublishJob): Promise<PublishReport> {
  const here = fileURLToPath(new URL('.', import.meta.url));
  const child = fork(fileURLToPath(new URL('../../scripts/run-ts.mjs', import.meta.url)), [`${here}ingest-publisher.ts`], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  return new Promise((resolve, reject) => {
    child.once('message', (report) => resolve(report as PublishReport));
    child.once('exit', (code) => reject(new Error(`publisher exited with ${code} before reporting`)));
    child.once('spawn', () => child.send(job));
  });
}

const influxd = await startInfluxd({ database: 'bench' });
const users: Record<string, string> = { gw: BROKER_PASSWORD };
const acl = ['user gw', 'topic readwrite checkpoint/v1/#'];
for (const checkpoint of CHECKPOINTS) {
  users[`edge-${checkpoint}`] = BROKER_PASSWORD;
  acl.push(`user edge-${checkpoint}`, `topic write checkpoint/v1/hq/${checkpoint}/#`);
}
const mosquitto = await startMosquitto({
  users,
  acl: acl.join('\n'),
  persistence: true,
  extraConfig: `max_queued_messages 1000000${INFLIGHT === null ? '' : `\nmax_inflight_messages ${INFLIGHT}`}`,
});
interface RunResult {
  rate: number;
  stored: ReturnType<typeof summary>;
  influx: ReturnType<typeof summary>;
  points: SeriesPoint[];
  /** The gateway process's CPU per screening during the run. */
  cpuUs: number;
}

let postgres: PostgresServer | null = null;
let databases = 0;
/** The operational store of one gateway run: SQLite in its fresh data dir, or a fresh PostgreSQL database. */
async function storeConfig(backend: 'sqlite' | 'postgres'): Promise<Record<string, unknown>> {
  if (backend === 'sqlite') return {};
  postgres ??= await startPostgres();
  const name = `bench${++databases}`;
  await postgres.createDatabase(name);
  return { store: { backend: 'postgres', postgres: { url: postgres.url.replace(/\/[^/]*$/, `/${name}`) } } };
}

/** One gateway (fresh data dir) taking `n` screenings from the edges; prints and returns its figures. */
async function throughGateway(backend: 'sqlite' | 'postgres', n: number, ratePerS: number | null, label: string): Promise<RunResult> {
  const storedAt = new Map<string, number>();
  const writtenAt = new Map<string, number>();
  const writtenPoints: SeriesPoint[] = [];
  const batchSizes: number[] = [];
  // The bench's own bookkeeping runs in the gateway's process: read the id from the head of the
  // payload (the publisher's JSON starts with it) rather than parse every payload again.
  const idOf = (payload: Buffer) => /^\{"id":"([^"\\]+)"/.exec(payload.toString('latin1', 0, 80))?.[1] ?? (JSON.parse(payload.toString('utf8')) as Screening).id;
  const gateway = await createGateway(
    { ...gatewayConfig({ dataDir: makeTempDir('gw-bench'), mqttUrl: mosquitto.url, influxUrl: influxd.url }), series: {}, ingest: BATCH === null ? {} : { batchMaxMessages: BATCH }, ...(await storeConfig(backend)) },
    {
      onIngested(messages, atMs) {
        batchSizes.push(messages.length);
        for (const m of messages) if (m.topic.endsWith('/screening')) storedAt.set(idOf(m.payload), atMs);
      },
      onSeriesWritten(points, atMs) {
        for (const p of points) {
          if (p.measurement !== 'screening') continue;
          writtenAt.set(String(p.fields.id), atMs);
          writtenPoints.push(p);
        }
      },
    },
  );
  try {
    await waitFor(() => gateway.mqttConnected(), { what: 'gateway subscribed' });
    const { config } = gateway;
    out(
      `${label} (${backend}): ${n} screenings from ${CHECKPOINTS.length} edges (${WINDOW} QoS 1 in flight each, ${ratePerS ? `offered at ${ratePerS.toFixed(0)}/s` : 'as fast as the broker takes them'}) ` +
        `-> Mosquitto${INFLIGHT === null ? '' : ` (max_inflight_messages ${INFLIGHT})`} -> gateway (group commit <= ${config.ingest.batchMaxMessages} messages / ${config.ingest.batchMaxWaitMs} ms; ` +
        `series batch ${config.series.batchSize}, flush ${config.series.flushIntervalMs} ms) -> influxd`,
    );
    const cpuBefore = process.cpuUsage();
    const report = await publish({ brokerUrl: mosquitto.url, checkpoints: CHECKPOINTS, screenings: n, window: WINDOW, ratePerS });
    await waitFor(() => writtenAt.size >= report.published.length, { what: `${report.published.length} screenings in InfluxDB`, timeoutMs: 600_000, intervalMs: 20 });
    const lastWrite = Math.max(...writtenAt.values());
    const cpu = process.cpuUsage(cpuBefore);
    const cpuUs = (cpu.user + cpu.system) / n;
    const seconds = (lastWrite - report.startedAtMs) / 1000;
    const stored = summary(report.published.map(([id, at]) => storedAt.get(id)! - at));
    const influx = summary(report.published.map(([id, at]) => writtenAt.get(id)! - at));
    const batches = summary(batchSizes);
    const rate = report.published.length / seconds;
    out(`  published in ${((report.finishedAtMs - report.startedAtMs) / 1000).toFixed(2)} s; last point in InfluxDB after ${seconds.toFixed(2)} s: ${rate.toFixed(0)} screenings/s`);
    out(`  gateway process CPU (user + system, bench bookkeeping included): ${cpuUs.toFixed(0)} µs per screening, i.e. ${(1e6 / cpuUs).toFixed(0)} screenings/s if it had one core to itself`);
    out(`  ${batchSizes.length} transactions, messages per transaction p50 ${batches.p50}, p99 ${batches.p99}, max ${batches.max}`);
    out(`  publish -> stored (committed in ${backend}, before PUBACK): p50 ${stored.p50} ms, p99 ${stored.p99} ms, max ${stored.max} ms (min ${stored.min} ms)`);
    out(`  publish -> InfluxDB accepted:                 p50 ${influx.p50} ms, p99 ${influx.p99} ms, max ${influx.max} ms (min ${influx.min} ms)`);
    out(`  load average: ${load()}`);
    if (stored.min < 0 || influx.min < stored.min) throw new Error('impossible latency (negative, or in InfluxDB before stored): the measurement is broken');
    return { rate, stored, influx, points: writtenPoints, cpuUs };
  } finally {
    await gateway.close();
  }
}

try {
  out(`load average at start: ${load()}`);
  if (!process.argv.includes('--no-stages')) {
    out(`CPU per screening, stage by stage (bench/ingest-stages.ts; 20000 screenings, SQLite batches of 500; "before": as before this work, measured now):`);
    for (const line of formatStages(await measureStages(20_000, { protocol: 'http', host: influxd.host, port: influxd.port, database: 'bench' }))) out(line);
    for (const line of formatStatementCounts()) out(line);
  }
  // One ceiling for both backends: the same points straight to the same influxd, measured right
  // after the first capacity run (the points it wrote).
  let directRate = 0;
  const results: Array<{ backend: string; full: RunResult; paced: RunResult }> = [];
  for (const [i, backend] of BACKENDS.entries()) {
    // --- capacity: the edges as fast as the broker takes them (latency here is mostly queueing) --
    const before = i === 0 ? 0 : (((await influxd.influx.query('SELECT count("id") AS n FROM "checkpoint_raw"."screening"')) as unknown as Array<{ n: number }>)[0]?.n ?? 0);
    const full = await throughGateway(backend, N, RATE, 'gateway ingest, capacity');
    const [count] = (await influxd.influx.query('SELECT count("id") AS n FROM "checkpoint_raw"."screening"')) as unknown as Array<{ n: number }>;
    out(`  InfluxQL count ${(count?.n ?? 0) - before} (expected ${N})`);

    if (i === 0) {
      // --- ceiling: the same points straight to the same influxd ----------------------------------
      const direct = new InfluxDB({ host: influxd.host, port: influxd.port, database: 'bench_direct' });
      await direct.createDatabase('bench_direct');
      // Exactly the points the gateway wrote.
      const points = full.points.map((p) => ({ measurement: p.measurement, tags: p.tags, fields: p.fields, timestamp: p.timeNs }));
      const t1 = Date.now();
      for (let j = 0; j < points.length; j += 5000) await direct.writePoints(points.slice(j, j + 5000), { precision: 'n' });
      const directSeconds = (Date.now() - t1) / 1000;
      directRate = points.length / directSeconds;
      out(`ceiling: the same ${points.length} points written straight to influxd in batches of 5000: ${directSeconds.toFixed(2)} s, ${directRate.toFixed(0)} points/s (load average ${load()})`);
    }

    // --- latency at a load the gateway keeps up with: half its capacity just measured ------------
    const paced = await throughGateway(backend, Math.ceil(N / 4), full.rate / 2, 'gateway ingest, paced');
    results.push({ backend, full, paced });
  }

  for (const { backend, full, paced } of results) {
    out('');
    out(`${backend}: ratio gateway / ceiling: ${full.rate.toFixed(0)} / ${directRate.toFixed(0)} = ${(full.rate / directRate).toFixed(3)} (target >= 0.8)`);
    out(`${backend}: gateway process CPU per screening: ${full.cpuUs.toFixed(0)} µs at capacity, ${paced.cpuUs.toFixed(0)} µs paced`);
    out(`${backend}: at capacity: publish -> stored p99 ${full.stored.p99} ms, publish -> InfluxDB p99 ${full.influx.p99} ms`);
    out(`${backend}: at half capacity: publish -> stored p99 ${paced.stored.p99} ms (target < 1000), publish -> InfluxDB p99 ${paced.influx.p99} ms (target < 2000)`);
  }
  out(`load average at the end: ${load()}`);
} finally {
  await mosquitto.stop();
  await influxd.stop();
  await postgres?.stop();
}
