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
import { facesConflict, planBatchFlags, planPerson, shiftPerson } from './people.js';
import { deriveRng } from './random.js';
import type { Rng } from './random.js';
import type { DriftModel, ThermalSceneSpec } from './thermal.js';
import { driftAt, makeDrift, renderThermal } from './thermal.js';
import type { RgbImage } from './visible.js';
import { blackbodyInVisible, encodeJpeg, renderBackground, renderPeopleFrame } from './visible.js';

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

/** See Planner.placeInQueue: 0.7 s at 8.7 fps. */
const TELEPORT_FRAMES = 6;

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
        const previous = this.people.at(-1);
        // Walking traffic: some people walk in while the one before is still in view (a queue).
        const queued = this.o.traffic === 'walking' && previous !== undefined && this.rng.next() < this.o.queueRate;
        const first = queued ? previous.truth.frames[0] + this.rng.int(2, Math.max(2, previous.truth.faceBoxes.length - 2)) : this.nextFirstFrame;
        const p = planPerson(this.rng, this.people.length, first, flags, this.faces, this.o);
        if (this.o.traffic === 'walking') this.placeInQueue(p);
        this.people.push(p);
        this.nextFirstFrame = Math.max(this.nextFirstFrame, p.truth.frames[1] + this.o.gapFrames + 1);
      }
    }
    return this.people[index]!;
  }

  /**
   * Delays a walking person until nobody in view hides them, at most three are in view, and they
   * do not appear where someone left less than `TELEPORT_FRAMES` frames before (nobody walks in
   * unseen to the very spot another person just left; no tracker could tell them apart).
   */
  private placeInQueue(p: Person): void {
    const recent = this.people.slice(-4);
    const centre = (b: { x: number; y: number; w: number; h: number }) => ({ x: b.x + b.w / 2, y: b.y + b.h / 2 });
    for (;;) {
      const clash = p.truth.faceBoxes.some((box) => {
        const others = recent.map((q) => q.truth.faceBoxes.find((b) => b.frame === box.frame)).filter((b) => b !== undefined);
        return others.length >= 3 || others.some((b) => facesConflict(b, box));
      });
      const first = p.truth.faceBoxes[0]!;
      const teleport = recent.some((q) => {
        const gap = p.truth.frames[0] - q.truth.frames[1];
        if (gap < 1 || gap > TELEPORT_FRAMES) return false;
        const last = q.truth.faceBoxes.at(-1)!;
        const [a, b] = [centre(first), centre(last)];
        return Math.hypot(a.x - b.x, a.y - b.y) < 1.5 * Math.max(first.w, last.w);
      });
      if (!clash && !teleport) return;
      shiftPerson(p, p.truth.frames[0] + 1);
    }
  }
}

/** Who is in view in frame n (people are planned in order of their first frame). */
function inView(people: readonly Person[], from: number, n: number): Person[] {
  const out: Person[] = [];
  for (let i = from; i < people.length && people[i]!.truth.frames[0] <= n; i++) {
    if (people[i]!.truth.frames[1] >= n) out.push(people[i]!);
  }
  return out;
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
    frameCount: finite && last ? Math.max(...planner.people.map((p) => p.truth.frames[1])) + o.gapFrames : null,
    drift: makeDrift(deriveRng(o.seed, 'drift'), o.maxDriftC),
    people: [],
  };
  // Truth is the planner's list, seen through each person's truth record.
  const syncTruth = (): void => {
    for (let i = truth.people.length; i < planner.people.length; i++) truth.people.push(planner.people[i]!.truth);
  };
  syncTruth();

  async function renderFrame(n: number, noise: Rng, people: Person[], startMs: number): Promise<FramePair> {
    const timestampMs = startMs + ((n - 1) / o.fps) * 1000;
    // Farthest (smallest) first, so nearer people are drawn over them.
    const present = people
      .map((person) => ({ person, box: person.truth.faceBoxes[n - person.truth.frames[0]]! }))
      .sort((a, b) => a.box.w - b.box.w);
    // Start the visible frame (sharp works off the main thread), then draw the thermal one.
    const encoded =
      present.length > 0
        ? Promise.all(present.map(({ person }) => faces.image(person.crop)))
            .then((images) =>
              renderPeopleFrame(
                background,
                present.map(({ person, box }, i) => ({ box, face: images[i]!, shirtRgb: person.shirtRgb, blurred: person.truth.hostileFrames.includes(n) })),
              ),
            )
            .then((img) => encodeJpeg(img, o.jpegQuality))
        : Promise.resolve(emptyJpeg);
    const celsius = renderThermal(
      thermalSpec,
      present.map(({ person, box }) => ({ box, look: person.look, canthusC: person.truth.canthusC })),
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
    let from = 0; // people before this index have left
    for (let n = 1; truth.frameCount === null || n <= truth.frameCount; n++) {
      if (signal?.aborted) return;
      if (!finite) {
        while (planner.people.length === 0 || planner.people.at(-1)!.truth.frames[0] <= n) planner.person(planner.people.length);
        syncTruth();
      }
      while (from < planner.people.length && planner.people[from]!.truth.frames[1] < n) from++;
      const pair = await renderFrame(n, noise, inView(planner.people, from, n), startMs);
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
