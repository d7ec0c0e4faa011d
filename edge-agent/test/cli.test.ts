import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { validatePayload } from '@checkpoint/protocol';
import { main, type CliIo } from '../src/cli.js';
import { agentEnv, FACES_DIR, haveShared } from './helpers/shared.js';

function capture(env: Record<string, string | undefined>) {
  const out: string[] = [];
  const err: string[] = [];
  const io: CliIo = { stdout: (l) => out.push(l), stderr: (l) => err.push(l), env };
  return { io, out, err };
}

describe.skipIf(!haveShared)('edge-agent CLI', () => {
  let work: string;
  let env: Record<string, string | undefined>;
  beforeAll(async () => {
    work = await mkdtemp(path.join(tmpdir(), 'edge-cli-'));
    env = agentEnv(path.join(work, 'models'));
  });
  afterAll(async () => {
    await rm(work, { recursive: true, force: true });
  });

  it('simulate writes a replay folder and truth; replay prints one valid screening per line and nothing else', async () => {
    const dir = path.join(work, 'scene');
    const sim = capture(env);
    expect(await main(['simulate', '--out', dir, '--people', '6', '--fever-rate', '0.5', '--seed', '4', '--faces', FACES_DIR], sim.io)).toBe(0);
    const truth = JSON.parse(await readFile(path.join(dir, 'truth.json'), 'utf8'));
    expect(truth.people).toHaveLength(6);
    expect(sim.out).toEqual([]);

    const run = capture(env);
    expect(await main(['replay', dir, '--json'], run.io)).toBe(0);
    expect(run.out.length).toBeGreaterThanOrEqual(5);
    for (const line of run.out) {
      const { replayFrames, ...screening } = JSON.parse(line);
      expect(validatePayload('screening', screening).ok).toBe(true);
      expect(replayFrames[0]).toBeLessThanOrEqual(replayFrames[1]);
    }
    const flagged = run.out.map((l) => JSON.parse(l)).filter((s) => s.decision === 'secondary_check');
    expect(flagged.length).toBe(truth.people.filter((p: { elevated: boolean }) => p.elevated).length);
  }, 120_000);

  it('replay of a truncated visible JPEG exits 1 and names the file', async () => {
    const dir = path.join(work, 'scene-corrupt');
    expect(await main(['simulate', '--out', dir, '--people', '2', '--seed', '5', '--faces', FACES_DIR], capture(env).io)).toBe(0);
    const file = path.join(dir, 'frames', '000007.jpg');
    const whole = await readFile(file);
    await writeFile(file, whole.subarray(0, whole.length >> 1)); // the header survives, the scan does not
    const run = capture(env);
    expect(await main(['replay', dir, '--json'], run.io)).toBe(1);
    expect(run.err.join('\n')).toContain(file);
  }, 120_000);

  it('classify prints one line per image with the largest face state', async () => {
    const files = ['with_mask_000.jpg', 'without_mask_001.jpg'].map((f) => path.join(FACES_DIR, f));
    const c = capture(env);
    expect(await main(['classify', '--json', ...files], c.io)).toBe(0);
    expect(c.out.map((l) => JSON.parse(l)).map((r) => [path.basename(r.file), r.mask])).toEqual([
      ['with_mask_000.jpg', 'mask'],
      ['without_mask_001.jpg', 'no_mask'],
    ]);
  }, 60_000);

  it('names a bad config field and exits 2; a missing file exits 1 with its name', async () => {
    const config = path.join(work, 'bad.yaml');
    await writeFile(config, 'site: hospital-a\ncheckpoint: gate-1\nscreening:\n  treshold: 37.5\n');
    const bad = capture(env);
    expect(await main(['replay', path.join(work, 'scene'), '--config', config], bad.io)).toBe(2);
    expect(bad.err.join('\n')).toMatch(/bad\.yaml: \/screening\/treshold: unexpected field/);

    const range = path.join(work, 'range.yaml');
    await writeFile(range, 'site: hospital-a\ncheckpoint: gate-1\nscreening:\n  thresholdC: 45\n');
    const r = capture(env);
    expect(await main(['replay', path.join(work, 'scene'), '--config', range], r.io)).toBe(2);
    expect(r.err.join('\n')).toMatch(/\/screening\/thresholdC/);

    const missing = capture(env);
    expect(await main(['classify', '--json', path.join(work, 'nope.jpg')], missing.io)).toBe(1);
    expect(missing.err.join('\n')).toMatch(/nope\.jpg/);
    expect(missing.out).toEqual([]);
  }, 60_000);

  it('calibrate fits point pairs and exits 1 when it refuses a bad set', async () => {
    const good = path.join(work, 'pairs.csv');
    // thermal = 0.25 * visible + (2, 1.5), with a little noise
    await writeFile(good, 'vx,vy,tx,ty\n100,100,27.1,26.4\n500,100,127.0,26.6\n500,400,126.9,101.4\n100,400,27.0,101.6\n300,250,77.1,64.0\n');
    const ok = capture(env);
    expect(await main(['calibrate', '--pairs', good, '--json'], ok.io)).toBe(0);
    const report = JSON.parse(ok.out.join(''));
    expect(report.homography.rmsPx).toBeLessThan(0.1);
    const bad = path.join(work, 'bad-pairs.csv');
    await writeFile(bad, 'vx,vy,tx,ty\n100,100,27.1,26.4\n500,100,127.0,101.4\n500,400,126.9,26.6\n100,400,27.0,101.6\n300,250,77.1,64.0\n');
    const refused = capture(env);
    expect(await main(['calibrate', '--pairs', bad], refused.io)).toBe(1);
    expect(refused.err.join('\n') + refused.out.join('\n')).toMatch(/worst|RMS/);
  });

  it('bench prints fps, per-stage times, bare inference and RSS, one frame at a time and in flight', async () => {
    const images = path.join(work, 'bench-images');
    await mkdir(images);
    for (const f of ['with_mask_000.jpg', 'without_mask_001.jpg']) await copyFile(path.join(FACES_DIR, f), path.join(images, f));
    const c = capture(env);
    const args = ['bench', '--json', '--images', images, '--iterations', '1', '--scene-people', '2', '--in-flight', '2'];
    expect(await main(args, c.io)).toBe(0);
    expect(c.out).toHaveLength(1);
    const result = JSON.parse(c.out[0] as string);
    expect(result.model).toBe('masked-face-640');
    for (const vision of [result.vision, result.visionInFlight]) {
      expect(vision.frames).toBe(2);
      expect(vision.fps).toBeGreaterThan(0);
      expect(vision.bareInferenceMs.median).toBeGreaterThan(0);
      for (const stage of ['decodeMs', 'preprocessMs', 'inferenceMs', 'postprocessMs', 'totalMs']) expect(vision.stages[stage].median).toBeGreaterThan(0);
      expect(vision.rssMiB).toBeGreaterThan(10);
    }
    expect([result.vision.inFlight, result.visionInFlight.inFlight]).toEqual([1, 2]);
    expect(result.pipeline.frames).toBeGreaterThan(10);
    expect(Object.keys(result.pipeline.stagesMs)).toEqual(expect.arrayContaining(['decode', 'inference', 'thermometry', 'decision']));
  }, 120_000);

  it('refuses unknown commands and bad option values', async () => {
    expect(await main(['bogus'], capture(env).io)).toBe(2);
    const c = capture(env);
    expect(await main(['simulate', '--out', path.join(work, 'x'), '--fever-rate', '2'], c.io)).toBe(2);
    expect(c.err.join('\n')).toMatch(/--fever-rate must be a number from 0 to 1/);
  });
});
