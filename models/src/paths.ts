/**
 * Where models live and where they come from: pure functions of the environment and the
 * manifest, so the rules are easy to test and to document.
 */
import { homedir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ModelManifest } from './manifest.js';

export type Env = Readonly<Record<string, string | undefined>>;

/**
 * The models folder: $CHECKPOINT_MODELS_DIR, else `<data dir>/models` where the data dir is
 * $CHECKPOINT_DATA_DIR or `~/.checkpoint`. Relative values are taken from `cwd`.
 */
export function defaultModelsDir(env: Env = process.env, cwd: string = process.cwd()): string {
  if (env.CHECKPOINT_MODELS_DIR) return path.resolve(cwd, env.CHECKPOINT_MODELS_DIR);
  const dataDir = env.CHECKPOINT_DATA_DIR
    ? path.resolve(cwd, env.CHECKPOINT_DATA_DIR)
    : path.join(env.HOME || homedir(), '.checkpoint');
  return path.join(dataDir, 'models');
}

/** The mirror to copy from instead of upstream: $CHECKPOINT_MODELS_MIRROR (a folder or an http(s) URL). */
export function defaultMirror(env: Env = process.env): string | undefined {
  return env.CHECKPOINT_MODELS_MIRROR || undefined;
}

/** Where one model's bytes are read from. */
export type ModelSource =
  | { kind: 'file'; path: string }
  | { kind: 'http'; url: string; upstream: boolean };

const HTTP_URL = /^https?:\/\//i;

/**
 * A mirror is a folder (path or file: URL) or an http(s) base URL; either way it holds the
 * manifest's file name. Without a mirror the model comes from its upstream URL.
 */
export function resolveSource(manifest: ModelManifest, mirror: string | undefined, cwd: string = process.cwd()): ModelSource {
  if (!mirror) return { kind: 'http', url: manifest.url, upstream: true };
  if (HTTP_URL.test(mirror)) {
    const base = mirror.endsWith('/') ? mirror : `${mirror}/`;
    return { kind: 'http', url: new URL(encodeURIComponent(manifest.file), base).href, upstream: false };
  }
  const folder = mirror.startsWith('file:') ? fileURLToPath(mirror) : path.resolve(cwd, mirror);
  return { kind: 'file', path: path.join(folder, manifest.file) };
}

export function describeSource(source: ModelSource): string {
  return source.kind === 'file' ? source.path : source.url;
}
