/**
 * Blackbody (ETRS) checks for calibration: where the reference is in the thermal image, and
 * whether its reading is steady enough to correct faces with.
 *
 * Guidance (reference/thermal-screening.md, hardware-protocols.md §6): a reference whose combined
 * stability and drift stays within 0.1 °C; read the central part of the aperture (ROI ≤ half its
 * size); distrust an offset from the set point beyond a sanity bound (~3 °C). Over a check of a
 * few minutes we measure the drift as the slope of a straight-line fit against time, and the
 * noise as the standard deviation of the residuals about that line.
 *
 * The reading is taken through the camera, whose own offset drifts (by up to degrees on cheap
 * microbolometers; that drift is what the blackbody is there to correct). The camera's offset
 * moves every pixel alike, so by default the judged series is the blackbody minus the scene's
 * median (walls, floor: large thermal mass, steady over minutes), which cancels it and leaves the
 * reference's own stability. The raw reading's drift is reported as well, for information.
 */
import type { BlackbodyRegion, ThermalFrame } from '../frames.js';

export interface BlackbodySample {
  timestampMs: number;
  /** Mean of the region, °C. */
  meanC: number;
  /** Spatial standard deviation inside the region, °C (uniformity / occlusion). */
  stdC: number;
  /** Median of the whole frame (the scene background), °C. */
  sceneC: number;
}

export interface StabilityOptions {
  /** The 0.1 °C guidance: limit for drift over the window and for noise. */
  limitC?: number;
  /** Largest believable |set point − reading|, °C. Default 3. */
  maxOffsetC?: number;
  /** Largest spatial σ inside the region before it counts as not uniform. Default 0.5 °C. */
  maxRegionStdC?: number;
  /** Shorter checks cannot tell drift from noise; verdict 'too-short'. Default 60 s. */
  minDurationS?: number;
  /** Judge blackbody − scene median (default, cancels camera drift) or the raw reading. */
  judge?: 'relative-to-scene' | 'reading';
}

export interface StabilityReport {
  frames: number;
  durationS: number;
  setC: number;
  meanC: number;
  /** setC − meanC: what the agent would add to every reading. */
  offsetC: number;
  /** Which series the drift, noise and verdict are about. */
  judged: 'relative-to-scene' | 'reading';
  driftCPerMin: number;
  /** |slope| × duration: how far the judged series moved over the check. */
  driftOverWindowC: number;
  /** σ of residuals about the linear fit. */
  noiseC: number;
  /** Drift of the raw reading (camera + reference), °C/min; the agent corrects it per frame. */
  readingDriftCPerMin: number;
  readingNoiseC: number;
  /** Mean spatial σ inside the region. */
  regionStdC: number;
  minC: number;
  maxC: number;
  limitC: number;
  verdict: 'stable' | 'unstable' | 'too-short';
  /** Why it is not stable, one sentence each. */
  problems: string[];
}

/** Mean and spatial σ of a region in one frame; throws when the region leaves the frame. */
export function blackbodySample(frame: ThermalFrame, region: Omit<BlackbodyRegion, 'setC'>): BlackbodySample {
  const { x, y, w, h } = region;
  if (x < 0 || y < 0 || w < 1 || h < 1 || x + w > frame.width || y + h > frame.height) {
    throw new RangeError(`blackbody region ${w}x${h} at (${x},${y}) does not fit in the ${frame.width}x${frame.height} thermal frame`);
  }
  let sum = 0;
  let sum2 = 0;
  for (let r = y; r < y + h; r++) {
    for (let c = x; c < x + w; c++) {
      const t = frame.celsius[r * frame.width + c]!;
      sum += t;
      sum2 += t * t;
    }
  }
  const n = w * h;
  const meanC = sum / n;
  return { timestampMs: frame.timestampMs, meanC, stdC: Math.sqrt(Math.max(0, sum2 / n - meanC * meanC)), sceneC: frameMedian(frame.celsius) };
}

/** Median of (at most ~4096 evenly spaced) pixels. */
function frameMedian(celsius: Float32Array): number {
  const step = Math.max(1, Math.floor(celsius.length / 4096));
  const values: number[] = [];
  for (let i = 0; i < celsius.length; i += step) values.push(celsius[i]!);
  values.sort((a, b) => a - b);
  const m = values.length >> 1;
  return values.length % 2 ? values[m]! : (values[m - 1]! + values[m]!) / 2;
}

/** Least-squares line through (t, y): slope per unit t and σ of the residuals. */
function lineFit(ts: readonly number[], ys: readonly number[]): { slope: number; noise: number; mean: number } {
  const n = ts.length;
  const tMean = ts.reduce((a, b) => a + b, 0) / n;
  const yMean = ys.reduce((a, b) => a + b, 0) / n;
  let sxx = 0;
  let sxy = 0;
  for (let i = 0; i < n; i++) {
    sxx += (ts[i]! - tMean) ** 2;
    sxy += (ts[i]! - tMean) * (ys[i]! - yMean);
  }
  const slope = sxx > 0 ? sxy / sxx : 0;
  let ss = 0;
  for (let i = 0; i < n; i++) ss += (ys[i]! - (yMean + slope * (ts[i]! - tMean))) ** 2;
  return { slope, noise: Math.sqrt(ss / Math.max(1, n - 2)), mean: yMean };
}

/** Drift, noise and a verdict against the 0.1 °C guidance for a run of samples. */
export function assessBlackbodyStability(samples: readonly BlackbodySample[], setC: number, options: StabilityOptions = {}): StabilityReport {
  const limitC = options.limitC ?? 0.1;
  const maxOffsetC = options.maxOffsetC ?? 3;
  const maxRegionStdC = options.maxRegionStdC ?? 0.5;
  const minDurationS = options.minDurationS ?? 60;
  if (samples.length < 3) throw new RangeError(`a stability check needs at least 3 frames, got ${samples.length}`);
  const judged = options.judge ?? 'relative-to-scene';
  const n = samples.length;
  const t0 = samples[0]!.timestampMs;
  const ts = samples.map((s) => (s.timestampMs - t0) / 60_000); // minutes
  const ys = samples.map((s) => s.meanC);
  const durationS = (samples[n - 1]!.timestampMs - t0) / 1000;
  const reading = lineFit(ts, ys);
  const fit = judged === 'reading' ? reading : lineFit(ts, samples.map((s) => s.meanC - s.sceneC));
  const slope = fit.slope;
  const noiseC = fit.noise;
  const yMean = reading.mean;
  const driftOverWindowC = Math.abs(slope) * (durationS / 60);
  const regionStdC = samples.reduce((a, s) => a + s.stdC, 0) / n;
  const offsetC = setC - yMean;
  const what = judged === 'reading' ? 'reading' : 'reference (relative to the scene)';

  const problems: string[] = [];
  if (driftOverWindowC > limitC) problems.push(`${what} drifted ${driftOverWindowC.toFixed(3)} °C over ${(durationS / 60).toFixed(1)} min (${slope.toFixed(3)} °C/min), above the ${limitC} °C guidance`);
  if (noiseC > limitC) problems.push(`${what} noise σ ${noiseC.toFixed(3)} °C is above the ${limitC} °C guidance`);
  if (Math.abs(offsetC) > maxOffsetC) problems.push(`reading ${yMean.toFixed(2)} °C is ${Math.abs(offsetC).toFixed(2)} °C from the set point ${setC} °C: wrong region, blackbody not at temperature, or camera far off`);
  if (regionStdC > maxRegionStdC) problems.push(`region is not uniform (σ ${regionStdC.toFixed(2)} °C inside it): it may include the blackbody's edge or something in front of it`);
  const verdict = problems.length ? 'unstable' : durationS < minDurationS ? 'too-short' : 'stable';
  if (verdict === 'too-short') problems.push(`only ${durationS.toFixed(0)} s of frames; at least ${minDurationS} s are needed to judge drift`);
  return {
    frames: n,
    durationS,
    setC,
    meanC: yMean,
    offsetC,
    judged,
    driftCPerMin: slope,
    driftOverWindowC,
    noiseC,
    readingDriftCPerMin: reading.slope,
    readingNoiseC: reading.noise,
    regionStdC,
    minC: Math.min(...ys),
    maxC: Math.max(...ys),
    limitC,
    verdict,
    problems,
  };
}

export interface BlackbodyProposal {
  /** The proposed measurement region: the central part of the aperture, with the set point. */
  region: BlackbodyRegion;
  /** The whole uniform square found (the visible aperture). */
  aperture: { x: number; y: number; w: number; h: number };
  meanC: number;
  stdC: number;
}

export interface FindOptions {
  /** How far the reading may be from the set point (uncorrected camera error). Default 3 °C. */
  toleranceC?: number;
  /** Largest spatial σ for a square to count as uniform. Default 0.3 °C. */
  maxStdC?: number;
  /** Smallest aperture side to consider, pixels. Default 3. */
  minSize?: number;
  /** Largest aperture side (the config allows regions up to 64). Default 32. */
  maxSize?: number;
}

/**
 * Proposes where the blackbody is: the largest square whose pixels are uniform (σ ≤ maxStdC) and
 * whose mean is within toleranceC of the set point; among equals, the most uniform. A face can be
 * warm and locally uniform too, so run this with nobody in view and check the answer on an image.
 * Returns null when nothing qualifies.
 */
export function findBlackbody(frame: ThermalFrame, setC: number, options: FindOptions = {}): BlackbodyProposal | null {
  const tol = options.toleranceC ?? 3;
  const maxStd = options.maxStdC ?? 0.3;
  const minSize = options.minSize ?? 3;
  const maxSize = Math.min(options.maxSize ?? 32, frame.width, frame.height);
  const W = frame.width;
  // Integral images of t and t² (float64) so every square costs O(1).
  const S = new Float64Array((W + 1) * (frame.height + 1));
  const S2 = new Float64Array((W + 1) * (frame.height + 1));
  for (let r = 0; r < frame.height; r++) {
    let row = 0;
    let row2 = 0;
    for (let c = 0; c < W; c++) {
      const t = frame.celsius[r * W + c]!;
      row += t;
      row2 += t * t;
      S[(r + 1) * (W + 1) + c + 1] = S[r * (W + 1) + c + 1]! + row;
      S2[(r + 1) * (W + 1) + c + 1] = S2[r * (W + 1) + c + 1]! + row2;
    }
  }
  const box = (I: Float64Array, x: number, y: number, s: number) =>
    I[(y + s) * (W + 1) + x + s]! - I[y * (W + 1) + x + s]! - I[(y + s) * (W + 1) + x]! + I[y * (W + 1) + x]!;

  for (let s = maxSize; s >= minSize; s--) {
    let best: { x: number; y: number; mean: number; std: number } | null = null;
    const n = s * s;
    for (let y = 0; y + s <= frame.height; y++) {
      for (let x = 0; x + s <= W; x++) {
        const mean = box(S, x, y, s) / n;
        if (Math.abs(mean - setC) > tol) continue;
        const std = Math.sqrt(Math.max(0, box(S2, x, y, s) / n - mean * mean));
        if (std <= maxStd && (!best || std < best.std)) best = { x, y, mean, std };
      }
    }
    if (best) {
      // Measure the centre: drop a quarter of the side on each edge (ROI ≤ ~half the aperture).
      const margin = Math.floor(s / 4);
      const side = s - 2 * margin;
      return {
        region: { x: best.x + margin, y: best.y + margin, w: side, h: side, setC },
        aperture: { x: best.x, y: best.y, w: s, h: s },
        meanC: best.mean,
        stdC: best.std,
      };
    }
  }
  return null;
}
