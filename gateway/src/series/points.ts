/**
 * Time-series points from contract payloads (pure). Schema rules from InfluxDB's guidance:
 * tags are low-cardinality strings (site, checkpoint, decision, mask); ids and readings are
 * fields; tag and field names never collide; every number is a float so field types never
 * conflict between writes.
 */
import { hash } from 'node:crypto';
import type { CheckpointState, Screening, Telemetry } from '@checkpoint/protocol';
import type { RobotSample } from '../fleet/index.js';

export type FieldValue = number | string | boolean;

export interface SeriesPoint {
  measurement: 'screening' | 'telemetry' | 'device_state' | 'robot_state';
  tags: Record<string, string>;
  fields: Record<string, FieldValue>;
  /** Nanoseconds since the epoch, as a decimal string (beyond JS number precision). */
  timeNs: string;
}

/**
 * InfluxDB keeps one point per (measurement, tag set, timestamp): a second write overwrites.
 * That makes re-writing a batch after a crash harmless, but two people screened in the same
 * millisecond at one checkpoint with equal tags would collide. So the sub-millisecond digits
 * are derived from the screening id: distinct ids almost never collide, and the same id always
 * maps to the same timestamp (idempotent re-writes).
 */
export function screeningTimeNs(tsMs: number, id: string): string {
  // One-shot hash: the same digest as createHash('sha1'), without a Hash object per point.
  const subMs = hash('sha1', id, 'buffer').readUInt32BE(0) % 1_000_000;
  return `${tsMs}${String(subMs).padStart(6, '0')}`;
}

export const msToNs = (ms: number): string => `${ms}000000`;

function putNumber(fields: Record<string, FieldValue>, key: string, value: number | null | undefined): void {
  if (typeof value === 'number' && Number.isFinite(value)) fields[key] = value;
}

export function screeningPoint(s: Screening): SeriesPoint {
  const fields: Record<string, FieldValue> = {
    id: s.id,
    trackId: s.trackId,
    faceScore: s.faceScore,
    thresholdC: s.thresholdC,
    frames: s.frames,
    latencyMs: s.latencyMs,
    mode: s.mode,
    reasons: s.reasons.join(','),
    snapshot: s.snapshot,
    model: s.model.name,
  };
  putNumber(fields, 'temperatureC', s.temperatureC);
  putNumber(fields, 'ambientC', s.ambientC);
  putNumber(fields, 'maskScore', s.maskScore);
  if (s.method) fields.method = s.method;
  if (s.blackbody) putNumber(fields, 'blackbodyOffsetC', s.blackbody.offsetC);
  return {
    measurement: 'screening',
    tags: { site: s.site, checkpoint: s.checkpoint, decision: s.decision, mask: s.mask },
    fields,
    timeNs: screeningTimeNs(Date.parse(s.ts), s.id),
  };
}

export function telemetryPoint(t: Telemetry): SeriesPoint {
  const fields: Record<string, FieldValue> = { fps: t.fps, queueDepth: t.queueDepth };
  putNumber(fields, 'cpuTempC', t.cpuTempC);
  putNumber(fields, 'ambientC', t.ambientC);
  putNumber(fields, 'rssMb', t.rssMb);
  putNumber(fields, 'droppedFrames', t.droppedFrames);
  if (t.blackbody) {
    putNumber(fields, 'blackbodySetC', t.blackbody.setC);
    putNumber(fields, 'blackbodyMeasuredC', t.blackbody.measuredC);
    fields.blackbodyStatus = t.blackbody.status;
  }
  for (const [stage, ms] of Object.entries(t.stages)) putNumber(fields, `stage_${stage}_ms`, ms);
  return { measurement: 'telemetry', tags: { site: t.site, checkpoint: t.checkpoint }, fields, timeNs: msToNs(Date.parse(t.ts)) };
}

export function deviceStatePoint(s: CheckpointState): SeriesPoint {
  const fields: Record<string, FieldValue> = { status: s.status, online: s.status === 'online' ? 1 : 0 };
  if (s.calibration) {
    fields.reference = s.calibration.reference;
    fields.mode = s.calibration.mode;
    fields.thresholdC = s.calibration.thresholdC;
  }
  if (s.sources) fields.thermalSource = s.sources.thermal.status;
  return { measurement: 'device_state', tags: { site: s.site, checkpoint: s.checkpoint }, fields, timeNs: msToNs(Date.parse(s.ts)) };
}

/**
 * One accepted VDA 5050 state of a robot. Tags: the robot's manufacturer and serial number (a
 * site has tens of robots, like checkpoints); the task id and node are fields. Time: receive
 * time (robots' clocks are not trusted to be in sync).
 */
export function robotStatePoint(s: RobotSample): SeriesPoint {
  const [manufacturer, serialNumber] = s.robot.split('/') as [string, string];
  const fields: Record<string, FieldValue> = {
    batteryPct: s.batteryPct,
    charging: s.charging ? 1 : 0,
    driving: s.driving ? 1 : 0,
    errors: s.errors,
  };
  if (s.lastNodeId !== null) fields.lastNodeId = s.lastNodeId;
  putNumber(fields, 'x', s.x);
  putNumber(fields, 'y', s.y);
  if (s.taskId !== null) fields.taskId = s.taskId;
  return { measurement: 'robot_state', tags: { manufacturer, serialNumber }, fields, timeNs: msToNs(s.at) };
}

/** InfluxDB's int64 nanosecond range (its MinNanoTime/MaxNanoTime); SQLite series use the same. */
const MIN_TIME_NS = -9_223_372_036_854_775_806n;
const MAX_TIME_NS = 9_223_372_036_854_775_806n;

/**
 * Why no series store can take this point, or null (pure). The writer sets such points aside
 * (`series_rejected`) instead of retrying them forever: one bad point must not stop the spool.
 */
export function pointProblem(p: SeriesPoint): string | null {
  if (typeof p.measurement !== 'string' || p.measurement.length === 0) return 'no measurement';
  if (typeof p.timeNs !== 'string' || !/^-?\d{1,19}$/.test(p.timeNs)) return `time ${JSON.stringify(String(p.timeNs).slice(0, 40))} is not an integer of nanoseconds`;
  const ns = BigInt(p.timeNs);
  if (ns < MIN_TIME_NS || ns > MAX_TIME_NS) return `time ${p.timeNs} ns is outside the range a series store can hold`;
  const fields = Object.entries(p.fields ?? {});
  if (fields.length === 0) return 'no fields';
  for (const [key, value] of fields) {
    if (typeof value === 'number' && !Number.isFinite(value)) return `field ${key} is not a finite number`;
    if (!['number', 'string', 'boolean'].includes(typeof value)) return `field ${key} has no series type`;
  }
  for (const [key, value] of Object.entries(p.tags ?? {})) if (typeof value !== 'string' || value.length === 0) return `tag ${key} is empty`;
  return null;
}
