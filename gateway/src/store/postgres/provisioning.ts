/**
 * Provisioning on PostgreSQL (the contract: ../../provisioning/store.ts). Model files are stored
 * in the database (`model_files`), so a version published through one gateway is served by every
 * gateway sharing the database; roll-outs change under a row lock (`updateRollout`).
 */
import type { Rollout } from '../../provisioning/rollout.js';
import { toDevice, toModel, toTokenRow, type DeviceRow, type ModelRow, type ProvisioningStore, type TokenRowColumns } from '../../provisioning/store.js';
import { inTransaction, type Queryable } from './values.js';

const MODEL_COLUMNS = 'name, version, sha256, size_bytes, file, published_by, published_ms';
const parseRollouts = (rows: Array<{ rollout: string }>) => rows.map((r) => JSON.parse(r.rollout) as Rollout);

export function createPostgresProvisioningStore(pool: Queryable): ProvisioningStore<'async'> {
  const rollout = async (db: Queryable, id: string, lock = false): Promise<Rollout | null> =>
    parseRollouts((await db.query<{ rollout: string }>(`SELECT rollout FROM rollouts WHERE id = $1${lock ? ' FOR UPDATE' : ''}`, [id])).rows)[0] ?? null;
  return {
    async issueToken(d, tokenHash, by, nowMs, expiresMs) {
      await inTransaction(pool, async (tx) => {
        await tx.query(
          `INSERT INTO provisioned_devices (site, checkpoint, status, registered_by, registered_ms) VALUES ($1, $2, 'registered', $3, $4)
           ON CONFLICT (site, checkpoint) DO UPDATE SET
             status = CASE WHEN provisioned_devices.status = 'revoked' THEN 'registered' ELSE provisioned_devices.status END,
             registered_by = excluded.registered_by, registered_ms = excluded.registered_ms`,
          [d.site, d.checkpoint, by, nowMs],
        );
        await tx.query('UPDATE enrollment_tokens SET invalidated_ms = $1 WHERE site = $2 AND checkpoint = $3 AND used_ms IS NULL AND invalidated_ms IS NULL', [nowMs, d.site, d.checkpoint]);
        await tx.query('INSERT INTO enrollment_tokens (token_hash, site, checkpoint, created_ms, expires_ms) VALUES ($1, $2, $3, $4, $5)', [tokenHash, d.site, d.checkpoint, nowMs, expiresMs]);
      });
    },
    async token(tokenHash) {
      const { rows } = await pool.query<TokenRowColumns>('SELECT * FROM enrollment_tokens WHERE token_hash = $1', [tokenHash]);
      return rows[0] ? toTokenRow(rows[0]) : null;
    },
    async useToken(tokenHash, nowMs) {
      // One statement: of two gateways using the same token at once, the second finds used_ms set.
      const result = await pool.query('UPDATE enrollment_tokens SET used_ms = $1 WHERE token_hash = $2 AND used_ms IS NULL AND invalidated_ms IS NULL AND expires_ms > $1', [nowMs, tokenHash]);
      return result.rowCount === 1;
    },
    async unuseToken(tokenHash) {
      await pool.query('UPDATE enrollment_tokens SET used_ms = NULL WHERE token_hash = $1', [tokenHash]);
    },
    async markEnrolled(d, brokerUser, nowMs) {
      await pool.query(`UPDATE provisioned_devices SET status = 'enrolled', broker_user = $1, enrolled_ms = $2, revoked_ms = NULL WHERE site = $3 AND checkpoint = $4`, [
        brokerUser,
        nowMs,
        d.site,
        d.checkpoint,
      ]);
    },
    async markRevoked(d, nowMs) {
      await inTransaction(pool, async (tx) => {
        await tx.query(`UPDATE provisioned_devices SET status = 'revoked', revoked_ms = $1 WHERE site = $2 AND checkpoint = $3`, [nowMs, d.site, d.checkpoint]);
        await tx.query('UPDATE enrollment_tokens SET invalidated_ms = $1 WHERE site = $2 AND checkpoint = $3 AND used_ms IS NULL AND invalidated_ms IS NULL', [nowMs, d.site, d.checkpoint]);
      });
    },
    async device(d) {
      const { rows } = await pool.query<DeviceRow>('SELECT * FROM provisioned_devices WHERE site = $1 AND checkpoint = $2', [d.site, d.checkpoint]);
      return rows[0] ? toDevice(rows[0]) : null;
    },
    async devices() {
      // COLLATE "C": the same order as SQLite's byte order.
      const { rows } = await pool.query<DeviceRow>('SELECT * FROM provisioned_devices ORDER BY site COLLATE "C", checkpoint COLLATE "C"');
      return rows.map(toDevice);
    },

    async addModel(m, bytes) {
      return inTransaction(pool, async (tx) => {
        const inserted = await tx.query(`INSERT INTO model_versions (${MODEL_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING`, [
          m.name,
          m.version,
          m.sha256,
          m.sizeBytes,
          m.file,
          m.publishedBy,
          m.publishedMs,
        ]);
        if (inserted.rowCount !== 1) return false;
        await tx.query('INSERT INTO model_files (name, version, bytes) VALUES ($1, $2, $3)', [m.name, m.version, bytes]);
        return true;
      });
    },
    async model(name, version) {
      const { rows } = await pool.query<ModelRow>(`SELECT ${MODEL_COLUMNS} FROM model_versions WHERE name = $1 AND version = $2`, [name, version]);
      return rows[0] ? toModel(rows[0]) : null;
    },
    async models() {
      const { rows } = await pool.query<ModelRow>(`SELECT ${MODEL_COLUMNS} FROM model_versions ORDER BY name COLLATE "C", published_ms`);
      return rows.map(toModel);
    },
    async modelBytes(m) {
      const { rows } = await pool.query<{ bytes: Buffer }>('SELECT bytes FROM model_files WHERE name = $1 AND version = $2', [m.name, m.version]);
      if (!rows[0]) throw new Error(`no stored file for model ${m.name} ${m.version}`);
      return rows[0].bytes;
    },

    async createRollout(r, nowMs) {
      await pool.query('INSERT INTO rollouts (id, status, created_ms, updated_ms, rollout) VALUES ($1, $2, $3, $4, $5)', [r.id, r.status, r.createdMs, nowMs, JSON.stringify(r)]);
    },
    async updateRollout(id, change, nowMs) {
      return inTransaction(pool, async (tx) => {
        const before = await rollout(tx, id, true);
        if (!before) return null;
        const after = change(before);
        if (after !== before) {
          await tx.query('UPDATE rollouts SET status = $2, updated_ms = $3, rollout = $4 WHERE id = $1', [id, after.status, nowMs, JSON.stringify(after)]);
        }
        return { before, after };
      });
    },
    rollout: (id) => rollout(pool, id),
    async rollouts(filter) {
      const { rows } = filter.status
        ? await pool.query<{ rollout: string }>('SELECT rollout FROM rollouts WHERE status = $1 ORDER BY created_ms DESC, id DESC LIMIT $2', [filter.status, filter.limit])
        : await pool.query<{ rollout: string }>('SELECT rollout FROM rollouts ORDER BY created_ms DESC, id DESC LIMIT $1', [filter.limit]);
      return parseRollouts(rows);
    },
  };
}
