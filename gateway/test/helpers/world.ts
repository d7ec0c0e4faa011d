/* eslint-disable @typescript-eslint/no-explicit-any -- JSON bodies of API responses, checked by the tests that read them */
/**
 * Real parts for gateway tests: our broker (aedes, auth + ACL, level persistence) with a gateway
 * user and edge users, protocol-valid screenings, an API client and an SSE reader.
 */
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { monotonicFactory } from 'ulid';
import { createBroker, openUserStore, type Broker } from '@checkpoint/broker';
import { assertPayload, checkpointTopics, type Decision, type Screening } from '@checkpoint/protocol';
import { makeTempDir, startMosquitto, waitFor } from '@checkpoint/test-support';

export const BROKER_PASSWORD = 'broker-test-password';
export const API_PASSWORD = 'api-test-password';

export interface TestBroker {
  broker: Broker;
  url: string;
  dir: string;
  close(): Promise<void>;
}

/**
 * Our broker on a free port with user `gw` (gateway) and `edge-<checkpoint>` (edge, site hq) users,
 * with its default level persistence (bench/broker-session-check.ts checks the persistent-session
 * delivery that once held messages back).
 */
export async function startTestBroker(
  checkpoints: string[] = ['gate-1', 'gate-2'],
  dir = makeTempDir('gw-broker'),
  persistence: 'memory' | 'level' = 'level',
): Promise<TestBroker> {
  const users = openUserStore(join(dir, 'users.sqlite'), { mosquittoHashIterations: 0 });
  if (!users.get('gw')) {
    await users.add({ name: 'gw', role: 'gateway' }, BROKER_PASSWORD);
    for (const checkpoint of checkpoints) await users.add({ name: `edge-${checkpoint}`, role: 'edge', site: 'hq', checkpoint }, BROKER_PASSWORD);
  }
  const start = () =>
    createBroker({ config: { dataDir: dir, host: '127.0.0.1', mqtt: { port: 0 }, metrics: { port: null }, logLevel: 'silent', sysIntervalS: 0, persistence }, users });
  const broker = await start();
  return {
    broker,
    url: `mqtt://127.0.0.1:${broker.ports.mqtt}`,
    dir,
    async close() {
      await broker.close();
      users.close();
    },
  };
}

/**
 * A real Mosquitto with the same users and rights as startTestBroker (gateway `gw`, edge users).
 * The fault tests use it: our broker with level persistence holds back some QoS 1 messages of a
 * persistent session until the subscriber reconnects (see bench/broker-session-check.ts).
 */
export async function startTestMosquitto(checkpoints: string[] = ['gate-1']): Promise<{ url: string; close(): Promise<void> }> {
  const users: Record<string, string> = { gw: BROKER_PASSWORD };
  const acl = ['user gw', 'topic readwrite checkpoint/v1/#'];
  for (const checkpoint of checkpoints) {
    users[`edge-${checkpoint}`] = BROKER_PASSWORD;
    acl.push(`user edge-${checkpoint}`, `topic write checkpoint/v1/hq/${checkpoint}/#`, `topic read checkpoint/v1/hq/${checkpoint}/cmd`);
  }
  // Mosquitto queues at most 1000 messages for an offline persistent session by default and drops
  // the rest: a gateway must be given room for its outages (README "Mosquitto").
  const mosquitto = await startMosquitto({ users, acl: acl.join('\n'), persistence: true, extraConfig: 'max_queued_messages 1000000' });
  return { url: mosquitto.url, close: () => mosquitto.stop() };
}

const nextId = monotonicFactory();

/** A protocol-valid screening; `ts` defaults to now (the bench measures latency from it). */
/**
 * Screening times one millisecond apart at least: real people pass a checkpoint seconds apart,
 * and InfluxDB keeps one point per series and timestamp (the gateway spreads same-millisecond
 * screenings over sub-millisecond digits from their ids, which thousands made in one loop
 * could still hit twice).
 */
let lastTsMs = 0;
function nextTs(): string {
  lastTsMs = Math.max(Date.now(), lastTsMs + 1);
  return new Date(lastTsMs).toISOString();
}

export function makeScreening(over: Partial<Screening> & { checkpoint?: string } = {}): Screening {
  const decision: Decision = over.decision ?? 'pass';
  return assertPayload('screening', {
    id: nextId(),
    ts: nextTs(),
    site: 'hq',
    checkpoint: 'gate-1',
    trackId: 1,
    temperatureC: decision === 'invalid' ? null : decision === 'secondary_check' ? 38.1 : 36.6,
    method: 'canthus',
    blackbody: { setC: 35, measuredC: 34.8, offsetC: 0.2 },
    ambientC: 22,
    mask: 'mask',
    maskScore: 0.9,
    faceScore: 0.95,
    decision,
    reasons: decision === 'secondary_check' ? ['elevated_temperature'] : decision === 'invalid' ? ['too_cold_retry'] : [],
    thresholdC: 37.3,
    mode: 'absolute',
    frames: 5,
    latencyMs: 400,
    model: { name: 'masked-face-640', sha256: 'a'.repeat(64) },
    snapshot: false,
    ...over,
  });
}

export async function connectEdge(url: string, checkpoint: string, options: mqtt.IClientOptions = {}): Promise<MqttClient> {
  const client = mqtt.connect(url, { username: `edge-${checkpoint}`, password: BROKER_PASSWORD, clientId: `test-edge-${checkpoint}-${Math.random().toString(36).slice(2, 8)}`, reconnectPeriod: 200, ...options });
  await new Promise<void>((resolve, reject) => {
    client.once('connect', () => resolve());
    client.once('error', reject);
  });
  return client;
}

/** Publish screenings with QoS 1, at most `window` unacknowledged at a time. */
export async function publishScreenings(client: MqttClient, screenings: Screening[], window = 64): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < screenings.length) {
      const s = screenings[next++]!;
      await client.publishAsync(checkpointTopics.screening(s), JSON.stringify(s), { qos: 1 });
    }
  };
  await Promise.all(Array.from({ length: Math.min(window, screenings.length) }, worker));
}

export function gatewayConfig(over: { dataDir: string; mqttUrl: string; influxUrl?: string | null } & Record<string, unknown>) {
  const { dataDir, mqttUrl, influxUrl, ...rest } = over;
  return {
    dataDir,
    logLevel: 'silent',
    http: { host: '127.0.0.1', port: 0 },
    mqtt: { url: mqttUrl, username: 'gw', password: BROKER_PASSWORD, clientId: `gw-${Math.random().toString(36).slice(2, 8)}`, reconnectMs: 200 },
    influx: { url: influxUrl ?? null },
    series: { flushIntervalMs: 100, retryMinMs: 50, retryMaxMs: 1000 },
    // OPC UA has its own tests; elsewhere it would only cost start-up time and port 4840.
    opcua: { enabled: false },
    ...rest,
  };
}

export class ApiClient {
  constructor(
    readonly base: string,
    public token: string | null = null,
  ) {}

  static async login(base: string, username: string, password = API_PASSWORD): Promise<ApiClient> {
    const res = await fetch(`${base}/api/auth/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username, password }) });
    if (res.status !== 200) throw new Error(`login ${username}: ${res.status} ${await res.text()}`);
    return new ApiClient(base, ((await res.json()) as { token: string }).token);
  }

  async request(method: string, path: string, body?: unknown): Promise<{ status: number; body: any; headers: Headers }> {
    const res = await fetch(`${this.base}${path}`, {
      method,
      headers: { ...(this.token ? { authorization: `Bearer ${this.token}` } : {}), ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      ...(body !== undefined ? { body: typeof body === 'string' ? body : JSON.stringify(body) } : {}),
    });
    const type = res.headers.get('content-type') ?? '';
    const parsed = type.includes('json') ? await res.json() : type.startsWith('image/') ? Buffer.from(await res.arrayBuffer()) : await res.text();
    return { status: res.status, body: parsed, headers: res.headers };
  }

  get(path: string) {
    return this.request('GET', path);
  }

  post(path: string, body?: unknown) {
    return this.request('POST', path, body);
  }
}

export interface SseEvent {
  id: number | null;
  event: string;
  data: any;
}

/** A minimal SSE reader over fetch (what a dashboard's EventSource does). */
export function openSse(url: string, headers: Record<string, string> = {}) {
  const events: SseEvent[] = [];
  const abort = new AbortController();
  const done = (async () => {
    const res = await fetch(url, { headers, signal: abort.signal });
    if (res.status !== 200) throw new Error(`SSE ${url}: ${res.status}`);
    const decoder = new TextDecoder();
    let buffer = '';
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      buffer += decoder.decode(chunk, { stream: true });
      let end: number;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const frame = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        let id: number | null = null;
        let event = 'message';
        const data: string[] = [];
        for (const line of frame.split('\n')) {
          if (line.startsWith('id: ')) id = Number(line.slice(4));
          else if (line.startsWith('event: ')) event = line.slice(7);
          else if (line.startsWith('data: ')) data.push(line.slice(6));
        }
        if (data.length) events.push({ id, event, data: JSON.parse(data.join('\n')) });
      }
    }
  })().catch((err: Error) => {
    if (err.name !== 'AbortError') throw err;
  });
  return {
    events,
    close: () => abort.abort(),
    done,
    waitFor: (predicate: (events: SseEvent[]) => boolean, what: string, timeoutMs = 20_000) =>
      waitFor(() => predicate(events), { what, timeoutMs }),
  };
}
