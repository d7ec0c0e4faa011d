/**
 * GY-MCU90640 board emulator: opens the "device" end of a serial link (a socat pty, or a real
 * USB-UART looped to another) and speaks the board's wire protocol: it answers `A5 35 02`
 * (continuous output) by streaming frames, `A5 35 01` by stopping and sending one frame, and
 * records every command. Faults can be injected per frame to exercise a driver's resync.
 */
import { SerialPort } from 'serialport';
import { GY_COMMANDS, GY_COMMAND_PREFIX, GY_FRAME_BYTES, GY_PIXELS, GY_WIDTH, encodeGyMcu90640Frame } from '../gy-mcu90640.js';

export interface GyGrid {
  /** 768 temperatures in °C, row-major 32 wide. */
  celsius: ArrayLike<number>;
  ambientC: number;
}

/** Produces the scene for frame `n` (0-based). */
export type GyGridGenerator = (n: number) => GyGrid;

export interface GyFrameFaults {
  /** Bytes written before the frame (line noise, a reboot banner...). */
  garbageBefore?: Buffer;
  /** Flip the checksum so it no longer matches. */
  corruptChecksum?: boolean;
  /** Write a size field other than 0x0602. */
  badLengthField?: boolean;
  /** Send only the first N bytes of the frame (a frame cut short). */
  truncateTo?: number;
  /** Byte offsets at which to split the frame into separate writes. */
  splitAt?: number[];
}

export interface GyCommandRecord {
  cmd: number;
  data: number;
}

export interface GyMcu90640EmulatorOptions {
  /** Device end of the link. */
  path: string;
  baudRate?: number;
  /** Scene for streamed frames; default `warmFaceScene`. */
  grids?: GyGridGenerator;
  /** Frames per second while streaming. Default 8. */
  fps?: number;
  /** Start streaming on `A5 35 02` (default true); false leaves frames to `sendFrame`, for scripted tests. */
  streamOnStart?: boolean;
  /** Faults for streamed frame n (0-based), e.g. to corrupt every 5th frame. */
  faults?: (n: number) => GyFrameFaults | undefined;
}

export class GyMcu90640Emulator {
  /** Commands received, in order (valid checksums only). */
  readonly commands: GyCommandRecord[] = [];
  /** Number of frames written (including faulty ones). */
  framesSent = 0;
  private inbox: Buffer = Buffer.alloc(0);
  private streamTimer: NodeJS.Timeout | null = null;
  private streamed = 0;
  private writing: Promise<void> = Promise.resolve();
  private commandWaiters: Array<() => void> = [];

  private constructor(
    private readonly port: SerialPort,
    private readonly options: GyMcu90640EmulatorOptions,
  ) {
    port.on('data', (chunk: Buffer) => this.onCommandBytes(chunk));
    // A pty's other end closing shows up as an error; an emulator just stops.
    port.on('error', () => this.stopStreaming());
  }

  static async open(options: GyMcu90640EmulatorOptions): Promise<GyMcu90640Emulator> {
    const port = new SerialPort({ path: options.path, baudRate: options.baudRate ?? 115200, autoOpen: false });
    await new Promise<void>((resolve, reject) =>
      port.open((err) => (err ? reject(new Error(`emulator cannot open ${options.path}: ${err.message}`)) : resolve())),
    );
    return new GyMcu90640Emulator(port, options);
  }

  get streaming(): boolean {
    return this.streamTimer !== null;
  }

  /** Resolves once a command matching `cmd`/`data` has been received (now or later). */
  async waitForCommand(cmd: number, data?: number, timeoutMs = 5000): Promise<GyCommandRecord> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.commands.find((c) => c.cmd === cmd && (data === undefined || c.data === data));
      if (found) return found;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`emulator: no command A5 ${hex(cmd)} ${data === undefined ? 'xx' : hex(data)} within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.commandWaiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** Writes one frame (with optional faults). Writes are serialised. */
  sendFrame(grid: GyGrid, faults: GyFrameFaults = {}): Promise<void> {
    let frame = encodeGyMcu90640Frame(grid.celsius, grid.ambientC);
    if (faults.badLengthField) frame.writeUInt16LE(0x0603, 2);
    if (faults.corruptChecksum) frame.writeUInt16LE((frame.readUInt16LE(GY_FRAME_BYTES - 2) + 1) & 0xffff, GY_FRAME_BYTES - 2);
    if (faults.truncateTo !== undefined) frame = frame.subarray(0, faults.truncateTo);
    const pieces: Buffer[] = [];
    if (faults.garbageBefore) pieces.push(faults.garbageBefore);
    let start = 0;
    for (const cut of [...(faults.splitAt ?? [])].sort((a, b) => a - b)) {
      if (cut > start && cut < frame.length) {
        pieces.push(frame.subarray(start, cut));
        start = cut;
      }
    }
    pieces.push(frame.subarray(start));
    this.framesSent++;
    return this.enqueueWrites(pieces);
  }

  /** Writes raw bytes (garbage, partial frames...). */
  sendBytes(bytes: Buffer): Promise<void> {
    return this.enqueueWrites([bytes]);
  }

  async close(): Promise<void> {
    this.stopStreaming();
    await this.writing.catch(() => undefined);
    if (this.port.isOpen) await new Promise<void>((resolve) => this.port.close(() => resolve()));
  }

  private enqueueWrites(pieces: Buffer[]): Promise<void> {
    const run = async (): Promise<void> => {
      for (const piece of pieces) {
        await new Promise<void>((resolve, reject) => {
          this.port.write(piece);
          this.port.drain((err) => (err ? reject(err) : resolve()));
        });
        // Let the bytes leave before the next piece, so the reader sees separate chunks.
        if (pieces.length > 1) await new Promise((r) => setTimeout(r, 2));
      }
    };
    this.writing = this.writing.then(run, run);
    return this.writing;
  }

  private onCommandBytes(chunk: Buffer): void {
    let buf = Buffer.concat([this.inbox, chunk]);
    for (;;) {
      const at = buf.indexOf(GY_COMMAND_PREFIX);
      if (at < 0) {
        buf = Buffer.alloc(0);
        break;
      }
      if (buf.length - at < 4) {
        buf = buf.subarray(at);
        break;
      }
      const cmd = buf[at + 1]!;
      const data = buf[at + 2]!;
      if (((GY_COMMAND_PREFIX + cmd + data) & 0xff) !== buf[at + 3]) {
        buf = buf.subarray(at + 1); // bad sum: not a command start
        continue;
      }
      buf = buf.subarray(at + 4);
      this.onCommand({ cmd, data });
    }
    this.inbox = Buffer.from(buf);
  }

  private onCommand(c: GyCommandRecord): void {
    this.commands.push(c);
    const { startContinuous, singleFrame } = GY_COMMANDS;
    if (c.cmd === startContinuous.cmd && c.data === startContinuous.data) {
      if (this.options.streamOnStart ?? true) this.startStreaming();
    }
    else if (c.cmd === singleFrame.cmd && c.data === singleFrame.data) {
      this.stopStreaming();
      void this.sendStreamFrame().catch(() => undefined);
    }
    // Other commands (rate, emissivity) are recorded only.
    const waiters = this.commandWaiters;
    this.commandWaiters = [];
    for (const w of waiters) w();
  }

  private startStreaming(): void {
    if (this.streamTimer) return;
    const periodMs = 1000 / (this.options.fps ?? 8);
    this.streamTimer = setInterval(() => {
      void this.sendStreamFrame().catch(() => this.stopStreaming());
    }, periodMs);
  }

  private stopStreaming(): void {
    if (this.streamTimer) clearInterval(this.streamTimer);
    this.streamTimer = null;
  }

  private sendStreamFrame(): Promise<void> {
    const n = this.streamed++;
    const grid = (this.options.grids ?? warmFaceScene)(n);
    return this.sendFrame(grid, this.options.faults?.(n));
  }
}

/**
 * A simple scene for demos: a 22 °C room with a warm face-sized blob (34–36.5 °C) drifting
 * left to right, and Ta a few degrees above the room as on a real board.
 */
export function warmFaceScene(n: number): GyGrid {
  const celsius = new Float32Array(GY_PIXELS);
  const cx = 6 + (n % 40) * 0.5;
  const cy = 11;
  for (let i = 0; i < GY_PIXELS; i++) {
    const x = i % GY_WIDTH;
    const y = Math.floor(i / GY_WIDTH);
    const d2 = ((x - cx) / 4) ** 2 + ((y - cy) / 5.5) ** 2;
    celsius[i] = d2 < 1 ? 36.5 - 2.5 * d2 : 22 + 0.1 * Math.sin(i + n);
  }
  return { celsius, ambientC: 27.5 };
}

function hex(v: number): string {
  return v.toString(16).toUpperCase().padStart(2, '0');
}
