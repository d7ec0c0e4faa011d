/**
 * Host side of AN3155: one method per bootloader command, each a fixed exchange of frames
 * (protocol.ts) over a ByteLink. No retries here; flash.ts decides what to retry.
 */
import type { ByteLink } from './link.js';
import { LinkTimeoutError } from './link.js';
import {
  ACK,
  CMD,
  COMMAND_NAMES,
  MAX_BLOCK,
  NACK,
  SYNC,
  encodeAddress,
  encodeCommand,
  encodeExtendedErase,
  encodeReadLength,
  encodeWriteData,
  hex,
  parseGetBody,
  parseGetIdBody,
  type GetInfo,
} from './protocol.js';

/** The bootloader answered NACK (0x1F): bad checksum, address outside memory, protection... */
export class NackError extends Error {
  override name = 'NackError';
}

export interface BootloaderTimeouts {
  /** Answer to a command byte, address or short frame. Default 1000 ms. */
  ackMs: number;
  /** Write Memory's final ACK (flash programming of 256 bytes). Default 1000 ms. */
  writeMs: number;
  /** Extended Erase: base + per page (a 128 KiB F4 sector takes up to ~2 s). */
  eraseBaseMs: number;
  erasePerPageMs: number;
}

export const DEFAULT_TIMEOUTS: BootloaderTimeouts = { ackMs: 1000, writeMs: 1000, eraseBaseMs: 5000, erasePerPageMs: 2500 };

export class Bootloader {
  constructor(
    readonly link: ByteLink,
    readonly timeouts: BootloaderTimeouts = DEFAULT_TIMEOUTS,
  ) {}

  /**
   * Auto-baud: send 0x7F, expect ACK. If the board is already synced (a previous run stopped
   * half-way), it takes 0x7F as a command code and waits for the complement; a second 0x7F then
   * draws a NACK, which also means "ready" (the same recovery stm32flash uses).
   */
  async sync(): Promise<'synced' | 'already-synced'> {
    this.link.discardInput();
    await this.link.write(Buffer.from([SYNC]));
    try {
      const b = (await this.link.read(1, this.timeouts.ackMs, 'ACK to sync 0x7F'))[0];
      if (b === ACK) return 'synced';
      if (b === NACK) return 'already-synced';
      throw new Error(`unexpected byte ${hex(b!, 2)} after sync 0x7F: is this an STM32 in bootloader mode (BOOT0 high, reset)?`);
    } catch (err) {
      if (!(err instanceof LinkTimeoutError)) throw err;
    }
    await this.link.write(Buffer.from([SYNC]));
    const b = (await this.link.read(1, this.timeouts.ackMs, 'NACK to a second 0x7F').catch((err: unknown) => {
      if (err instanceof LinkTimeoutError) {
        throw new LinkTimeoutError('no answer to sync 0x7F: the board is not in its system bootloader (set BOOT0 high and reset it), or the port/baud rate is wrong');
      }
      throw err;
    }))[0];
    if (b === NACK || b === ACK) return 'already-synced';
    throw new Error(`unexpected byte ${hex(b!, 2)} after a second sync 0x7F`);
  }

  async get(): Promise<GetInfo> {
    await this.command(CMD.GET);
    const n = (await this.link.read(1, this.timeouts.ackMs, 'GET length'))[0]!;
    const rest = await this.link.read(n + 1, this.timeouts.ackMs, 'GET body');
    await this.expectAck('end of GET', this.timeouts.ackMs);
    return parseGetBody(Buffer.concat([Buffer.from([n]), rest]));
  }

  async getId(): Promise<number> {
    await this.command(CMD.GET_ID);
    const body = await this.link.read(3, this.timeouts.ackMs, 'GET ID body');
    await this.expectAck('end of GET ID', this.timeouts.ackMs);
    return parseGetIdBody(body);
  }

  async extendedErase(target: { special: number } | { pages: readonly number[] }): Promise<void> {
    await this.command(CMD.EXTENDED_ERASE);
    await this.link.write(encodeExtendedErase(target));
    const count = 'pages' in target ? target.pages.length : 64;
    await this.expectAck('EXTENDED ERASE completion', this.timeouts.eraseBaseMs + this.timeouts.erasePerPageMs * count);
  }

  async writeMemory(address: number, data: Uint8Array): Promise<void> {
    await this.command(CMD.WRITE_MEMORY);
    await this.link.write(encodeAddress(address));
    await this.expectAck(`WRITE MEMORY address ${hex(address, 8)}`, this.timeouts.ackMs);
    await this.link.write(encodeWriteData(data));
    await this.expectAck(`WRITE MEMORY data at ${hex(address, 8)}`, this.timeouts.writeMs);
  }

  async readMemory(address: number, length: number): Promise<Buffer> {
    if (length > MAX_BLOCK) throw new RangeError(`READ MEMORY reads at most ${MAX_BLOCK} bytes`);
    await this.command(CMD.READ_MEMORY);
    await this.link.write(encodeAddress(address));
    await this.expectAck(`READ MEMORY address ${hex(address, 8)}`, this.timeouts.ackMs);
    await this.link.write(encodeReadLength(length));
    await this.expectAck(`READ MEMORY length at ${hex(address, 8)}`, this.timeouts.ackMs);
    return this.link.read(length, this.timeouts.ackMs, `READ MEMORY data at ${hex(address, 8)}`);
  }

  /** Jumps to the application; the bootloader stops answering after the second ACK. */
  async go(address: number): Promise<void> {
    await this.command(CMD.GO);
    await this.link.write(encodeAddress(address));
    await this.expectAck(`GO ${hex(address, 8)}`, this.timeouts.ackMs);
  }

  private async command(code: number): Promise<void> {
    await this.link.write(encodeCommand(code));
    await this.expectAck(`${COMMAND_NAMES[code] ?? hex(code, 2)} command`, this.timeouts.ackMs);
  }

  private async expectAck(what: string, timeoutMs: number): Promise<void> {
    const b = (await this.link.read(1, timeoutMs, what))[0]!;
    if (b === ACK) return;
    if (b === NACK) throw new NackError(`bootloader answered NACK to ${what}`);
    throw new Error(`unexpected byte ${hex(b, 2)} instead of ACK/NACK for ${what}`);
  }
}
