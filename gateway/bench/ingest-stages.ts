/**
 * Where the gateway's CPU goes per screening, stage by stage, each measured alone as CPU time of
 * this process (process.cpuUsage: user + system), so the figures hold on a loaded machine where
 * wall time does not: parse + validate, each SQLite statement of an ingest (in batches of 500 in
 * one transaction, as group commit stores them, on a fresh database each), the whole
 * `ingestScreening`, the metrics, and the series writer (spool read + InfluxDB write: the HTTP
 * client's CPU, not influxd's).
 *
 * Run alone with `node ../scripts/run-ts.mjs bench/ingest-stages.ts` (starts its own influxd) or
 * from bench/ingest.ts, which prints it next to the throughput figures.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkpointTopics, type Screening } from '@checkpoint/protocol';
import { classifyMessage } from '../src/ingest/classify.js';
import { createGatewayMetrics } from '../src/metrics.js';
import { createInfluxSeriesStore } from '../src/series/influx.js';
import { pointProblem, screeningPoint } from '../src/series/points.js';
import { openDatabase, type Db } from '../src/store/db.js';
import { createSqliteDeviceStore } from '../src/store/devices.js';
import { createSqliteEventStore } from '../src/store/events.js';
import { createOperationalStore } from '../src/store/operational.js';
import { createSqliteScreeningStore, summarize } from '../src/store/screenings.js';
import { createSqliteSpoolStore } from '../src/store/spool.js';
import type { InfluxTarget } from '../src/config.js';
import { InfluxDB } from 'influx';
import { makeScreening } from '../test/helpers/world.js';

export interface StageFigure {
  stage: string;
  /** CPU µs per screening now (least of the repetitions). */
  usPerMessage: number;
  /** The same stage as before this change, measured in the same run (when it changed). */
  beforeUs?: number;
}

const BATCH = 500;
/** Each stage runs this often; the least CPU is reported (other processes only ever add to it). */
const REPEAT = 3;

/** CPU µs of `work` per message, least of REPEAT runs; `setUp` runs before each, unmeasured. */
async function cpuPerMessage<T>(n: number, setUp: () => T | Promise<T>, work: (t: T) => void | Promise<void>, tearDown: (t: T) => void = () => undefined): Promise<number> {
  let best = Infinity;
  for (let r = 0; r < REPEAT; r++) {
    const t = await setUp();
    const before = process.cpuUsage();
    await work(t);
    const used = process.cpuUsage(before);
    tearDown(t);
    best = Math.min(best, (used.user + used.system) / n);
  }
  return best;
}

function freshDb(tempStore: 'FILE' | 'MEMORY' = 'MEMORY'): Db {
  const db = openDatabase(mkdtempSync(join(tmpdir(), 'gw-stages-')), { walAutocheckpointPages: 10_000 });
  db.pragma(`temp_store = ${tempStore}`);
  return db;
}

function dropDb(db: Db): void {
  const file = db.name;
  db.close();
  rmSync(join(file, '..'), { recursive: true, force: true });
}

/** `each` over the screenings in batches of 500, one transaction per batch, on a fresh database. */
function inBatches(screenings: Screening[], setUp: (db: Db) => (s: Screening, i: number) => void, tempStore: 'FILE' | 'MEMORY' = 'MEMORY'): Promise<number> {
  return cpuPerMessage(
    screenings.length,
    () => {
      const db = freshDb(tempStore);
      const each = setUp(db);
      const batch = db.transaction((from: number) => {
        for (let i = from; i < Math.min(from + BATCH, screenings.length); i++) each(screenings[i]!, i);
      });
      return { db, batch };
    },
    ({ batch }) => {
      for (let from = 0; from < screenings.length; from += BATCH) batch.immediate(from);
    },
    ({ db }) => dropDb(db),
  );
}

const POLICY = { escalateAfterMs: 120_000, invalidStormCount: 5, invalidStormWindowMs: 60_000 };

export async function measureStages(n: number, influx: InfluxTarget): Promise<StageFigure[]> {
  const screenings = Array.from({ length: n }, (_, i) => makeScreening({ checkpoint: `gate-${(i % 4) + 1}`, trackId: i, decision: i % 20 === 0 ? 'secondary_check' : 'pass' }));
  const messages = screenings.map((s) => ({ topic: checkpointTopics.screening(s), payload: Buffer.from(JSON.stringify(s)) }));
  const now = Date.now();
  const figures: StageFigure[] = [];
  const add = (stage: string, usPerMessage: number, beforeUs?: number) => figures.push({ stage, usPerMessage, ...(beforeUs === undefined ? {} : { beforeUs }) });
  const none = () => undefined;

  add('parse + validate (classifyMessage)', await cpuPerMessage(n, none, () => {
    for (const m of messages) classifyMessage(m.topic, m.payload, now);
  }));
  add('screening row', await inBatches(screenings, (db) => {
    const store = createSqliteScreeningStore(db);
    return (s) => store.insert(s, now);
  }));
  add('device last seen', await inBatches(screenings, (db) => {
    const store = createSqliteDeviceStore(db);
    return (s) => store.seen(s.site, s.checkpoint, now);
  }));
  add('spool row (point built + stored)', await inBatches(screenings, (db) => {
    const store = createSqliteSpoolStore(db);
    return (s) => store.enqueue(screeningPoint(s), now);
  }));
  add('live-feed event row', await inBatches(screenings, (db) => {
    const store = createSqliteEventStore(db);
    return (s) => store.append('screening', summarize(s), now);
  }));
  // As the gateway stores a message: a savepoint of its own inside the batch's transaction.
  const ingestAll = (db: Db) => {
    const store = createOperationalStore(db, POLICY, (() => {
      let id = 0;
      return () => `alert-${++id}`;
    })());
    const savepoint = db.transaction((s: Screening) => store.ingestScreening(s, now));
    return (s: Screening) => savepoint(s);
  };
  add(
    'ingestScreening in a savepoint (all of the above + alerts)',
    await inBatches(screenings, ingestAll, 'MEMORY'),
    // Before: savepoints journaled to a temp file (SQLite's default temp_store).
    await inBatches(screenings, ingestAll, 'FILE'),
  );
  const metrics = createGatewayMetrics({ spoolDepth: () => 0, rejected: () => 0, sseClients: () => 0, mqttConnected: () => true });
  add('metrics (message counter + ingest timer)', await cpuPerMessage(n, none, () => {
    for (let i = 0; i < n; i++) {
      const stop = metrics.ingestSeconds.startTimer();
      metrics.messages.inc({ channel: 'screening', result: 'stored' });
      stop();
    }
  }));

  // The series writer's side: read the spool back, check the points, write them to InfluxDB.
  const points = screenings.map(screeningPoint);
  const spooled = () => {
    const db = freshDb();
    const spool = createSqliteSpoolStore(db);
    db.transaction(() => {
      for (const p of points) spool.enqueue(p, now);
    })();
    return { db, spool };
  };
  add('series: spool read + delete, point checks', await cpuPerMessage(n, spooled, ({ spool }) => {
    for (;;) {
      const rows = spool.head(5000);
      if (rows.length === 0) break;
      rows.filter((r) => pointProblem(r.point) === null);
      spool.done(rows[rows.length - 1]!.seq);
    }
  }, ({ db }) => dropDb(db)));
  const series = createInfluxSeriesStore({ ...influx, database: 'bench_stages' }, { retentionPolicy: 'checkpoint_raw', retentionDuration: '30d', timeoutMs: 30_000 });
  await series.init();
  const client = new InfluxDB({ host: influx.host, port: influx.port, database: 'bench_stages' });
  add(
    'series: InfluxDB write, client side (5000 a request)',
    await cpuPerMessage(n, none, async () => {
      for (let i = 0; i < n; i += 5000) await series.write(points.slice(i, i + 5000));
    }),
    // Before: the influx package's writePoints, after a parsePoint pass over the batch.
    await cpuPerMessage(n, none, async () => {
      for (let i = 0; i < n; i += 5000) {
        const batch = points.slice(i, i + 5000).map((p) => ({ measurement: p.measurement, tags: p.tags, fields: p.fields, timestamp: p.timeNs }));
        for (const p of batch) client.parsePoint(p, { precision: 'n' });
        await client.writePoints(batch, { precision: 'n', retentionPolicy: 'checkpoint_raw' });
      }
    }),
  );
  return figures;
}

/**
 * SQL statements per screening as the gateway stores it (a savepoint per message inside the
 * batch's transaction), counted by wrapping the connection's `prepare` (every store statement) and
 * `transaction` (each nested call runs SAVEPOINT + RELEASE).
 */
export function countStatements(decision: 'pass' | 'secondary_check', n = 100): { perScreening: number; byStatement: Record<string, number> } {
  const db = freshDb();
  const counts: Record<string, number> = {};
  const count = (key: string) => (counts[key] = (counts[key] ?? 0) + 1);
  const prepare = db.prepare.bind(db);
  db.prepare = ((sql: string) => {
    const statement = prepare(sql);
    const key = sql.replace(/\s+/g, ' ').trim().slice(0, 60);
    for (const method of ['run', 'get', 'all'] as const) {
      const original = statement[method].bind(statement) as (...args: unknown[]) => unknown;
      (statement as unknown as Record<string, unknown>)[method] = (...args: unknown[]) => {
        count(key);
        return original(...args);
      };
    }
    return statement;
  }) as typeof db.prepare;
  const transaction = db.transaction.bind(db);
  db.transaction = ((fn: (...args: unknown[]) => unknown) =>
    transaction((...args: unknown[]) => {
      count('SAVEPOINT + RELEASE (a nested transaction call: 2 statements)');
      return fn(...args);
    })) as typeof db.transaction;
  const store = createOperationalStore(db, POLICY, (() => {
    let id = 0;
    return () => `alert-${++id}`;
  })());
  const savepoint = db.transaction((s: Screening) => store.ingestScreening(s, Date.now()));
  const screenings = Array.from({ length: n }, (_, i) => makeScreening({ checkpoint: `gate-${(i % 4) + 1}`, decision }));
  const batch = transaction(() => {
    for (const s of screenings) savepoint(s);
  });
  batch.immediate();
  dropDb(db);
  const byStatement = Object.fromEntries(Object.entries(counts).map(([k, v]) => [k, v / n]));
  const perScreening = Object.entries(byStatement).reduce((sum, [k, v]) => sum + (k.startsWith('SAVEPOINT') ? 2 * v : v), 0);
  return { perScreening, byStatement };
}

export function formatStatementCounts(): string[] {
  return (['pass', 'secondary_check'] as const).flatMap((decision) => {
    const { perScreening, byStatement } = countStatements(decision);
    return [
      `  SQL statements per ${decision} screening: ${perScreening.toFixed(1)} (+ BEGIN/COMMIT once per batch)`,
      ...Object.entries(byStatement).map(([sql, perMessage]) => `    ${perMessage.toFixed(2).padStart(5)} x ${sql}`),
    ];
  });
}

export function formatStages(figures: StageFigure[]): string[] {
  const total = (pick: (f: StageFigure) => number) => figures.filter((f) => !/^(screening row|device|spool row|live-feed)/.test(f.stage)).reduce((sum, f) => sum + pick(f), 0);
  return [
    `  ${'stage'.padEnd(60)} ${'before'.padStart(8)} ${'now'.padStart(8)}  (CPU µs per screening, least of ${REPEAT} runs; before: temp_store FILE, influx package writes)`,
    ...figures.map((f) => `  ${f.stage.padEnd(60)} ${(f.beforeUs ?? f.usPerMessage).toFixed(1).padStart(8)} ${f.usPerMessage.toFixed(1).padStart(8)}`),
    `  ${'total (the rows inside ingestScreening counted once)'.padEnd(60)} ${total((f) => f.beforeUs ?? f.usPerMessage).toFixed(1).padStart(8)} ${total((f) => f.usPerMessage).toFixed(1).padStart(8)}`,
  ];
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { startInfluxd } = await import('@checkpoint/test-support');
  const influxd = await startInfluxd({ database: 'bench' });
  try {
    const n = Number(process.argv[process.argv.indexOf('--screenings') + 1]) || 20_000;
    process.stdout.write(`${formatStatementCounts().join('\n')}\nCPU per screening, stage by stage (${n} screenings, SQLite batches of ${BATCH}):\n${formatStages(await measureStages(n, { host: influxd.host, port: influxd.port, protocol: 'http', database: 'bench' })).join('\n')}\n`);
  } finally {
    await influxd.stop();
  }
}
