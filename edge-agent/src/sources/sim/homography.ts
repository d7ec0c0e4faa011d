/** The simulator's rectangles ({x, y, w, h}) through the shared homography functions. */
import { mapBox as mapCornerBox, type Homography } from '../../geometry.js';

export { applyHomography, invertHomography, type Homography, type Point } from '../../geometry.js';

/** Axis-aligned bounds of a visible-pixel rectangle after mapping its corners. */
export function mapBox(h: Homography, r: { x: number; y: number; w: number; h: number }): { x: number; y: number; w: number; h: number } {
  const b = mapCornerBox(h, { x1: r.x, y1: r.y, x2: r.x + r.w, y2: r.y + r.h });
  return { x: b.x1, y: b.y1, w: b.x2 - b.x1, h: b.y2 - b.y1 };
}
