/**
 * Issue 14: one subscriber that never reads stalled delivery to the gateway for the drain
 * timeout (30 s): aedes waited for that socket to drain before finishing each publish. Now the
 * stalled client's bytes wait in its own buffer, and it is cut off at a byte or time limit.
 */
import type { Socket } from 'node:net';
import { describe, expect, it, onTestFinished } from 'vitest';
import mqtt, { type MqttClient } from 'mqtt';
import { waitFor } from '@checkpoint/test-support';
import type { Broker } from '../../src/index.js';
import { connect, PASSWORD, startBroker } from './helpers.js';

const TOPIC = 'checkpoint/v1/hq/gate-1/screening';
const BIG = Buffer.alloc(200 * 1024, 'x'); // the broker does not parse payloads; big ones fill buffers fast

/** A viewer subscribed to screenings that then stops reading its socket. */
async function stalledViewer(url: string): Promise<MqttClient> {
  const viewer = await connect(url, { username: 'viewer', password: PASSWORD, clientId: 'stalled-viewer', keepalive: 0 });
  await viewer.subscribeAsync('checkpoint/v1/+/+/screening', { qos: 1 });
  (viewer.stream as Socket).pause();
  onTestFinished(() => void viewer.end(true));
  return viewer;
}

async function gatewayCounting(url: string): Promise<{ received(): number }> {
  const gateway = await connect(url, { username: 'gateway', password: PASSWORD, clientId: 'gw-reader' });
  onTestFinished(() => gateway.endAsync());
  let n = 0;
  gateway.on('message', () => (n += 1));
  await gateway.subscribeAsync('checkpoint/v1/#', { qos: 1 });
  return { received: () => n };
}

async function publishMany(url: string, count: number): Promise<void> {
  const edge = await connect(url, { username: 'edge-a', password: PASSWORD, clientId: 'gate-1' });
  onTestFinished(() => edge.endAsync());
  for (let i = 0; i < count; i++) await edge.publishAsync(TOPIC, BIG, { qos: 1 });
}

const slowCount = async (broker: Broker) => (await broker.metrics.slowSubscribers.get()).values[0]?.value ?? 0;

describe('a subscriber that never reads', () => {
  // 60 MB: more than the kernel buffers a paused loopback reader can absorb (tcp_rmem max is often 32 MB).
  it('does not hold up delivery to the gateway (60 MB while it is stalled, drain timeout 20 s)', { timeout: 40_000 }, async () => {
    const { url } = await startBroker({ limits: { drainTimeoutMs: 20_000 } });
    await stalledViewer(url);
    const gateway = await gatewayCounting(url);
    const started = Date.now();
    const published = publishMany(url, 300);
    await waitFor(() => gateway.received() === 300, { what: () => `300 messages at the gateway (got ${gateway.received()})`, timeoutMs: 15_000 });
    await published;
    console.log(`300 messages of 200 KB reached the gateway in ${Date.now() - started} ms with a stalled viewer`);
  });

  it('is cut off once more than maxBufferedBytesPerClient wait for it, and counted', { timeout: 30_000 }, async () => {
    const { url, broker } = await startBroker({ limits: { maxBufferedBytesPerClient: 1024 * 1024 } });
    await stalledViewer(url);
    const gateway = await gatewayCounting(url);
    await publishMany(url, 60);
    await waitFor(() => gateway.received() === 60, { what: 'all 60 at the gateway', timeoutMs: 10_000 });
    await waitFor(async () => (await slowCount(broker)) === 1, { what: 'the stalled viewer cut off', timeoutMs: 5000 });
    await waitFor(() => broker.aedes.clients['stalled-viewer'] === undefined, { what: 'the viewer gone from the broker' });
    expect(broker.aedes.clients['gw-reader']).toBeDefined();
  });

  it('is cut off when its socket has not drained for drainTimeoutMs, even under the byte limit', { timeout: 30_000 }, async () => {
    const { url, broker } = await startBroker({ limits: { drainTimeoutMs: 1000, maxBufferedBytesPerClient: 256 * 1024 * 1024 } });
    await stalledViewer(url);
    const gateway = await gatewayCounting(url);
    await publishMany(url, 60);
    await waitFor(() => gateway.received() === 60, { what: 'all 60 at the gateway', timeoutMs: 10_000 });
    await waitFor(async () => (await slowCount(broker)) === 1, { what: 'the stalled viewer cut off after 1 s', timeoutMs: 10_000 });
    await waitFor(() => broker.aedes.clients['stalled-viewer'] === undefined, { what: 'the viewer gone from the broker' });
  });

  it('is not what a reconnecting persistent session with a large backlog looks like: its queue replays at its pace, none cut off', { timeout: 40_000 }, async () => {
    const { url, broker } = await startBroker({ persistence: 'level', limits: { maxBufferedBytesPerClient: 1024 * 1024 } });
    const session = { username: 'gateway', password: PASSWORD, clientId: 'gw-backlog', clean: false };
    const away = await connect(url, session);
    await away.subscribeAsync('checkpoint/v1/#', { qos: 1 });
    await away.endAsync();
    await publishMany(url, 100); // 20 MB queued for it, 20 times the per-client limit
    let n = 0;
    const back = mqtt.connect(url, { ...session, reconnectPeriod: 0 });
    back.on('message', () => (n += 1));
    onTestFinished(() => back.endAsync());
    await waitFor(() => n >= 100, { what: () => `100 queued messages (got ${n})`, timeoutMs: 20_000 });
    expect(await slowCount(broker)).toBe(0);
  });
});
