/**
 * InfluxDB through its v1 HTTP API (`/write` line protocol, `/query` InfluxQL), served natively by
 * 1.x and as compatibility endpoints by 2.x/3.x: queries and setup with the `influx` package,
 * writes as line protocol encoded here (with that package's escaping) and POSTed with fetch.
 */
import { InfluxDB, escape } from 'influx';
import type { InfluxTarget } from '../config.js';
import { createLineProtocolEncoder } from './line-protocol.js';
import { emptyBucket, RejectedPointsError, sortStats, type CheckpointStats, type SeriesStore, type StatsQuery } from './store.js';

export interface InfluxStoreOptions {
  retentionPolicy: string;
  retentionDuration: string;
  timeoutMs: number;
}

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
  // Writes: line protocol built here (series/line-protocol.ts: the client's per-point escaping was
  // most of its CPU) and POSTed to the same /write endpoint the client uses, no retries (the writer's).
  const encoder = createLineProtocolEncoder();
  const writeUrl = new URL(`${target.protocol}://${target.host}:${target.port}/write`);
  writeUrl.search = new URLSearchParams({ db: target.database, rp, precision: 'n' }).toString();
  const headers: Record<string, string> = { 'content-type': 'text/plain; charset=utf-8' };
  if (target.username !== undefined) headers.authorization = `Basic ${Buffer.from(`${target.username}:${target.password ?? ''}`).toString('base64')}`;

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
      // A point the encoder cannot write (a time that is not integer nanoseconds) is the points' fault.
      let body: string;
      try {
        body = encoder.encode(points);
      } catch (err) {
        throw new RejectedPointsError((err as Error).message.slice(0, 500));
      }
      const res = await fetch(writeUrl, { method: 'POST', body, headers, signal: AbortSignal.timeout(options.timeoutMs) }).catch((err: Error) => {
        // fetch says only "fetch failed"; the cause (ECONNREFUSED, timeout) is what to log.
        const cause = (err.cause as Error | undefined)?.message;
        throw new Error(cause ? `${err.message}: ${cause}` : err.message, { cause: err });
      });
      if (res.ok) {
        // 204 No Content from InfluxDB; anything else is read to the end so the connection is reused.
        if (res.status !== 204) await res.arrayBuffer();
        return;
      }
      const text = (await res.text().catch(() => '')).slice(0, 400);
      // Shaped like the influx client's RequestError (the writer's caller reads `res.statusCode`).
      const error = Object.assign(new Error(`A ${res.status} ${res.statusText} error occurred: ${text}`), { res: { statusCode: res.status } });
      // 1.x does not create databases on write; someone may have dropped ours.
      if (res.status === 404) ready = false;
      // Bad line protocol, field type conflict, partial write, body too large: the points
      // themselves are the problem; the writer splits the batch to find them.
      if (res.status === 400 || res.status === 413) throw new RejectedPointsError(error.message.slice(0, 500));
      throw error;
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
