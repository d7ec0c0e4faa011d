/**
 * STM32 system bootloader over UART (ST application note AN3155): the bytes on the wire, as pure
 * functions. Both the host (bootloader.ts) and the emulator (emulator.ts) use these, so a mistake
 * here would show in both; the unit tests therefore check frames against byte sequences written
 * out by hand from the application note.
 *
 * Wire rules (AN3155 §2–3): 8 data bits, even parity, 1 stop bit. The host sends 0x7F once so the
 * bootloader can measure the baud rate; it answers ACK (0x79). Every command is its code followed
 * by the code's complement (XOR = 0xFF). Addresses are 4 bytes, MSB first, followed by their XOR.
 * Data blocks are preceded by N = length - 1 and followed by the XOR of N and every data byte.
 */

export const SYNC = 0x7f;
export const ACK = 0x79;
export const NACK = 0x1f;

export const CMD = {
  GET: 0x00,
  GET_VERSION: 0x01,
  GET_ID: 0x02,
  READ_MEMORY: 0x11,
  GO: 0x21,
  WRITE_MEMORY: 0x31,
  ERASE: 0x43,
  EXTENDED_ERASE: 0x44,
  WRITE_PROTECT: 0x63,
  WRITE_UNPROTECT: 0x73,
  READOUT_PROTECT: 0x82,
  READOUT_UNPROTECT: 0x92,
} as const;

export const COMMAND_NAMES: Readonly<Record<number, string>> = Object.fromEntries(
  Object.entries(CMD).map(([name, code]) => [code, name.replace(/_/g, ' ')]),
);

/** Largest Read/Write Memory payload (N is one byte, so N + 1 ≤ 256). */
export const MAX_BLOCK = 256;

/** Extended Erase special codes (AN3155 §3.8): mass erase, bank 1, bank 2; 0xFFF0–0xFFFC reserved. */
export const ERASE_MASS = 0xffff;
export const ERASE_BANK1 = 0xfffe;
export const ERASE_BANK2 = 0xfffd;
/** Page numbers at or above this are special codes, not pages. */
export const ERASE_SPECIAL_MIN = 0xfff0;

/** XOR of every byte (AN3155's checksum for addresses, page lists and data blocks). */
export function xorChecksum(bytes: ArrayLike<number>, seed = 0): number {
  let x = seed & 0xff;
  for (let i = 0; i < bytes.length; i++) x ^= bytes[i]! & 0xff;
  return x;
}

/** A command frame: code and its complement. */
export function encodeCommand(code: number): Buffer {
  return Buffer.from([code & 0xff, ~code & 0xff]);
}

/** A 4-byte address, MSB first, and its XOR checksum (Read/Write Memory, Go). */
export function encodeAddress(address: number): Buffer {
  if (!Number.isInteger(address) || address < 0 || address > 0xffffffff) throw new RangeError(`address ${address} is not a 32-bit unsigned integer`);
  const b = Buffer.alloc(5);
  b.writeUInt32BE(address, 0);
  b[4] = xorChecksum(b.subarray(0, 4));
  return b;
}

/** Read Memory's length frame: N = length - 1 and its complement. */
export function encodeReadLength(length: number): Buffer {
  checkBlockLength(length);
  return Buffer.from([length - 1, ~(length - 1) & 0xff]);
}

/** Write Memory's data frame: N = length - 1, the data, XOR(N, data). */
export function encodeWriteData(data: Uint8Array): Buffer {
  checkBlockLength(data.length);
  const b = Buffer.alloc(data.length + 2);
  b[0] = data.length - 1;
  b.set(data, 1);
  b[b.length - 1] = xorChecksum(b.subarray(0, b.length - 1));
  return b;
}

/**
 * Extended Erase's argument: either a special code (2 bytes + XOR) or N = count - 1 (2 bytes)
 * followed by each 2-byte page number, all MSB first, and the XOR of every byte sent.
 */
export function encodeExtendedErase(target: { special: number } | { pages: readonly number[] }): Buffer {
  if ('special' in target) {
    if (target.special < ERASE_SPECIAL_MIN || target.special > 0xffff) throw new RangeError(`0x${target.special.toString(16)} is not an extended-erase special code`);
    const b = Buffer.alloc(3);
    b.writeUInt16BE(target.special, 0);
    b[2] = xorChecksum(b.subarray(0, 2));
    return b;
  }
  const pages = target.pages;
  if (pages.length === 0 || pages.length >= ERASE_SPECIAL_MIN) throw new RangeError(`extended erase needs 1 to ${ERASE_SPECIAL_MIN - 1} pages, got ${pages.length}`);
  const b = Buffer.alloc(2 + 2 * pages.length + 1);
  b.writeUInt16BE(pages.length - 1, 0);
  pages.forEach((p, i) => {
    if (!Number.isInteger(p) || p < 0 || p >= ERASE_SPECIAL_MIN) throw new RangeError(`page number ${p} is out of range`);
    b.writeUInt16BE(p, 2 + 2 * i);
  });
  b[b.length - 1] = xorChecksum(b.subarray(0, b.length - 1));
  return b;
}

/** Get's answer between the two ACKs: N, version, N command codes (N counts version + codes, minus one). */
export interface GetInfo {
  /** Bootloader protocol version, e.g. 0x31 = 3.1. */
  version: number;
  commands: number[];
}

export function parseGetBody(body: Uint8Array): GetInfo {
  const n = body[0];
  if (n === undefined || body.length !== n + 2) throw new Error(`GET answer has ${body.length} bytes, its length byte says ${n === undefined ? '?' : n + 2}`);
  return { version: body[1]!, commands: [...body.subarray(2)] };
}

/** Get ID's answer between the ACKs: N (= 1), PID MSB, PID LSB. */
export function parseGetIdBody(body: Uint8Array): number {
  if (body.length !== 3 || body[0] !== 1) throw new Error(`GET ID answer ${Buffer.from(body).toString('hex')} is not N=1 + 2 PID bytes`);
  return (body[1]! << 8) | body[2]!;
}

export const hex = (n: number, width = 0): string => `0x${n.toString(16).padStart(width, '0')}`;

function checkBlockLength(length: number): void {
  if (!Number.isInteger(length) || length < 1 || length > MAX_BLOCK) throw new RangeError(`block length ${length} must be 1..${MAX_BLOCK}`);
}
