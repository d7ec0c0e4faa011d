import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { FixedSizeFramer, openY16Stream, y16ToCelsius } from '../src/sources/y16-stream.js';
import type { ThermalFrame, ThermalSource } from '../src/frames.js';

const W = 4;
const H = 3;

/** Raw centikelvin for pixel i of frame f: spans cold (0 °C) to warm (~45 °C). */
const raw = (f: number, i: number): number => 27315 + f * 1000 + i * 337;

/**
 * A `node -e` camera: writes `frames` Y16 frames of W x rows (the telemetry row, if any, is
 * 0xFFFF) in chunks of `chunk` bytes (odd, so pixels split across writes), then runs `tail`.
 */
function cameraScript(frames: number, rows: number, chunk: number, tail = 'process.exit(0)'): string[] {
  const js = `
    const W=${W}, H=${H}, rows=${rows};
    const parts = [];
    for (let f = 0; f < ${frames}; f++) {
      const b = Buffer.alloc(W * rows * 2, 0xff);
      for (let i = 0; i < W * H; i++) b.writeUInt16LE(27315 + f * 1000 + i * 337, 2 * i);
      parts.push(b);
    }
    const all = Buffer.concat(parts);
    let off = 0;
    (function next() {
      if (off >= all.length) { ${tail}; return; }
      process.stdout.write(all.subarray(off, off + ${chunk}), next);
      off += ${chunk};
    })();`;
  return [process.execPath, '-e', js];
}

async function collect(source: ThermalSource, limit = Infinity): Promise<ThermalFrame[]> {
  const out: ThermalFrame[] = [];
  for await (const f of source.frames()) {
    out.push(f);
    if (out.length >= limit) break;
  }
  return out;
}

describe('Y16 (pure)', () => {
  it('converts centikelvin to °C: v/100 − 273.15', () => {
    const b = Buffer.alloc(6);
    b.writeUInt16LE(27315, 0);
    b.writeUInt16LE(31015, 2); // 37.00 °C
    b.writeUInt16LE(0xffff, 4); // 655.35 K
    const c = y16ToCelsius(b, 3, 1);
    expect(c[0]).toBeCloseTo(0, 4);
    expect(c[1]).toBeCloseTo(37, 4);
    expect(c[2]).toBeCloseTo(382.2, 3);
    expect(y16ToCelsius(b.subarray(2, 4), 1, 1, 0.1)[0]).toBeCloseTo(3101.5 - 273.15, 2);
  });

  it('reassembles fixed-size frames from any chunking', () => {
    const data = Buffer.from(Array.from({ length: 50 }, (_, i) => i));
    for (const size of [1, 3, 10, 11, 50]) {
      const framer = new FixedSizeFramer(10);
      const out: Buffer[] = [];
      for (let off = 0; off < data.length; off += size) out.push(...framer.push(data.subarray(off, off + size)));
      expect(Buffer.concat(out).equals(data)).toBe(true);
      expect(out.every((f) => f.length === 10)).toBe(true);
      expect(framer.pendingBytes).toBe(0);
    }
  });
});

describe('Y16 stream from a spawned command', () => {
  it('decodes every pixel of every frame, dropping telemetry rows', async () => {
    const src = openY16Stream({ command: cameraScript(5, H + 1, 7), width: W, height: H + 1, telemetryRows: 1 });
    const frames = await collect(src);
    expect(frames.map((f) => f.seq)).toEqual([1, 2, 3, 4, 5]);
    for (const [f, frame] of frames.entries()) {
      expect([frame.width, frame.height, frame.celsius.length]).toEqual([W, H, W * H]);
      for (let i = 0; i < W * H; i++) expect(frame.celsius[i]).toBeCloseTo(raw(f, i) / 100 - 273.15, 4);
    }
    await src.close();
  });

  it('reports a failing command with its exit code and stderr tail', async () => {
    const src = openY16Stream({
      command: [process.execPath, '-e', 'console.error("VIDIOC_STREAMON: No such device"); process.exit(3)'],
      width: W,
      height: H,
    });
    await expect(collect(src)).rejects.toThrow(/exited with code 3; stderr: VIDIOC_STREAMON: No such device/);
  });

  it('reports a command that cannot start', async () => {
    const src = openY16Stream({ command: ['/nonexistent/v4l2-ctl', '--stream-mmap'], width: W, height: H });
    await expect(collect(src)).rejects.toThrow(/cannot start `\/nonexistent\/v4l2-ctl --stream-mmap`: .*ENOENT/);
  });

  it('reports a stream that ends mid-frame (wrong width/height)', async () => {
    // 2 frames of 4x3 are 48 bytes; configured as 5x3 (30 bytes) that leaves 18 over.
    const src = openY16Stream({ command: cameraScript(2, H, 5), width: 5, height: H });
    await expect(collect(src)).rejects.toThrow(/ended mid-frame with 18 bytes left over \(a 5x3 Y16 frame is 30 bytes/);
  });

  it('reports a silent camera', async () => {
    const src = openY16Stream({ command: [process.execPath, '-e', 'setInterval(() => {}, 1000)'], width: W, height: H, noFrameTimeoutMs: 300 });
    await expect(collect(src)).rejects.toThrow(/no data from .* in 0.3 s/);
  });

  it('close() kills a running camera command and ends iteration', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'y16-'));
    const pidFile = join(dir, 'pid');
    try {
      const keepAlive = `require('fs').writeFileSync(${JSON.stringify(pidFile)}, String(process.pid)); setInterval(() => {}, 1000)`;
      const src = openY16Stream({ command: cameraScript(1, H, 24, keepAlive), width: W, height: H });
      const seen: number[] = [];
      for await (const f of src.frames()) {
        seen.push(f.seq);
        while (!existsSync(pidFile)) await new Promise((r) => setTimeout(r, 10));
        await src.close();
      }
      expect(seen).toEqual([1]);
      const pid = Number(await readFile(pidFile, 'utf8'));
      expect(() => process.kill(pid, 0)).toThrow(/ESRCH/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('rejects an impossible configuration up front', () => {
    expect(() => openY16Stream({ command: ['x'], width: 0, height: 120 })).toThrow(/width must be a positive integer, got 0/);
    expect(() => openY16Stream({ command: ['x'], width: 160, height: 122, telemetryRows: 122 })).toThrow(/telemetryRows/);
    expect(() => openY16Stream({ command: [], width: 160, height: 120 })).toThrow(/command is empty/);
  });
});
