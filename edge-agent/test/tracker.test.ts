/**
 * The tracker's promises on synthetic detections: a walking face is one track and one decision;
 * a decided track keeps following its face; short dropouts are bridged, a different-looking face
 * after a gap is not taken for the same person; people are tracked independently; memory is
 * bounded.
 */
import { describe, expect, it } from 'vitest';
import type { Box } from '../src/geometry.js';
import {
  DEFAULT_TRACKER_OPTIONS,
  flushTracks,
  initialTrackerState,
  predictBox,
  trackDetectedBy,
  updateTracks,
  type Observation,
  type Track,
  type TrackerState,
} from '../src/screening/tracker.js';

const FRAME = { width: 640, height: 480 };

function face(seq: number, box: Box, over: Partial<Observation> = {}): Observation {
  return {
    seq,
    timestampMs: seq * 115,
    box,
    faceScore: 0.9,
    mask: 'no_mask',
    maskScore: 0.1,
    facesInFrame: 1,
    measurement: { ok: true, apparentC: 35.5, method: 'canthus', spot: { x: 0, y: 0 }, faceWidthPx: 20 },
    referenceOffsetC: 0.5,
    referenceMeasuredC: 34.5,
    detectedBy: 'visible',
    ...over,
  };
}

/** A face `w` px wide whose left edge is at x, vertically centred on cy. */
const at = (x: number, w: number, cy = 240): Box => ({ x1: x, y1: cy - w * 0.6, x2: x + w, y2: cy + w * 0.6 });

/** Runs frames through the tracker; returns every decided track and the final state. */
function run(frames: Observation[][], state: TrackerState = initialTrackerState()): { decided: Track[]; state: TrackerState } {
  const decided: Track[] = [];
  for (const obs of frames) {
    const u = updateTracks(state, obs, DEFAULT_TRACKER_OPTIONS, FRAME);
    state = u.state;
    decided.push(...u.toDecide);
  }
  return { decided, state };
}

describe('tracker', () => {
  it('follows a 60 px face walking 40 px per frame (barely overlapping its last box) as one person', () => {
    const frames = Array.from({ length: 12 }, (_, k) => [face(k + 1, at(40 + 40 * k, 60 + 2 * k, 240 + 6 * Math.sin(k * 1.45)))]);
    const { decided, state } = run(frames);
    expect(decided).toHaveLength(1);
    expect(decided[0]!.observations.map((o) => o.seq)).toEqual([1, 2, 3, 4, 5]);
    expect(state.active).toHaveLength(1);
    expect(flushTracks(state).toDecide).toEqual([]);
  });

  it('a decided track keeps following its face: box and motion move on, observations and decision do not', () => {
    const frames = Array.from({ length: 14 }, (_, k) => [face(k + 1, at(100 + 25 * k, 150))]);
    const { decided, state } = run(frames);
    expect(decided).toHaveLength(1);
    const [track] = state.active;
    expect(track!.decided).toBe(true);
    expect(track!.observations).toHaveLength(5);
    expect(track!.hits).toBe(14);
    // The prediction is where the face is going, not where the decision was made.
    const next = predictBox(track!.motion, 1);
    expect(next.x1).toBeGreaterThan(100 + 25 * 13);
    expect(next.x1).toBeLessThan(100 + 25 * 15);
  });

  it('bridges a dropout of up to four frames near the predicted place, and ends a track unseen for longer', () => {
    const seen = (k: number) => [face(k + 1, at(60 + 20 * k, 120))];
    const gap4 = [0, 1, 2].map(seen).concat([[], [], [], []], [7, 8, 9, 10].map(seen));
    expect(run(gap4).decided).toHaveLength(1);
    const gap6 = [0, 1, 2, 3].map((k) => [face(k + 1, at(60 + 20 * k, 120), { measurement: { ok: false, reason: 'no_thermal_face', faceWidthPx: 3 } })]).concat(
      [[], [], [], [], [], []],
      [10, 11, 12, 13, 14].map(seen),
    );
    // Unseen for six frames: the first track ends (decided with what it had), the face after the gap is a new one.
    expect(run(gap6).decided.map((t) => t.observations[0]!.seq)).toEqual([1, 11]);
  });

  it('after a gap, a face that looks different (mask state, temperature) is a new person, not the lost one', () => {
    const first = [0, 1, 2].map((k) => [face(k + 1, at(300, 150))]);
    const other = [5, 6, 7, 8, 9].map((k) => [face(k + 1, at(300, 150), { mask: 'mask', maskScore: 0.9 })]);
    const hotter = [5, 6, 7, 8, 9].map((k) => [
      face(k + 1, at(300, 150), { measurement: { ok: true, apparentC: 37.2, method: 'canthus', spot: { x: 0, y: 0 }, faceWidthPx: 20 } }),
    ]);
    for (const next of [other, hotter]) {
      const { decided } = run([...first, [], [], ...next]);
      expect(decided.map((t) => t.observations[0]!.seq)).toEqual([1, 6]);
    }
    // The same look after the same gap is the same person.
    expect(run([...first, [], [], ...[5, 6, 7].map((k) => [face(k + 1, at(300, 150))])]).decided).toHaveLength(1);
  });

  it('tracks a queue of two independently, also when they walk past each other', () => {
    const frames = Array.from({ length: 12 }, (_, k) => [
      face(k + 1, at(20 + 30 * k, 90, 200)),
      face(k + 1, at(520 - 30 * k, 160, 260), { mask: 'mask', maskScore: 0.9 }),
    ]);
    const { decided } = run(frames);
    expect(decided).toHaveLength(2);
    for (const t of decided) expect(new Set(t.observations.map((o) => o.mask)).size).toBe(1);
  });

  it('joins visible and thermal-only sightings of one face, and says which sensors found it', () => {
    const frames = Array.from({ length: 8 }, (_, k) => [
      face(k + 1, at(100 + 20 * k, 120), k % 3 === 1 ? { detectedBy: 'thermal', faceScore: 0.5, mask: 'unknown', maskScore: null } : { detectedBy: 'both' }),
    ]);
    const { decided } = run(frames);
    expect(decided).toHaveLength(1);
    expect(trackDetectedBy(decided[0]!.observations)).toBe('both');
    // Thermal-only faces confirm a person after three frames, without any visible score.
    const thermalOnly = Array.from({ length: 6 }, (_, k) => [face(k + 1, at(200, 100), { detectedBy: 'thermal', faceScore: 0.5, mask: 'unknown', maskScore: null })]);
    const t = run(thermalOnly).decided;
    expect(t).toHaveLength(1);
    expect(trackDetectedBy(t[0]!.observations)).toBe('thermal');
  });

  it('bounds an unconfirmed track (a low-score face for a long time) and the number of tracks', () => {
    let state = initialTrackerState();
    for (let k = 1; k <= 500; k++) state = updateTracks(state, [face(k, at(300, 100), { faceScore: 0.4, detectedBy: 'visible' })], DEFAULT_TRACKER_OPTIONS, FRAME).state;
    expect(state.active).toHaveLength(1);
    expect(state.active[0]!.observations.length).toBeLessThanOrEqual(DEFAULT_TRACKER_OPTIONS.maxTrackFrames);
    expect(state.active[0]!.observations.at(-1)!.seq).toBe(500);

    // 60 low-score blips a frame, each somewhere else.
    state = initialTrackerState();
    for (let k = 1; k <= 20; k++) {
      const blips = Array.from({ length: 60 }, (_, i) => face(k, at(((i * 97 + k * 331) % 600) + 1, 20, ((i * 53 + k * 71) % 400) + 40), { faceScore: 0.35 }));
      state = updateTracks(state, blips, DEFAULT_TRACKER_OPTIONS, FRAME).state;
      expect(state.active.length).toBeLessThanOrEqual(DEFAULT_TRACKER_OPTIONS.maxTracks);
    }
  });

  it('a confirmed person still to be screened is kept when tracks must be dropped', () => {
    let state = initialTrackerState();
    const person = (k: number) => face(k, at(300, 150));
    for (let k = 1; k <= 3; k++) {
      const blips = Array.from({ length: 40 }, (_, i) => face(k, at((i * 13 + k * 7) % 600, 12, 20 + ((i * 11) % 60)), { faceScore: 0.35 }));
      state = updateTracks(state, [person(k), ...blips], DEFAULT_TRACKER_OPTIONS, FRAME).state;
    }
    expect(state.active.some((t) => t.observations.length === 3 && t.observations[0]!.box.x1 === 300)).toBe(true);
  });
});
