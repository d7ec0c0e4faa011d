/**
 * Time series in the embedded SQLite file, for sites without InfluxDB. Same semantics as
 * InfluxDB where it matters: one point per (measurement, series, time) — a rewrite replaces —
 * and the same statistics (buckets aligned to the epoch, InfluxQL's percentile).
 */
import type { Db } from '../store/db.js';
import type { SeriesPoint } from './points.js';
import { emptyBucket, influxPercentile, RejectedPointsError, sortStats, type CheckpointStats, type SeriesStore, type StatsBucket, type StatsQuery } from './store.js';

const seriesKey = (tags: Record<string, string>) =>
  Object.keys(tags)
    .sort()
    .map((k) => `${k}=${tags[k]}`)
    .join(',');

export function createSqliteSeriesStore(db: Db): SeriesStore {
  const insert = db.prepare(
    `INSERT OR REPLACE INTO series_points (measurement, series_key, time_ns, ts_ms, site, checkpoint, tags, fields)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
  );
  const writeAll = db.transaction((points: SeriesPoint[]) => {
    for (const p of points) {
      const tsMs = Number(p.timeNs.slice(0, -6) || '0');
      insert.run(p.measurement, seriesKey(p.tags), p.timeNs, tsMs, p.tags.site ?? null, p.tags.checkpoint ?? null, JSON.stringify(p.tags), JSON.stringify(p.fields));
    }
  });

  return {
    kind: 'sqlite',
    async init() {},
    async write(points) {
      try {
        writeAll(points);
      } catch (err) {
        // A constraint or a value SQLite cannot bind is the points' fault (the writer isolates them);
        // busy, full or I/O errors are the store's (retried from the spool).
        const code = (err as { code?: string }).code ?? '';
        if (code.startsWith('SQLITE_CONSTRAINT') || err instanceof TypeError || err instanceof RangeError) throw new RejectedPointsError((err as Error).message);
        throw err;
      }
    },
    async checkpointStats(q: StatsQuery): Promise<CheckpointStats[]> {
      const where = [`measurement = 'screening'`, 'ts_ms >= ?', 'ts_ms < ?'];
      const args: Array<string | number> = [q.fromMs, q.toMs];
      if (q.site) {
        where.push('site = ?');
        args.push(q.site);
      }
      if (q.checkpoint) {
        where.push('checkpoint = ?');
        args.push(q.checkpoint);
      }
      const rows = db
        .prepare<Array<string | number>, { ts_ms: number; site: string; checkpoint: string; decision: string; t: number | null }>(
          `SELECT ts_ms, site, checkpoint, json_extract(tags, '$.decision') AS decision, json_extract(fields, '$.temperatureC') AS t
           FROM series_points WHERE ${where.join(' AND ')}`,
        )
        .all(...args);
      const byCheckpoint = new Map<string, { stats: CheckpointStats; buckets: Map<number, { bucket: StatsBucket; temps: number[] }> }>();
      for (const r of rows) {
        const key = `${r.site}/${r.checkpoint}`;
        let entry = byCheckpoint.get(key);
        if (!entry) byCheckpoint.set(key, (entry = { stats: { site: r.site, checkpoint: r.checkpoint, buckets: [] }, buckets: new Map() }));
        const startMs = Math.floor(r.ts_ms / q.intervalMs) * q.intervalMs;
        let b = entry.buckets.get(startMs);
        if (!b) entry.buckets.set(startMs, (b = { bucket: emptyBucket(startMs), temps: [] }));
        if (r.decision in b.bucket.counts) b.bucket.counts[r.decision as keyof StatsBucket['counts']]++;
        if (typeof r.t === 'number') b.temps.push(r.t);
      }
      const out: CheckpointStats[] = [];
      for (const { stats, buckets } of byCheckpoint.values()) {
        for (const { bucket, temps } of buckets.values()) {
          temps.sort((a, b) => a - b);
          bucket.temperatureC = { n: temps.length, p50: influxPercentile(temps, 50), p90: influxPercentile(temps, 90), p99: influxPercentile(temps, 99) };
          stats.buckets.push(bucket);
        }
        out.push(stats);
      }
      return sortStats(out);
    },
    async close() {},
  };
}
