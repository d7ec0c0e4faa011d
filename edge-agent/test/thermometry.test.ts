import { describe, expect, it } from 'vitest';
import type { ThermalFrame } from '../src/frames.js';
import { applyHomography, iou, mapBox } from '../src/geometry.js';
import { correctEmissivity, DEFAULT_MEASURE_OPTIONS, measureFace, regionStats } from '../src/thermometry/measure.js';
import { initialReference, referenceUsable, updateReference } from '../src/thermometry/reference.js';
import { addToBaseline, baselineValue, emptyBaseline } from '../src/thermometry/baseline.js';

function frame(width: number, height: number, fill: number, seq = 1): ThermalFrame {
  return { seq, timestampMs: (seq - 1) * 100, width, height, celsius: new Float32Array(width * height).fill(fill) };
}
function paint(f: ThermalFrame, x0: number, y0: number, w: number, h: number, c: number): void {
  for (let y = y0; y < y0 + h; y++) for (let x = x0; x < x0 + w; x++) f.celsius[y * f.width + x] = c;
}

describe('geometry', () => {
  it('maps boxes through a homography', () => {
    const h = [0.25, 0, 2, 0, 0.25, 1.5, 0, 0, 1];
    expect(applyHomography(h, 100, 200)).toEqual({ x: 27, y: 51.5 });
    expect(mapBox(h, { x1: 0, y1: 0, x2: 40, y2: 80 })).toEqual({ x1: 2, y1: 1.5, x2: 12, y2: 21.5 });
  });
  it('computes IoU', () => {
    expect(iou({ x1: 0, y1: 0, x2: 10, y2: 10 }, { x1: 5, y1: 0, x2: 15, y2: 10 })).toBeCloseTo(1 / 3);
    expect(iou({ x1: 0, y1: 0, x2: 1, y2: 1 }, { x1: 2, y1: 2, x2: 3, y2: 3 })).toBe(0);
  });
});

describe('measureFace', () => {
  const face = { x1: 40, y1: 30, x2: 70, y2: 70 }; // 30 px wide, 40 tall
  it('finds the inner canthus as the hottest spot in the eye band, not a hotter pixel elsewhere', () => {
    const f = frame(160, 120, 22);
    paint(f, 40, 30, 30, 40, 34.5); // face skin
    paint(f, 52, 44, 2, 2, 36.6); // inner canthus
    paint(f, 62, 66, 1, 1, 39); // a hot pixel near the chin (e.g. a drink): outside the band
    const m = measureFace(f, face);
    expect(m).toMatchObject({ ok: true, method: 'canthus', spot: { x: 52, y: 44 } });
    expect(m.ok && m.apparentC).toBeCloseTo(36.6, 5);
  });
  it('averages the spot so a single hot pixel does not set the reading', () => {
    const f = frame(160, 120, 22);
    paint(f, 40, 30, 30, 40, 34.5);
    paint(f, 52, 44, 1, 1, 38.5);
    const m = measureFace(f, face);
    expect(m.ok && m.apparentC).toBeCloseTo((38.5 + 3 * 34.5) / 4, 5);
  });
  it('uses the face maximum when the face is clearly hotter outside the eye band', () => {
    const f = frame(160, 120, 22);
    paint(f, 40, 30, 30, 40, 34.5);
    paint(f, 52, 44, 2, 2, 35.0); // something warmish in the band
    paint(f, 50, 62, 2, 2, 36.6); // the real canthus, low in a box that starts too high
    const m = measureFace(f, face);
    expect(m).toMatchObject({ ok: true, method: 'face-max', spot: { x: 50, y: 62 } });
  });
  it('refuses faces too small for a reading, and boxes outside the frame', () => {
    expect(measureFace(frame(160, 120, 30), { x1: 10, y1: 10, x2: 18, y2: 20 })).toMatchObject({ ok: false, reason: 'face_too_small' });
    expect(measureFace(frame(160, 120, 30), { x1: 200, y1: 10, x2: 240, y2: 50 })).toMatchObject({ ok: false, reason: 'no_thermal_face' });
  });
  it('falls back to the face maximum when the band is cut off by the frame edge', () => {
    const f = frame(160, 120, 22);
    paint(f, 0, 0, 14, 8, 35.2);
    const m = measureFace(f, { x1: 0, y1: -40, x2: 14, y2: 8 }, { ...DEFAULT_MEASURE_OPTIONS, canthusBand: { top: 0.2, bottom: 0.55, left: 0.2, right: 0.8 } });
    expect(m).toMatchObject({ ok: true, method: 'face-max' });
  });
  it('computes robust region statistics', () => {
    const f = frame(10, 10, 35);
    paint(f, 0, 0, 1, 1, 80); // one dead pixel
    const s = regionStats(f, { x1: 0, y1: 0, x2: 10, y2: 10 });
    expect(s).toEqual({ median: 35, spread: 0, count: 100 });
  });
});

describe('emissivity', () => {
  it('raises skin readings by about 0.3 °C at emissivity 0.98 in a 22 °C room', () => {
    const c = correctEmissivity(36.5, 0.98, 22);
    expect(c - 36.5).toBeGreaterThan(0.2);
    expect(c - 36.5).toBeLessThan(0.4);
    expect(correctEmissivity(36.5, 1, 22)).toBe(36.5);
  });
});

describe('blackbody reference', () => {
  const region = { x: 150, y: 100, w: 6, h: 6, setC: 35 };
  const withBlackbody = (seq: number, c: number) => {
    const f = frame(160, 120, 22, seq);
    paint(f, 150, 100, 6, 6, c);
    return f;
  };
  it('locks on after warm-up and reports the offset that corrects drift', () => {
    let s = initialReference(region);
    expect(s.status).toBe('not_seen');
    for (let i = 1; i <= 10; i++) s = updateReference(s, withBlackbody(i, 34.2), region);
    expect(s.status).toBe('ok');
    expect(s.offsetC).toBeCloseTo(0.8, 5);
    expect(referenceUsable(s)).toBe(true);
  });
  it('follows slow drift but ignores a person blocking it, then goes stale', () => {
    let s = initialReference(region);
    for (let i = 1; i <= 10; i++) s = updateReference(s, withBlackbody(i, 35 + i * 0.01), region);
    const before = s.offsetC!;
    // Half of the blackbody covered by a 30 °C face: not uniform, refused.
    for (let i = 11; i <= 15; i++) {
      const f = withBlackbody(i, 35.1);
      paint(f, 150, 100, 3, 6, 30);
      s = updateReference(s, f, region);
    }
    expect(s.offsetC).toBe(before);
    expect(s.status).toBe('unstable');
    expect(referenceUsable(s)).toBe(true);
    // Blackbody switched off (room temperature): after staleAfterMs it is stale and unusable.
    for (let i = 16; i <= 80; i++) s = updateReference(s, withBlackbody(i, 22), region);
    expect(s.status).toBe('stale');
    expect(referenceUsable(s)).toBe(false);
  });
  it('re-locks on a persistent step (flat-field correction)', () => {
    let s = initialReference(region);
    for (let i = 1; i <= 10; i++) s = updateReference(s, withBlackbody(i, 35), region);
    for (let i = 11; i <= 30; i++) s = updateReference(s, withBlackbody(i, 34), region);
    expect(s.status).toBe('ok');
    expect(s.offsetC).toBeCloseTo(1, 1);
  });
  it('without a configured blackbody the status says so', () => {
    const s = updateReference(initialReference(null), withBlackbody(1, 35), null);
    expect(s.status).toBe('not_configured');
    expect(referenceUsable(s)).toBe(false);
  });
});

describe('relative baseline', () => {
  it('is the mean of recent passes without min and max, once enough samples exist', () => {
    let b = emptyBaseline;
    for (const v of [36.0, 36.2, 36.4, 36.6]) b = addToBaseline(b, v);
    expect(baselineValue(b)).toBeNull();
    b = addToBaseline(b, 39.0);
    expect(baselineValue(b)).toBeCloseTo((36.2 + 36.4 + 36.6) / 3, 5);
    for (let i = 0; i < 20; i++) b = addToBaseline(b, 35);
    expect(b.values).toHaveLength(10);
    expect(baselineValue(b)).toBe(35);
  });
});
