/** Model fetch + detector creation, shared by `run`, `replay`, `classify` and `bench`. */
import { ensureModel, getManifest } from '@checkpoint/models';
import type { ModelRef } from '@checkpoint/protocol';
import { FaceDetector } from './vision/detector.js';

export interface ModelSettings {
  name: string;
  dir?: string | undefined;
  mirror?: string | undefined;
  threads?: number | undefined;
}

export async function createDetector(settings: ModelSettings): Promise<{ detector: FaceDetector; model: ModelRef; path: string }> {
  const manifest = getManifest(settings.name);
  const installed = await ensureModel(settings.name, {
    ...(settings.dir !== undefined ? { modelsDir: settings.dir } : {}),
    ...(settings.mirror !== undefined ? { mirror: settings.mirror } : {}),
  });
  const detector = await FaceDetector.create({
    modelPath: installed.path,
    manifest,
    ...(settings.threads !== undefined ? { threads: settings.threads } : {}),
  });
  return { detector, model: { name: manifest.name, sha256: manifest.sha256 }, path: installed.path };
}
