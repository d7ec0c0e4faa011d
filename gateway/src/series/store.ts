/**
 * Where time series go: InfluxDB when configured, else the embedded SQLite store. Both answer
 * the same questions, so the API does not care which one runs.
 */
import type { SeriesPoint } from './points.js';

export interface StatsQuery {
  fromMs: number;
  toMs: number;
  /** Bucket width, ms (a whole number of seconds). */
  intervalMs: number;
  site?: string;
  checkpoint?: string;
}

export interface StatsBucket {
  /** Bucket start, ms; buckets are aligned to the epoch like InfluxQL's GROUP BY time(). */
  startMs: number;
  /** Decisions per kind; `cannot_screen` counts people who walked past unscreened (#13). */
  counts: { pass: number; secondary_check: number; invalid: number; cannot_screen: number };
  /** Over screenings that have a temperature; null when too few for the percentile. */
  temperatureC: { n: number; p50: number | null; p90: number | null; p99: number | null };
}

export interface CheckpointStats {
  site: string;
  checkpoint: string;
  buckets: StatsBucket[];
}

/** Thrown by `write` when the store refuses the points themselves (not worth retrying as is). */
export class RejectedPointsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RejectedPointsError';
  }
}

export interface SeriesStore {
  readonly kind: 'influxdb' | 'sqlite';
  /** Create database and retention policy when missing. May fail (e.g. InfluxDB down); the writer calls it again. */
  init(): Promise<void>;
  /** Write points; resolves once they are durably accepted. Rewriting a point is harmless. */
  write(points: SeriesPoint[]): Promise<void>;
  checkpointStats(query: StatsQuery): Promise<CheckpointStats[]>;
  close(): Promise<void>;
}

/**
 * InfluxQL's `percentile(field, p)` (nearest rank): sort, take element
 * floor(n·p/100 + 0.5) − 1, or nothing when that index is outside the list. The SQLite store
 * uses this so both stores return the same numbers.
 */
export function influxPercentile(sortedAscending: number[], p: number): number | null {
  const i = Math.floor((sortedAscending.length * p) / 100 + 0.5) - 1;
  return i >= 0 && i < sortedAscending.length ? sortedAscending[i]! : null;
}

const UNIT_MS = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;
export const INTERVAL_PATTERN = '^[1-9][0-9]{0,5}[smhd]$';

/** `30s`, `5m`, `1h`, `1d` → ms (the same literal is a valid InfluxQL duration). */
export function parseInterval(text: string): number {
  const match = /^([1-9][0-9]{0,5})([smhd])$/.exec(text);
  if (!match) throw new Error(`interval ${JSON.stringify(text)}: expected a number and s, m, h or d, e.g. 5m`);
  return Number(match[1]) * UNIT_MS[match[2] as keyof typeof UNIT_MS];
}

export function emptyBucket(startMs: number): StatsBucket {
  return { startMs, counts: { pass: 0, secondary_check: 0, invalid: 0, cannot_screen: 0 }, temperatureC: { n: 0, p50: null, p90: null, p99: null } };
}

/** Sorts checkpoints and their buckets, so both stores answer in the same order. */
export function sortStats(stats: CheckpointStats[]): CheckpointStats[] {
  for (const s of stats) s.buckets.sort((a, b) => a.startMs - b.startMs);
  return stats.sort((a, b) => a.site.localeCompare(b.site) || a.checkpoint.localeCompare(b.checkpoint));
}
