/**
 * `edge-agent` command line. Each subcommand is a small composition root: it reads config,
 * builds the components it needs, and runs them. Results go to stdout, logs and errors to
 * stderr, and the exit code says whether it worked.
 */
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { Command, CommanderError, InvalidArgumentError } from 'commander';
import { DEFAULT_MODEL, getManifest } from '@checkpoint/models';
import { ConfigError, checkpointVersion } from '@checkpoint/protocol';
import { parseRegion, runCalibrate } from './calibration/index.js';
import { loadAgentConfig } from './config/load.js';
import { runEnroll } from './enroll.js';
import { createDetector } from './detector-setup.js';
import { pipelineOptionsFromConfig } from './pipeline/from-config.js';
import { FAST_FRAMES_IN_FLIGHT, ScreeningPipeline, type ScreeningResult } from './pipeline/pipeline.js';
import { openReplay } from './sources/replay.js';
import { simulateToReplay } from './sources/sim/index.js';
import type { FramePair } from './frames.js';
import { classifyImages } from './vision/classify.js';
import type { FaceDetector } from './vision/detector.js';

/** A command function printed why it refused; only its exit code is left to set. */
class CommandRefused extends Error {
  constructor(readonly exitCode: number) {
    super('refused');
  }
}

export interface CliIo {
  stdout: (line: string) => void;
  stderr: (line: string) => void;
  env: Readonly<Record<string, string | undefined>>;
}

const defaultIo: CliIo = {
  stdout: (line) => process.stdout.write(`${line}\n`),
  stderr: (line) => process.stderr.write(`${line}\n`),
  env: process.env,
};

const number = (name: string, min: number, max: number) => (value: string) => {
  const n = Number(value);
  if (!Number.isFinite(n) || n < min || n > max) throw new InvalidArgumentError(`${name} must be a number from ${min} to ${max}`);
  return n;
};
/** `min,max` as two numbers in [lo, hi], min <= max. */
const pair = (name: string, lo: number, hi: number) => (value: string): [number, number] => {
  const parts = value.split(',').map(Number);
  if (parts.length !== 2 || !parts.every((v) => Number.isFinite(v) && v >= lo && v <= hi) || parts[0]! > parts[1]!) {
    throw new InvalidArgumentError(`${name} must be "min,max" with ${lo} <= min <= max <= ${hi} (got ${JSON.stringify(value)})`);
  }
  return [parts[0]!, parts[1]!];
};

const integer = (name: string, min: number, max = Number.MAX_SAFE_INTEGER) => (value: string) => {
  const n = number(name, min, max)(value);
  if (!Number.isInteger(n)) throw new InvalidArgumentError(`${name} must be a whole number`);
  return n;
};

const IMAGE_EXT = /\.(jpe?g|png|webp)$/i;

/** Processes a replay folder as fast as possible, printing each screening as one JSON line. */
export async function replayFolder(
  dir: string,
  configFile: string | undefined,
  io: CliIo,
  onResult: (r: ScreeningResult) => void,
): Promise<void> {
  const config = await loadAgentConfig(configFile, io.env, { site: 'local', checkpoint: 'replay' });
  const source = await openReplay(dir, { realtime: false });
  const { detector, model } = await createDetector(config.model);
  const pipeline = new ScreeningPipeline(source.geometry, detector, pipelineOptionsFromConfig(config, model));
  try {
    // As fast as possible: several frames in flight, so decoding overlaps inference.
    for await (const results of pipeline.processAll(source.frames(), config.model.framesInFlight ?? FAST_FRAMES_IN_FLIGHT)) for (const r of results) onResult(r);
    for (const r of await pipeline.finish()) onResult(r);
  } finally {
    await source.close();
  }
}

const quantile = (values: number[], q: number): number => {
  const s = [...values].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.floor(q * s.length))]! : 0;
};

/**
 * The whole pipeline (detect, thermometry, tracking, decision, snapshots) on a simulated scene,
 * frames already in memory so that only the pipeline is timed.
 */
async function benchPipeline(detector: FaceDetector, people: number, model: string) {
  const dir = await mkdtemp(path.join(tmpdir(), 'edge-bench-'));
  try {
    await simulateToReplay(dir, { people, seed: 3 });
    const source = await openReplay(dir);
    const pairs: FramePair[] = [];
    for await (const pair of source.frames()) pairs.push(pair);
    const config = await loadAgentConfig(undefined, {}, { site: 'bench', checkpoint: 'bench' });
    const manifest = getManifest(model);
    const pipeline = new ScreeningPipeline(source.geometry, detector, pipelineOptionsFromConfig(config, { name: manifest.name, sha256: manifest.sha256 }));
    const stages: Record<string, number[]> = {};
    const totals: number[] = [];
    const started = performance.now();
    for (const pair of pairs) {
      const t0 = performance.now();
      await pipeline.process(pair);
      totals.push(performance.now() - t0);
      for (const [k, v] of Object.entries(pipeline.lastTimings)) (stages[k] ??= []).push(v);
    }
    const seconds = (performance.now() - started) / 1000;
    const ms = (v: number[]) => ({ median: quantile(v, 0.5), p95: quantile(v, 0.95) });
    return {
      frames: pairs.length,
      fps: pairs.length / seconds,
      stagesMs: Object.fromEntries(Object.entries(stages).map(([k, v]) => [k, ms(v)])),
      frameMs: ms(totals),
      rssMiB: process.memoryUsage().rss / 2 ** 20,
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

export function buildCli(io: CliIo): Command {
  const program = new Command('edge-agent')
    .description('Checkpoint edge agent: thermal screening with ONNX face/mask models, results over MQTT')
    .version(checkpointVersion())
    .exitOverride()
    .configureOutput({ writeOut: (s) => io.stdout(s.trimEnd()), writeErr: (s) => io.stderr(s.trimEnd()) });

  program
    .command('run')
    .description('run the agent: sources -> pipeline -> outbox -> MQTT, with /healthz and /metrics')
    .option('--config <file>', 'config file (YAML or JSON)')
    .action(async (opts: { config?: string }) => {
      const { runAgent } = await import('./agent.js');
      const config = await loadAgentConfig(opts.config, io.env);
      const agent = await runAgent(config);
      await new Promise<void>((resolve) => {
        const stop = () => void agent.stop().then(resolve);
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
      });
    });

  program
    .command('doctor')
    .description('check this box before it goes live (cameras, serial ports, model, clock, disk, SD-card writes, broker, CPU temperature) and print what to fix')
    .option('--config <file>', 'agent config (YAML or JSON)')
    .option('--timeout <s>', 'seconds to wait for the camera and the broker', integer('--timeout', 1, 120), 10)
    .option('--json', 'one JSON report on stdout', false)
    .action(async (opts: { config?: string; timeout: number; json: boolean }) => {
      const { runDoctor } = await import('./doctor.js');
      const config = await loadAgentConfig(opts.config, io.env);
      const code = await runDoctor(config, { env: io.env, timeoutMs: opts.timeout * 1000, stdout: io.stdout, json: opts.json });
      if (code !== 0) throw new CommandRefused(code);
    });

  program
    .command('replay')
    .description('process a replay folder as fast as possible; one screening JSON line per person on stdout')
    .argument('<dir>', 'replay folder (meta.json + frames/)')
    .option('--json', 'JSON lines output (the only format)', true)
    .option('--config <file>', 'config file (YAML or JSON)')
    .action(async (dir: string, opts: { config?: string }) => {
      await replayFolder(dir, opts.config, io, (r) => io.stdout(JSON.stringify({ ...r.screening, replayFrames: r.replayFrames })));
    });

  program
    .command('classify')
    .description('mask state of the largest face in each image, one JSON line per image')
    .argument('<images...>', 'image files (JPEG, PNG, WebP)')
    .option('--json', 'JSON lines output (the only format)', true)
    .option('--model <name>', 'model name', DEFAULT_MODEL)
    .action(async (images: string[], opts: { model: string }) => {
      const { detector } = await createDetector({ name: opts.model, mirror: io.env.CHECKPOINT_MODELS_MIRROR, dir: io.env.CHECKPOINT_MODELS_DIR });
      for await (const r of classifyImages(detector, images)) {
        io.stdout(JSON.stringify({ file: r.file, mask: r.mask, score: r.score, maskScore: r.maskScore, faces: r.faces }));
      }
    });

  program
    .command('bench')
    .description('frames/s and per-stage milliseconds of the vision pipeline, and bare inference time')
    .option('--json', 'print one JSON object', false)
    .option('--images <dir>', 'folder of images to run on', path.resolve('../shared/datasets/scenes/masked'))
    .option('--model <name>', 'model name', DEFAULT_MODEL)
    .option('--iterations <n>', 'passes over the images', integer('--iterations', 1), 3)
    .option('--threads <n>', 'inference threads', integer('--threads', 1, 64))
    .option('--scene-people <n>', 'people in the simulated scene for the whole-pipeline figures', integer('--scene-people', 1, 1000), 10)
    .option('--in-flight <n>', 'frames in flight for the throughput figure (as `replay` runs)', integer('--in-flight', 1, 16), FAST_FRAMES_IN_FLIGHT)
    .action(async (opts: { json: boolean; images: string; model: string; iterations: number; threads?: number; scenePeople: number; inFlight: number }) => {
      const { runVisionBench } = await import('./vision/bench.js');
      const files = (await readdir(opts.images)).filter((f) => IMAGE_EXT.test(f)).sort().map((f) => path.join(opts.images, f));
      if (files.length === 0) throw new Error(`no images (.jpg, .png, .webp) in ${opts.images}`);
      const { detector, path: modelPath } = await createDetector({ name: opts.model, mirror: io.env.CHECKPOINT_MODELS_MIRROR, dir: io.env.CHECKPOINT_MODELS_DIR, threads: opts.threads });
      // One frame at a time gives the per-stage figures and a live camera's latency; several in
      // flight give the throughput of `replay`.
      const vision = await runVisionBench({ detector, images: files, iterations: opts.iterations });
      const visionInFlight = await runVisionBench({ detector, images: files, iterations: opts.iterations, inFlight: opts.inFlight });
      const pipeline = await benchPipeline(detector, opts.scenePeople, opts.model);
      const result = { model: opts.model, modelPath, vision, visionInFlight, pipeline };
      io.stdout(opts.json ? JSON.stringify(result) : JSON.stringify(result, null, 2));
    });

  program
    .command('enroll')
    .description('exchange a one-time enrollment token at the gateway for this box\'s broker credentials and config')
    .requiredOption('--gateway <url>', 'gateway base URL (https; http only for a gateway on this machine)')
    .requiredOption('--token <token>', 'one-time enrollment token from `checkpoint-gateway device add`')
    .option('--config-out <file>', 'where to write the agent config (default <data dir>/agent.yaml)')
    .option('--data-dir <dir>', 'agent data dir (default $CHECKPOINT_DATA_DIR or .checkpoint-agent)')
    .option('--ca <file>', 'CA certificate (PEM) of the gateway\'s HTTPS certificate')
    .option('--force', 'replace the credentials in an existing config (other settings kept)')
    .action(async (opts: { gateway: string; token: string; configOut?: string; dataDir?: string; ca?: string; force?: boolean }) => {
      const code = await runEnroll(
        {
          gateway: opts.gateway,
          token: opts.token,
          ...(opts.configOut ? { configOut: opts.configOut } : {}),
          ...(opts.dataDir ? { dataDir: opts.dataDir } : {}),
          ...(opts.ca ? { caFile: opts.ca } : {}),
          ...(opts.force ? { force: true } : {}),
        },
        { stdout: io.stdout, stderr: io.stderr, env: io.env },
      );
      // runEnroll has said why; only the exit code is left.
      if (code !== 0) throw new CommandRefused(code);
    });

  program
    .command('calibrate')
    .description('fit the visible-to-thermal homography from point pairs, check the blackbody; optionally write the config')
    .option('--pairs <file>', 'point pairs (.json or .csv: visible x,y -> thermal x,y), 4 or more')
    .option('--max-rms <px>', 'largest accepted RMS reprojection error, thermal pixels', number('--max-rms', 0.01, 20), 1)
    .option('--blackbody', 'check the reference blackbody on the configured source')
    .option('--seconds <s>', 'length of the blackbody check', integer('--seconds', 1, 3600), 180)
    .option('--region <x,y,w,h>', 'blackbody region in thermal pixels (default: the config\'s, else found in the image)')
    .option('--find-region', 'propose the blackbody region from the image even when one is configured')
    .option('--set <c>', 'blackbody set point, °C', number('--set', 20, 50))
    .option('--config <file>', 'agent config (source and current geometry)')
    .option('--write <file>', 'write the result into this agent config (comments kept)')
    .option('--json', 'one JSON report on stdout', false)
    .action(async (opts: { pairs?: string; maxRms: number; blackbody?: boolean; seconds: number; region?: string; findRegion?: boolean; set?: number; config?: string; write?: string; json: boolean }) => {
      const code = await runCalibrate(
        {
          ...(opts.pairs ? { pairs: opts.pairs } : {}),
          maxRmsPx: opts.maxRms,
          ...(opts.blackbody ? { blackbody: true } : {}),
          seconds: opts.seconds,
          ...(opts.region ? { region: parseRegion(opts.region) } : {}),
          ...(opts.findRegion ? { findRegion: true } : {}),
          ...(opts.set !== undefined ? { setC: opts.set } : {}),
          ...(opts.config ? { config: opts.config } : {}),
          ...(opts.write ? { write: opts.write } : {}),
          json: opts.json,
        },
        { stdout: io.stdout, stderr: io.stderr, env: io.env },
      );
      if (code !== 0) throw new CommandRefused(code);
    });

  program
    .command('simulate')
    .description('write a simulated replay folder plus truth.json (people walking through the gate)')
    .requiredOption('--out <dir>', 'output folder')
    .option('--people <n>', 'people walking through', integer('--people', 1, 100_000), 20)
    .option('--fever-rate <r>', 'share with elevated temperature', number('--fever-rate', 0, 1), 0.1)
    .option('--mask-rate <r>', 'share wearing a mask', number('--mask-rate', 0, 1), 0.5)
    .option('--cold-rate <r>', 'share just in from the cold', number('--cold-rate', 0, 1), 0)
    .option('--max-drift <c>', 'largest camera offset drift, °C', number('--max-drift', 0, 10), 1.5)
    .option('--no-blackbody', 'no reference blackbody in view')
    .option('--faces <dir>', 'folder of face crops with labels.csv')
    .option('--seed <s>', 'random seed', integer('--seed', 0), 1)
    .option('--walking', 'walking traffic: faces 60-250 px moving 10-40 px per frame, queues, blur, dropouts')
    .option('--queue-rate <r>', 'walking: share of people who walk in while the one before is in view', number('--queue-rate', 0, 1), 0.35)
    .option('--face-width <min,max>', 'walking: face widths in visible pixels', pair('--face-width', 48, 320), [60, 250])
    .option('--speed <min,max>', 'walking: motion per frame in visible pixels', pair('--speed', 0, 120), [10, 40])
    .action(async (opts: { out: string; people: number; feverRate: number; maskRate: number; coldRate: number; maxDrift: number; blackbody: boolean; faces?: string; seed: number; walking?: boolean; queueRate: number; faceWidth: [number, number]; speed: [number, number] }) => {
      const { frameCount, truth } = await simulateToReplay(opts.out, {
        ...(opts.walking ? { traffic: 'walking' as const, queueRate: opts.queueRate, faceWidthPx: opts.faceWidth, speedPxPerFrame: opts.speed } : {}),
        people: opts.people,
        feverRate: opts.feverRate,
        maskRate: opts.maskRate,
        coldRate: opts.coldRate,
        maxDriftC: opts.maxDrift,
        blackbody: opts.blackbody,
        seed: opts.seed,
        ...(opts.faces ? { facesDir: opts.faces } : {}),
      });
      io.stderr(`wrote ${frameCount} frames of ${truth.people.length} people to ${opts.out}`);
    });

  return program;
}

/** Runs the CLI; resolves to the process exit code. */
export async function main(argv: string[], io: CliIo = defaultIo): Promise<number> {
  const program = buildCli(io);
  try {
    await program.parseAsync(argv, { from: 'user' });
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : 2;
    if (err instanceof CommandRefused) return err.exitCode;
    if (err instanceof ConfigError) {
      io.stderr(`edge-agent: ${err.message}`);
      return 2;
    }
    io.stderr(`edge-agent: ${(err as Error).message}`);
    return 1;
  }
}
