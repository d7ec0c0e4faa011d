/**
 * Command functions for `firmware-bridge flash`, `firmware-bridge sign` and
 * `firmware-bridge keygen`. Each takes the arguments after its subcommand name and an io object,
 * and resolves with an exit code, so the program's CLI (and tests) can call them directly.
 */
import { chmod, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { SingleBar, Presets } from 'cli-progress';
import { Command, CommanderError, InvalidArgumentError } from 'commander';
import { flashImage, FlashFailedError, FlashRefusedError, type FlashProgress } from './flash.js';
import { hex } from './protocol.js';
import { formatSignatureFile, generateSigningKeys, parseSignatureFile, signImage } from './signing.js';

export interface FlashCliIo {
  stdout: (line: string) => void;
  stderr: (line: string) => void;
  /** A terminal to draw the progress bar on; without one, phases are printed as lines on stderr. */
  tty?: NodeJS.WritableStream & { isTTY?: boolean };
  /** The bridge's "is this robot on a task?" check. */
  isRobotBusy?: () => boolean | Promise<boolean>;
}

const intArg = (name: string, max = 0xffffffff) => (v: string) => {
  const n = /^0x[0-9a-f]+$/i.test(v) ? parseInt(v, 16) : /^\d+$/.test(v) ? Number(v) : NaN;
  if (!Number.isInteger(n) || n < 0 || n > max) throw new InvalidArgumentError(`${name} must be an integer (decimal or 0x hex) up to ${hex(max)}`);
  return n;
};
const chipList = (v: string, prev: number[] = []) => [...prev, ...v.split(',').map((s) => intArg('--chip', 0xfff)(s.trim()))];

async function readText(file: string, what: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    throw new Error(`cannot read ${what} ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

async function run(io: FlashCliIo, cmd: Command, argv: string[]): Promise<number> {
  cmd.exitOverride().configureOutput({ writeOut: (s) => io.stdout(s.trimEnd()), writeErr: (s) => io.stderr(s.trimEnd()) });
  try {
    await cmd.parseAsync(argv, { from: 'user' });
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode;
    io.stderr(`firmware-bridge ${cmd.name()}: ${(err as Error).message}`);
    // 2: refused, nothing changed on the board; 3: failed mid-flash, run again to recover.
    return err instanceof FlashRefusedError ? 2 : err instanceof FlashFailedError ? 3 : 1;
  }
}

/** `flash --port P --image FILE --public-key FILE [--signature FILE] [--chip 0x468] ...` */
export function runFlashCli(argv: string[], io: FlashCliIo): Promise<number> {
  const cmd = new Command('flash')
    .description('flash a signed image to an STM32 through its UART system bootloader (AN3155)')
    .requiredOption('--port <path>', 'serial port, e.g. /dev/ttyUSB0')
    .requiredOption('--image <file>', 'raw binary image')
    .requiredOption('--public-key <file>', 'ed25519 public key (PEM) images must be signed with')
    .option('--signature <file>', 'signature file (default: IMAGE.sig.json)')
    .option('--chip <ids>', 'chip IDs this board may be, e.g. 0x468 (repeatable)', chipList)
    .option('--baud <n>', 'baud rate', intArg('--baud', 4_000_000), 115_200)
    .option('--retries <n>', 'extra attempts per block', intArg('--retries', 20), 3)
    .option('--no-go', 'stay in the bootloader after verifying')
    .action(async (o: { port: string; image: string; publicKey: string; signature?: string; chip?: number[]; baud: number; retries: number; go: boolean }) => {
      const image = await readFile(o.image).catch((err: NodeJS.ErrnoException) => {
        throw new Error(`cannot read image ${o.image}: ${err.code ?? err.message}`);
      });
      const sigFile = o.signature ?? `${o.image}.sig.json`;
      const signature = parseSignatureFile(await readText(sigFile, 'signature file'), sigFile);
      const publicKey = await readText(o.publicKey, 'public key');
      const report = progressReporter(io);
      try {
        const r = await flashImage({
          port: o.port,
          baudRate: o.baud,
          image,
          signature,
          publicKey,
          expectedChipIds: o.chip,
          retries: o.retries,
          go: o.go,
          onProgress: report.update,
          ...(io.isRobotBusy ? { isRobotBusy: io.isRobotBusy } : {}),
        });
        report.stop();
        io.stdout(
          `flashed ${path.basename(o.image)} v${r.version} (${r.bytes} bytes) to ${r.chipName} (${hex(r.chipId, 3)}) at ${hex(r.address, 8)}: ` +
            `${r.pagesErased.length} pages erased, verified by read-back, ${r.bytesPerSecond} B/s, ${r.retries} block retries${r.started ? ', application started' : ''}`,
        );
      } finally {
        report.stop();
      }
    });
  return run(io, cmd, argv);
}

/** `sign --image FILE --key PRIVATE.pem --chip 0x468 --address 0x08000000 --fw-version 1.2.0 [--out FILE]` */
export function runSignCli(argv: string[], io: FlashCliIo): Promise<number> {
  const cmd = new Command('sign')
    .description('sign a firmware image for a target chip and load address (ed25519)')
    .requiredOption('--image <file>', 'raw binary image')
    .requiredOption('--key <file>', 'ed25519 private key (PEM)')
    .requiredOption('--chip <id>', 'target STM32 product ID, e.g. 0x468', intArg('--chip', 0xfff))
    .option('--address <addr>', 'load address', intArg('--address'), 0x0800_0000)
    .requiredOption('--fw-version <v>', 'firmware version, e.g. 1.2.0')
    .option('--out <file>', 'signature file (default: IMAGE.sig.json)')
    .action(async (o: { image: string; key: string; chip: number; address: number; fwVersion: string; out?: string }) => {
      const image = await readFile(o.image).catch((err: NodeJS.ErrnoException) => {
        throw new Error(`cannot read image ${o.image}: ${err.code ?? err.message}`);
      });
      const sig = signImage(image, { chipId: o.chip, address: o.address, version: o.fwVersion }, await readText(o.key, 'private key'));
      const out = o.out ?? `${o.image}.sig.json`;
      await writeFile(out, formatSignatureFile(sig));
      io.stdout(`signed ${o.image} (${image.length} bytes, sha256 ${sig.manifest.sha256}) for chip ${hex(o.chip, 3)} at ${hex(o.address, 8)}: ${out}`);
    });
  return run(io, cmd, argv);
}

/** `keygen --out-dir DIR`: writes firmware-signing.key (0600) and firmware-signing.pub. */
export function runKeygenCli(argv: string[], io: FlashCliIo): Promise<number> {
  const cmd = new Command('keygen')
    .description('create an ed25519 key pair for signing firmware (keep the private key offline)')
    .requiredOption('--out-dir <dir>', 'where to write firmware-signing.key and firmware-signing.pub')
    .action(async (o: { outDir: string }) => {
      const keys = generateSigningKeys();
      const priv = path.join(o.outDir, 'firmware-signing.key');
      const pub = path.join(o.outDir, 'firmware-signing.pub');
      await writeFile(priv, keys.privateKeyPem, { mode: 0o600, flag: 'wx' }).catch((err: NodeJS.ErrnoException) => {
        throw new Error(err.code === 'EEXIST' ? `${priv} exists; not overwriting a signing key` : `cannot write ${priv}: ${err.message}`);
      });
      await chmod(priv, 0o600);
      await writeFile(pub, keys.publicKeyPem);
      io.stdout(`wrote ${priv} (private, mode 0600) and ${pub}`);
    });
  return run(io, cmd, argv);
}

/** A cli-progress bar on a terminal; otherwise one line per phase (logs, cmd/ack relays). */
function progressReporter(io: FlashCliIo): { update: (p: FlashProgress) => void; stop: () => void } {
  if (io.tty?.isTTY) {
    const bar = new SingleBar({ stream: io.tty, format: '{phase} [{bar}] {percentage}% {value}/{total} bytes', hideCursor: true }, Presets.shades_classic);
    let started = false;
    return {
      update: (p) => {
        if (!started) {
          bar.start(p.total, 0, { phase: p.phase.padEnd(8) });
          started = true;
        }
        bar.update(p.bytes, { phase: p.phase.padEnd(8) });
      },
      stop: () => {
        if (started) bar.stop();
        started = false;
      },
    };
  }
  let last = '';
  return {
    update: (p) => {
      if (p.phase !== last) io.stderr(`flash: ${p.phase}`);
      last = p.phase;
    },
    stop: () => {},
  };
}
