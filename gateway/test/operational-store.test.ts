/**
 * The ingest, alert and retention workflows (src/store/workflows.ts) through the operational store
 * on both backends: SQLite (operational.ts, a temp file) and PostgreSQL (postgres/operational.ts,
 * a real PostgreSQL 15 from test-support). The same assertions on both: a message is stored whole
 * or not at all, duplicates change nothing, acknowledgement, escalation and retention. On
 * PostgreSQL also two stores on one database (two gateways) ingesting at once.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Screening, Telemetry } from '@checkpoint/protocol';
import { makeTempDir, startPostgres, type PostgresServer } from '@checkpoint/test-support';
import type { AlertPolicy } from '../src/alerts.js';
import { createSqliteAlertStore } from '../src/store/alerts.js';
import { openDatabase } from '../src/store/db.js';
import { createOperationalStore, type OperationalStore } from '../src/store/operational.js';
import { createPostgresAlertStore } from '../src/store/postgres/alerts.js';
import { migratePostgres } from '../src/store/postgres/migrations.js';
import { createPostgresOperationalStore, type AsyncOperationalStore, type IngestItem } from '../src/store/postgres/operational.js';
import { makeScreening } from './helpers/world.js';

const POLICY: AlertPolicy = { escalateAfterMs: 60_000, invalidStormCount: 3, invalidStormWindowMs: 60_000 };
let ids = 0;
const newId = () => `alert-${String(++ids).padStart(6, '0')}`;

interface World {
  store: OperationalStore | AsyncOperationalStore;
  /** Saves an alert directly (to make a later step of a workflow fail). */
  saveAlert(alert: Parameters<ReturnType<typeof createSqliteAlertStore>['save']>[0]): unknown;
  close(): Promise<void> | void;
}

let server: PostgresServer;
let schemas = 0;
beforeAll(async () => {
  server = await startPostgres();
}, 90_000);
afterAll(async () => {
  await server?.stop();
});

async function pgPool(schema: string): Promise<pg.Pool> {
  const conn = { host: server.socketDir, port: server.port, user: server.user, database: server.database };
  const admin = new pg.Client(conn);
  await admin.connect();
  await admin.query(`CREATE SCHEMA IF NOT EXISTS ${schema}`);
  await admin.end();
  const pool = new pg.Pool({ ...conn, max: 4, options: `-c search_path=${schema}` });
  await migratePostgres(pool);
  return pool;
}

const backends: Array<[string, () => Promise<World>]> = [
  [
    'SQLite',
    async () => {
      const db = openDatabase(makeTempDir('gw-operational'));
      const alerts = createSqliteAlertStore(db);
      return { store: createOperationalStore(db, POLICY, newId), saveAlert: (a) => alerts.save(a), close: () => db.close() };
    },
  ],
  [
    'PostgreSQL',
    async () => {
      const pool = await pgPool(`operational_${++schemas}`);
      const alerts = createPostgresAlertStore(pool);
      return { store: createPostgresOperationalStore(pool, POLICY, newId), saveAlert: (a) => alerts.save(a), close: () => pool.end() };
    },
  ],
];

describe.each(backends)('operational workflows (%s)', (_name, make) => {
  it('stores a screening with its point, events, alert and audit row; a duplicate changes nothing', async () => {
    const w = await make();
    try {
      const s = makeScreening({ decision: 'secondary_check' });
      const first = await w.store.ingestScreening(s, 1_000);
      expect(first.stored).toBe(true);
      expect(first.alertChanges.map((c) => [c.action, c.alert.kind])).toEqual([['opened', 'screening']]);
      expect(await w.store.ingestScreening(s, 2_000)).toEqual({ stored: false, alertChanges: [] });
      expect((await w.store.screenings({ limit: 10 })).map((x) => x.id)).toEqual([s.id]);
      expect((await w.store.eventsAfter(0, 10)).map((e) => e.type)).toEqual(['screening', 'alert']);
      expect(await w.store.spoolDepth()).toBe(1);
      const [alert] = await w.store.alerts({ limit: 10 });
      expect(alert?.screening?.id).toBe(s.id);
      expect((await w.store.auditLog(10)).map((e) => e.action)).toEqual(['alert.opened']);
    } finally {
      await w.close();
    }
  });

  it('keeps nothing of a message whose transaction fails part way', async () => {
    const w = await make();
    try {
      const s = makeScreening({ decision: 'secondary_check' });
      // An alert for this screening already exists: saving the new one breaks the one-alert-per-screening rule.
      const taken = (await w.store.ingestScreening(makeScreening({ decision: 'secondary_check' }), 1_000)).alertChanges[0]!.alert;
      await w.saveAlert({ ...taken, id: 'someone-else', screeningId: s.id });
      const before = await w.store.eventRange();
      await expect((async () => w.store.ingestScreening(s, 2_000))()).rejects.toThrow();
      expect((await w.store.screenings({ limit: 10 })).map((x) => x.id)).not.toContain(s.id);
      expect(await w.store.eventRange()).toEqual(before);
      expect(await w.store.spoolDepth()).toBe(1);
    } finally {
      await w.close();
    }
  });

  it('acknowledges once, escalates what stays open, and retention deletes by receipt with an audit row', async () => {
    const w = await make();
    try {
      const t0 = Date.parse(makeScreening().ts);
      const a = (await w.store.ingestScreening(makeScreening({ decision: 'secondary_check', ts: new Date(t0).toISOString() }), t0)).alertChanges[0]!.alert;
      const b = (await w.store.ingestScreening(makeScreening({ decision: 'secondary_check', ts: new Date(t0 + 1).toISOString() }), t0 + 1)).alertChanges[0]!.alert;
      const ack = { by: 'guard', outcome: 'cleared' as const, note: null };
      expect((await w.store.acknowledgeAlert(a.id, ack, t0 + 10)).ok).toBe(true);
      expect(await w.store.acknowledgeAlert(a.id, ack, t0 + 20)).toMatchObject({ ok: false, reason: 'not_open' });
      expect(await w.store.acknowledgeAlert('no-such-alert', ack, t0 + 20)).toMatchObject({ ok: false, reason: 'not_found' });
      expect(await w.store.runPeriodic(t0 + 30_000)).toEqual([]);
      const escalated = await w.store.runPeriodic(t0 + 61_000);
      expect(escalated.map((c) => [c.action, c.alert.id])).toEqual([['escalated', b.id]]);
      expect(await w.store.runPeriodic(t0 + 62_000)).toEqual([]);
      const removed = await w.store.retention(t0 + 100_000, { screeningsMs: 50_000, snapshotsMs: 50_000, eventsMs: 50_000 });
      expect(removed).toMatchObject({ screenings: 2, events: expect.any(Number) as number });
      expect(await w.store.screenings({ limit: 10 })).toEqual([]);
      expect((await w.store.auditLog(1))[0]?.action).toBe('retention');
    } finally {
      await w.close();
    }
  });
});

describe('group commit on PostgreSQL (ingestBatch)', () => {
  it('commits the messages before a failing one, rolls that one back alone, tries none after it', async () => {
    const pool = await pgPool(`batch_${++schemas}`);
    try {
      const store = createPostgresOperationalStore(pool, POLICY, newId);
      const alerts = createPostgresAlertStore(pool);
      const batch = Array.from({ length: 5 }, (_, i) => makeScreening({ checkpoint: `gate-${i}`, decision: i === 2 ? 'secondary_check' : 'pass' }));
      // The third one's alert breaks the one-alert-per-screening rule: an alert for it exists.
      const other = (await store.ingestScreening(makeScreening({ decision: 'secondary_check' }), 1)).alertChanges[0]!.alert;
      await alerts.save({ ...other, id: 'taken', screeningId: batch[2]!.id });
      const eventsBefore = (await store.eventRange()).last;
      const result = await store.ingestBatch(batch.map((screening, i) => ({ kind: 'screening' as const, screening, receivedMs: 10 + i })));
      expect(result.outcomes.map((o) => o.stored)).toEqual([true, true]);
      expect(result.error?.message).toMatch(/alerts_one_per_screening/);
      const stored = new Set((await store.screenings({ limit: 100 })).map((s) => s.id));
      expect(batch.map((s) => stored.has(s.id))).toEqual([true, true, false, false, false]);
      expect((await store.eventsAfter(eventsBefore, 100)).map((e) => e.type)).toEqual(['screening', 'screening']);
      // The rest, as group commit hands them over again: stored, with the duplicates found.
      const again = await store.ingestBatch(batch.filter((_, i) => i !== 2).map((screening) => ({ kind: 'screening' as const, screening, receivedMs: 20 })));
      expect(again).toEqual({ outcomes: [false, false, true, true].map((stored) => ({ stored, alertChanges: [] })) });
    } finally {
      await pool.end();
    }
  }, 60_000);
});

describe('group commit on PostgreSQL: a run of passing screenings and telemetry (ingest-run.ts)', () => {
  /** Every row ingest writes, seqs and all, in a comparable form. */
  async function tables(pool: pg.Pool) {
    const q = async (sql: string) => (await pool.query(sql)).rows;
    return {
      screenings: await q('SELECT id, ts_ms, site, checkpoint, decision, mask, temperature_c, payload, received_ms, ts_replaced FROM screenings ORDER BY id'),
      devices: await q('SELECT * FROM devices ORDER BY site, checkpoint'),
      spool: await q('SELECT seq, point, enqueued_ms FROM series_spool ORDER BY seq'),
      events: await q('SELECT seq, type, data, at_ms FROM events ORDER BY seq'),
      alerts: await q('SELECT kind, status, site, checkpoint, screening_id FROM alerts ORDER BY screening_id'),
    };
  }

  it('writes the same rows, in the same order, as the messages stored one by one', async () => {
    const [bulk, single] = [await pgPool(`run_${++schemas}`), await pgPool(`run_${++schemas}`)];
    try {
      const a = createPostgresOperationalStore(bulk, POLICY, newId);
      const b = createPostgresOperationalStore(single, POLICY, newId);
      const telemetry = (checkpoint: string, fps: number): Telemetry => ({
        ts: new Date().toISOString(), site: 'hq', checkpoint, fps, stages: { detect: 12 }, cpuTempC: 51, ambientC: 22, blackbody: null, queueDepth: 0,
      });
      const earlier = makeScreening({ checkpoint: 'gate-2' });
      const pass = Array.from({ length: 12 }, (_, i) => makeScreening({ checkpoint: `gate-${i % 3}` }));
      const replaced = [{ path: '/ts', original: '2099-01-01T00:00:00.000Z' }];
      const items: IngestItem[] = [
        ...pass.slice(0, 5).map((screening, i) => ({ kind: 'screening' as const, screening, receivedMs: 1_000 + i })),
        { kind: 'telemetry', telemetry: telemetry('gate-1', 9), receivedMs: 1_010 },
        { kind: 'screening', screening: pass[1]!, receivedMs: 1_011 }, // delivered twice in one batch
        { kind: 'screening', screening: earlier, receivedMs: 1_012 }, // stored by an earlier batch
        { kind: 'screening', screening: makeScreening({ checkpoint: 'gate-1', decision: 'secondary_check' }), receivedMs: 1_013 },
        ...pass.slice(5).map((screening, i) => ({ kind: 'screening' as const, screening, receivedMs: 1_020 + i, ...(i === 2 ? { tsReplaced: replaced } : {}) })),
        { kind: 'telemetry', telemetry: telemetry('gate-1', 11), receivedMs: 1_030 },
        { kind: 'telemetry', telemetry: telemetry('gate-7', 3), receivedMs: 1_031 }, // a device not seen before
      ];
      for (const store of [a, b]) await store.ingestScreening(earlier, 500);
      const batched = await a.ingestBatch(items);
      const oneByOne = [];
      for (const item of items) {
        const at = item.receivedMs;
        if (item.kind === 'screening') oneByOne.push(await b.ingestScreening(item.screening, at, item.tsReplaced));
        else if (item.kind === 'telemetry') oneByOne.push(await b.ingestTelemetry(item.telemetry, at, item.tsReplaced));
      }
      expect(batched.error).toBeUndefined();
      expect(batched.outcomes.map((o) => o.stored)).toEqual(oneByOne.map((o) => o.stored));
      expect(batched.outcomes.map((o) => o.stored).filter((x) => !x)).toHaveLength(2);
      const [x, y] = [await tables(bulk), await tables(single)];
      // Every message stored once, and the earlier screening's point.
      expect(x.spool.length).toBe(items.length - 2 + 1);
      for (const key of ['screenings', 'devices', 'spool', 'events', 'alerts'] as const) {
        // Alert and audit ids are the id factory's (different per store); the rest must match.
        const strip = (rows: unknown[]) => JSON.parse(JSON.stringify(rows).replace(/alert-\d{6}/g, 'alert-id'));
        expect(strip(x[key]), key).toEqual(strip(y[key]));
      }
    } finally {
      await Promise.all([bulk.end(), single.end()]);
    }
  }, 60_000);

  it('a run that fails as a whole is retried message by message: the ones before the failing one commit', async () => {
    const pool = await pgPool(`run_${++schemas}`);
    try {
      const store = createPostgresOperationalStore(pool, POLICY, newId);
      // A rule of this database alone makes the third screening fail inside the run.
      await pool.query("ALTER TABLE screenings ADD CONSTRAINT not_gate_9 CHECK (checkpoint <> 'gate-9')");
      const batch = Array.from({ length: 4 }, (_, i) => makeScreening({ checkpoint: i === 2 ? 'gate-9' : 'gate-1' }));
      const result = await store.ingestBatch(batch.map((screening, i) => ({ kind: 'screening' as const, screening, receivedMs: 10 + i })));
      expect(result.outcomes.map((o) => o.stored)).toEqual([true, true]);
      expect(result.error?.message).toMatch(/not_gate_9/);
      const stored = new Set((await store.screenings({ limit: 100 })).map((s) => s.id));
      expect(batch.map((s) => stored.has(s.id))).toEqual([true, true, false, false]);
      expect((await pool.query('SELECT count(*)::int AS n FROM series_spool')).rows[0].n).toBe(2);
    } finally {
      await pool.end();
    }
  }, 60_000);
});

describe('two stores on one PostgreSQL database (two gateways)', () => {
  it('store a screening delivered to both once, and open exactly one storm for invalid screenings split between them', async () => {
    const schema = `shared_${++schemas}`;
    const [poolA, poolB] = [await pgPool(schema), await pgPool(schema)];
    try {
      const a = createPostgresOperationalStore(poolA, POLICY, newId);
      const b = createPostgresOperationalStore(poolB, POLICY, newId);
      const same = Array.from({ length: 40 }, () => makeScreening({ checkpoint: 'gate-2' }));
      const both = await Promise.all(same.flatMap((s, i) => [a.ingestScreening(s, 1_000 + i), b.ingestScreening(s, 1_000 + i)]));
      expect(both.filter((r) => r.stored)).toHaveLength(same.length);
      expect((await a.eventsAfter(0, 1000)).filter((e) => e.type === 'screening')).toHaveLength(same.length);

      const invalid: Screening[] = Array.from({ length: 60 }, () => makeScreening({ checkpoint: 'gate-3', decision: 'invalid' }));
      await Promise.all(invalid.map((s, i) => (i % 2 ? a : b).ingestScreening(s, 5_000 + i)));
      const alerts = await b.alerts({ checkpoint: 'gate-3', limit: 100 });
      const storms = alerts.filter((x) => x.kind === 'invalid_storm');
      expect(storms).toHaveLength(1);
      // Every single invalid alert opened before the storm was grouped into it.
      expect(alerts.filter((x) => x.kind === 'screening' && x.status !== 'closed')).toEqual([]);
      expect(alerts.filter((x) => x.kind === 'screening').every((x) => x.groupedInto === storms[0]!.id)).toBe(true);
    } finally {
      await Promise.all([poolA.end(), poolB.end()]);
    }
  }, 120_000);

  it('lose no acknowledgement to an escalation running at the same time on the other', async () => {
    const schema = `shared_${++schemas}`;
    const [poolA, poolB] = [await pgPool(schema), await pgPool(schema)];
    try {
      const a = createPostgresOperationalStore(poolA, POLICY, newId);
      const b = createPostgresOperationalStore(poolB, POLICY, newId);
      const t0 = Date.parse(makeScreening().ts);
      const opened = [];
      for (let i = 0; i < 30; i++) {
        const s = makeScreening({ checkpoint: `gate-${10 + i}`, decision: 'secondary_check', ts: new Date(t0 + i).toISOString() });
        opened.push((await a.ingestScreening(s, t0 + i)).alertChanges[0]!.alert.id);
      }
      // Gateway a escalates (all are past the deadline) while guards acknowledge through gateway b.
      const ack = { by: 'guard', outcome: 'cleared' as const, note: null };
      const [escalated, acks] = await Promise.all([
        a.runPeriodic(t0 + 120_000),
        Promise.all(opened.map((id) => b.acknowledgeAlert(id, ack, t0 + 120_000))),
      ]);
      expect(acks.every((r) => r.ok)).toBe(true);
      const after = await b.alerts({ limit: 100 });
      expect(after.filter((x) => x.acknowledgement === null).map((x) => x.id)).toEqual([]);
      // What was escalated was escalated once, before its acknowledgement (an acknowledged alert is not escalated).
      expect(escalated.length).toBeLessThanOrEqual(opened.length);
      expect(after.filter((x) => x.escalatedAt !== null)).toHaveLength(escalated.length);
    } finally {
      await Promise.all([poolA.end(), poolB.end()]);
    }
  }, 120_000);
});
