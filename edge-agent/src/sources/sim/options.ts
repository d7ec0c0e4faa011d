import { fileURLToPath } from 'node:url';
import type { BlackbodyRegion } from '../../frames.js';

/**
 * What to simulate. Every field is optional; the CLI maps
 * `edge-agent simulate --people N --fever-rate R --mask-rate R --seed S` to
 * `{people, feverRate, maskRate, seed}`.
 */
export interface SimOptions {
  /** People walking through, one at a time. Infinity = endless (live demos). Default 20. */
  people?: number;
  /** Share of people with a fever (canthus 37.8–39.0 °C). Default 0.1. */
  feverRate?: number;
  /** Share of people wearing a mask (faces are picked by label to reach it). Default 0.5. */
  maskRate?: number;
  /** Share of people just in from the cold (canthus 32–34 °C, expect `too_cold_retry`). Default 0. */
  coldRate?: number;
  /** Seed of everything random; the same seed gives the same scene. Default 1. */
  seed?: number;
  /** Frames per second (Lepton 3.5 exports < 9 Hz). Default 8.7. */
  fps?: number;
  /** Largest |camera offset drift| in °C, added to every thermal pixel. Default 1.5. */
  maxDriftC?: number;
  /** Per-pixel Gaussian sensor noise σ in °C. Default 0.08. */
  noiseSigmaC?: number;
  /** Folder of tight face crops with labels.csv (`file,label`, label mask|no_mask). */
  facesDir?: string;
  /** Room temperature in °C. Default 22. */
  ambientC?: number;
  /** Skin emissivity used to render what the camera sees. Default 0.98 (IEC 80601-2-59). */
  skinEmissivity?: number;
  /** Whether a reference blackbody is in view. Default true. */
  blackbody?: boolean;
  /** Where the blackbody is (thermal pixels) and its set point. Default {x:150, y:100, w:6, h:6, setC:35}. */
  blackbodyRegion?: BlackbodyRegion;
  /** Visible → thermal homography, row-major. Default scale 0.25 with a small parallax offset. */
  homography?: number[];
  /** Truth threshold for `elevated`. Default 37.3 °C. */
  thresholdC?: number;
  /** Frames in which each person's face is visible, [min, max]. Default [8, 12]. */
  framesPerPerson?: [number, number];
  /** Empty frames after each person, so a tracker sees them leave. Default 5. */
  gapFrames?: number;
  /** Empty frames before the first person (lets a blackbody filter settle). Default 5. */
  leadInFrames?: number;
  /** Gaussian blur of the thermal image in thermal pixels (optics); 0 = none. Default 0. */
  blurSigmaPx?: number;
  /** JPEG quality of visible frames. Default 85. */
  jpegQuality?: number;
  /**
   * `stationary` (default): one person at a time, faces 290–340 px, nearly still (the original
   * scene). `walking`: faces `faceWidthPx` wide walking sideways and toward the camera at
   * `speedPxPerFrame`, bobbing, entering and leaving at the frame edges, queues of two or three
   * (`queueRate`), blurred frames (`hostileFrameRate`) and runs of them (`dropoutRate`).
   */
  traffic?: 'stationary' | 'walking';
  /** Walking: face width range in visible pixels. Default [60, 250]. */
  faceWidthPx?: [number, number];
  /** Walking: how far a face moves per frame (sideways plus growth toward the camera), px. Default [10, 40]. */
  speedPxPerFrame?: [number, number];
  /** Walking: share of people who walk in while the previous person is still in view. Default 0.35. */
  queueRate?: number;
  /** Walking: share of frames in which a face is motion-blurred (the detector often misses it). Default 0.08. */
  hostileFrameRate?: number;
  /** Walking: share of people with a run of 3–8 blurred frames (head turned, up to ~1 s). Default 0.15. */
  dropoutRate?: number;
}

export type ResolvedSimOptions = Required<Omit<SimOptions, 'blackbodyRegion'>> & { blackbodyRegion: BlackbodyRegion };

export const THERMAL_SIZE = { width: 160, height: 120 } as const;
export const VISIBLE_SIZE = { width: 640, height: 480 } as const;

/** The mask-sample data set in ../shared (relative to the repo root), as tests and demos find it. */
export const DEFAULT_FACES_DIR = fileURLToPath(new URL('../../../../../shared/datasets/mask-sample/', import.meta.url));

export const SIM_DEFAULTS: ResolvedSimOptions = {
  people: 20,
  feverRate: 0.1,
  maskRate: 0.5,
  coldRate: 0,
  seed: 1,
  fps: 8.7,
  maxDriftC: 1.5,
  noiseSigmaC: 0.08,
  facesDir: DEFAULT_FACES_DIR,
  ambientC: 22,
  skinEmissivity: 0.98,
  blackbody: true,
  blackbodyRegion: { x: 150, y: 100, w: 6, h: 6, setC: 35 },
  homography: [0.25, 0, 2, 0, 0.25, 1.5, 0, 0, 1],
  thresholdC: 37.3,
  framesPerPerson: [8, 12],
  gapFrames: 5,
  leadInFrames: 5,
  blurSigmaPx: 0,
  jpegQuality: 85,
  traffic: 'stationary',
  faceWidthPx: [60, 250],
  speedPxPerFrame: [10, 40],
  queueRate: 0.35,
  hostileFrameRate: 0.08,
  dropoutRate: 0.15,
};

function fail(name: string, expected: string, got: unknown): never {
  throw new RangeError(`simulator option ${name} must be ${expected} (got ${JSON.stringify(got) ?? String(got)})`);
}

/** Fill in defaults and check every option, naming the first bad one. */
export function resolveSimOptions(options: SimOptions = {}): ResolvedSimOptions {
  const o: ResolvedSimOptions = { ...SIM_DEFAULTS };
  for (const [key, value] of Object.entries(options)) {
    if (!(key in SIM_DEFAULTS)) fail(key, `one of ${Object.keys(SIM_DEFAULTS).join(', ')} (unknown option)`, value);
    if (value !== undefined) (o as Record<string, unknown>)[key] = value;
  }
  const num = (name: keyof ResolvedSimOptions, min: number, max: number, integer = false): void => {
    const v = o[name];
    if (typeof v !== 'number' || Number.isNaN(v) || v < min || v > max || (integer && Number.isFinite(v) && !Number.isInteger(v))) {
      fail(name, `${integer ? 'an integer' : 'a number'} in [${min}, ${max}]`, v);
    }
  };
  num('people', 1, Infinity, true);
  num('feverRate', 0, 1);
  num('maskRate', 0, 1);
  num('coldRate', 0, 1);
  if (o.feverRate + o.coldRate > 1) fail('feverRate + coldRate', 'at most 1', o.feverRate + o.coldRate);
  num('seed', 0, 0xffffffff, true);
  num('fps', 0.1, 1000);
  num('maxDriftC', 0, 20);
  num('noiseSigmaC', 0, 5);
  num('ambientC', -40, 60);
  num('skinEmissivity', 0.5, 1);
  num('thresholdC', 30, 45);
  num('gapFrames', 0, 10_000, true);
  num('leadInFrames', 0, 10_000, true);
  num('blurSigmaPx', 0, 10);
  num('jpegQuality', 1, 100, true);
  num('queueRate', 0, 1);
  num('hostileFrameRate', 0, 0.9);
  num('dropoutRate', 0, 1);
  if (o.traffic !== 'stationary' && o.traffic !== 'walking') fail('traffic', '"stationary" or "walking"', o.traffic);
  const range = (name: 'faceWidthPx' | 'speedPxPerFrame', min: number, max: number): void => {
    const v = o[name];
    if (!Array.isArray(v) || v.length !== 2 || !v.every((x) => typeof x === 'number' && x >= min && x <= max) || v[0] > v[1]) {
      fail(name, `[min, max] numbers in [${min}, ${max}] with min <= max`, v);
    }
  };
  range('faceWidthPx', 48, 320);
  range('speedPxPerFrame', 0, 120);
  if (typeof o.facesDir !== 'string' || o.facesDir === '') fail('facesDir', 'a folder path', o.facesDir);
  if (typeof o.blackbody !== 'boolean') fail('blackbody', 'true or false', o.blackbody);
  const [fMin, fMax] = o.framesPerPerson;
  if (!Number.isInteger(fMin) || !Number.isInteger(fMax) || fMin < 1 || fMax < fMin) {
    fail('framesPerPerson', '[min, max] integers with 1 <= min <= max', o.framesPerPerson);
  }
  if (!Array.isArray(o.homography) || o.homography.length !== 9 || !o.homography.every(Number.isFinite)) {
    fail('homography', 'an array of 9 finite numbers', o.homography);
  }
  const bb = o.blackbodyRegion;
  const inside =
    [bb.x, bb.y, bb.w, bb.h].every(Number.isInteger) && bb.x >= 0 && bb.y >= 0 && bb.w >= 1 && bb.h >= 1 &&
    bb.x + bb.w <= THERMAL_SIZE.width && bb.y + bb.h <= THERMAL_SIZE.height && Number.isFinite(bb.setC);
  if (!inside) fail('blackbodyRegion', `an integer region inside ${THERMAL_SIZE.width}x${THERMAL_SIZE.height} with a finite setC`, bb);
  return o;
}
