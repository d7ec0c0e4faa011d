import { describe, expect, it } from 'vitest';
import { decideScreening, DEFAULT_DECISION_OPTIONS } from '../src/screening/decision.js';
import { flushTracks, initialTrackerState, updateTracks, type Observation } from '../src/screening/tracker.js';
import { addToBaseline, emptyBaseline } from '../src/thermometry/baseline.js';

function obs(seq: number, apparentC: number | null, over: Partial<Observation> = {}): Observation {
  return {
    seq,
    timestampMs: seq * 115,
    box: { x1: 200 + seq * 2, y1: 100, x2: 340 + seq * 2, y2: 280 },
    faceScore: 0.98,
    mask: 'mask',
    maskScore: 0.9,
    facesInFrame: 1,
    measurement:
      apparentC === null
        ? { ok: false, reason: 'face_too_small', faceWidthPx: 8 }
        : { ok: true, apparentC, method: 'canthus', spot: { x: 50, y: 40 }, faceWidthPx: 35 },
    referenceOffsetC: 0.5,
    referenceMeasuredC: 34.5,
    ...over,
  };
}
const ctx = { ambientC: 22, baseline: emptyBaseline };
const noEmissivity = { ...DEFAULT_DECISION_OPTIONS, emissivity: 1 };

describe('decideScreening', () => {
  it('passes a normal reading corrected by the blackbody offset (median of frames)', () => {
    const d = decideScreening([obs(1, 36.0), obs(2, 36.1), obs(3, 39.9), obs(4, 36.2), obs(5, 36.1)], ctx, noEmissivity);
    expect(d).toMatchObject({ decision: 'pass', reasons: [], temperatureC: 36.6, mode: 'absolute', method: 'canthus', frames: 5, firstSeq: 1, lastSeq: 5 });
    expect(d.blackbody).toEqual({ measuredC: 34.5, offsetC: 0.5 });
  });
  it('asks for a secondary check at or above the threshold, compared at 0.1 °C', () => {
    const at = decideScreening([obs(1, 36.8), obs(2, 36.8)], ctx, noEmissivity);
    expect(at).toMatchObject({ decision: 'secondary_check', reasons: ['elevated_temperature'], temperatureC: 37.3 });
    const below = decideScreening([obs(1, 36.7), obs(2, 36.7)], ctx, noEmissivity);
    expect(below.decision).toBe('pass');
    const custom = decideScreening([obs(1, 36.8)], ctx, { ...noEmissivity, thresholdC: 37.5 });
    expect(custom).toMatchObject({ decision: 'pass', thresholdC: 37.5 });
  });
  it('applies skin emissivity by default', () => {
    const d = decideScreening([obs(1, 36.0)], ctx);
    expect(d.temperatureC!).toBeGreaterThan(36.7);
  });
  it('is invalid with too_cold_retry for someone just in from the cold', () => {
    expect(decideScreening([obs(1, 33), obs(2, 33.2)], ctx, noEmissivity)).toMatchObject({ decision: 'invalid', reasons: ['too_cold_retry'] });
  });
  it('is invalid with multiple_faces when the frames are crowded', () => {
    const crowd = [obs(1, 36, { facesInFrame: 2 }), obs(2, 36, { facesInFrame: 3 }), obs(3, 36)];
    expect(decideScreening(crowd, ctx)).toMatchObject({ decision: 'invalid', reasons: ['multiple_faces'], temperatureC: null });
  });
  it('is cannot_screen with face_too_small when no frame had a reading', () => {
    expect(decideScreening([obs(1, null), obs(2, null)], ctx)).toMatchObject({ decision: 'cannot_screen', reasons: ['face_too_small'], temperatureC: null, mode: 'absolute' });
    const unreferenced = [obs(1, null), obs(2, null)].map((o) => ({ ...o, referenceOffsetC: null, referenceMeasuredC: null }));
    expect(decideScreening(unreferenced, ctx)).toMatchObject({ decision: 'cannot_screen', mode: 'relative', blackbody: null });
  });
  it('votes the mask state over frames and can require masks', () => {
    const frames = [obs(1, 36, { mask: 'no_mask', maskScore: 0.1 }), obs(2, 36, { maskScore: 0.6 }), obs(3, 36, { mask: 'no_mask', maskScore: 0.2 })];
    expect(decideScreening(frames, ctx)).toMatchObject({ decision: 'pass', mask: 'no_mask', maskScore: 0.3 });
    expect(decideScreening(frames, ctx, { ...DEFAULT_DECISION_OPTIONS, maskPolicy: 'require' })).toMatchObject({
      decision: 'secondary_check',
      reasons: ['no_mask'],
    });
  });
  it('without a reference: invalid while the relative baseline learns, then baseline + offset', () => {
    const noRef = (seq: number, c: number) => obs(seq, c, { referenceOffsetC: null, referenceMeasuredC: null });
    const learning = decideScreening([noRef(1, 35.5)], ctx, noEmissivity);
    expect(learning).toMatchObject({ decision: 'invalid', reasons: ['no_reference'], mode: 'relative', temperatureC: null, baselineSample: 35.5 });
    let baseline = emptyBaseline;
    for (const v of [35.4, 35.5, 35.6, 35.5, 35.5]) baseline = addToBaseline(baseline, v);
    const normal = decideScreening([noRef(1, 35.7)], { ambientC: 22, baseline }, noEmissivity);
    expect(normal).toMatchObject({ decision: 'pass', mode: 'relative', thresholdC: 36.5, baselineSample: 35.7 });
    const high = decideScreening([noRef(1, 36.6)], { ambientC: 22, baseline }, noEmissivity);
    expect(high).toMatchObject({ decision: 'secondary_check', reasons: ['elevated_temperature'], baselineSample: null });
    const refuse = decideScreening([noRef(1, 35.7)], ctx, { ...noEmissivity, noReference: 'invalid' });
    expect(refuse).toMatchObject({ decision: 'invalid', reasons: ['no_reference'] });
  });
});

describe('tracker', () => {
  it('makes one track per passer-by and decides after enough frames or when they leave', () => {
    let state = initialTrackerState();
    const decided: number[][] = [];
    // Person A: 7 frames; gap of 5 empty frames; person B: 3 frames then leaves.
    const script: Observation[][] = [
      ...Array.from({ length: 7 }, (_, i) => [obs(i + 1, 36)]),
      ...Array.from({ length: 5 }, () => []),
      ...Array.from({ length: 3 }, (_, i) => [obs(13 + i, 36, { box: { x1: 10 + i, y1: 10, x2: 150 + i, y2: 190 } })]),
      ...Array.from({ length: 5 }, () => []),
    ];
    for (const frameObs of script) {
      const u = updateTracks(state, frameObs);
      state = u.state;
      for (const t of u.toDecide) decided.push(t.observations.map((o) => o.seq));
    }
    expect(decided).toEqual([
      [1, 2, 3, 4, 5],
      [13, 14, 15],
    ]);
    expect(state.active).toHaveLength(0);
  });
  it('drops single-frame blips and flushes pending tracks at end of stream', () => {
    let state = initialTrackerState();
    state = updateTracks(state, [obs(1, 36, { box: { x1: 0, y1: 0, x2: 20, y2: 20 } })]).state;
    for (let i = 0; i < 5; i++) {
      const u = updateTracks(state, []);
      expect(u.toDecide).toHaveLength(0);
      state = u.state;
    }
    state = updateTracks(state, [obs(10, 36)]).state;
    state = updateTracks(state, [obs(11, 36)]).state;
    const flushed = flushTracks(state);
    expect(flushed.toDecide.map((t) => t.observations.length)).toEqual([2]);
  });
  it('decides only tracks confirmed by one confident frame', () => {
    let state = initialTrackerState();
    const unsure = (seq: number, score: number) => obs(seq, 36, { faceScore: score });
    for (let i = 1; i <= 8; i++) {
      const u = updateTracks(state, [unsure(i, 0.4)]);
      expect(u.toDecide).toHaveLength(0);
      state = u.state;
    }
    const u = updateTracks(state, [unsure(9, 0.65)]);
    expect(u.toDecide.map((t) => t.observations.length)).toEqual([9]);
    expect(flushTracks(updateTracks(initialTrackerState(), [unsure(1, 0.4)]).state).toDecide).toHaveLength(0);
  });
  it('keeps two simultaneous faces apart', () => {
    let state = initialTrackerState();
    for (let i = 1; i <= 3; i++) {
      state = updateTracks(state, [
        obs(i, 36, { box: { x1: 0, y1: 0, x2: 100, y2: 100 } }),
        obs(i, 37, { box: { x1: 300, y1: 0, x2: 400, y2: 100 } }),
      ]).state;
    }
    expect(state.active.map((t) => t.observations.length)).toEqual([3, 3]);
  });
});
