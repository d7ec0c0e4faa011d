/** 3x3 homographies, row-major, as in SceneGeometry.homography (visible pixel → thermal pixel). */
export type Homography = readonly number[];

export interface Point {
  x: number;
  y: number;
}

export function applyHomography(h: Homography, x: number, y: number): Point {
  const w = h[6]! * x + h[7]! * y + h[8]!;
  return { x: (h[0]! * x + h[1]! * y + h[2]!) / w, y: (h[3]! * x + h[4]! * y + h[5]!) / w };
}

export function invertHomography(h: Homography): number[] {
  const [a, b, c, d, e, f, g, i, j] = h as [number, number, number, number, number, number, number, number, number];
  const A = e * j - f * i;
  const B = -(d * j - f * g);
  const C = d * i - e * g;
  const det = a * A + b * B + c * C;
  if (!Number.isFinite(det) || Math.abs(det) < 1e-12) throw new RangeError('homography is not invertible');
  return [
    A / det, -(b * j - c * i) / det, (b * f - c * e) / det,
    B / det, (a * j - c * g) / det, -(a * f - c * d) / det,
    C / det, -(a * i - b * g) / det, (a * e - b * d) / det,
  ];
}

/** Axis-aligned bounds of a visible-pixel box after mapping its corners. */
export function mapBox(h: Homography, box: { x: number; y: number; w: number; h: number }): { x: number; y: number; w: number; h: number } {
  const corners = [
    applyHomography(h, box.x, box.y),
    applyHomography(h, box.x + box.w, box.y),
    applyHomography(h, box.x, box.y + box.h),
    applyHomography(h, box.x + box.w, box.y + box.h),
  ];
  const xs = corners.map((p) => p.x);
  const ys = corners.map((p) => p.y);
  const x = Math.min(...xs);
  const y = Math.min(...ys);
  return { x, y, w: Math.max(...xs) - x, h: Math.max(...ys) - y };
}
