/**
 * GY-MCU90640: an MLX90640 (32x24 thermopile array) behind an STM32 that does the Melexis maths
 * and streams finished temperatures over UART. Protocol facts: reference/hardware-protocols.md §1.1.
 *
 * Frame (1544 bytes, little-endian):
 *   0   5A 5A          header
 *   2   02 06          size = 0x0602 = 1538 (768 pixels * 2 + Ta 2)
 *   4   768 x int16    object temperature, °C x100, row-major 24 rows x 32 columns
 *   1540 int16         Ta (sensor ambient/die temperature), °C x100
 *   1542 u16           checksum
 * The checksum rule is not documented by a source we could read; the common assumption is the
 * low 16 bits of the sum of the 771 u16 words in bytes 0..1541 ("sum16"). It is enforced by
 * default; if a board disagrees, every frame fails it and the no-frames error says so, and
 * `checksum: 'none'` falls back to header, length and range checks.
 *
 * Host commands are 4 bytes `A5 CMD DATA SUM`, SUM = (A5 + CMD + DATA) & 0xFF.
 *
 * This file holds the pure protocol (decoder, encoders) and a thin `serialport` adapter.
 */
import { existsSync } from 'node:fs';
import { SerialPort } from 'serialport';
import type { ThermalFrame, ThermalSource } from '../frames.js';

export const GY_WIDTH = 32;
export const GY_HEIGHT = 24;
export const GY_PIXELS = GY_WIDTH * GY_HEIGHT;
export const GY_FRAME_BYTES = 4 + GY_PIXELS * 2 + 2 + 2;
/** The size field's value: pixels plus Ta, in bytes. */
const GY_SIZE_FIELD = GY_PIXELS * 2 + 2;
const TA_OFFSET = 4 + GY_PIXELS * 2;
const CHECKSUM_OFFSET = TA_OFFSET + 2;
const SYNC = Buffer.from([0x5a, 0x5a]);

export type GyChecksumMode = 'sum16' | 'none';

// ---------------------------------------------------------------------------------------------
// Host -> module commands

export const GY_COMMAND_PREFIX = 0xa5;

/** Commands the driver and emulator know, as (CMD, DATA) pairs. */
export const GY_COMMANDS = {
  /** Module pushes frames continuously. */
  startContinuous: { cmd: 0x35, data: 0x02 },
  /** Module sends one frame; also ends continuous output. */
  singleFrame: { cmd: 0x35, data: 0x01 },
} as const;

/** `A5 25 xx`: refresh rate. Firmwares disagree on how xx maps to Hz, so callers pass the raw code. */
export const GY_SET_RATE_CMD = 0x25;

export function encodeGyCommand(cmd: number, data: number): Buffer {
  return Buffer.from([GY_COMMAND_PREFIX, cmd & 0xff, data & 0xff, (GY_COMMAND_PREFIX + cmd + data) & 0xff]);
}

// ---------------------------------------------------------------------------------------------
// Module -> host frames

/** Low 16 bits of the sum of the u16 LE words in bytes 0..1541 of a frame. */
export function gySum16(frame: Buffer): number {
  let sum = 0;
  for (let off = 0; off < CHECKSUM_OFFSET; off += 2) sum += frame.readUInt16LE(off);
  return sum & 0xffff;
}

/** Builds a wire frame from 768 temperatures (°C) and Ta; values are rounded to 0.01 °C. */
export function encodeGyMcu90640Frame(celsius: ArrayLike<number>, ambientC: number): Buffer {
  if (celsius.length !== GY_PIXELS) {
    throw new Error(`GY-MCU90640 frame needs ${GY_PIXELS} temperatures (32x24), got ${celsius.length}`);
  }
  const frame = Buffer.alloc(GY_FRAME_BYTES);
  frame[0] = 0x5a;
  frame[1] = 0x5a;
  frame.writeUInt16LE(GY_SIZE_FIELD, 2);
  for (let i = 0; i < GY_PIXELS; i++) frame.writeInt16LE(toCentiCelsius(celsius[i]!, `pixel ${i}`), 4 + 2 * i);
  frame.writeInt16LE(toCentiCelsius(ambientC, 'Ta'), TA_OFFSET);
  frame.writeUInt16LE(gySum16(frame), CHECKSUM_OFFSET);
  return frame;
}

function toCentiCelsius(c: number, what: string): number {
  const v = Math.round(c * 100);
  if (!Number.isFinite(v) || v < -32768 || v > 32767) {
    throw new Error(`GY-MCU90640 ${what}: ${c} °C does not fit the int16 °C x100 wire format`);
  }
  return v;
}

export interface GyDecodedFrame {
  /** 768 temperatures in °C, row-major 32 wide. */
  celsius: Float32Array;
  /** Sensor ambient (Ta), °C. */
  ambientC: number;
}

/** Why bytes were thrown away. Counts only grow. */
export interface GyDecoderErrors {
  /** Bytes dropped while hunting for a frame header (garbage, and bytes of rejected frames). */
  skippedBytes: number;
  /** Headers `5A 5A` whose size field was not 0x0602. */
  badLength: number;
  /** Complete frames whose checksum did not match. */
  checksum: number;
  /** Frames with a pixel or Ta outside the plausible range. */
  outOfRange: number;
}

export interface GyDecoderOptions {
  checksum?: GyChecksumMode;
  /** Plausible range in °C; frames with any value outside are rejected. Default −40..300. */
  minC?: number;
  maxC?: number;
}

/**
 * Stateful, pure stream decoder: feed it chunks as they arrive, get whole frames back. Frames may
 * be split across chunks; garbage and corrupt frames are skipped and counted, and after a
 * rejected frame the search restarts one byte after its header, so a truncated frame followed by
 * a good one loses only the truncated one.
 */
export class GyMcu90640Decoder {
  readonly errors: GyDecoderErrors = { skippedBytes: 0, badLength: 0, checksum: 0, outOfRange: 0 };
  /** Frames decoded so far. */
  decoded = 0;
  /** Bytes fed so far. */
  bytesIn = 0;
  private pending: Buffer = Buffer.alloc(0);
  private readonly checksum: GyChecksumMode;
  private readonly minCenti: number;
  private readonly maxCenti: number;

  constructor(options: GyDecoderOptions = {}) {
    this.checksum = options.checksum ?? 'sum16';
    this.minCenti = Math.round((options.minC ?? -40) * 100);
    this.maxCenti = Math.round((options.maxC ?? 300) * 100);
  }

  push(chunk: Buffer): GyDecodedFrame[] {
    this.bytesIn += chunk.length;
    const buf = this.pending.length ? Buffer.concat([this.pending, chunk]) : chunk;
    const out: GyDecodedFrame[] = [];
    let pos = 0;
    for (;;) {
      const at = buf.indexOf(SYNC, pos);
      if (at < 0) {
        // Keep a trailing 5A: it may be the first half of the next header.
        const keep = buf.length > pos && buf[buf.length - 1] === 0x5a ? 1 : 0;
        this.errors.skippedBytes += buf.length - pos - keep;
        pos = buf.length - keep;
        break;
      }
      this.errors.skippedBytes += at - pos;
      pos = at;
      if (buf.length - at < 4) break;
      if (buf.readUInt16LE(at + 2) !== GY_SIZE_FIELD) {
        this.reject('badLength');
        pos = at + 1;
        continue;
      }
      if (buf.length - at < GY_FRAME_BYTES) break;
      const frame = buf.subarray(at, at + GY_FRAME_BYTES);
      if (this.checksum === 'sum16' && gySum16(frame) !== frame.readUInt16LE(CHECKSUM_OFFSET)) {
        this.reject('checksum');
        pos = at + 1;
        continue;
      }
      const decodedFrame = this.decodeChecked(frame);
      if (!decodedFrame) {
        this.reject('outOfRange');
        pos = at + 1;
        continue;
      }
      out.push(decodedFrame);
      this.decoded++;
      pos = at + GY_FRAME_BYTES;
    }
    // Copy the remainder so the (possibly large) chunk is not kept alive.
    this.pending = Buffer.from(buf.subarray(pos));
    return out;
  }

  private reject(cause: 'badLength' | 'checksum' | 'outOfRange'): void {
    this.errors[cause]++;
    this.errors.skippedBytes++; // the header byte we step over
  }

  private decodeChecked(frame: Buffer): GyDecodedFrame | null {
    const celsius = new Float32Array(GY_PIXELS);
    for (let i = 0; i < GY_PIXELS; i++) {
      const v = frame.readInt16LE(4 + 2 * i);
      if (v < this.minCenti || v > this.maxCenti) return null;
      celsius[i] = v / 100;
    }
    const ta = frame.readInt16LE(TA_OFFSET);
    if (ta < this.minCenti || ta > this.maxCenti) return null;
    return { celsius, ambientC: ta / 100 };
  }
}

// ---------------------------------------------------------------------------------------------
// serialport adapter

export interface GyMcu90640Options {
  /** Serial device, e.g. /dev/ttyUSB0 or /dev/serial0. */
  path: string;
  /** 115200 (default) carries 4 Hz; 8 Hz needs 460800. */
  baudRate?: number;
  checksum?: GyChecksumMode;
  /** Raw code for `A5 25 xx` (set refresh rate), sent before starting. Mapping to Hz varies by firmware. */
  refreshRateCode?: number;
  /** Send `A5 35 02` (continuous output) after opening. Default true. */
  startContinuous?: boolean;
  /** Gap without a decoded frame after which `frames()` fails. Default 5000 ms. */
  noFrameTimeoutMs?: number;
  /** Frames kept when the consumer is slower than the sensor; older ones are dropped. Default 4. */
  maxQueuedFrames?: number;
  minC?: number;
  maxC?: number;
}

export interface GyMcu90640Stats extends GyDecoderErrors {
  bytesIn: number;
  decoded: number;
  /** Decoded frames dropped because the consumer fell behind. */
  droppedFrames: number;
}

export interface GyMcu90640Source extends ThermalSource {
  stats(): GyMcu90640Stats;
}

/** Opens the board, sends the init commands and returns a thermal source. */
export async function openGyMcu90640(options: GyMcu90640Options): Promise<GyMcu90640Source> {
  const { path } = options;
  if (!existsSync(path)) throw new Error(`serial port ${path} not found`);
  const port = new SerialPort({ path, baudRate: options.baudRate ?? 115200, autoOpen: false });
  await new Promise<void>((resolve, reject) =>
    port.open((err) => (err ? reject(new Error(`cannot open serial port ${path}: ${err.message}`)) : resolve())),
  );
  const source = new GySerialSource(port, options);
  try {
    if (options.refreshRateCode !== undefined) await source.send(encodeGyCommand(GY_SET_RATE_CMD, options.refreshRateCode));
    if (options.startContinuous ?? true) {
      const { cmd, data } = GY_COMMANDS.startContinuous;
      await source.send(encodeGyCommand(cmd, data));
    }
  } catch (err) {
    await source.close();
    throw err;
  }
  return source;
}

class GySerialSource implements GyMcu90640Source {
  private readonly decoder: GyMcu90640Decoder;
  private readonly queue: ThermalFrame[] = [];
  private readonly timeoutMs: number;
  private readonly maxQueued: number;
  private seq = 0;
  private dropped = 0;
  private lastFrameAt = Date.now();
  private failure: Error | null = null;
  private closed = false;
  private wake: (() => void) | null = null;

  constructor(
    private readonly port: SerialPort,
    private readonly options: GyMcu90640Options,
  ) {
    this.decoder = new GyMcu90640Decoder(options);
    this.timeoutMs = options.noFrameTimeoutMs ?? 5000;
    this.maxQueued = options.maxQueuedFrames ?? 4;
    port.on('data', (chunk: Buffer) => this.onData(chunk));
    port.on('error', (err: Error) => this.fail(new Error(`serial port ${options.path}: ${err.message}`)));
    port.on('close', (err?: Error | null) => {
      if (!this.closed) this.fail(new Error(`serial port ${options.path} closed unexpectedly${err ? `: ${err.message}` : ''}`));
    });
  }

  stats(): GyMcu90640Stats {
    return { ...this.decoder.errors, bytesIn: this.decoder.bytesIn, decoded: this.decoder.decoded, droppedFrames: this.dropped };
  }

  async send(bytes: Buffer): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.port.write(bytes, (err) => (err ? reject(new Error(`serial port ${this.options.path}: write failed: ${err.message}`)) : undefined));
      this.port.drain((err) => (err ? reject(new Error(`serial port ${this.options.path}: drain failed: ${err.message}`)) : resolve()));
    });
  }

  async *frames(signal?: AbortSignal): AsyncIterable<ThermalFrame> {
    for (;;) {
      if (signal?.aborted) return;
      const next = this.queue.shift();
      if (next) {
        yield next;
        continue;
      }
      if (this.failure) throw this.failure;
      if (this.closed) return;
      const remaining = this.lastFrameAt + this.timeoutMs - Date.now();
      if (remaining <= 0) throw this.noFramesError();
      await this.waitForWake(remaining, signal);
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.wake?.();
    if (!this.port.isOpen) return;
    if (this.options.startContinuous ?? true) {
      // Ask the board to stop streaming; best effort, the port may already be gone.
      const { cmd, data } = GY_COMMANDS.singleFrame;
      await this.send(encodeGyCommand(cmd, data)).catch(() => undefined);
    }
    await new Promise<void>((resolve) => this.port.close(() => resolve()));
  }

  private onData(chunk: Buffer): void {
    const decoded = this.decoder.push(chunk);
    if (decoded.length === 0) return;
    const now = Date.now();
    this.lastFrameAt = now;
    for (const f of decoded) {
      this.queue.push({
        seq: ++this.seq,
        timestampMs: now,
        width: GY_WIDTH,
        height: GY_HEIGHT,
        celsius: f.celsius,
        sensorAmbientC: f.ambientC,
      });
      if (this.queue.length > this.maxQueued) {
        this.queue.shift();
        this.dropped++;
      }
    }
    this.wake?.();
  }

  private fail(err: Error): void {
    this.failure ??= err;
    this.wake?.();
  }

  private waitForWake(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise<void>((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', done);
        this.wake = null;
        resolve();
      };
      const timer = setTimeout(done, ms);
      signal?.addEventListener('abort', done, { once: true });
      this.wake = done;
    });
  }

  private noFramesError(): Error {
    const s = this.stats();
    const seconds = this.timeoutMs / 1000;
    let detail: string;
    if (s.bytesIn === 0) detail = 'nothing received';
    else {
      detail = `${s.bytesIn} bytes received, ${s.decoded} frames decoded so far, ${s.skippedBytes} skipped, ${s.badLength} bad headers, ${s.checksum} checksum failures, ${s.outOfRange} out of range`;
      if (s.decoded === 0 && s.checksum > 0) {
        detail += "; every complete frame failed the sum16 checksum: if this board's firmware uses another checksum, set checksum: 'none'";
      }
    }
    return new Error(`no frames from ${this.options.path} in ${seconds} s: check wiring/baud (${detail})`);
  }
}
