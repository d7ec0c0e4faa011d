/**
 * `checkpoint-models`: list, fetch and verify the pretrained models. Results go to stdout,
 * progress and errors to stderr. Exit codes: 0 ok, 1 a model is missing/wrong or a fetch
 * failed, 2 usage error (bad option, unknown model name).
 */
import cliProgress from 'cli-progress';
import { Command, CommanderError, Option } from 'commander';
import { checkpointVersion } from '@checkpoint/protocol';
import { getManifest, MODELS } from './manifest.js';
import type { ModelManifest } from './manifest.js';
import { defaultMirror, defaultModelsDir } from './paths.js';
import type { Env } from './paths.js';
import { ensureModel, verifyModels } from './store.js';
import type { FetchProgress, ModelStatus } from './store.js';

export interface CliIo {
  stdout: NodeJS.WritableStream & { isTTY?: boolean };
  stderr: NodeJS.WritableStream & { isTTY?: boolean };
  env: Env;
  cwd: string;
  /** Aborts a running fetch (the bin wires SIGINT/SIGTERM to it). */
  signal?: AbortSignal;
}

class UsageError extends Error {}

function manifestsFor(names: readonly string[]): readonly ModelManifest[] {
  if (names.length === 0) return MODELS;
  const unknown = names.filter((n) => !MODELS.some((m) => m.name === n));
  if (unknown.length > 0) {
    throw new UsageError(
      `unknown model${unknown.length > 1 ? 's' : ''} ${unknown.map((n) => `"${n}"`).join(', ')}; ` +
        `known models: ${MODELS.map((m) => m.name).join(', ')}`,
    );
  }
  return names.map(getManifest);
}

const megabytes = (bytes: number) => `${(bytes / 1e6).toFixed(2)} MB`;

function describeState(status: ModelStatus): string {
  if (status.state === 'ok') return 'installed, verified';
  if (status.state === 'missing') return 'missing';
  return `WRONG (sha256 ${status.actualSha256}, ${status.sizeBytes} bytes)`;
}

/** Fixed-width columns; the last column is left ragged. */
function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]!))).join('  ')).join('\n') + '\n';
}

/** Progress for one model at a time: a bar on a terminal, one line per model otherwise. */
function progressReporter(io: CliIo) {
  let bar: cliProgress.SingleBar | undefined;
  let current: string | undefined;
  return {
    update(p: FetchProgress) {
      if (p.name !== current) {
        current = p.name;
        io.stderr.write(`fetching ${p.name} from ${p.source}\n`);
        if (io.stderr.isTTY) {
          bar = new cliProgress.SingleBar(
            {
              stream: io.stderr,
              format: '  [{bar}] {percentage}% | {value}/{total} bytes | {file}',
              gracefulExit: false, // the bin aborts the fetch on SIGINT so the temp file is removed
              hideCursor: true,
            },
            cliProgress.Presets.shades_classic,
          );
          bar.start(p.totalBytes, p.receivedBytes, { file: p.file });
        }
      }
      bar?.update(p.receivedBytes);
    },
    stop() {
      bar?.stop();
      bar = undefined;
      current = undefined;
    },
  };
}

async function list(io: CliIo, dest: string): Promise<number> {
  const statuses = await verifyModels(undefined, dest);
  const rows = [['NAME', 'VERSION', 'SIZE', 'SHA256', 'STATE']];
  MODELS.forEach((m, i) => rows.push([m.name, m.version, megabytes(m.sizeBytes), m.sha256, describeState(statuses[i]!)]));
  io.stdout.write(`models folder: ${dest}\n${table(rows)}`);
  return 0;
}

async function fetchCommand(io: CliIo, names: string[], dest: string, mirror: string | undefined): Promise<number> {
  const manifests = manifestsFor(names);
  const progress = progressReporter(io);
  const failed: string[] = [];
  for (const manifest of manifests) {
    try {
      const result = await ensureModel(manifest.name, {
        modelsDir: dest,
        mirror,
        env: io.env,
        cwd: io.cwd,
        signal: io.signal,
        onProgress: (p) => progress.update(p),
      });
      progress.stop();
      const what = result.action === 'skipped' ? 'already installed, verified' : `${result.action}, verified`;
      io.stdout.write(`${manifest.name}: ${what}: ${result.path}\n`);
    } catch (err) {
      progress.stop();
      failed.push(manifest.name);
      io.stderr.write(`error: ${(err as Error).message}\n`);
      if (io.signal?.aborted) break;
    }
  }
  if (failed.length > 0) {
    io.stderr.write(`${failed.length} of ${manifests.length} models not installed: ${failed.join(', ')}\n`);
    return 1;
  }
  return 0;
}

async function verify(io: CliIo, names: string[], dest: string): Promise<number> {
  const statuses = await verifyModels(manifestsFor(names).map((m) => m.name), dest);
  for (const s of statuses) {
    const detail =
      s.state === 'wrong'
        ? `: expected sha256 ${s.expectedSha256}, actual sha256 ${s.actualSha256} (${s.sizeBytes} bytes)`
        : '';
    io.stdout.write(`${s.state === 'ok' ? 'ok' : s.state.toUpperCase()}  ${s.name}  ${s.path}${detail}\n`);
  }
  const bad = statuses.filter((s) => s.state !== 'ok');
  if (bad.length > 0) {
    io.stderr.write(`${bad.length} of ${statuses.length} models missing or wrong: ${bad.map((s) => s.name).join(', ')}\n`);
    return 1;
  }
  return 0;
}

/** Run the program with `argv` (without node and script path). Resolves to the exit code. */
export async function main(argv: readonly string[], ioOverrides: Partial<CliIo> = {}): Promise<number> {
  const io: CliIo = {
    stdout: process.stdout,
    stderr: process.stderr,
    env: process.env,
    cwd: process.cwd(),
    ...ioOverrides,
  };
  let exitCode = 0;
  const destOption = () =>
    new Option('--dest <dir>', 'models folder (default: $CHECKPOINT_MODELS_DIR, else <$CHECKPOINT_DATA_DIR or ~/.checkpoint>/models)');
  const destOf = (opts: { dest?: string }) => opts.dest ?? defaultModelsDir(io.env, io.cwd);

  const program = new Command('checkpoint-models')
    .description('List, fetch and verify the pretrained ONNX models Checkpoint uses.')
    .version(checkpointVersion())
    .exitOverride()
    .configureOutput({ writeOut: (s) => io.stdout.write(s), writeErr: (s) => io.stderr.write(s) })
    .showHelpAfterError();

  program
    .command('list')
    .description('show every known model and whether it is installed and verified')
    .addOption(destOption())
    .action(async (opts: { dest?: string }) => {
      exitCode = await list(io, destOf(opts));
    });

  program
    .command('fetch')
    .description('install models (default: all) from upstream or a mirror, verifying sha256; verified files are kept')
    .argument('[names...]', 'model names')
    .option('--mirror <dir|url>', 'folder or http(s) URL holding the model files (default: $CHECKPOINT_MODELS_MIRROR)')
    .addOption(destOption())
    .action(async (names: string[], opts: { dest?: string; mirror?: string }) => {
      exitCode = await fetchCommand(io, names, destOf(opts), opts.mirror ?? defaultMirror(io.env));
    });

  program
    .command('verify')
    .description('check installed models (default: all) against their sha256; exit 1 when any is missing or wrong')
    .argument('[names...]', 'model names')
    .addOption(destOption())
    .action(async (names: string[], opts: { dest?: string }) => {
      exitCode = await verify(io, names, destOf(opts));
    });

  try {
    await program.parseAsync(argv, { from: 'user' });
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : 2;
    if (err instanceof UsageError) {
      io.stderr.write(`error: ${err.message}\n`);
      return 2;
    }
    io.stderr.write(`error: ${(err as Error).message}\n`);
    return 1;
  }
  return exitCode;
}
