/**
 * Vision benchmark: frames/s of the whole detect() path (decode + preprocess + inference +
 * postprocess) over in-memory encoded images, per-stage milliseconds, and bare inference time
 * on the same session, so the pipeline's overhead over the model itself is visible.
 * Files are read before timing starts: disk speed is not what is measured.
 */
import { readFile } from 'node:fs/promises';
import { performance } from 'node:perf_hooks';
import type { ModelManifest } from '@checkpoint/models';
import { FaceDetector } from './detector.js';
import type { DetectOptions, DetectTimings } from './types.js';

export interface VisionBenchOptions {
  /** Encoded images (JPEG/PNG/WebP) as file paths or bytes. */
  images: readonly (string | Buffer)[];
  /** An existing detector, or modelPath + manifest (+ threads) to create one for the run. */
  detector?: FaceDetector;
  modelPath?: string;
  manifest?: ModelManifest;
  threads?: number;
  /** Timed passes over all images (default 3); one untimed warm-up pass precedes them. */
  iterations?: number;
  detectOptions?: DetectOptions;
  /**
   * Frames in flight at once (default 1: strictly one after another). With 2, the next frame is
   * decoded while the current one is inferred, as a streaming agent would run.
   */
  inFlight?: number;
}

export interface Spread {
  median: number;
  p95: number;
}

export interface VisionBenchResult {
  images: number;
  frames: number;
  inFlight: number;
  /** Frames per second of detect() run back to back (decode through postprocess). */
  fps: number;
  stages: Record<keyof DetectTimings | 'totalMs', Spread>;
  /** session.run on an already-filled input tensor: the floor under detect(). */
  bareInferenceMs: Spread;
  /** Median detect() time minus median bare inference, absolute and as a share of detect(). */
  overheadMs: number;
  overheadShare: number;
  facesPerFrame: number;
  /** Resident set size after the run, MiB. */
  rssMiB: number;
}

/** Nearest-rank percentile (q in 0..1) of a non-empty list. */
export function percentile(values: readonly number[], q: number): number {
  if (values.length === 0) throw new Error('percentile of an empty list');
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[rank] as number;
}

const spread = (values: readonly number[]): Spread => ({ median: percentile(values, 0.5), p95: percentile(values, 0.95) });

export async function runVisionBench(options: VisionBenchOptions): Promise<VisionBenchResult> {
  const { images, iterations = 3, detectOptions = {}, inFlight = 1 } = options;
  if (images.length === 0) throw new Error('runVisionBench needs at least one image');
  if (!(Number.isInteger(iterations) && iterations >= 1)) throw new Error(`iterations must be a positive integer, got ${iterations}`);
  if (!(Number.isInteger(inFlight) && inFlight >= 1)) throw new Error(`inFlight must be a positive integer, got ${inFlight}`);
  const ownDetector = options.detector === undefined;
  if (ownDetector && (!options.modelPath || !options.manifest)) {
    throw new Error('runVisionBench needs a detector, or modelPath and manifest');
  }
  const detector =
    options.detector ??
    (await FaceDetector.create({
      modelPath: options.modelPath as string,
      manifest: options.manifest as ModelManifest,
      ...(options.threads !== undefined ? { threads: options.threads } : {}),
    }));
  try {
    const encoded = await Promise.all(images.map((img) => (typeof img === 'string' ? readFile(img) : img)));
    for (const img of encoded) await detector.detect(img, detectOptions); // warm-up: arenas, caches

    const samples: Record<keyof DetectTimings | 'totalMs', number[]> = {
      decodeMs: [],
      preprocessMs: [],
      inferenceMs: [],
      postprocessMs: [],
      totalMs: [],
    };
    let faces = 0;
    const frames = iterations * encoded.length;
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < frames) {
        const img = encoded[next++ % encoded.length] as Buffer;
        const t0 = performance.now();
        const result = await detector.detect(img, detectOptions);
        samples.totalMs.push(performance.now() - t0);
        for (const [stage, ms] of Object.entries(result.timings)) samples[stage as keyof DetectTimings].push(ms);
        faces += result.faces.length;
      }
    };
    const start = performance.now();
    await Promise.all(Array.from({ length: inFlight }, worker));
    const wallMs = performance.now() - start;

    const bare: number[] = [];
    for (let i = 0; i < frames; i++) bare.push(await detector.inferOnly());

    const stages = {
      decodeMs: spread(samples.decodeMs),
      preprocessMs: spread(samples.preprocessMs),
      inferenceMs: spread(samples.inferenceMs),
      postprocessMs: spread(samples.postprocessMs),
      totalMs: spread(samples.totalMs),
    };
    const bareInferenceMs = spread(bare);
    const overheadMs = stages.totalMs.median - bareInferenceMs.median;
    return {
      images: encoded.length,
      frames,
      inFlight,
      fps: frames / (wallMs / 1000),
      stages,
      bareInferenceMs,
      overheadMs,
      overheadShare: overheadMs / stages.totalMs.median,
      facesPerFrame: faces / frames,
      rssMiB: process.memoryUsage().rss / 2 ** 20,
    };
  } finally {
    if (ownDetector) await detector.close();
  }
}
