/**
 * The robot fleet's tasks and robots on PostgreSQL (the contract: ../fleet.ts). `commit` writes a
 * fleet step's tasks, robots, series points, live-feed events and audit rows in one transaction
 * on one client of the pool, through the spool, event and audit stores of that client.
 */
import type { RobotRecord, Task } from '../../fleet/index.js';
import { taskRow, type FleetStore } from '../fleet.js';
import { createPostgresAuditStore } from './audit.js';
import { createPostgresEventStore } from './events.js';
import { createPostgresSpoolStore } from './spool.js';
import { inTransaction, type Queryable } from './values.js';

const UPSERT_TASK = `INSERT INTO fleet_tasks (id, type, status, robot, alert_id, created_ms, updated_ms, task)
  VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
  ON CONFLICT (id) DO UPDATE SET status = excluded.status, robot = excluded.robot, updated_ms = excluded.updated_ms, task = excluded.task`;
const UPSERT_ROBOT = `INSERT INTO fleet_robots (key, updated_ms, record) VALUES ($1, $2, $3)
  ON CONFLICT (key) DO UPDATE SET updated_ms = excluded.updated_ms, record = excluded.record`;
const FINISHED = `('completed', 'failed', 'cancelled')`;

const parse = (r: { task: string }) => JSON.parse(r.task) as Task;

export function createPostgresFleetStore(pool: Queryable): FleetStore<'async'> {
  return {
    commit: (c, atMs) =>
      inTransaction(pool, async (tx) => {
        for (const t of c.tasks) {
          const r = taskRow(t);
          await tx.query(UPSERT_TASK, [r.id, r.type, r.status, r.robot, r.alert_id, r.created_ms, r.updated_ms, r.task]);
        }
        for (const r of c.robots) await tx.query(UPSERT_ROBOT, [r.key, atMs, JSON.stringify(r)]);
        const spool = createPostgresSpoolStore(tx);
        const events = createPostgresEventStore(tx);
        const audit = createPostgresAuditStore(tx);
        for (const p of c.points) await spool.enqueue(p, atMs);
        for (const e of c.events) await events.append(e.type, e.data, atMs);
        for (const a of c.audit) await audit.append(atMs, a.actor, a.action, a.target, a.detail ?? null);
      }),
    async activeTasks() {
      return (await pool.query<{ task: string }>(`SELECT task FROM fleet_tasks WHERE status NOT IN ${FINISHED} ORDER BY created_ms, id COLLATE "C"`)).rows.map(parse);
    },
    async tasks(f) {
      const { rows } = f.status
        ? await pool.query<{ task: string }>('SELECT task FROM fleet_tasks WHERE status = $1 ORDER BY created_ms DESC, id COLLATE "C" DESC LIMIT $2', [f.status, f.limit])
        : await pool.query<{ task: string }>('SELECT task FROM fleet_tasks ORDER BY created_ms DESC, id COLLATE "C" DESC LIMIT $1', [f.limit]);
      return rows.map(parse);
    },
    async task(id) {
      const { rows } = await pool.query<{ task: string }>('SELECT task FROM fleet_tasks WHERE id = $1', [id]);
      return rows[0] ? parse(rows[0]) : null;
    },
    async robots() {
      return (await pool.query<{ record: string }>('SELECT record FROM fleet_robots ORDER BY key COLLATE "C"')).rows.map((r) => JSON.parse(r.record) as RobotRecord);
    },
    async deleteFinishedBefore(ms) {
      return (await pool.query(`DELETE FROM fleet_tasks WHERE status IN ${FINISHED} AND updated_ms < $1`, [ms])).rowCount ?? 0;
    },
  };
}
