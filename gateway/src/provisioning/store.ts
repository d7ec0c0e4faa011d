/**
 * Provisioning state in the gateway's SQLite file: the checkpoints engineers registered, their
 * enrollment tokens (hashes only), the published model versions and the roll-outs (each one a
 * JSON snapshot of the state machine in rollout.ts).
 */
import type { Db } from '../store/db.js';
import type { Rollout } from './rollout.js';
import type { DeviceRef, TokenRow } from './tokens.js';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS provisioned_devices (
  site TEXT NOT NULL,
  checkpoint TEXT NOT NULL,
  status TEXT NOT NULL,              -- registered | enrolled | revoked
  broker_user TEXT,
  registered_by TEXT NOT NULL,
  registered_ms INTEGER NOT NULL,
  enrolled_ms INTEGER,
  revoked_ms INTEGER,
  PRIMARY KEY (site, checkpoint)
);
CREATE TABLE IF NOT EXISTS enrollment_tokens (
  token_hash TEXT PRIMARY KEY,
  site TEXT NOT NULL,
  checkpoint TEXT NOT NULL,
  created_ms INTEGER NOT NULL,
  expires_ms INTEGER NOT NULL,
  used_ms INTEGER,
  invalidated_ms INTEGER
);
CREATE INDEX IF NOT EXISTS enrollment_tokens_by_device ON enrollment_tokens(site, checkpoint);
CREATE TABLE IF NOT EXISTS model_versions (
  name TEXT NOT NULL,
  version TEXT NOT NULL,
  sha256 TEXT NOT NULL,
  size_bytes INTEGER NOT NULL,
  file TEXT NOT NULL,
  published_by TEXT NOT NULL,
  published_ms INTEGER NOT NULL,
  PRIMARY KEY (name, version)
);
CREATE TABLE IF NOT EXISTS rollouts (
  id TEXT PRIMARY KEY,
  status TEXT NOT NULL,
  created_ms INTEGER NOT NULL,
  updated_ms INTEGER NOT NULL,
  rollout TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS rollouts_by_status ON rollouts(status, created_ms);
`;

export type ProvisionedStatus = 'registered' | 'enrolled' | 'revoked';

export interface ProvisionedDevice extends DeviceRef {
  status: ProvisionedStatus;
  brokerUser: string | null;
  registeredBy: string;
  registeredMs: number;
  enrolledMs: number | null;
  revokedMs: number | null;
}

export interface ModelVersion {
  name: string;
  version: string;
  sha256: string;
  sizeBytes: number;
  file: string;
  publishedBy: string;
  publishedMs: number;
}

interface DeviceRow {
  site: string;
  checkpoint: string;
  status: ProvisionedStatus;
  broker_user: string | null;
  registered_by: string;
  registered_ms: number;
  enrolled_ms: number | null;
  revoked_ms: number | null;
}

const toDevice = (r: DeviceRow): ProvisionedDevice => ({
  site: r.site,
  checkpoint: r.checkpoint,
  status: r.status,
  brokerUser: r.broker_user,
  registeredBy: r.registered_by,
  registeredMs: r.registered_ms,
  enrolledMs: r.enrolled_ms,
  revokedMs: r.revoked_ms,
});

interface ModelRow {
  name: string;
  version: string;
  sha256: string;
  size_bytes: number;
  file: string;
  published_by: string;
  published_ms: number;
}

const toModel = (r: ModelRow): ModelVersion => ({
  name: r.name,
  version: r.version,
  sha256: r.sha256,
  sizeBytes: r.size_bytes,
  file: r.file,
  publishedBy: r.published_by,
  publishedMs: r.published_ms,
});

export type ProvisioningStore = ReturnType<typeof createProvisioningStore>;

export function createProvisioningStore(db: Db) {
  db.exec(SCHEMA);
  return {
    /** Registers a checkpoint (or re-registers a revoked one) and stores a new token, withdrawing older unused ones. */
    issueToken(d: DeviceRef, tokenHash: string, by: string, nowMs: number, expiresMs: number): void {
      db.transaction(() => {
        db.prepare(
          `INSERT INTO provisioned_devices (site, checkpoint, status, registered_by, registered_ms) VALUES (?, ?, 'registered', ?, ?)
           ON CONFLICT(site, checkpoint) DO UPDATE SET
             status = CASE WHEN status = 'revoked' THEN 'registered' ELSE status END,
             registered_by = excluded.registered_by, registered_ms = excluded.registered_ms`,
        ).run(d.site, d.checkpoint, by, nowMs);
        db.prepare('UPDATE enrollment_tokens SET invalidated_ms = ? WHERE site = ? AND checkpoint = ? AND used_ms IS NULL AND invalidated_ms IS NULL').run(nowMs, d.site, d.checkpoint);
        db.prepare('INSERT INTO enrollment_tokens (token_hash, site, checkpoint, created_ms, expires_ms) VALUES (?, ?, ?, ?, ?)').run(tokenHash, d.site, d.checkpoint, nowMs, expiresMs);
      })();
    },
    token(tokenHash: string): TokenRow | null {
      const row = db
        .prepare<[string], { site: string; checkpoint: string; created_ms: number; expires_ms: number; used_ms: number | null; invalidated_ms: number | null }>(
          'SELECT * FROM enrollment_tokens WHERE token_hash = ?',
        )
        .get(tokenHash);
      return row ? { site: row.site, checkpoint: row.checkpoint, createdMs: row.created_ms, expiresMs: row.expires_ms, usedMs: row.used_ms, invalidatedMs: row.invalidated_ms } : null;
    },
    /** Single use, enforced by the database: true for exactly one caller of a valid token. */
    useToken(tokenHash: string, nowMs: number): boolean {
      return (
        db
          .prepare('UPDATE enrollment_tokens SET used_ms = ? WHERE token_hash = ? AND used_ms IS NULL AND invalidated_ms IS NULL AND expires_ms > ?')
          .run(nowMs, tokenHash, nowMs).changes === 1
      );
    },
    /** Gives a token back when enrollment failed on our side (e.g. the user store was unavailable). */
    unuseToken(tokenHash: string): void {
      db.prepare('UPDATE enrollment_tokens SET used_ms = NULL WHERE token_hash = ?').run(tokenHash);
    },
    markEnrolled(d: DeviceRef, brokerUser: string, nowMs: number): void {
      db.prepare(`UPDATE provisioned_devices SET status = 'enrolled', broker_user = ?, enrolled_ms = ?, revoked_ms = NULL WHERE site = ? AND checkpoint = ?`).run(brokerUser, nowMs, d.site, d.checkpoint);
    },
    markRevoked(d: DeviceRef, nowMs: number): void {
      db.transaction(() => {
        db.prepare(`UPDATE provisioned_devices SET status = 'revoked', revoked_ms = ? WHERE site = ? AND checkpoint = ?`).run(nowMs, d.site, d.checkpoint);
        db.prepare('UPDATE enrollment_tokens SET invalidated_ms = ? WHERE site = ? AND checkpoint = ? AND used_ms IS NULL AND invalidated_ms IS NULL').run(nowMs, d.site, d.checkpoint);
      })();
    },
    device(d: DeviceRef): ProvisionedDevice | null {
      const row = db.prepare<[string, string], DeviceRow>('SELECT * FROM provisioned_devices WHERE site = ? AND checkpoint = ?').get(d.site, d.checkpoint);
      return row ? toDevice(row) : null;
    },
    devices(): ProvisionedDevice[] {
      return db.prepare<[], DeviceRow>('SELECT * FROM provisioned_devices ORDER BY site, checkpoint').all().map(toDevice);
    },

    addModel(m: ModelVersion): void {
      db.prepare('INSERT INTO model_versions (name, version, sha256, size_bytes, file, published_by, published_ms) VALUES (?, ?, ?, ?, ?, ?, ?)').run(
        m.name,
        m.version,
        m.sha256,
        m.sizeBytes,
        m.file,
        m.publishedBy,
        m.publishedMs,
      );
    },
    model(name: string, version: string): ModelVersion | null {
      const row = db.prepare<[string, string], ModelRow>('SELECT * FROM model_versions WHERE name = ? AND version = ?').get(name, version);
      return row ? toModel(row) : null;
    },
    models(): ModelVersion[] {
      return db.prepare<[], ModelRow>('SELECT * FROM model_versions ORDER BY name, published_ms').all().map(toModel);
    },

    saveRollout(r: Rollout, nowMs: number): void {
      db.prepare(
        `INSERT INTO rollouts (id, status, created_ms, updated_ms, rollout) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT(id) DO UPDATE SET status = excluded.status, updated_ms = excluded.updated_ms, rollout = excluded.rollout`,
      ).run(r.id, r.status, r.createdMs, nowMs, JSON.stringify(r));
    },
    rollout(id: string): Rollout | null {
      const row = db.prepare<[string], { rollout: string }>('SELECT rollout FROM rollouts WHERE id = ?').get(id);
      return row ? (JSON.parse(row.rollout) as Rollout) : null;
    },
    rollouts(filter: { status?: string; limit: number }): Rollout[] {
      const rows = filter.status
        ? db.prepare<[string, number], { rollout: string }>('SELECT rollout FROM rollouts WHERE status = ? ORDER BY created_ms DESC LIMIT ?').all(filter.status, filter.limit)
        : db.prepare<[number], { rollout: string }>('SELECT rollout FROM rollouts ORDER BY created_ms DESC LIMIT ?').all(filter.limit);
      return rows.map((r) => JSON.parse(r.rollout) as Rollout);
    },
  };
}
