import { describe, expect, it } from 'vitest';
import {
  encodeAddress,
  encodeCommand,
  encodeExtendedErase,
  encodeReadLength,
  encodeWriteData,
  parseGetBody,
  parseGetIdBody,
  xorChecksum,
} from '../src/flash/protocol.js';
import { KNOWN_CHIPS, pagesFor } from '../src/flash/layout.js';
import { An3155Device, FlashMemory, connectInMemory } from '../src/flash/emulator.js';
import { Bootloader, NackError } from '../src/flash/bootloader.js';
import { generateSigningKeys, parseSignatureFile, formatSignatureFile, signImage, verifySignedImage, SignatureError } from '../src/flash/signing.js';
import { flashImage, FlashRefusedError } from '../src/flash/flash.js';

const FAST = { ackMs: 100, writeMs: 100, eraseBaseMs: 200, erasePerPageMs: 10 };

function testImage(size: number, seed = 1): Buffer {
  const b = Buffer.alloc(size);
  let x = seed;
  for (let i = 0; i < size; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    b[i] = x >>> 24;
  }
  return b;
}

describe('AN3155 frames (pure)', () => {
  it('encodes commands as code + complement', () => {
    expect([...encodeCommand(0x00)]).toEqual([0x00, 0xff]);
    expect([...encodeCommand(0x02)]).toEqual([0x02, 0xfd]);
    expect([...encodeCommand(0x11)]).toEqual([0x11, 0xee]);
    expect([...encodeCommand(0x21)]).toEqual([0x21, 0xde]);
    expect([...encodeCommand(0x31)]).toEqual([0x31, 0xce]);
    expect([...encodeCommand(0x44)]).toEqual([0x44, 0xbb]);
  });

  it('encodes addresses MSB first with an XOR checksum', () => {
    // 0x08 ^ 0x00 ^ 0x00 ^ 0x00 = 0x08
    expect([...encodeAddress(0x0800_0000)]).toEqual([0x08, 0x00, 0x00, 0x00, 0x08]);
    // 0x08 ^ 0x00 ^ 0x12 ^ 0x34 = 0x2e
    expect([...encodeAddress(0x0800_1234)]).toEqual([0x08, 0x00, 0x12, 0x34, 0x2e]);
    expect(() => encodeAddress(-1)).toThrow(/32-bit/);
  });

  it('encodes write data as N, bytes, XOR(N, bytes) and read lengths as N, ~N', () => {
    // N = 3; 3 ^ 1 ^ 2 ^ 3 ^ 4 = 7
    expect([...encodeWriteData(Uint8Array.from([1, 2, 3, 4]))]).toEqual([0x03, 1, 2, 3, 4, 0x07]);
    const full = encodeWriteData(new Uint8Array(256).fill(0xaa));
    expect(full.length).toBe(258);
    expect(full[0]).toBe(0xff);
    expect(full[257]).toBe(0xff); // 0xff ^ (256 x 0xaa, an even count, cancels) = 0xff
    expect([...encodeReadLength(256)]).toEqual([0xff, 0x00]);
    expect([...encodeReadLength(1)]).toEqual([0x00, 0xff]);
    expect(() => encodeWriteData(new Uint8Array(257))).toThrow(/1\.\.256/);
  });

  it('encodes extended erase page lists and special codes', () => {
    // two pages 0x0001 and 0x0002: N = 0x0001; XOR 00 01 00 01 00 02 = 0x02
    expect([...encodeExtendedErase({ pages: [1, 2] })]).toEqual([0x00, 0x01, 0x00, 0x01, 0x00, 0x02, 0x02]);
    expect([...encodeExtendedErase({ special: 0xffff })]).toEqual([0xff, 0xff, 0x00]);
    expect(() => encodeExtendedErase({ pages: [] })).toThrow(/1 to/);
    expect(() => encodeExtendedErase({ pages: [0xfff0] })).toThrow(/out of range/);
  });

  it('parses Get and Get ID answers', () => {
    expect(parseGetBody(Uint8Array.from([2, 0x31, 0x00, 0x44]))).toEqual({ version: 0x31, commands: [0x00, 0x44] });
    expect(parseGetIdBody(Uint8Array.from([1, 0x04, 0x68]))).toBe(0x468);
    expect(() => parseGetIdBody(Uint8Array.from([2, 0x04, 0x68]))).toThrow(/N=1/);
    expect(xorChecksum([0xff, 0xff])).toBe(0);
  });

  it('finds only the pages an image covers, in uniform and sectored layouts', () => {
    const g4 = KNOWN_CHIPS[0x468]!.layout;
    expect(pagesFor(g4, 0x0800_0000, 2048)).toEqual([0]);
    expect(pagesFor(g4, 0x0800_0000, 2049)).toEqual([0, 1]);
    expect(pagesFor(g4, 0x0800_1000, 5000)).toEqual([2, 3, 4]);
    const f4 = KNOWN_CHIPS[0x413]!.layout;
    expect(pagesFor(f4, 0x0800_0000, 70 * 1024)).toEqual([0, 1, 2, 3, 4]);
    expect(pagesFor(f4, 0x0802_0000, 10)).toEqual([5]);
    expect(() => pagesFor(g4, 0x0801_ff00, 512)).toThrow(/outside flash/);
  });
});

describe('bootloader emulator (pure state machine)', () => {
  it('answers the AN3155 exchanges byte for byte', () => {
    const d = new An3155Device({ chipId: 0x468 });
    const sent = (bytes: number[]) => Buffer.concat(d.push(Uint8Array.from(bytes)).map((a) => ('send' in a ? a.send : Buffer.alloc(0))));
    expect([...sent([0x55, 0x7f])]).toEqual([0x79]); // noise before sync ignored
    expect([...sent([0x02, 0xfd])]).toEqual([0x79, 0x01, 0x04, 0x68, 0x79]);
    expect([...sent([0x02, 0x00])]).toEqual([0x1f]); // bad complement
    expect([...sent([0x31, 0xce, 0x08, 0, 0, 0, 0x09])]).toEqual([0x79, 0x1f]); // bad address checksum
    expect([...sent([0x31, 0xce, 0x08, 0, 0, 0, 0x08])]).toEqual([0x79, 0x79]);
    expect([...sent([0x07, 1, 2, 3, 4, 5, 6, 7, 8, 0x07 ^ 1 ^ 2 ^ 3 ^ 4 ^ 5 ^ 6 ^ 7 ^ 8])]).toEqual([0x79]);
    expect([...d.memory.read(0x0800_0000, 9)]).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 0xff]);
    // programming it again without an erase is refused, as on real flash
    expect([...sent([0x31, 0xce, 0x08, 0, 0, 0, 0x08, 0x07, 1, 2, 3, 4, 5, 6, 7, 8, 0x07 ^ 1 ^ 2 ^ 3 ^ 4 ^ 5 ^ 6 ^ 7 ^ 8])]).toEqual([0x79, 0x79, 0x1f]);
    expect([...sent([0x44, 0xbb, 0x00, 0x00, 0x00, 0x00, 0x00])]).toEqual([0x79, 0x79]); // erase page 0
    expect(d.memory.eraseLog).toEqual([0]);
    expect([...sent([0x11, 0xee, 0x08, 0, 0, 0, 0x08, 0x03, 0xfc])]).toEqual([0x79, 0x79, 0x79, 0xff, 0xff, 0xff, 0xff]);
  });
});

describe('bootloader client against the emulator (in memory)', () => {
  it('syncs, identifies, erases, writes and reads back', async () => {
    const device = new An3155Device({ chipId: 0x468 });
    const bl = new Bootloader(connectInMemory(device), FAST);
    expect(await bl.sync()).toBe('synced');
    const info = await bl.get();
    expect(info.version).toBe(0x31);
    expect(info.commands).toContain(0x44);
    expect(await bl.getId()).toBe(0x468);
    await bl.extendedErase({ pages: [0, 1] });
    await bl.writeMemory(0x0800_0100, new Uint8Array(16).fill(0x42));
    expect([...(await bl.readMemory(0x0800_00fc, 8))]).toEqual([0xff, 0xff, 0xff, 0xff, 0x42, 0x42, 0x42, 0x42]);
    await expect(bl.writeMemory(0x0900_0000, new Uint8Array(16))).rejects.toThrow(NackError);
  });

  it('recognises a board already synced by an earlier run', async () => {
    const bl = new Bootloader(connectInMemory(new An3155Device({ synced: true })), FAST);
    expect(await bl.sync()).toBe('already-synced');
    expect(await bl.getId()).toBe(0x468);
  });
});

describe('signed images', () => {
  const keys = generateSigningKeys();
  const image = testImage(5000);
  const sig = signImage(image, { chipId: 0x468, address: 0x0800_0000, version: '1.2.0' }, keys.privateKeyPem);

  it('round-trips through the signature file and verifies', () => {
    const parsed = parseSignatureFile(formatSignatureFile(sig), 'app.bin.sig.json');
    expect(parsed).toEqual(sig);
    expect(verifySignedImage(image, parsed, keys.publicKeyPem)).toMatchObject({ chipId: 0x468, size: 5000, version: '1.2.0' });
  });

  it('refuses a changed image, a changed manifest and another key', () => {
    const other = generateSigningKeys();
    const flipped = Buffer.from(image);
    flipped[100]! ^= 1;
    expect(() => verifySignedImage(flipped, sig, keys.publicKeyPem)).toThrow(/sha256/);
    expect(() => verifySignedImage(image, { ...sig, manifest: { ...sig.manifest, address: 0x0800_4000 } }, keys.publicKeyPem)).toThrow(/signature is not valid/);
    expect(() => verifySignedImage(image, sig, other.publicKeyPem)).toThrow(SignatureError);
  });

  it('names the bad field of a signature file', () => {
    expect(() => parseSignatureFile('{"manifest":{"format":"checkpoint-firmware/1","chipId":"x"},"signature":""}', 'a.sig.json')).toThrow(/a\.sig\.json: manifest\.chipId/);
    expect(() => parseSignatureFile('nope', 'b.sig.json')).toThrow(/b\.sig\.json: not JSON/);
  });
});

describe('flashImage (in memory)', () => {
  const keys = generateSigningKeys();
  const image = testImage(3000);
  const sig = signImage(image, { chipId: 0x468, address: 0x0800_0800, version: '2.0.0' }, keys.privateKeyPem);

  it('erases only the covered pages, writes, verifies and starts the app', async () => {
    const memory = new FlashMemory(KNOWN_CHIPS[0x468]!.layout);
    memory.bytes.fill(0x00, 0, 2048); // page 0 (bootloader-adjacent data) must survive
    const device = new An3155Device({ memory });
    const phases: string[] = [];
    const r = await flashImage({ port: connectInMemory(device), image, signature: sig, publicKey: keys.publicKeyPem, timeouts: FAST, onProgress: (p) => phases.push(p.phase) });
    expect(r.pagesErased).toEqual([1, 2]);
    expect(memory.eraseLog).toEqual([1, 2]);
    expect(memory.read(0x0800_0800, 3000).equals(image)).toBe(true);
    expect(memory.bytes[0]).toBe(0);
    expect(device.jumpedTo).toBe(0x0800_0800);
    expect([...new Set(phases)]).toEqual(['verify-signature', 'connect', 'identify', 'erase', 'write', 'verify', 'go', 'done']);
  });

  it('refuses a robot on a task before talking to the board', async () => {
    const device = new An3155Device();
    await expect(flashImage({ port: connectInMemory(device), image, signature: sig, publicKey: keys.publicKeyPem, isRobotBusy: () => true })).rejects.toThrow(/robot is on a task/);
    expect(device.commands).toEqual([]);
  });

  it('refuses a chip the caller does not expect, before talking to the board', async () => {
    const device = new An3155Device();
    await expect(flashImage({ port: connectInMemory(device), image, signature: sig, publicKey: keys.publicKeyPem, expectedChipIds: [0x413] })).rejects.toThrow(FlashRefusedError);
    expect(device.commands).toEqual([]);
  });

  it('reads back a block whose ACK came late, and does not program it twice', async () => {
    const device = new An3155Device({ faults: { delayWriteAckOnce: [{ address: 0x0800_0900, ms: 150 }] } });
    const r = await flashImage({ port: connectInMemory(device), image, signature: sig, publicKey: keys.publicKeyPem, timeouts: FAST });
    expect(r.retries).toBe(1);
    expect(device.memory.read(0x0800_0800, 3000).equals(image)).toBe(true);
  });
});
