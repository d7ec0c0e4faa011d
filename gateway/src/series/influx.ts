/**
 * InfluxDB through its v1 HTTP API (`/write` line protocol, `/query` InfluxQL) with the `influx`
 * package: served natively by 1.x and as compatibility endpoints by 2.x/3.x.
 */
import { InfluxDB, escape, type IPoint } from 'influx';
import type { InfluxTarget } from '../config.js';
import type { SeriesPoint } from './points.js';
import { emptyBucket, RejectedPointsError, sortStats, type CheckpointStats, type SeriesStore, type StatsQuery } from './store.js';

export interface InfluxStoreOptions {
  retentionPolicy: string;
  retentionDuration: string;
  timeoutMs: number;
}

const toIPoint = (p: SeriesPoint): IPoint => ({ measurement: p.measurement, tags: p.tags, fields: p.fields, timestamp: p.timeNs });

export function createInfluxSeriesStore(target: InfluxTarget, options: InfluxStoreOptions): SeriesStore {
  const influx = new InfluxDB({
    host: target.host,
    port: target.port,
    protocol: target.protocol,
    database: target.database,
    ...(target.username !== undefined ? { username: target.username } : {}),
    ...(target.password !== undefined ? { password: target.password } : {}),
    // Our writer owns retries and backoff (from the durable spool); the client must not retry on its own.
    pool: { maxRetries: 0, requestTimeout: options.timeoutMs },
  });
  const rp = options.retentionPolicy;
  let ready = false;

  async function init(): Promise<void> {
    const databases = await influx.getDatabaseNames();
    if (!databases.includes(target.database)) await influx.createDatabase(target.database);
    const policies = await influx.showRetentionPolicies(target.database);
    if (!policies.some((p) => p.name === rp)) {
      await influx.createRetentionPolicy(rp, { database: target.database, duration: options.retentionDuration, replication: 1, isDefault: true });
    }
    ready = true;
  }

  return {
    kind: 'influxdb',
    init,
    async write(points) {
      if (!ready) await init();
      // The client checks each point before sending (a non-numeric time throws): that is the points' fault.
      try {
        for (const p of points) influx.parsePoint(toIPoint(p), { precision: 'n' });
      } catch (err) {
        throw new RejectedPointsError((err as Error).message.slice(0, 500));
      }
      try {
        await influx.writePoints(points.map(toIPoint), { precision: 'n', retentionPolicy: rp });
      } catch (err) {
        // The client's RequestError (HTTP 3xx/4xx) carries the response; 5xx and network errors do not.
        const status = (err as { res?: { statusCode?: number } }).res?.statusCode;
        if (status !== undefined) {
          // 1.x does not create databases on write; someone may have dropped ours.
          if (status === 404) ready = false;
          // Bad line protocol, field type conflict, partial write, body too large: the points
          // themselves are the problem; the writer splits the batch to find them.
          if (status === 400 || status === 413) throw new RejectedPointsError((err as Error).message.slice(0, 500));
        }
        throw err;
      }
    },
    async checkpointStats(q: StatsQuery): Promise<CheckpointStats[]> {
      const where = [`time >= ${q.fromMs}ms`, `time < ${q.toMs}ms`];
      if (q.site) where.push(`"site" = ${escape.stringLit(q.site)}`);
      if (q.checkpoint) where.push(`"checkpoint" = ${escape.stringLit(q.checkpoint)}`);
      const from = `${escape.quoted(rp)}."screening"`;
      const group = `GROUP BY time(${q.intervalMs}ms), "site", "checkpoint"`;
      const [counts, temps] = (await influx.query([
        `SELECT count("id") AS n FROM ${from} WHERE ${where.join(' AND ')} ${group}, "decision" fill(none)`,
        `SELECT count("temperatureC") AS n, percentile("temperatureC", 50) AS p50, percentile("temperatureC", 90) AS p90, ` +
          `percentile("temperatureC", 99) AS p99 FROM ${from} WHERE ${where.join(' AND ')} ${group} fill(none)`,
      ])) as unknown as [Array<Record<string, unknown>>, Array<Record<string, unknown>>];

      const byCheckpoint = new Map<string, CheckpointStats>();
      const bucketOf = (row: Record<string, unknown>) => {
        const site = String(row.site);
        const checkpoint = String(row.checkpoint);
        const key = `${site}/${checkpoint}`;
        let stats = byCheckpoint.get(key);
        if (!stats) byCheckpoint.set(key, (stats = { site, checkpoint, buckets: [] }));
        const startMs = (row.time as Date).getTime();
        let bucket = stats.buckets.find((b) => b.startMs === startMs);
        if (!bucket) stats.buckets.push((bucket = emptyBucket(startMs)));
        return bucket;
      };
      for (const row of counts) {
        const decision = row.decision as keyof ReturnType<typeof emptyBucket>['counts'];
        const bucket = bucketOf(row);
        if (decision in bucket.counts) bucket.counts[decision] += Number(row.n);
      }
      for (const row of temps) {
        const num = (v: unknown) => (typeof v === 'number' ? v : null);
        bucketOf(row).temperatureC = { n: Number(row.n ?? 0), p50: num(row.p50), p90: num(row.p90), p99: num(row.p99) };
      }
      return sortStats([...byCheckpoint.values()]);
    },
    async close() {
      // The influx client holds no connections between requests.
    },
  };
}
