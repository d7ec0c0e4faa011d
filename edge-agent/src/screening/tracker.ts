/**
 * Face tracker (pure): follows people, not boxes, so that the agent makes exactly one decision
 * per person from several frames. SORT-style (Bewley et al. 2016; Frigate's tracker is the same
 * family), small enough to own:
 *
 * - Each track carries a constant-velocity motion model of its face box (centre, width, and their
 *   per-frame velocities, smoothed by an alpha-beta filter: a steady-state Kalman filter).
 * - Every frame, each track's box is predicted forward; detections are associated greedily by the
 *   distance between predicted and detected centres relative to the face size (plus overlap),
 *   inside a gate that widens with every frame the track has gone unseen. Distance rather than
 *   IoU alone: a 60 px face walking 40 px per frame barely overlaps its last box.
 * - A decided track keeps following its face (box and motion updated, no new observations), so
 *   a walking person never gets a second decision.
 * - A track unseen by both cameras coasts on its prediction for `maxMissedFrames` frames: a
 *   person found again near the predicted place in that window is the same person (no second
 *   decision). The window is short on purpose: the next person in line steps into the same place
 *   about half a second later, and taking them for the previous one would let them pass
 *   unscreened. Dropouts of one camera (the visible model missing a blurred, turned or small
 *   face for a second or more) do not count as unseen: the thermal warm-face finder keeps the
 *   track fed. After two unseen frames a face is only taken back if it still looks like the
 *   person: same mask state and an apparent temperature within `reidentifyC`.
 *   Coasting stops once the prediction leaves the frame.
 * - Several people are tracked independently. Resources are bounded: a track holds at most
 *   `maxTrackFrames` observations (a sliding window while unconfirmed) and at most `maxTracks`
 *   tracks live at once (unconfirmed and coasting ones are dropped first).
 */
import type { MaskState } from '@checkpoint/protocol';
import { iou, type Box } from '../geometry.js';
import type { FaceMeasurement } from '../thermometry/measure.js';

export type DetectedBy = 'visible' | 'thermal' | 'both';

/** Everything the decision needs from one face in one frame. */
export interface Observation {
  seq: number;
  timestampMs: number;
  /** Face box in the detection image (visible frame, or thermal when there is none). */
  box: Box;
  faceScore: number;
  mask: MaskState;
  maskScore: number | null;
  /**
   * Confident faces whose thermal region overlaps this one, itself included: more than one makes
   * the reading ambiguous (people in a queue who stand apart do not).
   */
  facesInFrame: number;
  measurement: FaceMeasurement;
  /** Blackbody offset usable for this frame, or null without a reference. */
  referenceOffsetC: number | null;
  referenceMeasuredC: number | null;
  /** Which sensor found this face in this frame (default `visible`). */
  detectedBy?: DetectedBy;
  /** The face touches the frame border (partly out of the picture). */
  atEdge?: boolean;
}

/** Face box motion: centre and width in pixels, velocities in pixels per frame. */
export interface Motion {
  cx: number;
  cy: number;
  w: number;
  h: number;
  vx: number;
  vy: number;
  vw: number;
}

export interface Track {
  id: number;
  /** Observations the decision will use (undecided tracks only grow this). */
  observations: Observation[];
  /** Frames since the face was last associated. */
  missed: number;
  /** Set once a decision has been made for this track; later frames only move it. */
  decided: boolean;
  motion: Motion;
  /** Frames associated in all (also after the decision). */
  hits: number;
  /** Best detector score seen, and frames the thermal warm-face finder saw it. */
  bestScore: number;
  thermalHits: number;
}

export interface TrackerOptions {
  /** Overlap that alone is enough to associate (with no motion known yet). */
  iouThreshold: number;
  /** Frames a track survives unseen by both cameras (0.46 s at 8.7 fps; see above). */
  maxMissedFrames: number;
  /** After two unseen frames, a face re-identifies a track only within this many °C (apparent). */
  reidentifyC: number;
  /** Association gate: predicted-to-detected centre distance over face width, for a track with known motion. */
  gate: number;
  /** The gate for a track seen once (no velocity yet): fast small faces move far. */
  firstGate: number;
  /** The gate grows by this for every frame the track went unseen. */
  gatePerMissedFrame: number;
  /** Decide as soon as this many frames have a thermal reading (lower latency at the gate). */
  framesPerDecision: number;
  /** Tracks shorter than this when they end are treated as spurious detections. */
  minTrackFrames: number;
  /** Cap on a track's observations: a person standing still is still decided. */
  maxTrackFrames: number;
  /**
   * A track counts as a person once one of its frames scored this high on the visible detector,
   * or the thermal warm-face finder saw it in `minThermalFrames` frames. Frames are associated
   * at a lower per-frame threshold, so a face the detector is unsure of in some frames still gets
   * one decision, while a low-score blip never does.
   */
  confirmScore: number;
  minThermalFrames: number;
  /** At most this many tracks at once. */
  maxTracks: number;
}

export const DEFAULT_TRACKER_OPTIONS: TrackerOptions = {
  iouThreshold: 0.3,
  maxMissedFrames: 4,
  reidentifyC: 0.8,
  gate: 0.6,
  firstGate: 1.0,
  gatePerMissedFrame: 0.2,
  framesPerDecision: 5,
  minTrackFrames: 2,
  maxTrackFrames: 60,
  confirmScore: 0.6,
  minThermalFrames: 3,
  maxTracks: 24,
};

export interface TrackerState {
  nextId: number;
  active: Track[];
}

export const initialTrackerState = (firstId = 1): TrackerState => ({ nextId: firstId, active: [] });

export interface TrackerUpdate {
  state: TrackerState;
  /** Tracks that reached a decision point in this frame (enough frames, or ended). */
  toDecide: Track[];
}

/** Frame size, so that coasting stops when a prediction leaves the picture. */
export interface FrameBounds {
  width: number;
  height: number;
}

const readings = (t: Track): number => t.observations.filter((o) => o.measurement.ok).length;
export const confirmed = (t: Track, options: TrackerOptions): boolean =>
  t.bestScore >= options.confirmScore || t.thermalHits >= options.minThermalFrames;

const centre = (b: Box): { x: number; y: number; w: number; h: number } => ({
  x: (b.x1 + b.x2) / 2,
  y: (b.y1 + b.y2) / 2,
  w: b.x2 - b.x1,
  h: b.y2 - b.y1,
});

const motionOf = (b: Box): Motion => {
  const c = centre(b);
  return { cx: c.x, cy: c.y, w: c.w, h: c.h, vx: 0, vy: 0, vw: 0 };
};

/** Where the track's face should be `steps` frames after it was last seen. */
export function predictBox(m: Motion, steps: number): Box {
  const w = Math.max(1, m.w + m.vw * steps);
  const h = Math.max(1, m.h * (w / m.w));
  const cx = m.cx + m.vx * steps;
  const cy = m.cy + m.vy * steps;
  return { x1: cx - w / 2, y1: cy - h / 2, x2: cx + w / 2, y2: cy + h / 2 };
}

const clampAbs = (v: number, max: number): number => Math.max(-max, Math.min(max, v));

// Alpha-beta gains: position follows the measurement closely (detector boxes are good), velocity
// adapts within a few frames (people change pace).
const ALPHA = 0.75;
const BETA = 0.45;

function updateMotion(m: Motion, box: Box, steps: number, hits: number): Motion {
  const z = centre(box);
  if (hits === 1) {
    // Second sighting: the velocity is the displacement itself (size: not yet, boxes are noisy).
    return { cx: z.x, cy: z.y, w: z.w, h: z.h, vx: (z.x - m.cx) / steps, vy: (z.y - m.cy) / steps, vw: 0 };
  }
  const p = predictBox(m, steps);
  const pc = centre(p);
  const rx = z.x - pc.x;
  const ry = z.y - pc.y;
  const rw = z.w - pc.w;
  return {
    cx: pc.x + ALPHA * rx,
    cy: pc.y + ALPHA * ry,
    w: pc.w + ALPHA * rw,
    h: z.h,
    vx: m.vx + (BETA * rx) / steps,
    vy: m.vy + (BETA * ry) / steps,
    // People come closer slowly; a box that jumps in size is the detector, not the person.
    vw: clampAbs(m.vw + (0.5 * BETA * rw) / steps, 0.1 * pc.w),
  };
}

const median = (values: number[]): number | null => {
  if (values.length === 0) return null;
  const s = [...values].sort((a, b) => a - b);
  return s[s.length >> 1]!;
};

/** Whether a face found again after a gap still looks like the track's person. */
function looksLike(track: Track, obs: Observation, options: TrackerOptions): boolean {
  const masks = track.observations.map((o) => o.mask).filter((m) => m !== 'unknown');
  const trackMask = masks.length > 0 ? (masks.filter((m) => m === 'mask').length * 2 >= masks.length ? 'mask' : 'no_mask') : null;
  if (trackMask !== null && obs.mask !== 'unknown' && obs.mask !== trackMask) return false;
  const trackC = median(track.observations.flatMap((o) => (o.measurement.ok ? [o.measurement.apparentC] : [])));
  if (trackC !== null && obs.measurement.ok && Math.abs(obs.measurement.apparentC - trackC) > options.reidentifyC) return false;
  return true;
}

/** A box cut to the picture, as a detector reports a face partly out of it. */
function clip(b: Box, frame: FrameBounds | undefined): Box {
  if (!frame) return b;
  const c = { x1: Math.max(0, b.x1), y1: Math.max(0, b.y1), x2: Math.min(frame.width, b.x2), y2: Math.min(frame.height, b.y2) };
  return c.x2 - c.x1 >= 1 && c.y2 - c.y1 >= 1 ? c : b;
}

/** Association cost of a detection for a track, or null outside the gate. */
function cost(track: Track, obs: Observation, options: TrackerOptions, frame: FrameBounds | undefined): number | null {
  const box = obs.box;
  const steps = track.missed + 1;
  if (track.missed >= 2 && !looksLike(track, obs, options)) return null;
  // Compared as the detector would see it: a face walking out of the picture is cut by its edge.
  const p = clip(predictBox(track.motion, steps), frame);
  const overlap = iou(p, box);
  const pc = centre(p);
  const z = centre(box);
  const size = Math.max(pc.w, z.w);
  const distance = Math.hypot(pc.x - z.x, pc.y - z.y) / size;
  const ratio = z.w / pc.w;
  const slack = options.gatePerMissedFrame * track.missed;
  // Wide on purpose: a thermal head box and a visible detector box of the same face differ in scale.
  if (ratio < 0.4 || ratio > 2.5 + slack) return null;
  const gate = (track.hits > 1 ? options.gate : options.firstGate) + slack;
  if (distance > gate && overlap < options.iouThreshold) return null;
  return distance - overlap;
}

function insideFrame(box: Box, frame: FrameBounds | undefined): boolean {
  if (!frame) return true;
  const c = centre(box);
  return c.x >= 0 && c.y >= 0 && c.x < frame.width && c.y < frame.height;
}

export function updateTracks(
  state: TrackerState,
  observations: Observation[],
  options: TrackerOptions = DEFAULT_TRACKER_OPTIONS,
  frame?: FrameBounds,
): TrackerUpdate {
  // Greedy association, cheapest pair first.
  const pairs: Array<{ t: number; o: number; cost: number }> = [];
  state.active.forEach((track, t) =>
    observations.forEach((obs, o) => {
      const c = cost(track, obs, options, frame);
      if (c !== null) pairs.push({ t, o, cost: c });
    }),
  );
  pairs.sort((a, b) => a.cost - b.cost);
  const matchedTrack = new Map<number, number>();
  const usedObs = new Set<number>();
  for (const p of pairs) {
    if (matchedTrack.has(p.t) || usedObs.has(p.o)) continue;
    matchedTrack.set(p.t, p.o);
    usedObs.add(p.o);
  }

  let nextId = state.nextId;
  const toDecide: Track[] = [];
  const active: Track[] = [];
  state.active.forEach((track, t) => {
    const o = matchedTrack.get(t);
    let updated: Track;
    if (o === undefined) {
      updated = { ...track, missed: track.missed + 1 };
    } else {
      const obs = observations[o]!;
      const window = track.observations.length >= options.maxTrackFrames ? track.observations.slice(1) : track.observations;
      updated = {
        ...track,
        missed: 0,
        motion: updateMotion(track.motion, obs.box, track.missed + 1, track.hits),
        hits: track.hits + 1,
        bestScore: Math.max(track.bestScore, obs.faceScore),
        thermalHits: track.thermalHits + (obs.detectedBy === 'thermal' || obs.detectedBy === 'both' ? 1 : 0),
        // A decided track only moves; its decision's observations stay as they were.
        observations: track.decided ? track.observations : [...window, obs],
      };
    }
    // A track ends when lost, or as soon as its predicted face has left the frame.
    const lost =
      updated.missed > options.maxMissedFrames || (updated.missed > 0 && !insideFrame(predictBox(updated.motion, updated.missed), frame));
    if (!updated.decided && confirmed(updated, options)) {
      const full = readings(updated) >= options.framesPerDecision || updated.observations.length >= options.maxTrackFrames;
      const endedLongEnough = lost && updated.hits >= options.minTrackFrames;
      if (full || endedLongEnough) {
        updated = { ...updated, decided: true };
        toDecide.push(updated);
      }
    }
    // (An undecided lost track was decided just above.)
    if (!lost) active.push(updated);
  });
  observations.forEach((obs, o) => {
    if (usedObs.has(o)) return;
    active.push({
      id: nextId++,
      observations: [obs],
      missed: 0,
      decided: false,
      motion: motionOf(obs.box),
      hits: 1,
      bestScore: obs.faceScore,
      thermalHits: obs.detectedBy === 'thermal' || obs.detectedBy === 'both' ? 1 : 0,
    });
  });
  return { state: { nextId, active: bounded(active, options) }, toDecide };
}

/**
 * At most `maxTracks`: the least useful go first — decided tracks coasting unseen (longest unseen
 * first), then unconfirmed ones (longest unseen, then fewest sightings); a confirmed undecided
 * track (a person still to screen) only when nothing else is left.
 */
function bounded(active: Track[], options: TrackerOptions): Track[] {
  if (active.length <= options.maxTracks) return active;
  const rank = (t: Track): number => (t.decided && t.missed > 0 ? 0 : !confirmed(t, options) ? 1 : t.decided ? 2 : 3);
  const order = [...active].sort((a, b) => rank(a) - rank(b) || b.missed - a.missed || a.hits - b.hits);
  const drop = new Set(order.slice(0, active.length - options.maxTracks));
  return active.filter((t) => !drop.has(t));
}

/** Which sensors found the face over a track's observations. */
export function trackDetectedBy(observations: readonly Observation[]): DetectedBy {
  let visible = false;
  let thermal = false;
  for (const o of observations) {
    const by = o.detectedBy ?? 'visible';
    if (by !== 'thermal') visible = true;
    if (by !== 'visible') thermal = true;
  }
  return visible && thermal ? 'both' : thermal ? 'thermal' : 'visible';
}

/** End of stream: every undecided track long enough is decided now. */
export function flushTracks(state: TrackerState, options: TrackerOptions = DEFAULT_TRACKER_OPTIONS): TrackerUpdate {
  const toDecide = state.active
    .filter((t) => !t.decided && t.hits >= options.minTrackFrames && confirmed(t, options))
    .map((t) => ({ ...t, decided: true }));
  return { state: { nextId: state.nextId, active: [] }, toDecide };
}
