/** The audit trail: who did what to which target, when (logins, acknowledgements, commands, retention). */
import type { Backend, Result } from './backend.js';
import type { Db } from './db.js';

export interface AuditEntry {
  seq: number;
  at: string;
  actor: string;
  action: string;
  target: string | null;
  detail: unknown;
}

export interface AuditStore<B extends Backend = 'sync'> {
  append(atMs: number, actor: string, action: string, target: string | null, detail?: unknown): Result<void, B>;
  /** Newest first, before `beforeSeq` when given. */
  list(limit: number, beforeSeq?: number): Result<AuditEntry[], B>;
  /** Deletes entries older than `ms`; how many went. */
  deleteBefore(ms: number): Result<number, B>;
}

export function createSqliteAuditStore(db: Db): AuditStore {
  const st = {
    append: db.prepare('INSERT INTO audit (at_ms, actor, action, target, detail) VALUES (?, ?, ?, ?, ?)'),
    list: db.prepare<[number, number], { seq: number; at_ms: number; actor: string; action: string; target: string | null; detail: string | null }>(
      'SELECT * FROM audit WHERE seq < ? ORDER BY seq DESC LIMIT ?',
    ),
    deleteBefore: db.prepare('DELETE FROM audit WHERE at_ms < ?'),
  };
  return {
    append(atMs, actor, action, target, detail = null) {
      st.append.run(atMs, actor, action, target, detail === null || detail === undefined ? null : JSON.stringify(detail));
    },
    list: (limit, beforeSeq) =>
      st.list
        .all(beforeSeq ?? Number.MAX_SAFE_INTEGER, limit)
        .map((r) => ({ seq: r.seq, at: new Date(r.at_ms).toISOString(), actor: r.actor, action: r.action, target: r.target, detail: r.detail ? JSON.parse(r.detail) : null })),
    deleteBefore: (ms) => st.deleteBefore.run(ms).changes,
  };
}
