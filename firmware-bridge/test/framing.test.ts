import { describe, expect, it } from 'vitest';
import { waitFor } from '@checkpoint/test-support';
import { cobsDecode, cobsEncode, crc16, encodeFrame, FrameDecoder } from '../src/serial/framing.js';
import { decodeMessage, encodeMessage, MSG, type Message } from '../src/serial/messages.js';
import { SerialLink } from '../src/serial/link.js';

const hex = (s: string) => Buffer.from(s.replace(/ /g, ''), 'hex');

const status: Message = {
  type: 'status',
  orderToken: 3,
  lastNodeId: 'ward-3',
  lastNodeSeq: 4,
  driving: true,
  charging: false,
  paused: false,
  fieldViolation: true,
  batteryPermille: 815,
  eStop: 'NONE',
  xMm: -1200,
  yMm: 34000,
  thetaMrad: -1571,
  errors: [{ fatal: false, errorType: 'bumper', description: 'touched' }],
};
const frameOf = (m: Message, seq = 1, flags = 0) => encodeFrame({ ...encodeMessage(m), seq, flags });

describe('CRC-16/CCITT-FALSE and COBS', () => {
  it('match the reference check value and hand-worked vectors', () => {
    expect(crc16(Buffer.from('123456789'))).toBe(0x29b1);
    expect(cobsEncode(hex('00'))).toEqual(hex('01 01'));
    expect(cobsEncode(hex('11 22 00 33'))).toEqual(hex('03 11 22 02 33'));
    expect(cobsEncode(hex('11 22 33 44'))).toEqual(hex('05 11 22 33 44'));
    expect(cobsDecode(hex('03 11 22 02 33'))).toEqual(hex('11 22 00 33'));
  });

  it('round-trips blocks longer than 254 bytes and with many zeros', () => {
    for (const data of [Buffer.alloc(600, 7), Buffer.alloc(300), Buffer.from([...Array(1000).keys()].map((i) => i % 256))]) {
      const enc = cobsEncode(data);
      expect(enc.includes(0)).toBe(false);
      expect(cobsDecode(enc)).toEqual(data);
    }
    expect(cobsDecode(hex('05 11 22'))).toBeNull(); // claims 4 bytes, has 2
  });
});

describe('messages', () => {
  it('round-trip every type', () => {
    const all: Message[] = [
      { type: 'hello', manufacturer: 'acme', serialNumber: 'AMR-7', firmware: '1.4.2', speedMmS: 1200, capabilities: ['pick', 'drop'] },
      { type: 'heartbeat', uptimeMs: 123456 },
      status,
      { type: 'action', ref: 9, status: 'FAILED', result: 'person detected' },
      {
        type: 'step',
        orderToken: 2,
        nodeSeq: 6,
        nodeId: 'G2',
        xMm: 30000,
        yMm: 0,
        edgeLengthMm: 10000,
        maxSpeedMmS: 0,
        actions: [{ ref: 1, type: 'disinfect', blocking: 'HARD', params: [{ key: 'durationS', value: '120' }] }],
      },
      { type: 'cancel' },
      { type: 'trigger', ref: 4 },
      { type: 'pause', paused: true },
      { type: 'ack', seq: 200 },
      { type: 'nack', seq: 3, reason: 2, text: 'bad' },
    ];
    for (const m of all) {
      const { type, payload } = encodeMessage(m);
      expect(decodeMessage(type, payload)).toEqual(m);
    }
  });

  it('names the field where a payload is cut short, and unknown types', () => {
    const { payload } = encodeMessage(status);
    expect(() => decodeMessage(MSG.STATUS, payload.subarray(0, 12))).toThrow(/payload ends inside status\./);
    expect(() => decodeMessage(MSG.STATUS, Buffer.concat([payload, Buffer.from([1])]))).toThrow(/1 unexpected bytes/);
    expect(() => decodeMessage(0x55, Buffer.alloc(0))).toThrow(/unknown message type 0x55/);
  });
});

describe('FrameDecoder', () => {
  it('reassembles frames from any chunking', () => {
    const wire = Buffer.concat([frameOf(status, 1), frameOf({ type: 'heartbeat', uptimeMs: 5 }, 2)]);
    for (const size of [1, 2, 3, 7, 64]) {
      const d = new FrameDecoder();
      const frames = [];
      for (let i = 0; i < wire.length; i += size) frames.push(...d.push(wire.subarray(i, i + size)));
      expect(frames.map((f) => f.seq)).toEqual([1, 2]);
      expect(decodeMessage(frames[0]!.type, frames[0]!.payload)).toEqual(status);
    }
  });

  it('rejects every single bit flip (CRC or COBS) and resynchronises on the next frame', () => {
    const good = frameOf(status);
    let accepted = 0;
    const d = new FrameDecoder();
    for (let bit = 0; bit < (good.length - 1) * 8; bit++) {
      const bad = Buffer.from(good);
      bad[bit >> 3]! ^= 1 << (bit & 7);
      const frames = d.push(Buffer.concat([bad, good]));
      // the corrupted one is dropped; the good one after it always comes through
      accepted += frames.length;
      expect(frames.at(-1)).toMatchObject({ type: MSG.STATUS });
    }
    const e = d.stats.errors;
    const flips = (good.length - 1) * 8;
    // A flip that turns a byte into 0x00 splits the frame: then two fragments are counted.
    expect(accepted).toBe(flips);
    expect(e.crc + e.cobs + e['too-short'] + e.length).toBeGreaterThanOrEqual(flips);
  });

  it('counts truncation, garbage, wrong versions and oversize input by cause, and survives them', () => {
    const d = new FrameDecoder();
    const good = frameOf(status);
    const truncated = Buffer.concat([good.subarray(0, good.length - 6), Buffer.from([0])]);
    const garbage = Buffer.from([0x13, 0x37, 0x00, 0xff, 0xff, 0xff, 0x00]);
    const v2 = encodeFrame({ ...encodeMessage(status), seq: 1, flags: 0, version: 2 });
    const flood = Buffer.alloc(5000, 0x41);
    const frames = d.push(Buffer.concat([truncated, garbage, v2, flood, Buffer.from([0]), good]));
    expect(frames).toHaveLength(1);
    expect(d.stats.errors.version).toBe(1);
    expect(d.stats.errors.oversize).toBe(1);
    expect(d.stats.errors.crc + d.stats.errors.length + d.stats.errors.cobs + d.stats.errors['too-short']).toBeGreaterThanOrEqual(3);
  });
});

describe('SerialLink', () => {
  /** Two links wired back to back through a lossy function. */
  function pair(filterAtoB: (bytes: Buffer, n: number) => Buffer[] = (b) => [b]) {
    let n = 0;
    // eslint-disable-next-line prefer-const
    let b: SerialLink;
    const a = new SerialLink((bytes) => filterAtoB(bytes, n++).forEach((x) => setImmediate(() => b.feed(x))), { retransmitMs: 20 });
    b = new SerialLink((bytes) => setImmediate(() => a.feed(bytes)), { retransmitMs: 20 });
    return { a, b };
  }

  it('retransmits a lost reliable message and delivers it once', async () => {
    const { a, b } = pair((bytes, n) => (n === 0 ? [] : [bytes]));
    const got: Message[] = [];
    b.on('message', (m) => got.push(m));
    await a.send({ type: 'trigger', ref: 5 });
    expect(got).toEqual([{ type: 'trigger', ref: 5 }]);
    expect(a.stats.retransmits).toBe(1);
  });

  it('processes a duplicated reliable frame once, and drops out-of-order status frames', async () => {
    const { a, b } = pair((bytes, n) => (n === 0 ? [bytes, bytes] : [bytes]));
    const got: Message[] = [];
    b.on('message', (m) => got.push(m));
    await a.send({ type: 'cancel' });
    await waitFor(() => b.stats.duplicates === 1, { what: 'the duplicated frame to arrive' });
    expect(got).toEqual([{ type: 'cancel' }]);
    expect(b.stats.duplicates).toBe(1);

    const later = frameOf({ ...status, lastNodeSeq: 8 }, 50);
    const earlier = frameOf({ ...status, lastNodeSeq: 6 }, 49);
    got.length = 0;
    b.feed(later);
    b.feed(earlier);
    b.feed(later);
    expect(got.map((m) => (m.type === 'status' ? m.lastNodeSeq : -1))).toEqual([8]);
    expect(b.stats.outOfOrder).toBe(1);
  });

  it('NACKs an undecodable reliable message and the sender hears why', async () => {
    const { a, b } = pair();
    const bad = encodeFrame({ type: MSG.STEP, seq: 1, flags: 1, payload: Buffer.from([1, 2]) });
    const invalid: Error[] = [];
    b.on('invalid', (e) => invalid.push(e));
    b.feed(bad);
    expect(invalid[0]!.message).toMatch(/payload ends inside step/);
    expect(b.stats.undecodable).toBe(1);
    a.close();
    await expect(a.send({ type: 'cancel' })).rejects.toThrow(/link closed/);
  });
});
