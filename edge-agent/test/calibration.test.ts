import { describe, expect, it } from 'vitest';
import { applyHomography } from '../src/geometry.js';
import { CalibrationError, fitHomography, symmetricEigen, type PointPair } from '../src/calibration/homography.js';
import { assessBlackbodyStability, blackbodySample, findBlackbody } from '../src/calibration/blackbody.js';
import type { ThermalFrame } from '../src/frames.js';
import { simulateScene } from '../src/sources/sim/index.js';

/** Deterministic Gaussian noise (LCG + Box-Muller), so a failure reproduces. */
function gaussian(seed: number): () => number {
  // Scramble the seed (murmur3 finaliser) so consecutive seeds give unrelated streams.
  let s = Math.imul(seed ^ 0x9e3779b9, 0x85ebca6b);
  s = Math.imul(s ^ (s >>> 13), 0xc2b2ae35);
  s = (s ^ (s >>> 16)) >>> 0;
  const uniform = () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return (s + 1) / 4294967297;
  };
  return () => Math.sqrt(-2 * Math.log(uniform())) * Math.cos(2 * Math.PI * uniform());
}

// visible 640x480 → thermal 160x120, slightly rotated, shifted and in perspective.
const TRUE_H = [0.262, 0.012, -4.1, -0.009, 0.255, 3.2, 2.0e-5, -1.5e-5, 1];

function pairsFor(h: readonly number[], noiseSigmaPx: number, seed = 1): PointPair[] {
  const g = gaussian(seed);
  const pairs: PointPair[] = [];
  for (const vx of [40, 220, 420, 600]) {
    for (const vy of [30, 240, 450]) {
      const t = applyHomography(h, vx, vy);
      pairs.push({ visible: { x: vx, y: vy }, thermal: { x: t.x + noiseSigmaPx * g(), y: t.y + noiseSigmaPx * g() } });
    }
  }
  return pairs;
}

/** Largest disagreement between two homographies over the visible frame, thermal px. */
function maxMappingError(a: readonly number[], b: readonly number[]): number {
  let worst = 0;
  for (let x = 0; x <= 640; x += 32) {
    for (let y = 0; y <= 480; y += 32) {
      const p = applyHomography(a, x, y);
      const q = applyHomography(b, x, y);
      worst = Math.max(worst, Math.hypot(p.x - q.x, p.y - q.y));
    }
  }
  return worst;
}

describe('symmetricEigen (Jacobi)', () => {
  it('diagonalises a random symmetric 9x9: A v = λ v with orthonormal v', () => {
    const g = gaussian(5);
    const m = Array.from({ length: 9 }, () => new Array<number>(9).fill(0));
    for (let i = 0; i < 9; i++) for (let j = i; j < 9; j++) m[i]![j] = m[j]![i] = g();
    const { values, vectors } = symmetricEigen(m);
    for (let k = 0; k < 9; k++) {
      const v = vectors[k]!;
      for (let i = 0; i < 9; i++) {
        const av = m[i]!.reduce((s, a, j) => s + a * v[j]!, 0);
        expect(av).toBeCloseTo(values[k]! * v[i]!, 10);
      }
      for (let l = 0; l < 9; l++) expect(v.reduce((s, x, i) => s + x * vectors[l]![i]!, 0)).toBeCloseTo(k === l ? 1 : 0, 10);
    }
  });
});

describe('fitHomography', () => {
  it('recovers a known homography exactly from exact pairs', () => {
    const fit = fitHomography(pairsFor(TRUE_H, 0));
    fit.homography.forEach((v, i) => expect(v).toBeCloseTo(TRUE_H[i]!, 9));
    expect(fit.rmsPx).toBeLessThan(1e-8);
  });

  it('recovers a known homography from noisy pairs (σ = 0.3 thermal px)', () => {
    const fit = fitHomography(pairsFor(TRUE_H, 0.3, 7));
    // 12 pairs, 8 parameters: the residual RMS sits near the noise; the mapping, anywhere in the
    // visible frame (corners extrapolated), within 3σ. (Same seeds through OpenCV's
    // findHomography(method 0) agree with this fit to ±0.005 px.)
    expect(fit.rmsPx).toBeGreaterThan(0.15);
    expect(fit.rmsPx).toBeLessThan(0.45);
    expect(maxMappingError(fit.homography, TRUE_H)).toBeLessThan(0.9);
    expect(fit.residualsPx).toHaveLength(12);
    expect(fit.homography[8]).toBe(1);
    expect(fit.warnings).toEqual([]);
  });

  it('rejects a swapped pair, naming it, and keeps the rejected fit for display', () => {
    const pairs = pairsFor(TRUE_H, 0.2, 3);
    const t = pairs[4]!.thermal;
    pairs[4]!.thermal = pairs[9]!.thermal;
    pairs[9]!.thermal = t;
    const err = (() => {
      try {
        fitHomography(pairs);
      } catch (e) {
        return e as CalibrationError;
      }
      throw new Error('fit accepted a swapped pair');
    })();
    expect(err).toBeInstanceOf(CalibrationError);
    expect(err.message).toMatch(/RMS reprojection error [\d.]+ thermal px is above the limit of 1 px; worst is pair (5|10) /);
    expect(err.fit!.residualsPx).toHaveLength(12);
  });

  it('refuses fewer than 4 pairs, collinear points and repeated points', () => {
    expect(() => fitHomography(pairsFor(TRUE_H, 0).slice(0, 3))).toThrow(/at least 4 point pairs, got 3/);
    const line = [0, 1, 2, 3, 4].map((i) => ({ visible: { x: 100 + 50 * i, y: 100 + 20 * i }, thermal: { x: 20 + 13 * i + (i % 2), y: 30 + 5 * i - (i % 2) } }));
    expect(() => fitHomography(line)).toThrow(/visible points are \(nearly\) collinear/);
    const four = [
      { visible: { x: 0, y: 0 }, thermal: { x: 0, y: 0 } },
      { visible: { x: 100, y: 0 }, thermal: { x: 25, y: 0 } },
      { visible: { x: 200, y: 0 }, thermal: { x: 50, y: 0 } },
      { visible: { x: 100, y: 100 }, thermal: { x: 25, y: 25 } },
    ];
    expect(() => fitHomography(four)).toThrow(/no three may be on one line/);
    const same = [0, 1, 2, 3].map(() => ({ visible: { x: 5, y: 5 }, thermal: { x: 1, y: 1 } }));
    expect(() => fitHomography(same)).toThrow(/same point/);
    const nan = pairsFor(TRUE_H, 0);
    nan[2]!.thermal.x = Number.NaN;
    expect(() => fitHomography(nan)).toThrow(/pair 3 has a coordinate that is not a finite number/);
  });

  it('warns that four pairs cannot reveal a wrong one', () => {
    const fit = fitHomography(pairsFor(TRUE_H, 0).filter((_, i) => [0, 2, 9, 11].includes(i)));
    expect(fit.warnings[0]).toMatch(/exactly 4 pairs/);
  });
});

// ---------------------------------------------------------------------------------------------

const W = 40;
const H = 30;
const BB = { x: 25, y: 8, w: 8, h: 8 };

/** Background 22 °C, an 8x8 blackbody, a warm "face" with a gradient, per-pixel noise. */
function frame(n: number, o: { bbC?: (tMin: number) => number; cameraC?: (tMin: number) => number; pixelSigma?: number; bbTemporalSigma?: number; seed?: number } = {}): ThermalFrame {
  const g = gaussian((o.seed ?? 11) * 100_003 + n);
  const tMin = n / 60;
  const camera = o.cameraC?.(tMin) ?? 0;
  const bb = (o.bbC?.(tMin) ?? 35.2) + (o.bbTemporalSigma ?? 0) * g();
  const celsius = new Float32Array(W * H);
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      let t = 22;
      if (x >= BB.x && x < BB.x + BB.w && y >= BB.y && y < BB.y + BB.h) t = bb;
      else if (Math.hypot(x - 8, y - 15) < 6) t = 36.5 - 0.3 * Math.hypot(x - 8, y - 15);
      celsius[y * W + x] = t + camera + (o.pixelSigma ?? 0.05) * g();
    }
  }
  return { seq: n + 1, timestampMs: n * 1000, width: W, height: H, celsius };
}

const run = (seconds: number, o: Parameters<typeof frame>[1] = {}) =>
  Array.from({ length: seconds + 1 }, (_, n) => blackbodySample(frame(n, o), { ...BB, x: BB.x + 2, y: BB.y + 2, w: 4, h: 4 }));

describe('blackbody stability', () => {
  it('passes a steady reference over five minutes', () => {
    const r = assessBlackbodyStability(run(300), 35);
    expect(r.verdict).toBe('stable');
    expect(r.problems).toEqual([]);
    expect(r.meanC).toBeCloseTo(35.2, 1);
    expect(r.offsetC).toBeCloseTo(-0.2, 1);
    expect(Math.abs(r.driftCPerMin)).toBeLessThan(0.01);
    expect(r.noiseC).toBeLessThan(0.05);
    expect(r.frames).toBe(301);
    expect(r.durationS).toBe(300);
  });

  it('measures the drift of a drifting reference and fails it against 0.1 °C', () => {
    const r = assessBlackbodyStability(run(300, { bbC: (t) => 35.2 + 0.1 * t }), 35);
    expect(r.driftCPerMin).toBeCloseTo(0.1, 2);
    expect(r.driftOverWindowC).toBeCloseTo(0.5, 1);
    expect(r.verdict).toBe('unstable');
    expect(r.problems[0]).toMatch(/drifted 0\.(49|50)\d °C over 5\.0 min .* above the 0\.1 °C guidance/);
  });

  it('separates camera drift (corrected per frame) from the reference', () => {
    const samples = run(300, { cameraC: (t) => 0.3 * t });
    const r = assessBlackbodyStability(samples, 35);
    expect(r.verdict).toBe('stable');
    expect(r.readingDriftCPerMin).toBeCloseTo(0.3, 2);
    expect(Math.abs(r.driftCPerMin)).toBeLessThan(0.01);
    expect(assessBlackbodyStability(samples, 35, { judge: 'reading' }).verdict).toBe('unstable');
  });

  it('fails a noisy reference, a far-off reading, and a check that is too short', () => {
    expect(assessBlackbodyStability(run(300, { bbTemporalSigma: 0.25 }), 35).problems.join()).toMatch(/noise σ 0\.2\d+ °C is above/);
    expect(assessBlackbodyStability(run(300), 39).problems.join()).toMatch(/3\.80 °C from the set point 39/);
    const short = assessBlackbodyStability(run(30), 35);
    expect(short.verdict).toBe('too-short');
    expect(() => assessBlackbodyStability(run(1), 35)).toThrow(/at least 3 frames/);
    expect(() => blackbodySample(frame(0), { x: 38, y: 0, w: 4, h: 4 })).toThrow(/does not fit in the 40x30/);
  });
});

describe('findBlackbody', () => {
  it('finds the uniform hot square, not the warm face, and proposes its centre', () => {
    const p = findBlackbody(frame(0), 35)!;
    expect(p.aperture).toEqual(BB);
    expect(p.region).toEqual({ x: 27, y: 10, w: 4, h: 4, setC: 35 });
    expect(p.meanC).toBeCloseTo(35.2, 1);
    expect(findBlackbody(frame(0), 45)).toBeNull();
  });

  it('finds the simulator blackbody inside its true region', async () => {
    const scene = await simulateScene({ people: 1, seed: 4 });
    const truth = scene.geometry.blackbody!;
    let first: ThermalFrame | undefined;
    for await (const pair of scene.frames) {
      first = pair.thermal;
      break;
    }
    const p = findBlackbody(first!, truth.setC)!;
    expect(p).not.toBeNull();
    expect(p.region.x).toBeGreaterThanOrEqual(truth.x);
    expect(p.region.y).toBeGreaterThanOrEqual(truth.y);
    expect(p.region.x + p.region.w).toBeLessThanOrEqual(truth.x + truth.w);
    expect(p.region.y + p.region.h).toBeLessThanOrEqual(truth.y + truth.h);
  });
});
