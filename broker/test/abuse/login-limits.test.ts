/**
 * Issue 14, the broker's side of the login limits (the one guard, src/login-guard.ts):
 * - 200 concurrent wrong logins all got their password checked (limit 5): the check and the
 *   recording of the failure were separated by the async password check;
 * - 300 valid CONNECTs at once from one address delayed everyone's login by seconds (every
 *   scrypt queued on libuv's pool, first come first served).
 */
import { connect as netConnect } from 'node:net';
import { join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { MqttClient, type IClientOptions } from 'mqtt';
import { makeTempDir } from '@checkpoint/test-support';
import { createBroker, openUserStore, type UserStore } from '../../src/index.js';
import { addMatrixUsers, PASSWORD } from '../matrix.js';
import { connackCode, quiet } from './helpers.js';

async function brokerCountingChecks(config: Record<string, unknown> = {}) {
  const dir = makeTempDir('checkpoint-broker-logins');
  const store = openUserStore(join(dir, 'users.sqlite'), { mosquittoHashIterations: 0, scrypt: { N: 8192, r: 8, p: 1 } });
  await addMatrixUsers(store);
  let checks = 0;
  const users: UserStore = { ...store, verify: (name, password) => ((checks += 1), store.verify(name, password)) };
  const broker = await createBroker({ config: { ...quiet, dataDir: dir, ...config }, users });
  onTestFinished(async () => {
    await broker.close();
    store.close();
  });
  return { url: `mqtt://127.0.0.1:${broker.ports.mqtt}`, port: broker.ports.mqtt, checks: () => checks };
}

/** CONNACK code and when it came, for a client connecting from `localAddress`. */
function timedConnack(port: number, localAddress: string, options: IClientOptions): Promise<{ code: number; at: number }> {
  const client = new MqttClient(() => netConnect({ host: '127.0.0.1', port, localAddress }), { reconnectPeriod: 0, connectTimeout: 60_000, ...options });
  return new Promise((resolve, reject) => {
    client.on('packetreceive', (packet) => {
      if (packet.cmd !== 'connack') return;
      const at = performance.now();
      client.end(true);
      resolve({ code: packet.returnCode ?? -1, at });
    });
    client.on('error', () => {});
    client.on('close', () => setTimeout(() => reject(new Error('closed without CONNACK')), 100));
  });
}

describe('broker login limits', () => {
  it('checks only maxFailures of 200 concurrent wrong logins from one address; the rest are refused unchecked', { timeout: 60_000 }, async () => {
    const { url, checks } = await brokerCountingChecks({ auth: { maxFailures: 5, failureWindowS: 60 } });
    const codes = await Promise.all(Array.from({ length: 200 }, () => connackCode(url, { username: 'edge-a', password: 'wrong-password' })));
    expect(checks()).toBe(5);
    expect(codes.filter((c) => c === 4)).toHaveLength(5); // bad user name or password
    expect(codes.filter((c) => c === 5)).toHaveLength(195); // not authorized: limited
  });

  it('does not let valid logins in between buy more guesses at another account', { timeout: 60_000 }, async () => {
    const { url, checks } = await brokerCountingChecks({ auth: { maxFailures: 5, failureWindowS: 60 } });
    const guesses: number[] = [];
    for (let i = 0; i < 20; i++) {
      guesses.push(await connackCode(url, { username: 'edge-b', password: `guess-${i}` }));
      await connackCode(url, { username: 'edge-a', password: PASSWORD });
    }
    expect(guesses.filter((c) => c === 4)).toHaveLength(5);
    expect(checks()).toBeLessThanOrEqual(5 + 5); // 5 guesses and at most the valid logins before the limit
  });

  it('serves another address promptly while one address sends 300 valid CONNECTs at once', { timeout: 120_000 }, async () => {
    const { port } = await brokerCountingChecks();
    const t0 = performance.now();
    const flood = Array.from({ length: 300 }, (_, i) => timedConnack(port, '127.0.0.1', { username: 'robot-1', password: PASSWORD, clientId: `flood-${i}` }));
    const other = await timedConnack(port, '127.0.0.2', { username: 'edge-a', password: PASSWORD, clientId: 'gate-1' });
    const floodResults = await Promise.all(flood);
    const floodDone = Math.max(...floodResults.map((r) => r.at));
    const before = floodResults.filter((r) => r.at < other.at).length;
    console.log(`300 CONNECTs from 127.0.0.1 took ${Math.round(floodDone - t0)} ms; the login from 127.0.0.2 took ${Math.round(other.at - t0)} ms, after ${before} of the 300`);
    expect(other.code).toBe(0);
    expect(floodResults.every((r) => r.code === 0)).toBe(true); // valid logins are only delayed, never refused
    // Round-robin over addresses: the other address is served as soon as its CONNECT is read (the
    // test process also runs the 300 clients, which delays that), not after the flood (before: 300 of 300).
    expect(before).toBeLessThan(100);
  });
});
