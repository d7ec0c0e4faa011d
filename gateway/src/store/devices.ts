/** Checkpoints as the gateway knows them: last seen, last state (as sent) and last telemetry. */
import type { CheckpointState, Telemetry } from '@checkpoint/protocol';
import type { Backend, Result } from './backend.js';
import type { Db } from './db.js';

export interface DeviceView {
  site: string;
  checkpoint: string;
  status: 'online' | 'offline' | 'unknown';
  lastSeen: string;
  stateAt: string | null;
  versions: Record<string, string> | null;
  model: { name: string; sha256: string } | null;
  sources: CheckpointState['sources'] | null;
  calibration: CheckpointState['calibration'] | null;
  /** The agent's last telemetry: fps, median stage times (ms), blackbody reading, outbox, CPU, memory. */
  telemetry: DeviceTelemetry | null;
}

export type DeviceTelemetry = Pick<Telemetry, 'ts' | 'fps' | 'stages' | 'queueDepth' | 'cpuTempC' | 'ambientC' | 'blackbody'> & { rssMb: number | null };

export interface DeviceStore<B extends Backend = 'sync'> {
  /** Known from now on; last seen moves forward only. */
  seen(site: string, checkpoint: string, atMs: number): Result<void, B>;
  /** The last state as stored (JSON text, to tell a repeated retained state), null if none. */
  stateJson(site: string, checkpoint: string): Result<string | null, B>;
  /** Of a device already `seen`. */
  setState(state: CheckpointState, json: string, tsMs: number): Result<void, B>;
  /** Of a device already `seen`. */
  setTelemetry(t: Telemetry): Result<void, B>;
  get(site: string, checkpoint: string): Result<DeviceView | null, B>;
  /** By site, then checkpoint. */
  list(): Result<DeviceView[], B>;
}

/** A device as a row of `devices` (both backends). */
export interface DeviceRow {
  site: string;
  checkpoint: string;
  status: DeviceView['status'];
  state: string | null;
  state_ts_ms: number | null;
  telemetry: string | null;
  last_seen_ms: number;
}

export function toDeviceView(r: DeviceRow): DeviceView {
  const state = r.state ? (JSON.parse(r.state) as CheckpointState) : null;
  const t = r.telemetry ? (JSON.parse(r.telemetry) as Telemetry) : null;
  return {
    site: r.site,
    checkpoint: r.checkpoint,
    status: r.status,
    lastSeen: new Date(r.last_seen_ms).toISOString(),
    stateAt: r.state_ts_ms === null ? null : new Date(r.state_ts_ms).toISOString(),
    versions: state?.versions ?? null,
    model: state?.model ?? null,
    sources: state?.sources ?? null,
    calibration: state?.calibration ?? null,
    telemetry: t
      ? { ts: t.ts, fps: t.fps, stages: t.stages, queueDepth: t.queueDepth, cpuTempC: t.cpuTempC, ambientC: t.ambientC, blackbody: t.blackbody, rssMb: t.rssMb ?? null }
      : null,
  };
}

export function createSqliteDeviceStore(db: Db): DeviceStore {
  const st = {
    seen: db.prepare(
      `INSERT INTO devices (site, checkpoint, last_seen_ms) VALUES (?, ?, ?)
       ON CONFLICT(site, checkpoint) DO UPDATE SET last_seen_ms = max(last_seen_ms, excluded.last_seen_ms)`,
    ),
    state: db.prepare<[string, string], { state: string | null }>('SELECT state FROM devices WHERE site = ? AND checkpoint = ?'),
    setState: db.prepare('UPDATE devices SET status = ?, state = ?, state_ts_ms = ? WHERE site = ? AND checkpoint = ?'),
    setTelemetry: db.prepare('UPDATE devices SET telemetry = ? WHERE site = ? AND checkpoint = ?'),
    get: db.prepare<[string, string], DeviceRow>('SELECT * FROM devices WHERE site = ? AND checkpoint = ?'),
    list: db.prepare<[], DeviceRow>('SELECT * FROM devices ORDER BY site, checkpoint'),
  };
  return {
    seen(site, checkpoint, atMs) {
      st.seen.run(site, checkpoint, atMs);
    },
    stateJson: (site, checkpoint) => st.state.get(site, checkpoint)?.state ?? null,
    setState(state, json, tsMs) {
      st.setState.run(state.status, json, tsMs, state.site, state.checkpoint);
    },
    setTelemetry(t) {
      st.setTelemetry.run(JSON.stringify(t), t.site, t.checkpoint);
    },
    get(site, checkpoint) {
      const row = st.get.get(site, checkpoint);
      return row ? toDeviceView(row) : null;
    },
    list: () => st.list.all().map(toDeviceView),
  };
}
