/**
 * Radiometric measurement of one face in one thermal frame (pure).
 *
 * The inner canthus is the site the standards name (IEC 80601-2-59): it sits in a band across
 * the eyes, and it is the hottest spot there. We take the hottest `spot x spot` pixel mean in
 * that band, so that one noisy pixel cannot set the reading; when the band is too small to hold
 * a spot we fall back to the face maximum and say so (`method: 'face-max'`).
 */
import type { ThermalFrame } from '../frames.js';
import { boxHeight, boxWidth, type Box } from '../geometry.js';

export interface MeasureOptions {
  /** Minimum face width in thermal pixels for any reading. */
  minFaceWidthPx: number;
  /** Side of the square averaged at the hottest point, in thermal pixels. */
  spotPx: number;
  /** Eye band as fractions of the face box (height from the top, width from the left). */
  canthusBand: { top: number; bottom: number; left: number; right: number };
  /** Use the face maximum instead when it is this much hotter than the band's hottest spot, °C. */
  faceMaxMarginC: number;
}

export const DEFAULT_MEASURE_OPTIONS: MeasureOptions = {
  minFaceWidthPx: 12,
  spotPx: 2,
  // Generous on purpose: detectors place the top of the box anywhere from the hairline to the
  // eyebrows (masked faces: often the eyebrows), and the canthus is the hottest spot in the band.
  canthusBand: { top: -0.1, bottom: 0.6, left: 0.15, right: 0.85 },
  faceMaxMarginC: 0.5,
};

export type FaceMeasurement =
  | { ok: true; apparentC: number; method: 'canthus' | 'face-max'; spot: { x: number; y: number }; faceWidthPx: number }
  | { ok: false; reason: 'face_too_small' | 'no_thermal_face'; faceWidthPx: number };

/** Integer pixel rectangle [x0, x1) x [y0, y1), clipped to the frame. */
interface Rect {
  x0: number;
  y0: number;
  x1: number;
  y1: number;
}

function clipRect(frame: ThermalFrame, box: Box): Rect {
  return {
    x0: Math.max(0, Math.floor(box.x1)),
    y0: Math.max(0, Math.floor(box.y1)),
    x1: Math.min(frame.width, Math.ceil(box.x2)),
    y1: Math.min(frame.height, Math.ceil(box.y2)),
  };
}

/** Hottest mean over a spot x spot window inside rect; null when the rect cannot hold one. */
export function hottestSpot(frame: ThermalFrame, rect: Rect, spot: number): { c: number; x: number; y: number } | null {
  if (rect.x1 - rect.x0 < spot || rect.y1 - rect.y0 < spot) return null;
  const { width, celsius } = frame;
  let best = -Infinity;
  let bx = 0;
  let by = 0;
  for (let y = rect.y0; y <= rect.y1 - spot; y++) {
    for (let x = rect.x0; x <= rect.x1 - spot; x++) {
      let sum = 0;
      for (let dy = 0; dy < spot; dy++) {
        const row = (y + dy) * width + x;
        for (let dx = 0; dx < spot; dx++) sum += celsius[row + dx]!;
      }
      if (sum > best) {
        best = sum;
        bx = x;
        by = y;
      }
    }
  }
  return { c: best / (spot * spot), x: bx, y: by };
}

export function measureFace(frame: ThermalFrame, thermalBox: Box, options: MeasureOptions = DEFAULT_MEASURE_OPTIONS): FaceMeasurement {
  const faceWidthPx = boxWidth(thermalBox);
  const face = clipRect(frame, thermalBox);
  if (face.x1 - face.x0 <= 0 || face.y1 - face.y0 <= 0) return { ok: false, reason: 'no_thermal_face', faceWidthPx };
  if (faceWidthPx < options.minFaceWidthPx) return { ok: false, reason: 'face_too_small', faceWidthPx };

  const h = boxHeight(thermalBox);
  const w = faceWidthPx;
  const band = clipRect(frame, {
    x1: thermalBox.x1 + w * options.canthusBand.left,
    x2: thermalBox.x1 + w * options.canthusBand.right,
    y1: thermalBox.y1 + h * options.canthusBand.top,
    y2: thermalBox.y1 + h * options.canthusBand.bottom,
  });
  const canthus = hottestSpot(frame, band, options.spotPx);
  // The face maximum is the standard fallback (inner canthi and face max screen equally well,
  // reference/thermal-screening.md 3.1): used when the band cannot hold a spot, or when the
  // face is clearly hotter elsewhere, i.e. the eyes are not where the box says (tilted head,
  // a box that starts at the eyebrows).
  const max = hottestSpot(frame, face, options.spotPx) ?? hottestSpot(frame, face, 1);
  if (canthus && (!max || max.c - canthus.c <= options.faceMaxMarginC)) {
    return { ok: true, apparentC: canthus.c, method: 'canthus', spot: { x: canthus.x, y: canthus.y }, faceWidthPx };
  }
  if (!max) return { ok: false, reason: 'no_thermal_face', faceWidthPx };
  return { ok: true, apparentC: max.c, method: 'face-max', spot: { x: max.x, y: max.y }, faceWidthPx };
}

/** Median and spread of the pixels in a region (blackbody, ambient patches). */
export function regionStats(frame: ThermalFrame, box: Box): { median: number; spread: number; count: number } | null {
  const r = clipRect(frame, box);
  const values: number[] = [];
  for (let y = r.y0; y < r.y1; y++) {
    for (let x = r.x0; x < r.x1; x++) values.push(frame.celsius[y * frame.width + x]!);
  }
  if (values.length === 0) return null;
  values.sort((a, b) => a - b);
  const median = values[values.length >> 1]!;
  // Inter-decile range: robust to a hot pixel, but large when something blocks part of the region.
  const spread = values[Math.floor(values.length * 0.9)]! - values[Math.floor(values.length * 0.1)]!;
  return { median, spread, count: values.length };
}

/**
 * Object temperature from an apparent (emissivity 1) reading, for cameras that report
 * emissivity-1 temperatures: total-radiance approximation with the reflected temperature
 * taken as ambient. Emissivity 0.98 for skin adds about +0.3 °C at 36.5 °C skin, 22 °C room.
 */
export function correctEmissivity(apparentC: number, emissivity: number, reflectedC: number): number {
  if (emissivity >= 1) return apparentC;
  const k = 273.15;
  const tApp = (apparentC + k) ** 4;
  const tRefl = (reflectedC + k) ** 4;
  return ((tApp - (1 - emissivity) * tRefl) / emissivity) ** 0.25 - k;
}

/** The inverse of {@link correctEmissivity}: what an emissivity-1 camera reads from a surface. */
export function apparentFromObject(objectC: number, emissivity: number, reflectedC: number): number {
  if (emissivity >= 1) return objectC;
  const k = 273.15;
  return (emissivity * (objectC + k) ** 4 + (1 - emissivity) * (reflectedC + k) ** 4) ** 0.25 - k;
}
