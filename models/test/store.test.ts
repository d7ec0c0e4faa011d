import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  ensureModel,
  fetchModels,
  getManifest,
  installModel,
  ModelFetchError,
  ModelIntegrityError,
  MODELS,
  verifyModel,
  verifyModels,
} from '../src/index.js';
import type { FetchProgress } from '../src/index.js';
import { closedPort, MIRROR, mirror, removeTempDirs, startMirrorServer, tempDir } from './helpers.js';

const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');
const small = getManifest('ultraface-slim-320');

afterEach(removeTempDirs);

/** A mirror folder holding `bytes` under the small model's file name. */
async function corruptMirror(bytes: Buffer): Promise<string> {
  const dir = await tempDir('corrupt-mirror');
  await fs.writeFile(path.join(dir, small.file), bytes);
  return dir;
}

async function expectRefused(promise: Promise<unknown>, actualSha: string | RegExp): Promise<void> {
  const err = await promise.then(
    () => expect.unreachable('the wrong file was accepted'),
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ModelIntegrityError);
  const message = (err as Error).message;
  expect(message).toContain(small.file);
  expect(message).toContain(small.sha256);
  expect(message).toMatch(actualSha);
}

describe.skipIf(!MIRROR)('installing from a mirror folder', () => {
  it('installs and verifies all four models', async () => {
    const dest = await tempDir();
    const results = await fetchModels(undefined, { mirror: mirror(), modelsDir: dest });
    expect(results.map((r) => [r.name, r.action])).toEqual(MODELS.map((m) => [m.name, 'installed']));
    for (const [i, m] of MODELS.entries()) {
      expect(results[i]).toMatchObject({ path: path.join(dest, m.file), sha256: m.sha256, source: path.join(mirror(), m.file) });
      expect(sha256(await fs.readFile(path.join(dest, m.file)))).toBe(m.sha256);
    }
    expect((await fs.readdir(dest)).sort()).toEqual(MODELS.map((m) => m.file).sort());
    expect((await verifyModels(undefined, dest)).map((s) => s.state)).toEqual(['ok', 'ok', 'ok', 'ok']);
  });

  it('takes folder and mirror from CHECKPOINT_MODELS_DIR and CHECKPOINT_MODELS_MIRROR', async () => {
    const dest = path.join(await tempDir(), 'nested', 'models');
    const env = { CHECKPOINT_MODELS_DIR: dest, CHECKPOINT_MODELS_MIRROR: mirror() };
    const result = await ensureModel(small.name, { env });
    expect(result).toEqual({
      name: small.name,
      path: path.join(dest, small.file),
      sha256: small.sha256,
      action: 'installed',
      source: path.join(mirror(), small.file),
    });
  });

  it('reports progress from 0 to the full size', async () => {
    const seen: FetchProgress[] = [];
    await ensureModel(small.name, { mirror: mirror(), modelsDir: await tempDir(), onProgress: (p) => seen.push(p) });
    expect(seen[0]).toMatchObject({ name: small.name, file: small.file, receivedBytes: 0, totalBytes: small.sizeBytes });
    expect(seen.at(-1)?.receivedBytes).toBe(small.sizeBytes);
  });

  it('skips a model that is already installed and verified, without reading the mirror', async () => {
    const dest = await tempDir();
    await ensureModel(small.name, { mirror: mirror(), modelsDir: dest });
    const again = await ensureModel(small.name, { mirror: '/nonexistent/mirror', modelsDir: dest });
    expect(again).toEqual({ name: small.name, path: path.join(dest, small.file), sha256: small.sha256, action: 'skipped' });
  });

  it('replaces a wrong installed file', async () => {
    const dest = await tempDir();
    await fs.writeFile(path.join(dest, small.file), 'not a model');
    expect((await verifyModel(small.name, dest)).state).toBe('wrong');
    expect((await ensureModel(small.name, { mirror: mirror(), modelsDir: dest })).action).toBe('replaced');
    expect((await verifyModel(small.name, dest)).state).toBe('ok');
  });

  it('refuses a mirror file with a flipped byte, naming the file and both hashes, leaving nothing behind', async () => {
    const bytes = await fs.readFile(path.join(mirror(), small.file));
    bytes[bytes.length >> 1]! ^= 0xff;
    const dest = await tempDir();
    await expectRefused(ensureModel(small.name, { mirror: await corruptMirror(bytes), modelsDir: dest }), sha256(bytes));
    expect(await fs.readdir(dest)).toEqual([]);
  });

  it('refuses a truncated mirror file', async () => {
    const bytes = (await fs.readFile(path.join(mirror(), small.file))).subarray(0, 500_000);
    const dest = await tempDir();
    await expectRefused(ensureModel(small.name, { mirror: await corruptMirror(bytes), modelsDir: dest }), sha256(bytes));
    expect(await fs.readdir(dest)).toEqual([]);
  });

  it('refuses a mirror file longer than the manifest size as soon as it overflows', async () => {
    const bytes = Buffer.concat([await fs.readFile(path.join(mirror(), small.file)), Buffer.alloc(100_000)]);
    const dest = await tempDir();
    await expectRefused(ensureModel(small.name, { mirror: await corruptMirror(bytes), modelsDir: dest }), /sha256 [0-9a-f]{64}; nothing was installed/);
    expect(await fs.readdir(dest)).toEqual([]);
  });

  it('says which file a mirror folder lacks', async () => {
    const empty = await tempDir('empty-mirror');
    const dest = await tempDir();
    await expect(ensureModel(small.name, { mirror: empty, modelsDir: dest })).rejects.toThrow(
      `mirror file ${path.join(empty, small.file)} does not exist`,
    );
    expect(await fs.readdir(dest)).toEqual([]);
  });
});

describe('verifyModel', () => {
  it.skipIf(!MIRROR)('detects a tampered installed file and reports both hashes', async () => {
    const dest = await tempDir();
    await ensureModel(small.name, { mirror: mirror(), modelsDir: dest });
    const file = path.join(dest, small.file);
    const bytes = await fs.readFile(file);
    bytes[1234]! ^= 0x01;
    await fs.writeFile(file, bytes);
    expect(await verifyModel(small.name, dest)).toEqual({
      name: small.name,
      file: small.file,
      path: file,
      state: 'wrong',
      expectedSha256: small.sha256,
      actualSha256: sha256(bytes),
      sizeBytes: small.sizeBytes,
    });
  });

  it('reports a missing file', async () => {
    const dest = await tempDir();
    expect(await verifyModel(small.name, dest)).toMatchObject({ state: 'missing', path: path.join(dest, small.file) });
  });

  it('rejects an unknown model name, listing the known ones', async () => {
    await expect(verifyModel('ultraface-9000', '/tmp')).rejects.toThrow(
      'unknown model "ultraface-9000"; known models: masked-face-640, masked-face-1280, ultraface-rfb-320, ultraface-slim-320',
    );
    await expect(ensureModel('nope', { modelsDir: '/tmp', mirror: '/tmp' })).rejects.toThrow('known models: masked-face-640');
  });
});

describe.skipIf(!MIRROR)('installing over HTTP', () => {
  let server: Awaited<ReturnType<typeof startMirrorServer>>;
  beforeAll(async () => {
    server = await startMirrorServer(mirror());
  });
  afterAll(() => server.close());

  it('installs all four models from a mirror URL', async () => {
    const dest = await tempDir();
    const results = await fetchModels(undefined, { mirror: `${server.url}/ok`, modelsDir: dest });
    expect(results.map((r) => r.source)).toEqual(MODELS.map((m) => `${server.url}/ok/${m.file}`));
    expect((await verifyModels(undefined, dest)).map((s) => s.state)).toEqual(['ok', 'ok', 'ok', 'ok']);
    expect((await fs.readdir(dest)).length).toBe(4);
  });

  it('downloads from the upstream URL when no mirror is given', async () => {
    const dest = await tempDir();
    const manifest = { ...small, url: `${server.url}/ok/${small.file}` };
    const result = await installModel(manifest, { modelsDir: dest, env: {} });
    expect(result).toMatchObject({ action: 'installed', source: manifest.url });
    expect((await verifyModel(small.name, dest)).state).toBe('ok');
  });

  it('refuses a download whose connection drops mid-file, leaving nothing behind', async () => {
    const dest = await tempDir();
    const err = await ensureModel(small.name, { mirror: `${server.url}/drop`, modelsDir: dest }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ModelFetchError);
    expect((err as Error).message).toMatch(
      new RegExp(`^fetch of ${small.file} from ${server.url}/drop/${small.file} failed after \\d+ of ${small.sizeBytes} bytes`),
    );
    expect((err as Error).message).toContain(`expected sha256 ${small.sha256}`);
    expect(await fs.readdir(dest)).toEqual([]);
  });

  it('refuses a response that ends early without an error (no Content-Length)', async () => {
    const dest = await tempDir();
    const half = (await fs.readFile(path.join(mirror(), small.file))).subarray(0, small.sizeBytes >> 1);
    await expectRefused(ensureModel(small.name, { mirror: `${server.url}/short`, modelsDir: dest }), sha256(half));
    expect(await fs.readdir(dest)).toEqual([]);
  });

  it('names the URL and status of an HTTP error', async () => {
    const dest = await tempDir();
    await expect(ensureModel(small.name, { mirror: `${server.url}/nothing-here`, modelsDir: dest })).rejects.toThrow(
      `cannot download ${small.file}: ${server.url}/nothing-here/${small.file} answered HTTP 404 Not Found`,
    );
    expect(await fs.readdir(dest)).toEqual([]);
  });

  it('cancels on abort, leaving nothing behind', async () => {
    const dest = await tempDir();
    const controller = new AbortController();
    const pending = ensureModel(small.name, {
      mirror: `${server.url}/stall`,
      modelsDir: dest,
      signal: controller.signal,
      onProgress: (p) => {
        if (p.receivedBytes > 0) controller.abort();
      },
    });
    await expect(pending).rejects.toThrow(`fetch of ${small.file} cancelled; nothing was installed`);
    expect(await fs.readdir(dest)).toEqual([]);
  });

  it('explains how to use a mirror when upstream is unreachable', async () => {
    const dest = await tempDir();
    const manifest = { ...small, url: `http://127.0.0.1:${await closedPort()}/${small.file}` };
    const err = await installModel(manifest, { modelsDir: dest, env: {} }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ModelFetchError);
    const message = (err as Error).message;
    expect(message).toContain(`cannot download ${small.file} from ${manifest.url}`);
    expect(message).toContain('ECONNREFUSED');
    expect(message).toContain('--mirror DIR|URL');
    expect(message).toContain('CHECKPOINT_MODELS_MIRROR');
    expect(await fs.readdir(dest)).toEqual([]);
  });

  it('does not suggest a mirror when the mirror itself is unreachable', async () => {
    const dest = await tempDir();
    const url = `http://127.0.0.1:${await closedPort()}`;
    const err = (await ensureModel(small.name, { mirror: url, modelsDir: dest }).catch((e: unknown) => e)) as Error;
    expect(err.message).toMatch(new RegExp(`^cannot download ${small.file} from ${url}/${small.file}: .*ECONNREFUSED`));
    expect(err.message).not.toContain('CHECKPOINT_MODELS_MIRROR');
  });
});
