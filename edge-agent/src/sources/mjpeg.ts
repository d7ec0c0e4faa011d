/**
 * Visible frames from a command that writes a bare MJPEG stream (concatenated JPEGs) to stdout,
 * e.g. `ffmpeg -f v4l2 -input_format mjpeg -i /dev/video0 -c copy -f mjpeg -`.
 *
 * The stream is split by walking JPEG structure rather than searching for FF D9: marker
 * segments are skipped by their length (an EXIF thumbnail holds its own FF D8 … FF D9), and in
 * entropy-coded data FF 00 (stuffing) and FF D0–D7 (restart markers) are not frame ends.
 */
import type { VisibleFrame } from '../frames.js';
import { spawnCommandStream } from './y16-stream.js';

/** A visible-light camera. Iterating starts capture; close() releases it. */
export interface VisibleSource {
  frames(signal?: AbortSignal): AsyncIterable<VisibleFrame>;
  close(): Promise<void>;
}

// ---------------------------------------------------------------------------------------------
// Pure parts

const SOI = 0xd8;
const EOI = 0xd9;
const SOS = 0xda;
const SOI_MARKER = Buffer.from([0xff, SOI]);

export interface MjpegSplitterErrors {
  /** Bytes outside any JPEG (before an SOI). */
  skippedBytes: number;
  /** JPEGs abandoned: a new SOI before EOI, a broken marker, or larger than the limit. */
  brokenFrames: number;
}

/** Stateful splitter: feed stdout chunks, get whole JPEG files back. */
export class MjpegSplitter {
  readonly errors: MjpegSplitterErrors = { skippedBytes: 0, brokenFrames: 0 };
  private buf: Buffer = Buffer.alloc(0);
  /** Scan position inside `buf`; `buf` starts at the current frame's SOI once one is found. */
  private pos = 0;
  private state: 'seek' | 'marker' | 'entropy' = 'seek';

  constructor(private readonly maxFrameBytes = 16 * 1024 * 1024) {}

  push(chunk: Buffer): Buffer[] {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    const out: Buffer[] = [];
    for (;;) {
      // A frame that has grown past the limit without an EOI is garbage, not a frame.
      const step = this.state !== 'seek' && this.pos > this.maxFrameBytes ? this.abandon(this.pos) : this.step();
      if (step === 'more') break;
      if (step instanceof Buffer) out.push(step);
    }
    return out;
  }

  /** Advances the state machine by one element; 'more' means it needs more bytes. */
  private step(): Buffer | 'more' | 'continue' {
    const b = this.buf;
    if (this.state === 'seek') {
      const at = b.indexOf(SOI_MARKER);
      if (at < 0) {
        const keep = b.length && b[b.length - 1] === 0xff ? 1 : 0;
        this.errors.skippedBytes += b.length - keep;
        this.buf = b.subarray(b.length - keep);
        return 'more';
      }
      this.errors.skippedBytes += at;
      this.buf = b.subarray(at);
      this.pos = 2;
      this.state = 'marker';
      return 'continue';
    }
    if (this.state === 'entropy') {
      const ff = b.indexOf(0xff, this.pos);
      if (ff < 0 || ff + 1 >= b.length) {
        this.pos = ff < 0 ? b.length : ff;
        return 'more';
      }
      const next = b[ff + 1]!;
      if (next === 0x00 || (next >= 0xd0 && next <= 0xd7)) this.pos = ff + 2;
      else if (next === 0xff) this.pos = ff + 1; // fill byte
      else {
        this.pos = ff;
        this.state = 'marker';
      }
      return 'continue';
    }
    // state === 'marker': expect FF xx at pos
    if (this.pos + 2 > b.length) return 'more';
    if (b[this.pos] !== 0xff) return this.abandon();
    const marker = b[this.pos + 1]!;
    if (marker === 0xff) {
      this.pos += 1; // fill bytes may precede a marker
      return 'continue';
    }
    if (marker === EOI) {
      const jpeg = Buffer.from(b.subarray(0, this.pos + 2));
      this.buf = b.subarray(this.pos + 2);
      this.state = 'seek';
      return jpeg;
    }
    if (marker === SOI) return this.abandon(this.pos); // cut short: the next frame starts here
    if ((marker >= 0xd0 && marker <= 0xd7) || marker === 0x01) {
      this.pos += 2; // markers without a length
      return 'continue';
    }
    if (this.pos + 4 > b.length) return 'more';
    const length = b.readUInt16BE(this.pos + 2);
    if (length < 2) return this.abandon();
    this.pos += 2 + length;
    if (marker === SOS) this.state = 'entropy';
    return 'continue';
  }

  /**
   * Drops the current frame and resumes the SOI search at `resumeAt` (default: just after the
   * frame's SOI). Resuming past the bytes already walked keeps the search from locking onto a
   * JPEG nested inside them, such as an EXIF thumbnail.
   */
  private abandon(resumeAt = 1): 'continue' {
    const at = Math.min(Math.max(resumeAt, 1), this.buf.length);
    this.errors.brokenFrames++;
    this.errors.skippedBytes += at;
    this.buf = this.buf.subarray(at);
    this.state = 'seek';
    return 'continue';
  }
}

/**
 * Width and height from a JPEG's SOF header (any SOFn), without decoding. Throws naming what is
 * wrong when the bytes are not a JPEG or have no frame header.
 */
export function readJpegSize(jpeg: Buffer): { width: number; height: number } {
  if (jpeg.length < 4 || jpeg[0] !== 0xff || jpeg[1] !== SOI) throw new Error('not a JPEG: missing FF D8 start marker');
  let pos = 2;
  while (pos + 4 <= jpeg.length) {
    if (jpeg[pos] !== 0xff) throw new Error(`corrupt JPEG: expected a marker at byte ${pos}`);
    const marker = jpeg[pos + 1]!;
    if (marker === 0xff) {
      pos += 1;
      continue;
    }
    if (marker === SOS || marker === EOI) break;
    if ((marker >= 0xd0 && marker <= 0xd7) || marker === 0x01) {
      pos += 2;
      continue;
    }
    const length = jpeg.readUInt16BE(pos + 2);
    // SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC).
    const isSof = marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc;
    if (isSof) {
      if (pos + 9 > jpeg.length) break;
      return { height: jpeg.readUInt16BE(pos + 5), width: jpeg.readUInt16BE(pos + 7) };
    }
    pos += 2 + length;
  }
  throw new Error('corrupt JPEG: no SOF (frame header) before the image data');
}

// ---------------------------------------------------------------------------------------------
// Source

export interface MjpegCommandOptions {
  /** Command and arguments; stdout must carry concatenated JPEGs. */
  command: string[];
  /** Silence after which iteration fails. Default 5000 ms. */
  noFrameTimeoutMs?: number;
  /** A frame larger than this is dropped as broken. Default 16 MiB. */
  maxFrameBytes?: number;
}

export interface MjpegCommandSource extends VisibleSource {
  stats(): MjpegSplitterErrors & { frames: number; unreadable: number };
}

/** Visible source over an MJPEG pipe. Iterating spawns the command; ending iteration or close() kills it. */
export function openMjpegCommand(options: MjpegCommandOptions): MjpegCommandSource {
  if (options.command.length === 0) throw new Error('MJPEG source: command is empty');
  const running = new Set<{ kill(): Promise<void> }>();
  let seq = 0;
  let unreadable = 0;
  let closed = false;
  let splitter = new MjpegSplitter(options.maxFrameBytes);

  async function* frames(signal?: AbortSignal): AsyncGenerator<VisibleFrame> {
    if (closed) return;
    const child = spawnCommandStream(options.command, { what: 'MJPEG source', idleTimeoutMs: options.noFrameTimeoutMs ?? 5000 });
    running.add(child);
    splitter = new MjpegSplitter(options.maxFrameBytes);
    try {
      for await (const chunk of child.chunks(signal)) {
        for (const jpeg of splitter.push(chunk)) {
          let size: { width: number; height: number };
          try {
            size = readJpegSize(jpeg);
          } catch {
            unreadable++; // a well-framed JPEG without a frame header: skip it, keep streaming
            continue;
          }
          yield { seq: ++seq, timestampMs: Date.now(), ...size, encoded: jpeg };
        }
      }
    } finally {
      await child.kill();
      running.delete(child);
    }
  }

  return {
    frames,
    async close() {
      closed = true;
      await Promise.all([...running].map((c) => c.kill()));
    },
    stats: () => ({ ...splitter.errors, frames: seq, unreadable }),
  };
}
