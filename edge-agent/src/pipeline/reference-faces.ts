/**
 * Reference faces for a new model's self-test (pure). The pipeline keeps a few recent frames in
 * which the running model found a confident face (in memory only, never written); before a
 * roll-out switches models, the new one must find those faces too.
 *
 * Several faces, not one: a sound model can score one particular face (a mask, a turned head)
 * below the confirm score, and a self-test on that face alone refused good models at random
 * (2 of 4 roll-outs in a browser test). A broken model (wrong preprocessing, garbage outputs)
 * finds none of them.
 */
import { iou, type Box } from '../geometry.js';

export interface ReferenceFace {
  encoded: Buffer;
  box: Box;
  /** When the frame was taken (ms), to keep faces from different moments, not one person's run. */
  atMs: number;
}

export const REFERENCE_FACES_KEPT = 5;
/** A new reference face is kept only this long after the previous one. */
export const REFERENCE_FACE_SPACING_MS = 1_000;

/** Adds a face to the ring of recent references (in place): newest last, oldest dropped. */
export function keepReferenceFace(kept: ReferenceFace[], face: ReferenceFace, max = REFERENCE_FACES_KEPT, spacingMs = REFERENCE_FACE_SPACING_MS): void {
  const last = kept.at(-1);
  if (last && face.atMs - last.atMs < spacingMs && face.atMs >= last.atMs) return;
  kept.push(face);
  while (kept.length > max) kept.shift();
}

/** What the new model found on one reference frame: its boxes and scores. */
export interface SelfTestObservation {
  reference: Box;
  faces: ReadonlyArray<{ box: Box; score: number }>;
}

export interface SelfTestVerdict {
  ok: boolean;
  /** For the command's ack and the log: how many were found, best score. */
  detail: string;
}

/**
 * Passes when the new model finds (IoU ≥ 0.5) the reference face in at least half of the frames
 * and confirms (score ≥ confirmScore) at least one of them.
 */
export function judgeSelfTest(observations: readonly SelfTestObservation[], confirmScore: number, minIou = 0.5): SelfTestVerdict {
  let found = 0;
  let bestScore = 0;
  let bestOverlap = 0;
  for (const o of observations) {
    const matches = o.faces.filter((f) => iou(f.box, o.reference) >= minIou);
    if (matches.length > 0) found += 1;
    for (const m of matches) bestScore = Math.max(bestScore, m.score);
    for (const f of o.faces) bestOverlap = Math.max(bestOverlap, iou(f.box, o.reference));
  }
  const n = observations.length;
  const ok = n > 0 && found * 2 >= n && bestScore >= confirmScore;
  const detail = `found ${found} of ${n} reference faces, best score ${bestScore.toFixed(2)}${found === 0 ? ` (best overlap ${bestOverlap.toFixed(2)})` : ''}`;
  return { ok, detail };
}
