/**
 * Visible frames by polling a camera's HTTP snapshot URL (most IP cameras have one, e.g.
 * `http://cam/cgi-bin/snapshot.cgi` or `http://cam/ISAPI/Streaming/channels/101/picture`).
 * Each poll is one fetch with its own timeout; the response must be a JPEG or PNG.
 */
import type { VisibleFrame } from '../frames.js';
import { readJpegSize } from './mjpeg.js';
import type { VisibleSource } from './mjpeg.js';

// ---------------------------------------------------------------------------------------------
// Pure parts

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

/** Size of a JPEG or PNG from its header; throws naming what the bytes are instead. */
export function readImageSize(bytes: Buffer): { width: number; height: number; type: 'jpeg' | 'png' } {
  if (bytes.length >= 2 && bytes[0] === 0xff && bytes[1] === 0xd8) return { ...readJpegSize(bytes), type: 'jpeg' };
  if (bytes.length >= 24 && bytes.subarray(0, 8).equals(PNG_SIGNATURE) && bytes.toString('latin1', 12, 16) === 'IHDR') {
    return { width: bytes.readUInt32BE(16), height: bytes.readUInt32BE(20), type: 'png' };
  }
  const start = bytes.subarray(0, 16).toString('latin1').replace(/[^\x20-\x7e]/g, '.');
  throw new Error(`not a JPEG or PNG (${bytes.length} bytes starting "${start}")`);
}

// ---------------------------------------------------------------------------------------------
// Source

export interface HttpSnapshotOptions {
  url: string;
  /** Time between poll starts. Default 200 ms (5 fps). */
  intervalMs?: number;
  /** Per-request timeout. Default 3000 ms. */
  timeoutMs?: number;
  /** Consecutive failed polls tolerated before iteration fails. Default 0. */
  maxConsecutiveFailures?: number;
  headers?: Record<string, string>;
}

export interface HttpSnapshotSource extends VisibleSource {
  stats(): { frames: number; failures: number };
}

export function openHttpSnapshot(options: HttpSnapshotOptions): HttpSnapshotSource {
  let url: URL;
  try {
    url = new URL(options.url);
  } catch {
    throw new Error(`snapshot URL is not a valid URL: ${JSON.stringify(options.url)}`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error(`snapshot URL must be http(s), got ${url.protocol}`);
  // fetch refuses URLs with credentials; cameras expect them as HTTP Basic auth. They are kept
  // out of error messages.
  const headers: Record<string, string> = { ...options.headers };
  if (url.username || url.password) {
    const user = decodeURIComponent(url.username);
    const pass = decodeURIComponent(url.password);
    headers.authorization ??= `Basic ${Buffer.from(`${user}:${pass}`).toString('base64')}`;
    url.username = '';
    url.password = '';
  }
  const shown = `${url.protocol}//${url.host}${url.pathname}`;
  const intervalMs = options.intervalMs ?? 200;
  const timeoutMs = options.timeoutMs ?? 3000;
  const maxFailures = options.maxConsecutiveFailures ?? 0;
  const stopper = new AbortController();
  let seq = 0;
  let failures = 0;

  async function snapshot(signal: AbortSignal): Promise<VisibleFrame> {
    let res: Response;
    try {
      res = await fetch(url, { headers, signal: AbortSignal.any([signal, AbortSignal.timeout(timeoutMs)]) });
    } catch (err) {
      const e = err as Error & { cause?: { code?: string; message?: string } };
      const why = e.name === 'TimeoutError' ? `no response in ${timeoutMs} ms` : (e.cause?.code ?? e.cause?.message ?? e.message);
      throw new Error(`snapshot URL ${shown} unreachable: ${why}`);
    }
    if (!res.ok) {
      await res.body?.cancel();
      throw new Error(`snapshot URL ${shown} answered HTTP ${res.status} ${res.statusText}`);
    }
    let bytes: Buffer;
    try {
      bytes = Buffer.from(await res.arrayBuffer());
    } catch (err) {
      const e = err as Error;
      throw new Error(`snapshot URL ${shown}: body not received: ${e.name === 'TimeoutError' ? `timed out after ${timeoutMs} ms` : e.message}`);
    }
    let size: { width: number; height: number };
    try {
      size = readImageSize(bytes);
    } catch (err) {
      const type = res.headers.get('content-type') ?? 'no content-type';
      throw new Error(`snapshot URL ${shown} returned ${type}, not an image: ${(err as Error).message}`);
    }
    return { seq: ++seq, timestampMs: Date.now(), width: size.width, height: size.height, encoded: bytes };
  }

  async function* frames(signal?: AbortSignal): AsyncGenerator<VisibleFrame> {
    const stop = signal ? AbortSignal.any([signal, stopper.signal]) : stopper.signal;
    let consecutive = 0;
    let nextAt = Date.now();
    while (!stop.aborted) {
      let frame: VisibleFrame | null = null;
      try {
        frame = await snapshot(stop);
        consecutive = 0;
      } catch (err) {
        if (stop.aborted) return;
        failures++;
        if (++consecutive > maxFailures) throw err;
      }
      if (frame) yield frame;
      // Fixed-rate polling: the next poll starts one interval after the previous one started.
      nextAt = Math.max(nextAt + intervalMs, Date.now());
      await sleep(nextAt - Date.now(), stop);
    }
  }

  return {
    frames,
    async close() {
      stopper.abort();
    },
    stats: () => ({ frames: seq, failures }),
  };
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (ms <= 0 || signal.aborted) return resolve();
    const t = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
    function done(): void {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    }
  });
}
