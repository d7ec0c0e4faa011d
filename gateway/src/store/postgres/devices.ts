/** Checkpoints on PostgreSQL (the contract: ../devices.ts). */
import { toDeviceView, type DeviceRow, type DeviceStore } from '../devices.js';
import { num, numOrNull, type Queryable } from './values.js';

type PgDeviceRow = Omit<DeviceRow, 'state_ts_ms' | 'last_seen_ms'> & { state_ts_ms: string | null; last_seen_ms: string };
const fromPg = (r: PgDeviceRow): DeviceRow => ({ ...r, state_ts_ms: numOrNull(r.state_ts_ms), last_seen_ms: num(r.last_seen_ms) });

export function createPostgresDeviceStore(pool: Queryable): DeviceStore<'async'> {
  return {
    async seen(site, checkpoint, atMs) {
      await pool.query(
        `INSERT INTO devices (site, checkpoint, last_seen_ms) VALUES ($1, $2, $3)
         ON CONFLICT (site, checkpoint) DO UPDATE SET last_seen_ms = GREATEST(devices.last_seen_ms, excluded.last_seen_ms)`,
        [site, checkpoint, atMs],
      );
    },
    async stateJson(site, checkpoint) {
      const { rows } = await pool.query<{ state: string | null }>('SELECT state FROM devices WHERE site = $1 AND checkpoint = $2', [site, checkpoint]);
      return rows[0]?.state ?? null;
    },
    async setState(state, json, tsMs) {
      await pool.query('UPDATE devices SET status = $1, state = $2, state_ts_ms = $3 WHERE site = $4 AND checkpoint = $5', [state.status, json, tsMs, state.site, state.checkpoint]);
    },
    async setTelemetry(t) {
      await pool.query('UPDATE devices SET telemetry = $1 WHERE site = $2 AND checkpoint = $3', [JSON.stringify(t), t.site, t.checkpoint]);
    },
    async get(site, checkpoint) {
      const { rows } = await pool.query<PgDeviceRow>('SELECT * FROM devices WHERE site = $1 AND checkpoint = $2', [site, checkpoint]);
      return rows[0] ? toDeviceView(fromPg(rows[0])) : null;
    },
    async list() {
      // COLLATE "C": the same byte order as SQLite's, whatever the database's locale.
      const { rows } = await pool.query<PgDeviceRow>('SELECT * FROM devices ORDER BY site COLLATE "C", checkpoint COLLATE "C"');
      return rows.map((r) => toDeviceView(fromPg(r)));
    },
  };
}
