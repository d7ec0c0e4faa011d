/**
 * End to end on the simulator: 200 people (10 % fever, 50 % masked, camera drift up to 1.5 °C)
 * rendered into a replay folder, processed by the real pipeline with the real ONNX model, and
 * every decision compared with the person's ground truth.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { replayFolder, type CliIo } from '../src/cli.js';
import type { ScreeningResult } from '../src/pipeline/pipeline.js';
import { simulateToReplay, type SimTruth } from '../src/sources/sim/index.js';
import { agentEnv, FACES_DIR, haveShared } from './helpers/shared.js';

type Person = SimTruth['people'][number];

function expectedOf(p: Person): { decision: string; reasons: string[] } {
  if (p.cold) return { decision: 'invalid', reasons: ['too_cold_retry'] };
  return p.elevated ? { decision: 'secondary_check', reasons: ['elevated_temperature'] } : { decision: 'pass', reasons: [] };
}

/** Each decision belongs to the person whose visible frames contain its frames. */
function matchDecisions(people: Person[], results: ScreeningResult[]) {
  const byPerson = new Map<number, ScreeningResult[]>();
  const orphans: ScreeningResult[] = [];
  for (const r of results) {
    const [first, last] = r.replayFrames;
    const p = people.find((q) => first >= q.frames[0] && last <= q.frames[1]);
    if (p) byPerson.set(p.index, [...(byPerson.get(p.index) ?? []), r]);
    else orphans.push(r);
  }
  return { byPerson, orphans };
}

describe.skipIf(!haveShared)('replay of simulated people (real model, real pipeline)', () => {
  let work: string;
  beforeAll(async () => {
    work = await mkdtemp(path.join(tmpdir(), 'e2e-replay-'));
  });
  afterAll(async () => {
    await rm(work, { recursive: true, force: true });
  });

  async function run(options: Parameters<typeof simulateToReplay>[1], configFile?: string) {
    const dir = path.join(work, `scene-${options?.seed}-${options?.blackbody === false ? 'nobb' : 'bb'}`);
    const { truth } = await simulateToReplay(dir, { facesDir: FACES_DIR, ...options });
    const results: ScreeningResult[] = [];
    const io: CliIo = { stdout: () => {}, stderr: () => {}, env: agentEnv(path.join(work, 'models')) };
    await replayFolder(dir, configFile, io, (r) => results.push(r));
    return { truth, results };
  }

  it('decides once per person and gets at least 97 % of decisions and reasons right', async () => {
    const { truth, results } = await run({ people: 200, feverRate: 0.1, maskRate: 0.5, maxDriftC: 1.5, seed: 11 });
    const { byPerson, orphans } = matchDecisions(truth.people, results);

    let right = 0;
    let tp = 0;
    let fn = 0;
    let tn = 0;
    let fp = 0;
    const wrong: string[] = [];
    for (const p of truth.people) {
      const got = byPerson.get(p.index) ?? [];
      const want = expectedOf(p);
      const flagged = got.some((g) => g.screening.reasons.includes('elevated_temperature'));
      if (p.elevated && flagged) tp++;
      else if (p.elevated) fn++;
      else if (flagged) fp++;
      else tn++;
      const ok = got.length === 1 && got[0]!.screening.decision === want.decision && JSON.stringify(got[0]!.screening.reasons) === JSON.stringify(want.reasons);
      if (ok) right++;
      else wrong.push(`#${p.index} truth ${p.canthusC} ${p.mask} -> ${got.map((g) => `${g.screening.decision}/${g.screening.temperatureC}/${g.screening.reasons}`).join(' + ') || 'no decision'}`);
    }
    const accuracy = right / truth.people.length;
    const maskRight = truth.people.filter((p) => byPerson.get(p.index)?.[0]?.screening.mask === p.mask).length;
    const errors = truth.people
      .map((p) => ({ p, g: byPerson.get(p.index)?.[0]?.screening }))
      .filter((x) => x.g?.temperatureC != null)
      .map((x) => x.g!.temperatureC! - x.p.canthusC);
    const bias = errors.reduce((a, b) => a + b, 0) / errors.length;
    const sd = Math.sqrt(errors.reduce((a, b) => a + (b - bias) ** 2, 0) / errors.length);
    console.log(
      [
        `people ${truth.people.length}, decisions ${results.length}, orphan decisions ${orphans.length}`,
        `decision+reasons right: ${(accuracy * 100).toFixed(1)} %`,
        `elevated temperature: sensitivity ${((tp / (tp + fn)) * 100).toFixed(1)} % (${tp}/${tp + fn}), specificity ${((tn / (tn + fp)) * 100).toFixed(1)} % (${tn}/${tn + fp})`,
        `mask state right: ${((maskRight / truth.people.length) * 100).toFixed(1)} %`,
        `temperature error vs truth: bias ${bias.toFixed(3)} °C, sd ${sd.toFixed(3)} °C over ${errors.length} readings`,
        ...wrong.slice(0, 10).map((w) => `  wrong: ${w}`),
      ].join('\n'),
    );
    expect(orphans).toHaveLength(0);
    expect(truth.people.length).toBe(200);
    expect(accuracy).toBeGreaterThanOrEqual(0.97);
    expect(results.every((r) => r.screening.mode === 'absolute')).toBe(true);
    // Snapshots only for decisions a guard must see.
    expect(results.filter((r) => r.snapshot !== null).every((r) => r.screening.decision !== 'pass')).toBe(true);
    expect(results.filter((r) => r.screening.decision !== 'pass').every((r) => r.snapshot !== null && r.snapshot[0] === 0xff)).toBe(true);
  }, 600_000);

  it('without a blackbody works relative to a running baseline and never reports absolute numbers', async () => {
    const { truth, results } = await run({ people: 40, feverRate: 0.1, maskRate: 0.5, maxDriftC: 0.5, blackbody: false, seed: 5 });
    expect(results.length).toBeGreaterThanOrEqual(truth.people.length * 0.9);
    expect(results.every((r) => r.screening.mode === 'relative' && r.screening.blackbody === null)).toBe(true);
    // The first people train the baseline: invalid with no_reference and no temperature.
    const first = results[0]!.screening;
    expect(first).toMatchObject({ decision: 'invalid', reasons: ['no_reference'], temperatureC: null });
    // Once trained, fever cases are flagged relative to the baseline.
    const { byPerson } = matchDecisions(truth.people, results);
    const trained = truth.people.filter((p) => {
      const d = byPerson.get(p.index)?.[0]?.screening.decision;
      return d !== undefined && d !== 'invalid';
    });
    expect(trained.length).toBeGreaterThanOrEqual(truth.people.length * 0.7);
    const flaggedRight = trained.filter((p) => byPerson.get(p.index)![0]!.screening.reasons.includes('elevated_temperature') === p.elevated);
    expect(flaggedRight.length / trained.length).toBeGreaterThanOrEqual(0.9);
  }, 300_000);
});
