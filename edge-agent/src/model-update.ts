/**
 * Model roll-out on the edge box (the `update-model` command): download the new version
 * (authenticated, sha256-verified, atomic), load it in a new session, self-test it, and only
 * then switch between two frames. Any failure leaves the running model untouched.
 */
import { writeFile, readFile } from 'node:fs/promises';
import path from 'node:path';
import { getManifest, installModel, type ModelManifest } from '@checkpoint/models';
import type { ModelRef } from '@checkpoint/protocol';
import { judgeSelfTest, type ReferenceFace, type SelfTestObservation } from './pipeline/reference-faces.js';
import { FaceDetector } from './vision/detector.js';

export interface ModelUpdateRequest {
  name: string;
  version: string;
  url: string;
  sha256: string;
  sizeBytes: number;
}

export interface PreparedModel {
  detector: FaceDetector;
  model: ModelRef;
  manifest: ModelManifest;
  path: string;
  selfTest: string;
}

/** The manifest of a new version: same family (input, outputs, labels), new file and hash. */
export function manifestForUpdate(req: ModelUpdateRequest): ModelManifest {
  const family = getManifest(req.name);
  const safeVersion = req.version.replace(/[^A-Za-z0-9._-]/g, '_');
  return {
    ...family,
    version: req.version,
    url: req.url,
    sha256: req.sha256,
    sizeBytes: req.sizeBytes,
    file: `${path.basename(family.file, '.onnx')}.${safeVersion}.onnx`,
  };
}

export interface PrepareOptions {
  modelsDir: string;
  headers?: Record<string, string>;
  threads?: number;
  onProgress?: (fraction: number) => void;
  /** Recent frames with a face the current model found confidently (see ScreeningPipeline). */
  references: readonly ReferenceFace[];
  confirmScore: number;
}

export async function prepareModelUpdate(req: ModelUpdateRequest, options: PrepareOptions): Promise<PreparedModel> {
  const manifest = manifestForUpdate(req);
  const installed = await installModel(manifest, {
    modelsDir: options.modelsDir,
    // Straight from the URL in the command: a configured mirror must not stand in for it.
    env: {},
    ...(options.headers ? { headers: options.headers } : {}),
    onProgress: (p) => options.onProgress?.(p.totalBytes > 0 ? p.receivedBytes / p.totalBytes : 0),
  });
  const detector = await FaceDetector.create({ modelPath: installed.path, manifest, ...(options.threads ? { threads: options.threads } : {}) });
  try {
    const selfTest = await selfTestDetector(detector, options.references, options.confirmScore);
    return { detector, model: { name: manifest.name, sha256: manifest.sha256 }, manifest, path: installed.path, selfTest };
  } catch (err) {
    await detector.close();
    throw err;
  }
}

/** The new model must find the faces the running model found, where it found them. */
async function selfTestDetector(detector: FaceDetector, references: PrepareOptions['references'], confirmScore: number): Promise<string> {
  if (references.length === 0) {
    // Nobody has passed yet: at least the model must run and decode cleanly on a real frame size.
    const inferenceMs = await detector.inferOnly();
    if (!Number.isFinite(inferenceMs)) throw new Error('self-test failed: inference did not run');
    return 'inference only (no reference face seen yet)';
  }
  const observations: SelfTestObservation[] = [];
  for (const r of references) {
    const { faces } = await detector.detect(r.encoded, { scoreThreshold: 0.3 });
    observations.push({ reference: r.box, faces });
  }
  const verdict = judgeSelfTest(observations, confirmScore);
  if (!verdict.ok) throw new Error(`self-test failed: the new model did not find the reference faces (${verdict.detail})`);
  return `reference faces found (${verdict.detail})`;
}

/** The model the agent switched to, so that a restart keeps it. */
export interface ActiveModel {
  manifest: ModelManifest;
  path: string;
}

const ACTIVE_FILE = 'active-model.json';

export async function saveActiveModel(dataDir: string, active: ActiveModel): Promise<void> {
  await writeFile(path.join(dataDir, ACTIVE_FILE), JSON.stringify(active, null, 2), { mode: 0o600 });
}

export async function loadActiveModel(dataDir: string): Promise<ActiveModel | null> {
  try {
    return JSON.parse(await readFile(path.join(dataDir, ACTIVE_FILE), 'utf8')) as ActiveModel;
  } catch {
    return null;
  }
}
