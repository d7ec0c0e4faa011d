/* eslint-disable @typescript-eslint/no-explicit-any -- JSON bodies of API responses */
/**
 * Provisioning shared by two gateways on one PostgreSQL (real PostgreSQL, our broker, real edge
 * agents): a token issued through one enrolls through the other, both answer the same, a model
 * version published through one is served by the other, and a roll-out started on the follower is
 * driven by the leader; the leader stopped mid-roll-out, the other takes over and finishes it,
 * every device updated exactly once.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBroker, type Broker } from '@checkpoint/broker';
import { loadAgentConfig, runAgent, type RunningAgent } from '@checkpoint/edge-agent';
import { makeTempDir, startPostgres, waitFor, type PostgresServer } from '@checkpoint/test-support';
import { createGateway, type Gateway } from '../src/index.js';
import { API_PASSWORD, ApiClient, BROKER_PASSWORD, gatewayConfig } from './helpers/world.js';

const SHARED = fileURLToPath(new URL('../../../shared/', import.meta.url));
const FACES_DIR = join(SHARED, 'datasets/mask-sample');
const MODELS_MIRROR = process.env.CHECKPOINT_MODELS_MIRROR ?? join(SHARED, 'models');
const haveShared = existsSync(FACES_DIR) && existsSync(MODELS_MIRROR);
if (!haveShared) console.warn(`provisioning-postgres.test: the roll-out part needs ${SHARED} (models mirror and datasets), which is absent`);

const FAMILY = 'ultraface-slim-320';
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

let postgres: PostgresServer;
let pool: pg.Pool;
let broker: Broker;
let brokerDir: string;
const gateways: Gateway[] = [];
const agents: RunningAgent[] = [];

beforeAll(async () => {
  brokerDir = makeTempDir('prov-pg-broker');
  [postgres, broker] = await Promise.all([
    startPostgres(),
    createBroker({ config: { dataDir: brokerDir, host: '127.0.0.1', mqtt: { port: 0 }, metrics: { port: null }, logLevel: 'silent', sysIntervalS: 0, persistence: 'memory' } }),
  ]);
  await broker.users.add({ name: 'gw', role: 'gateway' }, BROKER_PASSWORD);
  pool = new pg.Pool({ connectionString: postgres.url, max: 2 });
}, 120_000);

afterAll(async () => {
  for (const a of agents) await a.stop();
  for (const g of gateways) await g.close();
  await pool?.end();
  await broker?.close();
  await postgres?.stop();
});

async function startGateway(name: string): Promise<Gateway> {
  const gateway = await createGateway(
    gatewayConfig({
      dataDir: makeTempDir(`prov-pg-${name}`),
      mqttUrl: `mqtt://127.0.0.1:${broker.ports.mqtt}`,
      provisioning: { brokerUsersFile: join(brokerDir, 'users.sqlite'), updateTimeoutS: 120 },
      store: { backend: 'postgres', postgres: { url: postgres.url, poolSize: 4, leaderRetryMs: 200, leaderCheckMs: 200 } },
    }),
  );
  gateways.push(gateway);
  await waitFor(() => gateway.mqttConnected(), { what: `gateway ${name} connected to the broker` });
  return gateway;
}

const role = async (g: Gateway) => ((await (await fetch(`${g.url}/healthz`)).json()) as { store: { role: string } }).store.role;
const enroll = async (g: Gateway, token: string) => {
  const res = await fetch(`${g.url}/api/enroll`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token }) });
  return { status: res.status, body: (await res.json()) as any };
};
const upload = (g: Gateway, client: ApiClient, query: Record<string, string>, bytes: Buffer) =>
  fetch(`${g.url}/api/models?${new URLSearchParams(query)}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${client.token}`, 'content-type': 'application/octet-stream' },
    body: bytes,
  }).then(async (r) => ({ status: r.status, body: (await r.json()) as any }));

describe('provisioning shared by two gateways on one PostgreSQL', () => {
  let a: Gateway;
  let b: Gateway;
  let engA: ApiClient;
  let engB: ApiClient;
  const enrolled = new Map<string, any>();

  beforeAll(async () => {
    a = await startGateway('a');
    await waitFor(async () => (await role(a)) === 'leader', { what: 'gateway a leads' });
    b = await startGateway('b');
    expect(await role(b)).toBe('follower');
    // Users are shared: added through one, they log in through both.
    await a.users.add({ name: 'eng', role: 'engineer' }, API_PASSWORD);
    [engA, engB] = await Promise.all([ApiClient.login(a.url, 'eng'), ApiClient.login(b.url, 'eng')]);
  }, 60_000);

  it('a token issued through one gateway enrolls through the other, once; both list the same checkpoints', async () => {
    const { body: issued1 } = await engA.post('/api/checkpoints', { site: 'hq', checkpoint: 'gate-1' });
    const { body: issued2 } = await engB.post('/api/checkpoints', { site: 'hq', checkpoint: 'gate-2' });
    const first = await enroll(b, issued1.token);
    expect(first.status).toBe(200);
    expect(first.body.mqtt.username).toBe('hq.gate-1');
    enrolled.set('gate-1', first.body);
    // Used through b, refused through a: the token is single use across gateways.
    const again = await enroll(a, issued1.token);
    expect(again.status).toBe(410);
    expect(again.body.message).toMatch(/already used/);
    // Both gateways at once with one token: exactly one enrolls.
    const race = await Promise.all([enroll(a, issued2.token), enroll(b, issued2.token)]);
    expect(race.map((r) => r.status).sort()).toEqual([200, 410]);
    enrolled.set('gate-2', race.find((r) => r.status === 200)!.body);
    const [listA, listB] = await Promise.all([engA.get('/api/checkpoints'), engB.get('/api/checkpoints')]);
    expect(listA.body.checkpoints.filter((c: any) => c.status !== 'unmanaged').map((c: any) => [c.checkpoint, c.status])).toEqual([
      ['gate-1', 'enrolled'],
      ['gate-2', 'enrolled'],
    ]);
    expect(listB.body).toEqual(listA.body);
    // The audit trail is shared too: each step once, whichever gateway made it.
    const { rows } = await pool.query<{ action: string; n: string }>("SELECT action, count(*) AS n FROM audit WHERE action LIKE 'device.%' GROUP BY action ORDER BY action");
    expect(rows.map((r) => [r.action, Number(r.n)])).toEqual([
      ['device.enroll_refused', 2],
      ['device.enrolled', 2],
      ['device.token_issued', 2],
    ]);
  });

  it('a model version published through one gateway is listed by both and immutable on both', async () => {
    const bytes = Buffer.from('not really a model, but bytes with a sha256');
    const query = { name: FAMILY, version: 'probe-1', sha256: sha256(bytes) };
    const results = await Promise.all([upload(a, engA, query, bytes), upload(b, engB, query, bytes)]);
    expect(results.map((r) => r.status).sort()).toEqual([201, 409]);
    const [listA, listB] = await Promise.all([engA.get('/api/models'), engB.get('/api/models')]);
    expect(listA.body.models.map((m: any) => m.version)).toEqual(['probe-1']);
    expect(listB.body).toEqual(listA.body);
  });

  it.skipIf(!haveShared)(
    'a roll-out started on the follower is driven by the leader; the leader stopped mid-way, the other finishes it, each device updated once',
    async () => {
      const oldBytes = await readFile(join(MODELS_MIRROR, 'version-slim-320.onnx'));
      const newBytes = await readFile(join(MODELS_MIRROR, 'version-RFB-320.onnx'));
      for (const [i, checkpoint] of ['gate-1', 'gate-2'].entries()) {
        const dir = makeTempDir(`prov-pg-agent-${checkpoint}`);
        const issued = enrolled.get(checkpoint);
        const config = await loadAgentConfig(
          undefined,
          { CHECKPOINT_MODELS_MIRROR: MODELS_MIRROR, CHECKPOINT_MODELS_DIR: join(dir, 'models'), CHECKPOINT_LOG_LEVEL: 'silent' },
          {
            ...issued.config,
            dataDir: dir,
            mqtt: { ...issued.config.mqtt, reconnectMs: 200 },
            model: { name: FAMILY, threads: 1 },
            http: { port: 0 },
            source: { thermal: { kind: 'sim', realtime: true, facesDir: FACES_DIR, seed: 21 + i } },
          },
        );
        agents.push(await runAgent(config));
      }
      const onModel = async (g: Gateway, bytes: Buffer) => {
        const list = (await (g === a ? engA : engB).get('/api/checkpoints')).body.checkpoints as any[];
        return ['gate-1', 'gate-2'].every((c) => list.find((d) => d.checkpoint === c)?.model?.sha256 === sha256(bytes));
      };
      await waitFor(() => onModel(b, oldBytes), { what: 'both agents report the old model', timeoutMs: 60_000 });

      // Published through the follower: the leader serves the file to the devices it sends the command to.
      expect((await upload(b, engB, { name: FAMILY, version: 'rfb-1', sha256: sha256(newBytes) }, newBytes)).status).toBe(201);
      const started = await engB.post('/api/rollouts', { model: FAMILY, version: 'rfb-1', targets: [{ site: 'hq', checkpoint: 'gate-1' }, { site: 'hq', checkpoint: 'gate-2' }], batchSizes: [1, 1] });
      expect(started.status).toBe(201);
      const id = started.body.id as string;
      const rollout = async () => (await engB.get(`/api/rollouts/${id}`)).body;
      // The first device gets its command from the leader (a), not from b where the roll-out started.
      await waitFor(async () => (await rollout()).devices[0].status !== 'pending', { what: 'the leader sent the first command', timeoutMs: 10_000 });
      const { rows: firstDownload } = await pool.query<{ n: string }>("SELECT count(*) AS n FROM audit WHERE action = 'model.downloaded'");
      expect(Number(firstDownload[0]!.n)).toBeLessThanOrEqual(1);

      // The leader goes away with the first update under way (or just done): b leads and finishes the roll-out.
      await a.close();
      gateways.splice(gateways.indexOf(a), 1);
      await waitFor(async () => (await role(b)) === 'leader', { what: 'gateway b leads', timeoutMs: 10_000 });
      await waitFor(async () => (await rollout()).status !== 'running', { what: 'the roll-out finished', timeoutMs: 120_000 });
      const done = await rollout();
      expect(done.status).toBe('completed');
      expect(done.devices.map((d: any) => d.status)).toEqual(['succeeded', 'succeeded']);
      await waitFor(() => onModel(b, newBytes), { what: 'both agents report the new model', timeoutMs: 30_000 });
      // Exactly once: one command, one download and one result per device.
      const { rows } = await pool.query<{ action: string; target: string; actor: string }>(
        "SELECT action, target, actor FROM audit WHERE action IN ('model.downloaded', 'rollout.device_updated', 'rollout.device_failed', 'rollout.completed') ORDER BY seq",
      );
      const per = (action: string) => rows.filter((r) => r.action === action).map((r) => r.actor).sort();
      expect(per('model.downloaded')).toEqual(['device:hq/gate-1', 'device:hq/gate-2']);
      expect(per('rollout.device_updated')).toEqual(['device:hq/gate-1', 'device:hq/gate-2']);
      expect(per('rollout.device_failed')).toEqual([]);
      expect(per('rollout.completed')).toEqual(['system']);
      expect(new Set(done.devices.map((d: any) => d.commandId)).size).toBe(2);
    },
    240_000,
  );
});
