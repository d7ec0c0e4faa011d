/**
 * `edge-agent doctor`: the judgement (pure, over facts) and the whole command on this machine:
 * a missing serial port and a model file that does not match its manifest are named with what
 * to do; a box with a verified model, a simulated camera and a real broker is ready.
 */
import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getManifest } from '@checkpoint/models';
import { startMosquitto, type MosquittoServer } from '@checkpoint/test-support';
import { main, type CliIo } from '../src/cli.js';
import { loadAgentConfig } from '../src/config/load.js';
import { evaluate, formatReport, type DoctorFacts } from '../src/doctor.js';
import { haveShared, MODELS_MIRROR } from './helpers/shared.js';

function capture(env: Record<string, string | undefined>) {
  const out: string[] = [];
  const err: string[] = [];
  const io: CliIo = { stdout: (l) => out.push(l), stderr: (l) => err.push(l), env };
  return { io, out, err };
}

const healthy: DoctorFacts = {
  serialPorts: [],
  camera: { ms: 12 },
  model: { name: 'masked-face-640', file: 'm.onnx', path: '/m/m.onnx', state: 'ok', expectedSha256: 'a'.repeat(64) },
  clockSynchronised: true,
  disk: { freeBytes: 20 * 2 ** 30, totalBytes: 32 * 2 ** 30 },
  writes: { device: 'mmcblk0p2', bytesPerDay: 2 * 2 ** 30, uptimeS: 86_400 },
  broker: { ms: 5 },
  cpuTemperatureC: 52,
};

describe('doctor verdicts', () => {
  it('a healthy box is ready', async () => {
    const config = await loadAgentConfig(undefined, {}, { site: 'hq', checkpoint: 'gate-1' });
    const { lines, ready } = formatReport(evaluate(config, healthy));
    expect(ready).toBe(true);
    expect(lines.at(-1)).toBe('ready');
  });

  it('says what to do for a port the user may not open, an SD card written too hard, an unsynchronised clock and a hot CPU', async () => {
    const config = await loadAgentConfig(undefined, {}, { site: 'hq', checkpoint: 'gate-1', source: { thermal: { kind: 'gy-mcu90640', path: '/dev/ttyUSB0' } } });
    const checks = evaluate(config, {
      ...healthy,
      serialPorts: [{ path: '/dev/ttyUSB0', error: 'EACCES' }],
      camera: null,
      clockSynchronised: false,
      writes: { device: 'mmcblk0p2', bytesPerDay: 30 * 2 ** 30, uptimeS: 3600 },
      cpuTemperatureC: 83.5,
    });
    const byName = Object.fromEntries(checks.map((c) => [c.name, c]));
    expect(byName['serial /dev/ttyUSB0']).toMatchObject({ verdict: 'fail', fix: expect.stringContaining('dialout') });
    expect(byName['camera']!.verdict).toBe('skip');
    expect(byName['clock']).toMatchObject({ verdict: 'fail', fix: expect.stringContaining('timedatectl set-ntp true') });
    expect(byName['write budget']).toMatchObject({ verdict: 'warn', detail: expect.stringContaining('30.0 GiB/day') });
    expect(byName['cpu temperature']).toMatchObject({ verdict: 'fail', detail: '83.5 °C: the CPU throttles' });
    const report = formatReport(checks);
    expect(report.ready).toBe(false);
    expect(report.lines.at(-1)).toBe('NOT READY: 3 to fix, 1 to look at');
  });

  it('a disk write rate that would wear out an SD card is fine on an SSD', async () => {
    const config = await loadAgentConfig(undefined, {}, { site: 'hq', checkpoint: 'gate-1' });
    const [check] = evaluate(config, { ...healthy, writes: { device: 'sda1', bytesPerDay: 30 * 2 ** 30, uptimeS: 3600 } }).filter((c) => c.name === 'write budget');
    expect(check!.verdict).toBe('ok');
  });
});

describe.skipIf(!haveShared)('edge-agent doctor on this machine', () => {
  let work: string;
  let broker: MosquittoServer;
  beforeAll(async () => {
    work = await mkdtemp(path.join(tmpdir(), 'edge-doctor-'));
    broker = await startMosquitto({ users: { 'edge-hq-gate-1': 'doctor-test-password' } });
  });
  afterAll(async () => {
    await broker?.stop();
    await rm(work, { recursive: true, force: true });
  });

  it('reports a missing serial port and an unverified model clearly, and exits 1', async () => {
    const models = path.join(work, 'models-bad');
    await mkdir(models, { recursive: true });
    // A model file that is there but is not what the manifest says (a truncated copy, say).
    await writeFile(path.join(models, getManifest('masked-face-640').file), Buffer.alloc(4096, 7));
    const missingPort = path.join(work, 'ttyUSB-not-plugged');
    const configFile = path.join(work, 'bad.yaml');
    await writeFile(
      configFile,
      [
        'site: hq',
        'checkpoint: gate-1',
        `dataDir: ${work}`,
        'profile: pi',
        `mqtt: { url: '${broker.url}', username: edge-hq-gate-1, password: wrong-password }`,
        `source: { thermal: { kind: gy-mcu90640, path: ${missingPort} } }`,
        `model: { dir: ${models} }`,
      ].join('\n'),
    );
    const run = capture({});
    expect(await main(['doctor', '--config', configFile, '--timeout', '5'], run.io)).toBe(1);
    const text = run.out.join('\n');
    expect(text).toContain(`FAIL  serial ${missingPort}: serial port ${missingPort} does not exist`);
    expect(text).toMatch(/fix: plug in the thermal camera board/);
    expect(text).toContain('FAIL  model: model masked-face-640 is NOT verified');
    expect(text).toContain(`fix: delete ${path.join(models, getManifest('masked-face-640').file)} and run checkpoint-models fetch masked-face-640`);
    expect(text).toMatch(/FAIL {2}broker: .*[Nn]ot authori[sz]ed/);
    expect(text).toContain('ok    profile: pi: masked-face-640, 3 threads, 1 frames in flight');
    expect(text).not.toContain('wrong-password');
    expect(run.out.at(-1)).toMatch(/^NOT READY: [3-9] to fix/);
  });

  it('a simulator without its face crops is a camera failure, not a crash', async () => {
    const configFile = path.join(work, 'no-faces.yaml');
    await writeFile(
      configFile,
      ['site: hq', 'checkpoint: gate-1', `dataDir: ${work}`, `mqtt: { url: '${broker.url}' }`, `source: { thermal: { kind: sim, facesDir: ${path.join(work, 'no-such-faces')} } }`].join('\n'),
    );
    const run = capture({});
    expect(await main(['doctor', '--config', configFile, '--timeout', '5'], run.io)).toBe(1);
    expect(run.out.join('\n')).toMatch(/FAIL {2}camera: no frame from sim: face crops: cannot read .*no-such-faces/);
  });

  it('a box with a verified model, an answering camera and a reachable broker passes those checks', async () => {
    const models = path.join(work, 'models-good');
    await mkdir(models, { recursive: true });
    const manifest = getManifest('masked-face-640');
    await copyFile(path.join(MODELS_MIRROR, manifest.file), path.join(models, manifest.file));
    const configFile = path.join(work, 'good.yaml');
    await writeFile(
      configFile,
      [
        'site: hq',
        'checkpoint: gate-1',
        `dataDir: ${work}`,
        `mqtt: { url: '${broker.url}', username: edge-hq-gate-1, password: doctor-test-password }`,
        'source: { thermal: { kind: sim, people: 2, realtime: false } }',
        `model: { dir: ${models} }`,
      ].join('\n'),
    );
    const run = capture({});
    await main(['doctor', '--config', configFile, '--json'], run.io);
    const report = JSON.parse(run.out[0]!) as { checks: { name: string; verdict: string }[] };
    const verdicts = Object.fromEntries(report.checks.map((c) => [c.name, c.verdict]));
    expect(verdicts).toMatchObject({ model: 'ok', camera: 'ok', broker: 'ok', disk: 'ok' });
  });
});
