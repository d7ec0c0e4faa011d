/**
 * Sites without a visible camera: faces are warm regions of the thermal frame, and live thermal
 * and visible streams are paired by arrival time.
 */
import { describe, expect, it } from 'vitest';
import type { ThermalFrame, ThermalSource, VisibleFrame } from '../src/frames.js';
import { defaultPipelineOptions, ScreeningPipeline } from '../src/pipeline/pipeline.js';
import { detectThermalFaces } from '../src/pipeline/thermal-faces.js';
import { pairSources } from '../src/sources/pair.js';
import type { VisibleSource } from '../src/sources/mjpeg.js';

const W = 80;
const H = 60;
const blackbody = { x: 72, y: 52, w: 6, h: 6, setC: 35 };

/** A person's warm face (with a hotter canthus spot) at column `x`, camera offset `driftC`. */
function frame(seq: number, face: { x: number; canthusC: number } | null, driftC = 0.6): ThermalFrame {
  const celsius = new Float32Array(W * H).fill(22 + driftC);
  const paint = (x0: number, y0: number, w: number, h: number, c: number) => {
    for (let y = y0; y < y0 + h; y++) for (let x = x0; x < x0 + w; x++) celsius[y * W + x] = c + driftC;
  };
  if (face) {
    paint(face.x, 10, 18, 24, face.canthusC - 1.5);
    paint(face.x + 7, 16, 2, 2, face.canthusC);
  }
  paint(blackbody.x, blackbody.y, blackbody.w, blackbody.h, blackbody.setC);
  return { seq, timestampMs: seq * 115, width: W, height: H, celsius };
}

describe('thermal-only screening', () => {
  it('finds warm faces and ignores the blackbody and small warm spots', () => {
    const f = frame(1, { x: 20, canthusC: 36.5 });
    f.celsius[5 * W + 60] = 33; // a warm pixel (a lamp), too small to be a face
    expect(detectThermalFaces(f, blackbody)).toEqual([{ x1: 20, y1: 10, x2: 38, y2: 34 }]);
    expect(detectThermalFaces(frame(2, null), blackbody)).toEqual([]);
  });

  it('decides once per person with the blackbody-corrected canthus and no mask state', async () => {
    const geometry = { fps: 8.7, thermal: { width: W, height: H }, visible: null, homography: null, blackbody, ambientC: 22 };
    const options = defaultPipelineOptions('site-a', 'gate-9', { name: 'thermal-only', sha256: 'a'.repeat(64) });
    const pipeline = new ScreeningPipeline(geometry, null, { ...options, decision: { ...options.decision, emissivity: 1 } });
    const script: Array<{ x: number; canthusC: number } | null> = [
      ...Array(5).fill(null),
      ...Array.from({ length: 8 }, (_, i) => ({ x: 10 + i, canthusC: 36.4 })),
      ...Array(6).fill(null),
      ...Array.from({ length: 8 }, (_, i) => ({ x: 30 - i, canthusC: 38.2 })),
      ...Array(6).fill(null),
    ];
    const results = [];
    let seq = 1;
    for (const face of script) results.push(...(await pipeline.process({ thermal: frame(seq++, face), visible: null })));
    results.push(...(await pipeline.finish()));
    expect(results.map((r) => [r.screening.decision, r.screening.temperatureC, r.screening.mask, r.screening.mode])).toEqual([
      ['pass', 36.4, 'unknown', 'absolute'],
      ['secondary_check', 38.2, 'unknown', 'absolute'],
    ]);
    // The snapshot of the flagged person is the thermal crop alone (no visible camera).
    expect(results[1]!.snapshot?.subarray(0, 2)).toEqual(Buffer.from([0xff, 0xd8]));
  });
});

describe('pairSources', () => {
  const thermalOf = (n: number, gapMs: number): ThermalSource => ({
    async *frames() {
      for (let i = 1; i <= n; i++) {
        await new Promise((r) => setTimeout(r, gapMs));
        yield frame(i, null);
      }
    },
    close: async () => {},
  });
  const visibleOf = (frames: Array<{ delayMs: number } | Error>): VisibleSource => ({
    async *frames() {
      let seq = 1;
      for (const f of frames) {
        if (f instanceof Error) throw f;
        await new Promise((r) => setTimeout(r, f.delayMs));
        yield { seq: seq++, timestampMs: Date.now(), width: 4, height: 4, encoded: Buffer.from([seq]) } satisfies VisibleFrame;
      }
      await new Promise(() => {}); // a camera that goes quiet
    },
    close: async () => {},
  });
  const geometry = { fps: 10, thermal: { width: W, height: H }, visible: { width: 4, height: 4 }, homography: null, blackbody: null, ambientC: null };

  it('pairs each thermal frame with a fresh visible frame, and none once the camera goes quiet', async () => {
    const source = pairSources(thermalOf(12, 30), visibleOf([{ delayMs: 5 }, { delayMs: 30 }, { delayMs: 30 }]), geometry, { maxSkewMs: 120 });
    const got: Array<number | null> = [];
    for await (const pair of source.frames()) got.push(pair.visible ? pair.visible.seq : null);
    expect(got.slice(0, 3).every((v) => v !== null)).toBe(true);
    expect(got.slice(-3)).toEqual([null, null, null]);
  });

  it('stops with a clear error when the visible camera fails', async () => {
    const source = pairSources(thermalOf(10, 20), visibleOf([{ delayMs: 1 }, new Error('camera unplugged')]), geometry);
    await expect(async () => {
      for await (const _pair of source.frames()) void _pair;
    }).rejects.toThrow(/visible camera failed: camera unplugged/);
  });
});
