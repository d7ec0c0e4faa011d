/**
 * Fitting the visible → thermal homography from point pairs (e.g. the corners of a heated target
 * seen by both cameras), by the normalised direct linear transform (Hartley & Zisserman,
 * "Multiple View Geometry", alg. 4.2):
 *
 *   1. translate and scale each point set so its centroid is the origin and its mean distance
 *      from it is √2 (this is what makes the linear solution well conditioned);
 *   2. stack two equations per pair into A (2n × 9) and take h = the eigenvector of AᵀA with the
 *      smallest eigenvalue (least squares with ‖h‖ = 1), from a Jacobi eigen-decomposition;
 *   3. undo the normalisation, H = T_thermal⁻¹ · Ĥ · T_visible, and scale so H[8] = 1.
 *
 * The result is judged in thermal pixels: each pair's reprojection error |H(v) − t|, and their
 * RMS. Degenerate input (fewer than 4 pairs, repeated or collinear points) and a fit whose RMS is
 * above the limit are refused with a message naming the offending pairs.
 */
import { applyHomography, type Point } from '../geometry.js';

export interface PointPair {
  visible: Point;
  thermal: Point;
}

export interface HomographyFit {
  /** Row-major 3x3, visible pixel → thermal pixel, H[8] = 1. */
  homography: number[];
  /** Reprojection error of each pair in thermal pixels, in input order. */
  residualsPx: number[];
  rmsPx: number;
  /** Index of the pair with the largest residual. */
  worstPair: number;
  /** Things worth telling the engineer that do not make the fit wrong. */
  warnings: string[];
}

export class CalibrationError extends Error {
  override name = 'CalibrationError';
  constructor(
    message: string,
    /** The rejected fit, when there was one (RMS too high), so its residuals can be shown. */
    readonly fit?: HomographyFit,
  ) {
    super(message);
  }
}

export interface FitOptions {
  /** Largest acceptable RMS reprojection error in thermal pixels. Default 1.0. */
  maxRmsPx?: number;
}

const describePair = (p: PointPair, i: number) =>
  `pair ${i + 1} (visible ${fmt(p.visible.x)},${fmt(p.visible.y)} → thermal ${fmt(p.thermal.x)},${fmt(p.thermal.y)})`;
const fmt = (n: number) => String(Math.round(n * 100) / 100);

export function fitHomography(pairs: readonly PointPair[], options: FitOptions = {}): HomographyFit {
  const maxRmsPx = options.maxRmsPx ?? 1.0;
  if (pairs.length < 4) throw new CalibrationError(`a homography needs at least 4 point pairs, got ${pairs.length} (6 or more let the residuals catch a bad pair)`);
  pairs.forEach((p, i) => {
    for (const v of [p.visible.x, p.visible.y, p.thermal.x, p.thermal.y]) {
      if (typeof v !== 'number' || !Number.isFinite(v)) throw new CalibrationError(`pair ${i + 1} has a coordinate that is not a finite number`);
    }
  });

  const tv = normalisation(pairs.map((p) => p.visible), 'visible');
  const tt = normalisation(pairs.map((p) => p.thermal), 'thermal');
  const v = pairs.map((p) => tv.apply(p.visible));
  const t = pairs.map((p) => tt.apply(p.thermal));
  checkGeneralPosition(v, 'visible', pairs);
  checkGeneralPosition(t, 'thermal', pairs);

  // AᵀA accumulated directly from the two rows each pair contributes.
  const ata = Array.from({ length: 9 }, () => new Array<number>(9).fill(0));
  for (let i = 0; i < v.length; i++) {
    const { x, y } = v[i]!;
    const { x: u, y: w } = t[i]!;
    const r1 = [-x, -y, -1, 0, 0, 0, u * x, u * y, u];
    const r2 = [0, 0, 0, -x, -y, -1, w * x, w * y, w];
    for (const r of [r1, r2]) for (let a = 0; a < 9; a++) for (let b = 0; b < 9; b++) ata[a]![b]! += r[a]! * r[b]!;
  }
  const { values, vectors } = symmetricEigen(ata);
  const order = values.map((_, i) => i).sort((a, b) => values[a]! - values[b]!);
  const largest = values[order[8]!]!;
  if (values[order[1]!]! <= 1e-10 * largest) {
    throw new CalibrationError('the point pairs do not determine a unique homography (repeated points, or too many on one line): spread the targets over the field of view');
  }
  const hn = vectors[order[0]!]!;

  // H = T_thermal⁻¹ · Ĥ · T_visible
  const h = mul3(mul3(tt.inverse, hn), tv.matrix);
  const scale = Math.abs(h[8]!) > 1e-12 ? h[8]! : Math.hypot(...h);
  const homography = h.map((x) => x / scale);

  const residualsPx = pairs.map((p) => {
    const q = applyHomography(homography, p.visible.x, p.visible.y);
    return Math.hypot(q.x - p.thermal.x, q.y - p.thermal.y);
  });
  const rmsPx = Math.sqrt(residualsPx.reduce((s, r) => s + r * r, 0) / residualsPx.length);
  const worstPair = residualsPx.indexOf(Math.max(...residualsPx));
  const warnings = pairs.length === 4 ? ['exactly 4 pairs fit exactly, so the residuals cannot reveal a wrong pair; use 6 or more'] : [];
  const fit: HomographyFit = { homography, residualsPx, rmsPx, worstPair, warnings };
  const worst = `worst is ${describePair(pairs[worstPair]!, worstPair)} at ${residualsPx[worstPair]!.toFixed(2)} px`;

  // All points must lie on the same side of the line the homography sends to infinity;
  // otherwise the fit folds the image (typically two pairs given in different orders).
  const ws = pairs.map((p) => homography[6]! * p.visible.x + homography[7]! * p.visible.y + homography[8]!);
  const positive = ws.filter((w) => w > 0).length;
  if (positive !== 0 && positive !== ws.length) {
    throw new CalibrationError(`the fitted mapping folds the image (some points map through infinity), so some pairs do not name the same target point in both cameras; ${worst}`, fit);
  }
  if (!(rmsPx <= maxRmsPx)) {
    throw new CalibrationError(
      `RMS reprojection error ${rmsPx.toFixed(2)} thermal px is above the limit of ${maxRmsPx} px; ${worst}: re-measure or drop it`,
      fit,
    );
  }
  return fit;
}

interface Normalisation {
  matrix: number[];
  inverse: number[];
  apply(p: Point): Point;
}

/** Hartley normalisation: centroid to the origin, mean distance √2. */
function normalisation(points: Point[], which: string): Normalisation {
  const cx = points.reduce((s, p) => s + p.x, 0) / points.length;
  const cy = points.reduce((s, p) => s + p.y, 0) / points.length;
  const meanDist = points.reduce((s, p) => s + Math.hypot(p.x - cx, p.y - cy), 0) / points.length;
  if (!(meanDist > 1e-9)) throw new CalibrationError(`all ${which} points are the same point`);
  const s = Math.SQRT2 / meanDist;
  return {
    matrix: [s, 0, -s * cx, 0, s, -s * cy, 0, 0, 1],
    inverse: [1 / s, 0, cx, 0, 1 / s, cy, 0, 0, 1],
    apply: (p) => ({ x: s * (p.x - cx), y: s * (p.y - cy) }),
  };
}

/**
 * Refuses point sets that cannot fix a homography: all points on (or very near) one line, and,
 * with exactly four pairs, any three on one line. Points are already normalised (scale ≈ 1).
 */
function checkGeneralPosition(points: Point[], which: string, pairs: readonly PointPair[]): void {
  // Spread across the thinnest direction, from the 2x2 scatter matrix.
  let sxx = 0;
  let syy = 0;
  let sxy = 0;
  for (const p of points) {
    sxx += p.x * p.x;
    syy += p.y * p.y;
    sxy += p.x * p.y;
  }
  const tr = sxx + syy;
  const det = sxx * syy - sxy * sxy;
  const minEig = tr / 2 - Math.sqrt(Math.max(0, (tr * tr) / 4 - det));
  if (minEig / tr < 1e-4) throw new CalibrationError(`the ${which} points are (nearly) collinear: spread the targets over the field of view, not along one line`);
  if (points.length === 4) {
    for (let a = 0; a < 4; a++) {
      for (let b = a + 1; b < 4; b++) {
        for (let c = b + 1; c < 4; c++) {
          const [p, q, r] = [points[a]!, points[b]!, points[c]!];
          const area = Math.abs((q.x - p.x) * (r.y - p.y) - (q.y - p.y) * (r.x - p.x)) / 2;
          if (area < 1e-3) {
            throw new CalibrationError(`with 4 pairs no three may be on one line, but in the ${which} image ${describePair(pairs[a]!, a)}, pair ${b + 1} and pair ${c + 1} are`);
          }
        }
      }
    }
  }
}

function mul3(a: readonly number[], b: readonly number[]): number[] {
  const out = new Array<number>(9).fill(0);
  for (let i = 0; i < 3; i++) for (let j = 0; j < 3; j++) for (let k = 0; k < 3; k++) out[3 * i + j]! += a[3 * i + k]! * b[3 * k + j]!;
  return out;
}

/**
 * Eigen-decomposition of a small symmetric matrix by cyclic Jacobi rotations: each rotation zeroes
 * one off-diagonal element; sweeps repeat until the off-diagonal mass is negligible. Slow for
 * big matrices, exact enough and simple for 9x9. Returns eigenvalues and unit eigenvectors
 * (vectors[k] belongs to values[k]).
 */
export function symmetricEigen(matrix: readonly (readonly number[])[]): { values: number[]; vectors: number[][] } {
  const n = matrix.length;
  const a = matrix.map((row) => [...row]);
  const v: number[][] = Array.from({ length: n }, (_, i) => Array.from({ length: n }, (_, j) => (i === j ? 1 : 0)));
  const norm = Math.sqrt(a.reduce((s, row) => s + row.reduce((t, x) => t + x * x, 0), 0));
  for (let sweep = 0; sweep < 100; sweep++) {
    let off = 0;
    for (let p = 0; p < n; p++) for (let q = p + 1; q < n; q++) off += a[p]![q]! ** 2;
    if (Math.sqrt(off) <= 1e-15 * norm) break;
    for (let p = 0; p < n; p++) {
      for (let q = p + 1; q < n; q++) {
        const apq = a[p]![q]!;
        if (apq === 0) continue;
        const theta = (a[q]![q]! - a[p]![p]!) / (2 * apq);
        const t = (theta >= 0 ? 1 : -1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1);
        const s = t * c;
        // A ← Jᵀ A J with J the rotation in the (p, q) plane; V ← V J.
        for (let k = 0; k < n; k++) {
          const akp = a[k]![p]!;
          const akq = a[k]![q]!;
          a[k]![p] = c * akp - s * akq;
          a[k]![q] = s * akp + c * akq;
        }
        for (let k = 0; k < n; k++) {
          const apk = a[p]![k]!;
          const aqk = a[q]![k]!;
          a[p]![k] = c * apk - s * aqk;
          a[q]![k] = s * apk + c * aqk;
        }
        for (let k = 0; k < n; k++) {
          const vkp = v[k]![p]!;
          const vkq = v[k]![q]!;
          v[k]![p] = c * vkp - s * vkq;
          v[k]![q] = s * vkp + c * vkq;
        }
      }
    }
  }
  return { values: a.map((row, i) => row[i]!), vectors: Array.from({ length: n }, (_, k) => v.map((row) => row[k]!)) };
}
