/**
 * The `checkpoint-gateway` CLI on a PostgreSQL store (CHECKPOINT_STORE=postgres): users go into
 * the shared database (a gateway on it lets them log in), the addition is audited there, the
 * password never reaches the output, and backup/restore refuse with what to use instead.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openUserStore } from '@checkpoint/broker';
import { makeTempDir, startPostgres, type PostgresServer } from '@checkpoint/test-support';
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

let postgres: PostgresServer;
beforeAll(async () => {
  postgres = await startPostgres();
}, 90_000);
afterAll(async () => {
  await postgres?.stop();
});

describe('checkpoint-gateway CLI on PostgreSQL', () => {
  it('adds, lists and removes users in the shared database; a gateway on it lets them log in', async () => {
    const env = { CHECKPOINT_DATA_DIR: makeTempDir('gw-cli-pg'), CHECKPOINT_STORE: 'postgres', CHECKPOINT_POSTGRES_URL: postgres.url };
    const add = io('s3cret-password\n', env);
    expect(await main(['user', 'add', 'nurse-pg', '--role', 'guard'], add)).toBe(0);
    expect(add.out()).toContain('user nurse-pg (guard) saved in PostgreSQL');
    expect(add.out() + add.err()).not.toContain('s3cret');

    const list = io('', env);
    expect(await main(['user', 'list'], list)).toBe(0);
    expect(list.out()).toMatch(/^nurse-pg\tguard\t/m);

    // Another data dir: the user is found in the database, not in a SQLite file.
    const gateway = await createGateway({
      dataDir: makeTempDir('gw-cli-pg-run'),
      logLevel: 'silent',
      http: { host: '127.0.0.1', port: 0 },
      mqtt: { url: 'mqtt://127.0.0.1:1' },
      opcua: { enabled: false },
      store: { backend: 'postgres', postgres: { url: postgres.url } },
    });
    try {
      const api = await ApiClient.login(gateway.url, 'nurse-pg', 's3cret-password');
      expect((await api.get('/api/auth/me')).body).toMatchObject({ user: 'nurse-pg', role: 'guard' });
      expect((await gateway.store.auditLog(50)).some((e) => e.actor === 'cli' && e.action === 'user.add' && e.target === 'nurse-pg')).toBe(true);
    } finally {
      await gateway.close();
    }

    const remove = io('', env);
    expect(await main(['user', 'remove', 'nurse-pg'], remove)).toBe(0);
    const again = io('', env);
    expect(await main(['user', 'remove', 'nurse-pg'], again)).toBe(1);
    expect(again.err()).toContain('no user nurse-pg');
  });

  it('device add puts the token into the shared database: a gateway on it enrolls the device; device list and revoke see it', async () => {
    const dir = makeTempDir('gw-cli-pg-device');
    const usersFile = join(dir, 'broker-users.sqlite');
    const configFile = join(dir, 'gateway.yaml');
    writeFileSync(configFile, `dataDir: ${join(dir, 'cli')}\nstore:\n  backend: postgres\n  postgres:\n    url: ${postgres.url}\nprovisioning:\n  brokerUsersFile: ${usersFile}\n`);
    const add = io('', {});
    expect(await main(['device', 'add', 'hq/gate-pg', '--config', configFile], add)).toBe(0);
    const token = /^(cpe_\S+)$/m.exec(add.out())![1]!;
    // Nothing went into the CLI's own data dir: another gateway, on another data dir, knows the token.
    const brokerUsers = openUserStore(usersFile);
    const gateway = await createGateway(
      {
        dataDir: makeTempDir('gw-cli-pg-device-run'),
        logLevel: 'silent',
        http: { host: '127.0.0.1', port: 0 },
        mqtt: { url: 'mqtt://127.0.0.1:1' },
        opcua: { enabled: false },
        store: { backend: 'postgres', postgres: { url: postgres.url } },
      },
      { brokerUsers },
    );
    try {
      const res = await fetch(`${gateway.url}/api/enroll`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token }) });
      expect(res.status).toBe(200);
      expect(brokerUsers.get('hq.gate-pg')).toMatchObject({ role: 'edge', site: 'hq', checkpoint: 'gate-pg' });
    } finally {
      await gateway.close();
    }
    const list = io('', {});
    expect(await main(['device', 'list', '--config', configFile], list)).toBe(0);
    expect(list.out()).toMatch(/^hq\/gate-pg\tenrolled\t/m);
    const revoke = io('', {});
    expect(await main(['device', 'revoke', 'hq/gate-pg', '--config', configFile], revoke)).toBe(0);
    expect(revoke.out()).toContain('broker user hq.gate-pg removed');
    expect(brokerUsers.get('hq.gate-pg')).toBeUndefined();
    brokerUsers.close();
  });

  it('refuses backup and restore, naming the tools to use instead', async () => {
    const env = { CHECKPOINT_DATA_DIR: makeTempDir('gw-cli-pg-backup'), CHECKPOINT_STORE: 'postgres', CHECKPOINT_POSTGRES_URL: postgres.url };
    for (const command of ['backup', 'restore']) {
      const cli = io('', env);
      expect(await main([command, '/tmp/never-written.sqlite'], cli)).toBe(1);
      expect(cli.err()).toContain(`${command}: store.backend is postgres`);
      expect(cli.err()).toContain('pg_dump');
    }
  });
});
