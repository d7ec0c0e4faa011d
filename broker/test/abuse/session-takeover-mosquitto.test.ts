/**
 * The same session-takeover attack against a real Mosquitto fed `mosquitto-export
 * --bind-client-ids` (use_username_as_clientid): the device's CONNECT with the gateway's id is
 * accepted under its own name, so the gateway's queued screenings stay the gateway's. Without
 * the option (the default export), Mosquitto hands the session over: the test shows both.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import mqtt from 'mqtt';
import { makeTempDir, startMosquitto, waitFor } from '@checkpoint/test-support';
import { exportMosquitto, openUserStore } from '../../src/index.js';
import { addMatrixUsers, connect, PASSWORD } from '../matrix.js';

const GATEWAY_SESSION = { username: 'gateway', password: PASSWORD, clientId: 'checkpoint-gateway', clean: false, reconnectPeriod: 0 };

async function takeoverDuringRestart(bindClientIds: boolean): Promise<number> {
  const dir = makeTempDir('checkpoint-mosquitto-takeover');
  const store = openUserStore(join(dir, 'users.sqlite'), { mosquittoHashIterations: 1000, scrypt: { N: 1024, r: 8, p: 1 } });
  onTestFinished(() => store.close());
  await addMatrixUsers(store);
  const exported = exportMosquitto(store, join(dir, 'export'), { bindClientIds });
  const server = await startMosquitto({ persistence: true, extraConfig: readFileSync(exported.configFile, 'utf8') });
  onTestFinished(() => server.stop());

  const gateway = await connect(server.url, GATEWAY_SESSION);
  await gateway.subscribeAsync('checkpoint/v1/#', { qos: 1 });
  await gateway.endAsync();
  const edge = await connect(server.url, { username: 'edge-a', password: PASSWORD, clientId: 'gate-1-agent' });
  onTestFinished(() => edge.endAsync());
  for (let i = 0; i < 10; i++) await edge.publishAsync('checkpoint/v1/hq/gate-1/screening', `fever-${i}`, { qos: 1 });
  // The attacker connects with the gateway's id (persistent) and leaves again.
  const attacker = await connect(server.url, { username: 'edge-b', password: PASSWORD, clientId: 'checkpoint-gateway', clean: false });
  await attacker.endAsync();
  for (let i = 10; i < 20; i++) await edge.publishAsync('checkpoint/v1/hq/gate-1/screening', `fever-${i}`, { qos: 1 });
  // A round trip through a fresh subscriber marks the point where all 20 are queued.
  const received = new Set<string>();
  const back = mqtt.connect(server.url, GATEWAY_SESSION);
  back.on('message', (_topic, payload) => received.add(payload.toString()));
  onTestFinished(() => back.endAsync());
  await waitFor(() => back.connected, { what: 'gateway back' });
  await back.publishAsync('checkpoint/v1/hq/gate-1/cmd', 'marker', { qos: 1 });
  await waitFor(() => received.has('marker'), { what: 'the marker (after the queued messages)', timeoutMs: 10_000 });
  received.delete('marker');
  return received.size;
}

describe('Mosquitto export: client ids bound to users', () => {
  it('with --bind-client-ids the gateway gets all 20 screenings queued while it was away', { timeout: 60_000 }, async () => {
    expect(await takeoverDuringRestart(true)).toBe(20);
  });

  it('without it Mosquitto hands the session to whoever uses the id (why the option exists)', { timeout: 60_000 }, async () => {
    expect(await takeoverDuringRestart(false)).toBeLessThan(20);
  });
});
