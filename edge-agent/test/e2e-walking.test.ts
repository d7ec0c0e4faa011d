/**
 * Walking traffic end to end (issue 13's "Done when"): 500 simulated people over five seeds
 * (10 % fever, 50 % masked, drift up to 1.5 °C, faces 60–250 px walking 10–40 px per frame,
 * queues of two and three, blurred frames and dropouts) through the real pipeline and the real
 * ONNX model, scored against the truth by where each decision's face was. Prints the figures.
 */
import { describe, expect, it } from 'vitest';
import { measureTraffic, WALKING_SCENE } from '../bench/walking.js';
import { formatFigures } from '../src/sources/sim/score.js';
import { FACES_DIR, haveShared, MODELS_MIRROR } from './helpers/shared.js';

describe.skipIf(!haveShared)('walking traffic (real model, real pipeline)', () => {
  it('screens at least 98 % of 500 walking people exactly once, flags every fever, and gets masks right', async () => {
    const f = await measureTraffic({
      seeds: [21, 22, 23, 24, 25],
      people: 100,
      scene: WALKING_SCENE,
      facesDir: FACES_DIR,
      modelsMirror: MODELS_MIRROR,
      onSeed: (seed, figures, s) => console.log(`seed ${seed} (${s.toFixed(0)} s): exactly one ${figures.exactlyOne}/${figures.people}`),
    });
    console.log(formatFigures(f));
    expect(f.people).toBe(500);
    expect(f.exactlyOne / f.people).toBeGreaterThanOrEqual(0.98);
    expect(f.moreThanOne / f.people).toBeLessThanOrEqual(0.01);
    expect(f.spurious / f.people).toBeLessThanOrEqual(0.01);
    expect(f.feverish).toBeGreaterThanOrEqual(45);
    expect(f.feverFlagged / f.feverish).toBeGreaterThanOrEqual(0.99);
    expect(f.maskRight / f.maskKnown).toBeGreaterThanOrEqual(0.95);
    // Most people are seen by the visible camera too (mask state known).
    expect(f.maskKnown / f.people).toBeGreaterThanOrEqual(0.8);
  }, 1_800_000);
});
