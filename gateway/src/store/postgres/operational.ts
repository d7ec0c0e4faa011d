/**
 * The operational store on PostgreSQL: the same workflows as on SQLite (../workflows.ts), each in
 * one PostgreSQL transaction on one client of the pool, so a message is stored whole — and may be
 * acknowledged to the broker — or not at all. Several gateways may write at once: a screening id
 * is stored once (the second insert waits for the first to commit, then finds it). Every
 * transaction that writes a checkpoint's device row or alerts (ingest, acknowledgement, the
 * periodic check) first takes transaction-level advisory locks on those checkpoints, all at once
 * in one order, so alert decisions (storms, escalations, acknowledgements) never race and
 * transactions touching several checkpoints (group commit's batches) never deadlock on their rows.
 */
import type { CheckpointState, Screening, Telemetry } from '@checkpoint/protocol';
import type { Pool } from 'pg';
import type { Alert, AlertPolicy } from '../../alerts.js';
import type { ReplacedTimestamp } from '../../ingest/classify.js';
import { alertView } from '../alerts.js';
import { runAsync, type Workflow } from '../backend.js';
import type { OperationalStore } from '../operational.js';
import * as workflows from '../workflows.js';
import type { IngestOutcome, WorkflowStores } from '../workflows.js';
import { createPostgresAlertStore } from './alerts.js';
import { createPostgresAuditStore } from './audit.js';
import { createPostgresDeviceStore } from './devices.js';
import { createPostgresEventStore } from './events.js';
import { createPostgresFailedMessageStore } from './failed-messages.js';
import { createPostgresFleetStore } from './fleet.js';
import { createPostgresScreeningStore } from './screenings.js';
import { createPostgresSnapshotStore } from './snapshots.js';
import { createPostgresSpoolStore } from './spool.js';
import { createPostgresUserStore } from './users.js';
import { ingestRun, inRun, type RunItem } from './ingest-run.js';
import { inTransaction, type Queryable } from './values.js';

/** One message for `ingestBatch`. */
export type IngestItem =
  | { kind: 'screening'; screening: Screening; receivedMs: number; tsReplaced?: ReplacedTimestamp[] }
  | { kind: 'state'; state: CheckpointState; receivedMs: number; tsReplaced?: ReplacedTimestamp[] }
  | { kind: 'telemetry'; telemetry: Telemetry; receivedMs: number; tsReplaced?: ReplacedTimestamp[] };

export interface BatchOutcome {
  /** The outcomes of the first messages, committed; `error` says why the next one failed (not stored; the rest not tried). */
  outcomes: IngestOutcome[];
  error?: Error;
}

/**
 * The operational store's interface on a server database: as ../operational.ts, every answer
 * later, plus group commit's batch.
 */
export interface AsyncOperationalStore extends OperationalStore<'async'> {
  /**
   * Group commit's contract (../../ingest/group-commit.ts) on PostgreSQL: the messages in order in
   * one transaction (a run of passing screenings and telemetry in a few statements: ingest-run.ts);
   * the first that fails is rolled back alone and ends the batch, the ones before it commit. Throws
   * when the transaction itself failed (nothing stored). Savepoints per message and run are taken
   * only when storing the batch again after a failure rolled it back.
   */
  ingestBatch(items: readonly IngestItem[]): Promise<BatchOutcome>;
}

/** The namespace of checkpoint locks (two-int advisory locks: apart from the bigint ones). */
const CHECKPOINT_LOCKS = 0x636b6370; // "ckcp"

/** A checkpoint's lock key: FNV-1a of "site/checkpoint", as a signed 32-bit integer. */
export function checkpointLockKey(site: string, checkpoint: string): number {
  let hash = 0x811c9dc5;
  for (const byte of Buffer.from(`${site}/${checkpoint}`)) hash = Math.imul(hash ^ byte, 0x01000193);
  return hash | 0;
}

/**
 * Locks these checkpoints until the transaction ends, in ascending key order (unnest scans the
 * array in order), so that two transactions never wait for each other's locks in a cycle. One
 * call per transaction, before anything else: a later call could break the order.
 */
async function lockCheckpoints(tx: Queryable, places: Iterable<{ site: string; checkpoint: string }>): Promise<Set<number>> {
  const keys = new Set<number>();
  for (const p of places) keys.add(checkpointLockKey(p.site, p.checkpoint));
  if (keys.size) await tx.query('SELECT count(pg_advisory_xact_lock($1::int4, k)) FROM unnest($2::int4[]) AS k', [CHECKPOINT_LOCKS, [...keys].sort((a, b) => a - b)]);
  return keys;
}

function storesOn(q: Queryable): WorkflowStores<'async'> {
  const users = createPostgresUserStore(q);
  const fleet = createPostgresFleetStore(q);
  return {
    screenings: createPostgresScreeningStore(q),
    alerts: createPostgresAlertStore(q),
    devices: createPostgresDeviceStore(q),
    snapshots: createPostgresSnapshotStore(q),
    audit: createPostgresAuditStore(q),
    events: createPostgresEventStore(q),
    spool: createPostgresSpoolStore(q),
    failed: createPostgresFailedMessageStore(q),
    pruneSessions: (nowMs) => users.pruneSessions(nowMs),
    deleteFinishedTasksBefore: (ms) => fleet.deleteFinishedBefore(ms),
    // Without InfluxDB the series stay in SQLite: a PostgreSQL gateway writes them to InfluxDB.
    deleteSeriesBefore: async () => 0,
  };
}

export function createPostgresOperationalStore(pool: Pool, policy: AlertPolicy, newId: () => string): AsyncOperationalStore {
  const read = storesOn(pool);
  const ackListeners = new Set<(alert: Alert, atMs: number) => void | Promise<void>>();
  /** Runs a workflow in one transaction, after locking `places` (see lockCheckpoints). */
  const transact = <T>(places: Array<{ site: string; checkpoint: string }>, workflow: (st: WorkflowStores, locked: Set<number>) => Workflow<T>): Promise<T> =>
    inTransaction(pool, async (tx) => {
      const locked = await lockCheckpoints(tx, places);
      return runAsync(workflow(storesOn(tx), locked));
    });
  const placeOf = (item: IngestItem) => (item.kind === 'screening' ? item.screening : item.kind === 'state' ? item.state : item.telemetry);
  const workflowOf = (st: WorkflowStores, item: IngestItem): Workflow<IngestOutcome> => {
    switch (item.kind) {
      case 'screening':
        return workflows.ingestScreening(st, policy, newId, item.screening, item.receivedMs, item.tsReplaced);
      case 'state':
        return workflows.ingestState(st, newId, item.state, item.receivedMs, item.tsReplaced);
      case 'telemetry':
        return workflows.ingestTelemetry(st, item.telemetry, item.receivedMs, item.tsReplaced);
    }
  };

  /** The batch in order as runs (consecutive messages that need no alert decision: a few statements for all of them, ingest-run.ts) and single messages. */
  function* runsAndSingles(items: readonly IngestItem[]): Generator<{ run: RunItem[] } | { single: IngestItem }> {
    for (let i = 0; i < items.length; ) {
      let end = i;
      while (end < items.length && inRun(items[end]!)) end++;
      if (end - i > 1) {
        yield { run: items.slice(i, end) as RunItem[] };
        i = end;
      } else {
        yield { single: items[i]! };
        i += 1;
      }
    }
  }

  /** The batch with a savepoint per run and per message: the first that fails is rolled back alone and ends the batch. */
  const ingestBatchInSavepoints = (items: readonly IngestItem[]): Promise<BatchOutcome> =>
    inTransaction(pool, async (tx) => {
      const st = storesOn(tx);
      const outcomes: IngestOutcome[] = [];
      await lockCheckpoints(tx, items.map(placeOf));
      for (const part of runsAndSingles(items)) {
        if ('run' in part) {
          try {
            outcomes.push(...(await inTransaction(tx, (t) => ingestRun(t, part.run))));
            continue;
          } catch {
            // Rolled back whole: the same messages one by one find the one that fails, and keep the ones before it.
          }
        }
        for (const item of 'run' in part ? part.run : [part.single]) {
          try {
            outcomes.push(await inTransaction(tx, () => runAsync(workflowOf(st, item))));
          } catch (error) {
            return { outcomes, error: error as Error };
          }
        }
      }
      return { outcomes };
    });

  return {
    async ingestBatch(items) {
      // First without savepoints (two round trips less per run and per message): any failure rolls
      // the whole batch back, and it is stored again the careful way above. Failures are rare.
      try {
        return await inTransaction(pool, async (tx) => {
          const st = storesOn(tx);
          const outcomes: IngestOutcome[] = [];
          await lockCheckpoints(tx, items.map(placeOf));
          for (const part of runsAndSingles(items)) {
            if ('run' in part) outcomes.push(...(await ingestRun(tx, part.run)));
            else outcomes.push(await runAsync(workflowOf(st, part.single)));
          }
          return { outcomes };
        });
      } catch {
        return ingestBatchInSavepoints(items);
      }
    },

    ingestScreening: (s, receivedMs, tsReplaced) => transact([s], (st) => workflows.ingestScreening(st, policy, newId, s, receivedMs, tsReplaced)),
    ingestState: (state, receivedMs, tsReplaced) => transact([state], (st) => workflows.ingestState(st, newId, state, receivedMs, tsReplaced)),
    ingestTelemetry: (t, receivedMs, tsReplaced) => transact([t], (st) => workflows.ingestTelemetry(st, t, receivedMs, tsReplaced)),
    ingestSnapshot: async (where, screeningId, jpeg, receivedMs) => ({ stored: await read.snapshots.insert(where, screeningId, jpeg, receivedMs), alertChanges: [] }),
    async acknowledgeAlert(id, ack, nowMs) {
      // Its checkpoint is known once the alert is read; the workflow reads it again under the lock.
      const alert = await read.alerts.get(id);
      const result = await transact(alert ? [alert] : [], (st) => workflows.acknowledgeAlert(st, id, ack, nowMs));
      // After the commit (not inside it, as on SQLite): a listener's own writes are its own transaction.
      if (result.ok) for (const listener of ackListeners) await listener(result.change.alert, nowMs);
      return result;
    },
    onAcknowledged(listener) {
      ackListeners.add(listener);
      return () => ackListeners.delete(listener);
    },
    async runPeriodic(nowMs) {
      // The checkpoints of the alerts active now; one that became active since waits for the next run.
      const active = await read.alerts.active();
      return transact(active, (st, locked) => workflows.runPeriodic(st, policy, nowMs, (a) => locked.has(checkpointLockKey(a.site, a.checkpoint))));
    },
    // Deletes only rows no workflow writes (closed alerts, old screenings, events, points): no locks.
    retention: (nowMs, p) => transact([], (st) => workflows.retention(st, nowMs, p)),
    audit: (atMs, actor, action, target, detail = null) => read.audit.append(atMs, actor, action, target, detail),
    setAside: (topic, payload, error, atMs) => read.failed.add(topic, payload, error, atMs),

    async alert(id) {
      const alert = await read.alerts.get(id);
      return alert ? alertView(alert, alert.screeningId ? await read.screenings.summary(alert.screeningId) : null) : null;
    },
    async alerts(f) {
      const list = await read.alerts.list(f);
      return Promise.all(list.map(async (a) => alertView(a, a.screeningId ? await read.screenings.summary(a.screeningId) : null)));
    },
    screenings: (f) => read.screenings.list(f),
    devices: () => read.devices.list(),
    snapshot: (screeningId) => read.snapshots.get(screeningId),
    auditLog: (limit, beforeSeq) => read.audit.list(limit, beforeSeq),
    eventsAfter: (seq, limit) => read.events.after(seq, limit),
    eventRange: () => read.events.range(),
    spoolHead: (limit) => read.spool.head(limit),
    spoolDone: (lastSeq) => read.spool.done(lastSeq),
    spoolReject: (seq, error, atMs) => read.spool.reject(seq, error, atMs),
    spoolDepth: () => read.spool.depth(),
    rejectedCount: () => read.spool.rejectedCount(),
  };
}
