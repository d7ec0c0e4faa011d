/**
 * An STM32 system bootloader emulator, written from AN3155, for tests and demos. It speaks the
 * real wire protocol on the device end of a serial link (a socat pty), so the flasher's real
 * serialport code path runs against it.
 *
 * Modelled: auto-baud sync (0x7F → ACK; an already synced board takes 0x7F as a command code),
 * Get, Get Version, Get ID, Read Memory, Write Memory, Extended Erase (page list and mass erase),
 * Go; NACK for a bad complement, an unsupported command, a bad checksum, an address or page
 * outside flash, a length that is not a multiple of the write unit, and programming flash that is
 * not erased (as real flash refuses). Not modelled: option bytes, read/write protection, RAM.
 *
 * Faults for tests: NACK the first Write Memory at given addresses, answer a given write late
 * (beyond the host's timeout), and drop off the line after N writes (cable pulled mid-flash).
 * The flash contents live in a FlashMemory that outlives one emulator, like the real chip: a
 * second run after a drop sees what the first one left behind.
 */
import { SerialPort } from 'serialport';
import { KNOWN_CHIPS, layoutSize, pages, type FlashLayout } from './layout.js';
import { LinkTimeoutError, PortLostError, type ByteLink } from './link.js';
import { ACK, CMD, ERASE_MASS, ERASE_SPECIAL_MIN, NACK, SYNC, xorChecksum } from './protocol.js';

/** Flash as the chip holds it: erased bytes read 0xFF; programming needs erased bytes. */
export class FlashMemory {
  readonly bytes: Uint8Array;
  /** Page numbers in the order they were erased (tests check that only needed pages were). */
  readonly eraseLog: number[] = [];

  constructor(readonly layout: FlashLayout) {
    this.bytes = new Uint8Array(layoutSize(layout)).fill(0xff);
  }

  contains(address: number, length = 1): boolean {
    return address >= this.layout.base && address + length <= this.layout.base + this.bytes.length;
  }

  read(address: number, length: number): Buffer {
    const o = address - this.layout.base;
    return Buffer.from(this.bytes.subarray(o, o + length));
  }

  /** False (and nothing written) when any target byte is not erased. */
  program(address: number, data: Uint8Array): boolean {
    const o = address - this.layout.base;
    for (let i = 0; i < data.length; i++) if (this.bytes[o + i] !== 0xff) return false;
    this.bytes.set(data, o);
    return true;
  }

  erasePage(page: number): boolean {
    const p = pages(this.layout)[page];
    if (!p) return false;
    this.bytes.fill(0xff, p.start - this.layout.base, p.start - this.layout.base + p.size);
    this.eraseLog.push(page);
    return true;
  }
}

export interface EmulatorFaults {
  /** Write Memory at these addresses is NACKed once (nothing written), then accepted. */
  nackWriteOnce?: number[];
  /** Write Memory at this address is programmed, but its final ACK comes `ms` late (once). */
  delayWriteAckOnce?: { address: number; ms: number }[];
  /** After this many successful writes the board falls silent and the link is dropped. */
  dropAfterWrites?: number;
}

export interface DeviceOptions {
  /** Product ID returned by Get ID. Default 0x468 (STM32G431). */
  chipId?: number;
  /** Flash layout; default from KNOWN_CHIPS[chipId]. Ignored when `memory` is given. */
  layout?: FlashLayout;
  /** Shared flash (to keep contents across emulator instances). */
  memory?: FlashMemory;
  /** Bootloader version byte. Default 0x31 (3.1). */
  version?: number;
  /** Write Memory length must be a multiple of this (4 on most parts, 8 on G4/L4). Default 8. */
  writeUnit?: number;
  /** Start already auto-bauded, like a board a previous host left in the bootloader. */
  synced?: boolean;
  faults?: EmulatorFaults;
}

export type DeviceAction = { send: Buffer } | { delayMs: number } | { drop: true };

const SUPPORTED = [CMD.GET, CMD.GET_VERSION, CMD.GET_ID, CMD.READ_MEMORY, CMD.GO, CMD.WRITE_MEMORY, CMD.EXTENDED_ERASE];
/** What Get advertises (the protection commands are listed by real parts but not modelled here). */
const ADVERTISED = [...SUPPORTED, CMD.WRITE_PROTECT, CMD.WRITE_UNPROTECT, CMD.READOUT_PROTECT, CMD.READOUT_UNPROTECT];

/**
 * The bootloader as a pure state machine: bytes in, actions out. A generator reads the way the
 * application note describes each command ("wait for 5 bytes: address + checksum"), one
 * `yield n` per frame.
 */
export class An3155Device {
  readonly chipId: number;
  readonly memory: FlashMemory;
  /** Set by Go; the bootloader no longer answers. */
  jumpedTo: number | null = null;
  writes = 0;
  dropped = false;
  /** Every command received with a valid complement, in order (for tests). */
  readonly commands: number[] = [];

  private readonly version: number;
  private readonly writeUnit: number;
  private readonly faults: { nack: Set<number>; delay: Map<number, number>; dropAfter: number };
  private inbox = Buffer.alloc(0);
  private out: DeviceAction[] = [];
  private readonly session: Generator<number, void, Buffer>;
  private need: number;

  constructor(options: DeviceOptions = {}) {
    this.chipId = options.chipId ?? 0x468;
    const layout = options.layout ?? KNOWN_CHIPS[this.chipId]?.layout;
    if (!options.memory && !layout) throw new Error(`no flash layout for chip 0x${this.chipId.toString(16)}: pass options.layout`);
    this.memory = options.memory ?? new FlashMemory(layout!);
    this.version = options.version ?? 0x31;
    this.writeUnit = options.writeUnit ?? 8;
    const f = options.faults ?? {};
    this.faults = {
      nack: new Set(f.nackWriteOnce ?? []),
      delay: new Map((f.delayWriteAckOnce ?? []).map((d) => [d.address, d.ms])),
      dropAfter: f.dropAfterWrites ?? Infinity,
    };
    this.session = this.run(options.synced ?? false);
    this.need = this.session.next().value as number;
  }

  /** Feed received bytes; returns what the board does in answer. */
  push(bytes: Uint8Array): DeviceAction[] {
    if (this.dropped || this.jumpedTo !== null) return [];
    this.inbox = Buffer.concat([this.inbox, bytes]);
    while (this.inbox.length >= this.need && !this.dropped) {
      const frame = this.inbox.subarray(0, this.need);
      this.inbox = this.inbox.subarray(this.need);
      const r = this.session.next(Buffer.from(frame));
      if (r.done) break;
      this.need = r.value;
    }
    const out = this.out;
    this.out = [];
    return out;
  }

  private send(...bytes: number[]): void {
    this.out.push({ send: Buffer.from(bytes) });
  }

  private *run(synced: boolean): Generator<number, void, Buffer> {
    // Auto-baud: anything before 0x7F is noise at the wrong rate.
    if (!synced) {
      while ((yield 1)[0] !== SYNC);
      this.send(ACK);
    }
    for (;;) {
      const code = (yield 1)[0]!;
      const complement = (yield 1)[0]!;
      if ((code ^ complement) !== 0xff || !SUPPORTED.includes(code as (typeof SUPPORTED)[number])) {
        this.send(NACK);
        continue;
      }
      this.commands.push(code);
      this.send(ACK);
      switch (code) {
        case CMD.GET:
          this.send(ADVERTISED.length, this.version, ...ADVERTISED, ACK);
          break;
        case CMD.GET_VERSION:
          this.send(this.version, 0, 0, ACK);
          break;
        case CMD.GET_ID:
          this.send(1, this.chipId >> 8, this.chipId & 0xff, ACK);
          break;
        case CMD.READ_MEMORY: {
          const address = yield* this.address();
          if (address === null) break;
          const [n, nc] = yield 2;
          if ((n! ^ nc!) !== 0xff || !this.memory.contains(address, n! + 1)) {
            this.send(NACK);
            break;
          }
          this.send(ACK);
          this.out.push({ send: this.memory.read(address, n! + 1) });
          break;
        }
        case CMD.WRITE_MEMORY: {
          const address = yield* this.address();
          if (address === null) break;
          const n = (yield 1)[0]!;
          const rest = yield n + 2;
          const data = rest.subarray(0, n + 1);
          const ok =
            xorChecksum(data, n) === rest[n + 1] &&
            (n + 1) % this.writeUnit === 0 &&
            address % this.writeUnit === 0 &&
            this.memory.contains(address, n + 1) &&
            !this.faults.nack.delete(address) &&
            this.memory.program(address, data);
          if (!ok) {
            this.send(NACK);
            break;
          }
          this.writes++;
          const late = this.faults.delay.get(address);
          if (late !== undefined) {
            this.faults.delay.delete(address);
            this.out.push({ delayMs: late });
          }
          if (this.writes > this.faults.dropAfter) {
            // Cable pulled after programming, before the ACK got out.
            this.dropped = true;
            this.out.push({ drop: true });
            return;
          }
          this.send(ACK);
          break;
        }
        case CMD.EXTENDED_ERASE: {
          const head = yield 2;
          const n = head.readUInt16BE(0);
          if (n >= ERASE_SPECIAL_MIN) {
            const cs = (yield 1)[0];
            const ok = cs === xorChecksum(head) && n === ERASE_MASS;
            if (ok) pages(this.memory.layout).forEach((p) => this.memory.erasePage(p.page));
            this.send(ok ? ACK : NACK);
            break;
          }
          const list = yield 2 * (n + 1) + 1;
          const numbers = Array.from({ length: n + 1 }, (_, i) => list.readUInt16BE(2 * i));
          const count = pages(this.memory.layout).length;
          const ok = list[list.length - 1] === xorChecksum(list.subarray(0, list.length - 1), xorChecksum(head)) && numbers.every((p) => p < count);
          if (ok) numbers.forEach((p) => this.memory.erasePage(p));
          this.send(ok ? ACK : NACK);
          break;
        }
        case CMD.GO: {
          const address = yield* this.address();
          if (address === null) break;
          this.send(ACK);
          this.jumpedTo = address;
          return;
        }
      }
    }
  }

  /** Reads address + checksum; ACKs a valid flash address, NACKs (and returns null) otherwise. */
  private *address(): Generator<number, number | null, Buffer> {
    const b = yield 5;
    const address = b.readUInt32BE(0);
    if (xorChecksum(b.subarray(0, 4)) !== b[4] || !this.memory.contains(address)) {
      this.send(NACK);
      return null;
    }
    this.send(ACK);
    return address;
  }
}

/** Runs an An3155Device on the device end of a serial link (e.g. a socat pty). */
export class An3155Emulator {
  readonly device: An3155Device;
  private port: SerialPort | null = null;
  private queue: Promise<void> = Promise.resolve();

  constructor(
    readonly path: string,
    options: DeviceOptions & { onDrop?: () => void | Promise<void> } = {},
  ) {
    this.device = new An3155Device(options);
    this.onDrop = options.onDrop;
  }

  private readonly onDrop: (() => void | Promise<void>) | undefined;

  async start(): Promise<void> {
    const port = new SerialPort({ path: this.path, baudRate: 115_200, parity: 'even', autoOpen: false });
    await new Promise<void>((resolve, reject) => port.open((err) => (err ? reject(err) : resolve())));
    this.port = port;
    port.on('data', (d: Buffer) => {
      const actions = this.device.push(d);
      this.queue = this.queue.then(() => this.perform(actions)).catch(() => undefined);
    });
  }

  async stop(): Promise<void> {
    await this.queue;
    const port = this.port;
    this.port = null;
    if (port?.isOpen) await new Promise<void>((resolve) => port.close(() => resolve()));
  }

  private async perform(actions: DeviceAction[]): Promise<void> {
    for (const a of actions) {
      if ('send' in a) {
        const port = this.port;
        if (port) await new Promise<void>((resolve) => port.write(a.send, () => port.drain(() => resolve())));
      } else if ('delayMs' in a) {
        await new Promise((r) => setTimeout(r, a.delayMs));
      } else {
        const port = this.port;
        this.port = null;
        if (port?.isOpen) await new Promise<void>((resolve) => port.close(() => resolve()));
        await this.onDrop?.();
      }
    }
  }
}

/**
 * A ByteLink wired straight to a device, for protocol tests without a serial port. Delays are real
 * timers, so timeouts behave as on a wire.
 */
export function connectInMemory(device: An3155Device): ByteLink {
  let rx = Buffer.alloc(0);
  let lost = false;
  let chain: Promise<void> = Promise.resolve();
  const perform = async (actions: DeviceAction[]) => {
    for (const a of actions) {
      if ('send' in a) rx = Buffer.concat([rx, a.send]);
      else if ('delayMs' in a) await new Promise((r) => setTimeout(r, a.delayMs));
      else lost = true;
    }
  };
  return {
    get lost() {
      return lost;
    },
    async write(bytes) {
      if (lost) throw new PortLostError('in-memory link lost');
      const actions = device.push(bytes);
      chain = chain.then(() => perform(actions));
    },
    async read(n, timeoutMs, what) {
      const deadline = Date.now() + timeoutMs;
      while (rx.length < n) {
        if (lost) throw new PortLostError(`in-memory link lost while waiting for ${what}`);
        if (Date.now() >= deadline) throw new LinkTimeoutError(`no answer within ${timeoutMs} ms waiting for ${what}`);
        await new Promise((r) => setTimeout(r, 1));
      }
      const out = rx.subarray(0, n);
      rx = rx.subarray(n);
      return Buffer.from(out);
    },
    discardInput() {
      rx = Buffer.alloc(0);
    },
    async close() {},
  };
}
