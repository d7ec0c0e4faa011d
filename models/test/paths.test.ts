import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { defaultMirror, defaultModelsDir, getManifest, resolveSource } from '../src/index.js';

const manifest = getManifest('masked-face-640');

describe('defaultModelsDir', () => {
  it('prefers CHECKPOINT_MODELS_DIR, resolved from cwd', () => {
    expect(defaultModelsDir({ CHECKPOINT_MODELS_DIR: 'm', CHECKPOINT_DATA_DIR: '/data' }, '/work')).toBe('/work/m');
    expect(defaultModelsDir({ CHECKPOINT_MODELS_DIR: '/opt/models' }, '/work')).toBe('/opt/models');
  });

  it('falls back to <CHECKPOINT_DATA_DIR>/models', () => {
    expect(defaultModelsDir({ CHECKPOINT_DATA_DIR: '/var/lib/checkpoint' }, '/work')).toBe('/var/lib/checkpoint/models');
    expect(defaultModelsDir({ CHECKPOINT_DATA_DIR: 'state' }, '/work')).toBe('/work/state/models');
  });

  it('falls back to ~/.checkpoint/models', () => {
    expect(defaultModelsDir({ HOME: '/home/guard' }, '/work')).toBe('/home/guard/.checkpoint/models');
    expect(defaultModelsDir({}, '/work')).toBe(path.join(os.homedir(), '.checkpoint', 'models'));
  });

  it('ignores empty variables', () => {
    expect(defaultModelsDir({ CHECKPOINT_MODELS_DIR: '', CHECKPOINT_DATA_DIR: '/d' }, '/work')).toBe('/d/models');
    expect(defaultMirror({ CHECKPOINT_MODELS_MIRROR: '' })).toBeUndefined();
    expect(defaultMirror({ CHECKPOINT_MODELS_MIRROR: '../shared/models' })).toBe('../shared/models');
  });
});

describe('resolveSource', () => {
  it('uses the upstream URL without a mirror', () => {
    expect(resolveSource(manifest, undefined, '/work')).toEqual({ kind: 'http', url: manifest.url, upstream: true });
  });

  it('reads a mirror folder given as a relative path, absolute path or file: URL', () => {
    const expected = { kind: 'file', path: `/work/shared/models/${manifest.file}` };
    expect(resolveSource(manifest, '../shared/models', '/work/main')).toEqual(expected);
    expect(resolveSource(manifest, '/work/shared/models/', '/elsewhere')).toEqual(expected);
    expect(resolveSource(manifest, 'file:///work/shared/models', '/elsewhere')).toEqual(expected);
  });

  it('appends the file name to a mirror URL, with or without a trailing slash', () => {
    const url = `https://mirror.example/models/${manifest.file}`;
    expect(resolveSource(manifest, 'https://mirror.example/models', '/w')).toEqual({ kind: 'http', url, upstream: false });
    expect(resolveSource(manifest, 'https://mirror.example/models/', '/w')).toEqual({ kind: 'http', url, upstream: false });
    expect(resolveSource(manifest, 'HTTP://10.0.0.5:8000', '/w')).toMatchObject({ url: `http://10.0.0.5:8000/${manifest.file}` });
  });
});
