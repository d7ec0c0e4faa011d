/**
 * Scene simulator: people walk through a screening gate one at a time; each carries ground truth
 * (canthus temperature, fever, mask) so end-to-end accuracy can be measured. Deterministic from a
 * seed. See scene.ts for the frame stream and people.ts for the truth distributions.
 *
 * truth.json (next to a simulated replay's meta.json):
 *   {seed, options: {people, feverRate, maskRate, coldRate, ...every option in effect},
 *    thresholdC: 37.3, fps, frameCount, drift: {offsetC, components: [{amplitudeC, periodS, phase}]},
 *    people: [{index, faceFile, mask: 'mask'|'no_mask', canthusC, elevated, cold,
 *              frames: [first, last], faceBoxes: [{frame, x, y, w, h}]}]}
 * `faceBoxes` are where the face crop was drawn, in visible pixels; `drift` gives the camera
 * offset of every frame (driftAtFrame). Options sit under `options` because `people` there is a
 * count and here a list.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { writeReplayFolder } from '../replay.js';
import type { SimOptions } from './options.js';
import type { SimTruth } from './scene.js';
import { simulateScene } from './scene.js';

export { createSimSource, driftAtFrame, simGeometry, simulateScene } from './scene.js';
export type { SimScene, SimSourceOptions, SimTruth } from './scene.js';
export { DEFAULT_FACES_DIR, SIM_DEFAULTS, resolveSimOptions } from './options.js';
export type { ResolvedSimOptions, SimOptions } from './options.js';
export { COLD_CANTHUS, FEVER_CANTHUS, NORMAL_CANTHUS } from './people.js';
export type { FaceBox, PersonTruth } from './people.js';
export type { MaskLabel } from './faces.js';
export { canthusPixels, driftAt, MASK_TOP, personTemperatureAt } from './thermal.js';
export type { DriftModel } from './thermal.js';
export { applyHomography, invertHomography, mapBox } from './homography.js';

export const TRUTH_FILE = 'truth.json';

/**
 * Simulate a finite scene into a replay folder (`meta.json`, `frames/`) plus `truth.json`.
 * Resolves with the number of frames and the truth.
 */
export async function simulateToReplay(dir: string, options: SimOptions = {}): Promise<{ frameCount: number; truth: SimTruth }> {
  if (options.people !== undefined && !Number.isFinite(options.people)) {
    throw new RangeError('simulateToReplay: people must be a finite number (an endless scene never finishes writing)');
  }
  const scene = await simulateScene(options);
  const frameCount = await writeReplayFolder(dir, scene.geometry, scene.frames);
  await writeFile(join(dir, TRUTH_FILE), `${JSON.stringify(scene.truth, null, 1)}\n`);
  return { frameCount, truth: scene.truth };
}
