/**
 * Wire framing of the robot MCU protocol (PROTOCOL.md): CRC-16/CCITT-FALSE over the frame, COBS
 * encoding, 0x00 delimiter. `FrameDecoder` is fed arbitrary chunks and hands out whole, checked
 * frames; anything else is counted by cause and skipped up to the next delimiter (COBS makes the
 * stream self-synchronising).
 */

/** CRC-16/CCITT-FALSE: poly 0x1021, init 0xFFFF, no reflection, no final xor. check("123456789") = 0x29B1. */
export function crc16(data: Uint8Array, start = 0, end = data.length): number {
  let crc = 0xffff;
  for (let i = start; i < end; i++) {
    crc ^= data[i]! << 8;
    for (let b = 0; b < 8; b++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  return crc;
}

/** COBS-encodes `data` (no trailing delimiter). */
export function cobsEncode(data: Uint8Array): Buffer {
  const out = Buffer.alloc(data.length + Math.ceil(data.length / 254) + 1);
  let codeAt = 0;
  let o = 1;
  let code = 1;
  for (const byte of data) {
    if (byte === 0) {
      out[codeAt] = code;
      codeAt = o++;
      code = 1;
      continue;
    }
    out[o++] = byte;
    code += 1;
    if (code === 0xff) {
      out[codeAt] = code;
      codeAt = o++;
      code = 1;
    }
  }
  out[codeAt] = code;
  return out.subarray(0, o);
}

/** Decodes one COBS block (without its delimiter); null if malformed. */
export function cobsDecode(data: Uint8Array): Buffer | null {
  const out = Buffer.alloc(data.length);
  let o = 0;
  let i = 0;
  while (i < data.length) {
    const code = data[i]!;
    if (code === 0 || i + code > data.length) return null; // a block cannot claim more bytes than there are
    for (let k = 1; k < code; k++) out[o++] = data[i + k]!;
    i += code;
    if (code !== 0xff && i < data.length) out[o++] = 0;
  }
  return out.subarray(0, o);
}

export const PROTOCOL_VERSION = 1;
/** ver, type, seq, flags, len (u16 LE) */
export const HEADER_BYTES = 6;
export const MAX_PAYLOAD_BYTES = 1024;
export const FLAG_ACK_REQUIRED = 0x01;
export const FLAG_RETRANSMIT = 0x02;

export interface Frame {
  version: number;
  type: number;
  seq: number;
  flags: number;
  payload: Buffer;
}

/** Frame → bytes on the wire: COBS(ver type seq flags len payload crc) 0x00. */
export function encodeFrame(frame: Omit<Frame, 'version'> & { version?: number }): Buffer {
  if (frame.payload.length > MAX_PAYLOAD_BYTES) throw new Error(`payload of ${frame.payload.length} bytes exceeds ${MAX_PAYLOAD_BYTES}`);
  const raw = Buffer.alloc(HEADER_BYTES + frame.payload.length + 2);
  raw[0] = frame.version ?? PROTOCOL_VERSION;
  raw[1] = frame.type;
  raw[2] = frame.seq & 0xff;
  raw[3] = frame.flags;
  raw.writeUInt16LE(frame.payload.length, 4);
  frame.payload.copy(raw, HEADER_BYTES);
  raw.writeUInt16LE(crc16(raw, 0, raw.length - 2), raw.length - 2);
  return Buffer.concat([cobsEncode(raw), Buffer.from([0])]);
}

export type FrameErrorCause = 'cobs' | 'too-short' | 'length' | 'crc' | 'version' | 'oversize';

export interface DecoderStats {
  frames: number;
  bytes: number;
  errors: Record<FrameErrorCause, number>;
}

/**
 * Stateful stream decoder. `push(chunk)` returns the good frames completed by that chunk.
 * Bytes beyond `maxFrameBytes` without a delimiter are dropped (counted as `oversize`) until the
 * next delimiter, so garbage cannot grow the buffer.
 */
export class FrameDecoder {
  readonly stats: DecoderStats = { frames: 0, bytes: 0, errors: { cobs: 0, 'too-short': 0, length: 0, crc: 0, version: 0, oversize: 0 } };
  private buffer: Buffer[] = [];
  private buffered = 0;
  private discarding = false;
  private readonly maxFrameBytes = HEADER_BYTES + MAX_PAYLOAD_BYTES + 2 + 8;

  push(chunk: Uint8Array): Frame[] {
    const frames: Frame[] = [];
    this.stats.bytes += chunk.length;
    let start = 0;
    for (let i = 0; i < chunk.length; i++) {
      if (chunk[i] !== 0) continue;
      const part = chunk.subarray(start, i);
      start = i + 1;
      if (this.discarding) {
        this.discarding = false;
        this.reset();
        continue;
      }
      const block = this.buffered === 0 ? Buffer.from(part) : Buffer.concat([...this.buffer, part]);
      this.reset();
      if (block.length === 0) continue; // back-to-back delimiters: idle line
      if (block.length > this.maxFrameBytes) {
        this.stats.errors.oversize += 1;
        continue;
      }
      const frame = this.decode(block);
      if (frame) frames.push(frame);
    }
    const rest = chunk.subarray(start);
    if (rest.length > 0 && !this.discarding) {
      this.buffer.push(Buffer.from(rest));
      this.buffered += rest.length;
      if (this.buffered > this.maxFrameBytes) {
        this.stats.errors.oversize += 1;
        this.discarding = true;
        this.reset();
      }
    }
    return frames;
  }

  private reset() {
    this.buffer = [];
    this.buffered = 0;
  }

  private decode(block: Buffer): Frame | null {
    const raw = cobsDecode(block);
    if (!raw) return this.fail('cobs');
    if (raw.length < HEADER_BYTES + 2) return this.fail('too-short');
    const len = raw.readUInt16LE(4);
    if (raw.length !== HEADER_BYTES + len + 2) return this.fail('length');
    if (crc16(raw, 0, raw.length - 2) !== raw.readUInt16LE(raw.length - 2)) return this.fail('crc');
    if (raw[0] !== PROTOCOL_VERSION) return this.fail('version');
    this.stats.frames += 1;
    return { version: raw[0]!, type: raw[1]!, seq: raw[2]!, flags: raw[3]!, payload: Buffer.from(raw.subarray(HEADER_BYTES, HEADER_BYTES + len)) };
  }

  private fail(cause: FrameErrorCause): null {
    this.stats.errors[cause] += 1;
    return null;
  }
}
