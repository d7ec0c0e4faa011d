/**
 * Flashing an STM32 through its UART system bootloader, in the order that keeps a board safe:
 *
 *   1. check the image signature and manifest (nothing touched yet)
 *   2. ask whether the robot is busy (a robot on a task is never flashed)
 *   3. sync, Get (needs Extended Erase), Get ID (must match the signed target chip)
 *   4. erase only the pages the image covers
 *   5. write 256-byte blocks, retrying a block on NACK or timeout
 *   6. read everything back and compare
 *   7. Go
 *
 * If anything fails after step 4 the board is left in its bootloader (BOOT0 is still high), with
 * partly written flash, and running the same command again recovers it: that is what the errors
 * say. There is no partial success: flashImage either resolves after the read-back matched or
 * rejects.
 */
import { Bootloader, DEFAULT_TIMEOUTS, NackError, type BootloaderTimeouts } from './bootloader.js';
import { KNOWN_CHIPS, pageAt, pagesFor, type FlashLayout } from './layout.js';
import { LinkTimeoutError, PortLostError, SerialLink, type ByteLink } from './link.js';
import { CMD, MAX_BLOCK, hex } from './protocol.js';
import { verifySignedImage, type SignatureFile } from './signing.js';

export type FlashPhase = 'verify-signature' | 'connect' | 'identify' | 'erase' | 'write' | 'verify' | 'go' | 'done';

export interface FlashProgress {
  phase: FlashPhase;
  /** Bytes written (write) or compared (verify) so far; 0 in other phases, total at 'done'. */
  bytes: number;
  total: number;
}

export interface FlashOptions {
  /** Serial port path, or an open link (tests, or a bridge that owns the port). */
  port: string | ByteLink;
  baudRate?: number;
  image: Uint8Array;
  signature: SignatureFile;
  /** ed25519 public key (PEM or KeyObject) that firmware must be signed with. */
  publicKey: Parameters<typeof verifySignedImage>[2];
  /** Chips this board may be (e.g. from the robot's inventory); the manifest's chip must be one. */
  expectedChipIds?: readonly number[];
  onProgress?: (p: FlashProgress) => void;
  /** Extra attempts per block / erase after a NACK or timeout. Default 3. */
  retries?: number;
  /** Refuse to flash while this says true (robot on a task, gate lane open...). */
  isRobotBusy?: () => boolean | Promise<boolean>;
  /** Jump to the application after verifying. Default true. */
  go?: boolean;
  /** Override the flash layout (a chip missing from KNOWN_CHIPS). */
  layout?: FlashLayout;
  timeouts?: Partial<BootloaderTimeouts>;
  /** Write Memory lengths are padded with 0xFF to a multiple of this (AN3155: 4, 8 or 16). Default 16. */
  writeUnit?: number;
}

export interface FlashResult {
  chipId: number;
  chipName: string;
  bootloaderVersion: number;
  version: string;
  address: number;
  bytes: number;
  pagesErased: number[];
  /** Block writes that had to be repeated. */
  retries: number;
  durationMs: number;
  /** Image bytes per second, erase to verified (AN3155 write + read-back). */
  bytesPerSecond: number;
  started: boolean;
}

/** Refused before anything on the board changed (bad signature, wrong chip, robot busy...). */
export class FlashRefusedError extends Error {
  override name = 'FlashRefusedError';
}

/** Failed after erasing began: the board sits in its bootloader and a new run will recover it. */
export class FlashFailedError extends Error {
  override name = 'FlashFailedError';
}

const RECOVERABLE =
  'The board stays in its system bootloader (keep BOOT0 high) and is recoverable: reconnect it and run the same flash command again. If it does not answer, reset it with BOOT0 high first.';

export async function flashImage(options: FlashOptions): Promise<FlashResult> {
  const total = options.image.length;
  const progress = (phase: FlashPhase, bytes = 0) => options.onProgress?.({ phase, bytes, total });
  const retries = options.retries ?? 3;
  const unit = options.writeUnit ?? 16;

  progress('verify-signature');
  let manifest;
  try {
    manifest = verifySignedImage(options.image, options.signature, options.publicKey);
  } catch (err) {
    throw new FlashRefusedError((err as Error).message);
  }
  if (options.expectedChipIds && !options.expectedChipIds.includes(manifest.chipId)) {
    throw new FlashRefusedError(`image is signed for chip ${hex(manifest.chipId, 3)}, but this board must be one of ${options.expectedChipIds.map((c) => hex(c, 3)).join(', ')}: refusing to flash`);
  }
  if (options.isRobotBusy && (await options.isRobotBusy())) {
    throw new FlashRefusedError('the robot is on a task: refusing to flash; retry when it is idle or docked');
  }

  progress('connect');
  const link = typeof options.port === 'string' ? await SerialLink.open(options.port, options.baudRate) : options.port;
  const bl = new Bootloader(link, { ...DEFAULT_TIMEOUTS, ...options.timeouts });
  let erasing = false;
  try {
    await bl.sync();
    progress('identify');
    const info = await bl.get();
    for (const [code, name] of [[CMD.EXTENDED_ERASE, 'EXTENDED ERASE'], [CMD.WRITE_MEMORY, 'WRITE MEMORY'], [CMD.READ_MEMORY, 'READ MEMORY']] as const) {
      if (!info.commands.includes(code)) throw new FlashRefusedError(`this bootloader (v${info.version >> 4}.${info.version & 15}) does not offer ${name} (${hex(code, 2)}); it is not supported by this tool`);
    }
    const chipId = await bl.getId();
    if (chipId !== manifest.chipId) {
      throw new FlashRefusedError(`wrong chip: the board reports ID ${hex(chipId, 3)} (${KNOWN_CHIPS[chipId]?.name ?? 'unknown part'}) but the image is signed for ${hex(manifest.chipId, 3)}: refusing to flash`);
    }
    const layout = options.layout ?? KNOWN_CHIPS[chipId]?.layout;
    if (!layout) throw new FlashRefusedError(`no flash layout known for chip ${hex(chipId, 3)}: pass one explicitly`);

    const data = padTo(options.image, unit);
    const pageList = pagesFor(layout, manifest.address, data.length);
    const started = Date.now();
    erasing = true;
    progress('erase');
    await withRetries(retries, bl, () => bl.extendedErase({ pages: pageList }));

    progress('write', 0);
    const retried = await writeBlocks(bl, layout, manifest.address, data, retries, (done) => progress('write', Math.min(done, total)));

    progress('verify', 0);
    for (let off = 0; off < data.length; off += MAX_BLOCK) {
      const want = data.subarray(off, off + MAX_BLOCK);
      const got = await withRetries(retries, bl, () => bl.readMemory(manifest.address + off, want.length));
      const i = firstDifference(got, want);
      if (i >= 0) throw new FlashFailedError(`read-back differs at ${hex(manifest.address + off + i, 8)}: wrote ${hex(want[i]!, 2)}, read ${hex(got[i]!, 2)}`);
      progress('verify', Math.min(off + want.length, total));
    }
    const durationMs = Date.now() - started;

    const go = options.go ?? true;
    if (go) {
      progress('go');
      await bl.go(manifest.address);
    }
    progress('done', total);
    return {
      chipId,
      chipName: KNOWN_CHIPS[chipId]?.name ?? 'unknown part',
      bootloaderVersion: info.version,
      version: manifest.version,
      address: manifest.address,
      bytes: total,
      pagesErased: pageList,
      retries: retried,
      durationMs,
      bytesPerSecond: Math.round((total * 1000) / Math.max(1, durationMs)),
      started: go,
    };
  } catch (err) {
    if (err instanceof FlashRefusedError || !erasing) {
      if (err instanceof PortLostError) throw new FlashRefusedError(`${err.message}; nothing was erased`);
      throw err;
    }
    const what = err instanceof PortLostError ? `serial port lost mid-flash (${err.message})` : (err as Error).message;
    throw new FlashFailedError(`flashing did not complete: ${what}. ${RECOVERABLE}`, { cause: err });
  } finally {
    if (typeof options.port === 'string') await link.close();
  }
}

/**
 * Writes `data` block by block. After a NACK or a timeout the block may or may not have been
 * programmed (a late ACK), and flash cannot be programmed twice without an erase, so the retry
 * first reads the block back: already right → done; still erased → write again; anything else →
 * erase its page and rewrite from the start of that page.
 */
async function writeBlocks(bl: Bootloader, layout: FlashLayout, address: number, data: Uint8Array, retries: number, onBlock: (bytes: number) => void): Promise<number> {
  let retried = 0;
  let off = 0;
  let failures = 0;
  while (off < data.length) {
    const block = data.subarray(off, off + MAX_BLOCK);
    const at = address + off;
    try {
      await bl.writeMemory(at, block);
    } catch (err) {
      if (!isRetryable(err) || failures >= retries) throw err;
      failures++;
      retried++;
      await resync(bl);
      const now = await bl.readMemory(at, block.length);
      if (firstDifference(now, block) < 0) {
        // The late ACK case: the block made it.
      } else if (now.every((b) => b === 0xff)) {
        continue; // nothing written: try the same block again
      } else {
        const page = pageAt(layout, at)!;
        await bl.extendedErase({ pages: [page.page] });
        off = Math.max(0, page.start - address);
        continue;
      }
    }
    failures = 0;
    off += block.length;
    onBlock(off);
  }
  return retried;
}

async function withRetries<T>(retries: number, bl: Bootloader, op: () => Promise<T>): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await op();
    } catch (err) {
      if (!isRetryable(err) || attempt >= retries) throw err;
      await resync(bl);
    }
  }
}

const isRetryable = (err: unknown) => err instanceof NackError || err instanceof LinkTimeoutError;

/** After a timeout, let any late answer arrive and drop it, so the next command starts clean. */
async function resync(bl: Bootloader): Promise<void> {
  if (bl.link.lost) throw new PortLostError('serial port lost');
  await new Promise((r) => setTimeout(r, Math.min(bl.timeouts.ackMs, 500)));
  bl.link.discardInput();
}

function padTo(image: Uint8Array, unit: number): Uint8Array {
  const len = Math.ceil(image.length / unit) * unit;
  if (len === image.length) return image;
  const out = new Uint8Array(len).fill(0xff);
  out.set(image);
  return out;
}

function firstDifference(a: Uint8Array, b: Uint8Array): number {
  for (let i = 0; i < b.length; i++) if (a[i] !== b[i]) return i;
  return a.length === b.length ? -1 : b.length;
}
