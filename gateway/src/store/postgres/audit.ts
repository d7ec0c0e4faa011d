/** The audit trail on PostgreSQL (the contract: ../audit.ts). */
import type { AuditStore } from '../audit.js';
import { num, type Queryable } from './values.js';

export function createPostgresAuditStore(pool: Queryable): AuditStore<'async'> {
  return {
    async append(atMs, actor, action, target, detail = null) {
      await pool.query('INSERT INTO audit (at_ms, actor, action, target, detail) VALUES ($1, $2, $3, $4, $5)', [
        atMs,
        actor,
        action,
        target,
        detail === null || detail === undefined ? null : JSON.stringify(detail),
      ]);
    },
    async list(limit, beforeSeq) {
      const { rows } = await pool.query<{ seq: string; at_ms: string; actor: string; action: string; target: string | null; detail: string | null }>(
        'SELECT * FROM audit WHERE seq < $1 ORDER BY seq DESC LIMIT $2',
        [beforeSeq ?? Number.MAX_SAFE_INTEGER, limit],
      );
      return rows.map((r) => ({ seq: num(r.seq), at: new Date(num(r.at_ms)).toISOString(), actor: r.actor, action: r.action, target: r.target, detail: r.detail ? JSON.parse(r.detail) : null }));
    },
    async deleteBefore(ms) {
      return (await pool.query('DELETE FROM audit WHERE at_ms < $1', [ms])).rowCount ?? 0;
    },
  };
}
