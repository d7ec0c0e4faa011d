/**
 * Revocation: a connected client whose user is removed, re-bound or re-keyed in users.sqlite —
 * by another process, as the gateway does — is disconnected within a poll, and cannot come back.
 */
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import mqtt, { type MqttClient } from 'mqtt';
import { describe, expect, it, onTestFinished } from 'vitest';
import { makeTempDir, waitFor } from '@checkpoint/test-support';
import { createBroker, openUserStore, type Principal } from '../src/index.js';
import { revocationReason } from '../src/revocation.js';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const PASSWORD = 'revocation-pw-1';
const quiet = { logLevel: 'silent' as const, metrics: { port: null }, mqtt: { port: 0 }, host: '127.0.0.1', sysIntervalS: 0, persistence: 'memory' as const };

/** Runs SQL on the user store from a separate Node process (a gateway on the same machine). */
function otherProcess(file: string, sql: string, ...params: string[]): void {
  const script = `const db = require('better-sqlite3')(process.argv[1]); db.pragma('busy_timeout = 5000'); db.prepare(process.argv[2]).run(...process.argv.slice(3)); db.close();`;
  execFileSync(process.execPath, ['-e', script, file, sql, ...params], { cwd: REPO, stdio: 'pipe' });
}

async function connected(url: string, username: string, password = PASSWORD): Promise<{ client: MqttClient; closedAt: () => number | null }> {
  const client = mqtt.connect(url, { username, password, clientId: `${username}-client`, reconnectPeriod: 0 });
  let closedAt: number | null = null;
  client.on('close', () => (closedAt ??= Date.now()));
  await new Promise<void>((resolve, reject) => {
    client.once('connect', () => resolve());
    client.once('error', reject);
  });
  onTestFinished(() => void client.end(true));
  return { client, closedAt: () => closedAt };
}

async function connackCode(url: string, username: string, password = PASSWORD): Promise<number> {
  const client = mqtt.connect(url, { username, password, reconnectPeriod: 0 });
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

describe('revocationReason (pure)', () => {
  const edge: Principal = { name: 'gate-1', role: 'edge', site: 'hq', checkpoint: 'gate-1' };
  const record = (over: object = {}) => ({ ...edge, createdAt: 't0', updatedAt: 't0', ...over }) as Principal & { createdAt: string; updatedAt: string };
  it('keeps an unchanged user, names why a changed one must go', () => {
    expect(revocationReason({ principal: edge, updatedAt: 't0' }, record())).toBeNull();
    expect(revocationReason({ principal: edge, updatedAt: 't0' }, undefined)).toBe('user removed');
    expect(revocationReason({ principal: edge, updatedAt: 't0' }, record({ checkpoint: 'gate-2' }))).toBe('role or binding changed');
    expect(revocationReason({ principal: edge, updatedAt: 't0' }, { name: 'gate-1', role: 'viewer', createdAt: 't0', updatedAt: 't0' })).toBe('role or binding changed');
    expect(revocationReason({ principal: edge, updatedAt: 't0' }, record({ updatedAt: 't1' }))).toBe('password changed');
  });
});

describe('revoked users are locked out of the broker', () => {
  it('drops the live connection of a user removed or re-bound by another process, refuses its reconnect, keeps the others', async () => {
    const dir = makeTempDir('broker-revocation');
    const file = join(dir, 'users.sqlite');
    // The broker opens its own store in the data dir (as `checkpoint-broker run` does).
    const broker = await createBroker({ config: { ...quiet, dataDir: dir } });
    onTestFinished(() => broker.close());
    for (const checkpoint of ['gate-1', 'gate-2', 'gate-3']) await broker.users.add({ name: checkpoint, role: 'edge', site: 'hq', checkpoint }, PASSWORD);
    const url = `mqtt://127.0.0.1:${broker.ports.mqtt}`;
    const [one, two, three] = await Promise.all(['gate-1', 'gate-2', 'gate-3'].map((u) => connected(url, u)));

    const removedAt = Date.now();
    otherProcess(file, 'DELETE FROM users WHERE name = ?', 'gate-1');
    await waitFor(() => one!.closedAt() !== null, { what: 'gate-1 disconnected', timeoutMs: 2_000 });
    const dropMs = one!.closedAt()! - removedAt;
    expect(await connackCode(url, 'gate-1')).toBe(4); // bad user name or password

    otherProcess(file, `UPDATE users SET binding = '{"site":"hq","checkpoint":"gate-9"}' WHERE name = ?`, 'gate-2');
    await waitFor(() => two!.closedAt() !== null, { what: 'gate-2 disconnected after re-binding', timeoutMs: 2_000 });

    // Unchanged users stay connected through both changes.
    expect(three!.client.connected).toBe(true);
    expect(three!.closedAt()).toBeNull();
    console.info(`revocation: live connection dropped ${dropMs} ms after the user was removed by another process`);
  });

  it('drops a client whose password was changed, and lets the new password in', async () => {
    const dir = makeTempDir('broker-revocation-pw');
    const store = openUserStore(join(dir, 'users.sqlite'), { mosquittoHashIterations: 0 });
    await store.add({ name: 'gate-1', role: 'edge', site: 'hq', checkpoint: 'gate-1' }, PASSWORD);
    // A store handed in without its file: every poll looks the connected users up.
    const broker = await createBroker({ config: { ...quiet, dataDir: dir }, users: store });
    onTestFinished(async () => {
      await broker.close();
      store.close();
    });
    const url = `mqtt://127.0.0.1:${broker.ports.mqtt}`;
    const one = await connected(url, 'gate-1');
    await store.setPassword('gate-1', 'revocation-pw-2');
    await waitFor(() => one.closedAt() !== null, { what: 'gate-1 disconnected after its password changed', timeoutMs: 2_000 });
    expect(await connackCode(url, 'gate-1')).toBe(4);
    expect(await connackCode(url, 'gate-1', 'revocation-pw-2')).toBe(0);
  });
});
