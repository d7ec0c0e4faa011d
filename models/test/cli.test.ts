import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { Writable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { main } from '../src/cli.js';
import { getManifest, MODELS } from '../src/index.js';
import { MIRROR, mirror, removeTempDirs, tempDir } from './helpers.js';

afterEach(removeTempDirs);

/** A stream that keeps what is written to it; `isTTY` makes the CLI draw progress bars. */
class Capture extends Writable {
  text = '';
  constructor(readonly isTTY = false) {
    super();
  }
  override _write(chunk: Buffer, _encoding: BufferEncoding, done: () => void): void {
    this.text += chunk.toString();
    done();
  }
}

async function run(argv: string[], options: { env?: Record<string, string>; tty?: boolean } = {}) {
  const stdout = new Capture();
  const stderr = new Capture(options.tty);
  const code = await main(argv, { stdout, stderr, env: options.env ?? {}, cwd: process.cwd() });
  return { code, stdout: stdout.text, stderr: stderr.text };
}

const small = getManifest('ultraface-slim-320');

describe.skipIf(!MIRROR)('checkpoint-models with a mirror', () => {
  it('fetch installs all four models, then verify and list report them verified', async () => {
    const dest = await tempDir();
    const fetched = await run(['fetch', '--mirror', mirror(), '--dest', dest]);
    expect(fetched.code).toBe(0);
    expect(fetched.stdout.trim().split('\n')).toEqual(MODELS.map((m) => `${m.name}: installed, verified: ${path.join(dest, m.file)}`));
    expect(fetched.stderr).toContain(`fetching masked-face-640 from ${path.join(mirror(), 'RFB-640-masked_face-v2.onnx')}`);

    const verified = await run(['verify', '--dest', dest]);
    expect(verified.code).toBe(0);
    expect(verified.stdout.trim().split('\n')).toEqual(MODELS.map((m) => `ok  ${m.name}  ${path.join(dest, m.file)}`));

    const listed = await run(['list', '--dest', dest]);
    expect(listed.code).toBe(0);
    const lines = listed.stdout.trim().split('\n');
    expect(lines[0]).toBe(`models folder: ${dest}`);
    expect(lines[1]).toMatch(/^NAME +VERSION +SIZE +SHA256 +STATE$/);
    expect(lines[2]).toMatch(/^masked-face-640 +v2 +1\.57 MB +27ca3e5985f722e91efea7993f625716de627303c4bafb40bb26f456286beca8 +installed, verified$/);
    expect(lines).toHaveLength(2 + MODELS.length);

    const again = await run(['fetch', '--mirror', mirror(), '--dest', dest]);
    expect(again.code).toBe(0);
    expect(again.stdout).toContain(`masked-face-640: already installed, verified`);
    expect(again.stderr).toBe('');
  });

  it('takes the folder and the mirror from the environment', async () => {
    const dest = await tempDir();
    const env = { CHECKPOINT_MODELS_DIR: dest, CHECKPOINT_MODELS_MIRROR: mirror() };
    expect((await run(['fetch', small.name], { env })).code).toBe(0);
    expect(await fs.readdir(dest)).toEqual([small.file]);
    expect((await run(['verify', small.name], { env })).stdout).toBe(`ok  ${small.name}  ${path.join(dest, small.file)}\n`);
  });

  it('draws a progress bar on a terminal only', async () => {
    const onTty = await run(['fetch', small.name, '--mirror', mirror(), '--dest', await tempDir()], { tty: true });
    expect(onTty.code).toBe(0);
    expect(onTty.stderr).toContain(`100% | ${small.sizeBytes}/${small.sizeBytes} bytes | ${small.file}`);
    const piped = await run(['fetch', small.name, '--mirror', mirror(), '--dest', await tempDir()]);
    expect(piped.stderr).toBe(`fetching ${small.name} from ${path.join(mirror(), small.file)}\n`);
  });

  it('verify exits 1 naming a tampered and a missing model, with both hashes', async () => {
    const dest = await tempDir();
    await run(['fetch', '--mirror', mirror(), '--dest', dest]);
    const tampered = path.join(dest, small.file);
    const bytes = await fs.readFile(tampered);
    bytes[100]! ^= 0x80;
    await fs.writeFile(tampered, bytes);
    await fs.rm(path.join(dest, 'RFB-1280-masked_face-v2.onnx'));

    const result = await run(['verify', '--dest', dest]);
    expect(result.code).toBe(1);
    const actual = createHash('sha256').update(bytes).digest('hex');
    expect(result.stdout).toContain(
      `WRONG  ${small.name}  ${tampered}: expected sha256 ${small.sha256}, actual sha256 ${actual} (${small.sizeBytes} bytes)`,
    );
    expect(result.stdout).toContain(`MISSING  masked-face-1280  ${path.join(dest, 'RFB-1280-masked_face-v2.onnx')}`);
    expect(result.stdout).toContain('ok  masked-face-640');
    expect(result.stderr).toBe('2 of 4 models missing or wrong: masked-face-1280, ultraface-slim-320\n');
    expect((await run(['list', '--dest', dest])).stdout).toMatch(new RegExp(`ultraface-slim-320 .* WRONG \\(sha256 ${actual}`));
  });

  it('fetch refuses a corrupted mirror file with exit 1, naming the file and both hashes', async () => {
    const corrupt = await tempDir('corrupt-mirror');
    const bytes = (await fs.readFile(path.join(mirror(), small.file))).subarray(0, 1000);
    await fs.writeFile(path.join(corrupt, small.file), bytes);
    const dest = await tempDir();

    const result = await run(['fetch', small.name, '--mirror', corrupt, '--dest', dest]);
    expect(result.code).toBe(1);
    expect(result.stdout).toBe('');
    const actual = createHash('sha256').update(bytes).digest('hex');
    expect(result.stderr).toContain(
      `error: refused ${small.file} from ${path.join(corrupt, small.file)}: expected sha256 ${small.sha256} (${small.sizeBytes} bytes), got sha256 ${actual} (1000 bytes)`,
    );
    expect(result.stderr).toContain(`1 of 1 models not installed: ${small.name}`);
    expect(await fs.readdir(dest)).toEqual([]);
  });
});

describe('checkpoint-models usage', () => {
  it('rejects unknown model names with exit 2, listing the known ones, before touching anything', async () => {
    const dest = path.join(await tempDir(), 'models');
    for (const command of ['fetch', 'verify']) {
      const result = await run([command, 'masked-face-640', 'face-9000', 'tiny', '--dest', dest, ...(command === 'fetch' ? ['--mirror', '/nowhere'] : [])]);
      expect(result.code).toBe(2);
      expect(result.stderr).toBe(
        'error: unknown models "face-9000", "tiny"; known models: masked-face-640, masked-face-1280, ultraface-rfb-320, ultraface-slim-320\n',
      );
      expect(result.stdout).toBe('');
    }
    await expect(fs.access(dest)).rejects.toThrow('ENOENT');
  });

  it('verify of an empty folder exits 1 and lists every missing model', async () => {
    const dest = await tempDir();
    const result = await run(['verify', '--dest', dest]);
    expect(result.code).toBe(1);
    expect(result.stdout.match(/^MISSING /gm)).toHaveLength(4);
    expect(result.stderr).toContain('4 of 4 models missing or wrong');
  });

  it('fetch from a folder without the files says which file is missing, exit 1', async () => {
    const empty = await tempDir('empty-mirror');
    const result = await run(['fetch', small.name, '--mirror', empty, '--dest', await tempDir()]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`error: mirror file ${path.join(empty, small.file)} does not exist; nothing was installed`);
  });

  it('prints help with exit 0 and rejects a bad option with exit 2', async () => {
    const help = await run(['--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/list.*\n.*fetch.*\n.*verify/s);
    const fetchHelp = await run(['fetch', '--help']);
    expect(fetchHelp.stdout).toContain('--mirror <dir|url>');
    expect(fetchHelp.stdout).toContain('CHECKPOINT_MODELS_MIRROR');

    const bad = await run(['fetch', '--mirrror', 'x']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain("error: unknown option '--mirrror'");
    expect((await run(['frobnicate'])).code).toBe(2);
  });
});
