/**
 * UltraFace output decoding: per-prior softmax scores and boxes already in normalised corner
 * form -> thresholded, hard-NMS'd, top-k detections. Pure; works on the raw output arrays.
 */
import { iou } from '../geometry.js';
import type { Box, FaceDetection, MaskState } from './types.js';

/** Which score columns mean what, taken from the manifest's labels. */
export interface ClassLayout {
  /** Number of score columns per prior (labels.length). */
  numClasses: number;
  /** Column of the unmasked face class. */
  face: number;
  /** Column of the masked face class, or null for face-only models. */
  masked: number | null;
}

export function classLayoutFromLabels(labels: readonly string[]): ClassLayout {
  const face = labels.indexOf('face');
  const masked = labels.indexOf('masked_face');
  if (face < 0) {
    throw new Error(`model labels must include "face", got [${labels.join(', ')}]`);
  }
  return { numClasses: labels.length, face, masked: masked < 0 ? null : masked };
}

/** A face is masked when the model gives the masked class at least half its face probability. */
export const maskState = (maskScore: number | null): MaskState =>
  maskScore === null ? 'unknown' : maskScore >= 0.5 ? 'mask' : 'no_mask';

/** A detection still in model coordinates (box normalised to the model input). */
export interface ModelDetection {
  box: Box;
  score: number;
  maskScore: number | null;
}

export interface DecodeOptions {
  scoreThreshold: number;
  iouThreshold: number;
  /** Keep at most this many detections after NMS. */
  maxFaces: number;
  /** Only the best this-many candidates enter NMS (upstream: 200). */
  candidateLimit?: number;
}

/**
 * Greedy hard NMS: visit candidates best first, drop every later one overlapping a kept box by
 * more than `iouThreshold`. Returns the kept indices, best first, at most `limit`.
 */
export function hardNms(boxes: readonly Box[], scores: ArrayLike<number>, iouThreshold: number, limit = Infinity): number[] {
  const order = Array.from(boxes.keys()).sort((a, b) => (scores[b] as number) - (scores[a] as number));
  const kept: number[] = [];
  for (const i of order) {
    if (kept.length >= limit) break;
    const box = boxes[i] as Box;
    if (kept.every((k) => iou(boxes[k] as Box, box) <= iouThreshold)) kept.push(i);
  }
  return kept;
}

/**
 * Turn UltraFace outputs into detections. The face score of a prior is the sum of its face
 * classes (a masked face is a face), so NMS runs once over all faces rather than per class, and
 * the mask state comes from how that probability splits between face and masked_face.
 */
export function decodeUltraface(
  scores: Float32Array,
  boxes: Float32Array,
  layout: ClassLayout,
  { scoreThreshold, iouThreshold, maxFaces, candidateLimit = 200 }: DecodeOptions,
): ModelDetection[] {
  const { numClasses, face, masked } = layout;
  const priors = boxes.length / 4;
  if (!Number.isInteger(priors) || scores.length !== priors * numClasses) {
    throw new Error(
      `model outputs disagree: ${scores.length} scores for ${numClasses} classes but ${boxes.length / 4} boxes`,
    );
  }
  const candidates: ModelDetection[] = [];
  for (let i = 0; i < priors; i++) {
    const pFace = scores[i * numClasses + face] as number;
    const pMasked = masked === null ? 0 : (scores[i * numClasses + masked] as number);
    const score = pFace + pMasked;
    if (score <= scoreThreshold) continue;
    const b = i * 4;
    candidates.push({
      box: { x1: boxes[b] as number, y1: boxes[b + 1] as number, x2: boxes[b + 2] as number, y2: boxes[b + 3] as number },
      score,
      maskScore: masked === null ? null : pMasked / score,
    });
  }
  candidates.sort((a, b) => b.score - a.score);
  if (candidates.length > candidateLimit) candidates.length = candidateLimit;
  const kept = hardNms(
    candidates.map((c) => c.box),
    candidates.map((c) => c.score),
    iouThreshold,
    maxFaces,
  );
  return kept.map((i) => candidates[i] as ModelDetection);
}

/**
 * Merge the faces found in several views of one image (e.g. different paddings), all in the
 * image's pixels: greedy clustering by IoU, best score first. Each cluster keeps its best box
 * and score; its mask score is the score-weighted mean of the cluster's mask scores, so one
 * view's confident mistake is outvoted by the others.
 */
export function fuseViews(views: readonly (readonly FaceDetection[])[], iouThreshold: number): FaceDetection[] {
  const all = views.flat().sort((a, b) => b.score - a.score);
  const used = new Array<boolean>(all.length).fill(false);
  const fused: FaceDetection[] = [];
  for (let i = 0; i < all.length; i++) {
    if (used[i]) continue;
    const best = all[i] as FaceDetection;
    used[i] = true;
    let weight = best.score;
    let weightedMask = best.score * (best.maskScore ?? 0);
    for (let j = i + 1; j < all.length; j++) {
      const other = all[j] as FaceDetection;
      if (used[j] || iou(best.box, other.box) <= iouThreshold) continue;
      used[j] = true;
      weight += other.score;
      weightedMask += other.score * (other.maskScore ?? 0);
    }
    const maskScore = best.maskScore === null ? null : weightedMask / weight;
    fused.push({
      box: best.box,
      score: best.score,
      mask: maskState(maskScore),
      maskScore,
    });
  }
  return fused;
}
