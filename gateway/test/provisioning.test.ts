/* eslint-disable @typescript-eslint/no-explicit-any -- JSON bodies of API responses */
/**
 * Enrollment end to end, all real: our broker (TLS listener, its own users.sqlite), the gateway
 * managing that file as a separate SQLite connection (as a separate process would), an HTTPS
 * front for the gateway, `edge-agent enroll`, and a real edge agent starting from the written
 * config. Token reuse and expiry are refused with clear messages; a revoked device is dropped at
 * once and cannot come back.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, statSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBroker, type Broker } from '@checkpoint/broker';
import { loadAgentConfig, runAgent, type RunningAgent } from '@checkpoint/edge-agent';
import { makeTempDir, waitFor } from '@checkpoint/test-support';
// edge-agent's index does not export the enroll command (yet); the test runs the very function the CLI runs.
import { runEnroll } from '@checkpoint/edge-agent';
import { main as gatewayCli } from '../src/cli.js';
import { GatewayConfigSchema } from '../src/config.js';
import { createGateway, type Gateway } from '../src/index.js';
import { API_PASSWORD, ApiClient, BROKER_PASSWORD, gatewayConfig } from './helpers/world.js';

// No OPC UA server here (its fixed default port would collide between test files running in parallel).
const noOpcua = 'opcua' in GatewayConfigSchema.properties ? { opcua: { enabled: false } } : {};

const SHARED = fileURLToPath(new URL('../../../shared/', import.meta.url));
const FACES_DIR = join(SHARED, 'datasets/mask-sample');
const MODELS_MIRROR = process.env.CHECKPOINT_MODELS_MIRROR ?? join(SHARED, 'models');
const haveShared = existsSync(FACES_DIR) && existsSync(MODELS_MIRROR);
if (!haveShared) console.warn(`provisioning.test: the agent part needs ${SHARED} (models mirror and datasets), which is absent`);

/** A throwaway CA and a certificate for localhost/127.0.0.1 (openssl). */
function makeCerts(dir: string) {
  const f = (name: string) => join(dir, name);
  const openssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=checkpoint-provisioning-test-ca', '-keyout', f('ca.key'), '-out', f('ca.pem'));
  writeFileSync(f('server.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  openssl('req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=localhost', '-keyout', f('server.key'), '-out', f('server.csr'));
  openssl('x509', '-req', '-in', f('server.csr'), '-CA', f('ca.pem'), '-CAkey', f('ca.key'), '-CAcreateserial', '-days', '2', '-out', f('server.pem'), '-extfile', f('server.ext'));
  return { ca: f('ca.pem'), cert: f('server.pem'), key: f('server.key') };
}

/** The TLS front a site puts before the gateway (the gateway itself speaks plain HTTP). */
function httpsFront(target: string, tls: { cert: Buffer; key: Buffer }): Promise<{ server: HttpsServer; url: string }> {
  const upstream = new URL(target);
  const server = createHttpsServer(tls, (req, res) => {
    const forward = httpRequest({ host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: req.headers }, (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.pipe(res);
    });
    forward.on('error', () => res.writeHead(502).end());
    req.pipe(forward);
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({ server, url: `https://localhost:${(server.address() as { port: number }).port}` })));
}

function cliIo(env: Record<string, string>) {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let out = '';
  let err = '';
  stdout.on('data', (d) => (out += d));
  stderr.on('data', (d) => (err += d));
  return { io: { stdin: Readable.from(['']), stdout, stderr, env }, out: () => out, err: () => err };
}

function captured() {
  const lines: { out: string[]; err: string[] } = { out: [], err: [] };
  return { lines, io: { stdout: (l: string) => lines.out.push(l), stderr: (l: string) => lines.err.push(l), env: {} } };
}

async function connackCode(url: string, options: mqtt.IClientOptions): Promise<number> {
  const client = mqtt.connect(url, { reconnectPeriod: 0, ...options });
  return new Promise((resolve) => {
    client.on('packetreceive', (packet) => {
      if (packet.cmd === 'connack') {
        client.end(true);
        resolve(packet.returnCode ?? -1);
      }
    });
    client.on('error', () => undefined);
  });
}

describe('provisioning: enroll, refuse, revoke', () => {
  let broker: Broker;
  let gateway: Gateway;
  let front: { server: HttpsServer; url: string };
  let certs: ReturnType<typeof makeCerts>;
  let engineer: ApiClient;
  let admin: ApiClient;
  let brokerDir: string;
  let gatewayDir: string;
  let skewMs = 0;
  const agents: RunningAgent[] = [];

  beforeAll(async () => {
    brokerDir = makeTempDir('prov-broker');
    certs = makeCerts(makeTempDir('prov-certs'));
    // As `checkpoint-broker run` does: the broker keeps its own users.sqlite in its data dir.
    broker = await createBroker({
      config: {
        dataDir: brokerDir,
        host: '127.0.0.1',
        mqtt: { port: 0 },
        tls: { port: 0, certFile: certs.cert, keyFile: certs.key },
        metrics: { port: null },
        logLevel: 'silent',
        sysIntervalS: 0,
        persistence: 'memory',
        auth: { maxFailures: 1000 },
      },
    });
    await broker.users.add({ name: 'gw', role: 'gateway' }, BROKER_PASSWORD);
    gatewayDir = makeTempDir('prov-gateway');
    gateway = await createGateway(
      gatewayConfig({
        ...noOpcua,
        dataDir: gatewayDir,
        mqttUrl: `mqtt://127.0.0.1:${broker.ports.mqtt}`,
        provisioning: { brokerUsersFile: join(brokerDir, 'users.sqlite'), deviceMqttUrl: `mqtts://localhost:${broker.ports.mqtts}`, caFile: certs.ca, tokenTtlS: 600 },
      }),
      { now: () => Date.now() + skewMs },
    );
    await gateway.users.add({ name: 'eng', role: 'engineer' }, API_PASSWORD);
    await gateway.users.add({ name: 'guard', role: 'guard' }, API_PASSWORD);
    await gateway.users.add({ name: 'root', role: 'admin' }, API_PASSWORD);
    engineer = await ApiClient.login(gateway.url, 'eng');
    admin = await ApiClient.login(gateway.url, 'root');
    front = await httpsFront(gateway.url, { cert: await readFile(certs.cert), key: await readFile(certs.key) });
    await waitFor(() => gateway.mqttConnected(), { what: 'gateway connected' });
  }, 60_000);

  afterAll(async () => {
    for (const a of agents) await a.stop();
    front?.server.close();
    await gateway?.close();
    await broker?.close();
  });

  const enrollRaw = (token: string) =>
    fetch(`${gateway.url}/api/enroll`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token }) }).then(async (r) => ({ status: r.status, body: (await r.json()) as any }));

  it('only engineers register checkpoints; the token is shown once with the command to run', async () => {
    const guard = await ApiClient.login(gateway.url, 'guard');
    expect((await guard.post('/api/checkpoints', { site: 'hq', checkpoint: 'gate-1' })).status).toBe(403);
    expect((await engineer.post('/api/checkpoints', { site: 'HQ!', checkpoint: 'gate-1' })).body.message).toMatch(/body: \/site/);
    const res = await engineer.post('/api/checkpoints', { site: 'hq', checkpoint: 'gate-1' });
    expect(res.status).toBe(201);
    expect(res.body).toMatchObject({ site: 'hq', checkpoint: 'gate-1', status: 'registered', token: expect.stringMatching(/^cpe_/) });
    expect(res.body.enroll).toBe(`edge-agent enroll --gateway ${gateway.url} --token ${res.body.token}`);
    // Stored hashed: the token itself is nowhere in the gateway's database file.
    expect((await readFile(join(gatewayDir, 'gateway.sqlite'))).includes(Buffer.from(res.body.token))).toBe(false);
  });

  it.skipIf(!haveShared)('enrolls over HTTPS, writes 0600 files, and the agent connects with the issued credentials over mqtts', async () => {
    const { body } = await engineer.post('/api/checkpoints', { site: 'hq', checkpoint: 'gate-1' });
    const agentDir = makeTempDir('prov-agent');
    const run = captured();
    // Without the CA, the HTTPS gateway is not trusted, and the token is not used.
    expect(await runEnroll({ gateway: front.url, token: body.token, dataDir: agentDir }, run.io)).toBe(1);
    expect(run.lines.err.join('\n')).toMatch(/cannot reach the gateway .*certificate|--ca/);
    // Plain http to another machine is refused before anything is sent.
    expect(await runEnroll({ gateway: 'http://gateway.example:8080', token: body.token, dataDir: agentDir }, run.io)).toBe(2);
    expect(run.lines.err.at(-1)).toMatch(/use https:\/\//);

    const ok = captured();
    expect(await runEnroll({ gateway: front.url, token: body.token, dataDir: agentDir, caFile: certs.ca }, ok.io)).toBe(0);
    const configFile = join(agentDir, 'agent.yaml');
    expect(ok.lines.out.join('\n')).toContain(`edge-agent run --config ${configFile}`);
    expect(ok.lines.out.join('\n')).not.toMatch(/password: /);
    expect(statSync(configFile).mode & 0o777).toBe(0o600);
    expect(statSync(join(agentDir, 'broker-ca.pem')).mode & 0o777).toBe(0o600);
    const text = await readFile(configFile, 'utf8');
    expect(text).toMatch(/site: hq\ncheckpoint: gate-1/);
    expect(text).toContain(`url: mqtts://localhost:${broker.ports.mqtts}`);
    expect(text).toContain('username: hq.gate-1');
    expect(broker.users.get('hq.gate-1')).toMatchObject({ role: 'edge', site: 'hq', checkpoint: 'gate-1' });

    // The agent starts from the written file (what `edge-agent run --config FILE` does), models from the mirror, a simulated camera.
    const config = await loadAgentConfig(configFile, { CHECKPOINT_MODELS_MIRROR: MODELS_MIRROR, CHECKPOINT_MODELS_DIR: makeTempDir('prov-models'), CHECKPOINT_LOG_LEVEL: 'silent' }, {
      mqtt: { reconnectMs: 200 },
      http: { port: 0 },
      source: { thermal: { kind: 'sim', realtime: true, facesDir: FACES_DIR, seed: 5 } },
    });
    const agent = await runAgent(config);
    agents.push(agent);
    await waitFor(() => gateway.store.devices().find((d) => d.checkpoint === 'gate-1' && d.status === 'online'), { what: 'gate-1 online at the gateway', timeoutMs: 30_000 });
    const listed = await engineer.get('/api/checkpoints');
    expect(listed.body.checkpoints.find((c: any) => c.checkpoint === 'gate-1')).toMatchObject({ status: 'enrolled', brokerUser: 'hq.gate-1', model: { name: 'masked-face-640' } });

    // The same token again: refused, and the response says why.
    const again = captured();
    expect(await runEnroll({ gateway: front.url, token: body.token, dataDir: agentDir, caFile: certs.ca, force: true }, again.io)).toBe(1);
    expect(again.lines.err.join('\n')).toMatch(/enrollment refused \(used\): enrollment token for hq\/gate-1 was already used at .*ask an engineer for a new one/);
    expect(await enrollRaw(body.token)).toMatchObject({ status: 410, body: { reason: 'used' } });
    // An existing config is not overwritten by accident (and the token is not spent).
    expect(await runEnroll({ gateway: front.url, token: 'cpe_whatever', dataDir: agentDir, caFile: certs.ca }, again.io)).toBe(2);
    expect(again.lines.err.at(-1)).toMatch(/agent\.yaml exists; the token was not used/);

    // --- revocation: the live connection goes at once, the credentials stop working --------------
    let closedAt: number | null = null;
    const refusals: string[] = [];
    agent.mqtt.on('close', () => (closedAt ??= Date.now()));
    agent.mqtt.on('error', (e) => refusals.push(e.message));
    expect(agent.mqtt.connected).toBe(true);
    const revokedAt = Date.now();
    const revoked = await engineer.post('/api/checkpoints/hq/gate-1/revoke');
    expect(revoked).toMatchObject({ status: 200, body: { brokerUserRemoved: 'hq.gate-1', device: { status: 'revoked' } } });
    await waitFor(() => closedAt !== null, { what: 'the revoked agent disconnected by the broker', timeoutMs: 2_000 });
    const dropMs = closedAt! - revokedAt;
    await waitFor(() => refusals.some((m) => /Bad username or password|Not authorized/i.test(m)), { what: 'the revoked agent refused on reconnect', timeoutMs: 5_000 });
    expect(agent.mqtt.connected).toBe(false);
    expect(await connackCode(`mqtts://localhost:${broker.ports.mqtts}`, { username: config.mqtt.username!, password: config.mqtt.password!, ca: await readFile(certs.ca) })).toBe(4);
    await agent.stop();
    agents.splice(agents.indexOf(agent), 1);
    console.info(`provisioning: revoked device disconnected ${dropMs} ms after POST .../revoke`);

    const audit = await admin.get('/api/audit?limit=200');
    const actions = audit.body.entries.map((e: any) => `${e.action} ${e.target ?? ''}`);
    expect(actions).toEqual(expect.arrayContaining(['device.token_issued hq/gate-1', 'device.enrolled hq/gate-1', 'device.enroll_refused hq/gate-1', 'device.revoked hq/gate-1']));
    expect(JSON.stringify(audit.body)).not.toContain(body.token);
  }, 120_000);

  it('refuses expired, superseded and unknown tokens with the reason', async () => {
    const first = (await engineer.post('/api/checkpoints', { site: 'hq', checkpoint: 'gate-2' })).body;
    const second = (await engineer.post('/api/checkpoints', { site: 'hq', checkpoint: 'gate-2' })).body;
    expect(await enrollRaw(first.token)).toMatchObject({ status: 410, body: { reason: 'superseded', message: expect.stringMatching(/withdrawn .* newer token/) } });
    expect(await enrollRaw('cpe_not-a-token')).toMatchObject({ status: 401, body: { reason: 'unknown' } });
    skewMs = 601_000; // past tokenTtlS
    try {
      const run = captured();
      expect(await runEnroll({ gateway: gateway.url, token: second.token, dataDir: makeTempDir('prov-agent-expired') }, run.io)).toBe(1);
      expect(run.lines.err.join('\n')).toMatch(/enrollment refused \(expired\): enrollment token for hq\/gate-2 expired at \d{4}-.*ask an engineer for a new one/);
    } finally {
      skewMs = 0;
    }
    expect(broker.users.get('hq.gate-2')).toBeUndefined();
  });

  it('`checkpoint-gateway device add` issues a token the device can enroll with; `device revoke` locks it out', async () => {
    const configFile = join(makeTempDir('prov-cli'), 'gateway.yaml');
    writeFileSync(configFile, `dataDir: ${gatewayDir}\nprovisioning:\n  brokerUsersFile: ${join(brokerDir, 'users.sqlite')}\n  publicUrl: ${gateway.url}\n`);
    const add = cliIo({});
    expect(await gatewayCli(['device', 'add', 'hq/gate-7', '--config', configFile], add.io)).toBe(0);
    const token = /^(cpe_\S+)$/m.exec(add.out())![1]!;
    expect(add.out()).toContain(`edge-agent enroll --gateway ${gateway.url} --token ${token}`);
    const bad = cliIo({});
    expect(await gatewayCli(['device', 'add', 'hq-gate-7', '--config', configFile], bad.io)).toBe(1);
    expect(bad.err()).toMatch(/expected SITE\/CHECKPOINT/);

    const enrolled = await enrollRaw(token);
    expect(enrolled).toMatchObject({ status: 200, body: { site: 'hq', checkpoint: 'gate-7', mqtt: { username: 'hq.gate-7' }, caCert: expect.stringContaining('BEGIN CERTIFICATE') } });
    const { username, password } = enrolled.body.mqtt;
    const mqttUrl = `mqtt://127.0.0.1:${broker.ports.mqtt}`;
    const client = await mqtt.connectAsync(mqttUrl, { username, password, reconnectPeriod: 0 });
    let closed = false;
    client.on('close', () => (closed = true));
    const revoke = cliIo({});
    expect(await gatewayCli(['device', 'revoke', 'hq/gate-7', '--config', configFile], revoke.io)).toBe(0);
    expect(revoke.out()).toContain('broker user hq.gate-7 removed');
    await waitFor(() => closed, { what: 'gate-7 dropped after the CLI revoked it', timeoutMs: 2_000 });
    expect(await connackCode(mqttUrl, { username, password })).toBe(4);
  });
});
