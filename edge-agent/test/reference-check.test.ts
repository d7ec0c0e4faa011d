/**
 * The remote blackbody check (`calibrate` / `check-reference`): the pure sampler over thermal
 * frames, and the running agent (simulated cameras with a blackbody in view) answering the
 * command over a real broker (Mosquitto) with the check's verdict.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startMosquitto, waitFor, type MosquittoServer } from '@checkpoint/test-support';
import { checkpointTopics, parsePayload, type CommandAck } from '@checkpoint/protocol';
import { runAgent, type RunningAgent } from '../src/agent.js';
import { ReferenceCheck } from '../src/calibration/reference-check.js';
import { loadAgentConfig } from '../src/config/load.js';
import type { ThermalFrame } from '../src/frames.js';
import { agentEnv, FACES_DIR, haveShared } from './helpers/shared.js';

/** A 32x24 scene at 22 °C with a 4x4 blackbody at (2,2) reading `bbC`. */
function frame(tMs: number, bbC: number): ThermalFrame {
  const celsius = new Float32Array(32 * 24).fill(22);
  for (let y = 2; y < 6; y++) for (let x = 2; x < 6; x++) celsius[y * 32 + x] = bbC;
  return { width: 32, height: 24, celsius, timestampMs: tMs } as ThermalFrame;
}
const region = { x: 2, y: 2, w: 4, h: 4, setC: 35 };

describe('reference check (pure)', () => {
  it('samples the region for the asked time and judges it: steady → stable, its offset from the set point', async () => {
    const check = new ReferenceCheck();
    const done = check.run(region, 5, 0);
    expect(check.busy).toBe(true);
    for (let t = 0; t <= 5000; t += 125) check.onFrame(frame(t, 34.9 + (t % 250 ? 0.01 : -0.01)), t);
    const report = await done;
    expect(report.verdict).toBe('stable');
    expect(report.frames).toBe(41);
    expect(report.offsetC).toBeCloseTo(0.1, 2);
    expect(check.busy).toBe(false);
  });

  it('calls a drifting or off reference unstable and says why', async () => {
    const check = new ReferenceCheck();
    const done = check.run(region, 5, 0);
    for (let t = 0; t <= 5000; t += 125) check.onFrame(frame(t, 30 + t / 10_000), t);
    const report = await done;
    expect(report.verdict).toBe('unstable');
    expect(report.problems.join(' ')).toMatch(/from the set point 35 °C/);
  });

  it('refuses without a configured reference, while another check runs, and with a bad duration', async () => {
    const check = new ReferenceCheck();
    expect(() => check.run(null, 5, 0)).toThrow(/no reference blackbody is configured/);
    expect(() => check.run(region, 0, 0)).toThrow(/params.durationS: expected 1 to 600 seconds, got 0/);
    const first = check.run(region, 5, 0);
    expect(() => check.run(region, 5, 0)).toThrow(/already running/);
    check.abort('the camera stopped');
    await expect(first).rejects.toThrow('the camera stopped');
    // A region outside the frame fails the check instead of hanging.
    const outside = check.run({ ...region, x: 30 }, 5, 0);
    check.onFrame(frame(0, 35), 0);
    await expect(outside).rejects.toThrow(/does not fit/);
  });
});

const at = { site: 'hospital-a', checkpoint: 'gate-7' };

describe.skipIf(!haveShared)('the running agent answers "check reference blackbody"', () => {
  let work: string;
  let broker: MosquittoServer;
  let agent: RunningAgent;
  let ops: MqttClient;
  const acks: CommandAck[] = [];

  beforeAll(async () => {
    work = await mkdtemp(path.join(tmpdir(), 'agent-refcheck-'));
    broker = await startMosquitto({ users: { 'edge-gate-7': 'edge-secret-7', ops: 'ops-secret-7' } });
    ops = await mqtt.connectAsync(broker.url, { username: 'ops', password: 'ops-secret-7' });
    ops.on('message', (topic, payload) => {
      const a = parsePayload('cmd/ack', payload);
      if (topic === checkpointTopics.cmdAck(at) && a.ok) acks.push(a.value);
    });
    await ops.subscribeAsync(checkpointTopics.cmdAck(at), { qos: 1 });
    const env = {
      ...agentEnv(path.join(work, 'models')),
      CHECKPOINT_MQTT_URL: broker.url,
      CHECKPOINT_MQTT_USERNAME: 'edge-gate-7',
      CHECKPOINT_MQTT_PASSWORD: 'edge-secret-7',
      CHECKPOINT_DATA_DIR: path.join(work, 'agent'),
    };
    const config = await loadAgentConfig(undefined, env, {
      ...at,
      http: { port: 0 },
      source: { thermal: { kind: 'sim', realtime: true, facesDir: FACES_DIR, seed: 4 } },
    });
    agent = await runAgent(config);
    await waitFor(async () => ((await (await fetch(`http://127.0.0.1:${agent.httpPort}/healthz`)).json()) as { frames: number }).frames > 3, { what: 'frames', timeoutMs: 30_000 });
  }, 60_000);
  afterAll(async () => {
    await agent?.stop();
    await ops?.endAsync();
    await broker?.stop();
    await rm(work, { recursive: true, force: true });
  });

  it('samples its blackbody for the asked seconds and acks the verdict; set-homography is refused with where to do it', async () => {
    const sent = Date.now();
    await ops.publishAsync(checkpointTopics.cmd(at), JSON.stringify({ id: 'chk-1', type: 'calibrate', action: 'check-reference', params: { durationS: 2 } }), { qos: 1 });
    await ops.publishAsync(checkpointTopics.cmd(at), JSON.stringify({ id: 'chk-2', type: 'calibrate', action: 'set-homography' }), { qos: 1 });
    await waitFor(() => acks.some((a) => a.id === 'chk-1') && acks.some((a) => a.id === 'chk-2'), { what: 'acks of chk-1 and chk-2', timeoutMs: 15_000 });
    const ack = acks.find((a) => a.id === 'chk-1')!;
    expect(Date.now() - sent).toBeGreaterThanOrEqual(2000);
    expect(ack.error).toBeUndefined();
    expect(ack.ok).toBe(true);
    const d = ack.detail as Record<string, number | string>;
    // A quick check judges noise, offset and uniformity (not drift) and says so.
    expect(['stable', 'unstable']).toContain(d.verdict);
    expect(d.quick).toBe(true);
    expect(d.frames).toBeGreaterThanOrEqual(3);
    // The span of the frames' own timestamps (the simulated camera's clock; on a busy machine it lags the wall clock).
    expect(d.durationS).toBeGreaterThan(0);
    expect(Math.abs((d.meanC as number) - (d.setC as number))).toBeLessThan(3);
    expect(acks.find((a) => a.id === 'chk-2')).toMatchObject({ ok: false, error: expect.stringMatching(/only "check-reference" runs remotely/) });
  });
});
