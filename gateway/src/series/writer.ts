/**
 * Moves points from the durable SQLite spool to the series store, oldest first: a full batch at
 * once, a partial one after the flush interval, and what was spooled during a write right after it. The spool is the
 * buffer: a batch leaves it only after the store accepted it, so nothing is lost while InfluxDB
 * is down or failing, and it drains in order when InfluxDB returns. A crash between "accepted"
 * and "deleted" re-writes the batch, which InfluxDB treats as an overwrite of the same points.
 *
 * A batch the store refuses for its content (HTTP 400/413) is split in halves until the bad
 * points are found; those go to `series_rejected` (counted) and the rest is written. Points no
 * store could take (a time that is not a number, a NaN field: `pointProblem`) are set aside the
 * same way before writing, so one bad point never stops the spool.
 */
import type { SpoolRow } from '../store/operational.js';
import { pointProblem, type SeriesPoint } from './points.js';
import { RejectedPointsError, type SeriesStore } from './store.js';

/** The spool: on SQLite answers at once, on PostgreSQL later (every answer is awaited). */
export interface SpoolAccess {
  spoolHead(limit: number): SpoolRow[] | Promise<SpoolRow[]>;
  spoolDone(lastSeq: number): void | Promise<void>;
  spoolReject(seq: number, error: string, atMs: number): void | Promise<void>;
  spoolDepth(): number | Promise<number>;
}

export interface WriterOptions {
  batchSize: number;
  flushIntervalMs: number;
  retryMinMs: number;
  retryMaxMs: number;
}

export interface WriterEvents {
  written?(points: SeriesPoint[], rows: SpoolRow[], atMs: number): void;
  failed?(error: Error, attempt: number, retryInMs: number): void;
  rejected?(row: SpoolRow, error: Error): void;
}

/** Exponential backoff with jitter (pure): attempt 1 → min, doubling up to max. */
export function backoffMs(attempt: number, minMs: number, maxMs: number, random: () => number = Math.random): number {
  const base = Math.min(maxMs, minMs * 2 ** Math.max(0, attempt - 1));
  return Math.round(base * (0.75 + random() * 0.5));
}

export class SpoolWriter {
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  private stopped = false;
  private failures = 0;
  private retryAt = 0;
  private pending = 0;

  constructor(
    private readonly spool: SpoolAccess,
    private readonly store: SeriesStore,
    private readonly options: WriterOptions,
    private readonly events: WriterEvents = {},
    private readonly now: () => number = Date.now,
  ) {}

  /** Starts writing (again, after `stop`: a gateway that becomes leader drains the shared spool). */
  start(): void {
    this.stopped = false;
    const depth = this.spool.spoolDepth();
    if (depth instanceof Promise) {
      // Until the depth is known, a first round soon finds out what is there.
      depth.then(
        (n) => {
          this.pending += n;
          this.schedule(n > 0 ? 0 : this.options.flushIntervalMs);
        },
        () => this.schedule(0),
      );
      return;
    }
    this.pending = depth;
    this.schedule(this.pending > 0 ? 0 : this.options.flushIntervalMs);
  }

  /** Ingest queued `n` more points: a full batch is written at once, a partial one after the interval. */
  notify(n = 1): void {
    this.pending += n;
    if (this.pending >= this.options.batchSize && !this.running && this.now() >= this.retryAt) this.schedule(0);
  }

  /** True while a failed store is being retried. */
  get failing(): boolean {
    return this.failures > 0;
  }

  private schedule(delayMs: number): void {
    if (this.stopped) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = null;
      this.running = this.drain().finally(() => {
        this.running = null;
      });
    }, delayMs);
  }

  /** Write batches until the spool is empty or the store fails; then wait for the next round. */
  private async drain(): Promise<void> {
    try {
      let wrote = false;
      for (;;) {
        if (this.stopped) return;
        const rows = await this.spool.spoolHead(this.options.batchSize);
        this.pending = Math.max(0, this.pending - rows.length);
        if (rows.length === 0) {
          this.pending = 0;
          break;
        }
        await this.writeRows(rows);
        wrote = true;
        this.failures = 0;
        this.retryAt = 0;
        if (rows.length < this.options.batchSize) break;
      }
      // Points spooled while this round wrote go at once, as one batch (as group commit gathers
      // messages): under load the writer keeps pace with ingest instead of waiting out the
      // interval with a batch already there; when ingest is idle, nothing changes.
      this.schedule(this.pending >= this.options.batchSize || (wrote && this.pending > 0) ? 0 : this.options.flushIntervalMs);
    } catch (err) {
      this.failures++;
      const delay = backoffMs(this.failures, this.options.retryMinMs, this.options.retryMaxMs);
      this.retryAt = this.now() + delay;
      this.events.failed?.(err as Error, this.failures, delay);
      this.schedule(delay);
    }
  }

  private async writeRows(all: SpoolRow[]): Promise<void> {
    const rows: SpoolRow[] = [];
    for (const row of all) {
      const problem = pointProblem(row.point);
      if (problem === null) rows.push(row);
      else await this.reject(row, new RejectedPointsError(problem));
    }
    if (rows.length === 0) return;
    try {
      const points = rows.map((r) => r.point);
      await this.store.write(points);
      await this.spool.spoolDone(rows[rows.length - 1]!.seq);
      this.events.written?.(points, rows, this.now());
    } catch (err) {
      if (!(err instanceof RejectedPointsError)) throw err;
      if (rows.length === 1) {
        await this.reject(rows[0]!, err);
        return;
      }
      const half = Math.ceil(rows.length / 2);
      await this.writeRows(rows.slice(0, half));
      await this.writeRows(rows.slice(half));
    }
  }

  private async reject(row: SpoolRow, err: Error): Promise<void> {
    await this.spool.spoolReject(row.seq, err.message, this.now());
    this.events.rejected?.(row, err);
  }

  /** Stop; with `flush`, first try once to write what is spooled (it stays spooled if that fails). */
  async stop({ flush = true } = {}): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.running;
    if (flush && !this.failing) await this.drain().catch(() => undefined);
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }
}
