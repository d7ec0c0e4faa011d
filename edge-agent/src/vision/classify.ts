/**
 * Classify still images: is the (largest) person in each picture wearing a mask?
 * Backs `edge-agent classify --json IMAGE...`; every result is a plain JSON-ready object.
 */
import { readFile } from 'node:fs/promises';
import type { FaceDetector } from './detector.js';
import { boxArea } from '../geometry.js';
import { fuseViews } from './postprocess.js';
import type { DetectOptions, FaceDetection, FitMode } from './types.js';

export interface ClassifyOptions {
  /**
   * The image is looked at once per entry, placed on a canvas that many times its size, and the
   * views' faces are fused (their mask scores averaged, weighted by face score). The detector's
   * confidence on an isolated face depends a lot on the face's size in the model input, so a
   * few scales are much more reliable than any single one, for tight crops and for photos alike.
   */
  paddings?: readonly number[];
  fit?: FitMode;
  scoreThreshold?: number;
  iouThreshold?: number;
}

/** Measured on ../shared/datasets/mask-sample (see test/vision-classify.test.ts). */
export const DEFAULT_CLASSIFY_OPTIONS = { paddings: [1, 2, 3], fit: 'letterbox' } as const;

export interface ClassifyResult {
  /** The file name exactly as given. */
  file: string;
  /** The largest face's state; 'none' when no face was found, 'unknown' for face-only models. */
  mask: 'mask' | 'no_mask' | 'unknown' | 'none';
  /** The largest face's detection score, null when no face was found. */
  score: number | null;
  /** The largest face's mask score (p(masked) share), null when none or face-only model. */
  maskScore: number | null;
  /** Every face found, largest first, boxes in the image's pixels. */
  faces: FaceDetection[];
}

/** Find faces in one encoded image, looking at it at several paddings and fusing the views. */
export async function detectMultiScale(
  detector: FaceDetector,
  image: Buffer,
  options: ClassifyOptions = {},
): Promise<FaceDetection[]> {
  const { paddings = DEFAULT_CLASSIFY_OPTIONS.paddings, fit = DEFAULT_CLASSIFY_OPTIONS.fit } = options;
  if (paddings.length === 0) throw new Error('paddings must list at least one canvas size (1 = no padding)');
  const iouThreshold = options.iouThreshold ?? detector.manifest.decoding.nmsIouThreshold;
  const views: FaceDetection[][] = [];
  for (const padForDetection of paddings) {
    const detectOptions: DetectOptions = { padForDetection, fit, iouThreshold };
    if (options.scoreThreshold !== undefined) detectOptions.scoreThreshold = options.scoreThreshold;
    views.push((await detector.detect(image, detectOptions)).faces);
  }
  return fuseViews(views, iouThreshold).sort((a, b) => boxArea(b.box) - boxArea(a.box));
}

/** Classify image files one by one, in order; a file that cannot be read or decoded throws, naming it. */
export async function* classifyImages(
  detector: FaceDetector,
  files: Iterable<string> | AsyncIterable<string>,
  options: ClassifyOptions = {},
): AsyncIterable<ClassifyResult> {
  for await (const file of files) {
    let faces: FaceDetection[];
    try {
      faces = await detectMultiScale(detector, await readFile(file), options);
    } catch (err) {
      throw new Error(`cannot classify ${file}: ${(err as Error).message}`, { cause: err });
    }
    const largest = faces[0];
    yield {
      file,
      mask: largest ? largest.mask : 'none',
      score: largest ? largest.score : null,
      maskScore: largest ? largest.maskScore : null,
      faces,
    };
  }
}
