/** Boxes and the visible-to-thermal homography. */

export interface Box {
  x1: number;
  y1: number;
  x2: number;
  y2: number;
}

export const boxWidth = (b: Box): number => b.x2 - b.x1;
export const boxHeight = (b: Box): number => b.y2 - b.y1;
export const boxArea = (b: Box): number => Math.max(0, boxWidth(b)) * Math.max(0, boxHeight(b));

export function iou(a: Box, b: Box): number {
  const inter = boxArea({ x1: Math.max(a.x1, b.x1), y1: Math.max(a.y1, b.y1), x2: Math.min(a.x2, b.x2), y2: Math.min(a.y2, b.y2) });
  const union = boxArea(a) + boxArea(b) - inter;
  return union > 0 ? inter / union : 0;
}

/** Maps (x, y) through a row-major 3x3 homography. */
export function applyHomography(h: readonly number[], x: number, y: number): [number, number] {
  const w = h[6]! * x + h[7]! * y + h[8]!;
  return [(h[0]! * x + h[1]! * y + h[2]!) / w, (h[3]! * x + h[4]! * y + h[5]!) / w];
}

/** The axis-aligned box around a visible-frame box's four corners mapped into the thermal frame. */
export function mapBox(h: readonly number[], box: Box): Box {
  const corners = [
    applyHomography(h, box.x1, box.y1),
    applyHomography(h, box.x2, box.y1),
    applyHomography(h, box.x1, box.y2),
    applyHomography(h, box.x2, box.y2),
  ];
  const xs = corners.map((c) => c[0]);
  const ys = corners.map((c) => c[1]);
  return { x1: Math.min(...xs), y1: Math.min(...ys), x2: Math.max(...xs), y2: Math.max(...ys) };
}

/** Scale-only homography for cameras that share an optical axis (or a default for sims). */
export function scaleHomography(visible: { width: number; height: number }, thermal: { width: number; height: number }): number[] {
  return [thermal.width / visible.width, 0, 0, 0, thermal.height / visible.height, 0, 0, 0, 1];
}
