/**
 * Face candidates found in the thermal frame alone, for sites without a visible camera (an
 * MLX90640 board, a bare Lepton): skin-warm connected regions, the blackbody excluded. Cheaper
 * and cruder than the ONNX detector: no mask state, and no way to tell a face from a warm hand.
 */
import type { BlackbodyRegion, ThermalFrame } from '../frames.js';
import type { Box } from '../geometry.js';

export interface ThermalFaceOptions {
  /** Pixels at or above this are candidate skin, °C. */
  minSkinC: number;
  /** Smallest region, in pixels, that counts as a face. */
  minPixels: number;
}

export const DEFAULT_THERMAL_FACE_OPTIONS: ThermalFaceOptions = { minSkinC: 31, minPixels: 12 };

export function detectThermalFaces(
  frame: ThermalFrame,
  blackbody: BlackbodyRegion | null,
  options: ThermalFaceOptions = DEFAULT_THERMAL_FACE_OPTIONS,
): Box[] {
  const { width, height, celsius } = frame;
  const seen = new Uint8Array(width * height);
  const inBlackbody = (x: number, y: number): boolean =>
    blackbody !== null &&
    x >= blackbody.x - 1 &&
    x < blackbody.x + blackbody.w + 1 &&
    y >= blackbody.y - 1 &&
    y < blackbody.y + blackbody.h + 1;
  const boxes: Array<Box & { pixels: number }> = [];
  const stack: number[] = [];
  for (let start = 0; start < seen.length; start++) {
    if (seen[start] || celsius[start]! < options.minSkinC) continue;
    seen[start] = 1;
    stack.push(start);
    let pixels = 0;
    let x1 = width;
    let y1 = height;
    let x2 = 0;
    let y2 = 0;
    while (stack.length > 0) {
      const i = stack.pop()!;
      const x = i % width;
      const y = (i - x) / width;
      if (inBlackbody(x, y)) continue;
      pixels++;
      x1 = Math.min(x1, x);
      y1 = Math.min(y1, y);
      x2 = Math.max(x2, x + 1);
      y2 = Math.max(y2, y + 1);
      for (const n of [x > 0 ? i - 1 : -1, x < width - 1 ? i + 1 : -1, i - width, i + width]) {
        if (n >= 0 && n < seen.length && !seen[n] && celsius[n]! >= options.minSkinC) {
          seen[n] = 1;
          stack.push(n);
        }
      }
    }
    if (pixels >= options.minPixels) boxes.push({ x1, y1, x2, y2, pixels });
  }
  return boxes.sort((a, b) => b.pixels - a.pixels).map(({ x1, y1, x2, y2 }) => ({ x1, y1, x2, y2 }));
}

export interface WarmHeadOptions extends ThermalFaceOptions {
  /** Narrowest head, thermal pixels (narrower warm regions are necks, hands, lamps). */
  minWidthPx: number;
  /**
   * A face has eyes: its hottest spot (the inner canthus) is at least this much above the
   * region's median. A neck, an arm or a warm cheek under a mask has no such spot.
   */
  minHotSpotC: number;
}

export const DEFAULT_WARM_HEAD_OPTIONS: WarmHeadOptions = { ...DEFAULT_THERMAL_FACE_OPTIONS, minWidthPx: 8, minHotSpotC: 0.6 };

/** Hottest pixel minus the median of the skin-warm pixels in a box. */
function hotSpotContrast(frame: ThermalFrame, box: Box, minSkinC: number): number {
  const warm: number[] = [];
  for (let y = Math.floor(box.y1); y < Math.min(frame.height, Math.ceil(box.y2)); y++) {
    for (let x = Math.floor(box.x1); x < Math.min(frame.width, Math.ceil(box.x2)); x++) {
      const c = frame.celsius[y * frame.width + x]!;
      if (c >= minSkinC) warm.push(c);
    }
  }
  if (warm.length === 0) return 0;
  warm.sort((a, b) => a - b);
  return warm[warm.length - 1]! - warm[warm.length >> 1]!;
}

/**
 * Head-shaped warm regions, for fusion with a visible detector: skin-warm regions at least
 * `minWidthPx` wide, cut to a face's proportions from the top (the neck below a face is part of
 * the same region), and without the warm regions right under a wider one (a neck that a cool
 * mask separates from its face).
 */
export function findWarmHeads(frame: ThermalFrame, blackbody: BlackbodyRegion | null, options: WarmHeadOptions = DEFAULT_WARM_HEAD_OPTIONS): Box[] {
  const regions = detectThermalFaces(frame, blackbody, options);
  const wide = regions.filter((b) => b.x2 - b.x1 >= options.minWidthPx);
  const heads: Box[] = [];
  for (const r of wide) {
    const w = r.x2 - r.x1;
    const under = wide.some((o) => o !== r && o.x2 - o.x1 > w && r.y1 >= o.y1 && r.y1 - o.y2 <= w && r.x1 < o.x2 && r.x2 > o.x1);
    if (under) continue;
    // Faces are 1.0–1.35 times as tall as wide; hair (cooler) is above the warm region's top.
    const head = { x1: r.x1, y1: Math.max(0, r.y1 - 0.1 * w), x2: r.x2, y2: Math.min(r.y2, r.y1 + 1.15 * w) };
    if (hotSpotContrast(frame, head, options.minSkinC) >= options.minHotSpotC) heads.push(head);
  }
  return heads;
}
