/**
 * Staged model roll-outs as a state machine (pure functions, no I/O; the service persists the
 * state and sends the commands). Like hawkBit's rollouts: the targets are split into stages
 * (e.g. 10 % → 50 % → 100 %, or batches of 1, 5, ...); a stage starts when the previous one has
 * finished, and the roll-out stops by itself as soon as the failures pass the threshold.
 *
 *   device:  pending → sent → updating (progress acks) → succeeded | failed;  pending → skipped (halted)
 *   rollout: running → completed | halted | cancelled
 */
import { createHash } from 'node:crypto';
import { deviceKey, type DeviceRef } from './tokens.js';

export type DeviceUpdateStatus = 'pending' | 'sent' | 'updating' | 'succeeded' | 'failed' | 'skipped';
export type RolloutStatus = 'running' | 'completed' | 'halted' | 'cancelled';

export interface RolloutDevice extends DeviceRef {
  stage: number;
  status: DeviceUpdateStatus;
  commandId: string | null;
  /** 0..1 from the agent's progress acks. */
  progress: number | null;
  error: string | null;
  /** The agent's final ack detail, e.g. {model, version, sha256, selfTest}. */
  detail: Record<string, unknown> | null;
  sentMs: number | null;
  finishedMs: number | null;
}

export interface ModelVersionRef {
  name: string;
  version: string;
  sha256: string;
  sizeBytes: number;
}

export interface Rollout {
  id: string;
  model: ModelVersionRef;
  status: RolloutStatus;
  /** Index of the stage running now (or the last one run). */
  stage: number;
  /** Cumulative device counts: stage i covers devices[0 .. stageEnds[i]). */
  stageEnds: number[];
  /** Halt when failed / started devices exceeds this (0 = the first failure halts). */
  failureThreshold: number;
  devices: RolloutDevice[];
  createdBy: string;
  createdMs: number;
  finishedMs: number | null;
  reason: string | null;
}

export type Target = DeviceRef | { site: string; percent: number };

export interface StagesSpec {
  /** Cumulative percentages of the targets, increasing, e.g. [10, 50, 100]. */
  stages?: number[];
  /** Or devices per stage, e.g. [1, 2, 5]; devices left over form a last stage. */
  batchSizes?: number[];
}

export class RolloutPlanError extends Error {}

/** A stable pseudo-random order, so that "10 % of a site" picks the same canaries every time. */
const spread = (d: DeviceRef) => createHash('sha256').update(deviceKey(d)).digest('hex');

/**
 * The devices a roll-out covers, in order: listed checkpoints as listed, then each percentage of
 * a site's `known` devices. Unknown checkpoints and empty selections are refused by name.
 */
export function resolveTargets(targets: Target[], known: DeviceRef[]): DeviceRef[] {
  const knownKeys = new Set(known.map(deviceKey));
  const chosen: DeviceRef[] = [];
  const seen = new Set<string>();
  const add = (d: DeviceRef) => {
    if (!seen.has(deviceKey(d))) {
      seen.add(deviceKey(d));
      chosen.push({ site: d.site, checkpoint: d.checkpoint });
    }
  };
  targets.forEach((t, i) => {
    if ('checkpoint' in t) {
      if (!knownKeys.has(deviceKey(t))) throw new RolloutPlanError(`targets/${i}: unknown checkpoint ${deviceKey(t)} (not provisioned and never seen)`);
      add(t);
    } else {
      const site = known.filter((d) => d.site === t.site).sort((a, b) => spread(a).localeCompare(spread(b)));
      if (site.length === 0) throw new RolloutPlanError(`targets/${i}: site ${t.site} has no known checkpoints`);
      site.slice(0, Math.ceil((t.percent / 100) * site.length)).forEach(add);
    }
  });
  if (chosen.length === 0) throw new RolloutPlanError('targets: no devices selected');
  return chosen;
}

/** Cumulative device counts per stage for `n` devices. */
export function stageEnds(n: number, spec: StagesSpec): number[] {
  if (spec.stages && spec.batchSizes) throw new RolloutPlanError('give stages (percentages) or batchSizes, not both');
  const ends: number[] = [];
  if (spec.batchSizes) {
    let total = 0;
    for (const size of spec.batchSizes) {
      total = Math.min(n, total + size);
      if (ends.at(-1) !== total) ends.push(total);
    }
  } else {
    const stages = spec.stages ?? [100];
    stages.forEach((p, i) => {
      if (i > 0 && p <= stages[i - 1]!) throw new RolloutPlanError(`stages/${i}: percentages must increase (${stages[i - 1]} then ${p})`);
    });
    for (const p of stages) {
      const end = Math.max(1, Math.ceil((p / 100) * n));
      if (ends.at(-1) !== end) ends.push(Math.min(n, end));
    }
  }
  if (ends.at(-1) !== n) ends.push(n);
  return ends;
}

export function planRollout(input: {
  id: string;
  model: ModelVersionRef;
  devices: DeviceRef[];
  stages: StagesSpec;
  failureThreshold: number;
  createdBy: string;
  nowMs: number;
}): Rollout {
  const ends = stageEnds(input.devices.length, input.stages);
  return {
    id: input.id,
    model: input.model,
    status: 'running',
    stage: 0,
    stageEnds: ends,
    failureThreshold: input.failureThreshold,
    devices: input.devices.map((d, i) => ({
      site: d.site,
      checkpoint: d.checkpoint,
      stage: ends.findIndex((end) => i < end),
      status: 'pending',
      commandId: null,
      progress: null,
      error: null,
      detail: null,
      sentMs: null,
      finishedMs: null,
    })),
    createdBy: input.createdBy,
    createdMs: input.nowMs,
    finishedMs: null,
    reason: null,
  };
}

const FINISHED: readonly DeviceUpdateStatus[] = ['succeeded', 'failed', 'skipped'];
const copy = (r: Rollout): Rollout => structuredClone(r);

/** Devices of the current stage still to be sent the command (none unless running). */
export function devicesToSend(r: Rollout): RolloutDevice[] {
  if (r.status !== 'running') return [];
  return r.devices.filter((d) => d.stage === r.stage && d.status === 'pending');
}

function findDevice(r: Rollout, where: DeviceRef): RolloutDevice {
  const d = r.devices.find((x) => x.site === where.site && x.checkpoint === where.checkpoint);
  if (!d) throw new Error(`rollout ${r.id} has no device ${deviceKey(where)}`);
  return d;
}

/** The command went out to a pending device of a running roll-out; anything else (cancelled, or already sent by another gateway) is left alone. */
export function markSent(r: Rollout, where: DeviceRef, commandId: string, nowMs: number): Rollout {
  if (r.status !== 'running' || findDevice(r, where).status !== 'pending') return r;
  const next = copy(r);
  const d = findDevice(next, where);
  Object.assign(d, { status: 'sent', commandId, sentMs: nowMs, progress: 0, error: null });
  return next;
}

/** A progress ack; ignored once the device has finished. */
export function markProgress(r: Rollout, where: DeviceRef, commandId: string, progress: number): Rollout {
  const next = copy(r);
  const d = findDevice(next, where);
  if (d.commandId !== commandId || FINISHED.includes(d.status)) return r;
  Object.assign(d, { status: 'updating', progress });
  return next;
}

export type DeviceOutcome = { ok: true; detail: Record<string, unknown> | null } | { ok: false; error: string };

/** The final ack (or a timeout) of one device; then {@link advance}. */
export function markResult(r: Rollout, where: DeviceRef, commandId: string, outcome: DeviceOutcome, nowMs: number): Rollout {
  const next = copy(r);
  const d = findDevice(next, where);
  if (d.commandId !== commandId || FINISHED.includes(d.status)) return r;
  d.finishedMs = nowMs;
  if (outcome.ok) Object.assign(d, { status: 'succeeded', progress: 1, detail: outcome.detail });
  else Object.assign(d, { status: 'failed', error: outcome.error });
  return advance(next, nowMs);
}

export function counts(r: Rollout): Record<DeviceUpdateStatus, number> {
  const c = { pending: 0, sent: 0, updating: 0, succeeded: 0, failed: 0, skipped: 0 };
  for (const d of r.devices) c[d.status]++;
  return c;
}

/**
 * Halts when the failures among the devices started so far pass the threshold (at once, not at
 * the end of the stage: devices still updating finish, nobody new is started); starts the next
 * stage when the current one has finished; completes after the last.
 */
export function advance(r: Rollout, nowMs: number): Rollout {
  if (r.status !== 'running') return r;
  const next = copy(r);
  const started = next.devices.filter((d) => d.stage <= next.stage);
  const failed = started.filter((d) => d.status === 'failed').length;
  if (failed > 0 && failed / started.length > next.failureThreshold) {
    for (const d of next.devices) if (d.status === 'pending') d.status = 'skipped';
    next.status = 'halted';
    next.reason = `${failed} of ${started.length} started devices failed (threshold ${Math.round(next.failureThreshold * 100)} %); halted in stage ${next.stage + 1} of ${next.stageEnds.length}`;
    next.finishedMs = nowMs;
    return next;
  }
  if (!started.every((d) => FINISHED.includes(d.status))) return next;
  if (next.stage + 1 < next.stageEnds.length) {
    next.stage++;
    return next;
  }
  next.status = 'completed';
  next.finishedMs = nowMs;
  next.reason = failed > 0 ? `${failed} of ${next.devices.length} devices failed (within the threshold)` : null;
  return next;
}

export function cancel(r: Rollout, by: string, nowMs: number): Rollout {
  if (r.status !== 'running') return r;
  const next = copy(r);
  for (const d of next.devices) if (d.status === 'pending') d.status = 'skipped';
  next.status = 'cancelled';
  next.reason = `cancelled by ${by}`;
  next.finishedMs = nowMs;
  return next;
}

/** Whether `where` may download the roll-out's model now: it was sent the command and has not finished. */
export function mayDownload(r: Rollout, where: DeviceRef): boolean {
  const d = r.devices.find((x) => x.site === where.site && x.checkpoint === where.checkpoint);
  return d !== undefined && (d.status === 'sent' || d.status === 'updating');
}
