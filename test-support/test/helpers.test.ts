import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { describe, expect, it, onTestFinished } from 'vitest';
import {
  freePort,
  influxdConfig,
  makeTempDir,
  mosquittoConfig,
  removeTempDir,
  ServerStartError,
  startMosquitto,
  waitFor,
} from '@checkpoint/test-support';
import { plainPasswordFile } from '../src/mosquitto.js';

describe('freePort', () => {
  it('returns a loopback port that can be bound', async () => {
    const port = await freePort();
    expect(port).toBeGreaterThan(0);
    const server = createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', resolve);
    });
    await new Promise((resolve) => server.close(resolve));
  });
});

describe('makeTempDir / removeTempDir', () => {
  it('makes a fresh dir with the prefix and removes it on request', () => {
    const dir = makeTempDir('checkpoint-helpers');
    expect(dir).toMatch(/checkpoint-helpers-[^/]+$/);
    expect(existsSync(dir)).toBe(true);
    removeTempDir(dir);
    expect(existsSync(dir)).toBe(false);
  });
});

describe('waitFor', () => {
  it('resolves with the first truthy value', async () => {
    let calls = 0;
    const value = await waitFor(() => (++calls >= 3 ? { calls } : undefined), { what: 'three calls', intervalMs: 1 });
    expect(value).toEqual({ calls: 3 });
  });

  it('names what it waited for and the last error when it times out', async () => {
    await expect(
      waitFor(
        () => {
          throw new Error('connection refused');
        },
        { what: 'the moon', timeoutMs: 30, intervalMs: 5 },
      ),
    ).rejects.toThrow(/Timed out after 30 ms waiting for the moon \(last error: connection refused\)/);
  });
});

describe('influxdConfig', () => {
  it('keeps every file under the temp dir and every socket on loopback', () => {
    const text = influxdConfig({ dir: '/tmp/x', httpPort: 1111, rpcPort: 2222 });
    expect(text).toContain('bind-address = "127.0.0.1:2222"');
    expect(text).toContain('bind-address = "127.0.0.1:1111"');
    expect(text).toContain('reporting-disabled = true');
    for (const key of ['dir = "/tmp/x/meta"', 'dir = "/tmp/x/data"', 'wal-dir = "/tmp/x/wal"']) expect(text).toContain(key);
    expect(text).not.toMatch(/enabled = true\n\s*bind-address = ":/); // no service on all interfaces
  });
});

describe('mosquittoConfig', () => {
  it('refuses anonymous clients exactly when there is a password file', () => {
    const open = mosquittoConfig({ port: 1883, runningAsRoot: false });
    expect(open).toContain('listener 1883 127.0.0.1');
    expect(open).toContain('allow_anonymous true');
    expect(open).toContain('persistence false');
    expect(open).not.toContain('user root');

    const closed = mosquittoConfig({
      port: 1883,
      runningAsRoot: true,
      passwordFile: '/d/passwd',
      aclFile: '/d/acl',
      persistenceDir: '/d/persistence',
    });
    expect(closed).toContain('allow_anonymous false');
    expect(closed).toContain('password_file /d/passwd');
    expect(closed).toContain('acl_file /d/acl');
    expect(closed).toContain('persistence_location /d/persistence/');
    expect(closed).toContain('user root');
  });

  it('rejects user names mosquitto_passwd cannot store', () => {
    expect(plainPasswordFile({ a: 'p:with:colons' })).toBe('a:p:with:colons\n');
    expect(() => plainPasswordFile({ 'bad:name': 'x' })).toThrow(/user name "bad:name"/);
    expect(() => plainPasswordFile({ ok: 'two\nlines' })).toThrow(/password of user ok/);
  });
});

describe('startup failures explain themselves', () => {
  it('quotes the log tail when the server rejects its config', async () => {
    const failure = startMosquitto({ extraConfig: 'no_such_option true' });
    await expect(failure).rejects.toThrow(ServerStartError);
    await expect(failure).rejects.toThrow(/mosquitto failed to start: mosquitto exited with code \d+ before it was ready/);
    await expect(failure).rejects.toThrow(/Unknown configuration variable "no_such_option"/);
  });

  it('reports a taken port (and does not retry a port the caller chose)', async () => {
    const blocker = createServer((socket) => socket.destroy()); // some other service holds the port
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    onTestFinished(() => new Promise<void>((resolve) => blocker.close(() => resolve())));
    const address = blocker.address();
    if (!address || typeof address === 'string') throw new Error('no port');

    const failure = startMosquitto({ port: address.port });
    await expect(failure).rejects.toMatchObject({ name: 'ServerStartError', addressInUse: true });
    await expect(failure).rejects.toThrow(/Address already in use/i);
  });
});
