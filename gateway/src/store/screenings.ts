/**
 * Screenings (health data: authenticated users only): one row per screening id, the payload as
 * received (validated), kept until retention deletes it by receipt time.
 */
import type { Decision, Screening } from '@checkpoint/protocol';
import type { ReplacedTimestamp } from '../ingest/classify.js';
import type { Backend, Result } from './backend.js';
import type { Db } from './db.js';
import { whereGiven } from './sql-filter.js';

/** What the API and the live feed show of a screening. */
export interface ScreeningSummary {
  id: string;
  ts: string;
  site: string;
  checkpoint: string;
  decision: Decision;
  reasons: string[];
  mask: Screening['mask'];
  temperatureC: number | null;
  thresholdC: number;
  mode: Screening['mode'];
  snapshot: boolean;
  /** Set when the device's ts named no instant: `ts` is then the gateway's receive time. */
  tsReplaced?: ReplacedTimestamp[];
  /** Which camera found the face (newer agents only). */
  detectedBy?: Screening['detectedBy'];
}

export function summarize(s: Screening, tsReplaced?: ReplacedTimestamp[] | null): ScreeningSummary {
  return {
    id: s.id,
    ts: s.ts,
    site: s.site,
    checkpoint: s.checkpoint,
    decision: s.decision,
    reasons: s.reasons,
    mask: s.mask,
    temperatureC: s.temperatureC,
    thresholdC: s.thresholdC,
    mode: s.mode,
    snapshot: s.snapshot,
    ...(tsReplaced?.length ? { tsReplaced } : {}),
    ...(s.detectedBy ? { detectedBy: s.detectedBy } : {}),
  };
}

export interface ScreeningFilter {
  site?: string;
  checkpoint?: string;
  fromMs?: number;
  toMs?: number;
  decision?: Decision;
  limit: number;
}

export interface ScreeningStore<B extends Backend = 'sync'> {
  /** False when this id is stored already (nothing changed). Throws when `s.ts` names no instant. */
  insert(s: Screening, receivedMs: number, tsReplaced?: ReplacedTimestamp[]): Result<boolean, B>;
  summary(id: string): Result<ScreeningSummary | null, B>;
  /** Newest first (by ts, then id). */
  list(f: ScreeningFilter): Result<ScreeningSummary[], B>;
  /** Invalid screenings of a checkpoint with ts in [fromMs, toMs], other than `exceptId`. */
  countInvalid(site: string, checkpoint: string, fromMs: number, toMs: number, exceptId: string): Result<number, B>;
  /** Deletes those received before `ms`; how many went. */
  deleteReceivedBefore(ms: number): Result<number, B>;
}

/** What a screening summary is read from (both backends). */
export interface PayloadRow {
  payload: string;
  ts_replaced: string | null;
}

export const summarizeRow = (r: PayloadRow) => summarize(JSON.parse(r.payload) as Screening, r.ts_replaced ? (JSON.parse(r.ts_replaced) as ReplacedTimestamp[]) : null);

export function createSqliteScreeningStore(db: Db): ScreeningStore {
  const st = {
    insert: db.prepare(
      `INSERT OR IGNORE INTO screenings (id, ts_ms, site, checkpoint, decision, mask, temperature_c, payload, received_ms, ts_replaced)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    ),
    payload: db.prepare<[string], PayloadRow>('SELECT payload, ts_replaced FROM screenings WHERE id = ?'),
    countInvalid: db.prepare<[string, string, number, number, string], { n: number }>(
      `SELECT count(*) AS n FROM screenings WHERE site = ? AND checkpoint = ? AND decision = 'invalid' AND ts_ms BETWEEN ? AND ? AND id != ?`,
    ),
    deleteBefore: db.prepare('DELETE FROM screenings WHERE received_ms < ?'),
  };
  return {
    insert(s, receivedMs, tsReplaced) {
      const tsMs = Date.parse(s.ts);
      // A NaN here would make the NOT NULL insert a silent IGNORE (counted as a duplicate): refuse loudly.
      if (!Number.isFinite(tsMs)) throw new Error(`screening ${s.id}: ts is not an instant`);
      // Positional: binding named parameters from an object costs more, once per screening.
      const r = st.insert.run(s.id, tsMs, s.site, s.checkpoint, s.decision, s.mask, s.temperatureC, JSON.stringify(s), receivedMs, tsReplaced?.length ? JSON.stringify(tsReplaced) : null);
      return r.changes > 0;
    },
    summary(id) {
      const row = st.payload.get(id);
      return row ? summarizeRow(row) : null;
    },
    list(f) {
      const { where, args } = whereGiven([
        ['site = ?', f.site],
        ['checkpoint = ?', f.checkpoint],
        ['ts_ms >= ?', f.fromMs],
        ['ts_ms < ?', f.toMs],
        ['decision = ?', f.decision],
      ]);
      const sql = `SELECT payload, ts_replaced FROM screenings ${where} ORDER BY ts_ms DESC, id DESC LIMIT ?`;
      return db
        .prepare<Array<string | number>, PayloadRow>(sql)
        .all(...args, f.limit)
        .map(summarizeRow);
    },
    countInvalid: (site, checkpoint, fromMs, toMs, exceptId) => st.countInvalid.get(site, checkpoint, fromMs, toMs, exceptId)!.n,
    deleteReceivedBefore: (ms) => st.deleteBefore.run(ms).changes,
  };
}
