/**
 * Provisioning state: the checkpoints engineers registered, their enrollment tokens (hashes only),
 * the published model versions with their files, and the roll-outs (each one a JSON snapshot of
 * the state machine in rollout.ts). `ProvisioningStore<B>` is the contract; this file has the
 * SQLite one (model files in `modelsDir`), ../store/postgres/provisioning.ts the PostgreSQL one
 * (model files in the database, so every gateway sharing it serves every model).
 */
import { mkdirSync } from 'node:fs';
import { readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Backend, Result } from '../store/backend.js';
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

/** Rows as both backends return them: PostgreSQL gives BIGINT columns as strings. */
type Int = number | string;
const int = (v: Int) => Number(v);
const intOrNull = (v: Int | null) => (v === null ? null : Number(v));

export interface DeviceRow {
  site: string;
  checkpoint: string;
  status: ProvisionedStatus;
  broker_user: string | null;
  registered_by: string;
  registered_ms: Int;
  enrolled_ms: Int | null;
  revoked_ms: Int | null;
}

export const toDevice = (r: DeviceRow): ProvisionedDevice => ({
  site: r.site,
  checkpoint: r.checkpoint,
  status: r.status,
  brokerUser: r.broker_user,
  registeredBy: r.registered_by,
  registeredMs: int(r.registered_ms),
  enrolledMs: intOrNull(r.enrolled_ms),
  revokedMs: intOrNull(r.revoked_ms),
});

export interface ModelRow {
  name: string;
  version: string;
  sha256: string;
  size_bytes: Int;
  file: string;
  published_by: string;
  published_ms: Int;
}

export const toModel = (r: ModelRow): ModelVersion => ({
  name: r.name,
  version: r.version,
  sha256: r.sha256,
  sizeBytes: int(r.size_bytes),
  file: r.file,
  publishedBy: r.published_by,
  publishedMs: int(r.published_ms),
});

export interface TokenRowColumns {
  site: string;
  checkpoint: string;
  created_ms: Int;
  expires_ms: Int;
  used_ms: Int | null;
  invalidated_ms: Int | null;
}

export const toTokenRow = (r: TokenRowColumns): TokenRow => ({
  site: r.site,
  checkpoint: r.checkpoint,
  createdMs: int(r.created_ms),
  expiresMs: int(r.expires_ms),
  usedMs: intOrNull(r.used_ms),
  invalidatedMs: intOrNull(r.invalidated_ms),
});

/** A roll-out changed by {@link ProvisioningStore.updateRollout}: as it was and as it is now stored. */
export interface RolloutChange {
  before: Rollout;
  after: Rollout;
}

export interface ProvisioningStore<B extends Backend = 'sync'> {
  /** Registers a checkpoint (or re-registers a revoked one) and stores a new token, withdrawing older unused ones. */
  issueToken(d: DeviceRef, tokenHash: string, by: string, nowMs: number, expiresMs: number): Result<void, B>;
  token(tokenHash: string): Result<TokenRow | null, B>;
  /** Single use, enforced by the database: true for exactly one caller of a valid token. */
  useToken(tokenHash: string, nowMs: number): Result<boolean, B>;
  /** Gives a token back when enrollment failed on our side (e.g. the user store was unavailable). */
  unuseToken(tokenHash: string): Result<void, B>;
  markEnrolled(d: DeviceRef, brokerUser: string, nowMs: number): Result<void, B>;
  markRevoked(d: DeviceRef, nowMs: number): Result<void, B>;
  device(d: DeviceRef): Result<ProvisionedDevice | null, B>;
  devices(): Result<ProvisionedDevice[], B>;
  /** Stores a model version and its file; false (and nothing stored) when that version exists: versions are immutable. */
  addModel(m: ModelVersion, bytes: Buffer): Promise<boolean>;
  model(name: string, version: string): Result<ModelVersion | null, B>;
  models(): Result<ModelVersion[], B>;
  /** The file of a published version, as stored (the caller checks its sha256). */
  modelBytes(m: ModelVersion): Promise<Buffer>;
  createRollout(r: Rollout, nowMs: number): Result<void, B>;
  /**
   * Applies `change` (a pure function of rollout.ts) to the stored roll-out, with nobody else
   * changing it meanwhile (a transaction; on PostgreSQL the row is locked, so two gateways never
   * overwrite each other's step). Null when there is no such roll-out.
   */
  updateRollout(id: string, change: (r: Rollout) => Rollout, nowMs: number): Result<RolloutChange | null, B>;
  rollout(id: string): Result<Rollout | null, B>;
  rollouts(filter: { status?: string; limit: number }): Result<Rollout[], B>;
}

/** Where a version's file goes, relative to the models folder (also its name in the `file` column). */
export const modelFileName = (name: string, version: string) => join(name, `${version}.onnx`);

export function createProvisioningStore(db: Db, modelsDir: string): ProvisioningStore {
  db.exec(SCHEMA);
  mkdirSync(modelsDir, { recursive: true });
  const saveRollout = (r: Rollout, nowMs: number) =>
    db
      .prepare(
        `INSERT INTO rollouts (id, status, created_ms, updated_ms, rollout) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT(id) DO UPDATE SET status = excluded.status, updated_ms = excluded.updated_ms, rollout = excluded.rollout`,
      )
      .run(r.id, r.status, r.createdMs, nowMs, JSON.stringify(r));
  const rollout = (id: string): Rollout | null => {
    const row = db.prepare<[string], { rollout: string }>('SELECT rollout FROM rollouts WHERE id = ?').get(id);
    return row ? (JSON.parse(row.rollout) as Rollout) : null;
  };
  const model = (name: string, version: string): ModelVersion | null => {
    const row = db.prepare<[string, string], ModelRow>('SELECT * FROM model_versions WHERE name = ? AND version = ?').get(name, version);
    return row ? toModel(row) : null;
  };
  return {
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
      const row = db.prepare<[string], TokenRowColumns>('SELECT * FROM enrollment_tokens WHERE token_hash = ?').get(tokenHash);
      return row ? toTokenRow(row) : null;
    },
    useToken(tokenHash: string, nowMs: number): boolean {
      return (
        db
          .prepare('UPDATE enrollment_tokens SET used_ms = ? WHERE token_hash = ? AND used_ms IS NULL AND invalidated_ms IS NULL AND expires_ms > ?')
          .run(nowMs, tokenHash, nowMs).changes === 1
      );
    },
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

    async addModel(m: ModelVersion, bytes: Buffer): Promise<boolean> {
      if (model(m.name, m.version)) return false;
      // The file first, then its row: a version is listed only once its file is complete.
      const target = join(modelsDir, m.file);
      mkdirSync(join(modelsDir, m.name), { recursive: true });
      const temp = `${target}.${process.pid}.partial`;
      try {
        await writeFile(temp, bytes, { mode: 0o644, flush: true });
        await rename(temp, target);
      } catch (err) {
        await rm(temp, { force: true });
        throw err;
      }
      return (
        db
          .prepare('INSERT OR IGNORE INTO model_versions (name, version, sha256, size_bytes, file, published_by, published_ms) VALUES (?, ?, ?, ?, ?, ?, ?)')
          .run(m.name, m.version, m.sha256, m.sizeBytes, m.file, m.publishedBy, m.publishedMs).changes === 1
      );
    },
    model,
    modelBytes: (m) => readFile(join(modelsDir, m.file)),
    models(): ModelVersion[] {
      return db.prepare<[], ModelRow>('SELECT * FROM model_versions ORDER BY name, published_ms').all().map(toModel);
    },

    createRollout(r, nowMs) {
      saveRollout(r, nowMs);
    },
    updateRollout(id, change, nowMs) {
      return db.transaction((): RolloutChange | null => {
        const before = rollout(id);
        if (!before) return null;
        const after = change(before);
        if (after !== before) saveRollout(after, nowMs);
        return { before, after };
      })();
    },
    rollout,
    rollouts(filter: { status?: string; limit: number }): Rollout[] {
      const rows = filter.status
        ? db.prepare<[string, number], { rollout: string }>('SELECT rollout FROM rollouts WHERE status = ? ORDER BY created_ms DESC, id DESC LIMIT ?').all(filter.status, filter.limit)
        : db.prepare<[number], { rollout: string }>('SELECT rollout FROM rollouts ORDER BY created_ms DESC, id DESC LIMIT ?').all(filter.limit);
      return rows.map((r) => JSON.parse(r.rollout) as Rollout);
    },
  };
}
