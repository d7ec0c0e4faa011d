/**
 * Who walks through the gate, and how: a pure plan from the seeded generator.
 *
 * Truth temperatures leave a margin around the default 37.3 °C threshold so that end-to-end
 * accuracy can be scored without coin flips: normal people have an inner-canthus temperature of
 * N(36.5, 0.25) truncated to 35.8–36.9 °C, feverish people 37.8–39.0 °C (uniform). A pipeline that
 * reads within ±0.4 °C classifies everyone correctly. People just in from the cold read 32–34 °C
 * (the agent should ask them to wait and retry).
 */
import type { FaceCrop, FaceLibrary, MaskLabel } from './faces.js';
import type { Rng } from './random.js';
import type { ResolvedSimOptions } from './options.js';

export const NORMAL_CANTHUS = { mean: 36.5, sigma: 0.25, min: 35.8, max: 36.9 } as const;
export const FEVER_CANTHUS = { min: 37.8, max: 39.0 } as const;
export const COLD_CANTHUS = { min: 32.0, max: 34.0 } as const;

/** A face box in visible pixels, in the frame it was drawn. */
export interface FaceBox {
  frame: number;
  x: number;
  y: number;
  w: number;
  h: number;
}

/** What the simulator knows about one person (written to truth.json). */
export interface PersonTruth {
  index: number;
  faceFile: string;
  mask: MaskLabel;
  /** True inner-canthus skin temperature: what a perfect camera reads after blackbody correction. */
  canthusC: number;
  elevated: boolean;
  cold: boolean;
  /** First and last frame numbers in which the face is visible. */
  frames: [number, number];
  /** One box per frame from frames[0] to frames[1]; walking faces may reach past the frame edge. */
  faceBoxes: FaceBox[];
  /** Frames in which the visible face is motion-blurred (walking traffic only; empty otherwise). */
  hostileFrames: number[];
}

/** How the person looks in the thermal image besides the canthus (not part of the truth file). */
export interface ThermalLook {
  faceSkinC: number;
  hairC: number;
  /** Mask temperature, or null without a mask. */
  maskC: number | null;
  neckC: number;
  clothesC: number;
}

export interface Person {
  truth: PersonTruth;
  crop: FaceCrop;
  look: ThermalLook;
  /** Clothes colour in the visible image. */
  shirtRgb: [number, number, number];
}

const round2 = (v: number): number => Math.round(v * 100) / 100;

/**
 * Condition flags for a batch of `count` people, with exactly round(count × rate) of each kind so
 * that a finite run matches the requested rates as closely as a whole number of people allows.
 */
export function planBatchFlags(rng: Rng, count: number, o: Pick<ResolvedSimOptions, 'feverRate' | 'coldRate' | 'maskRate'>): { fever: boolean; cold: boolean; masked: boolean }[] {
  const nCold = Math.round(count * o.coldRate);
  const nFever = Math.min(count - nCold, Math.round(count * o.feverRate));
  const nMask = Math.round(count * o.maskRate);
  const order = rng.shuffle([...Array(count).keys()]);
  const maskOrder = rng.shuffle([...Array(count).keys()]);
  const flags = Array.from({ length: count }, () => ({ fever: false, cold: false, masked: false }));
  order.forEach((person, rank) => {
    if (rank < nCold) flags[person]!.cold = true;
    else if (rank < nCold + nFever) flags[person]!.fever = true;
  });
  maskOrder.slice(0, nMask).forEach((person) => (flags[person]!.masked = true));
  return flags;
}

export function sampleCanthusC(rng: Rng, kind: 'normal' | 'fever' | 'cold'): number {
  if (kind === 'fever') return round2(rng.uniform(FEVER_CANTHUS.min, FEVER_CANTHUS.max));
  if (kind === 'cold') return round2(rng.uniform(COLD_CANTHUS.min, COLD_CANTHUS.max));
  for (let tries = 0; tries < 100; tries++) {
    const v = rng.normal(NORMAL_CANTHUS.mean, NORMAL_CANTHUS.sigma);
    if (v >= NORMAL_CANTHUS.min && v <= NORMAL_CANTHUS.max) return round2(v);
  }
  return NORMAL_CANTHUS.mean;
}

/**
 * Plan one person who becomes visible at `firstFrame`: face crop, temperatures and a short walk
 * toward the camera (the face grows from ~300 to ~330 px wide while drifting sideways a little).
 */
export function planPerson(
  rng: Rng,
  index: number,
  firstFrame: number,
  flags: { fever: boolean; cold: boolean; masked: boolean },
  faces: FaceLibrary,
  o: ResolvedSimOptions,
): Person {
  const label: MaskLabel = flags.masked ? 'mask' : 'no_mask';
  const candidates = faces.byLabel(label);
  if (candidates.length === 0) {
    throw new Error(`face crops in ${faces.dir}: none labelled "${label}", but maskRate ${o.maskRate} needs them`);
  }
  const crop = rng.pick(candidates);
  const canthusC = sampleCanthusC(rng, flags.cold ? 'cold' : flags.fever ? 'fever' : 'normal');

  const faceSkinC = canthusC - rng.uniform(1.0, 2.0);
  const ambient = o.ambientC;
  const look: ThermalLook = {
    faceSkinC,
    hairC: ambient + (faceSkinC - ambient) * rng.uniform(0.35, 0.55),
    maskC: flags.masked ? faceSkinC - rng.uniform(2.5, 4.0) : null,
    neckC: faceSkinC - rng.uniform(0.3, 0.8),
    clothesC: ambient + (faceSkinC - ambient) * rng.uniform(0.45, 0.65),
  };
  const shirtRgb: [number, number, number] = [rng.int(30, 150), rng.int(30, 150), rng.int(30, 150)];

  const [minFrames, maxFrames] = o.framesPerPerson;
  const count = rng.int(minFrames, maxFrames);
  if (o.traffic === 'walking') {
    const walk = planWalk(rng, firstFrame, count, crop.aspect, o);
    return {
      truth: { index, faceFile: crop.file, mask: label, canthusC, elevated: canthusC >= o.thresholdC, cold: flags.cold, frames: [walk.boxes[0]!.frame, walk.boxes.at(-1)!.frame], faceBoxes: walk.boxes, hostileFrames: walk.hostile },
      crop,
      look,
      shirtRgb,
    };
  }
  // Faces fill a good part of the frame at a screening gate (IEC 80601-2-59 wants many pixels
  // on the face), which also keeps the canthus several thermal pixels wide.
  // (UltraFace RFB-640 also finds these tight crops far more reliably at 300 px and up.)
  const w0 = rng.uniform(290, 305);
  const w1 = rng.uniform(320, 340);
  const cx0 = rng.uniform(280, 360);
  const dx = rng.uniform(-30, 30);
  const cy0 = rng.uniform(215, 240);
  const dy = rng.uniform(-10, 10);
  const faceBoxes: FaceBox[] = [];
  for (let k = 0; k < count; k++) {
    const s = count === 1 ? 1 : k / (count - 1);
    const w = Math.round(w0 + (w1 - w0) * s);
    const h = Math.round(w * crop.aspect);
    const bob = 3 * Math.sin(k * 1.9 + index); // head bobbing while walking
    const cx = cx0 + dx * s + rng.uniform(-2, 2);
    const cy = cy0 + dy * s + bob;
    // Keep the whole face in the frame (tall crops of big faces would leave it at the top).
    const y = Math.min(Math.max(0, Math.round(cy - h / 2)), 480 - h);
    faceBoxes.push({ frame: firstFrame + k, x: Math.round(cx - w / 2), y, w, h });
  }

  return {
    truth: {
      index,
      faceFile: crop.file,
      mask: label,
      canthusC,
      elevated: canthusC >= o.thresholdC,
      cold: flags.cold,
      frames: [firstFrame, firstFrame + count - 1],
      faceBoxes,
      hostileFrames: [],
    },
    crop,
    look,
    shirtRgb,
  };
}

/** Visible frame size the walking paths are planned in. */
const FRAME = { width: 640, height: 480 } as const;
/** A walking face is in view while at least this share of its box is inside the frame. */
const MIN_INSIDE_SHARE = 0.4;

const insideShare = (b: Omit<FaceBox, 'frame'>): number => {
  const w = Math.max(0, Math.min(FRAME.width, b.x + b.w) - Math.max(0, b.x));
  const h = Math.max(0, Math.min(FRAME.height, b.y + b.h) - Math.max(0, b.y));
  return (w * h) / (b.w * b.h);
};

/**
 * A walk through the frame: the face moves sideways and grows (toward the camera) by
 * `speedPxPerFrame` in all, bobs with each step, and may start or end part-way out of the frame
 * (edge occlusion). Frames where less than 40 % of the face is inside are not part of the walk.
 * Some frames are motion-blurred (`hostile`), and some people have a run of them (a dropout).
 */
export function planWalk(
  rng: Rng,
  firstFrame: number,
  count: number,
  aspect: number,
  o: Pick<ResolvedSimOptions, 'faceWidthPx' | 'speedPxPerFrame' | 'hostileFrameRate' | 'dropoutRate'>,
): { boxes: FaceBox[]; hostile: number[] } {
  const [wMin, wMax] = o.faceWidthPx;
  const [vMin, vMax] = o.speedPxPerFrame;
  const speed = rng.uniform(vMin, vMax);
  // Growth: the part of the motion that is toward the camera (a box corner moves by ~growth).
  const growth = Math.min(12, speed * rng.uniform(0, 0.45));
  const lateral = (speed - growth) * (rng.next() < 0.5 ? -1 : 1);
  const wEnd = rng.uniform(wMin, wMax);
  const w0 = Math.max(wMin, Math.min(wMax, wEnd - growth * (count - 1)));
  // People leave by the frame edge they walk toward (passing the camera), so the walk ends half
  // out of the frame; where it starts follows from speed and length (faces come into view in the
  // middle when they start slow and far, or enter from the other edge when fast).
  const exitX = lateral > 0 ? FRAME.width + 0.1 * wEnd : -0.1 * wEnd;
  const cxMid = rng.uniform(0.25, 0.75) * FRAME.width;
  const cx0 = exitX - lateral * (count - 1);
  const cy0 = rng.uniform(0.4, 0.55) * FRAME.height;
  const bobPx = rng.uniform(2, 8);
  const bobPhase = rng.uniform(0, 2 * Math.PI);
  const boxes: FaceBox[] = [];
  for (let k = 0; k < count; k++) {
    const w = Math.round(Math.min(wMax, w0 + growth * k));
    const h = Math.round(w * aspect);
    // About two steps a second at 8.7 fps; the head sinks a little as the person comes closer.
    const cy = cy0 + bobPx * Math.sin(k * 1.45 + bobPhase) + 0.3 * growth * k;
    const y = Math.min(Math.max(0, Math.round(cy - h / 2)), FRAME.height - h);
    const box = { frame: 0, x: Math.round(cx0 + lateral * k - w / 2), y, w, h };
    if (insideShare(box) >= MIN_INSIDE_SHARE) boxes.push(box);
    else if (boxes.length > 0) break; // walked out
    else if (k === count - 1) break;
  }
  if (boxes.length === 0) {
    // Never far enough inside: walk the middle of the frame instead (rare, very fast people).
    const w = Math.round(w0);
    boxes.push({ frame: 0, x: Math.round(cxMid - w / 2), y: Math.round(cy0 - (w * aspect) / 2), w, h: Math.round(w * aspect) });
  }
  boxes.forEach((b, k) => (b.frame = firstFrame + k));
  const hostile = new Set<number>();
  for (const b of boxes) if (rng.next() < o.hostileFrameRate) hostile.add(b.frame);
  if (rng.next() < o.dropoutRate && boxes.length > 4) {
    const run = rng.int(3, Math.min(8, boxes.length - 2));
    const start = rng.int(1, boxes.length - run);
    for (let k = start; k < start + run; k++) hostile.add(boxes[k]!.frame);
  }
  return { boxes, hostile: [...hostile].sort((a, b) => a - b) };
}

/** Moves a planned person to start at `firstFrame` (queue scheduling). */
export function shiftPerson(p: Person, firstFrame: number): void {
  const d = firstFrame - p.truth.frames[0];
  p.truth.frames = [p.truth.frames[0] + d, p.truth.frames[1] + d];
  for (const b of p.truth.faceBoxes) b.frame += d;
  p.truth.hostileFrames = p.truth.hostileFrames.map((f) => f + d);
}

/**
 * Whether two people in the frame at once would hide each other: their faces closer than a small
 * gap sideways, or the farther (smaller) face reaching down into the nearer one's shoulders.
 */
export function facesConflict(a: Omit<FaceBox, 'frame'>, b: Omit<FaceBox, 'frame'>): boolean {
  const gap = Math.max(a.x, b.x) - Math.min(a.x + a.w, b.x + b.w);
  if (gap < 0.15 * Math.max(a.w, b.w)) return true;
  const [near, far] = a.w >= b.w ? [a, b] : [b, a];
  const shoulders = { x1: near.x + near.w / 2 - 1.2 * near.w, x2: near.x + near.w / 2 + 1.2 * near.w, y1: near.y + 1.15 * near.h };
  return far.y + far.h > shoulders.y1 && far.x + far.w > shoulders.x1 && far.x < shoulders.x2;
}
