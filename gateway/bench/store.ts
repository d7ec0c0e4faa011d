/**
 * The operational store's ingest workflow (src/store/workflows.ts) on SQLite and on PostgreSQL,
 * without MQTT: the same screenings (90% pass, 10% secondary check) through each, one
 * transaction per message, then `--batch` messages per transaction as group commit stores them.
 * SQLite: the gateway's file in a temp dir, one transaction after the other (they are
 * synchronous). PostgreSQL: test-support's startPostgres (a real PostgreSQL 15 in a temp dir),
 * `--inflight` transactions at a time over a pool of as many connections (several gateways' worth
 * of concurrency). SQLite is the baseline of the same run.
 *   npm run bench:store -w gateway -- [--messages 5000] [--inflight 8] [--batch 100]
 */
import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { makeTempDir, startPostgres } from '@checkpoint/test-support';
import type { Screening } from '@checkpoint/protocol';
import { openDatabase } from '../src/store/db.js';
import { createOperationalStore } from '../src/store/operational.js';
import { migratePostgres } from '../src/store/postgres/migrations.js';
import { createPostgresOperationalStore } from '../src/store/postgres/operational.js';
import { makeScreening } from '../test/helpers/world.js';

const { values } = parseArgs({ options: { messages: { type: 'string', default: '5000' }, inflight: { type: 'string', default: '8' }, batch: { type: 'string', default: '100' } } });
const count = Number(values.messages);
const inflight = Number(values.inflight);
const batchSize = Number(values.batch);
const policy = { escalateAfterMs: 60_000, invalidStormCount: 5, invalidStormWindowMs: 60_000 };
let ids = 0;
const newId = () => `a${++ids}`;
const screenings = (): Screening[] =>
  Array.from({ length: count }, (_, i) => makeScreening({ checkpoint: `gate-${i % 16}`, decision: i % 10 === 0 ? 'secondary_check' : 'pass' }));

const out = (line: string) => process.stdout.write(`${line}\n`);

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}
function report(name: string, ms: number, latencies: number[]): number {
  const rate = (count / ms) * 1000;
  // Per transaction: one message, or one batch.
  latencies.sort((a, b) => a - b);
  out(
    `${name.padEnd(34)} ${String(count).padStart(6)} msgs in ${ms.toFixed(0).padStart(6)} ms: ${rate.toFixed(0).padStart(6)} msg/s; per transaction p50 ${percentile(latencies, 50).toFixed(2)} ms, p99 ${percentile(latencies, 99).toFixed(2)} ms`,
  );
  return rate;
}

// SQLite, the baseline.
const db = openDatabase(makeTempDir('bench-store-sqlite'));
const sqlite = createOperationalStore(db, policy, newId);
let batch = screenings();
let latencies: number[] = [];
let start = performance.now();
for (const s of batch) {
  const t = performance.now();
  sqlite.ingestScreening(s, Date.now());
  latencies.push(performance.now() - t);
}
const sqliteRate = report('SQLite, one per transaction', performance.now() - start, latencies);
// As group commit: a batch in one transaction, each message in its own savepoint (nested).
const inOneTransaction = db.transaction((messages: Screening[]) => {
  for (const s of messages) sqlite.ingestScreening(s, Date.now());
});
batch = screenings();
latencies = [];
start = performance.now();
for (let i = 0; i < batch.length; i += batchSize) {
  const t = performance.now();
  inOneTransaction(batch.slice(i, i + batchSize));
  latencies.push(performance.now() - t);
}
const sqliteBatchRate = report(`SQLite, ${batchSize} per transaction`, performance.now() - start, latencies);
db.close();

// PostgreSQL.
const server = await startPostgres();
try {
  const pool = new pg.Pool({ host: server.socketDir, port: server.port, user: server.user, database: server.database, max: inflight });
  await migratePostgres(pool);
  const postgres = createPostgresOperationalStore(pool, policy, newId);
  batch = screenings();
  latencies = [];
  let next = 0;
  start = performance.now();
  await Promise.all(
    Array.from({ length: inflight }, async () => {
      while (next < batch.length) {
        const s = batch[next++]!;
        const t = performance.now();
        await postgres.ingestScreening(s, Date.now());
        latencies.push(performance.now() - t);
      }
    }),
  );
  const pgRate = report(`PostgreSQL, one per transaction, ${inflight} in flight`, performance.now() - start, latencies);

  const batches: Screening[][] = [];
  batch = screenings();
  for (let i = 0; i < batch.length; i += batchSize) batches.push(batch.slice(i, i + batchSize));
  latencies = [];
  next = 0;
  start = performance.now();
  await Promise.all(
    Array.from({ length: inflight }, async () => {
      while (next < batches.length) {
        const messages = batches[next++]!;
        const t = performance.now();
        const result = await postgres.ingestBatch(messages.map((screening) => ({ kind: 'screening' as const, screening, receivedMs: Date.now() })));
        if (result.error || result.outcomes.length !== messages.length) throw new Error(`batch stopped after ${result.outcomes.length}: ${result.error?.message}`);
        latencies.push(performance.now() - t);
      }
    }),
  );
  const pgBatchRate = report(`PostgreSQL, ${batchSize} per transaction, ${inflight} in flight`, performance.now() - start, latencies);
  const stored = Number((await pool.query<{ n: string }>('SELECT count(*) AS n FROM screenings')).rows[0]!.n);
  if (stored !== 2 * count) throw new Error(`PostgreSQL stored ${stored} screenings, expected ${2 * count}`);
  await pool.end();
  out(`PostgreSQL / SQLite: ${(pgRate / sqliteRate).toFixed(2)} one per transaction, ${(pgBatchRate / sqliteBatchRate).toFixed(2)} ${batchSize} per transaction`);
  out(`load average ${loadavg().map((l) => l.toFixed(2)).join(' ')} (2 cores shared)`);
} finally {
  await server.stop();
}
