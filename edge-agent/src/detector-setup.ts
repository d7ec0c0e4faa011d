/** Model fetch + detector creation, shared by `run`, `replay`, `classify` and `bench`. */
import { ensureModel, getManifest, hashFile, type ModelManifest } from '@checkpoint/models';
import type { ModelRef } from '@checkpoint/protocol';
import { loadActiveModel } from './model-update.js';
import { FaceDetector } from './vision/detector.js';

export interface ModelSettings {
  name: string;
  dir?: string | undefined;
  mirror?: string | undefined;
  threads?: number | undefined;
}

export interface LoadedModel {
  detector: FaceDetector;
  model: ModelRef;
  manifest: ModelManifest;
  path: string;
}

/**
 * The configured model, or, when `dataDir` holds a model a roll-out switched to (same family,
 * file still verified), that one: a restart keeps what the roll-out installed.
 */
export async function createDetector(settings: ModelSettings, dataDir?: string): Promise<LoadedModel> {
  const rolledOut = dataDir ? await loadActiveModel(dataDir) : null;
  if (rolledOut && rolledOut.manifest.name === settings.name) {
    const actual = await hashFile(rolledOut.path).catch(() => null);
    if (actual?.sha256 === rolledOut.manifest.sha256) {
      const detector = await FaceDetector.create({ modelPath: rolledOut.path, manifest: rolledOut.manifest, ...(settings.threads ? { threads: settings.threads } : {}) });
      return { detector, model: { name: rolledOut.manifest.name, sha256: rolledOut.manifest.sha256 }, manifest: rolledOut.manifest, path: rolledOut.path };
    }
  }
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
  return { detector, model: { name: manifest.name, sha256: manifest.sha256 }, manifest, path: installed.path };
}
