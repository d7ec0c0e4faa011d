import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { applyHomography } from '../src/geometry.js';
import { loadAgentConfig } from '../src/config/load.js';
import { parsePairs, parseRegion, runCalibrate } from '../src/calibration/command.js';

const TRUE_H = [0.25, 0.01, -2, -0.008, 0.25, 1.5, 1e-5, -2e-5, 1];
const CONFIG = `# Gate 2 edge box
site: hospital-a
checkpoint: gate-2 # main entrance
source:
  thermal:
    kind: sim
    realtime: false # replay as fast as possible
    people: 3
  geometry:
    ambientC: 22 # measured at install
screening:
  thresholdC: 37.5
`;

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'calibrate-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

function io() {
  const out: string[] = [];
  const err: string[] = [];
  return { out, err, io: { stdout: (l: string) => out.push(l), stderr: (l: string) => err.push(l), env: {} } };
}

/** Corner-like targets in the visible image, their thermal positions with ±0.2 px of error. */
function pairsCsv(swap = false): string {
  const rows = ['visible_x,visible_y,thermal_x,thermal_y'];
  const jitter = [0.2, -0.1, 0.15, -0.2, 0.05, 0.1, -0.15, 0.2, -0.05];
  let k = 0;
  const pts: number[][] = [];
  for (const vx of [60, 320, 580]) {
    for (const vy of [50, 240, 430]) {
      const t = applyHomography(TRUE_H, vx, vy);
      pts.push([vx, vy, t.x + jitter[k]!, t.y - jitter[(k + 4) % 9]!]);
      k++;
    }
  }
  if (swap) [pts[1]![2], pts[6]![2], pts[1]![3], pts[6]![3]] = [pts[6]![2]!, pts[1]![2]!, pts[6]![3]!, pts[1]![3]!];
  return [...rows, ...pts.map((p) => p.map((v) => v.toFixed(2)).join(','))].join('\n') + '\n';
}

describe('edge-agent calibrate (command function)', () => {
  it('fits point pairs from CSV and writes the homography into the YAML config, keeping comments', async () => {
    const pairsFile = path.join(dir, 'pairs.csv');
    const config = path.join(dir, 'agent.yaml');
    await writeFile(pairsFile, pairsCsv());
    await writeFile(config, CONFIG);
    const { out, err, io: cio } = io();
    expect(await runCalibrate({ pairs: pairsFile, write: config }, cio), err.join('\n')).toBe(0);
    expect(out.join('\n')).toMatch(/RMS reprojection error 0\.\d+ thermal px \(limit 1\)/);
    expect(out.at(-1)).toBe(`wrote source.geometry.homography to ${config}`);
    const text = await readFile(config, 'utf8');
    expect(text).toContain('# Gate 2 edge box');
    expect(text).toContain('checkpoint: gate-2 # main entrance');
    expect(text).toContain('ambientC: 22 # measured at install');
    const loaded = await loadAgentConfig(config, {});
    const h = loaded.source.geometry!.homography!;
    const p = applyHomography(h, 400, 300);
    const q = applyHomography(TRUE_H, 400, 300);
    expect(Math.hypot(p.x - q.x, p.y - q.y)).toBeLessThan(0.5);
    expect(loaded.screening.thresholdC).toBe(37.5);
  });

  it('refuses a swapped pair, names it, and leaves the config alone', async () => {
    const pairsFile = path.join(dir, 'pairs.csv');
    const config = path.join(dir, 'agent.yaml');
    await writeFile(pairsFile, pairsCsv(true));
    await writeFile(config, CONFIG);
    const { out, err, io: cio } = io();
    expect(await runCalibrate({ pairs: pairsFile, write: config }, cio)).toBe(1);
    expect(err[0]).toMatch(/homography refused: (RMS reprojection error [\d.]+ thermal px is above the limit of 1 px|the fitted mapping folds the image).*; worst is pair (2|7) /);
    expect(err.at(-1)).toBe(`calibrate: nothing written to ${config} (see above)`);
    expect(out.some((l) => l.includes('(worst)'))).toBe(true);
    expect(await readFile(config, 'utf8')).toBe(CONFIG);
  });

  it('reads JSON pairs and names bad entries', () => {
    const json = JSON.stringify({ pairs: [{ visible: { x: 1, y: 2 }, thermal: { x: 3, y: 4 } }, [5, 6, 7, 8]] });
    expect(parsePairs(json, 'p.json')).toEqual([
      { visible: { x: 1, y: 2 }, thermal: { x: 3, y: 4 } },
      { visible: { x: 5, y: 6 }, thermal: { x: 7, y: 8 } },
    ]);
    expect(() => parsePairs('[{"visible":{"x":1},"thermal":{"x":3,"y":4}}]', 'p.json')).toThrow(/p\.json: pair 1 .*expected 4 numbers/);
    expect(() => parsePairs('1,2,3,4\n5,6,x7,8\n', 'p.csv')).toThrow(/p\.csv: line 2: expected 4 numbers/);
    expect(parseRegion('10,20,4,4')).toEqual({ x: 10, y: 20, w: 4, h: 4 });
    expect(() => parseRegion('10,20,0,4')).toThrow(/--region must be x,y,w,h/);
  });

  it('checks the simulator blackbody, finds its region and writes it', async () => {
    const config = path.join(dir, 'agent.yaml');
    await writeFile(config, CONFIG.replace('people: 3', 'people: 40'));
    const { out, err, io: cio } = io();
    const code = await runCalibrate({ blackbody: true, seconds: 60, setC: 35, findRegion: true, config, write: config }, cio);
    console.log(out.join('\n'));
    // The simulated camera drifts by degrees; the reference judged against the scene does not.
    expect(out.join('\n')).toMatch(/raw reading \(camera \+ reference, corrected per frame\): drift -?\d/);
    expect(code, err.join('\n')).toBe(0);
    expect(err.join('\n')).toMatch(/proposed blackbody region/);
    expect(out.join('\n')).toMatch(/verdict: stable/);
    const loaded = await loadAgentConfig(config, {});
    const bb = loaded.source.geometry!.blackbody!;
    // The simulator's blackbody is 6x6 at (150,100): the proposal must lie inside it.
    expect(bb.setC).toBe(35);
    expect(bb.x).toBeGreaterThanOrEqual(150);
    expect(bb.y).toBeGreaterThanOrEqual(100);
    expect(bb.x + bb.w).toBeLessThanOrEqual(156);
    expect(bb.y + bb.h).toBeLessThanOrEqual(106);
  });
});
