/**
 * FaceDetector: one onnxruntime-node session per model, created once and checked against the
 * model's manifest. `detect` = sharp decode/resize -> normalise into a reused input tensor ->
 * inference -> pure decoding (threshold, NMS, top-k, boxes back to image pixels).
 */
import { performance } from 'node:perf_hooks';
import * as ort from 'onnxruntime-node';
import type { ModelManifest } from '@checkpoint/models';
import { toImageBox } from './geometry.js';
import { classLayoutFromLabels, decodeUltraface, maskState, type ClassLayout } from './postprocess.js';
import { inputSize, loadForModel, toNchwFloat } from './preprocess.js';
import type { DetectOptions, DetectResult, DetectorImage, FaceDetection } from './types.js';

export interface FaceDetectorOptions {
  /** Path of the .onnx file (what the model fetcher returns). */
  modelPath: string;
  manifest: ModelManifest;
  /** Intra-op threads for inference; default: onnxruntime's choice (one per physical core). */
  threads?: number;
  /** Extra onnxruntime session options (benchmarks, tuning); override the defaults below. */
  sessionOptions?: ort.InferenceSession.SessionOptions;
}

const sameShape = (a: readonly unknown[], b: readonly unknown[]): boolean =>
  a.length === b.length && a.every((v, i) => v === b[i]);

const describe = (name: string, shape: readonly unknown[]): string => `"${name}" [${shape.join(',')}]`;

/**
 * Check a loaded session's inputs/outputs against the manifest, so that a wrong file (another
 * model's, a truncated download) fails at start with both sides named, not with odd boxes later.
 */
export function checkSessionMatchesManifest(
  session: Pick<ort.InferenceSession, 'inputMetadata' | 'outputMetadata'>,
  manifest: ModelManifest,
  modelPath: string,
): void {
  const expected = [manifest.input, ...manifest.outputs].map((t) => describe(t.name, t.shape));
  const actualMeta = [...session.inputMetadata, ...session.outputMetadata];
  const actual = actualMeta.map((m) => describe(m.name, m.isTensor ? m.shape : ['non-tensor']));
  const wanted = [manifest.input, ...manifest.outputs];
  const matches =
    actualMeta.length === wanted.length &&
    wanted.every((w) => {
      const m = actualMeta.find((a) => a.name === w.name);
      return m !== undefined && m.isTensor && m.type === 'float32' && sameShape(m.shape, w.shape);
    });
  if (!matches) {
    throw new Error(
      `model file ${modelPath} does not match manifest "${manifest.name}": ` +
        `expected ${expected.join(', ')}; the file has ${actual.join(', ')}`,
    );
  }
}

export class FaceDetector {
  readonly manifest: ModelManifest;
  readonly modelPath: string;
  readonly #session: ort.InferenceSession;
  readonly #layout: ClassLayout;
  /** Reused for every call: the tensor wraps this buffer, so no per-frame input allocation. */
  readonly #input: Float32Array;
  readonly #inputTensor: ort.Tensor;
  /** Inference calls run one at a time because they share #input. */
  #queue: Promise<unknown> = Promise.resolve();

  private constructor(session: ort.InferenceSession, manifest: ModelManifest, modelPath: string) {
    this.#session = session;
    this.manifest = manifest;
    this.modelPath = modelPath;
    this.#layout = classLayoutFromLabels(manifest.labels);
    const { width, height } = inputSize(manifest.input);
    this.#input = new Float32Array(3 * width * height);
    this.#inputTensor = new ort.Tensor('float32', this.#input, manifest.input.shape);
  }

  static async create({ modelPath, manifest, threads, sessionOptions }: FaceDetectorOptions): Promise<FaceDetector> {
    if (threads !== undefined && !(Number.isInteger(threads) && threads >= 1)) {
      throw new Error(`threads must be a positive integer, got ${threads}`);
    }
    let session: ort.InferenceSession;
    try {
      session = await ort.InferenceSession.create(modelPath, {
        // The UltraFace files list initializers as graph inputs; ORT warns once per tensor.
        logSeverityLevel: 3,
        graphOptimizationLevel: 'all',
        executionMode: 'sequential',
        interOpNumThreads: 1,
        // Idle intra-op threads otherwise spin for a while after each run, stealing the CPU that
        // sharp needs to decode the next frame (on a 2-core box that costs ~40 % of throughput).
        extra: { session: { intra_op: { allow_spinning: '0' } } },
        ...(threads !== undefined ? { intraOpNumThreads: threads } : {}),
        ...sessionOptions,
      });
    } catch (err) {
      throw new Error(`cannot load model "${manifest.name}" from ${modelPath}: ${(err as Error).message}`);
    }
    try {
      checkSessionMatchesManifest(session, manifest, modelPath);
    } catch (err) {
      await session.release();
      throw err;
    }
    return new FaceDetector(session, manifest, modelPath);
  }

  /** True when the model tells masked from unmasked faces. */
  get detectsMasks(): boolean {
    return this.#layout.masked !== null;
  }

  /**
   * Find faces in an encoded image (JPEG/PNG/WebP) or raw RGB pixels. Calls may overlap: the
   * decode of one image runs (in sharp's threads) while another is being inferred; only the
   * shared input tensor is taken in turn. Keeping two frames in flight uses both cores.
   */
  async detect(image: DetectorImage, options: DetectOptions = {}): Promise<DetectResult> {
    const { decoding, input } = this.manifest;
    const t0 = performance.now();
    const { rgb, placement } = await loadForModel(image, input, {
      pad: options.padForDetection,
      fit: options.fit,
    });
    const decodeMs = performance.now() - t0;
    const { outputs, preprocessMs, inferenceMs } = await this.#infer(rgb);
    const t3 = performance.now();
    const detections = decodeUltraface(
      outputs.scores?.data as Float32Array,
      outputs.boxes?.data as Float32Array,
      this.#layout,
      {
        scoreThreshold: options.scoreThreshold ?? decoding.scoreThreshold,
        iouThreshold: options.iouThreshold ?? decoding.nmsIouThreshold,
        maxFaces: options.maxFaces ?? 100,
      },
    );
    const faces: FaceDetection[] = detections.map((d) => ({
      box: toImageBox(d.box, placement),
      score: d.score,
      mask: maskState(d.maskScore),
      maskScore: d.maskScore,
    }));
    for (const t of Object.values(outputs)) t.dispose();
    return { faces, timings: { decodeMs, preprocessMs, inferenceMs, postprocessMs: performance.now() - t3 } };
  }

  /** Normalise into the shared input tensor and run the model, one caller at a time. */
  #infer(rgb: Uint8Array | null): Promise<{ outputs: ort.InferenceSession.ReturnType; preprocessMs: number; inferenceMs: number }> {
    const run = this.#queue.then(async () => {
      const t1 = performance.now();
      if (rgb !== null) toNchwFloat(rgb, this.manifest.input, this.#input);
      const t2 = performance.now();
      const outputs = await this.#session.run({ [this.manifest.input.name]: this.#inputTensor });
      return { outputs, preprocessMs: t2 - t1, inferenceMs: performance.now() - t2 };
    });
    this.#queue = run.catch(() => undefined);
    return run;
  }

  /** Bare inference on whatever is in the input tensor (benchmarks: the floor under detect()). */
  async inferOnly(): Promise<number> {
    const { outputs, inferenceMs } = await this.#infer(null);
    for (const t of Object.values(outputs)) t.dispose();
    return inferenceMs;
  }

  async close(): Promise<void> {
    await this.#queue;
    await this.#session.release();
  }
}
