import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MjpegSplitter, openMjpegCommand, readJpegSize } from '../src/sources/mjpeg.js';
import type { VisibleFrame } from '../src/frames.js';

/** Random-noise RGB pixels: entropy-coded data full of FF 00 stuffing. */
function noise(width: number, height: number, seed: number): Buffer {
  const px = Buffer.alloc(width * height * 3);
  let s = seed;
  for (let i = 0; i < px.length; i++) {
    s = (s * 1103515245 + 12345) >>> 0;
    px[i] = s >>> 24;
  }
  return px;
}

/** Puts a whole JPEG (with its own FF D8 … FF D9) inside an APP1 segment, as EXIF thumbnails are. */
function withThumbnailSegment(jpeg: Buffer, thumbnail: Buffer): Buffer {
  const payload = Buffer.concat([Buffer.from('Exif\0\0'), thumbnail]);
  const header = Buffer.from([0xff, 0xe1, 0, 0]);
  header.writeUInt16BE(payload.length + 2, 2);
  return Buffer.concat([jpeg.subarray(0, 2), header, payload, jpeg.subarray(2)]);
}

let jpegs: Buffer[] = [];
let sizes: Array<{ width: number; height: number }> = [];
let dir = '';

beforeAll(async () => {
  const thumb = await sharp(noise(16, 12, 9), { raw: { width: 16, height: 12, channels: 3 } }).jpeg().toBuffer();
  jpegs = [
    await sharp(noise(64, 48, 1), { raw: { width: 64, height: 48, channels: 3 } }).jpeg({ quality: 90 }).toBuffer(),
    await sharp(noise(33, 17, 2), { raw: { width: 33, height: 17, channels: 3 } }).jpeg({ progressive: true }).toBuffer(),
    withThumbnailSegment(
      await sharp({ create: { width: 320, height: 240, channels: 3, background: { r: 200, g: 120, b: 90 } } }).jpeg().toBuffer(),
      thumb,
    ),
    await sharp(noise(40, 30, 3), { raw: { width: 40, height: 30, channels: 3 } }).grayscale().jpeg().toBuffer(),
  ];
  sizes = [
    { width: 64, height: 48 },
    { width: 33, height: 17 },
    { width: 320, height: 240 },
    { width: 40, height: 30 },
  ];
  dir = await mkdtemp(join(tmpdir(), 'mjpeg-'));
});

afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

function split(stream: Buffer, chunk: number, splitter = new MjpegSplitter()): Buffer[] {
  const out: Buffer[] = [];
  for (let off = 0; off < stream.length; off += chunk) out.push(...splitter.push(stream.subarray(off, off + chunk)));
  return out;
}

describe('MJPEG splitting (pure)', () => {
  it('the test images really contain the traps: FF 00 stuffing and a nested FF D9', () => {
    expect(jpegs[0]!.includes(Buffer.from([0xff, 0x00]))).toBe(true);
    const firstEoi = jpegs[2]!.indexOf(Buffer.from([0xff, 0xd9]));
    expect(firstEoi).toBeLessThan(jpegs[2]!.length - 2); // a naive FF D9 search would cut here
  });

  it('returns each JPEG byte-exact for any chunking (baseline, progressive, grey, EXIF thumbnail)', () => {
    const stream = Buffer.concat(jpegs);
    for (const chunk of [1, 7, 500, 4096, stream.length]) {
      const out = split(stream, chunk);
      expect(out.length).toBe(jpegs.length);
      out.forEach((j, i) => expect(j.equals(jpegs[i]!)).toBe(true));
    }
  });

  it('skips garbage between frames and abandons a frame cut short by a new SOI', () => {
    const cut = jpegs[0]!.subarray(0, 700);
    const stream = Buffer.concat([Buffer.from('HTTP junk \xff\xff'), jpegs[0]!, Buffer.from([0x00, 0xff, 0x12]), cut, jpegs[1]!, jpegs[3]!]);
    const splitter = new MjpegSplitter();
    const out = split(stream, 333, splitter);
    expect(out.map((j) => jpegs.indexOf(jpegs.find((x) => x.equals(j))!))).toEqual([0, 1, 3]);
    expect(splitter.errors.brokenFrames).toBe(1);
    expect(splitter.errors.skippedBytes).toBeGreaterThanOrEqual(13);
  });

  it('drops a frame that grows past the size limit and recovers, without locking onto its thumbnail', () => {
    const splitter = new MjpegSplitter(1100);
    expect(jpegs[2]!.length).toBeGreaterThan(1100); // the one with the EXIF thumbnail
    expect(jpegs[3]!.length).toBeLessThan(1100);
    const out = split(Buffer.concat([jpegs[2]!, jpegs[3]!]), 256, splitter);
    expect(out).toHaveLength(1);
    expect(out[0]!.equals(jpegs[3]!)).toBe(true);
    expect(splitter.errors.brokenFrames).toBe(1);
  });

  it('reads width/height from the SOF header, agreeing with sharp', async () => {
    for (const [i, j] of jpegs.entries()) {
      expect(readJpegSize(j)).toEqual(sizes[i]);
      const meta = await sharp(j).metadata();
      expect(readJpegSize(j)).toEqual({ width: meta.width, height: meta.height });
    }
    expect(() => readJpegSize(Buffer.from('<html>'))).toThrow(/not a JPEG: missing FF D8/);
    expect(() => readJpegSize(Buffer.from([0xff, 0xd8, 0xff, 0xd9]))).toThrow(/no SOF/);
  });
});

describe('MJPEG from a spawned command', () => {
  async function streamCommand(stream: Buffer, chunk: number, tail = 'process.exit(0)'): Promise<string[]> {
    const file = join(dir, `stream-${chunk}.mjpeg`);
    await writeFile(file, stream);
    const js = `
      const all = require('fs').readFileSync(${JSON.stringify(file)});
      let off = 0;
      (function next() {
        if (off >= all.length) { ${tail}; return; }
        process.stdout.write(all.subarray(off, off + ${chunk}), next);
        off += ${chunk};
      })();`;
    return [process.execPath, '-e', js];
  }

  it('yields every frame with its size and exact bytes, decodable by sharp', async () => {
    const src = openMjpegCommand({ command: await streamCommand(Buffer.concat([Buffer.from('x'), ...jpegs, ...jpegs]), 999) });
    const frames: VisibleFrame[] = [];
    for await (const f of src.frames()) frames.push(f);
    expect(frames.map((f) => f.seq)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    frames.forEach((f, i) => {
      expect({ width: f.width, height: f.height }).toEqual(sizes[i % 4]);
      expect(f.encoded.equals(jpegs[i % 4]!)).toBe(true);
    });
    const { info } = await sharp(frames[2]!.encoded).raw().toBuffer({ resolveWithObject: true });
    expect([info.width, info.height]).toEqual([320, 240]);
    expect(src.stats()).toMatchObject({ frames: 8, skippedBytes: 1, brokenFrames: 0, unreadable: 0 });
    await src.close();
  });

  it('close() stops a live camera command', async () => {
    const src = openMjpegCommand({ command: await streamCommand(jpegs[0]!, 4096, 'setInterval(() => {}, 1000)') });
    const seen: number[] = [];
    for await (const f of src.frames()) {
      seen.push(f.seq);
      await src.close();
    }
    expect(seen).toEqual([1]);
  });

  it("reports the command's failure with its stderr", async () => {
    const src = openMjpegCommand({
      command: [process.execPath, '-e', 'console.error("/dev/video9: No such file or directory"); process.exit(1)'],
    });
    const run = async (): Promise<void> => {
      for await (const _ of src.frames()) void _;
    };
    await expect(run()).rejects.toThrow(/MJPEG source: .* exited with code 1; stderr: \/dev\/video9: No such file or directory/);
  });
});
