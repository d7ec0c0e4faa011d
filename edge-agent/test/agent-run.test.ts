/**
 * `edge-agent run` as a whole against a real broker (Mosquitto): retained online state with an
 * offline last will, commands and their acks, health and metrics over HTTP.
 */
import { createHash } from 'node:crypto';
import { readFile, mkdtemp, rm, stat } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startMosquitto, waitFor, type MosquittoServer } from '@checkpoint/test-support';
import { checkpointTopics, parsePayload, type CheckpointState, type CommandAck } from '@checkpoint/protocol';
import { runAgent, type RunningAgent } from '../src/agent.js';
import { loadAgentConfig } from '../src/config/load.js';
import { agentEnv, FACES_DIR, haveShared, MODELS_MIRROR } from './helpers/shared.js';

const at = { site: 'hospital-a', checkpoint: 'gate-3' };

describe.skipIf(!haveShared)('the running agent', () => {
  let work: string;
  let broker: MosquittoServer;
  let agent: RunningAgent;
  let ops: MqttClient;
  const states: CheckpointState[] = [];
  const acks: CommandAck[] = [];

  beforeAll(async () => {
    work = await mkdtemp(path.join(tmpdir(), 'agent-run-'));
    broker = await startMosquitto({ users: { 'edge-gate-3': 'edge-secret-3', ops: 'ops-secret-1' } });
    ops = await mqtt.connectAsync(broker.url, { username: 'ops', password: 'ops-secret-1' });
    ops.on('message', (topic, payload) => {
      if (topic === checkpointTopics.state(at)) {
        const s = parsePayload('state', payload);
        if (s.ok) states.push(s.value);
      }
      if (topic === checkpointTopics.cmdAck(at)) {
        const a = parsePayload('cmd/ack', payload);
        if (a.ok) acks.push(a.value);
      }
    });
    await ops.subscribeAsync([checkpointTopics.state(at), checkpointTopics.cmdAck(at)], { qos: 1 });
    const env = {
      ...agentEnv(path.join(work, 'models')),
      CHECKPOINT_MQTT_URL: broker.url,
      CHECKPOINT_MQTT_USERNAME: 'edge-gate-3',
      CHECKPOINT_MQTT_PASSWORD: 'edge-secret-3',
      CHECKPOINT_DATA_DIR: path.join(work, 'agent'),
    };
    const config = await loadAgentConfig(undefined, env, {
      ...at,
      mqtt: { reconnectMs: 200, keepaliveS: 5 },
      http: { port: 0 },
      telemetry: { intervalMs: 1000 },
      source: { thermal: { kind: 'sim', realtime: true, facesDir: FACES_DIR, seed: 9 } },
    });
    agent = await runAgent(config);
  }, 60_000);
  afterAll(async () => {
    await agent?.stop();
    await ops?.endAsync();
    await broker?.stop();
    await rm(work, { recursive: true, force: true });
  });

  const http = (p: string) => fetch(`http://127.0.0.1:${agent.httpPort}${p}`);

  it('republishes its retained state when the camera starts and the blackbody becomes usable', async () => {
    // The state at connect time says what was true then (camera starting, reference not yet seen);
    // the screens must not keep showing that once frames flow and the reference has settled.
    await waitFor(() => states.some((s) => s.status === 'online' && s.sources?.thermal.status === 'ok' && s.calibration?.reference === 'ok'), {
      what: () => `a state with the camera ok and the reference ok (seen: ${states.map((s) => `${s.sources?.thermal.status}/${s.calibration?.reference}`).join(', ')})`,
      timeoutMs: 30_000,
    });
    const first = states.find((s) => s.status === 'online')!;
    expect(`${first.sources?.thermal.status}/${first.calibration?.reference}`).not.toBe('ok/ok');
    expect(states.filter((s) => s.status === 'online').length).toBeLessThan(6); // changes only, not per frame
  });

  it('publishes a retained online state with versions, model and calibration', async () => {
    await waitFor(() => states.some((s) => s.status === 'online'), { what: 'online state', timeoutMs: 20_000 });
    const online = states.find((s) => s.status === 'online')!;
    expect(online.model?.name).toBe('masked-face-640');
    expect(online.versions?.agent).toBeDefined();
    expect(online.calibration?.thresholdC).toBe(37.3);
    // Retained: a newcomer gets it at once.
    const late = await mqtt.connectAsync(broker.url, { username: 'ops', password: 'ops-secret-1' });
    const got = new Promise<Buffer>((resolve) => late.on('message', (_t, p) => resolve(p)));
    await late.subscribeAsync(checkpointTopics.state(at));
    expect(JSON.parse((await got).toString()).status).toBe('online');
    await late.endAsync();
  });

  it('serves /healthz and Prometheus /metrics', async () => {
    await waitFor(async () => ((await (await http('/healthz')).json()) as { frames: number }).frames > 5, { what: 'frames processed', timeoutMs: 20_000 });
    const health = (await (await http('/healthz')).json()) as Record<string, unknown>;
    expect(health).toMatchObject({ status: 'ok', mqtt: 'connected', source: 'ok' });
    const metrics = await (await http('/metrics')).text();
    expect(metrics).toMatch(/checkpoint_agent_frames_total \d+/);
    expect(metrics).toMatch(/checkpoint_agent_mqtt_connected 1/);
    expect(metrics).toMatch(/checkpoint_agent_stage_ms\{quantile="0.5",stage="inference"\}/);
  });

  it('applies set-config and acks it; refuses what it cannot apply; answers invalid commands', async () => {
    await ops.publishAsync(checkpointTopics.cmd(at), JSON.stringify({ id: 'cmd-1', type: 'set-config', config: { screening: { thresholdC: 37.8 } } }), { qos: 1 });
    await waitFor(() => acks.some((a) => a.id === 'cmd-1'), { what: 'ack of cmd-1', timeoutMs: 10_000 });
    expect(acks.find((a) => a.id === 'cmd-1')).toMatchObject({ ok: true, detail: { thresholdC: 37.8 } });
    await waitFor(() => states.some((s) => s.calibration?.thresholdC === 37.8), { what: 'state with the new threshold', timeoutMs: 10_000 });

    await ops.publishAsync(checkpointTopics.cmd(at), JSON.stringify({ id: 'cmd-2', type: 'set-config', config: { screening: { thresholdC: 50 } } }), { qos: 1 });
    await ops.publishAsync(checkpointTopics.cmd(at), JSON.stringify({ id: 'cmd-3', type: 'set-config', config: { mqtt: { url: 'mqtt://elsewhere' } } }), { qos: 1 });
    await ops.publishAsync(checkpointTopics.cmd(at), JSON.stringify({ id: 'cmd-4', type: 'teleport' }), { qos: 1 });
    await ops.publishAsync(checkpointTopics.cmd(at), '{not json', { qos: 1 });
    await waitFor(() => ['cmd-2', 'cmd-3', 'cmd-4'].every((id) => acks.some((a) => a.id === id)), { what: 'acks of cmd-2..4', timeoutMs: 10_000 });
    expect(acks.find((a) => a.id === 'cmd-2')).toMatchObject({ ok: false, error: expect.stringMatching(/\/screening\/thresholdC/) });
    expect(acks.find((a) => a.id === 'cmd-3')).toMatchObject({ ok: false, error: expect.stringMatching(/mqtt/) });
    expect(acks.find((a) => a.id === 'cmd-4')).toMatchObject({ ok: false, error: expect.stringMatching(/\/type/) });
    // '{not json' has no id to ack and was sent after cmd-4: wait for its count, not for cmd-4's ack.
    const invalidCommands = async () => /checkpoint_agent_invalid_commands_total (\d+)/.exec(await (await http('/metrics')).text())?.[1];
    await waitFor(async () => (await invalidCommands()) === '2', { what: 'invalid_commands_total 2', timeoutMs: 10_000 });
  });

  it('rolls out a new model version: verified, self-tested, switched; bad downloads leave the running model', async () => {
    await waitFor(async () => ((await (await http('/healthz')).json()) as { frames: number }).frames > 40, { what: 'a few people seen', timeoutMs: 30_000 });
    const good = await readFile(path.join(MODELS_MIRROR, 'RFB-640-masked_face-v2.onnx'));
    const wrongFamily = await readFile(path.join(MODELS_MIRROR, 'version-RFB-320.onnx'));
    const corrupt = Buffer.from(good);
    corrupt[5000] = corrupt[5000]! ^ 0xff;
    const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
    const expectedAuth = `Basic ${Buffer.from('edge-gate-3:edge-secret-3').toString('base64')}`;
    const files: Record<string, Buffer> = { '/good.onnx': good, '/corrupt.onnx': corrupt, '/wrong.onnx': wrongFamily };
    const server: Server = createServer((req, res) => {
      if (req.headers.authorization !== expectedAuth) return void res.writeHead(401).end();
      const body = files[req.url ?? ''];
      if (!body) return void res.writeHead(404).end();
      res.writeHead(200, { 'content-length': body.length }).end(body);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
    const update = async (id: string, file: string, bytes: Buffer, claimedSha = sha(bytes)) => {
      await ops.publishAsync(
        checkpointTopics.cmd(at),
        JSON.stringify({ id, type: 'update-model', model: { name: 'masked-face-640', version: id, url: `${base}${file}`, sha256: claimedSha, sizeBytes: bytes.length } }),
        { qos: 1 },
      );
      await waitFor(() => acks.some((a) => a.id === id && a.done), { what: `final ack of ${id}`, timeoutMs: 30_000 });
      return acks.find((a) => a.id === id && a.done)!;
    };
    try {
      const corrupted = await update('upd-corrupt', '/corrupt.onnx', corrupt, sha(good));
      expect(corrupted).toMatchObject({ ok: false, error: expect.stringMatching(/expected sha256 .* got sha256 .*still running masked-face-640/) });
      const wrong = await update('upd-wrong', '/wrong.onnx', wrongFamily);
      expect(wrong).toMatchObject({ ok: false, error: expect.stringMatching(/does not match manifest/) });
      const missing = await update('upd-404', '/nope.onnx', good);
      expect(missing.ok).toBe(false);

      const ok = await update('upd-good', '/good.onnx', good);
      expect(ok).toMatchObject({ ok: true, detail: { model: 'masked-face-640', version: 'upd-good', selfTest: expect.stringMatching(/reference faces found \(found [1-5] of [1-5]/) } });
      expect(acks.filter((a) => a.id === 'upd-good' && a.progress !== undefined).map((a) => a.progress)).toContain(0);
      expect((await stat(path.join(work, 'models', 'RFB-640-masked_face-v2.upd-good.onnx'))).size).toBe(good.length);
      const frames = ((await (await http('/healthz')).json()) as { frames: number }).frames;
      await waitFor(async () => ((await (await http('/healthz')).json()) as { frames: number }).frames > frames + 5, { what: 'frames keep flowing on the new model', timeoutMs: 10_000 });
    } finally {
      server.close();
    }
  }, 120_000);

  it('the broker publishes the offline last will when the connection dies, and the agent comes back', async () => {
    const before = states.length;
    agent.mqtt.stream.destroy(); // a dead link, no DISCONNECT
    await waitFor(() => states.slice(before).some((s) => s.status === 'offline'), { what: 'offline last will', timeoutMs: 20_000 });
    await waitFor(() => states.slice(before).some((s) => s.status === 'online'), { what: 'online again', timeoutMs: 20_000 });
  }, 30_000);
});
