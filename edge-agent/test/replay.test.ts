import { mkdtemp, readFile, rm, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, describe, expect, it } from 'vitest';
import type { FramePair, SceneGeometry } from '../src/frames.js';
import { jpegSize, openReplay, readReplayMeta, writeReplayFolder } from '../src/sources/replay.js';

const dirs: string[] = [];
async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'replay-test-'));
  dirs.push(dir);
  return dir;
}
afterAll(async () => {
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});

const W = 16;
const H = 12;
const geometry: SceneGeometry = {
  fps: 8.7,
  thermal: { width: W, height: H },
  visible: { width: 64, height: 48 },
  homography: [0.25, 0, 2, 0, 0.25, 1.5, 0, 0, 1],
  blackbody: { x: 10, y: 6, w: 6, h: 6, setC: 35 },
  ambientC: 22,
};

/** Temperatures with fractional centikelvin so rounding is exercised; frame-dependent. */
function thermalValues(n: number): Float32Array {
  const c = new Float32Array(W * H);
  for (let i = 0; i < c.length; i++) c[i] = -10 + n * 1.234567 + i * 0.0731;
  return c;
}

async function jpeg(n: number): Promise<Buffer> {
  return sharp({ create: { width: 64, height: 48, channels: 3, background: { r: n * 20, g: 100, b: 50 } } }).jpeg().toBuffer();
}

async function* pairs(count: number, withVisible: boolean): AsyncGenerator<FramePair> {
  for (let n = 1; n <= count; n++) {
    // Source seq numbers need not start at 1: the writer renumbers.
    const seq = 100 + n;
    yield {
      thermal: { seq, timestampMs: seq * 3, width: W, height: H, celsius: thermalValues(n) },
      visible: withVisible ? { seq, timestampMs: seq * 3, width: 64, height: 48, encoded: await jpeg(n) } : null,
    };
  }
}

async function readAll(dir: string): Promise<FramePair[]> {
  const source = await openReplay(dir);
  const out: FramePair[] = [];
  for await (const pair of source.frames()) out.push(pair);
  await source.close();
  return out;
}

async function writeSample(count = 4, withVisible = true): Promise<string> {
  const dir = await tempDir();
  const g = withVisible ? geometry : { ...geometry, visible: null, homography: null };
  expect(await writeReplayFolder(dir, g, pairs(count, withVisible))).toBe(count);
  return dir;
}

describe('replay folder round trip', () => {
  it('reads back what was written: geometry, order, timestamps, °C to 0.01, JPEG bytes', async () => {
    const dir = await writeSample(5);
    expect(await readReplayMeta(dir)).toEqual(geometry);
    const frames = await readAll(dir);
    expect(frames.map((f) => f.thermal.seq)).toEqual([1, 2, 3, 4, 5]);
    for (const [i, { thermal, visible }] of frames.entries()) {
      const n = i + 1;
      expect(thermal.timestampMs).toBeCloseTo(((n - 1) / 8.7) * 1000, 9);
      expect([thermal.width, thermal.height]).toEqual([W, H]);
      const expected = thermalValues(n);
      let worst = 0;
      for (let p = 0; p < expected.length; p++) worst = Math.max(worst, Math.abs(thermal.celsius[p]! - expected[p]!));
      expect(worst).toBeLessThanOrEqual(0.0051); // rounding to 0.01 K (+ float32)
      expect(visible?.seq).toBe(n);
      expect(visible?.timestampMs).toBe(thermal.timestampMs);
      expect(visible?.encoded.equals(await jpeg(n))).toBe(true);
    }
  });

  it('stores thermal as 16-bit greyscale centikelvin PNGs', async () => {
    const dir = await writeSample(1);
    const png = await readFile(join(dir, 'frames', '000001.png'));
    const meta = await sharp(png).metadata();
    expect([meta.format, meta.depth, meta.channels, meta.width, meta.height]).toEqual(['png', 'ushort', 1, W, H]);
    const raw = await sharp(png).toColourspace('grey16').raw({ depth: 'ushort' }).toBuffer();
    expect(raw.readUInt16LE(0)).toBe(Math.round((thermalValues(1)[0]! + 273.15) * 100));
    const metaJson = JSON.parse(await readFile(join(dir, 'meta.json'), 'utf8'));
    expect(metaJson.thermal.unit).toBe('centikelvin');
  });

  it('handles thermal-only replays (visible null, no .jpg files)', async () => {
    const dir = await writeSample(3, false);
    const frames = await readAll(dir);
    expect(frames).toHaveLength(3);
    expect(frames.every((f) => f.visible === null)).toBe(true);
  });

  it('refuses to write over an existing replay', async () => {
    const dir = await writeSample(1);
    await expect(writeReplayFolder(dir, geometry, pairs(1, true))).rejects.toThrow(/already holds a replay/);
  });

  it('refuses frames that do not match the geometry', async () => {
    const dir = await tempDir();
    await expect(writeReplayFolder(dir, { ...geometry, thermal: { width: 8, height: 8 }, blackbody: null }, pairs(1, true))).rejects.toThrow(/frame 1 .* is 16x12, geometry says 8x8/);
    const dir2 = await tempDir();
    await expect(writeReplayFolder(dir2, geometry, pairs(1, false))).rejects.toThrow(/lacks a visible frame/);
  });

  it('stops early on abort and on close', async () => {
    const dir = await writeSample(4);
    const source = await openReplay(dir, { realtime: true });
    const controller = new AbortController();
    const seen: number[] = [];
    for await (const pair of source.frames(controller.signal)) {
      seen.push(pair.thermal.seq);
      if (pair.thermal.seq === 2) controller.abort();
    }
    expect(seen).toEqual([1, 2]);
    const again: number[] = [];
    for await (const pair of source.frames()) {
      again.push(pair.thermal.seq);
      await source.close();
    }
    expect(again).toEqual([1]);
  });
});

describe('replay format errors name the file and field', () => {
  async function withMeta(patch: (meta: Record<string, unknown>) => void): Promise<string> {
    const dir = await writeSample(2);
    const file = join(dir, 'meta.json');
    const meta = JSON.parse(await readFile(file, 'utf8'));
    patch(meta);
    await writeFile(file, JSON.stringify(meta));
    return dir;
  }

  it.each([
    ['fps', (m: Record<string, unknown>) => (m.fps = 0), /meta\.json: "fps" must be a positive number \(got 0\)/],
    ['thermal.unit', (m: Record<string, unknown>) => ((m.thermal as Record<string, unknown>).unit = 'kelvin'), /"thermal\.unit" must be "centikelvin" \(got "kelvin"\)/],
    ['thermal.width', (m: Record<string, unknown>) => ((m.thermal as Record<string, unknown>).width = '160'), /"thermal\.width" must be an integer/],
    ['homography', (m: Record<string, unknown>) => (m.homography = [1, 0, 0]), /"homography" must be an array of 9 numbers/],
    ['blackbody', (m: Record<string, unknown>) => (m.blackbody = { x: 12, y: 0, w: 6, h: 6, setC: 35 }), /"blackbody" must be a region inside the 16x12 thermal frame/],
    ['blackbody.setC', (m: Record<string, unknown>) => (m.blackbody = { x: 0, y: 0, w: 6, h: 6 }), /"blackbody\.setC" must be a number/],
    ['ambientC missing', (m: Record<string, unknown>) => delete m.ambientC, /"ambientC" must be present/],
    ['visible', (m: Record<string, unknown>) => (m.visible = { width: 64 }), /"visible\.height" must be an integer/],
  ])('%s', async (_name, patch, message) => {
    const dir = await withMeta(patch);
    await expect(openReplay(dir)).rejects.toThrow(message);
    await expect(readReplayMeta(dir)).rejects.toThrow(join(dir, 'meta.json'));
  });

  it('missing or malformed meta.json', async () => {
    const dir = await tempDir();
    await expect(openReplay(dir)).rejects.toThrow(`${join(dir, 'meta.json')}: cannot read replay metadata`);
    await writeFile(join(dir, 'meta.json'), '{"fps": 8.7,');
    await expect(openReplay(dir)).rejects.toThrow(/meta\.json: not valid JSON/);
  });

  it('a gap in the frame numbers names the missing file', async () => {
    const dir = await writeSample(4);
    await unlink(join(dir, 'frames', '000003.png'));
    await expect(openReplay(dir)).rejects.toThrow(`${join(dir, 'frames', '000003.png')}: missing`);
  });

  it('a missing .jpg names the file when the replay has a visible camera', async () => {
    const dir = await writeSample(3);
    await unlink(join(dir, 'frames', '000002.jpg'));
    await expect(openReplay(dir)).rejects.toThrow(`${join(dir, 'frames', '000002.jpg')}: missing`);
  });

  it('a PNG of the wrong size or bit depth names the file when it is read', async () => {
    const dir = await writeSample(3);
    const wrongSize = await sharp(new Uint16Array(8 * 8).fill(30000), { raw: { width: 8, height: 8, channels: 1 } }).toColourspace('grey16').png().toBuffer();
    await writeFile(join(dir, 'frames', '000002.png'), wrongSize);
    const eightBit = await sharp(Buffer.alloc(W * H, 100), { raw: { width: W, height: H, channels: 1 } }).png().toBuffer();
    await writeFile(join(dir, 'frames', '000003.png'), eightBit);

    const source = await openReplay(dir);
    const it1 = source.frames()[Symbol.asyncIterator]();
    expect((await it1.next()).value.thermal.seq).toBe(1);
    await expect(it1.next()).rejects.toThrow(`${join(dir, 'frames', '000002')}.png: expected a 16x12 16-bit greyscale PNG (centikelvin), got a 8x8 16-bit`);

    await unlink(join(dir, 'frames', '000002.png'));
    await writeFile(join(dir, 'frames', '000002.png'), await readFile(join(dir, 'frames', '000001.png')));
    const frames = (await openReplay(dir)).frames()[Symbol.asyncIterator]();
    await frames.next();
    await frames.next();
    await expect(frames.next()).rejects.toThrow(/000003\.png: expected a 16x12 16-bit greyscale PNG .* got a 16x12 8-bit \d-channel png/);
  });

  it('a visible JPEG of another size than meta.json (and the calibration) says is refused, naming the file and both sizes', async () => {
    const dir = await writeSample(3);
    const small = await sharp({ create: { width: 32, height: 24, channels: 3, background: { r: 9, g: 9, b: 9 } } }).jpeg().toBuffer();
    await writeFile(join(dir, 'frames', '000002.jpg'), small);
    const frames = (await openReplay(dir)).frames()[Symbol.asyncIterator]();
    expect((await frames.next()).value.visible.origin).toBe(join(dir, 'frames', '000001.jpg'));
    await expect(frames.next()).rejects.toThrow(`${join(dir, 'frames', '000002')}.jpg: is 32x24, but meta.json says visible frames are 64x48`);
  });

  it('jpegSize reads the frame header and names the file when there is none', () => {
    expect(() => jpegSize(Buffer.from([0x89, 0x50, 0x4e, 0x47]), 'x.jpg')).toThrow('x.jpg: not a JPEG');
    expect(() => jpegSize(Buffer.from([0xff, 0xd8, 0xff, 0xe0, 0x00, 0x04, 0x00, 0x00]), 'y.jpg')).toThrow('y.jpg: corrupt JPEG (no frame header');
  });
});
