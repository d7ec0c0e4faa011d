/**
 * FaceDetector on the real UltraFace models and the shared scene photos. Models come from
 * $CHECKPOINT_MODELS_MIRROR (default ../shared/models), images from ../shared/datasets.
 */
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getManifest, MODELS, type ModelManifest } from '@checkpoint/models';
import { FaceDetector, iou, runVisionBench, type FaceDetection } from '../src/vision/index.js';

const SHARED = fileURLToPath(new URL('../../../shared/', import.meta.url));
const MODELS_DIR = path.resolve(process.env.CHECKPOINT_MODELS_MIRROR ?? path.join(SHARED, 'models'));
const SCENES = path.join(SHARED, 'datasets', 'scenes');
const MASK_SAMPLE = path.join(SHARED, 'datasets', 'mask-sample');
const haveData = existsSync(MODELS_DIR) && existsSync(SCENES) && existsSync(MASK_SAMPLE);
if (!haveData) console.warn(`vision-detector tests skipped: need ${MODELS_DIR}, ${SCENES} and ${MASK_SAMPLE}`);

const modelPath = (m: ModelManifest): string => path.join(MODELS_DIR, m.file);
const area = (f: FaceDetection): number => (f.box.x2 - f.box.x1) * (f.box.y2 - f.box.y1);

describe.skipIf(!haveData)('FaceDetector', () => {
  const masked640 = getManifest('masked-face-640');
  let detector: FaceDetector;
  let tmp: string;
  /** 32 passport-style portraits in 4 rows, masked and unmasked alternating. */
  let portraits: Buffer;

  beforeAll(async () => {
    detector = await FaceDetector.create({ modelPath: modelPath(masked640), manifest: masked640, threads: 2 });
    tmp = await mkdtemp(path.join(tmpdir(), 'vision-test-'));
    portraits = await readFile(path.join(SCENES, 'masked', 'img4.jpeg'));
  });
  afterAll(async () => {
    await detector?.close();
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });

  it.each(MODELS.map((m) => [m.name, m] as const))('loads %s and checks it against its manifest', async (_name, manifest) => {
    const d = await FaceDetector.create({ modelPath: modelPath(manifest), manifest, threads: 1 });
    expect(d.detectsMasks).toBe(manifest.labels.includes('masked_face'));
    await d.close();
  });

  it('refuses another model file for a manifest, naming expected and actual shapes', async () => {
    const wrongFile = modelPath(getManifest('ultraface-rfb-320'));
    const err = await FaceDetector.create({ modelPath: wrongFile, manifest: masked640 }).catch((e: Error) => e);
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toContain('does not match manifest "masked-face-640"');
    expect((err as Error).message).toContain('expected "input" [1,3,480,640]');
    expect((err as Error).message).toContain('the file has "input" [1,3,240,320]');
    expect((err as Error).message).toContain(wrongFile);
  });

  it('refuses a file that is not an ONNX model, naming the model and path', async () => {
    const garbage = path.join(tmp, 'garbage.onnx');
    await writeFile(garbage, 'this is not a protobuf');
    await expect(FaceDetector.create({ modelPath: garbage, manifest: masked640 })).rejects.toThrow(
      `cannot load model "masked-face-640" from ${garbage}`,
    );
    const missing = path.join(tmp, 'missing.onnx');
    await expect(FaceDetector.create({ modelPath: missing, manifest: masked640 })).rejects.toThrow(missing);
  });

  it('rejects a bad thread count', async () => {
    await expect(FaceDetector.create({ modelPath: modelPath(masked640), manifest: masked640, threads: 0 })).rejects.toThrow(
      /threads must be a positive integer/,
    );
  });

  it('finds many faces in a crowd photo, with boxes inside the image', async () => {
    const image = await readFile(path.join(SCENES, 'unmasked', '27.jpg'));
    const { width, height } = await sharp(image).metadata();
    const { faces, timings } = await detector.detect(image);
    expect(faces.length).toBeGreaterThanOrEqual(30);
    for (const f of faces) {
      expect(f.box.x1).toBeGreaterThanOrEqual(0);
      expect(f.box.y1).toBeGreaterThanOrEqual(0);
      expect(f.box.x2).toBeLessThanOrEqual(width);
      expect(f.box.y2).toBeLessThanOrEqual(height);
      expect(f.box.x2).toBeGreaterThan(f.box.x1);
      expect(f.score).toBeGreaterThan(masked640.decoding.scoreThreshold);
    }
    expect(faces.filter((f) => f.mask === 'no_mask').length).toBeGreaterThan(faces.length * 0.9);
    expect(Object.keys(timings).sort()).toEqual(['decodeMs', 'inferenceMs', 'postprocessMs', 'preprocessMs']);
    // no overlapping pair survives NMS
    for (let i = 0; i < faces.length; i++) {
      for (let j = i + 1; j < faces.length; j++) {
        expect(iou((faces[i] as FaceDetection).box, (faces[j] as FaceDetection).box)).toBeLessThanOrEqual(0.3);
      }
    }
  });

  it('tells masked from unmasked faces in a photo of 32 portraits', async () => {
    const { faces } = await detector.detect(portraits);
    expect(faces.length).toBeGreaterThanOrEqual(28);
    expect(faces.filter((f) => f.mask === 'mask').length).toBeGreaterThanOrEqual(12);
    expect(faces.filter((f) => f.mask === 'no_mask').length).toBeGreaterThanOrEqual(12);
    for (const f of faces) expect(f.maskScore).toBeGreaterThanOrEqual(0);
  });

  it('maxFaces keeps the best faces only', async () => {
    const { faces } = await detector.detect(portraits, { maxFaces: 3 });
    const all = (await detector.detect(portraits)).faces;
    expect(faces).toEqual(all.slice(0, 3));
  });

  it('gives the same faces for raw RGB pixels as for the encoded image', async () => {
    const { data, info } = await sharp(portraits).removeAlpha().raw().toBuffer({ resolveWithObject: true });
    const fromRaw = (await detector.detect({ data, width: info.width, height: info.height })).faces;
    const fromJpeg = (await detector.detect(portraits)).faces;
    expect(Math.abs(fromRaw.length - fromJpeg.length)).toBeLessThanOrEqual(2);
    for (const f of fromJpeg) {
      const best = Math.max(...fromRaw.map((g) => iou(f.box, g.box)));
      if (f.score > 0.8) expect(best).toBeGreaterThan(0.8);
    }
  });

  it('letterboxing maps boxes back to the same faces as stretching', async () => {
    const stretched = (await detector.detect(portraits)).faces;
    const letterboxed = (await detector.detect(portraits, { fit: 'letterbox' })).faces;
    expect(letterboxed.length).toBeGreaterThanOrEqual(20);
    const matched = letterboxed.filter((f) => Math.max(...stretched.map((g) => iou(f.box, g.box))) > 0.5);
    expect(matched.length).toBeGreaterThanOrEqual(letterboxed.length * 0.9);
  });

  it('padForDetection finds a tight crop and maps its box back into the crop', async () => {
    const faces = (await detector.detect(portraits)).faces.sort((a, b) => b.score - a.score);
    const face = faces[0] as FaceDetection;
    // crop just around the face, as in the mask-sample data set
    const left = Math.round(face.box.x1);
    const top = Math.round(face.box.y1);
    const width = Math.round(face.box.x2) - left;
    const height = Math.round(face.box.y2) - top;
    const crop = await sharp(portraits).extract({ left, top, width, height }).png().toBuffer();
    const expected = { x1: face.box.x1 - left, y1: face.box.y1 - top, x2: face.box.x2 - left, y2: face.box.y2 - top };
    const padded = (await detector.detect(crop, { padForDetection: 2, fit: 'letterbox' })).faces;
    expect(padded.length).toBeGreaterThanOrEqual(1);
    expect(iou((padded[0] as FaceDetection).box, expected)).toBeGreaterThan(0.6);
    expect((padded[0] as FaceDetection).mask).toBe(face.mask);
  });

  it('handles greyscale and transparent PNGs', async () => {
    const source = await readFile(path.join(MASK_SAMPLE, 'without_mask_005.jpg'));
    const grey = await sharp(source).toColourspace('b-w').png().toBuffer();
    expect((await sharp(grey).metadata()).channels).toBe(1);
    const withAlpha = await sharp(source).ensureAlpha(0.5).png().toBuffer();
    for (const image of [grey, withAlpha]) {
      const { faces } = await detector.detect(image, { padForDetection: 1.5, fit: 'letterbox', scoreThreshold: 0.5 });
      expect(faces.length).toBeGreaterThanOrEqual(1);
    }
  });

  it('names what is wrong with a bad image', async () => {
    await expect(detector.detect(Buffer.from('not an image'))).rejects.toThrow(/cannot read image \(12 bytes\)/);
    await expect(detector.detect({ data: Buffer.alloc(10), width: 4, height: 4 })).rejects.toThrow(
      /width\*height\*3 = 48 bytes, got 10/,
    );
  });

  it('runs concurrent calls one at a time on the shared input buffer', async () => {
    const crowd = await readFile(path.join(SCENES, 'unmasked', '17.jpg'));
    const [a, b, c] = await Promise.all([detector.detect(portraits), detector.detect(crowd), detector.detect(portraits)]);
    expect(a.faces).toEqual(c.faces);
    expect(b.faces.length).not.toBe(a.faces.length);
  });

  it('face-only 320 models find faces and report the mask as unknown', async () => {
    for (const name of ['ultraface-rfb-320', 'ultraface-slim-320']) {
      const manifest = getManifest(name);
      const d = await FaceDetector.create({ modelPath: modelPath(manifest), manifest, threads: 1 });
      const { faces } = await d.detect(portraits);
      await d.close();
      expect(faces.length, name).toBeGreaterThanOrEqual(20);
      for (const f of faces) {
        expect(f.mask).toBe('unknown');
        expect(f.maskScore).toBeNull();
      }
    }
  });

  it('the 1280 model finds the larger faces of a crowd too', async () => {
    const manifest = getManifest('masked-face-1280');
    const d = await FaceDetector.create({ modelPath: modelPath(manifest), manifest, threads: 2 });
    const { faces } = await d.detect(portraits);
    await d.close();
    expect(faces.length).toBeGreaterThanOrEqual(28);
    const largest = [...faces].sort((x, y) => area(y) - area(x))[0] as FaceDetection;
    expect(largest.mask).not.toBe('unknown');
  });

  it('runVisionBench reports fps, per-stage spreads and bare inference (figures only; speed targets live in bench/)', async () => {
    const images = [path.join(SCENES, 'masked', 'img4.jpeg'), portraits];
    for (const inFlight of [1, 2]) {
      const r = await runVisionBench({ images, detector, iterations: 2, inFlight });
      expect(r).toMatchObject({ images: 2, frames: 4, inFlight });
      expect(r.fps).toBeGreaterThan(0);
      for (const s of [...Object.values(r.stages), r.bareInferenceMs]) expect(s.p95).toBeGreaterThanOrEqual(s.median);
      expect(r.facesPerFrame).toBeGreaterThanOrEqual(28);
      expect(r.rssMiB).toBeGreaterThan(0);
    }
    await expect(runVisionBench({ images: [] })).rejects.toThrow(/at least one image/);
    await expect(runVisionBench({ images })).rejects.toThrow(/needs a detector, or modelPath and manifest/);
  });
});
