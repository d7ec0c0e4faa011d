/**
 * The simulated checkpoint scene: people walking through the gate one at a time, rendered as
 * visible + thermal frame pairs with ground truth for every person.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { FramePair, FrameSource, SceneGeometry } from '../../frames.js';
import { FaceLibrary } from './faces.js';
import { invertHomography } from './homography.js';
import type { ResolvedSimOptions, SimOptions } from './options.js';
import { THERMAL_SIZE, VISIBLE_SIZE, resolveSimOptions } from './options.js';
import type { Person, PersonTruth } from './people.js';
import { planBatchFlags, planPerson } from './people.js';
import { deriveRng } from './random.js';
import type { Rng } from './random.js';
import type { DriftModel, ThermalSceneSpec } from './thermal.js';
import { driftAt, makeDrift, renderThermal } from './thermal.js';
import type { RgbImage } from './visible.js';
import { blackbodyInVisible, encodeJpeg, renderBackground, renderPersonFrame } from './visible.js';

/** Ground truth of a simulated run (truth.json). */
export interface SimTruth {
  seed: number;
  /** The options in effect (people is null when endless). */
  options: Omit<ResolvedSimOptions, 'people'> & { people: number | null };
  thresholdC: number;
  fps: number;
  /** Total frames, or null when endless. */
  frameCount: number | null;
  /** The camera offset drift; see {@link driftAtFrame}. */
  drift: DriftModel;
  /** Filled up front for a finite run; grows as frames are generated when endless. */
  people: PersonTruth[];
}

export interface SimScene {
  geometry: SceneGeometry;
  /** Each iteration renders the scene from frame 1 again (identically). */
  frames: AsyncIterable<FramePair>;
  truth: SimTruth;
}

/** Camera offset drift (°C) in frame `n` of a simulated run, from its truth. */
export function driftAtFrame(truth: Pick<SimTruth, 'drift' | 'fps'>, n: number): number {
  return driftAt(truth.drift, (n - 1) / truth.fps);
}

/** The scene geometry the simulator renders with. */
export function simGeometry(o: ResolvedSimOptions): SceneGeometry {
  return {
    fps: o.fps,
    thermal: { ...THERMAL_SIZE },
    visible: { ...VISIBLE_SIZE },
    homography: [...o.homography],
    blackbody: o.blackbody ? { ...o.blackbodyRegion } : null,
    ambientC: o.ambientC,
  };
}

/** Endless runs are planned this many people at a time (rates hold within each batch). */
const ENDLESS_BATCH = 100;

/** Plans people lazily (in batches) so a finite run is known up front and an endless one grows. */
class Planner {
  readonly people: Person[] = [];
  private readonly rng: Rng;
  private nextFirstFrame: number;

  constructor(
    private readonly o: ResolvedSimOptions,
    private readonly faces: FaceLibrary,
  ) {
    this.rng = deriveRng(o.seed, 'people');
    this.nextFirstFrame = o.leadInFrames + 1;
  }

  person(index: number): Person {
    while (this.people.length <= index) {
      const size = Number.isFinite(this.o.people) ? this.o.people : ENDLESS_BATCH;
      for (const flags of planBatchFlags(this.rng, size, this.o)) {
        const p = planPerson(this.rng, this.people.length, this.nextFirstFrame, flags, this.faces, this.o);
        this.people.push(p);
        this.nextFirstFrame = p.truth.frames[1] + this.o.gapFrames + 1;
      }
    }
    return this.people[index]!;
  }
}

interface Renderer {
  geometry: SceneGeometry;
  truth: SimTruth;
  generate(startMs: number, realtime: boolean, signal?: AbortSignal): AsyncGenerator<FramePair>;
}

async function createRenderer(options: SimOptions, defaultPeople: number): Promise<Renderer> {
  const o = resolveSimOptions({ people: defaultPeople, ...options });
  const faces = await FaceLibrary.load(o.facesDir);
  const geometry = simGeometry(o);
  const inverse = invertHomography(o.homography);
  const thermalSpec: ThermalSceneSpec = {
    ...THERMAL_SIZE,
    ambientC: o.ambientC,
    homography: o.homography,
    inverse,
    blackbody: geometry.blackbody,
    skinEmissivity: o.skinEmissivity,
  };
  const background: RgbImage = renderBackground(
    deriveRng(o.seed, 'background'),
    VISIBLE_SIZE.width,
    VISIBLE_SIZE.height,
    geometry.blackbody ? blackbodyInVisible(inverse, geometry.blackbody) : null,
  );
  const emptyJpeg = await encodeJpeg(background, o.jpegQuality);
  const planner = new Planner(o, faces);
  const finite = Number.isFinite(o.people);
  if (finite) planner.person(o.people - 1);
  const last = planner.people.at(-1);
  const truth: SimTruth = {
    seed: o.seed,
    options: { ...o, people: finite ? o.people : null },
    thresholdC: o.thresholdC,
    fps: o.fps,
    frameCount: finite && last ? last.truth.frames[1] + o.gapFrames : null,
    drift: makeDrift(deriveRng(o.seed, 'drift'), o.maxDriftC),
    people: [],
  };
  // Truth is the planner's list, seen through each person's truth record.
  const syncTruth = (): void => {
    for (let i = truth.people.length; i < planner.people.length; i++) truth.people.push(planner.people[i]!.truth);
  };
  syncTruth();

  async function renderFrame(n: number, noise: Rng, person: Person | null, startMs: number): Promise<FramePair> {
    const timestampMs = startMs + ((n - 1) / o.fps) * 1000;
    const box = person?.truth.faceBoxes[n - person.truth.frames[0]] ?? null;
    // Start the visible frame (sharp works off the main thread), then draw the thermal one.
    const encoded =
      person && box
        ? faces.image(person.crop).then((face) => renderPersonFrame(background, box, face, person.shirtRgb)).then((img) => encodeJpeg(img, o.jpegQuality))
        : Promise.resolve(emptyJpeg);
    const celsius = renderThermal(
      thermalSpec,
      person && box ? { box, look: person.look, canthusC: person.truth.canthusC } : null,
      driftAtFrame(truth, n),
      o.noiseSigmaC,
      noise,
      o.blurSigmaPx,
    );
    return {
      thermal: { seq: n, timestampMs, ...THERMAL_SIZE, celsius },
      visible: { seq: n, timestampMs, ...VISIBLE_SIZE, encoded: await encoded },
    };
  }

  async function* generate(startMs: number, realtime: boolean, signal?: AbortSignal): AsyncGenerator<FramePair> {
    const noise = deriveRng(o.seed, 'noise');
    const started = performance.now();
    let index = 0;
    for (let n = 1; truth.frameCount === null || n <= truth.frameCount; n++) {
      if (signal?.aborted) return;
      let person: Person | null = null;
      if (finite ? index < o.people : true) {
        const next = planner.person(index);
        syncTruth();
        if (n >= next.truth.frames[0]) person = next;
        if (n >= next.truth.frames[1]) index++; // this is the person's last frame
      }
      const pair = await renderFrame(n, noise, person, startMs);
      if (realtime) {
        const wait = started + ((n - 1) / o.fps) * 1000 - performance.now();
        if (wait > 0) {
          try {
            await sleep(wait, undefined, { signal });
          } catch {
            return; // aborted
          }
        }
      }
      yield pair;
    }
  }

  return { geometry, truth, generate };
}

/**
 * Simulate a scene. Frames are rendered lazily as they are iterated; truth.people is complete at
 * once for a finite number of people. Default 20 people.
 */
export async function simulateScene(options: SimOptions = {}): Promise<SimScene> {
  const renderer = await createRenderer(options, 20);
  return {
    geometry: renderer.geometry,
    truth: renderer.truth,
    frames: { [Symbol.asyncIterator]: () => renderer.generate(0, false) },
  };
}

export interface SimSourceOptions extends SimOptions {
  /** Pace frames at fps like a live camera, with epoch timestamps. Default false. */
  realtime?: boolean;
}

/**
 * A simulated camera pair for live demos: endless unless `people` is given. The face crops are
 * loaded when iteration starts, so option errors surface here and data errors on first frame.
 */
export function createSimSource(options: SimSourceOptions = {}): FrameSource & { readonly truth: Promise<SimTruth> } {
  const { realtime = false, ...simOptions } = options;
  const o = resolveSimOptions({ people: Infinity, ...simOptions });
  const renderer = createRenderer(simOptions, Infinity);
  renderer.catch(() => undefined); // reported when frames() or truth is used
  let closed = false;
  const controller = new AbortController();
  return {
    geometry: simGeometry(o),
    truth: renderer.then((r) => r.truth),
    async *frames(signal?: AbortSignal) {
      const r = await renderer;
      const both = signal ? AbortSignal.any([signal, controller.signal]) : controller.signal;
      if (closed) return;
      yield* r.generate(realtime ? Date.now() : 0, realtime, both);
    },
    async close() {
      closed = true;
      controller.abort();
    },
  };
}
