/**
 * Issue 14: while the gateway was away, a device user connecting with the gateway's client id
 * (clean session false) took the gateway's persistent session, and the gateway's queued messages
 * were gone (0 of 20 fever screenings reached it). Client ids are now bound to users.
 */
import { describe, expect, it, onTestFinished } from 'vitest';
import mqtt from 'mqtt';
import { waitFor } from '@checkpoint/test-support';
import { connackCode, connect, PASSWORD, startBroker } from './helpers.js';

const GATEWAY_SESSION = { username: 'gateway', password: PASSWORD, clientId: 'checkpoint-gateway', clean: false, reconnectPeriod: 0 };
const screening = (i: number) => JSON.stringify({ id: `fever-${i}`, temperatureC: 38.4, decision: 'secondary_check' });

describe('client ids are bound to users', () => {
  it("refuses a device that takes the gateway's client id while the gateway is away; the gateway gets all 20 queued screenings", { timeout: 30_000 }, async () => {
    const { url, broker } = await startBroker({ persistence: 'level' });
    const gateway = await connect(url, GATEWAY_SESSION);
    await gateway.subscribeAsync('checkpoint/v1/#', { qos: 1 });
    await gateway.endAsync(); // the gateway restarts

    const edge = await connect(url, { username: 'edge-a', password: PASSWORD, clientId: 'gate-1-agent' });
    onTestFinished(() => edge.endAsync());
    for (let i = 0; i < 10; i++) await edge.publishAsync('checkpoint/v1/hq/gate-1/screening', screening(i), { qos: 1 });
    // Another device (and the publishing device itself) tries the gateway's id, persistent and clean.
    expect(await connackCode(url, { username: 'edge-b', password: PASSWORD, clientId: 'checkpoint-gateway', clean: false })).toBe(2);
    expect(await connackCode(url, { username: 'edge-a', password: PASSWORD, clientId: 'checkpoint-gateway', clean: true })).toBe(2);
    expect(await connackCode(url, { username: 'viewer', password: PASSWORD, clientId: 'checkpoint-gateway', clean: false })).toBe(2);
    for (let i = 10; i < 20; i++) await edge.publishAsync('checkpoint/v1/hq/gate-1/screening', screening(i), { qos: 1 });

    const received = new Set<string>();
    // The handler is attached before CONNECT goes out: queued messages follow the CONNACK at once.
    const back = mqtt.connect(url, GATEWAY_SESSION);
    back.on('message', (_topic, payload) => received.add((JSON.parse(payload.toString()) as { id: string }).id));
    onTestFinished(() => back.endAsync());
    await waitFor(() => received.size === 20, { what: () => `20 queued screenings at the gateway (got ${received.size})`, timeoutMs: 10_000 });
    expect((await broker.metrics.snapshot()).denied.connect).toBe(3);
  });

  it("reserves the gateway's default id for the gateway role even before the gateway ever connected", async () => {
    const { url } = await startBroker();
    for (const clientId of ['checkpoint-gateway', 'checkpoint-gateway-2']) {
      expect(await connackCode(url, { username: 'edge-a', password: PASSWORD, clientId, clean: false })).toBe(2);
      expect(await connackCode(url, { username: 'robot-1', password: PASSWORD, clientId })).toBe(2);
    }
    expect(await connackCode(url, { username: 'gateway', password: PASSWORD, clientId: 'checkpoint-gateway', clean: false })).toBe(0);
  });

  it('keeps the binding across a broker restart, and releases a removed user\'s ids', { timeout: 30_000 }, async () => {
    const first = await startBroker({ persistence: 'level' });
    const robot = await connect(first.url, { username: 'robot-1', password: PASSWORD, clientId: 'robot-r1', clean: false });
    await robot.endAsync();
    const second = await first.restart();
    expect(await connackCode(second.url, { username: 'robot-2', password: PASSWORD, clientId: 'robot-r1' })).toBe(2);
    expect(await connackCode(second.url, { username: 'robot-1', password: PASSWORD, clientId: 'robot-r1', clean: false })).toBe(0);
    // A user that is removed no longer holds anything (its session is not its successor's to fear).
    expect(second.store.remove('robot-1')).toBe(true);
    expect(await connackCode(second.url, { username: 'robot-2', password: PASSWORD, clientId: 'robot-r1' })).toBe(0);
  });

  it('lets one user hold several ids but bounds how many it keeps (least recently used released)', { timeout: 30_000 }, async () => {
    const { url, store } = await startBroker();
    for (let i = 0; i < 20; i++) expect(await connackCode(url, { username: 'edge-b', password: PASSWORD, clientId: `tool-${i}` })).toBe(0);
    // The oldest four were released: another user may take them; the newest are still bound.
    expect(store.claimClientId('edge-a', 'tool-0')).toEqual({ ok: true });
    expect(store.claimClientId('edge-a', 'tool-19')).toEqual({ ok: false, owner: 'edge-b' });
    // An empty client id gets a random one from the broker and claims nothing.
    expect(await connackCode(url, { username: 'edge-b', password: PASSWORD, clientId: '', clean: true })).toBe(0);
    expect(store.claimClientId('edge-a', 'tool-19')).toEqual({ ok: false, owner: 'edge-b' });
  });
});
