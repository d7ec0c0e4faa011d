import { afterEach, describe, expect, it } from 'vitest';
import {
  GY_FRAME_BYTES,
  GY_PIXELS,
  GyMcu90640Decoder,
  encodeGyCommand,
  encodeGyMcu90640Frame,
  gySum16,
  openGyMcu90640,
} from '../src/sources/gy-mcu90640.js';
import type { GyMcu90640Source } from '../src/sources/gy-mcu90640.js';
import { GyMcu90640Emulator, warmFaceScene } from '../src/sources/emulators/gy-mcu90640-emulator.js';
import type { GyGrid } from '../src/sources/emulators/gy-mcu90640-emulator.js';
import type { ThermalFrame } from '../src/frames.js';
import { openPtyPair } from '@checkpoint/test-support';
import type { PtyPair } from '@checkpoint/test-support';

/** A scene whose every pixel differs, including negatives and hundredths. */
function gradient(seed: number): GyGrid {
  const celsius = new Float32Array(GY_PIXELS);
  for (let i = 0; i < GY_PIXELS; i++) celsius[i] = -20 + ((i * 37 + seed * 11) % 6000) / 100;
  return { celsius, ambientC: 25.37 + seed / 100 };
}

/** The frame the vvkuryshev/forpes examples describe, built byte by byte (not with the encoder). */
function handBuiltFrame(): Buffer {
  const b = Buffer.alloc(1544);
  b.set([0x5a, 0x5a, 0x02, 0x06], 0);
  for (let i = 0; i < 768; i++) b.writeInt16LE(i === 5 ? -1234 : 3000 + i, 4 + 2 * i);
  b.writeInt16LE(2812, 1540);
  let sum = 0;
  for (let off = 0; off < 1542; off += 2) sum = (sum + b.readUInt16LE(off)) & 0xffff;
  b.writeUInt16LE(sum, 1542);
  return b;
}

function expectGrid(actual: Float32Array, expected: ArrayLike<number>): void {
  expect(actual.length).toBe(expected.length);
  let worst = 0;
  for (let i = 0; i < actual.length; i++) worst = Math.max(worst, Math.abs(actual[i]! - expected[i]!));
  // Wire resolution is 0.01 °C (rounding error ≤ 0.005) plus float32 storage.
  expect(worst).toBeLessThanOrEqual(0.0051);
}

describe('GY-MCU90640 protocol (pure)', () => {
  it('encodes commands with the A5 sum rule seen on real boards', () => {
    expect([...encodeGyCommand(0x25, 0x01)]).toEqual([0xa5, 0x25, 0x01, 0xcb]);
    expect([...encodeGyCommand(0x35, 0x02)]).toEqual([0xa5, 0x35, 0x02, 0xdc]);
    expect([...encodeGyCommand(0x35, 0x01)]).toEqual([0xa5, 0x35, 0x01, 0xdb]);
    expect([...encodeGyCommand(0x55, 0x01)]).toEqual([0xa5, 0x55, 0x01, 0xfb]);
  });

  it('decodes a hand-built frame: signed °C x100 pixels, Ta, header 5A 5A 02 06', () => {
    const d = new GyMcu90640Decoder();
    const [f, ...rest] = d.push(handBuiltFrame());
    expect(rest).toEqual([]);
    expect(f!.celsius[0]).toBeCloseTo(30.0, 5);
    expect(f!.celsius[5]).toBeCloseTo(-12.34, 5);
    expect(f!.celsius[767]).toBeCloseTo(37.67, 5);
    expect(f!.ambientC).toBeCloseTo(28.12, 5);
    expect(d.errors).toEqual({ skippedBytes: 0, badLength: 0, checksum: 0, outOfRange: 0 });
  });

  it('encoder and decoder agree, and the encoder matches the hand-built layout', () => {
    const hand = handBuiltFrame();
    const celsius = Array.from({ length: 768 }, (_, i) => (i === 5 ? -12.34 : (3000 + i) / 100));
    expect(encodeGyMcu90640Frame(celsius, 28.12).equals(hand)).toBe(true);
    expect(gySum16(hand)).toBe(hand.readUInt16LE(1542));
    const g = gradient(3);
    const [f] = new GyMcu90640Decoder().push(encodeGyMcu90640Frame(g.celsius, g.ambientC));
    expectGrid(f!.celsius, g.celsius);
  });

  it('rejects grids of the wrong size and values the format cannot carry', () => {
    expect(() => encodeGyMcu90640Frame(new Float32Array(10), 25)).toThrow(/768 temperatures.*got 10/);
    const hot = new Float32Array(768).fill(20);
    hot[7] = 400;
    expect(() => encodeGyMcu90640Frame(hot, 25)).toThrow(/pixel 7: 400/);
  });

  it('reassembles frames split at every awkward boundary, byte by byte included', () => {
    const frames = [gradient(1), gradient(2), gradient(3)].map((g) => encodeGyMcu90640Frame(g.celsius, g.ambientC));
    const stream = Buffer.concat(frames);
    for (const size of [1, 2, 3, 7, 1543, 1544, 1545, 4000]) {
      const d = new GyMcu90640Decoder();
      const out = [];
      for (let off = 0; off < stream.length; off += size) out.push(...d.push(stream.subarray(off, off + size)));
      expect(out.map((f) => f.ambientC)).toEqual([25.38, 25.39, 25.4]);
      expect(d.errors.skippedBytes).toBe(0);
    }
  });

  it('skips garbage, bad length, bad checksum, truncated and out-of-range frames, counting each', () => {
    const good = (n: number): Buffer => {
      const g = gradient(n);
      return encodeGyMcu90640Frame(g.celsius, g.ambientC);
    };
    const badLength = good(10);
    badLength.writeUInt16LE(0x0603, 2);
    const badSum = good(11);
    badSum[1000] ^= 0x40;
    const hot = new Float32Array(768).fill(30);
    hot[100] = 310; // fits int16 but is beyond the plausible −40..300
    const outOfRange = encodeGyMcu90640Frame(hot, 25);
    const truncated = good(12).subarray(0, 900);
    const garbage = Buffer.from([0x00, 0xff, 0x5a, 0x13, 0x5a, 0x5a, 0x5a, 0x77]);

    const stream = Buffer.concat([garbage, good(1), badLength, good(2), badSum, truncated, good(3), outOfRange, good(4), garbage]);
    const d = new GyMcu90640Decoder();
    const out = [];
    for (let off = 0; off < stream.length; off += 500) out.push(...d.push(stream.subarray(off, off + 500)));
    expect(out.map((f) => f.ambientC)).toEqual([25.38, 25.39, 25.4, 25.41]);
    expect(d.errors.badLength).toBeGreaterThanOrEqual(1);
    expect(d.errors.checksum).toBe(2); // the flipped bit, and the truncated frame + next frame's start
    expect(d.errors.outOfRange).toBe(1);
    expect(d.errors.skippedBytes).toBeGreaterThan(garbage.length);
  });

  it("with checksum 'none', still decodes frames whose checksum field is wrong", () => {
    const g = gradient(5);
    const f = encodeGyMcu90640Frame(g.celsius, g.ambientC);
    f.writeUInt16LE(0, GY_FRAME_BYTES - 2);
    expect(new GyMcu90640Decoder().push(f)).toHaveLength(0);
    expect(new GyMcu90640Decoder({ checksum: 'none' }).push(f)).toHaveLength(1);
  });
});

describe('GY-MCU90640 over a socat pty pair (real serialport code path)', () => {
  let pty: PtyPair | null = null;
  let source: GyMcu90640Source | null = null;
  let emulator: GyMcu90640Emulator | null = null;

  afterEach(async () => {
    await source?.close();
    await emulator?.close();
    await pty?.close();
    source = emulator = pty = null;
  });

  async function take(src: GyMcu90640Source, n: number): Promise<ThermalFrame[]> {
    const out: ThermalFrame[] = [];
    for await (const f of src.frames()) {
      out.push(f);
      if (out.length === n) break;
    }
    return out;
  }

  it('sends the start command and decodes frames exactly, despite garbage, corruption and splits', async () => {
    pty = await openPtyPair();
    emulator = await GyMcu90640Emulator.open({ path: pty.b, streamOnStart: false });
    // All frames may arrive before iteration starts; keep them all (the default keeps the newest 4).
    source = await openGyMcu90640({ path: pty.a, noFrameTimeoutMs: 10_000, maxQueuedFrames: 16 });
    await emulator.waitForCommand(0x35, 0x02);
    expect(emulator.commands[0]).toEqual({ cmd: 0x35, data: 0x02 });

    const grids = [gradient(1), gradient(2), gradient(3), gradient(4), gradient(5)];
    await emulator.sendFrame(grids[0]!, { garbageBefore: Buffer.from('boot banner\r\n\x5a\x00') });
    await emulator.sendFrame(gradient(90), { corruptChecksum: true });
    await emulator.sendFrame(grids[1]!, { splitAt: [1, 3, 700, 1541] });
    await emulator.sendFrame(gradient(91), { badLengthField: true });
    await emulator.sendFrame(grids[2]!);
    await emulator.sendFrame(gradient(92), { truncateTo: 1000 });
    await emulator.sendFrame(grids[3]!, { splitAt: [2] });
    await emulator.sendFrame(grids[4]!);

    const frames = await take(source, 5);
    expect(frames.map((f) => f.seq)).toEqual([1, 2, 3, 4, 5]);
    frames.forEach((f, i) => {
      expect([f.width, f.height]).toEqual([32, 24]);
      expectGrid(f.celsius, grids[i]!.celsius);
      expect(f.sensorAmbientC).toBeCloseTo(grids[i]!.ambientC, 5);
    });
    const s = source.stats();
    expect(s.checksum).toBeGreaterThanOrEqual(2); // corrupt + truncated
    expect(s.badLength).toBeGreaterThanOrEqual(1);
    expect(s.skippedBytes).toBeGreaterThan(0);
    expect(s.decoded).toBe(5);
    expect(s.droppedFrames).toBe(0);
  });

  it('keeps only the newest frames when the consumer falls behind, counting the dropped ones', async () => {
    pty = await openPtyPair();
    emulator = await GyMcu90640Emulator.open({ path: pty.b, streamOnStart: false });
    source = await openGyMcu90640({ path: pty.a, maxQueuedFrames: 2 });
    await emulator.waitForCommand(0x35, 0x02);
    for (let n = 1; n <= 5; n++) await emulator.sendFrame(gradient(n));
    while (source.stats().decoded < 5) await new Promise((r) => setTimeout(r, 10));
    const frames = await take(source, 2);
    expect(frames.map((f) => [f.seq, f.sensorAmbientC])).toEqual([
      [4, 25.41],
      [5, 25.42],
    ]);
    expect(source.stats().droppedFrames).toBe(3);
  });

  it('streams continuously from the emulator once started, and stops it on close', async () => {
    pty = await openPtyPair();
    emulator = await GyMcu90640Emulator.open({ path: pty.b, fps: 50, grids: warmFaceScene });
    source = await openGyMcu90640({ path: pty.a, maxQueuedFrames: 100 });
    const frames = await take(source, 6);
    expect(frames).toHaveLength(6);
    // Each frame is the emulator's scene n (they arrive in order, none dropped with a big queue).
    frames.forEach((f, n) => expectGrid(f.celsius, warmFaceScene(n).celsius));
    expect(Math.max(...frames[0]!.celsius)).toBeCloseTo(36.5, 2);
    await source.close();
    source = null;
    await emulator.waitForCommand(0x35, 0x01);
    expect(emulator.streaming).toBe(false);
  });

  it('names the path when the serial port does not exist', async () => {
    await expect(openGyMcu90640({ path: '/dev/ttyDOES_NOT_EXIST9' })).rejects.toThrow('serial port /dev/ttyDOES_NOT_EXIST9 not found');
  });

  it('passes on the OS error, with the path, when the path is not a serial device', async () => {
    await expect(openGyMcu90640({ path: '/proc/version' })).rejects.toThrow(/cannot open serial port \/proc\/version: /);
  });

  it('reports a silent device: no frames within the timeout', async () => {
    pty = await openPtyPair();
    source = await openGyMcu90640({ path: pty.a, noFrameTimeoutMs: 300 });
    await expect(take(source, 1)).rejects.toThrow(`no frames from ${pty.a} in 0.3 s: check wiring/baud (nothing received)`);
  });

  it('explains a device that sends only checksum failures', async () => {
    pty = await openPtyPair();
    emulator = await GyMcu90640Emulator.open({ path: pty.b, streamOnStart: false });
    source = await openGyMcu90640({ path: pty.a, noFrameTimeoutMs: 500 });
    await emulator.waitForCommand(0x35, 0x02);
    await emulator.sendFrame(gradient(1), { corruptChecksum: true });
    await expect(take(source, 1)).rejects.toThrow(/1 checksum failures.*checksum: 'none'/);
  });
});
