/**
 * Face tracker (pure): associates per-frame face detections into tracks, one per passer-by,
 * so that the agent makes one decision per person from several frames instead of one per
 * frame. Association is greedy by IoU, which is enough at a gate where people pass one at a
 * time and move little between frames; a track ends after `maxMissedFrames` without a match.
 */
import type { MaskState } from '@checkpoint/protocol';
import { iou, type Box } from '../geometry.js';
import type { FaceMeasurement } from '../thermometry/measure.js';

/** Everything the decision needs from one face in one frame. */
export interface Observation {
  seq: number;
  timestampMs: number;
  /** Face box in the detection image (visible frame, or thermal when there is none). */
  box: Box;
  faceScore: number;
  mask: MaskState;
  maskScore: number | null;
  /** Faces (above the detection threshold) in the whole frame. */
  facesInFrame: number;
  measurement: FaceMeasurement;
  /** Blackbody offset usable for this frame, or null without a reference. */
  referenceOffsetC: number | null;
  referenceMeasuredC: number | null;
}

export interface Track {
  id: number;
  observations: Observation[];
  missed: number;
  /** Set once a decision has been made for this track; later frames are ignored. */
  decided: boolean;
}

export interface TrackerOptions {
  iouThreshold: number;
  maxMissedFrames: number;
  /** Decide as soon as this many frames have a thermal reading (lower latency at the gate). */
  framesPerDecision: number;
  /** Tracks shorter than this when they end are treated as spurious detections. */
  minTrackFrames: number;
  /** Cap on a track's length: a person standing still is still decided. */
  maxTrackFrames: number;
  /**
   * A track counts as a person only once one of its frames scored this high. Frames are
   * associated at a lower per-frame threshold, so a face the detector is unsure of in some
   * frames still gets one decision, while a low-score blip never does.
   */
  confirmScore: number;
}

export const DEFAULT_TRACKER_OPTIONS: TrackerOptions = {
  iouThreshold: 0.3,
  maxMissedFrames: 3,
  framesPerDecision: 5,
  minTrackFrames: 2,
  maxTrackFrames: 60,
  confirmScore: 0.6,
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

const lastBox = (t: Track): Box => t.observations[t.observations.length - 1]!.box;
const readings = (t: Track): number => t.observations.filter((o) => o.measurement.ok).length;
const confirmed = (t: Track, options: TrackerOptions): boolean => t.observations.some((o) => o.faceScore >= options.confirmScore);

export function updateTracks(
  state: TrackerState,
  observations: Observation[],
  options: TrackerOptions = DEFAULT_TRACKER_OPTIONS,
): TrackerUpdate {
  // Greedy matching, best IoU first.
  const pairs: Array<{ t: number; o: number; score: number }> = [];
  state.active.forEach((track, t) =>
    observations.forEach((obs, o) => {
      const score = iou(lastBox(track), obs.box);
      if (score >= options.iouThreshold) pairs.push({ t, o, score });
    }),
  );
  pairs.sort((a, b) => b.score - a.score);
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
    const updated: Track =
      o === undefined
        ? { ...track, missed: track.missed + 1 }
        : {
            ...track,
            missed: 0,
            observations: track.decided ? track.observations : [...track.observations, observations[o]!],
          };
    const ended = updated.missed > options.maxMissedFrames;
    if (!updated.decided && confirmed(updated, options)) {
      const full = readings(updated) >= options.framesPerDecision || updated.observations.length >= options.maxTrackFrames;
      const endedLongEnough = ended && updated.observations.length >= options.minTrackFrames;
      if (full || endedLongEnough) {
        toDecide.push(updated);
        updated.decided = true;
      }
    }
    if (!ended) active.push(updated);
  });
  observations.forEach((obs, o) => {
    if (!usedObs.has(o)) active.push({ id: nextId++, observations: [obs], missed: 0, decided: false });
  });
  return { state: { nextId, active }, toDecide };
}

/** End of stream: every undecided track long enough is decided now. */
export function flushTracks(state: TrackerState, options: TrackerOptions = DEFAULT_TRACKER_OPTIONS): TrackerUpdate {
  const toDecide = state.active.filter(
    (t) => !t.decided && t.observations.length >= options.minTrackFrames && confirmed(t, options),
  );
  return { state: { nextId: state.nextId, active: [] }, toDecide };
}
