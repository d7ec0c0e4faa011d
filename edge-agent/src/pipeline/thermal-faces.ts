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
