/**
 * Replay folders: a recorded (or simulated) session on disk, read back as a FrameSource.
 *
 * Layout (other tools write it too, so it is exact):
 *   meta.json          {fps, thermal: {width, height, unit: "centikelvin"}, visible: {width, height} | null,
 *                       homography: 9 numbers | null, blackbody: {x, y, w, h, setC} | null, ambientC: number | null}
 *   frames/000001.png  16-bit greyscale PNG, thermal, value = kelvin × 100
 *   frames/000001.jpg  visible frame of the same instant (absent when "visible" is null)
 * Frames are numbered from 000001 without gaps; frame i was taken at (i-1)/fps seconds.
 */
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import sharp from 'sharp';
import type { Metadata } from 'sharp';
import type { BlackbodyRegion, FramePair, FrameSource, SceneGeometry, ThermalFrame } from '../frames.js';
import { KELVIN_OFFSET } from '../frames.js';

export const REPLAY_META_FILE = 'meta.json';
export const REPLAY_FRAMES_DIR = 'frames';
/** The only thermal unit replay folders use: kelvin × 100 in a 16-bit PNG. */
export const THERMAL_UNIT = 'centikelvin';

/** File name of frame `n` without extension, e.g. 7 → "000007". */
export function frameStem(n: number): string {
  return String(n).padStart(6, '0');
}

// ---------------------------------------------------------------------------------------------
// meta.json

/** Thrown for anything wrong with a replay folder; the message names the file and field. */
export class ReplayFormatError extends Error {
  override name = 'ReplayFormatError';
}

type Json = unknown;

function describe(value: Json): string {
  if (value === undefined) return 'nothing';
  const text = JSON.stringify(value);
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

/** Field readers that fail with `<file>: "<path>" must be ... (got ...)`. */
class FieldReader {
  constructor(private readonly file: string) {}

  fail(path: string, expected: string, got: Json): never {
    throw new ReplayFormatError(`${this.file}: "${path}" must be ${expected} (got ${describe(got)})`);
  }

  object(value: Json, path: string): Record<string, Json> {
    if (typeof value !== 'object' || value === null || Array.isArray(value)) this.fail(path, 'an object', value);
    return value as Record<string, Json>;
  }

  number(obj: Record<string, Json>, key: string, path: string): number {
    const value = obj[key];
    if (typeof value !== 'number' || !Number.isFinite(value)) this.fail(path, 'a number', value);
    return value;
  }

  positiveNumber(obj: Record<string, Json>, key: string, path: string): number {
    const value = this.number(obj, key, path);
    if (value <= 0) this.fail(path, 'a positive number', value);
    return value;
  }

  integer(obj: Record<string, Json>, key: string, path: string, min: number): number {
    const value = obj[key];
    if (typeof value !== 'number' || !Number.isInteger(value) || value < min) {
      this.fail(path, `an integer >= ${min}`, value);
    }
    return value;
  }

  /** The key must be present; `null` means "not available". */
  nullable<T>(obj: Record<string, Json>, key: string, read: (value: Json) => T): T | null {
    if (!(key in obj)) this.fail(key, 'present (use null when there is none)', undefined);
    const value = obj[key];
    return value === null ? null : read(value);
  }
}

/** Validate parsed meta.json content; `file` is used in error messages. */
export function parseReplayMeta(json: Json, file = REPLAY_META_FILE): SceneGeometry {
  const r: FieldReader = new FieldReader(file);
  const meta = r.object(json, '(top level)');
  const fps = r.positiveNumber(meta, 'fps', 'fps');

  const thermalObj = r.object(meta.thermal, 'thermal');
  const thermal = {
    width: r.integer(thermalObj, 'width', 'thermal.width', 1),
    height: r.integer(thermalObj, 'height', 'thermal.height', 1),
  };
  if (thermalObj.unit !== THERMAL_UNIT) r.fail('thermal.unit', `"${THERMAL_UNIT}"`, thermalObj.unit);

  const visible = r.nullable(meta, 'visible', (value) => {
    const obj = r.object(value, 'visible');
    return { width: r.integer(obj, 'width', 'visible.width', 1), height: r.integer(obj, 'height', 'visible.height', 1) };
  });

  const homography = r.nullable(meta, 'homography', (value) => {
    if (!Array.isArray(value) || value.length !== 9 || !value.every((v) => typeof v === 'number' && Number.isFinite(v))) {
      r.fail('homography', 'an array of 9 numbers (row-major 3x3) or null', value);
    }
    return [...(value as number[])];
  });

  const blackbody = r.nullable(meta, 'blackbody', (value): BlackbodyRegion => {
    const obj = r.object(value, 'blackbody');
    const region = {
      x: r.integer(obj, 'x', 'blackbody.x', 0),
      y: r.integer(obj, 'y', 'blackbody.y', 0),
      w: r.integer(obj, 'w', 'blackbody.w', 1),
      h: r.integer(obj, 'h', 'blackbody.h', 1),
      setC: r.number(obj, 'setC', 'blackbody.setC'),
    };
    if (region.x + region.w > thermal.width || region.y + region.h > thermal.height) {
      r.fail('blackbody', `a region inside the ${thermal.width}x${thermal.height} thermal frame`, value);
    }
    return region;
  });

  const ambientC = r.nullable(meta, 'ambientC', (value): number => {
    if (typeof value !== 'number' || !Number.isFinite(value)) r.fail('ambientC', 'a number or null', value);
    return value;
  });

  return { fps, thermal, visible, homography, blackbody, ambientC };
}

/** The meta.json object for a geometry (the inverse of {@link parseReplayMeta}). */
export function replayMetaJson(geometry: SceneGeometry): object {
  return {
    fps: geometry.fps,
    thermal: { width: geometry.thermal.width, height: geometry.thermal.height, unit: THERMAL_UNIT },
    visible: geometry.visible ? { width: geometry.visible.width, height: geometry.visible.height } : null,
    homography: geometry.homography ? [...geometry.homography] : null,
    blackbody: geometry.blackbody ? { ...geometry.blackbody } : null,
    ambientC: geometry.ambientC,
  };
}

/** Read and validate `<dir>/meta.json`. */
export async function readReplayMeta(dir: string): Promise<SceneGeometry> {
  const file = join(dir, REPLAY_META_FILE);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new ReplayFormatError(`${file}: cannot read replay metadata (${(err as Error).message})`);
  }
  let json: Json;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new ReplayFormatError(`${file}: not valid JSON (${(err as Error).message})`);
  }
  return parseReplayMeta(json, file);
}

// ---------------------------------------------------------------------------------------------
// Reading

export interface OpenReplayOptions {
  /** Pace frames at the recorded fps (like a live camera). Default: as fast as they can be read. */
  realtime?: boolean;
}

/**
 * Count the frames in `<dir>/frames` and check the numbering: 000001..N without gaps, and a .jpg
 * next to every .png when the replay has a visible camera. Returns N.
 */
async function countFrames(dir: string, geometry: SceneGeometry): Promise<number> {
  const framesDir = join(dir, REPLAY_FRAMES_DIR);
  let names: string[];
  try {
    names = await readdir(framesDir);
  } catch (err) {
    throw new ReplayFormatError(`${framesDir}: cannot list frames (${(err as Error).message})`);
  }
  const png = new Set<number>();
  const jpg = new Set<number>();
  for (const name of names) {
    const m = /^(\d{6,})\.(png|jpg)$/.exec(name);
    if (!m) continue;
    (m[2] === 'png' ? png : jpg).add(Number(m[1]));
  }
  let last = 0;
  for (const n of png) last = Math.max(last, n);
  for (let n = 1; n <= last; n++) {
    if (!png.has(n)) {
      throw new ReplayFormatError(`${join(framesDir, `${frameStem(n)}.png`)}: missing (frames must be numbered from 000001 without gaps; last is ${frameStem(last)})`);
    }
    if (geometry.visible && !jpg.has(n)) {
      throw new ReplayFormatError(`${join(framesDir, `${frameStem(n)}.jpg`)}: missing (meta.json says the replay has a visible camera)`);
    }
  }
  return last;
}

/** Decode a 16-bit greyscale PNG of centikelvin into °C, checking its size and bit depth. */
/**
 * Width and height from a JPEG's start-of-frame header, without decoding (cheap enough for every
 * frame). Throws a ReplayFormatError naming `file` when the bytes are not a JPEG with a header.
 */
export function jpegSize(jpg: Buffer, file: string): { width: number; height: number } {
  if (jpg.length < 4 || jpg[0] !== 0xff || jpg[1] !== 0xd8) throw new ReplayFormatError(`${file}: not a JPEG (no start-of-image marker)`);
  let i = 2;
  while (i + 4 <= jpg.length) {
    if (jpg[i] !== 0xff) throw new ReplayFormatError(`${file}: corrupt JPEG header at byte ${i}`);
    const marker = jpg[i + 1]!;
    if (marker === 0xff) {
      i++; // fill byte
      continue;
    }
    if (marker === 0xd8 || (marker >= 0xd0 && marker <= 0xd7) || marker === 0x01) {
      i += 2;
      continue;
    }
    const length = jpg.readUInt16BE(i + 2);
    // SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC) carry the frame size.
    if (marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc) {
      if (i + 9 > jpg.length) break;
      return { height: jpg.readUInt16BE(i + 5), width: jpg.readUInt16BE(i + 7) };
    }
    if (marker === 0xda || marker === 0xd9) break; // scan data before any frame header
    i += 2 + length;
  }
  throw new ReplayFormatError(`${file}: corrupt JPEG (no frame header with the image size)`);
}

export async function decodeThermalPng(png: Buffer, width: number, height: number, file: string): Promise<Float32Array> {
  let info: Metadata;
  try {
    info = await sharp(png).metadata();
  } catch (err) {
    throw new ReplayFormatError(`${file}: not a readable PNG (${(err as Error).message})`);
  }
  if (info.format !== 'png' || info.depth !== 'ushort' || info.channels !== 1 || info.width !== width || info.height !== height) {
    const bits = info.depth === 'ushort' ? 16 : info.depth === 'uchar' ? 8 : info.depth;
    throw new ReplayFormatError(
      `${file}: expected a ${width}x${height} 16-bit greyscale PNG (centikelvin), got a ${info.width}x${info.height} ${bits}-bit ${info.channels}-channel ${info.format}`,
    );
  }
  const data = await sharp(png).toColourspace('grey16').raw({ depth: 'ushort' }).toBuffer();
  const raw = new Uint16Array(data.buffer, data.byteOffset, data.byteLength / 2);
  const celsius = new Float32Array(width * height);
  for (let i = 0; i < celsius.length; i++) celsius[i] = raw[i]! / 100 - KELVIN_OFFSET;
  return celsius;
}

async function readFrameFile(file: string): Promise<Buffer> {
  try {
    return await readFile(file);
  } catch (err) {
    throw new ReplayFormatError(`${file}: cannot read frame (${(err as Error).message})`);
  }
}

/**
 * Open a replay folder as a frame source. meta.json and the frame numbering are checked now;
 * frames are read lazily, in order, as the consumer iterates.
 */
export async function openReplay(dir: string, options: OpenReplayOptions = {}): Promise<FrameSource & { readonly frameCount: number }> {
  const geometry = await readReplayMeta(dir);
  const frameCount = await countFrames(dir, geometry);
  const framesDir = join(dir, REPLAY_FRAMES_DIR);
  let closed = false;

  async function* frames(signal?: AbortSignal): AsyncGenerator<FramePair> {
    const startedAt = performance.now();
    for (let n = 1; n <= frameCount && !closed && !signal?.aborted; n++) {
      const timestampMs = ((n - 1) / geometry.fps) * 1000;
      const stem = join(framesDir, frameStem(n));
      const [png, jpg] = await Promise.all([
        readFrameFile(`${stem}.png`),
        geometry.visible ? readFrameFile(`${stem}.jpg`) : null,
      ]);
      const { width, height } = geometry.thermal;
      const thermal: ThermalFrame = {
        seq: n,
        timestampMs,
        width,
        height,
        celsius: await decodeThermalPng(png, width, height, `${stem}.png`),
      };
      let visible: FramePair['visible'] = null;
      if (geometry.visible && jpg) {
        const { width: vw, height: vh } = geometry.visible;
        // A frame of another size would map faces through the homography to the wrong thermal
        // pixels (a 320x240 frame under a 640x480 calibration reads a fever 1 °C low).
        const size = jpegSize(jpg, `${stem}.jpg`);
        if (size.width !== vw || size.height !== vh) {
          throw new ReplayFormatError(`${stem}.jpg: is ${size.width}x${size.height}, but meta.json says visible frames are ${vw}x${vh} (the calibration is for that size)`);
        }
        visible = { seq: n, timestampMs, width: vw, height: vh, encoded: jpg, origin: `${stem}.jpg` };
      }
      if (options.realtime) {
        const wait = startedAt + timestampMs - performance.now();
        if (wait > 0) {
          try {
            await sleep(wait, undefined, { signal });
          } catch {
            return; // aborted while waiting
          }
        }
      }
      yield { thermal, visible };
    }
  }

  return {
    geometry,
    frameCount,
    frames,
    async close() {
      closed = true;
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Writing

/** °C → 16-bit centikelvin, rounded to 0.01 K. */
export function celsiusToCentikelvin(celsius: Float32Array, where: string): Uint16Array {
  const out = new Uint16Array(celsius.length);
  for (let i = 0; i < celsius.length; i++) {
    const ck = Math.round((celsius[i]! + KELVIN_OFFSET) * 100);
    if (!Number.isFinite(ck) || ck < 0 || ck > 0xffff) {
      throw new RangeError(`${where}: pixel ${i} is ${celsius[i]} °C, which does not fit a 16-bit centikelvin PNG`);
    }
    out[i] = ck;
  }
  return out;
}

/** Encode °C as a 16-bit greyscale PNG of centikelvin. */
export async function encodeThermalPng(frame: { width: number; height: number; celsius: Float32Array }, where: string): Promise<Buffer> {
  const ck = celsiusToCentikelvin(frame.celsius, where);
  // A Uint16Array input makes sharp treat the raw pixels as 16-bit; grey16 keeps them 16-bit in the PNG.
  return sharp(ck, { raw: { width: frame.width, height: frame.height, channels: 1 } }).toColourspace('grey16').png().toBuffer();
}

function isJpeg(bytes: Buffer): boolean {
  return bytes.length > 3 && bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff;
}

/**
 * Write frame pairs as a replay folder (the inverse of {@link openReplay}). `dir` must not already
 * hold a replay. Frames are renumbered 1..N in arrival order; temperatures are rounded to 0.01 K.
 * Visible frames are stored as given when they are JPEG and re-encoded to JPEG otherwise.
 * Resolves with the number of frames written.
 */
export async function writeReplayFolder(dir: string, geometry: SceneGeometry, frames: AsyncIterable<FramePair>): Promise<number> {
  parseReplayMeta(replayMetaJson(geometry), 'writeReplayFolder geometry'); // same rules as readers apply
  const framesDir = join(dir, REPLAY_FRAMES_DIR);
  await mkdir(framesDir, { recursive: true });
  const existing = await readdir(dir);
  if (existing.includes(REPLAY_META_FILE) || (await readdir(framesDir)).length > 0) {
    throw new Error(`writeReplayFolder: ${dir} already holds a replay; write to a new or empty folder`);
  }
  await writeFile(join(dir, REPLAY_META_FILE), `${JSON.stringify(replayMetaJson(geometry), null, 2)}\n`);

  // Encode and write a few frames concurrently (sharp works on libuv's thread pool).
  const pending = new Set<Promise<void>>();
  let failure: unknown = null;
  let n = 0;
  for await (const pair of frames) {
    n++;
    const stem = join(framesDir, frameStem(n));
    const { thermal, visible } = pair;
    if (thermal.width !== geometry.thermal.width || thermal.height !== geometry.thermal.height) {
      throw new Error(`writeReplayFolder: frame ${n} (seq ${thermal.seq}) is ${thermal.width}x${thermal.height}, geometry says ${geometry.thermal.width}x${geometry.thermal.height}`);
    }
    if (thermal.celsius.length !== thermal.width * thermal.height) {
      throw new Error(`writeReplayFolder: frame ${n} (seq ${thermal.seq}) has ${thermal.celsius.length} temperatures for ${thermal.width}x${thermal.height} pixels`);
    }
    if (Boolean(visible) !== Boolean(geometry.visible)) {
      throw new Error(`writeReplayFolder: frame ${n} (seq ${thermal.seq}) ${visible ? 'has' : 'lacks'} a visible frame but geometry.visible is ${geometry.visible ? 'set' : 'null'}`);
    }
    const job = (async () => {
      const writes = [writeFile(`${stem}.png`, await encodeThermalPng(thermal, `${stem}.png`))];
      if (visible) {
        const jpeg = isJpeg(visible.encoded) ? visible.encoded : await sharp(visible.encoded).jpeg({ quality: 90 }).toBuffer();
        writes.push(writeFile(`${stem}.jpg`, jpeg));
      }
      await Promise.all(writes);
    })().catch((err: unknown) => {
      failure ??= err;
    });
    pending.add(job);
    void job.finally(() => pending.delete(job));
    if (pending.size >= 4) await Promise.race(pending);
    if (failure) throw failure;
  }
  await Promise.all(pending);
  if (failure) throw failure;
  return n;
}
