/**
 * The robot fleet's part of the operational store: task snapshots (each with its full history)
 * and the last known record of every robot, on the gateway's SQLite file. `commit` writes what one
 * fleet step changed — tasks, robots, time-series points, live-feed events, audit rows — in one
 * transaction, so a robot message is stored whole (and acknowledged) or not at all.
 */
import type { RobotRecord, Task, TaskStatus } from '../fleet/index.js';
import type { SeriesPoint } from '../series/points.js';
import { createSqliteAuditStore } from './audit.js';
import type { Backend, Result } from './backend.js';
import type { Db } from './db.js';
import { createSqliteEventStore } from './events.js';
import { createSqliteSpoolStore } from './spool.js';

export interface FleetChanges {
  tasks: readonly Task[];
  robots: readonly RobotRecord[];
  points: readonly SeriesPoint[];
  events: ReadonlyArray<{ type: 'robot' | 'task'; data: unknown }>;
  audit: ReadonlyArray<{ actor: string; action: string; target: string | null; detail?: unknown }>;
}

export interface TaskFilter {
  status?: TaskStatus;
  limit: number;
}

export interface FleetStore<B extends Backend = 'sync'> {
  /** One transaction (a savepoint when called inside another one, e.g. an alert acknowledgement). */
  commit(changes: FleetChanges, atMs: number): Result<void, B>;
  /** Tasks not completed, failed or cancelled (restored into the fleet at start). */
  activeTasks(): Result<Task[], B>;
  /** Newest first. */
  tasks(f: TaskFilter): Result<Task[], B>;
  task(id: string): Result<Task | null, B>;
  robots(): Result<RobotRecord[], B>;
  /** Deletes completed, failed and cancelled tasks last updated before `ms`; how many went. */
  deleteFinishedBefore(ms: number): Result<number, B>;
}

/** A task as the columns of `fleet_tasks` (both backends): what the store filters and sorts by, and the whole task as JSON. */
export function taskRow(t: Task) {
  return {
    id: t.id,
    type: t.type,
    status: t.status,
    robot: t.robot,
    alert_id: t.alertId,
    created_ms: Date.parse(t.createdAt),
    updated_ms: Date.parse(t.updatedAt),
    task: JSON.stringify(t),
  };
}

export function createFleetStore(db: Db): FleetStore {
  const spool = createSqliteSpoolStore(db);
  const events = createSqliteEventStore(db);
  const audit = createSqliteAuditStore(db);
  const st = {
    upsertTask: db.prepare(
      `INSERT INTO fleet_tasks (id, type, status, robot, alert_id, created_ms, updated_ms, task)
       VALUES (@id, @type, @status, @robot, @alert_id, @created_ms, @updated_ms, @task)
       ON CONFLICT(id) DO UPDATE SET status = excluded.status, robot = excluded.robot, updated_ms = excluded.updated_ms, task = excluded.task`,
    ),
    upsertRobot: db.prepare(
      `INSERT INTO fleet_robots (key, updated_ms, record) VALUES (?, ?, ?)
       ON CONFLICT(key) DO UPDATE SET updated_ms = excluded.updated_ms, record = excluded.record`,
    ),
    deleteFinishedBefore: db.prepare(`DELETE FROM fleet_tasks WHERE status IN ('completed', 'failed', 'cancelled') AND updated_ms < ?`),
    active: db.prepare<[], { task: string }>(`SELECT task FROM fleet_tasks WHERE status NOT IN ('completed', 'failed', 'cancelled') ORDER BY created_ms, id`),
    byId: db.prepare<[string], { task: string }>('SELECT task FROM fleet_tasks WHERE id = ?'),
    all: db.prepare<[number], { task: string }>('SELECT task FROM fleet_tasks ORDER BY created_ms DESC, id DESC LIMIT ?'),
    byStatus: db.prepare<[string, number], { task: string }>('SELECT task FROM fleet_tasks WHERE status = ? ORDER BY created_ms DESC, id DESC LIMIT ?'),
    robots: db.prepare<[], { record: string }>('SELECT record FROM fleet_robots ORDER BY key'),
  };
  const parse = (r: { task: string }) => JSON.parse(r.task) as Task;

  const commit = db.transaction((c: FleetChanges, atMs: number) => {
    for (const t of c.tasks) st.upsertTask.run(taskRow(t));
    for (const r of c.robots) st.upsertRobot.run(r.key, atMs, JSON.stringify(r));
    // Points, events and audit rows through their own stores, in this transaction.
    for (const p of c.points) spool.enqueue(p, atMs);
    for (const e of c.events) events.append(e.type, e.data, atMs);
    for (const a of c.audit) audit.append(atMs, a.actor, a.action, a.target, a.detail ?? null);
  });

  return {
    commit: (changes, atMs) => commit(changes, atMs),
    activeTasks: () => st.active.all().map(parse),
    tasks: (f) => (f.status ? st.byStatus.all(f.status, f.limit) : st.all.all(f.limit)).map(parse),
    task(id) {
      const row = st.byId.get(id);
      return row ? parse(row) : null;
    },
    robots: () => st.robots.all().map((r) => JSON.parse(r.record) as RobotRecord),
    deleteFinishedBefore: (ms) => st.deleteFinishedBefore.run(ms).changes,
  };
}
