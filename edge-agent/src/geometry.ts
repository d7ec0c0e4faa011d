/**
 * Boxes and homographies shared by every stage: detections (vision), the visible-to-thermal
 * mapping (thermometry), tracking, and the simulator that renders both cameras.
 */

/** Axis-aligned box in corner form; units depend on context (pixels or normalised). */
export interface Box {
  x1: number;
  y1: number;
  x2: number;
  y2: number;
}

export interface Point {
  x: number;
  y: number;
}

/** 3x3 homography, row-major (SceneGeometry.homography: visible pixel → thermal pixel). */
export type Homography = readonly number[];

export const boxWidth = (b: Box): number => b.x2 - b.x1;
export const boxHeight = (b: Box): number => b.y2 - b.y1;
export const boxArea = (b: Box): number => Math.max(0, b.x2 - b.x1) * Math.max(0, b.y2 - b.y1);

/** Intersection over union of two corner-form boxes (0 when either is empty). */
export function iou(a: Box, b: Box): number {
  const w = Math.min(a.x2, b.x2) - Math.max(a.x1, b.x1);
  const h = Math.min(a.y2, b.y2) - Math.max(a.y1, b.y1);
  if (w <= 0 || h <= 0) return 0;
  const inter = w * h;
  const union = boxArea(a) + boxArea(b) - inter;
  return union > 0 ? inter / union : 0;
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

/** The axis-aligned box around a box's four corners mapped through a homography. */
export function mapBox(h: Homography, box: Box): Box {
  const corners = [
    applyHomography(h, box.x1, box.y1),
    applyHomography(h, box.x2, box.y1),
    applyHomography(h, box.x1, box.y2),
    applyHomography(h, box.x2, box.y2),
  ];
  const xs = corners.map((p) => p.x);
  const ys = corners.map((p) => p.y);
  return { x1: Math.min(...xs), y1: Math.min(...ys), x2: Math.max(...xs), y2: Math.max(...ys) };
}

/** Scale-only homography for two cameras sharing an optical axis (no calibration yet). */
export function scaleHomography(visible: { width: number; height: number }, thermal: { width: number; height: number }): number[] {
  return [thermal.width / visible.width, 0, 0, 0, thermal.height / visible.height, 0, 0, 0, 1];
}
