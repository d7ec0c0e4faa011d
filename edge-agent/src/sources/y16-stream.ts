/**
 * Radiometric Y16 frames from a spawned command's stdout: a FLIR Lepton 2.5/3.5 on a PureThermal
 * board with TLinear on delivers 16-bit little-endian pixels in kelvin x100 (reference
 * hardware-protocols.md §2), e.g. through
 *   v4l2-ctl -d /dev/video0 --set-fmt-video=width=160,height=120,pixelformat=Y16 \
 *            --stream-mmap --stream-count=0 --stream-to=-
 *   ffmpeg -f v4l2 -input_format gray16le -video_size 160x120 -i /dev/video0 -f rawvideo -pix_fmt gray16le pipe:1
 * The stream has no framing, so the frame size comes from the config and chunks are reassembled.
 *
 * Also home of `spawnCommandStream`, the child-process reader the MJPEG source shares.
 */
import { spawn } from 'node:child_process';
import type { ChildProcessByStdio } from 'node:child_process';
import type { Readable } from 'node:stream';
import { KELVIN_OFFSET } from '../frames.js';
import type { ThermalFrame, ThermalSource } from '../frames.js';

// ---------------------------------------------------------------------------------------------
// Pure parts

/** Cuts an unframed byte stream into fixed-size frames. */
export class FixedSizeFramer {
  private pending: Buffer[] = [];
  private pendingLength = 0;

  constructor(readonly frameBytes: number) {
    if (!Number.isInteger(frameBytes) || frameBytes <= 0) throw new Error(`frame size must be a positive integer, got ${frameBytes}`);
  }

  /** Bytes held that do not yet make a whole frame. */
  get pendingBytes(): number {
    return this.pendingLength;
  }

  push(chunk: Buffer): Buffer[] {
    this.pending.push(chunk);
    this.pendingLength += chunk.length;
    if (this.pendingLength < this.frameBytes) return [];
    const all = Buffer.concat(this.pending, this.pendingLength);
    const out: Buffer[] = [];
    let off = 0;
    for (; off + this.frameBytes <= all.length; off += this.frameBytes) out.push(all.subarray(off, off + this.frameBytes));
    const rest = all.subarray(off);
    this.pending = rest.length ? [Buffer.from(rest)] : [];
    this.pendingLength = rest.length;
    return out;
  }
}

/**
 * Y16 (u16 LE, `kelvinPerCount` K per count) to °C for the first `imageHeight` rows; rows after
 * them (PureThermal's 160x122 mode appends 2 rows of Lepton telemetry) are ignored.
 */
export function y16ToCelsius(frame: Buffer, width: number, imageHeight: number, kelvinPerCount = 0.01): Float32Array {
  const n = width * imageHeight;
  if (frame.length < n * 2) throw new Error(`Y16 frame has ${frame.length} bytes, ${width}x${imageHeight} needs ${n * 2}`);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = frame.readUInt16LE(2 * i) * kelvinPerCount - KELVIN_OFFSET;
  return out;
}

// ---------------------------------------------------------------------------------------------
// Child process reader (shared with mjpeg.ts)

export interface CommandStream {
  /**
   * stdout chunks. Ends when the command exits with code 0; throws (with the command's stderr
   * tail) when it cannot start, exits otherwise, or is silent for `idleTimeoutMs`.
   */
  chunks(signal?: AbortSignal): AsyncGenerator<Buffer>;
  /** Stops the command (SIGTERM, then SIGKILL after 2 s) and waits for it to exit. */
  kill(): Promise<void>;
}

export interface CommandStreamOptions {
  /** What the command is for, for error messages, e.g. "Y16 camera". */
  what: string;
  idleTimeoutMs: number;
}

const STDERR_TAIL_CHARS = 2000;

export function spawnCommandStream(command: readonly string[], options: CommandStreamOptions): CommandStream {
  const [file, ...args] = command;
  if (!file) throw new Error(`${options.what}: command is empty`);
  const shown = command.join(' ');
  const child: ChildProcessByStdio<null, Readable, Readable> = spawn(file, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (s: string) => {
    stderr = (stderr + s).slice(-STDERR_TAIL_CHARS);
  });
  let killing = false;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; error?: Error }>((resolve) => {
    child.once('error', (error) => resolve({ code: null, signal: null, error }));
    child.once('close', (code, signal) => resolve({ code, signal }));
  });
  const tail = (): string => (stderr.trim() ? `; stderr: ${stderr.trim()}` : '; stderr was empty');

  async function kill(): Promise<void> {
    killing = true;
    if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
    child.kill('SIGTERM');
    const hard = setTimeout(() => child.kill('SIGKILL'), 2000);
    await exited;
    clearTimeout(hard);
  }

  async function* chunks(signal?: AbortSignal): AsyncGenerator<Buffer> {
    const reader = child.stdout[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
    for (;;) {
      const next = await nextWithin(reader, options.idleTimeoutMs, signal);
      if (next === 'aborted' || killing) return;
      if (next === 'timeout') {
        await kill();
        throw new Error(`${options.what}: no data from \`${shown}\` in ${options.idleTimeoutMs / 1000} s${tail()}`);
      }
      if (next.done) break;
      yield next.value;
    }
    const { code, signal: sig, error } = await exited;
    if (killing) return;
    if (error) throw new Error(`${options.what}: cannot start \`${shown}\`: ${error.message}`);
    if (code !== 0) throw new Error(`${options.what}: \`${shown}\` exited with ${code !== null ? `code ${code}` : `signal ${sig}`}${tail()}`);
  }

  return { chunks, kill };
}

async function nextWithin<T>(
  it: AsyncIterator<T>,
  ms: number,
  signal?: AbortSignal,
): Promise<IteratorResult<T> | 'timeout' | 'aborted'> {
  if (signal?.aborted) return 'aborted';
  let timer: NodeJS.Timeout | undefined;
  let onAbort: (() => void) | undefined;
  try {
    return await Promise.race([
      it.next(),
      new Promise<'timeout'>((resolve) => {
        timer = setTimeout(() => resolve('timeout'), ms);
      }),
      new Promise<'aborted'>((resolve) => {
        onAbort = () => resolve('aborted');
        signal?.addEventListener('abort', onAbort, { once: true });
      }),
    ]);
  } finally {
    clearTimeout(timer);
    if (onAbort) signal?.removeEventListener('abort', onAbort);
  }
}

// ---------------------------------------------------------------------------------------------
// Source

export interface Y16StreamOptions {
  /** Command and arguments; stdout must carry raw Y16 frames back to back. */
  command: string[];
  width: number;
  /** Rows per frame on the wire, telemetry rows included. */
  height: number;
  /** Nominal frame rate; sets the default no-data timeout. */
  fps?: number;
  /** Trailing telemetry rows to drop (2 for PureThermal's 160x122 mode). Default 0. */
  telemetryRows?: number;
  /** TLinear resolution: 0.01 K per count (default) or 0.1 K (Lepton low-gain). */
  kelvinPerCount?: 0.01 | 0.1;
  /** Silence after which iteration fails. Default max(2 s, 20 frame periods). */
  noFrameTimeoutMs?: number;
}

/** A thermal source over a Y16 pipe. Iterating spawns the command; ending iteration or close() kills it. */
export function openY16Stream(options: Y16StreamOptions): ThermalSource {
  const { width, height } = options;
  const telemetryRows = options.telemetryRows ?? 0;
  for (const [name, v] of [['width', width], ['height', height]] as const) {
    if (!Number.isInteger(v) || v <= 0) throw new Error(`Y16 stream: ${name} must be a positive integer, got ${v}`);
  }
  if (!Number.isInteger(telemetryRows) || telemetryRows < 0 || telemetryRows >= height) {
    throw new Error(`Y16 stream: telemetryRows must be an integer in 0..${height - 1}, got ${telemetryRows}`);
  }
  if (options.command.length === 0) throw new Error('Y16 stream: command is empty');
  const imageHeight = height - telemetryRows;
  const frameBytes = width * height * 2;
  const idleTimeoutMs = options.noFrameTimeoutMs ?? Math.max(2000, options.fps ? 20_000 / options.fps : 0);
  const running = new Set<CommandStream>();
  let seq = 0;
  let closed = false;

  async function* frames(signal?: AbortSignal): AsyncGenerator<ThermalFrame> {
    if (closed) return;
    const child = spawnCommandStream(options.command, { what: 'Y16 stream', idleTimeoutMs });
    running.add(child);
    const framer = new FixedSizeFramer(frameBytes);
    try {
      for await (const chunk of child.chunks(signal)) {
        for (const raw of framer.push(chunk)) {
          yield {
            seq: ++seq,
            timestampMs: Date.now(),
            width,
            height: imageHeight,
            celsius: y16ToCelsius(raw, width, imageHeight, options.kelvinPerCount),
          };
        }
      }
      if (framer.pendingBytes > 0 && !closed && !signal?.aborted) {
        throw new Error(
          `Y16 stream: \`${options.command.join(' ')}\` ended mid-frame with ${framer.pendingBytes} bytes left over ` +
            `(a ${width}x${height} Y16 frame is ${frameBytes} bytes: check width/height)`,
        );
      }
    } finally {
      await child.kill();
      running.delete(child);
    }
  }

  async function close(): Promise<void> {
    closed = true;
    await Promise.all([...running].map((c) => c.kill()));
  }

  return { frames, close };
}
