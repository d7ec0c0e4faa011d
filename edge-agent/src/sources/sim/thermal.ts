/**
 * Thermal rendering: a pure function from (scene, person in the frame, drift, noise generator) to
 * a 160x120 image in °C. The person is drawn from the same face box as the visible frame, mapped
 * through the visible→thermal homography, so a detector's box lands on the thermal face.
 *
 * Layers, back to front: ambient wall with a gentle gradient; the person (clothes, neck, face
 * ellipse at skin temperature, hair cap, mask over the lower 45 % of the face, two inner-canthus
 * hot spots of 2x2 thermal pixels at the person's canthus temperature with a slightly cooler ring);
 * the blackbody at its set point. Then optional optics blur, then a camera offset drift added to
 * EVERY pixel (the blackbody too: only the blackbody can correct it) and per-pixel Gaussian noise.
 */
import { apparentFromObject } from '../../thermometry/measure.js';
import type { BlackbodyRegion } from '../../frames.js';
import type { Homography } from './homography.js';
import { applyHomography } from './homography.js';
import type { FaceBox, ThermalLook } from './people.js';
import type { Rng } from './random.js';

export interface ThermalSceneSpec {
  width: number;
  height: number;
  ambientC: number;
  /** visible → thermal */
  homography: Homography;
  /** thermal → visible */
  inverse: Homography;
  blackbody: BlackbodyRegion | null;
  /** Skin emissivity: the camera (emissivity 1) reads skin slightly cooler than it is. */
  skinEmissivity: number;
}

/** Where the inner canthi are in the face box (fractions of its width and height). */
export const CANTHUS_FACE_POSITIONS = [
  { fx: 0.4, fy: 0.4 },
  { fx: 0.6, fy: 0.4 },
] as const;
/** The mask covers the face from this fraction of its height down. */
export const MASK_TOP = 0.55;
/** Ring around each canthus spot: this much cooler than the canthus. */
const PERIORBITAL_DROP_C = 0.6;

// ---------------------------------------------------------------------------------------------
// Drift

export interface DriftModel {
  offsetC: number;
  components: { amplitudeC: number; periodS: number; phase: number }[];
}

/** A bounded slow drift: a constant offset plus two slow sinusoids, |drift| ≤ maxDriftC always. */
export function makeDrift(rng: Rng, maxDriftC: number): DriftModel {
  const offsetC = rng.uniform(-0.4, 0.4) * maxDriftC;
  const rest = maxDriftC - Math.abs(offsetC);
  const a1 = rest * rng.uniform(0.5, 0.7);
  return {
    offsetC,
    components: [
      { amplitudeC: a1, periodS: rng.uniform(180, 400), phase: rng.uniform(0, 2 * Math.PI) },
      { amplitudeC: rest - a1, periodS: rng.uniform(40, 90), phase: rng.uniform(0, 2 * Math.PI) },
    ],
  };
}

export function driftAt(model: DriftModel, timeS: number): number {
  let d = model.offsetC;
  for (const c of model.components) d += c.amplitudeC * Math.sin((2 * Math.PI * timeS) / c.periodS + c.phase);
  return d;
}

// ---------------------------------------------------------------------------------------------
// Person model, in face-box coordinates (fx, fy): the box is [0,1] x [0,1], y down.

/** Temperature of the person at a face-box coordinate, or null where the wall shows. */
export function personTemperatureAt(look: ThermalLook, fx: number, fy: number): number | null {
  const ex = (fx - 0.5) / 0.5;
  const ey = (fy - 0.5) / 0.5;
  if (ex * ex + ey * ey <= 1) {
    if (fy < 0.16) return look.hairC;
    if (look.maskC !== null && fy >= MASK_TOP) return look.maskC;
    return look.faceSkinC + 0.3 * (0.5 - fy); // forehead a little warmer than cheeks
  }
  const hx = (fx - 0.5) / 0.55;
  const hy = (fy - 0.45) / 0.52;
  if (fy < 0.16 && hx * hx + hy * hy <= 1) return look.hairC;
  if (fy > 0.8 && fy <= 1.3 && Math.abs(fx - 0.5) <= 0.19) return look.neckC;
  if (fy >= 1.22 && Math.abs(fx - 0.5) <= Math.min(1.15, 0.45 + (fy - 1.22) * 2.5)) return look.clothesC;
  return null;
}

/** The 2x2 thermal pixels of each inner canthus for a visible face box (index = v * width + u). */
export function canthusPixels(homography: Homography, box: Omit<FaceBox, 'frame'>, width: number, height: number): number[][] {
  return CANTHUS_FACE_POSITIONS.map(({ fx, fy }) => {
    const c = applyHomography(homography, box.x + fx * box.w, box.y + fy * box.h);
    // Pixel u covers [u, u+1); take the two pixels whose centres lie in [c-1, c+1).
    const u0 = Math.ceil(c.x - 1.5);
    const v0 = Math.ceil(c.y - 1.5);
    const pixels: number[] = [];
    for (let v = v0; v < v0 + 2; v++) {
      for (let u = u0; u < u0 + 2; u++) if (u >= 0 && v >= 0 && u < width && v < height) pixels.push(v * width + u);
    }
    return pixels;
  });
}

export interface PersonInFrame {
  box: Omit<FaceBox, 'frame'>;
  look: ThermalLook;
  canthusC: number;
}

/** Render one thermal frame. `noise` is consumed for every pixel when noiseSigmaC > 0. */
export function renderThermal(
  scene: ThermalSceneSpec,
  people: PersonInFrame | readonly PersonInFrame[] | null,
  driftC: number,
  noiseSigmaC: number,
  noise: Rng,
  blurSigmaPx = 0,
): Float32Array {
  const { width, height, ambientC, inverse } = scene;
  // Rendered as the camera sees it: skin at emissivity < 1 reflects the cooler room.
  const seen = (c: number): number => apparentFromObject(c, scene.skinEmissivity, ambientC);
  // Nearest (largest) first: the first person found at a pixel hides those behind.
  const list = (people === null ? [] : 'box' in people ? [people] : [...people]).sort((a, b) => b.box.w - a.box.w);
  let img: Float32Array = new Float32Array(width * height);
  for (let v = 0; v < height; v++) {
    for (let u = 0; u < width; u++) {
      // Warm air collects under the ceiling; a window on one side. Both gentle.
      let t = ambientC + 0.4 * (0.5 - v / height) + 0.2 * (u / width - 0.5);
      if (list.length > 0) {
        const p = applyHomography(inverse, u + 0.5, v + 0.5);
        for (const person of list) {
          const skin = personTemperatureAt(person.look, (p.x - person.box.x) / person.box.w, (p.y - person.box.y) / person.box.h);
          if (skin !== null) {
            t = seen(skin);
            break;
          }
        }
      }
      img[v * width + u] = t;
    }
  }
  // Farthest first, so a nearer person's canthus wins where spots would meet.
  for (const person of [...list].reverse()) {
    const spots = canthusPixels(scene.homography, person.box, width, height);
    const ringC = seen(person.canthusC - PERIORBITAL_DROP_C);
    for (const spot of spots) {
      // Ring: the 4x4 block around the 2x2 spot, where it is warmer than the skin already there.
      const u0 = (spot[0]! % width) - 1;
      const v0 = Math.floor(spot[0]! / width) - 1;
      for (let v = v0; v < v0 + 4; v++) {
        for (let u = u0; u < u0 + 4; u++) {
          if (u >= 0 && v >= 0 && u < width && v < height) img[v * width + u] = Math.max(img[v * width + u]!, ringC);
        }
      }
    }
    for (const spot of spots) for (const i of spot) img[i] = seen(person.canthusC);
  }
  const bb = scene.blackbody;
  if (bb) {
    for (let v = bb.y; v < bb.y + bb.h; v++) for (let u = bb.x; u < bb.x + bb.w; u++) img[v * width + u] = bb.setC;
  }
  if (blurSigmaPx > 0) img = gaussianBlur(img, width, height, blurSigmaPx);
  for (let i = 0; i < img.length; i++) {
    img[i] = img[i]! + driftC + (noiseSigmaC > 0 ? noiseSigmaC * noise.gaussian() : 0);
  }
  return img;
}

/** Separable Gaussian blur with edge clamping. */
export function gaussianBlur(src: Float32Array, width: number, height: number, sigma: number): Float32Array {
  const radius = Math.max(1, Math.ceil(3 * sigma));
  const kernel: number[] = [];
  let sum = 0;
  for (let k = -radius; k <= radius; k++) {
    const w = Math.exp(-(k * k) / (2 * sigma * sigma));
    kernel.push(w);
    sum += w;
  }
  for (let k = 0; k < kernel.length; k++) kernel[k] = kernel[k]! / sum;
  const pass = (input: Float32Array, horizontal: boolean): Float32Array => {
    const out = new Float32Array(input.length);
    for (let v = 0; v < height; v++) {
      for (let u = 0; u < width; u++) {
        let acc = 0;
        for (let k = -radius; k <= radius; k++) {
          const uu = horizontal ? Math.min(width - 1, Math.max(0, u + k)) : u;
          const vv = horizontal ? v : Math.min(height - 1, Math.max(0, v + k));
          acc += kernel[k + radius]! * input[vv * width + uu]!;
        }
        out[v * width + u] = acc;
      }
    }
    return out;
  };
  return pass(pass(src, true), false);
}
