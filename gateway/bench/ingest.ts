/**
 * `npm run bench` (in gateway/): sustained screenings/s from MQTT into InfluxDB through the
 * gateway, and ingest latency (edge publish -> InfluxDB accepted the point) p50/p99, against the
 * ceiling of writing the same points straight to the same influxd in batches of 5000, same run.
 *
 * Real parts: influxd (Debian 1.6), Mosquitto as the broker (see bench/broker-session-check.ts
 * for why not our aedes broker yet), the gateway with its default batch settings, 4 edge
 * publishers with 64 QoS 1 messages in flight each. Everything shares this 2-core machine.
 * Options: --screenings N (default 20000).
 */
import { InfluxDB } from 'influx';
import { checkpointTopics, type Screening } from '@checkpoint/protocol';
import { makeTempDir, startInfluxd, waitFor } from '@checkpoint/test-support';
import { createGateway } from '../src/index.js';
import { screeningPoint } from '../src/series/points.js';
import { connectEdge, gatewayConfig, makeScreening, startTestMosquitto } from '../test/helpers/world.js';

const out = (line = '') => process.stdout.write(`${line}\n`);
const arg = (name: string, fallback: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : fallback;
};
const N = arg('screenings', 20_000);
const CHECKPOINTS = ['gate-1', 'gate-2', 'gate-3', 'gate-4'];
const WINDOW = 64;

const pct = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))]!;

const influxd = await startInfluxd({ database: 'bench' });
const broker = await startTestMosquitto(CHECKPOINTS);
try {
  // --- through the gateway ------------------------------------------------------------------
  const latencies: number[] = [];
  let written = 0;
  let lastWriteAt = 0;
  const gateway = await createGateway(
    { ...gatewayConfig({ dataDir: makeTempDir('gw-bench'), mqttUrl: broker.url, influxUrl: influxd.url }), series: {} },
    {
      onSeriesWritten(points, atMs) {
        for (const p of points) {
          if (p.measurement !== 'screening') continue;
          written++;
          latencies.push(atMs - Number(p.timeNs.slice(0, -6)));
        }
        lastWriteAt = atMs;
      },
    },
  );
  await waitFor(() => gateway.mqttConnected(), { what: 'gateway subscribed' });
  const edges = await Promise.all(CHECKPOINTS.map((c) => connectEdge(broker.url, c)));
  const published: Screening[] = [];
  const perEdge = Math.ceil(N / edges.length);
  out(`gateway ingest: ${N} screenings from ${edges.length} edges (${WINDOW} QoS 1 in flight each) -> gateway (batch ${gateway.config.series.batchSize}, flush ${gateway.config.series.flushIntervalMs} ms) -> influxd`);
  const t0 = Date.now();
  await Promise.all(
    edges.map(async (edge, e) => {
      let sent = 0;
      const worker = async () => {
        while (sent < perEdge && published.length < N) {
          sent++;
          const s = makeScreening({ checkpoint: CHECKPOINTS[e]!, trackId: sent, decision: sent % 20 === 0 ? 'secondary_check' : 'pass' });
          published.push(s);
          await edge.publishAsync(checkpointTopics.screening(s), JSON.stringify(s), { qos: 1 });
        }
      };
      await Promise.all(Array.from({ length: WINDOW }, worker));
    }),
  );
  const publishedAt = Date.now();
  await waitFor(() => written >= published.length, { what: `${published.length} screenings in InfluxDB`, timeoutMs: 600_000, intervalMs: 20 });
  const gatewaySeconds = (lastWriteAt - t0) / 1000;
  const [count] = (await influxd.influx.query('SELECT count("id") AS n FROM "checkpoint_raw"."screening"')) as unknown as Array<{ n: number }>;
  latencies.sort((a, b) => a - b);
  const gatewayRate = published.length / gatewaySeconds;
  out(`  published in ${((publishedAt - t0) / 1000).toFixed(2)} s; last point in InfluxDB after ${gatewaySeconds.toFixed(2)} s; InfluxQL count ${count?.n}`);
  out(`  sustained: ${gatewayRate.toFixed(0)} screenings/s`);
  out(`  ingest latency (publish -> InfluxDB accepted): p50 ${pct(latencies, 50)} ms, p99 ${pct(latencies, 99)} ms, max ${latencies[latencies.length - 1]} ms`);
  await Promise.all(edges.map((e) => e.endAsync()));
  await gateway.close();

  // --- ceiling: the same points straight to the same influxd ----------------------------------
  const direct = new InfluxDB({ host: influxd.host, port: influxd.port, database: 'bench_direct' });
  await direct.createDatabase('bench_direct');
  const points = published.map(screeningPoint).map((p) => ({ measurement: p.measurement, tags: p.tags, fields: p.fields, timestamp: p.timeNs }));
  const t1 = Date.now();
  for (let i = 0; i < points.length; i += 5000) await direct.writePoints(points.slice(i, i + 5000), { precision: 'n' });
  const directSeconds = (Date.now() - t1) / 1000;
  const directRate = points.length / directSeconds;
  out(`ceiling: the same ${points.length} points written straight to influxd in batches of 5000: ${directSeconds.toFixed(2)} s, ${directRate.toFixed(0)} points/s`);
  out(`ratio gateway / ceiling: ${(gatewayRate / directRate).toFixed(3)}`);
} finally {
  await broker.close();
  await influxd.stop();
}
