/* eslint-disable @typescript-eslint/no-explicit-any -- JSON bodies of API responses */
/**
 * A staged model roll-out to three real edge agents (real ONNX pipeline on simulated cameras),
 * enrolled through the gateway, through our broker. One device receives a corrupted download:
 * the gateway's test-only `tamperModelDownload` hook flips one byte of the bytes it sends to
 * gate-3 (a fault on the wire; the gateway's stored file and its own hash check stay intact). The
 * agent's real sha256 check refuses it and keeps its model. The good agents end on the new model,
 * the bad one is reported rolled back, screenings keep arriving from every agent during the
 * switch, and a second roll-out with a zero failure threshold halts by itself.
 *
 * New bytes: the agents run `ultraface-slim-320` (../shared/models/version-slim-320.onnx); the new
 * version of that family is the real RFB-320 file (../shared/models/version-RFB-320.onnx), which
 * has the same input and outputs — so "switched" is visible as a different sha256 everywhere.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBroker, type Broker } from '@checkpoint/broker';
import { loadAgentConfig, runAgent, type RunningAgent } from '@checkpoint/edge-agent';
import { makeTempDir, waitFor } from '@checkpoint/test-support';
import { GatewayConfigSchema } from '../src/config.js';
import { createGateway, type Gateway } from '../src/index.js';
import { API_PASSWORD, ApiClient, BROKER_PASSWORD, gatewayConfig } from './helpers/world.js';

// No OPC UA server here (its fixed default port would collide between test files running in parallel).
const noOpcua = 'opcua' in GatewayConfigSchema.properties ? { opcua: { enabled: false } } : {};

const SHARED = fileURLToPath(new URL('../../../shared/', import.meta.url));
const FACES_DIR = join(SHARED, 'datasets/mask-sample');
const MODELS_MIRROR = process.env.CHECKPOINT_MODELS_MIRROR ?? join(SHARED, 'models');
const haveShared = existsSync(FACES_DIR) && existsSync(MODELS_MIRROR);
if (!haveShared) console.warn(`provisioning-rollout.test skipped: ${SHARED} (models mirror and datasets) is absent`);

const FAMILY = 'ultraface-slim-320';
const CHECKPOINTS = ['gate-1', 'gate-2', 'gate-3'];
const BAD = 'gate-3';
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** Largest pause between consecutive times within [from, to] (edges included), ms. */
function largestGap(times: number[], from: number, to: number): number {
  const inside = [from, ...times.filter((t) => t > from && t < to), to];
  let gap = 0;
  for (let i = 1; i < inside.length; i++) gap = Math.max(gap, inside[i]! - inside[i - 1]!);
  return gap;
}

describe.skipIf(!haveShared)('staged model roll-out to three agents', () => {
  let broker: Broker;
  let gateway: Gateway;
  let engineer: ApiClient;
  let oldBytes: Buffer;
  let newBytes: Buffer;
  const agents = new Map<string, RunningAgent>();
  const agentDirs = new Map<string, string>();
  const screenings = new Map<string, number[]>(CHECKPOINTS.map((c) => [c, []]));
  const frames = new Map<string, Array<{ at: number; frames: number }>>(CHECKPOINTS.map((c) => [c, []]));
  let sampler: NodeJS.Timeout | undefined;

  beforeAll(async () => {
    oldBytes = await readFile(join(MODELS_MIRROR, 'version-slim-320.onnx'));
    newBytes = await readFile(join(MODELS_MIRROR, 'version-RFB-320.onnx'));
    const brokerDir = makeTempDir('rollout-broker');
    broker = await createBroker({ config: { dataDir: brokerDir, host: '127.0.0.1', mqtt: { port: 0 }, metrics: { port: null }, logLevel: 'silent', sysIntervalS: 0, persistence: 'memory' } });
    await broker.users.add({ name: 'gw', role: 'gateway' }, BROKER_PASSWORD);
    const flipped = Buffer.from(newBytes);
    flipped[4096] = flipped[4096]! ^ 0x01;
    gateway = await createGateway(
      gatewayConfig({ ...noOpcua, dataDir: makeTempDir('rollout-gateway'), mqttUrl: `mqtt://127.0.0.1:${broker.ports.mqtt}`, provisioning: { brokerUsersFile: join(brokerDir, 'users.sqlite'), updateTimeoutS: 90 } }),
      // Fault injection (test only): gate-3 receives one flipped bit; everyone else the stored bytes.
      { tamperModelDownload: (device, bytes) => (device.checkpoint === BAD && bytes.length === flipped.length ? flipped : bytes) },
    );
    await gateway.users.add({ name: 'eng', role: 'engineer' }, API_PASSWORD);
    await gateway.users.add({ name: 'guard', role: 'guard' }, API_PASSWORD);
    engineer = await ApiClient.login(gateway.url, 'eng');
    await waitFor(() => gateway.mqttConnected(), { what: 'gateway connected' });

    // Enroll three boxes through the gateway and start their agents from the issued config.
    for (const [i, checkpoint] of CHECKPOINTS.entries()) {
      const { body: issued } = await engineer.post('/api/checkpoints', { site: 'hq', checkpoint });
      const res = await fetch(`${gateway.url}/api/enroll`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token: issued.token }) });
      expect(res.status).toBe(200);
      const enrolled = (await res.json()) as any;
      const dir = makeTempDir(`rollout-agent-${checkpoint}`);
      agentDirs.set(checkpoint, dir);
      const config = await loadAgentConfig(
        undefined,
        // One models folder per box: each one downloads for itself.
        { CHECKPOINT_MODELS_MIRROR: MODELS_MIRROR, CHECKPOINT_MODELS_DIR: join(dir, 'models'), CHECKPOINT_LOG_LEVEL: 'silent' },
        {
          ...enrolled.config,
          dataDir: dir,
          mqtt: { ...enrolled.config.mqtt, reconnectMs: 200 },
          model: { name: FAMILY, threads: 1 },
          http: { port: 0 },
          source: { thermal: { kind: 'sim', realtime: true, facesDir: FACES_DIR, seed: 11 + i } },
        },
      );
      agents.set(checkpoint, await runAgent(config, { onScreening: () => screenings.get(checkpoint)!.push(Date.now()) }));
    }
    sampler = setInterval(() => {
      for (const [checkpoint, agent] of agents) {
        void fetch(`http://127.0.0.1:${agent.httpPort}/healthz`)
          .then((r) => r.json() as Promise<{ frames: number }>)
          .then((h) => frames.get(checkpoint)!.push({ at: Date.now(), frames: h.frames }))
          .catch(() => undefined);
      }
    }, 250);
    await waitFor(() => CHECKPOINTS.every((c) => gateway.store.devices().find((d) => d.checkpoint === c && d.status === 'online' && d.model?.sha256 === sha256(oldBytes))), {
      what: 'three agents online on the old model',
      timeoutMs: 60_000,
    });
    await waitFor(() => CHECKPOINTS.every((c) => screenings.get(c)!.length >= 3), { what: 'a few screenings from each agent', timeoutMs: 90_000 });
  }, 180_000);

  afterAll(async () => {
    clearInterval(sampler);
    for (const a of agents.values()) await a.stop();
    await gateway?.close();
    await broker?.close();
  });

  const rollout = async (id: string) => (await engineer.get(`/api/rollouts/${id}`)).body;
  const upload = (query: Record<string, string>, bytes: Buffer, client = engineer) =>
    fetch(`${gateway.url}/api/models?${new URLSearchParams(query)}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${client.token}`, 'content-type': 'application/octet-stream' },
      body: bytes,
    }).then(async (r) => ({ status: r.status, body: (await r.json()) as any }));

  it('publishes model versions only with a matching sha256, for a known family, by engineers', async () => {
    const guard = await ApiClient.login(gateway.url, 'guard');
    expect((await upload({ name: FAMILY, version: '2', sha256: sha256(newBytes) }, newBytes, guard)).status).toBe(403);
    const wrong = await upload({ name: FAMILY, version: '2', sha256: sha256(oldBytes) }, newBytes);
    expect(wrong).toMatchObject({ status: 400, body: { message: expect.stringMatching(/sha256: the uploaded bytes \(1270727\) have sha256 34cd7e60.*not the declared e9adbd0f.*nothing was stored/) } });
    expect((await upload({ name: 'yolo-9000', version: '2', sha256: sha256(newBytes) }, newBytes)).body.message).toMatch(/unknown model family "yolo-9000"/);
    const ok = await upload({ name: FAMILY, version: '2', sha256: sha256(newBytes) }, newBytes);
    expect(ok).toMatchObject({ status: 201, body: { name: FAMILY, version: '2', sha256: sha256(newBytes), sizeBytes: newBytes.length, publishedBy: 'eng' } });
    expect((await upload({ name: FAMILY, version: '2', sha256: sha256(newBytes) }, newBytes)).status).toBe(409);

    // Downloads: device credentials, and only while a roll-out is waiting for that device.
    const file = `${gateway.url}/api/models/${FAMILY}/2/file`;
    expect((await fetch(file)).status).toBe(401);
    const cfg = agents.get('gate-1')!.config.mqtt;
    const basic = (u: string, p: string) => ({ authorization: `Basic ${Buffer.from(`${u}:${p}`).toString('base64')}` });
    expect((await fetch(file, { headers: basic(cfg.username!, 'wrong-password') })).status).toBe(401);
    const early = await fetch(file, { headers: basic(cfg.username!, cfg.password!) });
    expect(early.status).toBe(403);
    expect(((await early.json()) as any).message).toMatch(/hq\/gate-1 is not in a roll-out of ultraface-slim-320 2/);
  });

  it('rolls out in stages: good agents switch, the corrupted download is refused and rolled back, screenings never stop', async () => {
    const started = Date.now();
    const res = await engineer.post('/api/rollouts', {
      model: FAMILY,
      version: '2',
      targets: CHECKPOINTS.map((checkpoint) => ({ site: 'hq', checkpoint })),
      batchSizes: [1, 2],
      failureThreshold: 0.5,
    });
    expect(res.status).toBe(201);
    expect(res.body).toMatchObject({ status: 'running', stageEnds: [1, 3] });
    const id = res.body.id as string;
    // Stage 1 is gate-1 alone; the others wait for it.
    expect(res.body.devices.map((d: any) => [d.checkpoint, d.stage, d.status])).toEqual([
      ['gate-1', 0, 'sent'],
      ['gate-2', 1, 'pending'],
      ['gate-3', 1, 'pending'],
    ]);
    const seen = new Set<string>();
    const final = await waitFor(
      async () => {
        const r = await rollout(id);
        for (const d of r.devices) seen.add(`${d.checkpoint}:${d.status}`);
        return r.status !== 'running' ? r : null;
      },
      { what: 'roll-out finished', timeoutMs: 120_000, intervalMs: 100 },
    );
    const finished = Date.now();
    const by = Object.fromEntries(final.devices.map((d: any) => [d.checkpoint, d]));
    expect(final).toMatchObject({ status: 'completed', reason: '1 of 3 devices failed (within the threshold)' });
    expect(by['gate-1']).toMatchObject({ status: 'succeeded', progress: 1, detail: { model: FAMILY, version: '2', sha256: sha256(newBytes) } });
    expect(by['gate-2']).toMatchObject({ status: 'succeeded', detail: { version: '2', sha256: sha256(newBytes) } });
    expect(by['gate-3']).toMatchObject({
      status: 'failed',
      error: expect.stringMatching(new RegExp(`expected sha256 ${sha256(newBytes)}.*got sha256 [0-9a-f]{64}.*still running ${FAMILY} ${sha256(oldBytes).slice(0, 12)}`)),
    });
    // Stage 2 started only after stage 1 succeeded.
    expect(by['gate-2'].sentMs).toBeGreaterThanOrEqual(by['gate-1'].finishedMs);
    expect(by['gate-3'].sentMs).toBeGreaterThanOrEqual(by['gate-1'].finishedMs);
    expect(seen.has('gate-1:succeeded')).toBe(true);

    // The state each agent publishes (devices API) says which model it runs; the roll-out view joins it.
    await waitFor(
      () => {
        const models = new Map(gateway.store.devices().map((d) => [d.checkpoint, d.model?.sha256]));
        return models.get('gate-1') === sha256(newBytes) && models.get('gate-2') === sha256(newBytes) && models.get(BAD) === sha256(oldBytes);
      },
      { what: 'devices reporting their models', timeoutMs: 10_000 },
    );
    const view = await rollout(id);
    expect(view.devices.map((d: any) => [d.checkpoint, d.onRolloutModel])).toEqual([
      ['gate-1', true],
      ['gate-2', true],
      [BAD, false],
    ]);
    const devices = (await engineer.get('/api/checkpoints')).body.checkpoints;
    expect(devices.find((d: any) => d.checkpoint === 'gate-1')).toMatchObject({ model: { name: FAMILY, sha256: sha256(newBytes) }, modelVersions: ['2'] });
    expect(devices.find((d: any) => d.checkpoint === BAD)).toMatchObject({ model: { name: FAMILY, sha256: sha256(oldBytes) }, modelVersions: [] });
    // A restart keeps the new model on the good boxes only.
    expect(JSON.parse(await readFile(join(agentDirs.get('gate-1')!, 'active-model.json'), 'utf8')).manifest).toMatchObject({ version: '2', sha256: sha256(newBytes) });
    expect(existsSync(join(agentDirs.get(BAD)!, 'active-model.json'))).toBe(false);

    // No gap: every agent kept processing frames and kept publishing screenings through the switch.
    await new Promise((r) => setTimeout(r, 6000)); // and a while after the switch
    const after = Date.now();
    const report: string[] = [];
    for (const checkpoint of CHECKPOINTS) {
      const times = screenings.get(checkpoint)!;
      const during = times.filter((t) => t >= started && t <= after).length;
      const samples = frames.get(checkpoint)!.filter((s) => s.at >= started - 1000 && s.at <= after);
      let stalled = 0; // longest run of frame-count samples without progress, ms
      for (let i = 1, since = samples[0]!.at; i < samples.length; i++) {
        if (samples[i]!.frames > samples[i - 1]!.frames) since = samples[i]!.at;
        stalled = Math.max(stalled, samples[i]!.at - since);
      }
      const gap = largestGap(times, started, after);
      const baseline = largestGap(times, times[0]!, started);
      report.push(`${checkpoint}: ${during} screenings during ${((after - started) / 1000).toFixed(1)} s, largest screening gap ${gap} ms (before: ${baseline} ms), longest frame stall ${stalled} ms`);
      expect(during).toBeGreaterThan(0);
      expect(stalled).toBeLessThan(3000); // health is sampled every 250 ms; a stopped pipeline shows as a stall
      expect(gap).toBeLessThanOrEqual(Math.max(2 * baseline, 5000)); // a pause of the whole window (>= 6 s) would fail
    }
    // And the gateway stored them: screenings of every checkpoint with times inside the roll-out.
    const stored = gateway.store.screenings({ fromMs: started, toMs: after, limit: 10_000 });
    for (const checkpoint of CHECKPOINTS) expect(stored.some((s) => s.checkpoint === checkpoint)).toBe(true);
    console.info(`roll-out ${id}: ${((finished - started) / 1000).toFixed(1)} s for 3 agents in 2 stages\n  ${report.join('\n  ')}`);
  }, 180_000);

  it('halts by itself when the first stage fails and a zero threshold is set; skipped devices cannot download', async () => {
    expect((await upload({ name: FAMILY, version: '3', sha256: sha256(newBytes) }, newBytes)).status).toBe(201);
    const res = await engineer.post('/api/rollouts', {
      model: FAMILY,
      version: '3',
      targets: [{ site: 'hq', checkpoint: BAD }, { site: 'hq', checkpoint: 'gate-1' }, { site: 'hq', checkpoint: 'gate-2' }],
      stages: [34, 100],
      failureThreshold: 0,
    });
    expect(res.body.stageEnds).toEqual([2, 3]); // ceil(34 % of 3) = 2 devices first
    const final = await waitFor(async () => ((await rollout(res.body.id)).status !== 'running' ? rollout(res.body.id) : null), { what: 'roll-out halted', timeoutMs: 120_000, intervalMs: 100 });
    expect(final.status).toBe('halted');
    expect(final.reason).toMatch(/failed \(threshold 0 %\); halted in stage 1 of 2/);
    expect(final.devices.find((d: any) => d.checkpoint === BAD).status).toBe('failed');
    expect(final.devices.find((d: any) => d.checkpoint === 'gate-2').status).toBe('skipped');
    const cfg = agents.get('gate-2')!.config.mqtt;
    const skipped = await fetch(`${gateway.url}/api/models/${FAMILY}/3/file`, { headers: { authorization: `Basic ${Buffer.from(`${cfg.username}:${cfg.password}`).toString('base64')}` } });
    expect(skipped.status).toBe(403);
    const audit = gateway.store.auditLog(500).map((e) => e.action);
    expect(audit).toEqual(expect.arrayContaining(['model.published', 'rollout.started', 'rollout.stage', 'rollout.device_updated', 'rollout.device_failed', 'rollout.completed', 'rollout.halted', 'model.downloaded']));
  }, 180_000);
});
