/** The `checkpoint-gateway` CLI in-process: users from stdin on the data dir the gateway uses, config errors named by path. */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { makeTempDir } from '@checkpoint/test-support';
import { main, type CliIo } from '../src/cli.js';
import { createGateway } from '../src/index.js';
import { ApiClient } from './helpers/world.js';

function io(stdin: string, env: Record<string, string>): CliIo & { out: () => string; err: () => string } {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let out = '';
  let err = '';
  stdout.on('data', (d) => (out += d));
  stderr.on('data', (d) => (err += d));
  return { stdin: Readable.from([stdin]), stdout, stderr, env, out: () => out, err: () => err };
}

describe('checkpoint-gateway CLI', () => {
  it('user add reads the password from stdin into the data dir that run uses', async () => {
    const dataDir = makeTempDir('gw-cli');
    const cli = io('s3cret-password\n', { CHECKPOINT_DATA_DIR: dataDir });
    expect(await main(['user', 'add', 'nurse-1', '--role', 'guard'], cli)).toBe(0);
    expect(cli.out()).toContain('user nurse-1 (guard) saved');
    expect(cli.out()).not.toContain('s3cret');

    const list = io('', { CHECKPOINT_DATA_DIR: dataDir });
    await main(['user', 'list'], list);
    expect(list.out()).toMatch(/^nurse-1\tguard\t/);

    const short = io('short\n', { CHECKPOINT_DATA_DIR: dataDir });
    expect(await main(['user', 'add', 'x', '--role', 'guard'], short)).toBe(1);
    expect(short.err()).toContain('password too short');
    const badRole = io('long-enough-password\n', { CHECKPOINT_DATA_DIR: dataDir });
    expect(await main(['user', 'add', 'x', '--role', 'doctor'], badRole)).not.toBe(0);
    expect(badRole.err()).toContain('doctor');

    // OPC UA off: its default port 4840 may be taken (a running demo); tests use free ports only.
    const gateway = await createGateway({ dataDir, logLevel: 'silent', http: { host: '127.0.0.1', port: 0 }, mqtt: { url: 'mqtt://127.0.0.1:1' }, opcua: { enabled: false } });
    try {
      const api = await ApiClient.login(gateway.url, 'nurse-1', 's3cret-password');
      expect((await api.get('/api/auth/me')).body).toMatchObject({ user: 'nurse-1', role: 'guard' });
    } finally {
      await gateway.close();
    }
  });

  it('names a wrong config key by its path', async () => {
    const dir = makeTempDir('gw-cli-config');
    const file = join(dir, 'gateway.yaml');
    writeFileSync(file, 'dataDir: /tmp/x\nalerts:\n  escalateAfter: 60\n');
    const cli = io('', {});
    expect(await main(['run', '--config', file], cli)).toBe(1);
    expect(cli.err()).toContain(`invalid config ${file}: /alerts/escalateAfter: unexpected field`);
  });
});
