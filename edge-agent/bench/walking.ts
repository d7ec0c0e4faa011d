/**
 * Walking traffic, end to end: simulated people walking through the gate (faces 60–250 px,
 * queues, blur, edge occlusion, dropouts) rendered into replay folders, run through
 * `edge-agent replay`'s pipeline with the real ONNX model, and scored against the truth with the
 * figures of issue 13's "Done when".
 *
 *   node scripts/run-ts.mjs edge-agent/bench/walking.ts [--seeds 1,2,3,4,5] [--people 100] [--traffic walking|stationary]
 *
 * Models: $CHECKPOINT_MODELS_MIRROR (default ../shared/models); faces: ../shared/datasets/mask-sample.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { replayFolder, type CliIo } from '../src/cli.js';
import type { ScreeningResult } from '../src/pipeline/pipeline.js';
import { simulateToReplay, type SimOptions } from '../src/sources/sim/index.js';
import { addFigures, formatFigures, scoreDecisions, type WalkingFigures } from '../src/sources/sim/score.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const shared = path.resolve(here, '../../../shared');

/** The walking scene of the issue: 10 % fever, 50 % masked, drift up to 1.5 °C, faces 60–250 px, queues. */
export const WALKING_SCENE: SimOptions = {
  traffic: 'walking',
  feverRate: 0.1,
  maskRate: 0.5,
  maxDriftC: 1.5,
  faceWidthPx: [60, 250],
  speedPxPerFrame: [10, 40],
  queueRate: 0.35,
  framesPerPerson: [8, 14],
  gapFrames: 3,
};

export interface MeasureOptions {
  seeds: number[];
  people: number;
  scene: SimOptions;
  facesDir?: string;
  modelsMirror?: string;
  /** Called with each seed's figures as soon as they are known. */
  onSeed?: (seed: number, figures: WalkingFigures, seconds: number) => void;
}

export async function measureTraffic(o: MeasureOptions): Promise<WalkingFigures> {
  const work = await mkdtemp(path.join(tmpdir(), 'walking-'));
  const io: CliIo = {
    stdout: () => {},
    stderr: () => {},
    env: {
      CHECKPOINT_MODELS_MIRROR: o.modelsMirror ?? process.env.CHECKPOINT_MODELS_MIRROR ?? path.join(shared, 'models'),
      CHECKPOINT_MODELS_DIR: path.join(work, 'models'),
      CHECKPOINT_LOG_LEVEL: 'silent',
    },
  };
  let total: WalkingFigures | null = null;
  try {
    for (const seed of o.seeds) {
      const started = performance.now();
      const dir = path.join(work, `seed-${seed}`);
      const { truth } = await simulateToReplay(dir, { facesDir: o.facesDir ?? path.join(shared, 'datasets/mask-sample'), ...o.scene, people: o.people, seed });
      const results: ScreeningResult[] = [];
      await replayFolder(dir, undefined, io, (r) => results.push(r));
      await rm(dir, { recursive: true, force: true });
      const figures = scoreDecisions(
        truth.people,
        results.map((r) => ({ ...r.screening, where: r.where })),
      );
      o.onSeed?.(seed, figures, (performance.now() - started) / 1000);
      total = total ? addFigures(total, figures) : figures;
    }
  } finally {
    await rm(work, { recursive: true, force: true });
  }
  if (!total) throw new Error('measureTraffic: no seeds');
  return total;
}

const isMain = process.argv[1] !== undefined && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url);
if (isMain) {
  const { values } = parseArgs({
    options: { seeds: { type: 'string', default: '1,2,3,4,5' }, people: { type: 'string', default: '100' }, traffic: { type: 'string', default: 'walking' } },
  });
  const seeds = values.seeds.split(',').map(Number);
  const people = Number(values.people);
  const scene: SimOptions = values.traffic === 'walking' ? WALKING_SCENE : { feverRate: 0.1, maskRate: 0.5, maxDriftC: 1.5 };
  const total = await measureTraffic({
    seeds,
    people,
    scene,
    onSeed: (seed, f, s) => process.stdout.write(`--- seed ${seed} (${s.toFixed(0)} s)\n${formatFigures(f)}\n`),
  });
  process.stdout.write(`=== ${values.traffic} traffic, seeds ${seeds.join(',')}, ${people} people each\n${formatFigures(total)}\n`);
}
