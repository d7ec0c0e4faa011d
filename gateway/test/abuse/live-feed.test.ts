/* eslint-disable @typescript-eslint/no-explicit-any -- JSON bodies of API responses, checked by the tests that read them */
/**
 * The live feed against abuse: streams end with their session (logout, expiry, user removed),
 * connections are capped per user (429) and in total (503), and 200 readers that never read
 * cannot make the gateway buffer without bound. Also: impossible dates in query strings are a
 * 400 naming the field, not a 500. Real parts: our broker and the gateway over HTTP.
 */
import type { ServerResponse } from 'node:http';
import { Writable } from 'node:stream';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MqttClient } from 'mqtt';
import { makeTempDir, waitFor } from '@checkpoint/test-support';
import { createGateway, type Gateway } from '../../src/index.js';
import { LiveFeed } from '../../src/api/live.js';
import type { LiveEvent } from '../../src/store/operational.js';
import { API_PASSWORD, ApiClient, connectEdge, gatewayConfig, openSse, startTestBroker, type TestBroker } from '../helpers/world.js';

let broker: TestBroker;
let gateway: Gateway;
let edge: MqttClient;
let clock = Date.now();

beforeAll(async () => {
  broker = await startTestBroker(['gate-1'], makeTempDir('gw-live-broker'), 'memory');
  gateway = await createGateway(
    gatewayConfig({ dataDir: makeTempDir('gw-live'), mqttUrl: broker.url, live: { maxClients: 6, maxClientsPerUser: 2, sessionCheckMs: 200, stallTimeoutS: 600 } }),
    { now: () => (clock = Math.max(clock, Date.now())) },
  );
  for (const name of ['guard', 'guard2', 'guard3', 'guard4', 'guard5']) await gateway.users.add({ name, role: 'guard' }, API_PASSWORD);
  await waitFor(() => gateway.mqttConnected(), { what: 'gateway connected' });
  edge = await connectEdge(broker.url, 'gate-1');
});

afterAll(async () => {
  await edge?.endAsync();
  await gateway?.close();
  await broker?.close();
});

const live = (client: ApiClient) => openSse(`${gateway.url}/api/live`, { authorization: `Bearer ${client.token}` });
const liveStatus = async (client: ApiClient) => {
  const res = await fetch(`${gateway.url}/api/live`, { headers: { authorization: `Bearer ${client.token}` } });
  const body = res.status === 200 ? null : ((await res.json()) as any);
  if (res.status === 200) await res.body?.cancel();
  return { status: res.status, body };
};

describe('live streams end with their session', () => {
  it('logout ends the stream at once, with an end event', async () => {
    const guard = await ApiClient.login(gateway.url, 'guard');
    const sse = live(guard);
    await waitFor(async () => (await (await fetch(`${gateway.url}/healthz`)).json() as any).liveClients === 1, { what: 'stream open' });
    expect((await guard.post('/api/auth/logout')).status).toBe(204);
    await sse.waitFor((events) => events.some((e) => e.event === 'end'), 'end event after logout', 5000);
    await sse.done; // the server closed it
    // Events after the logout would not reach it: it is gone.
    await waitFor(async () => (await (await fetch(`${gateway.url}/healthz`)).json() as any).liveClients === 0, { what: 'no live clients' });
  });

  it('expiry and a removed user end it too', async () => {
    const guard = await ApiClient.login(gateway.url, 'guard2');
    const sse = live(guard);
    await waitFor(async () => (await (await fetch(`${gateway.url}/healthz`)).json() as any).liveClients === 1, { what: 'stream open' });
    clock += gateway.config.auth.tokenTtlS * 1000 + 1000; // the session expires
    await sse.waitFor((events) => events.some((e) => e.event === 'end'), 'end event after expiry', 5000);
    await sse.done;

    const other = await ApiClient.login(gateway.url, 'guard3');
    const second = live(other);
    await waitFor(async () => (await (await fetch(`${gateway.url}/healthz`)).json() as any).liveClients === 1, { what: 'second stream open' });
    gateway.users.remove('guard3');
    await second.waitFor((events) => events.some((e) => e.event === 'end'), 'end event after user removal', 5000);
    await second.done;
  });
});

describe('live-feed connection caps', () => {
  it('refuses a user past maxClientsPerUser (429) and everyone past maxClients (503), with a clear message', async () => {
    const a = await ApiClient.login(gateway.url, 'guard4');
    const b = await ApiClient.login(gateway.url, 'guard5');
    const c = await ApiClient.login(gateway.url, 'guard');
    const open = [live(a), live(a)];
    await waitFor(async () => (await (await fetch(`${gateway.url}/healthz`)).json() as any).liveClients === 2, { what: 'two streams' });
    const third = await liveStatus(a);
    expect(third.status).toBe(429);
    expect(third.body.message).toMatch(/guard4 already has 2 live-feed connections \(at most 2\)/);
    open.push(live(b), live(b), live(c), live(c));
    await waitFor(async () => (await (await fetch(`${gateway.url}/healthz`)).json() as any).liveClients === 6, { what: 'six streams' });
    const full = await liveStatus(await ApiClient.login(gateway.url, 'guard2'));
    expect(full.status).toBe(503);
    expect(full.body.message).toMatch(/live feed is full \(6 connections\)/);
    for (const s of open) s.close();
    await waitFor(async () => (await (await fetch(`${gateway.url}/healthz`)).json() as any).liveClients === 0, { what: 'streams closed' });
    expect((await liveStatus(a)).status).toBe(200);
  });
});

describe('query times that name no instant', () => {
  it('are a 400 naming the field on statistics, screenings and alerts', async () => {
    const guard = await ApiClient.login(gateway.url, 'guard');
    for (const [path, field] of [
      ['/api/stats/checkpoints?from=2024-13-45T25:61:61Z', 'from'],
      ['/api/stats/checkpoints?from=2024-01-01T00:00:00Z&to=2024-02-30T00:00Z', 'to'],
      ['/api/screenings?from=2024-12-31T23:59:60Z', 'from'],
      ['/api/alerts?since=2023-02-29T10:00:00Z', 'since'],
    ] as const) {
      const res = await guard.get(path);
      expect(res.status, path).toBe(400);
      expect(res.body.message, path).toMatch(new RegExp(`^querystring: /${field}: `));
    }
    expect((await guard.get('/api/stats/checkpoints?from=2024-02-29T00:00Z&to=2024-03-01T00:00:00Z')).status).toBe(200);
  });
});

describe('readers that never read', () => {
  /**
   * A response whose client never reads: once the socket's buffers are full (kernel, then Node's),
   * nothing more drains. Here the write callbacks simply never run, which is where a real stalled
   * socket ends up after its kernel buffers (a few MB on loopback) fill.
   */
  class StalledResponse extends Writable {
    constructor() {
      super({ highWaterMark: 16 * 1024 });
    }
    override _write(_chunk: unknown, _encoding: string, _callback: () => void): void {}
    writeHead(): this {
      return this;
    }
  }

  it('200 stalled streams hold at most ~80 KB each (a page of large events was ~1.5 MB each), and are closed after the stall timeout', async () => {
    // 2000 device events of ~3 KB, like a busy site's state and telemetry changes.
    const events: LiveEvent[] = Array.from({ length: 2000 }, (_, i) => ({ seq: i + 1, type: 'device', data: { site: 'hq', checkpoint: 'gate-1', blob: 'x'.repeat(3000), i } }));
    const store = { eventsAfter: (seq: number, limit: number) => events.slice(seq, seq + limit), eventRange: () => ({ first: 1, last: events.length }) };
    const closed: string[] = [];
    const feed = new LiveFeed(store, { maxClients: 1000, maxClientsPerUser: 1000, stallTimeoutMs: 1500, sessionCheckMs: 60_000 }, (reason) => closed.push(reason));
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const held = () => {
      gc();
      const m = process.memoryUsage();
      return m.heapUsed + m.external;
    };
    const before = held();
    const responses = Array.from({ length: 200 }, () => new StalledResponse());
    for (const res of responses) feed.attach(res as unknown as ServerResponse, 0, { user: 'watcher', valid: () => true });
    // Every stream got its first chunk and is now waiting for a drain that never comes.
    await waitFor(() => responses.every((r) => r.writableLength > 0), { what: 'a chunk written to every stream' });
    const buffered = responses.reduce((sum, r) => sum + r.writableLength, 0);
    const grewMb = (held() - before) / 1e6;
    console.log(`live feed: 200 stalled streams buffer ${(buffered / 1e6).toFixed(1)} MB; heap+buffers grew ${grewMb.toFixed(1)} MB`);
    expect(buffered / responses.length).toBeLessThan(80 * 1024);
    expect(grewMb).toBeLessThan(40);
    await waitFor(() => closed.length === 200, { what: 'stalled streams closed', timeoutMs: 10_000 });
    expect(closed.every((r) => r === 'stalled')).toBe(true);
    expect(feed.size).toBe(0);
    expect(responses.every((r) => r.destroyed)).toBe(true);
    feed.close();
  });
});
