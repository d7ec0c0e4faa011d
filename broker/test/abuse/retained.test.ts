/**
 * Issue 14: edge users could publish retained messages under snapshot/+ (2000 retained 20 KB
 * images were accepted; every gateway subscribe re-sent them; face images stayed in broker
 * persistence). Only `state` (edge) and `connection`/`factsheet` (robots) may be retained now.
 */
import { describe, expect, it, onTestFinished } from 'vitest';
import type { MqttClient } from 'mqtt';
import { waitFor } from '@checkpoint/test-support';
import type { Broker } from '../../src/index.js';
import { connackCode, connect, PASSWORD, startBroker } from './helpers.js';

const A = 'checkpoint/v1/hq/gate-1';
const ULID = '01HZY3V6Q8J7K2M4N5P6R7S8T9';
const JPEG = Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), Buffer.alloc(20 * 1024, 7)]);

/** Topics with a retained message in the broker's persistence. */
async function retainedInStore(broker: Broker): Promise<string[]> {
  const persistence = broker.aedes.persistence as unknown as { createRetainedStream(pattern: string): AsyncIterable<{ topic: string }> };
  const topics: string[] = [];
  for await (const packet of persistence.createRetainedStream('#')) topics.push(packet.topic);
  return topics.sort();
}

/** Retained messages a fresh gateway subscriber is sent for `filter`, collected until `until` has arrived. */
async function retainedSeen(url: string, filter: string, until: string): Promise<string[]> {
  const gw = await connect(url, { username: 'gateway', password: PASSWORD, clientId: `gw-probe-${Date.now()}` });
  const topics: string[] = [];
  gw.on('message', (topic, _payload, packet) => {
    if (packet.retain) topics.push(topic);
  });
  await gw.subscribeAsync(filter, { qos: 1 });
  await waitFor(() => topics.includes(until), { what: `retained ${until}`, timeoutMs: 10_000 });
  await gw.endAsync();
  return topics;
}

describe('retained messages only where the contract says so', () => {
  it('refuses retained snapshots (and every other non-state edge topic), keeps retained state, counts each refusal', { timeout: 30_000 }, async () => {
    const started = await startBroker({ persistence: 'level' });
    const { url, broker } = started;
    const edge: MqttClient = await connect(url, { username: 'edge-a', password: PASSWORD, clientId: 'gate-1' });
    onTestFinished(() => edge.endAsync());
    for (let i = 0; i < 50; i++) await edge.publishAsync(`${A}/snapshot/${ULID.slice(0, -2)}${String(i).padStart(2, '0')}`, JPEG, { qos: 1, retain: true });
    await edge.publishAsync(`${A}/screening`, '{}', { qos: 1, retain: true });
    await edge.publishAsync(`${A}/telemetry`, '{}', { qos: 0, retain: true });
    await edge.publishAsync(`${A}/cmd/ack`, '{}', { qos: 1, retain: true });
    await edge.publishAsync(`${A}/state`, '{"status":"online"}', { qos: 1, retain: true });
    // A robot may retain connection and factsheet, not state; the gateway retains nothing.
    const robot = await connect(url, { username: 'robot-1', password: PASSWORD, clientId: 'r1' });
    onTestFinished(() => robot.endAsync());
    await robot.publishAsync('uagv/v2/acme/R1/state', '{}', { qos: 1, retain: true });
    await robot.publishAsync('uagv/v2/acme/R1/connection', '{"connectionState":"ONLINE"}', { qos: 1, retain: true });
    const gateway = await connect(url, { username: 'gateway', password: PASSWORD, clientId: 'gw-sender' });
    onTestFinished(() => gateway.endAsync());
    await gateway.publishAsync(`${A}/cmd`, '{}', { qos: 1, retain: true });

    expect(edge.connected && robot.connected && gateway.connected).toBe(true); // refused, not disconnected
    expect((await broker.metrics.snapshot()).denied.retain).toBe(50 + 3 + 1 + 1);

    // After a restart (level persistence), a new gateway subscriber is sent only the retained state and connection.
    await Promise.all([edge.endAsync(), robot.endAsync(), gateway.endAsync()]);
    const restarted = await started.restart();
    expect(await retainedInStore(restarted.broker)).toEqual([`${A}/state`, 'uagv/v2/acme/R1/connection']);
    const again = restarted.url;
    expect(await retainedSeen(again, 'checkpoint/v1/#', `${A}/state`)).toEqual([`${A}/state`]);
    expect(await retainedSeen(again, 'uagv/v2/#', 'uagv/v2/acme/R1/connection')).toEqual(['uagv/v2/acme/R1/connection']);
  });

  it('refuses a retained last will outside state (CONNACK 5), accepts one on state', async () => {
    const { url } = await startBroker();
    const will = { topic: `${A}/telemetry`, payload: Buffer.from('x'), qos: 1 as const, retain: true };
    expect(await connackCode(url, { username: 'edge-a', password: PASSWORD, will })).toBe(5);
    expect(await connackCode(url, { username: 'edge-a', password: PASSWORD, will: { ...will, retain: false } })).toBe(0);
    expect(await connackCode(url, { username: 'edge-a', password: PASSWORD, will: { ...will, topic: `${A}/state` } })).toBe(0);
  });

  it('removes retained images left in persistence by an older version when it starts', { timeout: 30_000 }, async () => {
    const first = await startBroker({ persistence: 'level' });
    const persistence = first.broker.aedes.persistence as unknown as { storeRetained(p: object): Promise<void> };
    // What an older broker would have stored:
    await persistence.storeRetained({ cmd: 'publish', topic: `${A}/snapshot/${ULID}`, payload: JPEG, qos: 1, retain: true, dup: false });
    await persistence.storeRetained({ cmd: 'publish', topic: `${A}/state`, payload: Buffer.from('{}'), qos: 1, retain: true, dup: false });
    const second = await first.restart();
    expect(await retainedInStore(second.broker)).toEqual([`${A}/state`]);
    expect(await retainedSeen(second.url, 'checkpoint/v1/#', `${A}/state`)).toEqual([`${A}/state`]);
  });
});
