/**
 * Contract tests of the aggregate stores (gateway/src/store/*): one `describe` per aggregate,
 * each taking a factory, so every backend (SQLite today, PostgreSQL next) runs the same tests.
 * Every call is awaited: a store answers at once (SQLite) or later (a server database).
 * A factory gives a fresh, empty store for each test.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { CheckpointState, Telemetry } from '@checkpoint/protocol';
import type { Alert } from '../../src/alerts.js';
import type { AlertStore } from '../../src/store/alerts.js';
import type { AuditStore } from '../../src/store/audit.js';
import type { Backend } from '../../src/store/backend.js';
import type { DeviceStore } from '../../src/store/devices.js';
import type { EventStore } from '../../src/store/events.js';
import type { FailedMessageStore } from '../../src/store/failed-messages.js';
import type { FleetStore } from '../../src/store/fleet.js';
import type { RobotRecord, Task } from '../../src/fleet/index.js';
import type { ScreeningStore } from '../../src/store/screenings.js';
import type { SnapshotStore } from '../../src/store/snapshots.js';
import type { SpoolStore } from '../../src/store/spool.js';
import type { SeriesPoint } from '../../src/series/points.js';
import type { UserStore } from '../../src/store/users.js';
import type { ProvisioningStore } from '../../src/provisioning/store.js';
import { cancel, markSent, planRollout } from '../../src/provisioning/rollout.js';
import { makeScreening } from './world.js';

export interface Made<S> {
  store: S;
  close(): void | Promise<void>;
}
export type Factory<S> = () => Made<S> | Promise<Made<S>>;

/** A fresh store per test from `make`, closed after it. */
function eachFresh<S>(make: Factory<S>): () => S {
  let made: Made<S> | null = null;
  beforeEach(async () => {
    made = await make();
  });
  afterEach(async () => {
    await made?.close();
    made = null;
  });
  return () => {
    if (!made) throw new Error('store used outside a test');
    return made.store;
  };
}

export function screeningStoreContract(backend: string, make: Factory<ScreeningStore<Backend>>): void {
  describe(`ScreeningStore (${backend})`, () => {
    const store = eachFresh(make);

    it('stores a screening once: the same id again changes nothing', async () => {
      const s = makeScreening({ decision: 'secondary_check' });
      expect(await store().insert(s, 1_000)).toBe(true);
      expect(await store().insert({ ...s, decision: 'pass' }, 2_000)).toBe(false);
      expect(await store().summary(s.id)).toMatchObject({ id: s.id, decision: 'secondary_check', temperatureC: s.temperatureC, ts: s.ts });
      expect(await store().summary('no-such-id')).toBeNull();
    });

    it('keeps the replaced timestamps with the screening', async () => {
      const s = makeScreening();
      const replaced = [{ path: '/ts', original: '2024-12-31T23:59:60Z', problem: 'not a real instant' }];
      await store().insert(s, 1_000, replaced);
      expect((await store().summary(s.id))?.tsReplaced).toEqual(replaced);
      const plain = makeScreening();
      await store().insert(plain, 1_000);
      expect(await store().summary(plain.id)).not.toHaveProperty('tsReplaced');
    });

    it('refuses a ts that names no instant, naming the screening', async () => {
      const s = makeScreening();
      await expect(async () => store().insert({ ...s, ts: 'not a time' }, 1_000)).rejects.toThrow(`screening ${s.id}: ts is not an instant`);
    });

    it('lists newest first, filtered by place, time and decision, up to the limit', async () => {
      const base = Date.parse('2026-01-01T10:00:00Z');
      const at = (minutes: number) => new Date(base + minutes * 60_000).toISOString();
      const a = makeScreening({ ts: at(0), checkpoint: 'gate-1' });
      const b = makeScreening({ ts: at(1), checkpoint: 'gate-2', decision: 'secondary_check' });
      const c = makeScreening({ ts: at(2), checkpoint: 'gate-1', decision: 'secondary_check' });
      for (const s of [b, a, c]) await store().insert(s, 1_000);
      const ids = async (f: Parameters<ScreeningStore['list']>[0]) => (await store().list(f)).map((s) => s.id);
      expect(await ids({ limit: 10 })).toEqual([c.id, b.id, a.id]);
      expect(await ids({ limit: 2 })).toEqual([c.id, b.id]);
      expect(await ids({ checkpoint: 'gate-1', limit: 10 })).toEqual([c.id, a.id]);
      expect(await ids({ site: 'elsewhere', limit: 10 })).toEqual([]);
      expect(await ids({ decision: 'secondary_check', limit: 10 })).toEqual([c.id, b.id]);
      // From inclusive, to exclusive.
      expect(await ids({ fromMs: base + 60_000, toMs: base + 120_000, limit: 10 })).toEqual([b.id]);
    });

    it('counts the invalid screenings of a checkpoint in a time window, except the one given', async () => {
      const base = Date.parse('2026-01-01T10:00:00Z');
      const invalid = (seconds: number, checkpoint = 'gate-1') => makeScreening({ ts: new Date(base + seconds * 1000).toISOString(), checkpoint, decision: 'invalid' });
      const inWindow = [invalid(10), invalid(20), invalid(30)];
      for (const s of [...inWindow, invalid(100), invalid(15, 'gate-2'), makeScreening({ ts: new Date(base + 12_000).toISOString() })]) await store().insert(s, 1_000);
      expect(await store().countInvalid('hq', 'gate-1', base, base + 30_000, 'none')).toBe(3);
      expect(await store().countInvalid('hq', 'gate-1', base, base + 30_000, inWindow[2]!.id)).toBe(2);
      expect(await store().countInvalid('hq', 'gate-3', base, base + 30_000, 'none')).toBe(0);
    });

    it('deletes by receipt time, not by the device clock', async () => {
      const old = makeScreening({ ts: '2090-01-01T00:00:00.000Z' });
      const recent = makeScreening({ ts: '1970-01-02T00:00:00.000Z' });
      await store().insert(old, 1_000);
      await store().insert(recent, 5_000);
      expect(await store().deleteReceivedBefore(5_000)).toBe(1);
      expect((await store().list({ limit: 10 })).map((s) => s.id)).toEqual([recent.id]);
    });
  });
}

export function alertStoreContract(backend: string, make: Factory<AlertStore<Backend>>): void {
  const alert = (over: Partial<Alert> & { id: string }): Alert => ({
    kind: 'screening',
    severity: 'major',
    status: 'open',
    site: 'hq',
    checkpoint: 'gate-1',
    screeningId: null,
    decision: null,
    reasons: ['fever'],
    count: 1,
    openedAt: 1_000,
    lastAt: 1_000,
    resolvedAt: null,
    escalatedAt: null,
    ack: null,
    closedAt: null,
    groupedInto: null,
    ...over,
  });

  describe(`AlertStore (${backend})`, () => {
    const store = eachFresh(make);

    it('keeps an alert whole, and updates its changing fields', async () => {
      const a = alert({ id: 'a1', screeningId: 's1', decision: 'secondary_check' });
      await store().save(a);
      expect(await store().get('a1')).toEqual(a);
      const acknowledged: Alert = { ...a, status: 'acknowledged', ack: { by: 'guard', at: 2_000, outcome: 'referred', note: 'taken aside' }, escalatedAt: 1_500, count: 2, lastAt: 1_800, reasons: ['fever', 'again'] };
      await store().save(acknowledged);
      expect(await store().get('a1')).toEqual(acknowledged);
      const closed: Alert = { ...acknowledged, status: 'closed', closedAt: 3_000, groupedInto: 'storm-1', resolvedAt: 2_900, ack: { ...acknowledged.ack!, note: null } };
      await store().save(closed);
      expect(await store().get('a1')).toEqual(closed);
      expect(await store().get('nope')).toBeNull();
    });

    it('finds the newest alert not closed of a checkpoint and kind, and all alerts not closed', async () => {
      await store().save(alert({ id: 'old', kind: 'checkpoint_offline', openedAt: 1_000 }));
      await store().save(alert({ id: 'new', kind: 'checkpoint_offline', openedAt: 2_000 }));
      await store().save(alert({ id: 'newest-closed', kind: 'checkpoint_offline', openedAt: 3_000, status: 'closed', closedAt: 3_500 }));
      await store().save(alert({ id: 'other-gate', kind: 'checkpoint_offline', checkpoint: 'gate-2', openedAt: 4_000 }));
      expect((await store().activeOf('hq', 'gate-1', 'checkpoint_offline'))?.id).toBe('new');
      expect(await store().activeOf('hq', 'gate-1', 'checkpoint_fault')).toBeNull();
      expect((await store().active()).map((a) => a.id).sort()).toEqual(['new', 'old', 'other-gate']);
    });

    it('finds the open invalid-screening alerts of a checkpoint since a time', async () => {
      await store().save(alert({ id: 'i1', decision: 'invalid', openedAt: 1_000 }));
      await store().save(alert({ id: 'i2', decision: 'invalid', openedAt: 2_000 }));
      await store().save(alert({ id: 'i3', decision: 'invalid', openedAt: 2_500, status: 'acknowledged' }));
      await store().save(alert({ id: 'fever', decision: 'secondary_check', openedAt: 2_000 }));
      await store().save(alert({ id: 'i4', decision: 'invalid', openedAt: 2_000, checkpoint: 'gate-2' }));
      expect((await store().openInvalidSince('hq', 'gate-1', 1_500)).map((a) => a.id)).toEqual(['i2']);
    });

    it('lists newest first, filtered, up to the limit', async () => {
      await store().save(alert({ id: 'a', openedAt: 1_000 }));
      await store().save(alert({ id: 'b', openedAt: 2_000, status: 'acknowledged' }));
      await store().save(alert({ id: 'c', openedAt: 2_000, checkpoint: 'gate-2' }));
      await store().save(alert({ id: 'd', openedAt: 3_000, site: 'annex' }));
      const ids = async (f: Parameters<AlertStore['list']>[0]) => (await store().list(f)).map((a) => a.id);
      // Same opening time: by id, descending.
      expect(await ids({ limit: 10 })).toEqual(['d', 'c', 'b', 'a']);
      expect(await ids({ limit: 1 })).toEqual(['d']);
      expect(await ids({ status: 'open', limit: 10 })).toEqual(['d', 'c', 'a']);
      expect(await ids({ site: 'hq', checkpoint: 'gate-1', limit: 10 })).toEqual(['b', 'a']);
      expect(await ids({ sinceMs: 2_000, limit: 10 })).toEqual(['d', 'c', 'b']);
    });

    it('deletes only closed alerts closed before the time', async () => {
      await store().save(alert({ id: 'closed-old', status: 'closed', closedAt: 1_000 }));
      await store().save(alert({ id: 'closed-new', status: 'closed', closedAt: 9_000 }));
      await store().save(alert({ id: 'open-old', openedAt: 1 }));
      expect(await store().deleteClosedBefore(5_000)).toBe(1);
      expect((await store().list({ limit: 10 })).map((a) => a.id).sort()).toEqual(['closed-new', 'open-old']);
    });
  });
}

const state = (over: Partial<CheckpointState> = {}): CheckpointState =>
  ({ status: 'online', ts: '2026-01-01T10:00:00.000Z', site: 'hq', checkpoint: 'gate-1', versions: { agent: '1.2.3' }, ...over }) as CheckpointState;
const telemetry = (over: Partial<Telemetry> = {}): Telemetry =>
  ({ ts: '2026-01-01T10:00:05.000Z', site: 'hq', checkpoint: 'gate-1', fps: 9, stages: { detect: 12 }, queueDepth: 0, cpuTempC: 55, ambientC: 22, blackbody: null, ...over }) as Telemetry;

export function deviceStoreContract(backend: string, make: Factory<DeviceStore<Backend>>): void {
  describe(`DeviceStore (${backend})`, () => {
    const store = eachFresh(make);

    it('knows a device once seen, status unknown until a state; last seen only moves forward', async () => {
      await store().seen('hq', 'gate-1', 5_000);
      expect(await store().get('hq', 'gate-1')).toMatchObject({ status: 'unknown', lastSeen: new Date(5_000).toISOString(), stateAt: null, telemetry: null, versions: null });
      await store().seen('hq', 'gate-1', 3_000);
      expect((await store().get('hq', 'gate-1'))?.lastSeen).toBe(new Date(5_000).toISOString());
      expect(await store().get('hq', 'gate-9')).toBeNull();
    });

    it('keeps the last state as sent (JSON) and the last telemetry', async () => {
      await store().seen('hq', 'gate-1', 1_000);
      expect(await store().stateJson('hq', 'gate-1')).toBeNull();
      const s = state();
      const json = JSON.stringify(s);
      await store().setState(s, json, Date.parse(s.ts));
      expect(await store().stateJson('hq', 'gate-1')).toBe(json);
      await store().setTelemetry(telemetry());
      expect(await store().get('hq', 'gate-1')).toMatchObject({ status: 'online', stateAt: s.ts, versions: { agent: '1.2.3' }, telemetry: { fps: 9, stages: { detect: 12 }, cpuTempC: 55, rssMb: null } });
    });

    it('lists by site, then checkpoint', async () => {
      await store().seen('hq', 'gate-2', 1);
      await store().seen('annex', 'gate-9', 1);
      await store().seen('hq', 'gate-1', 1);
      expect((await store().list()).map((d) => `${d.site}/${d.checkpoint}`)).toEqual(['annex/gate-9', 'hq/gate-1', 'hq/gate-2']);
    });
  });
}

export function snapshotStoreContract(backend: string, make: Factory<SnapshotStore<Backend>>): void {
  describe(`SnapshotStore (${backend})`, () => {
    const store = eachFresh(make);
    const jpeg = (n: number) => Buffer.from([0xff, 0xd8, 0xff, n]);

    it('keeps the first snapshot of a screening, byte for byte', async () => {
      expect(await store().insert({ site: 'hq', checkpoint: 'gate-1' }, 's1', jpeg(1), 1_000)).toBe(true);
      expect(await store().insert({ site: 'hq', checkpoint: 'gate-1' }, 's1', jpeg(2), 2_000)).toBe(false);
      const got = await store().get('s1');
      expect(got?.site).toBe('hq');
      expect(got?.checkpoint).toBe('gate-1');
      expect(Buffer.compare(got!.jpeg, jpeg(1))).toBe(0);
      expect(await store().get('s2')).toBeNull();
    });

    it('deletes by receipt time', async () => {
      await store().insert({ site: 'hq', checkpoint: 'gate-1' }, 'old', jpeg(1), 1_000);
      await store().insert({ site: 'hq', checkpoint: 'gate-1' }, 'new', jpeg(2), 9_000);
      expect(await store().deleteReceivedBefore(5_000)).toBe(1);
      expect(await store().get('old')).toBeNull();
      expect(await store().get('new')).not.toBeNull();
    });
  });
}

export function auditStoreContract(backend: string, make: Factory<AuditStore<Backend>>): void {
  describe(`AuditStore (${backend})`, () => {
    const store = eachFresh(make);

    it('lists newest first with details as given, and pages before a sequence number', async () => {
      await store().append(1_000, 'guard', 'auth.login', null, { address: '10.0.0.1' });
      await store().append(2_000, 'system', 'alert.opened', 'a1');
      await store().append(3_000, 'admin', 'command.sent', 'hq/gate-1', { kind: 'reboot', nested: [1, 2] });
      const all = await store().list(10);
      expect(all.map((e) => e.action)).toEqual(['command.sent', 'alert.opened', 'auth.login']);
      expect(all[0]).toMatchObject({ at: new Date(3_000).toISOString(), actor: 'admin', target: 'hq/gate-1', detail: { kind: 'reboot', nested: [1, 2] } });
      expect(all[1]).toMatchObject({ target: 'a1', detail: null });
      const page = await store().list(1, all[0]!.seq);
      expect(page.map((e) => e.action)).toEqual(['alert.opened']);
    });

    it('deletes entries older than the time', async () => {
      await store().append(1_000, 'a', 'x', null);
      await store().append(9_000, 'b', 'y', null);
      expect(await store().deleteBefore(5_000)).toBe(1);
      expect((await store().list(10)).map((e) => e.actor)).toEqual(['b']);
    });
  });
}

export function eventStoreContract(backend: string, make: Factory<EventStore<Backend>>): void {
  describe(`EventStore (${backend})`, () => {
    const store = eachFresh(make);

    it('hands out events in order after a sequence number, up to the limit', async () => {
      expect(await store().range()).toEqual({ first: 1, last: 0 });
      for (let i = 0; i < 5; i++) await store().append(i % 2 ? 'alert' : 'screening', { i }, 1_000 + i);
      const all = await store().after(0, 10);
      expect(all.map((e) => (e.data as { i: number }).i)).toEqual([0, 1, 2, 3, 4]);
      expect(all.map((e) => e.type)).toEqual(['screening', 'alert', 'screening', 'alert', 'screening']);
      const seqs = all.map((e) => e.seq);
      expect([...seqs].sort((a, b) => a - b)).toEqual(seqs);
      expect((await store().after(seqs[1]!, 2)).map((e) => e.seq)).toEqual(seqs.slice(2, 4));
      expect(await store().range()).toEqual({ first: seqs[0], last: seqs[4] });
    });

    it('never reuses a sequence number, even when retention deleted every event', async () => {
      await store().append('screening', {}, 1_000);
      await store().append('screening', {}, 2_000);
      const { last } = await store().range();
      expect(await store().deleteBefore(5_000)).toBe(2);
      expect(await store().range()).toEqual({ first: last + 1, last });
      await store().append('device', { back: true }, 6_000);
      const [next] = await store().after(last, 10);
      expect(next?.seq).toBeGreaterThan(last);
      expect(next?.data).toEqual({ back: true });
    });
  });
}

export function spoolStoreContract(backend: string, make: Factory<SpoolStore<Backend>>): void {
  const point = (id: string): SeriesPoint => ({ measurement: 'screening', tags: { site: 'hq', checkpoint: 'gate-1' }, fields: { id, temperatureC: 36.6 }, timeNs: '1767261600000000000' });

  describe(`SpoolStore (${backend})`, () => {
    const store = eachFresh(make);

    it('hands out points oldest first and lets them go once accepted', async () => {
      for (const id of ['a', 'b', 'c']) await store().enqueue(point(id), 1_000);
      expect(await store().depth()).toBe(3);
      const head = await store().head(2);
      expect(head.map((r) => r.point)).toEqual([point('a'), point('b')]);
      expect(head[0]!.enqueuedMs).toBe(1_000);
      await store().done(head[1]!.seq);
      expect((await store().head(10)).map((r) => r.point.fields.id)).toEqual(['c']);
      expect(await store().depth()).toBe(1);
    });

    it('sets a refused point aside (counted, no longer in the spool)', async () => {
      await store().enqueue(point('good'), 1_000);
      await store().enqueue(point('bad'), 1_000);
      const [, bad] = await store().head(10);
      await store().reject(bad!.seq, 'field type conflict', 2_000);
      expect((await store().head(10)).map((r) => r.point.fields.id)).toEqual(['good']);
      expect(await store().rejectedCount()).toBe(1);
      expect(await store().deleteRejectedBefore(1_500)).toBe(0);
      expect(await store().deleteRejectedBefore(2_500)).toBe(1);
      expect(await store().rejectedCount()).toBe(0);
    });
  });
}

export function failedMessageStoreContract(backend: string, make: Factory<FailedMessageStore<Backend>>): void {
  describe(`FailedMessageStore (${backend})`, () => {
    const store = eachFresh(make);

    it('keeps the message byte for byte with its error, topic and error cut to 1000 characters', async () => {
      const payload = Buffer.from([0, 1, 2, 255]);
      await store().add('checkpoint/v1/hq/gate-1/screening', payload, 'trigger refused it', 1_000);
      await store().add(`t/${'x'.repeat(2000)}`, Buffer.from('{}'), 'e'.repeat(3000), 2_000);
      const [first, second] = await store().list(10);
      expect(first).toMatchObject({ topic: 'checkpoint/v1/hq/gate-1/screening', error: 'trigger refused it', atMs: 1_000 });
      expect(Buffer.compare(first!.payload, payload)).toBe(0);
      expect(second!.topic).toHaveLength(1000);
      expect(second!.error).toHaveLength(1000);
      expect(await store().deleteBefore(1_500)).toBe(1);
      expect((await store().list(10)).map((m) => m.atMs)).toEqual([2_000]);
    });
  });
}

/** The fleet store with the stores its commits also write to, on the same database. */
export interface FleetWorld {
  fleet: FleetStore<Backend>;
  spool: SpoolStore<Backend>;
  events: EventStore<Backend>;
  audit: AuditStore<Backend>;
}

export function fleetStoreContract(backend: string, make: Factory<FleetWorld>): void {
  // Only what the store reads is set: it keeps the rest of a task as given (JSON).
  const task = (id: string, status: string, createdMin: number, over: Record<string, unknown> = {}) =>
    ({
      id,
      type: 'disinfect',
      status,
      robot: null,
      alertId: null,
      createdAt: new Date(Date.UTC(2026, 0, 1, 10, createdMin)).toISOString(),
      updatedAt: new Date(Date.UTC(2026, 0, 1, 10, createdMin)).toISOString(),
      history: [{ at: 'then', what: `made ${id}` }],
      ...over,
    }) as unknown as Task;
  const robot = (key: string) => ({ key, manufacturer: 'acme', serialNumber: key, connection: 'ONLINE', lastSeen: 1 }) as unknown as RobotRecord;
  const point: SeriesPoint = { measurement: 'robot_state', tags: { robot: 'acme/r1' }, fields: { battery: 80 }, timeNs: '1767261600000000000' };

  describe(`FleetStore (${backend})`, () => {
    const world = eachFresh(make);

    it('commits tasks, robots, points, events and audit rows of one fleet step together', async () => {
      const { fleet, spool, events, audit } = world();
      await fleet.commit(
        {
          tasks: [task('t1', 'queued', 0), task('t2', 'completed', 1)],
          robots: [robot('acme/r2'), robot('acme/r1')],
          points: [point],
          events: [{ type: 'task', data: { task: 't1' } }],
          audit: [{ actor: 'dispatcher', action: 'task.submitted', target: 't1', detail: { priority: 1 } }],
        },
        5_000,
      );
      expect(await fleet.task('t1')).toEqual(task('t1', 'queued', 0));
      expect((await fleet.activeTasks()).map((t) => t.id)).toEqual(['t1']);
      expect((await fleet.robots()).map((r) => r.key)).toEqual(['acme/r1', 'acme/r2']);
      expect((await spool.head(10)).map((r) => r.point)).toEqual([point]);
      expect((await events.after(0, 10)).map((e) => e.data)).toEqual([{ task: 't1' }]);
      expect((await audit.list(10)).map((e) => [e.actor, e.action, e.target, e.detail])).toEqual([['dispatcher', 'task.submitted', 't1', { priority: 1 }]]);
    });

    it('keeps nothing of a step that fails part way', async () => {
      const { fleet, spool, events } = world();
      const bad = task('t-bad', 'queued', 1, { createdAt: 'not a time' });
      await expect(
        (async () => fleet.commit({ tasks: [task('t-ok', 'queued', 0), bad], robots: [robot('acme/r1')], points: [point], events: [{ type: 'task', data: {} }], audit: [] }, 5_000))(),
      ).rejects.toThrow();
      expect(await fleet.task('t-ok')).toBeNull();
      expect(await fleet.robots()).toEqual([]);
      expect(await spool.depth()).toBe(0);
      expect(await events.after(0, 10)).toEqual([]);
    });

    it('updates a task in place, lists newest first by status, and deletes finished ones by age', async () => {
      const { fleet } = world();
      await fleet.commit({ tasks: [task('a', 'queued', 0), task('b', 'underway', 1), task('c', 'failed', 2)], robots: [], points: [], events: [], audit: [] }, 1);
      await fleet.commit({ tasks: [task('a', 'cancelled', 0, { updatedAt: new Date(Date.UTC(2026, 0, 1, 11)).toISOString() })], robots: [], points: [], events: [], audit: [] }, 2);
      expect((await fleet.tasks({ limit: 10 })).map((t) => `${t.id}:${t.status}`)).toEqual(['c:failed', 'b:underway', 'a:cancelled']);
      expect((await fleet.tasks({ status: 'underway', limit: 10 })).map((t) => t.id)).toEqual(['b']);
      expect((await fleet.tasks({ limit: 1 })).map((t) => t.id)).toEqual(['c']);
      // Finished and last updated before 10:30: c (10:02). a was updated at 11:00; b is not finished.
      expect(await fleet.deleteFinishedBefore(Date.UTC(2026, 0, 1, 10, 30))).toBe(1);
      expect((await fleet.tasks({ limit: 10 })).map((t) => t.id)).toEqual(['b', 'a']);
    });
  });
}

export function userStoreContract(backend: string, make: Factory<UserStore<Backend>>): void {
  describe(`UserStore (${backend})`, () => {
    const store = eachFresh(make);

    it('adds users, verifies passwords (wrong ones and unknown names give null), lists by name, replaces and removes', async () => {
      const users = store();
      await users.add({ name: 'zoe', role: 'guard' }, 'correct horse');
      await users.add({ name: 'ann', role: 'admin' }, 'battery staple');
      expect(await users.verify('zoe', 'correct horse')).toBe('guard');
      expect(await users.verify('zoe', 'wrong password')).toBeNull();
      expect(await users.verify('nobody', 'correct horse')).toBeNull();
      expect((await users.list()).map((u) => [u.name, u.role])).toEqual([['ann', 'admin'], ['zoe', 'guard']]);
      await users.add({ name: 'zoe', role: 'dispatcher' }, 'new password');
      expect(await users.verify('zoe', 'correct horse')).toBeNull();
      expect(await users.verify('zoe', 'new password')).toBe('dispatcher');
      expect(await users.remove('zoe')).toBe(true);
      expect(await users.remove('zoe')).toBe(false);
      expect((await users.list()).map((u) => u.name)).toEqual(['ann']);
    });

    it('refuses a bad name, role or password, naming what is wrong', async () => {
      const users = store();
      await expect(users.add({ name: 'a b', role: 'guard' }, 'long enough')).rejects.toThrow('invalid user name "a b"');
      await expect(users.add({ name: 'ann', role: 'king' as never }, 'long enough')).rejects.toThrow('invalid role "king"');
      await expect(users.add({ name: 'ann', role: 'guard' }, 'short')).rejects.toThrow('password too short');
      expect(await users.list()).toEqual([]);
    });

    it('keeps sessions until they expire, ends them on logout, on a changed password and with the user', async () => {
      const users = store();
      await users.add({ name: 'ann', role: 'engineer' }, 'battery staple');
      const a = await users.createSession('ann', 60_000, 1_000);
      const b = await users.createSession('ann', 1_000, 1_000);
      expect(a.token).not.toBe(b.token);
      expect(await users.session(a.token, 30_000)).toEqual({ user: 'ann', role: 'engineer', expiresMs: 61_000, signedInMs: 1_000 });
      // A renewal carries the sign-in time over (the API's absolute session limit counts from it).
      const renewed = await users.createSession('ann', 60_000, 50_000, 1_000);
      expect(await users.session(renewed.token, 50_000)).toEqual({ user: 'ann', role: 'engineer', expiresMs: 110_000, signedInMs: 1_000 });
      expect(await users.session(b.token, 2_000)).toBeNull();
      expect(await users.session('not a token', 2_000)).toBeNull();
      expect(await users.pruneSessions(2_000)).toBe(1);
      await users.endSession(renewed.token);
      await users.endSession(a.token);
      expect(await users.session(a.token, 30_000)).toBeNull();
      const c = await users.createSession('ann', 60_000, 1_000);
      await users.add({ name: 'ann', role: 'engineer' }, 'another password');
      expect(await users.session(c.token, 2_000)).toBeNull();
      const d = await users.createSession('ann', 60_000, 1_000);
      await users.remove('ann');
      expect(await users.session(d.token, 2_000)).toBeNull();
    });
  });
}

export function provisioningStoreContract(backend: string, make: Factory<ProvisioningStore<Backend>>): void {
  describe(`ProvisioningStore (${backend})`, () => {
    const store = eachFresh(make);
    const gate = { site: 'hq', checkpoint: 'gate-1' };

    it('issues tokens (a new one withdraws the unused old one), uses each once, and follows a device through enroll and revoke', async () => {
      const s = store();
      await s.issueToken(gate, 'hash-1', 'ann', 1_000, 61_000);
      await s.issueToken(gate, 'hash-2', 'ann', 2_000, 62_000);
      expect(await s.token('hash-1')).toEqual({ ...gate, createdMs: 1_000, expiresMs: 61_000, usedMs: null, invalidatedMs: 2_000 });
      expect(await s.useToken('hash-1', 3_000)).toBe(false);
      expect(await s.token('nope')).toBeNull();
      // Five gateways racing with the same token: exactly one wins.
      const uses = await Promise.all([1, 2, 3, 4, 5].map(() => s.useToken('hash-2', 3_000)));
      expect(uses.filter(Boolean)).toHaveLength(1);
      await s.unuseToken('hash-2');
      expect(await s.useToken('hash-2', 62_000)).toBe(false); // expired
      expect(await s.useToken('hash-2', 4_000)).toBe(true);
      await s.markEnrolled(gate, 'hq.gate-1', 4_000);
      expect(await s.device(gate)).toEqual({ ...gate, status: 'enrolled', brokerUser: 'hq.gate-1', registeredBy: 'ann', registeredMs: 2_000, enrolledMs: 4_000, revokedMs: null });
      await s.issueToken(gate, 'hash-3', 'bob', 5_000, 65_000);
      await s.markRevoked(gate, 6_000);
      expect((await s.device(gate))?.status).toBe('revoked');
      expect((await s.token('hash-3'))?.invalidatedMs).toBe(6_000);
      await s.issueToken(gate, 'hash-4', 'bob', 7_000, 67_000);
      expect(await s.device(gate)).toMatchObject({ status: 'registered', registeredBy: 'bob', registeredMs: 7_000 });
      await s.issueToken({ site: 'a-site', checkpoint: 'z' }, 'hash-5', 'bob', 7_000, 67_000);
      await s.issueToken({ site: 'a-site', checkpoint: 'B' }, 'hash-6', 'bob', 7_000, 67_000);
      expect((await s.devices()).map((d) => `${d.site}/${d.checkpoint}`)).toEqual(['a-site/B', 'a-site/z', 'hq/gate-1']);
      expect(await s.device({ site: 'hq', checkpoint: 'nope' })).toBeNull();
    });

    it('keeps model versions immutable: the same version again stores nothing; files come back byte for byte', async () => {
      const s = store();
      const bytes = Buffer.from([0, 1, 2, 255, 0, 39, 92, 10, 0]);
      const model = { name: 'face', version: '2.0', sha256: 'a'.repeat(64), sizeBytes: bytes.length, file: 'face/2.0.onnx', publishedBy: 'ann', publishedMs: 2_000 };
      expect(await s.addModel(model, bytes)).toBe(true);
      expect(await s.addModel({ ...model, sha256: 'b'.repeat(64), publishedBy: 'eve' }, Buffer.from('other'))).toBe(false);
      expect(await s.model('face', '2.0')).toEqual(model);
      expect(Buffer.compare(await s.modelBytes(model), bytes)).toBe(0);
      await s.addModel({ ...model, version: '1.0', publishedMs: 1_000, file: 'face/1.0.onnx' }, Buffer.from('one'));
      await s.addModel({ ...model, name: 'age', version: '9', file: 'age/9.onnx' }, Buffer.from('age'));
      expect((await s.models()).map((m) => `${m.name} ${m.version}`)).toEqual(['age 9', 'face 1.0', 'face 2.0']);
      expect(await s.model('face', '3.0')).toBeNull();
    });

    it('changes a roll-out one step at a time: concurrent steps all land, an unchanged step writes nothing', async () => {
      const s = store();
      const devices = Array.from({ length: 8 }, (_, i) => ({ site: 'hq', checkpoint: `gate-${i}` }));
      const plan = (id: string, createdMs: number) =>
        planRollout({ id, model: { name: 'face', version: '2.0', sha256: 'a'.repeat(64), sizeBytes: 9 }, devices, stages: {}, failureThreshold: 0, createdBy: 'ann', nowMs: createdMs });
      await s.createRollout(plan('r-1', 1_000), 1_000);
      await s.createRollout(plan('r-2', 2_000), 2_000);
      // Eight steps at once (eight acks on two gateways): none overwrites another.
      const steps = await Promise.all(devices.map((d, i) => s.updateRollout('r-1', (r) => markSent(r, d, `cmd-${i}`, 3_000), 3_000)));
      expect(steps.every((c) => c !== null && c.after !== c.before)).toBe(true);
      expect((await s.rollout('r-1'))!.devices.map((d) => d.commandId)).toEqual(devices.map((_, i) => `cmd-${i}`));
      // The same step again changes nothing (the device is no longer pending).
      const again = await s.updateRollout('r-1', (r) => markSent(r, devices[0]!, 'cmd-again', 4_000), 4_000);
      expect(again!.after).toBe(again!.before);
      expect(await s.updateRollout('no-such', (r) => r, 4_000)).toBeNull();
      await s.updateRollout('r-2', (r) => cancel(r, 'bob', 5_000), 5_000);
      expect((await s.rollouts({ limit: 10 })).map((r) => r.id)).toEqual(['r-2', 'r-1']);
      expect((await s.rollouts({ status: 'running', limit: 10 })).map((r) => r.id)).toEqual(['r-1']);
      expect((await s.rollouts({ status: 'cancelled', limit: 10 }))[0]).toMatchObject({ id: 'r-2', reason: 'cancelled by bob' });
      expect(await s.rollouts({ limit: 1 })).toHaveLength(1);
      expect(await s.rollout('no-such')).toBeNull();
    });
  });
}
