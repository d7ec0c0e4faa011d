/**
 * The byte pipe to a bootloader: write bytes, read exactly n bytes within a deadline. The serial
 * implementation is a thin adapter over `serialport` (8E1, as AN3155 requires); the protocol code
 * only sees the ByteLink interface, so tests can also run it against the emulator in memory.
 */
import { existsSync } from 'node:fs';
import { SerialPort } from 'serialport';

export interface ByteLink {
  write(bytes: Uint8Array): Promise<void>;
  /** Resolves with exactly `n` bytes, or rejects with LinkTimeoutError / PortLostError. */
  read(n: number, timeoutMs: number, what: string): Promise<Buffer>;
  /** Drops whatever arrived and was not read (stray late answers after a timeout). */
  discardInput(): void;
  /** True once the port is known to be gone (closed under us, device node removed). */
  readonly lost: boolean;
  close(): Promise<void>;
}

export class LinkTimeoutError extends Error {
  override name = 'LinkTimeoutError';
}

export class PortLostError extends Error {
  override name = 'PortLostError';
}

/** ByteLink over a serial port: AN3155 framing is 8 data bits, even parity, 1 stop bit. */
export class SerialLink implements ByteLink {
  private rx: Buffer = Buffer.alloc(0);
  private wake: (() => void) | null = null;
  private closedByUs = false;
  private lostReason: string | null = null;

  private constructor(
    private readonly port: SerialPort,
    readonly path: string,
  ) {
    port.on('data', (d: Buffer) => {
      this.rx = Buffer.concat([this.rx, d]);
      this.wake?.();
    });
    port.on('close', (err?: Error) => {
      if (!this.closedByUs) this.markLost(err?.message ?? 'port closed');
    });
    port.on('error', (err: Error) => this.markLost(err.message));
  }

  static async open(path: string, baudRate = 115_200): Promise<SerialLink> {
    const port = new SerialPort({ path, baudRate, dataBits: 8, parity: 'even', stopBits: 1, autoOpen: false });
    await new Promise<void>((resolve, reject) =>
      port.open((err) => (err ? reject(new PortLostError(`cannot open ${path}: ${err.message}`)) : resolve())),
    );
    return new SerialLink(port, path);
  }

  get lost(): boolean {
    // A USB-UART that is unplugged loses its device node; a pty loses its link when socat exits.
    if (this.lostReason === null && !this.closedByUs && !existsSync(this.path)) this.lostReason = `${this.path} disappeared`;
    return this.lostReason !== null;
  }

  async write(bytes: Uint8Array): Promise<void> {
    if (this.lost) throw new PortLostError(`serial port ${this.path} lost (${this.lostReason})`);
    await new Promise<void>((resolve, reject) => {
      this.port.write(Buffer.from(bytes), (err) => (err ? reject(new PortLostError(`write to ${this.path} failed: ${err.message}`)) : resolve()));
    });
    await new Promise<void>((resolve, reject) => this.port.drain((err) => (err ? reject(new PortLostError(`write to ${this.path} failed: ${err.message}`)) : resolve())));
  }

  async read(n: number, timeoutMs: number, what: string): Promise<Buffer> {
    const deadline = Date.now() + timeoutMs;
    while (this.rx.length < n) {
      if (this.lost) throw new PortLostError(`serial port ${this.path} lost (${this.lostReason}) while waiting for ${what}`);
      const left = deadline - Date.now();
      if (left <= 0) {
        if (this.lost) throw new PortLostError(`serial port ${this.path} lost (${this.lostReason}) while waiting for ${what}`);
        throw new LinkTimeoutError(`no answer within ${timeoutMs} ms waiting for ${what}`);
      }
      // Wake on data, or at least every 100 ms to notice a vanished port.
      await new Promise<void>((resolve) => {
        const t = setTimeout(done, Math.min(left, 100));
        function done() {
          clearTimeout(t);
          resolve();
        }
        this.wake = done;
      });
      this.wake = null;
    }
    const out = this.rx.subarray(0, n);
    this.rx = this.rx.subarray(n);
    return Buffer.from(out);
  }

  discardInput(): void {
    this.rx = Buffer.alloc(0);
  }

  async close(): Promise<void> {
    this.closedByUs = true;
    if (!this.port.isOpen) return;
    await new Promise<void>((resolve) => this.port.close(() => resolve()));
  }

  private markLost(reason: string): void {
    if (!this.closedByUs && this.lostReason === null) this.lostReason = reason;
    this.wake?.();
  }
}
