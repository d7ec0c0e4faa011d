/**
 * The models folder: verify installed models and install missing ones from upstream or a
 * mirror. A model is only ever installed whole and verified: bytes stream into a temp file in
 * the models folder while their sha256 is computed, the temp file is fsynced, and only a file
 * with the manifest's size and sha256 is renamed into place. Anything else is deleted.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { getManifest, MODELS } from './manifest.js';
import type { ModelManifest } from './manifest.js';
import { defaultMirror, defaultModelsDir, describeSource, resolveSource } from './paths.js';
import type { Env, ModelSource } from './paths.js';

/** A fetch or copy that failed; nothing was installed. */
export class ModelFetchError extends Error {
  override name = 'ModelFetchError';
  constructor(
    readonly file: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** Bytes arrived but are not the model the manifest describes; they were deleted. */
export class ModelIntegrityError extends ModelFetchError {
  override name = 'ModelIntegrityError';
  constructor(
    file: string,
    message: string,
    readonly expectedSha256: string,
    readonly actualSha256: string,
  ) {
    super(file, message);
  }
}

export interface ModelStatus {
  name: string;
  file: string;
  path: string;
  state: 'ok' | 'missing' | 'wrong';
  expectedSha256: string;
  /** Present when a file exists. */
  actualSha256?: string;
  sizeBytes?: number;
}

export interface FetchProgress {
  name: string;
  file: string;
  /** Folder path or URL the bytes come from. */
  source: string;
  receivedBytes: number;
  totalBytes: number;
}

export interface FetchOptions {
  /** Install folder; default {@link defaultModelsDir}. */
  modelsDir?: string;
  /** Folder or http(s) base URL to copy from instead of upstream; default $CHECKPOINT_MODELS_MIRROR. */
  mirror?: string;
  /** Called once when the transfer starts (receivedBytes 0) and then per chunk. */
  onProgress?: (progress: FetchProgress) => void;
  signal?: AbortSignal;
  /** Extra HTTP headers, e.g. Authorization for a gateway that serves model roll-outs. */
  headers?: Record<string, string>;
  /** Environment for the defaults above; default process.env. */
  env?: Env;
  /** Base for relative paths; default process.cwd(). */
  cwd?: string;
}

export interface FetchResult {
  name: string;
  path: string;
  sha256: string;
  /** skipped: already installed and verified; replaced: a wrong file was overwritten. */
  action: 'installed' | 'replaced' | 'skipped';
  /** Where the bytes came from (absent when skipped). */
  source?: string;
}

/** sha256 and size of a file, streamed (models are a few MB). */
export async function hashFile(file: string): Promise<{ sha256: string; sizeBytes: number }> {
  const hash = createHash('sha256');
  let sizeBytes = 0;
  for await (const chunk of createReadStream(file)) {
    hash.update(chunk as Buffer);
    sizeBytes += (chunk as Buffer).length;
  }
  return { sha256: hash.digest('hex'), sizeBytes };
}

async function statusOf(manifest: ModelManifest, dir: string): Promise<ModelStatus> {
  const file = path.join(dir, manifest.file);
  const base = { name: manifest.name, file: manifest.file, path: file, expectedSha256: manifest.sha256 };
  let actual: { sha256: string; sizeBytes: number };
  try {
    actual = await hashFile(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { ...base, state: 'missing' };
    throw new Error(`cannot read model file ${file}: ${(err as Error).message}`, { cause: err });
  }
  const ok = actual.sha256 === manifest.sha256 && actual.sizeBytes === manifest.sizeBytes;
  return { ...base, state: ok ? 'ok' : 'wrong', actualSha256: actual.sha256, sizeBytes: actual.sizeBytes };
}

/** Whether model `name` is installed in `dir` with the manifest's sha256. */
export async function verifyModel(name: string, dir: string): Promise<ModelStatus> {
  return statusOf(getManifest(name), dir);
}

/** {@link verifyModel} for several models (default: all). */
export async function verifyModels(names: readonly string[] | undefined, dir: string): Promise<ModelStatus[]> {
  const manifests = names && names.length > 0 ? names.map(getManifest) : MODELS;
  return Promise.all(manifests.map((m) => statusOf(m, dir)));
}

/** Install model `name` unless already installed and verified; resolves to its verified path. */
export async function ensureModel(name: string, options: FetchOptions = {}): Promise<FetchResult> {
  return installModel(getManifest(name), options);
}

/** {@link ensureModel} for several models (default: all), one after another; stops at the first failure. */
export async function fetchModels(names: readonly string[] | undefined, options: FetchOptions = {}): Promise<FetchResult[]> {
  const manifests = names && names.length > 0 ? names.map(getManifest) : MODELS;
  const results: FetchResult[] = [];
  for (const manifest of manifests) results.push(await installModel(manifest, options));
  return results;
}

/**
 * {@link ensureModel} for a manifest: exported so that tests (and a future model registry) can
 * install a manifest that is not in the built-in list.
 */
export async function installModel(manifest: ModelManifest, options: FetchOptions = {}): Promise<FetchResult> {
  const env = options.env ?? process.env;
  const cwd = options.cwd ?? process.cwd();
  const dir = path.resolve(cwd, options.modelsDir ?? defaultModelsDir(env, cwd));
  const before = await statusOf(manifest, dir);
  const result = { name: manifest.name, path: before.path, sha256: manifest.sha256 };
  if (before.state === 'ok') return { ...result, action: 'skipped' };

  const source = resolveSource(manifest, options.mirror ?? defaultMirror(env), cwd);
  await fs.mkdir(dir, { recursive: true });
  await copyVerified(manifest, source, before.path, options);
  return { ...result, action: before.state === 'missing' ? 'installed' : 'replaced', source: describeSource(source) };
}

const MIRROR_HINT =
  'Without internet, install from a mirror instead: a folder or http(s) URL holding the model files, ' +
  'given with `checkpoint-models fetch --mirror DIR|URL` or the environment variable CHECKPOINT_MODELS_MIRROR';

function reason(err: unknown): string {
  const e = err as Error & { cause?: { message?: string; code?: string } };
  const cause = e.cause?.message ?? e.cause?.code;
  return cause && cause !== e.message ? `${e.message} (${cause})` : String(e.message ?? err);
}

async function openSource(manifest: ModelManifest, source: ModelSource, signal?: AbortSignal, headers?: Record<string, string>): Promise<Readable> {
  if (source.kind === 'file') {
    try {
      const handle = await fs.open(source.path, 'r');
      return handle.createReadStream();
    } catch (err) {
      const what = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'does not exist' : `cannot be read: ${reason(err)}`;
      throw new ModelFetchError(manifest.file, `mirror file ${source.path} ${what}; nothing was installed`, { cause: err });
    }
  }
  let response: Response;
  try {
    response = await fetch(source.url, { signal: signal ?? null, redirect: 'follow', ...(headers ? { headers } : {}) });
  } catch (err) {
    if (signal?.aborted) throw cancelled(manifest, err);
    const hint = source.upstream ? `. ${MIRROR_HINT}` : '';
    throw new ModelFetchError(manifest.file, `cannot download ${manifest.file} from ${source.url}: ${reason(err)}${hint}`, { cause: err });
  }
  if (!response.ok || !response.body) {
    await response.body?.cancel();
    throw new ModelFetchError(
      manifest.file,
      `cannot download ${manifest.file}: ${source.url} answered HTTP ${response.status} ${response.statusText}`.trimEnd(),
    );
  }
  return Readable.fromWeb(response.body as WebReadableStream<Uint8Array>);
}

function cancelled(manifest: ModelManifest, cause: unknown): ModelFetchError {
  return new ModelFetchError(manifest.file, `fetch of ${manifest.file} cancelled; nothing was installed`, { cause });
}

/** Stream source -> temp file in the target's folder, hashing on the way; rename only when verified. */
async function copyVerified(manifest: ModelManifest, source: ModelSource, target: string, options: FetchOptions): Promise<void> {
  const { onProgress, signal } = options;
  const from = describeSource(source);
  const input = await openSource(manifest, source, signal, options.headers);
  const temp = path.join(path.dirname(target), `.${manifest.file}.${process.pid}-${randomBytes(4).toString('hex')}.partial`);
  const hash = createHash('sha256');
  let received = 0;
  const progress = () =>
    onProgress?.({ name: manifest.name, file: manifest.file, source: from, receivedBytes: received, totalBytes: manifest.sizeBytes });
  const meter = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      received += chunk.length;
      hash.update(chunk);
      // A source that sends more than the manifest's size is wrong; stop reading it now.
      if (received > manifest.sizeBytes) done(new Error('more bytes than the manifest size'));
      else {
        progress();
        done(null, chunk);
      }
    },
  });

  try {
    progress();
    // flush: fsync before close, so a crash after the rename below cannot leave a file with holes.
    // pipeline resolves after the write stream has closed.
    await pipeline(input, meter, createWriteStream(temp, { flags: 'wx', mode: 0o644, flush: true }), { signal });
  } catch (err) {
    input.destroy();
    await fs.rm(temp, { force: true });
    if (signal?.aborted) throw cancelled(manifest, err);
    const actual = hash.digest('hex');
    const message =
      `fetch of ${manifest.file} from ${from} failed after ${received} of ${manifest.sizeBytes} bytes: ${reason(err)}; ` +
      `expected sha256 ${manifest.sha256}, received bytes have sha256 ${actual}; nothing was installed`;
    throw received > manifest.sizeBytes
      ? new ModelIntegrityError(manifest.file, message, manifest.sha256, actual)
      : new ModelFetchError(manifest.file, message, { cause: err });
  }

  const actual = hash.digest('hex');
  if (actual !== manifest.sha256 || received !== manifest.sizeBytes) {
    await fs.rm(temp, { force: true });
    throw new ModelIntegrityError(
      manifest.file,
      `refused ${manifest.file} from ${from}: expected sha256 ${manifest.sha256} (${manifest.sizeBytes} bytes), ` +
        `got sha256 ${actual} (${received} bytes); nothing was installed`,
      manifest.sha256,
      actual,
    );
  }
  try {
    await fs.rename(temp, target);
  } catch (err) {
    await fs.rm(temp, { force: true });
    throw new ModelFetchError(manifest.file, `cannot install ${target}: ${reason(err)}`, { cause: err });
  }
  await syncFolder(path.dirname(target));
}

/** Make the rename durable. Not every platform can fsync a folder; the file itself is already synced. */
async function syncFolder(dir: string): Promise<void> {
  try {
    const handle = await fs.open(dir, 'r');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  } catch {
    // best effort
  }
}
