/**
 * The blackbody reference (pure state machine).
 *
 * Cheap thermal cores drift by a degree or more; a blackbody at a known set point in every
 * frame measures that drift. offset = set point - measured, smoothed over frames, is added to
 * every face reading. A reading is refused when the region is not uniform (someone stands in
 * front of it) or far from the set point (the blackbody is off or out of view); when no good
 * reading has arrived for `staleAfterMs`, the reference is stale and absolute mode stops.
 */
import type { ReferenceStatus } from '@checkpoint/protocol';
import type { BlackbodyRegion, ThermalFrame } from '../frames.js';
import { regionStats } from './measure.js';

export interface ReferenceOptions {
  /** Largest believable |set - measured|: beyond it the blackbody is not what we see. */
  maxOffsetC: number;
  /** Largest inter-decile spread across the region for a uniform (unblocked) blackbody. */
  maxSpreadC: number;
  /** Exponential smoothing factor per accepted frame (0..1, higher = faster). */
  smoothing: number;
  /** A jump of the raw reading from the smoothed value beyond this is a disturbance, not drift. */
  maxJumpC: number;
  staleAfterMs: number;
  /** Consecutive jumped frames after which the new level is accepted as real. */
  relockFrames: number;
  /** Accepted frames needed before the reference is trusted. */
  warmupFrames: number;
}

export const DEFAULT_REFERENCE_OPTIONS: ReferenceOptions = {
  maxOffsetC: 4,
  maxSpreadC: 0.6,
  smoothing: 0.2,
  maxJumpC: 0.5,
  staleAfterMs: 5000,
  relockFrames: 10,
  warmupFrames: 3,
};

export interface ReferenceState {
  status: ReferenceStatus;
  /** Smoothed measured temperature of the blackbody, °C. */
  measuredC: number | null;
  /** Smoothed set - measured, °C. */
  offsetC: number | null;
  accepted: number;
  lastGoodMs: number | null;
  /** Consecutive rejected frames (disturbances), for the unstable state. */
  rejectedRun: number;
}

export function initialReference(region: BlackbodyRegion | null): ReferenceState {
  return {
    status: region ? 'not_seen' : 'not_configured',
    measuredC: null,
    offsetC: null,
    accepted: 0,
    lastGoodMs: null,
    rejectedRun: 0,
  };
}

export function updateReference(
  state: ReferenceState,
  frame: ThermalFrame,
  region: BlackbodyRegion | null,
  options: ReferenceOptions = DEFAULT_REFERENCE_OPTIONS,
): ReferenceState {
  if (!region) return state.status === 'not_configured' ? state : initialReference(null);
  const now = frame.timestampMs;
  const stats = regionStats(frame, { x1: region.x, y1: region.y, x2: region.x + region.w, y2: region.y + region.h });
  const plausible =
    stats !== null && Math.abs(region.setC - stats.median) <= options.maxOffsetC && stats.spread <= options.maxSpreadC;
  const jump = plausible && state.measuredC !== null && Math.abs(stats.median - state.measuredC) > options.maxJumpC;
  // A jump that persists is a real change (e.g. the core's flat-field correction): re-lock on it.
  const relock = jump && state.rejectedRun >= options.relockFrames;

  if (!plausible || (jump && !relock)) {
    const rejectedRun = state.rejectedRun + 1;
    let status: ReferenceStatus;
    if (state.lastGoodMs === null) status = 'not_seen';
    else if (now - state.lastGoodMs > options.staleAfterMs) status = 'stale';
    else status = rejectedRun >= 3 ? 'unstable' : state.status;
    return { ...state, status, rejectedRun };
  }
  const previous = relock ? null : state.measuredC;
  const measuredC = previous === null ? stats.median : previous + options.smoothing * (stats.median - previous);
  const accepted = relock ? 1 : state.accepted + 1;
  return {
    status: accepted >= options.warmupFrames ? 'ok' : 'not_seen',
    measuredC,
    offsetC: region.setC - measuredC,
    accepted,
    lastGoodMs: now,
    rejectedRun: 0,
  };
}

/**
 * Whether absolute-mode readings may use the reference now. A briefly blocked blackbody
 * (`unstable`, last good reading younger than staleAfterMs) still gives a valid offset:
 * drift is slow compared with a person walking past.
 */
export function referenceUsable(state: ReferenceState): boolean {
  return (state.status === 'ok' || state.status === 'unstable') && state.offsetC !== null;
}
