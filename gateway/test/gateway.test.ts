/**
 * The gateway in-process against our real broker, with series in SQLite (no InfluxDB): ingest,
 * duplicates, bad input, alerts, API roles and validation, snapshots, live feed resume,
 * commands, retention, statistics.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MqttClient } from 'mqtt';
import { checkpointTopics, type Command } from '@checkpoint/protocol';
import { makeTempDir, waitFor } from '@checkpoint/test-support';
import { createGateway, type Gateway } from '../src/index.js';
import {
  API_PASSWORD,
  ApiClient,
  connectEdge,
  gatewayConfig,
  makeScreening,
  openSse,
  publishScreenings,
  startTestBroker,
  type TestBroker,
} from './helpers/world.js';

let broker: TestBroker;
let gateway: Gateway;
let edge: MqttClient;
let guard: ApiClient;
let engineer: ApiClient;
let clock = Date.now();

const metricValue = async (name: string, labels: string) => {
  const text = await (await fetch(`${gateway.url}/metrics`)).text();
  const line = text.split('\n').find((l) => (labels ? l.startsWith(`${name}{`) && l.includes(labels) : l.startsWith(`${name} `)));
  return line ? Number(line.split(' ').pop()) : 0;
};

beforeAll(async () => {
  broker = await startTestBroker();
  gateway = await createGateway(gatewayConfig({ dataDir: makeTempDir('gw-data'), mqttUrl: broker.url, commands: { timeoutMs: 1500 } }), {
    now: () => (clock = Math.max(clock, Date.now())),
  });
  for (const role of ['guard', 'dispatcher', 'engineer', 'admin'] as const) await gateway.users.add({ name: role, role }, API_PASSWORD);
  await waitFor(() => gateway.mqttConnected(), { what: 'gateway connected to the broker' });
  edge = await connectEdge(broker.url, 'gate-1');
  guard = await ApiClient.login(gateway.url, 'guard');
  engineer = await ApiClient.login(gateway.url, 'engineer');
});

afterAll(async () => {
  await edge?.endAsync();
  await gateway?.close();
  await broker?.close();
});

describe('ingest', () => {
  it('stores each screening once, even when the edge publishes it again', async () => {
    const screenings = Array.from({ length: 50 }, (_, i) => makeScreening({ trackId: i }));
    await publishScreenings(edge, [...screenings, ...screenings.slice(0, 10)]);
    await waitFor(async () => (await guard.get('/api/screenings?checkpoint=gate-1&limit=1000')).body.screenings.length >= 50, { what: '50 screenings in the API' });
    await waitFor(() => gateway.spoolDepth() === 0, { what: 'spool drained' });
    const listed = (await guard.get('/api/screenings?checkpoint=gate-1&limit=1000')).body.screenings as Array<{ id: string }>;
    expect(listed.map((s) => s.id).sort()).toEqual(screenings.map((s) => s.id).sort());
    expect(await metricValue('checkpoint_gateway_messages_total', 'result="duplicate"')).toBe(10);
    const stats = await guard.get(`/api/stats/checkpoints?from=${new Date(clock - 3_600_000).toISOString()}&interval=1h`);
    expect(stats.status).toBe(200);
    expect(stats.body.source).toBe('sqlite');
    const total = stats.body.checkpoints[0].buckets.reduce((a: number, b: { counts: { pass: number } }) => a + b.counts.pass, 0);
    expect(total).toBe(50);
  });

  it('keeps each device\'s last telemetry: fps, stage times, blackbody reading, CPU and memory', async () => {
    const telemetry = {
      ts: new Date().toISOString(),
      site: 'hq',
      checkpoint: 'gate-1',
      fps: 8.7,
      stages: { decode: 4.1, inference: 7.5, thermometry: 0.3 },
      cpuTempC: 61.2,
      ambientC: 21.5,
      blackbody: { setC: 35, measuredC: 34.62, status: 'ok' },
      queueDepth: 3,
      rssMb: 228.4,
    };
    await edge.publishAsync(checkpointTopics.telemetry({ site: 'hq', checkpoint: 'gate-1' }), JSON.stringify(telemetry), { qos: 0 });
    const device = async () => (await guard.get('/api/devices')).body.devices.find((d: { checkpoint: string }) => d.checkpoint === 'gate-1');
    await waitFor(async () => (await device())?.telemetry?.ts === telemetry.ts, { what: 'telemetry in /api/devices' });
    const { site: _site, checkpoint: _checkpoint, ...kept } = telemetry;
    expect((await device()).telemetry).toEqual(kept);
  });

  it('counts and drops malformed JSON, schema violations, huge payloads, unknown topics and impostor payloads, and keeps working', async () => {
    const topic = checkpointTopics.screening({ site: 'hq', checkpoint: 'gate-1' });
    await edge.publishAsync(topic, '{"id": "01', { qos: 1 });
    await edge.publishAsync(topic, JSON.stringify({ ...makeScreening(), temperatureC: 'hot' }), { qos: 1 });
    await edge.publishAsync(topic, Buffer.alloc(200_000, 0x7b), { qos: 1 });
    await edge.publishAsync(topic, JSON.stringify(makeScreening({ checkpoint: 'gate-2' })), { qos: 1 });
    await edge.publishAsync(checkpointTopics.snapshot({ site: 'hq', checkpoint: 'gate-1' }, makeScreening().id), Buffer.from('not a jpeg'), { qos: 1 });
    // The broker's ACL lets an edge publish snapshot/+, but only snapshot/{ULID} is in the contract.
    await edge.publishAsync('checkpoint/v1/hq/gate-1/snapshot/not-a-ulid', Buffer.from([0xff, 0xd8, 0xff]), { qos: 1 });
    await waitFor(async () => (await metricValue('checkpoint_gateway_invalid_payloads_total', 'cause="not_jpeg"')) === 1, { what: 'invalid payloads counted' });
    // Labels carry topic patterns, never ids (one series per snapshot id would grow without bound).
    expect(await metricValue('checkpoint_gateway_invalid_payloads_total', 'topic="checkpoint/v1/+/+/snapshot/+",cause="not_jpeg"')).toBe(1);
    expect(await metricValue('checkpoint_gateway_invalid_payloads_total', `topic="checkpoint/v1/+/+/screening",cause="not_json"`)).toBe(1);
    expect(await metricValue('checkpoint_gateway_invalid_payloads_total', `topic="checkpoint/v1/+/+/screening",cause="schema"`)).toBe(1);
    expect(await metricValue('checkpoint_gateway_invalid_payloads_total', `topic="checkpoint/v1/+/+/screening",cause="too_large"`)).toBe(1);
    expect(await metricValue('checkpoint_gateway_invalid_payloads_total', `topic="checkpoint/v1/+/+/screening",cause="topic_mismatch"`)).toBe(1);
    await waitFor(async () => (await metricValue('checkpoint_gateway_invalid_payloads_total', 'topic="other",cause="unknown_topic"')) === 1, { what: 'unknown topic counted' });
    // Still ingesting.
    const after = makeScreening();
    await publishScreenings(edge, [after]);
    await waitFor(async () => (await guard.get('/api/screenings?limit=1')).body.screenings[0]?.id === after.id, { what: 'a valid screening after bad ones' });
  });
});

describe('alerts, live feed and snapshots', () => {
  it('opens an alert per non-pass screening, streams it to SSE clients, resumes with Last-Event-ID, and takes an acknowledgement', async () => {
    const sse = openSse(`${gateway.url}/api/live?access_token=${guard.token}`);
    await waitFor(async () => (await metricValue('checkpoint_gateway_live_clients', '')) === 1, { what: 'live client connected' });
    const fever = makeScreening({ decision: 'secondary_check', snapshot: true });
    const jpeg = Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), Buffer.alloc(3000, 7), Buffer.from([0xff, 0xd9])]);
    await publishScreenings(edge, [fever]);
    await edge.publishAsync(checkpointTopics.snapshot(fever, fever.id), jpeg, { qos: 1 });
    await sse.waitFor((e) => e.some((x) => x.event === 'alert' && x.data.alert.screeningId === fever.id), 'alert event on the live feed');
    const alertEvent = sse.events.find((x) => x.event === 'alert' && x.data.alert.screeningId === fever.id)!;
    expect(alertEvent.data).toMatchObject({ action: 'opened', alert: { kind: 'screening', status: 'open', screening: { temperatureC: 38.1, decision: 'secondary_check' } } });
    const alertId = alertEvent.data.alert.id as string;
    expect(sse.events.some((x) => x.event === 'screening' && x.data.id === fever.id)).toBe(true);

    const listed = await guard.get('/api/alerts?status=open&checkpoint=gate-1');
    expect(listed.body.alerts.map((a: { id: string }) => a.id)).toContain(alertId);

    await waitFor(async () => (await guard.get(`/api/snapshots/${fever.id}`)).status === 200, { what: 'snapshot stored' });
    const snap = await guard.get(`/api/snapshots/${fever.id}`);
    expect(snap.headers.get('content-type')).toBe('image/jpeg');
    expect(Buffer.compare(snap.body, jpeg)).toBe(0);

    // A dashboard that lost its connection resumes after the last event it saw.
    const lastSeen = alertEvent.id!;
    sse.close();
    const ack = await guard.post(`/api/alerts/${alertId}/ack`, { outcome: 'false_alarm', note: 'sunburn' });
    expect(ack.status).toBe(200);
    expect(ack.body).toMatchObject({ status: 'closed', acknowledgement: { by: 'guard', outcome: 'false_alarm', note: 'sunburn' } });
    expect((await guard.post(`/api/alerts/${alertId}/ack`, { outcome: 'cleared' })).status).toBe(409);

    const resumed = openSse(`${gateway.url}/api/live`, { authorization: `Bearer ${guard.token}`, 'last-event-id': String(lastSeen) });
    await resumed.waitFor((e) => e.some((x) => x.event === 'alert' && x.data.action === 'closed'), 'the closing event after resume');
    const ids = resumed.events.map((e) => e.id!);
    expect(Math.min(...ids)).toBe(lastSeen + 1);
    expect(new Set(ids).size).toBe(ids.length);
    resumed.close();

    const audit = await (await ApiClient.login(gateway.url, 'admin')).get('/api/audit?limit=50');
    const actions = audit.body.entries.filter((e: { target: string }) => e.target === alertId).map((e: { action: string; actor: string }) => `${e.actor}:${e.action}`);
    expect(actions.sort()).toEqual(['guard:alert.closed', 'system:alert.opened']);
    expect(audit.body.entries.some((e: { action: string; target: string }) => e.action === 'snapshot.view' && e.target === fever.id)).toBe(true);
  });

  it('groups an invalid storm from one checkpoint into one device alert with a count', async () => {
    const edge2 = await connectEdge(broker.url, 'gate-2');
    const base = Date.now();
    const invalid = Array.from({ length: 8 }, (_, i) => makeScreening({ checkpoint: 'gate-2', decision: 'invalid', ts: new Date(base + i * 1000).toISOString() }));
    for (const s of invalid) await publishScreenings(edge2, [s]);
    await edge2.endAsync();
    await waitFor(async () => (await guard.get('/api/alerts?checkpoint=gate-2&limit=100')).body.alerts.some((a: { kind: string; count: number }) => a.kind === 'invalid_storm' && a.count === 8), {
      what: 'a storm alert with count 8',
    });
    const alerts = (await guard.get('/api/alerts?checkpoint=gate-2&limit=100')).body.alerts as Array<{ kind: string; status: string; groupedInto: string | null }>;
    const storm = alerts.find((a) => a.kind === 'invalid_storm')!;
    expect(alerts.filter((a) => a.kind === 'invalid_storm')).toHaveLength(1);
    // The default storm size is 5: the first four had their own alerts, now folded in.
    expect(alerts.filter((a) => a.kind === 'screening').every((a) => a.status === 'closed' && a.groupedInto === (storm as unknown as { id: string }).id)).toBe(true);
    expect(alerts.filter((a) => a.kind === 'screening')).toHaveLength(4);
  });

  it('opens a checkpoint-offline alert from the last will and resolves it when the checkpoint is back', async () => {
    const state = (status: 'online' | 'offline') => JSON.stringify({ status, ts: new Date().toISOString(), site: 'hq', checkpoint: 'gate-2' });
    const topic = checkpointTopics.state({ site: 'hq', checkpoint: 'gate-2' });
    const agent = await connectEdge(broker.url, 'gate-2', { will: { topic, payload: Buffer.from(state('offline')), qos: 1, retain: true } });
    await agent.publishAsync(topic, state('online'), { qos: 1, retain: true });
    await waitFor(async () => (await guard.get('/api/devices')).body.devices.some((d: { checkpoint: string; status: string }) => d.checkpoint === 'gate-2' && d.status === 'online'), { what: 'gate-2 online' });
    // Crash: the broker publishes the last will.
    (agent as unknown as { stream: { destroy(): void } }).stream.destroy();
    agent.end(true);
    await waitFor(async () => (await guard.get('/api/alerts?checkpoint=gate-2&status=open')).body.alerts.some((a: { kind: string }) => a.kind === 'checkpoint_offline'), { what: 'offline alert' });
    const back = await connectEdge(broker.url, 'gate-2');
    await back.publishAsync(topic, state('online'), { qos: 1, retain: true });
    await waitFor(
      async () => (await guard.get('/api/alerts?checkpoint=gate-2&limit=100')).body.alerts.find((a: { kind: string }) => a.kind === 'checkpoint_offline')?.resolvedAt !== null,
      { what: 'offline alert resolved' },
    );
    await back.endAsync();
  });
});

describe('API access and validation', () => {
  it('401 without a token, 403 for a role too low, 400 naming the invalid field', async () => {
    const anonymous = new ApiClient(gateway.url);
    expect((await anonymous.get('/api/alerts')).status).toBe(401);
    expect((await new ApiClient(gateway.url, 'forged-token').get('/api/alerts')).status).toBe(401);
    expect((await anonymous.get('/healthz')).status).toBe(200);
    const forbidden = await guard.post('/api/checkpoints/hq/gate-1/cmd', { type: 'ping' });
    expect(forbidden.status).toBe(403);
    expect(forbidden.body.message).toContain('engineer');
    expect((await guard.get('/api/audit')).status).toBe(403);

    const alertId = (await guard.get('/api/alerts?limit=1')).body.alerts[0].id;
    const bad = await guard.post(`/api/alerts/${alertId}/ack`, { outcome: 'fine' });
    expect(bad.status).toBe(400);
    expect(bad.body.message).toMatch(/^body: \/outcome: /);
    const extra = await guard.post(`/api/alerts/${alertId}/ack`, { outcome: 'cleared', by: 'someone-else' });
    expect(extra.body.message).toBe('body: /by: unexpected field');
    expect((await guard.get('/api/screenings?decision=maybe')).body.message).toMatch(/querystring: \/decision/);
    expect((await guard.get('/api/stats/checkpoints?from=2024-01-01T00:00:00Z&interval=1x')).body.message).toMatch(/\/interval/);
    const badCmd = await engineer.post('/api/checkpoints/hq/gate-1/cmd', { type: 'set-config', config: 'nope' });
    expect(badCmd.status).toBe(400);
    expect(badCmd.body.message).toContain('/config');
    expect((await guard.get('/docs/json')).body.openapi).toMatch(/^3\./);
  });

  it('rate-limits failed logins per address', async () => {
    const attempt = (password: string) =>
      fetch(`${gateway.url}/api/auth/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'admin', password }) });
    const codes: number[] = [];
    for (let i = 0; i < 11; i++) codes.push((await attempt('wrong-password')).status);
    expect(codes.slice(0, 10).every((c) => c === 401)).toBe(true);
    expect(codes[10]).toBe(429);
    expect((await attempt(API_PASSWORD)).status).toBe(429); // even the right password waits
    clock += 301_000;
    expect((await attempt(API_PASSWORD)).status).toBe(200);
  });
});

describe('commands', () => {
  it('returns the agent cmd/ack matched by id, and 504 when no agent answers', async () => {
    const agent = await connectEdge(broker.url, 'gate-1');
    await agent.subscribeAsync(checkpointTopics.cmd({ site: 'hq', checkpoint: 'gate-1' }), { qos: 1 });
    agent.on('message', (_topic, payload) => {
      const cmd = JSON.parse(payload.toString()) as Command;
      void agent.publishAsync(checkpointTopics.cmdAck({ site: 'hq', checkpoint: 'gate-1' }), JSON.stringify({ id: cmd.id, ts: new Date().toISOString(), ok: true, detail: { type: cmd.type } }), { qos: 1 });
    });
    const res = await engineer.post('/api/checkpoints/hq/gate-1/cmd', { type: 'set-config', config: { screening: { thresholdC: 37.5 } } });
    expect(res.status).toBe(200);
    expect(res.body.ack).toMatchObject({ id: res.body.command.id, ok: true, detail: { type: 'set-config' } });
    await agent.endAsync();

    const timeout = await engineer.post('/api/checkpoints/hq/gate-9/cmd', { type: 'ping' });
    expect(timeout.status).toBe(504);
  });
});

describe('retention', () => {
  it('deletes screenings and snapshots older than the configured age', async () => {
    const before = (await guard.get('/api/screenings?limit=10000')).body.screenings.length;
    expect(before).toBeGreaterThan(0);
    clock += 31 * 86_400_000;
    const result = gateway.runRetention();
    expect(result.screenings).toBe(before);
    expect(result.snapshots).toBe(1);
    guard = await ApiClient.login(gateway.url, 'guard'); // the old token expired with the jump
    expect((await guard.get('/api/screenings?limit=10000')).body.screenings).toEqual([]);
  });
});

describe('sessions', () => {
  it('renews a wall monitor token up to auth.sessionMaxS after signing in, then asks for the password', async () => {
    const HOUR = 3_600_000;
    clock = Math.max(clock, Date.now()) + 60_000; // ahead of real time: the gateway's clock stands still
    const signedInMs = clock;
    const wall = await ApiClient.login(gateway.url, 'guard');
    const limitMs = signedInMs + 7 * 24 * HOUR; // the default auth.sessionMaxS
    const expiries: number[] = [];
    // Renew every 11 hours (tokens last 12) until less than a minute would be left.
    while (limitMs - (clock + 11 * HOUR) >= 60_000) {
      clock += 11 * HOUR;
      const renewed = await wall.post('/api/auth/renew');
      expect(renewed.status, JSON.stringify(renewed.body)).toBe(200);
      wall.token = renewed.body.token as string;
      expiries.push(Date.parse(renewed.body.expiresAt as string));
    }
    expect(expiries.length).toBe(15);
    expect(Math.max(...expiries)).toBe(limitMs); // the last renewals were cut short at the limit
    expect(expiries.every((e) => e <= limitMs)).toBe(true);
    clock = limitMs - 30_000;
    const refused = await wall.post('/api/auth/renew');
    expect(refused.status).toBe(401);
    expect(refused.body.message).toMatch(/cannot be renewed past 604800 s: sign in again/);
    expect((await wall.get('/api/auth/me')).status).toBe(200); // the token itself runs out at the limit
    clock = limitMs + 1;
    expect((await wall.get('/api/auth/me')).status).toBe(401);
    expect((await ApiClient.login(gateway.url, 'guard')).token).toBeTruthy(); // a password starts a new session
  });
});
