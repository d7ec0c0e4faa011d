/**
 * Thermal as a second pair of eyes, on the real model: people whose visible face is blurred in
 * nearly every frame (the model misses them) are still screened once each, from the thermal image
 * (`detectedBy: thermal`, mask unknown, the temperature right); with the zoomed re-detection off
 * and on. Real simulator frames, real ONNX model.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadAgentConfig } from '../src/config/load.js';
import { createDetector } from '../src/detector-setup.js';
import { pipelineOptionsFromConfig } from '../src/pipeline/from-config.js';
import { ScreeningPipeline, type ScreeningResult } from '../src/pipeline/pipeline.js';
import { simulateScene } from '../src/sources/sim/index.js';
import { personOf } from '../src/sources/sim/score.js';
import { agentEnv, FACES_DIR, haveShared } from './helpers/shared.js';

describe.skipIf(!haveShared)('thermal fusion (real model)', () => {
  let work: string;
  beforeAll(async () => {
    work = await mkdtemp(path.join(tmpdir(), 'fusion-'));
  });
  afterAll(async () => {
    await rm(work, { recursive: true, force: true });
  });

  it('screens people the visible model misses from the thermal image, once each, with mask unknown', async () => {
    const scene = await simulateScene({
      facesDir: FACES_DIR,
      traffic: 'walking',
      people: 6,
      seed: 31,
      feverRate: 0.5,
      hostileFrameRate: 0.9,
      dropoutRate: 1,
      queueRate: 0,
      faceWidthPx: [120, 200],
      framesPerPerson: [10, 12],
    });
    const config = await loadAgentConfig(undefined, agentEnv(path.join(work, 'models')), { site: 'local', checkpoint: 'fusion' });
    const { detector, model } = await createDetector(config.model);
    try {
      for (const zoomRedetect of [false, true]) {
        const pipeline = new ScreeningPipeline(scene.geometry, detector, { ...pipelineOptionsFromConfig(config, model), zoomRedetect });
        const results: ScreeningResult[] = [];
        for await (const pair of scene.frames) results.push(...(await pipeline.process(pair)));
        results.push(...(await pipeline.finish()));
        const owners = results.map((r) => personOf(scene.truth.people, { ...r.screening, where: r.where }));
        expect(owners.every((p) => p !== null)).toBe(true);
        expect(new Set(owners.map((p) => p!.index)).size).toBe(scene.truth.people.length); // one decision per person
        expect(results).toHaveLength(scene.truth.people.length);
        const thermalOnly = results.filter((r) => r.screening.detectedBy === 'thermal');
        if (!zoomRedetect) expect(thermalOnly.length).toBeGreaterThan(0);
        for (const r of thermalOnly) expect(r.screening.mask).toBe('unknown');
        results.forEach((r, i) => {
          expect(r.screening.decision).toBe(owners[i]!.elevated ? 'secondary_check' : 'pass');
          expect(Math.abs(r.screening.temperatureC! - owners[i]!.canthusC)).toBeLessThan(0.3);
        });
      }
    } finally {
      await detector.close();
    }
  }, 180_000);
});
