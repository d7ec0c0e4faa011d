/**
 * End to end over a real serial path: the flasher opens one end of a socat pty pair with
 * `serialport` (8E1), the AN3155 emulator runs on the other end.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { openPtyPair, type PtyPair } from '@checkpoint/test-support';
import { An3155Emulator, FlashMemory, type DeviceOptions } from '../src/flash/emulator.js';
import { flashImage, FlashFailedError, FlashRefusedError, type FlashProgress } from '../src/flash/flash.js';
import { KNOWN_CHIPS } from '../src/flash/layout.js';
import { formatSignatureFile, generateSigningKeys, signImage } from '../src/flash/signing.js';
import { runFlashCli, runKeygenCli, runSignCli } from '../src/flash/cli.js';

const TIMEOUTS = { ackMs: 300, writeMs: 300, eraseBaseMs: 1000, erasePerPageMs: 50 };
const keys = generateSigningKeys();

function testImage(size: number, seed = 7): Buffer {
  const b = Buffer.alloc(size);
  let x = seed;
  for (let i = 0; i < size; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    b[i] = x >>> 24;
  }
  return b;
}

const open: { pty: PtyPair; emu: An3155Emulator }[] = [];
afterEach(async () => {
  for (const { pty, emu } of open.splice(0)) {
    await emu.stop();
    await pty.close();
  }
});

async function board(options: DeviceOptions & { onDrop?: (pty: PtyPair) => void | Promise<void> } = {}) {
  const pty = await openPtyPair();
  const emu = new An3155Emulator(pty.b, { ...options, onDrop: () => options.onDrop?.(pty) });
  await emu.start();
  open.push({ pty, emu });
  return { pty, emu, device: emu.device };
}

describe('flashing over a pty against the AN3155 emulator', () => {
  const image = testImage(10_000);
  const signature = signImage(image, { chipId: 0x468, address: 0x0800_0000, version: '1.0.0' }, keys.privateKeyPem);

  it('writes, verifies by read-back and starts the image', async () => {
    const { pty, device } = await board({ chipId: 0x468 });
    const events: FlashProgress[] = [];
    const r = await flashImage({ port: pty.a, image, signature, publicKey: keys.publicKeyPem, expectedChipIds: [0x468], timeouts: TIMEOUTS, onProgress: (p) => events.push(p) });
    expect(r).toMatchObject({ chipId: 0x468, bytes: 10_000, pagesErased: [0, 1, 2, 3, 4], retries: 0, started: true });
    expect(device.memory.read(0x0800_0000, image.length).equals(image)).toBe(true);
    expect(device.memory.eraseLog).toEqual([0, 1, 2, 3, 4]);
    expect(device.jumpedTo).toBe(0x0800_0000);
    const writes = events.filter((e) => e.phase === 'write');
    expect(writes.at(-1)).toEqual({ phase: 'write', bytes: 10_000, total: 10_000 });
    expect(writes.length).toBe(1 + Math.ceil(10_000 / 256));
    console.log(`flash figures: ${r.bytes} bytes over a pty in ${r.durationMs} ms (${r.bytesPerSecond} B/s; a pty ignores baud)`);
  });

  it('refuses a bad signature before erasing anything', async () => {
    const { pty, device } = await board();
    const tampered = Buffer.from(image);
    tampered[5000]! ^= 0x80;
    await expect(flashImage({ port: pty.a, image: tampered, signature, publicKey: keys.publicKeyPem, timeouts: TIMEOUTS })).rejects.toThrow(/sha256 .* does not match the signed manifest/);
    const stranger = generateSigningKeys();
    await expect(flashImage({ port: pty.a, image, signature, publicKey: stranger.publicKeyPem, timeouts: TIMEOUTS })).rejects.toThrow(/signature is not valid.*nothing was erased/);
    expect(device.commands).toEqual([]);
    expect(device.memory.eraseLog).toEqual([]);
  });

  it('refuses a board whose chip ID differs from the signed target', async () => {
    const { pty, device } = await board({ chipId: 0x460 });
    const err = await flashImage({ port: pty.a, image, signature, publicKey: keys.publicKeyPem, timeouts: TIMEOUTS }).catch((e: Error) => e);
    expect(err).toBeInstanceOf(FlashRefusedError);
    expect((err as Error).message).toMatch(/wrong chip: the board reports ID 0x460 \(STM32G07x\/08x\) but the image is signed for 0x468/);
    expect(device.memory.eraseLog).toEqual([]);
    expect(device.commands).not.toContain(0x44);
  });

  it('survives a NACKed block by retrying it', async () => {
    const { pty, device } = await board({ faults: { nackWriteOnce: [0x0800_0400, 0x0800_1000] } });
    const r = await flashImage({ port: pty.a, image, signature, publicKey: keys.publicKeyPem, timeouts: TIMEOUTS });
    expect(r.retries).toBe(2);
    expect(device.memory.read(0x0800_0000, image.length).equals(image)).toBe(true);
  });

  it('survives an ACK that comes after the timeout', async () => {
    const { pty, device } = await board({ faults: { delayWriteAckOnce: [{ address: 0x0800_0800, ms: 450 }] } });
    const r = await flashImage({ port: pty.a, image, signature, publicKey: keys.publicKeyPem, timeouts: TIMEOUTS });
    expect(r.retries).toBe(1);
    expect(device.memory.read(0x0800_0000, image.length).equals(image)).toBe(true);
  });

  it('reports a port lost mid-flash as recoverable, and a second run completes', async () => {
    const memory = new FlashMemory(KNOWN_CHIPS[0x468]!.layout);
    const first = await board({ memory, faults: { dropAfterWrites: 12 }, onDrop: (pty) => pty.close() });
    const events: FlashProgress[] = [];
    const err = await flashImage({ port: first.pty.a, image, signature, publicKey: keys.publicKeyPem, timeouts: TIMEOUTS, onProgress: (p) => events.push(p) }).catch((e: Error) => e);
    expect(err).toBeInstanceOf(FlashFailedError);
    expect((err as Error).message).toMatch(/serial port lost mid-flash/);
    expect((err as Error).message).toMatch(/stays in its system bootloader .* run the same flash command again/);
    expect(events.some((e) => e.phase === 'done' || e.phase === 'verify')).toBe(false);
    expect(first.device.jumpedTo).toBeNull();
    expect(memory.read(0x0800_0000, image.length).equals(image)).toBe(false);

    // The board is still in its bootloader (already auto-bauded) with half-written flash.
    const second = await board({ memory, synced: true });
    const r = await flashImage({ port: second.pty.a, image, signature, publicKey: keys.publicKeyPem, timeouts: TIMEOUTS });
    expect(r.bytes).toBe(image.length);
    expect(memory.read(0x0800_0000, image.length).equals(image)).toBe(true);
    expect(second.device.jumpedTo).toBe(0x0800_0000);
  });
});

describe('firmware-bridge keygen / sign / flash command functions', () => {
  it('signs with a generated key and flashes through the command', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'fw-cli-'));
    try {
      const out: string[] = [];
      const err: string[] = [];
      const io = { stdout: (l: string) => out.push(l), stderr: (l: string) => err.push(l) };
      expect(await runKeygenCli(['--out-dir', dir], io)).toBe(0);
      const img = path.join(dir, 'app.bin');
      await writeFile(img, testImage(1234));
      expect(await runSignCli(['--image', img, '--key', path.join(dir, 'firmware-signing.key'), '--chip', '0x468', '--fw-version', '3.1.4'], io)).toBe(0);
      const { pty, device } = await board();
      const pub = path.join(dir, 'firmware-signing.pub');
      expect(await runFlashCli(['--port', pty.a, '--image', img, '--public-key', pub, '--chip', '0x468'], io), err.join('\n')).toBe(0);
      expect(out.at(-1)).toMatch(/flashed app\.bin v3\.1\.4 \(1234 bytes\) to STM32G431\/441 \(0x468\) at 0x08000000: 1 pages erased, verified by read-back/);
      expect(err).toContain('flash: write');
      expect(device.jumpedTo).toBe(0x0800_0000);

      // A robot on a task: exit code 2 (refused), board untouched.
      const busy = await board();
      const code = await runFlashCli(['--port', busy.pty.a, '--image', img, '--public-key', pub], { ...io, isRobotBusy: () => true });
      expect(code).toBe(2);
      expect(err.at(-1)).toMatch(/robot is on a task/);
      expect(busy.device.commands).toEqual([]);

      // A signature file that is not for this image.
      await writeFile(`${img}.sig.json`, formatSignatureFile(signImage(testImage(1234, 99), { chipId: 0x468, address: 0x0800_0000, version: '3.1.4' }, keys.privateKeyPem)));
      expect(await runFlashCli(['--port', busy.pty.a, '--image', img, '--public-key', pub], io)).toBe(2);
      expect(err.at(-1)).toMatch(/signature is not valid/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
