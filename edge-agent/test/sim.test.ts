import { apparentFromObject } from '../src/thermometry/measure.js';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { afterAll, describe, expect, it } from 'vitest';
import type { FramePair } from '../src/frames.js';
import { openReplay } from '../src/sources/replay.js';
import type { PersonTruth, SimOptions, SimTruth } from '../src/sources/sim/index.js';
import {
  applyHomography,
  canthusPixels,
  createSimSource,
  driftAtFrame,
  mapBox,
  resolveSimOptions,
  simulateScene,
  simulateToReplay,
} from '../src/sources/sim/index.js';
import { Rng } from '../src/sources/sim/random.js';

const facesDir = fileURLToPath(new URL('../../../shared/datasets/mask-sample/', import.meta.url));
const haveFaces = existsSync(join(facesDir, 'labels.csv'));
if (!haveFaces) console.warn(`sim tests skipped: face crops not found at ${facesDir} (../shared/datasets/mask-sample)`);

const dirs: string[] = [];
afterAll(async () => {
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});

async function collect(frames: AsyncIterable<FramePair>, limit = Infinity): Promise<FramePair[]> {
  const out: FramePair[] = [];
  for await (const f of frames) {
    out.push(f);
    if (out.length >= limit) break;
  }
  return out;
}

function mean(values: number[]): number {
  return values.reduce((a, b) => a + b, 0) / values.length;
}

/** Thermal pixel indices whose centres fall inside a face-box sub-rectangle (fractions of the box). */
function facePixels(truth: SimTruth, box: { x: number; y: number; w: number; h: number }, fx0: number, fx1: number, fy0: number, fy1: number): number[] {
  const h = truth.options.homography;
  const a = applyHomography(h, box.x + fx0 * box.w, box.y + fy0 * box.h);
  const b = applyHomography(h, box.x + fx1 * box.w, box.y + fy1 * box.h);
  const out: number[] = [];
  for (let v = Math.ceil(a.y - 0.5); v + 0.5 <= b.y; v++) for (let u = Math.ceil(a.x - 0.5); u + 0.5 <= b.x; u++) out.push(v * 160 + u);
  return out;
}

function personAt(truth: SimTruth, frame: number): PersonTruth | undefined {
  return truth.people.find((p) => frame >= p.frames[0] && frame <= p.frames[1]);
}

describe('seeded generator', () => {
  it('repeats for a seed and gives standard normals', () => {
    const a = new Rng(42);
    const b = new Rng(42);
    const xs = Array.from({ length: 20000 }, () => a.gaussian());
    expect(Array.from({ length: 20000 }, () => b.gaussian())).toEqual(xs);
    expect(Math.abs(mean(xs))).toBeLessThan(0.03);
    const sd = Math.sqrt(mean(xs.map((x) => x * x)));
    expect(Math.abs(sd - 1)).toBeLessThan(0.03);
  });
});

describe('simulator options', () => {
  it('maps the CLI options and names bad ones', () => {
    expect(resolveSimOptions({ people: 5, feverRate: 0.2, maskRate: 0.4, seed: 9 })).toMatchObject({ people: 5, feverRate: 0.2, maskRate: 0.4, seed: 9 });
    expect(() => resolveSimOptions({ feverRate: 1.5 })).toThrow(/feverRate must be a number in \[0, 1\] \(got 1.5\)/);
    expect(() => resolveSimOptions({ people: 2.5 })).toThrow(/people must be an integer/);
    expect(() => resolveSimOptions({ feverRate: 0.6, coldRate: 0.6 })).toThrow(/feverRate \+ coldRate must be at most 1/);
    expect(() => resolveSimOptions({ blackbodyRegion: { x: 155, y: 100, w: 6, h: 6, setC: 35 } })).toThrow(/blackbodyRegion must be an integer region inside 160x120/);
    expect(() => resolveSimOptions({ peple: 3 } as SimOptions)).toThrow(/simulator option peple must be one of/);
  });

  it.skipIf(!haveFaces)('names a missing face folder', async () => {
    await expect(simulateScene({ facesDir: '/nonexistent/faces' })).rejects.toThrow(/cannot read \/nonexistent\/faces\/labels\.csv/);
  });
});

describe.skipIf(!haveFaces)('simulated scene', () => {
  it('is deterministic from the seed', async () => {
    const opts = { people: 2, seed: 11, facesDir };
    const [a, b, c] = await Promise.all([simulateScene(opts), simulateScene(opts), simulateScene({ ...opts, seed: 12 })]);
    expect(a.truth).toEqual(b.truth);
    expect(c.truth.people).not.toEqual(a.truth.people);
    const [fa, fb, fc] = await Promise.all([collect(a.frames, 14), collect(b.frames, 14), collect(c.frames, 14)]);
    for (let i = 0; i < fa.length; i++) {
      expect(fb[i]!.thermal.celsius).toEqual(fa[i]!.thermal.celsius);
      expect(fb[i]!.visible!.encoded.equals(fa[i]!.visible!.encoded)).toBe(true);
    }
    expect(fc[0]!.thermal.celsius).not.toEqual(fa[0]!.thermal.celsius);
    // Iterating the same scene again renders it again, identically.
    const again = await collect(a.frames, 14);
    expect(again[13]!.thermal.celsius).toEqual(fa[13]!.thermal.celsius);
  });

  it('matches the requested rates and truth distributions', async () => {
    const { truth, geometry } = await simulateScene({ people: 40, feverRate: 0.1, maskRate: 0.25, coldRate: 0.05, seed: 5, facesDir });
    const people = truth.people;
    expect(people).toHaveLength(40);
    expect(people.filter((p) => p.elevated)).toHaveLength(4);
    expect(people.filter((p) => p.cold)).toHaveLength(2);
    expect(people.filter((p) => p.mask === 'mask')).toHaveLength(10);
    const labels = new Map(
      (await readFile(join(facesDir, 'labels.csv'), 'utf8'))
        .trim()
        .split('\n')
        .slice(1)
        .map((l) => l.split(',') as [string, string]),
    );
    for (const p of people) {
      expect(labels.get(p.faceFile)).toBe(p.mask);
      const [lo, hi] = p.cold ? [32, 34] : p.elevated ? [37.8, 39] : [35.8, 36.9];
      expect(p.canthusC).toBeGreaterThanOrEqual(lo);
      expect(p.canthusC).toBeLessThanOrEqual(hi);
      expect(p.faceBoxes).toHaveLength(p.frames[1] - p.frames[0] + 1);
      expect(p.faceBoxes.length).toBeGreaterThanOrEqual(8);
      expect(p.faceBoxes.length).toBeLessThanOrEqual(12);
      for (const box of p.faceBoxes) {
        expect(box.w).toBeGreaterThanOrEqual(290);
        expect(box.w).toBeLessThanOrEqual(340);
        expect(box.x).toBeGreaterThanOrEqual(0);
        expect(box.y).toBeGreaterThanOrEqual(0);
        expect(box.x + box.w).toBeLessThanOrEqual(640);
        expect(box.y + box.h).toBeLessThanOrEqual(480);
      }
    }
    // One person at a time, with empty frames between them.
    for (let i = 1; i < people.length; i++) expect(people[i]!.frames[0] - people[i - 1]!.frames[1]).toBe(6);
    expect(truth.frameCount).toBe(people.at(-1)!.frames[1] + 5);
    expect(geometry.blackbody).toEqual({ x: 150, y: 100, w: 6, h: 6, setC: 35 });
    // Faces of each person mostly differ: crops are picked at random from the label's pool.
    expect(new Set(people.map((p) => p.faceFile)).size).toBeGreaterThan(20);
  });

  it('renders thermal frames a corrected camera would read as the truth', async () => {
    const scene = await simulateScene({ people: 6, seed: 21, maskRate: 0.5, feverRate: 0.34, facesDir });
    const { truth } = scene;
    const bb = scene.geometry.blackbody!;
    let personFrames = 0;
    let maskedChecked = 0;
    let unmaskedChecked = 0;
    for await (const { thermal, visible } of scene.frames) {
      const n = thermal.seq;
      const drift = driftAtFrame(truth, n);
      expect(Math.abs(drift)).toBeLessThanOrEqual(1.5);
      expect(thermal.timestampMs).toBeCloseTo(((n - 1) / 8.7) * 1000, 6);
      expect(visible!.seq).toBe(n);

      const bbPixels: number[] = [];
      for (let v = bb.y; v < bb.y + bb.h; v++) for (let u = bb.x; u < bb.x + bb.w; u++) bbPixels.push(thermal.celsius[v * 160 + u]!);
      expect(mean(bbPixels)).toBeCloseTo(bb.setC + drift, 1); // σ 0.08 / 6 per mean
      expect(Math.abs(mean(bbPixels) - (bb.setC + drift))).toBeLessThan(0.06);

      const person = personAt(truth, n);
      if (!person) {
        // Empty frame: the wall at ambient + drift (gentle gradient of a few tenths).
        const wall = mean(Array.from(thermal.celsius.slice(0, 160 * 60)));
        expect(Math.abs(wall - (22 + drift))).toBeLessThan(0.3);
        continue;
      }
      personFrames++;
      const box = person.faceBoxes[n - person.frames[0]]!;
      const spots = canthusPixels(truth.options.homography, box, 160, 120).flat();
      expect(spots).toHaveLength(8);
      const spotValues = spots.map((i) => thermal.celsius[i]!);
      // The camera (emissivity 1) sees skin (0.98) a little cooler than it is.
      const seenCanthus = apparentFromObject(person.canthusC, truth.options.skinEmissivity, 22);
      expect(seenCanthus).toBeLessThan(person.canthusC - 0.2);
      expect(Math.abs(mean(spotValues) - (seenCanthus + drift))).toBeLessThan(0.12);

      // The canthus is the hottest part of the face box (mapped through the homography).
      const face = facePixels(truth, box, 0, 1, 0, 1);
      const others = face.filter((i) => !spots.includes(i)).map((i) => thermal.celsius[i]!);
      expect(Math.max(...spotValues)).toBeGreaterThan(Math.max(...others));

      // The mapped face box lands on the face: its centre is skin, well above the wall.
      const centre = facePixels(truth, box, 0.3, 0.7, 0.25, 0.5).map((i) => thermal.celsius[i]!);
      expect(mean(centre)).toBeGreaterThan(person.canthusC + drift - 2.5);
      // And a margin left of the mapped box (beside the head) is wall.
      const m = mapBox(truth.options.homography, box);
      const beside = Math.floor(m.y + m.h * 0.3) * 160 + Math.floor(m.x) - 4;
      expect(Math.abs(thermal.celsius[beside]! - (22 + drift))).toBeLessThan(0.6);
      // At mid-height the face fills the mapped box edge to edge, and not a pixel more.
      const row = Math.floor(m.y + m.h * 0.5) * 160;
      const at = (x: number) => thermal.celsius[row + Math.floor(x)]!;
      expect(at(m.x - 1)).toBeLessThan(22 + drift + 0.6);
      expect(at(m.x + m.w + 1)).toBeLessThan(22 + drift + 0.6);
      expect(at(m.x + 0.1 * m.w)).toBeGreaterThan(person.canthusC + drift - 2.5);
      expect(at(m.x + 0.9 * m.w)).toBeGreaterThan(person.canthusC + drift - 2.5);

      // Lower face: a mask is several degrees cooler than the cheeks; bare skin is not.
      const cheeks = mean(facePixels(truth, box, 0.3, 0.7, 0.45, 0.52).map((i) => thermal.celsius[i]!));
      const lower = mean(facePixels(truth, box, 0.35, 0.65, 0.65, 0.85).map((i) => thermal.celsius[i]!));
      if (person.mask === 'mask') {
        expect(lower).toBeLessThan(cheeks - 2);
        maskedChecked++;
      } else {
        expect(Math.abs(lower - cheeks)).toBeLessThan(0.5);
        unmaskedChecked++;
      }
    }
    expect(personFrames).toBe(truth.people.reduce((s, p) => s + p.faceBoxes.length, 0));
    expect(maskedChecked).toBeGreaterThan(0);
    expect(unmaskedChecked).toBeGreaterThan(0);
  });

  it('composites the face crop at its box on a plain background', async () => {
    const scene = await simulateScene({ people: 1, seed: 3, facesDir, leadInFrames: 1 });
    const person = scene.truth.people[0]!;
    const frames = await collect(scene.frames, person.frames[0] + 2);
    const empty = frames[0]!.visible!;
    const withFace = frames[person.frames[0] + 1]!.visible!;
    const box = person.faceBoxes[2]!;
    expect((await sharp(withFace.encoded).metadata()).format).toBe('jpeg');
    const decode = async (jpg: Buffer) => sharp(jpg).raw().toBuffer({ resolveWithObject: true });
    const { data, info } = await decode(withFace.encoded);
    expect([info.width, info.height]).toEqual([640, 480]);
    const crop = await sharp(join(facesDir, person.faceFile)).rotate().flatten({ background: '#c8c4ba' }).resize(box.w, box.h, { fit: 'cover' }).removeAlpha().toColourspace('srgb').raw().toBuffer();
    let diff = 0;
    for (let y = 0; y < box.h; y++) {
      for (let x = 0; x < box.w; x++) {
        for (let c = 0; c < 3; c++) diff += Math.abs(data[((box.y + y) * 640 + box.x + x) * 3 + c]! - crop[(y * box.w + x) * 3 + c]!);
      }
    }
    expect(diff / (box.w * box.h * 3)).toBeLessThan(12);
    // The empty frame's top row is a plain wall: low spread, no strong structure.
    const bg = (await decode(empty.encoded)).data;
    const row = Array.from(bg.subarray(0, 640 * 3));
    expect(Math.max(...row) - Math.min(...row)).toBeLessThan(40);
  });

  it('writes a replay folder plus truth.json that openReplay reads back', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sim-replay-'));
    dirs.push(dir);
    const { frameCount, truth } = await simulateToReplay(dir, { people: 5, seed: 8, feverRate: 0.2, facesDir });
    expect(frameCount).toBe(truth.frameCount);
    const saved = JSON.parse(await readFile(join(dir, 'truth.json'), 'utf8'));
    expect(saved).toEqual(JSON.parse(JSON.stringify(truth)));
    expect(saved).toMatchObject({ seed: 8, thresholdC: 37.3, options: { people: 5, feverRate: 0.2 } });
    expect(saved.people.filter((p: PersonTruth) => p.elevated)).toHaveLength(1);

    const replay = await openReplay(dir);
    expect(replay.frameCount).toBe(frameCount);
    expect(replay.geometry.homography).toEqual([0.25, 0, 2, 0, 0.25, 1.5, 0, 0, 1]);
    const scene = await simulateScene({ people: 5, seed: 8, feverRate: 0.2, facesDir });
    const original = await collect(scene.frames);
    let n = 0;
    for await (const pair of replay.frames()) {
      const src = original[n++]!;
      expect(pair.thermal.seq).toBe(n);
      let worst = 0;
      for (let i = 0; i < pair.thermal.celsius.length; i++) worst = Math.max(worst, Math.abs(pair.thermal.celsius[i]! - src.thermal.celsius[i]!));
      expect(worst).toBeLessThanOrEqual(0.0051);
      expect(pair.visible!.encoded.equals(src.visible!.encoded)).toBe(true);
    }
    expect(n).toBe(frameCount);
  });

  it('runs without a blackbody (meta.blackbody null) and with optics blur', async () => {
    const scene = await simulateScene({ people: 1, seed: 4, blackbody: false, blurSigmaPx: 0.7, facesDir });
    expect(scene.geometry.blackbody).toBeNull();
    const frames = await collect(scene.frames);
    const person = scene.truth.people[0]!;
    const n = person.frames[0] + 3;
    const box = person.faceBoxes[3]!;
    const drift = driftAtFrame(scene.truth, n);
    const celsius = frames[n - 1]!.thermal.celsius;
    // Blackbody corner is wall now; blur pulls the 2x2 canthus peak below the true value.
    expect(Math.abs(celsius[103 * 160 + 153]! - (22 + drift))).toBeLessThan(0.6);
    const spots = canthusPixels(scene.truth.options.homography, box, 160, 120).flat().map((i) => celsius[i]!);
    expect(mean(spots)).toBeLessThan(person.canthusC + drift - 0.1);
  });

  it('a live sim source generates people continuously and stops on close', async () => {
    const source = createSimSource({ seed: 2, facesDir, framesPerPerson: [1, 1], gapFrames: 0, leadInFrames: 0 });
    expect(source.geometry.visible).toEqual({ width: 640, height: 480 });
    let last = 0;
    for await (const pair of source.frames()) {
      last = pair.thermal.seq;
      if (last === 103) await source.close();
    }
    expect(last).toBe(103);
    const truth = await source.truth;
    expect(truth.frameCount).toBeNull();
    expect(truth.people.length).toBe(200); // planned in batches of 100
    expect(truth.people[102]!.frames).toEqual([103, 103]);
  });
});

describe.skipIf(!haveFaces)('walking traffic simulation', () => {
  const options: SimOptions = { traffic: 'walking', people: 60, seed: 7, facesDir, framesPerPerson: [8, 14], gapFrames: 3, queueRate: 0.4 };

  it('walks faces of 60-250 px at 10-40 px per frame, in queues of up to three, with blur and edge occlusion', async () => {
    const { truth } = await simulateScene(options);
    const boxes = truth.people.flatMap((p) => p.faceBoxes);
    expect(Math.min(...boxes.map((b) => b.w))).toBeGreaterThanOrEqual(60);
    expect(Math.max(...boxes.map((b) => b.w))).toBeLessThanOrEqual(250);
    expect(boxes.some((b) => b.w <= 70) && boxes.some((b) => b.w >= 200)).toBe(true);
    for (const p of truth.people) {
      expect(p.faceBoxes.map((b) => b.frame)).toEqual(Array.from({ length: p.frames[1] - p.frames[0] + 1 }, (_, k) => p.frames[0] + k));
      for (let k = 1; k < p.faceBoxes.length; k++) {
        const [a, b] = [p.faceBoxes[k - 1]!, p.faceBoxes[k]!];
        // Sideways plus toward the camera (growth), as planned; rounding and the 250 px cap aside.
        const moved = Math.abs(b.x + b.w / 2 - (a.x + a.w / 2)) + Math.abs(b.w - a.w);
        expect(moved).toBeGreaterThanOrEqual(a.w >= 249 ? 0 : 8);
        expect(moved).toBeLessThanOrEqual(43);
      }
    }
    const frameCount = truth.frameCount!;
    const inView = Array.from({ length: frameCount }, (_, i) => truth.people.filter((p) => i + 1 >= p.frames[0] && i + 1 <= p.frames[1]).length);
    expect(Math.max(...inView)).toBeLessThanOrEqual(3);
    expect(inView.filter((n) => n >= 2).length).toBeGreaterThan(10);
    expect(truth.people.some((p) => p.hostileFrames.length >= 3)).toBe(true);
    const cut = (b: { x: number; w: number }) => b.x < 0 || b.x + b.w > 640;
    expect(truth.people.filter((p) => cut(p.faceBoxes[0]!) || cut(p.faceBoxes.at(-1)!)).length).toBeGreaterThan(10);
    // Deterministic from the seed.
    expect((await simulateScene(options)).truth).toEqual(truth);
  });

  it('draws every person in view into the thermal frame at their own canthus temperature', async () => {
    const scene = await simulateScene({ ...options, noiseSigmaC: 0, maxDriftC: 0 });
    const two = scene.truth.people.find((p) => scene.truth.people.some((q) => q !== p && q.frames[0] <= p.frames[0] && q.frames[1] >= p.frames[0] + 1))!;
    const n = two.frames[0] + 1;
    let pair: FramePair | undefined;
    for await (const f of scene.frames) if (f.thermal.seq === n) { pair = f; break; }
    const present = scene.truth.people.filter((p) => n >= p.frames[0] && n <= p.frames[1]);
    expect(present.length).toBeGreaterThanOrEqual(2);
    for (const p of present) {
      const box = p.faceBoxes[n - p.frames[0]]!;
      const spots = canthusPixels(scene.geometry.homography!, box, 160, 120).flat();
      const visibleSpots = spots.filter((i) => Math.abs(pair!.thermal.celsius[i]! - apparentFromObject(p.canthusC, 0.98, 22)) < 0.01);
      // Unless a nearer person hides them, each face's canthus is there.
      expect(visibleSpots.length).toBeGreaterThan(0);
    }
  });
});

describe('walking options', () => {
  it('are checked, naming the bad one', () => {
    expect(() => resolveSimOptions({ traffic: 'running' as never })).toThrow(/traffic must be "stationary" or "walking"/);
    expect(() => resolveSimOptions({ faceWidthPx: [200, 100] })).toThrow(/faceWidthPx must be \[min, max\]/);
    expect(() => resolveSimOptions({ speedPxPerFrame: [10, 500] })).toThrow(/speedPxPerFrame/);
    expect(() => resolveSimOptions({ queueRate: 2 })).toThrow(/queueRate/);
    expect(resolveSimOptions({ traffic: 'walking' })).toMatchObject({ faceWidthPx: [60, 250], speedPxPerFrame: [10, 40] });
  });
});
