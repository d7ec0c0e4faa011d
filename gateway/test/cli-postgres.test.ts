/**
 * The `checkpoint-gateway` CLI on a PostgreSQL store (CHECKPOINT_STORE=postgres): users go into
 * the shared database (a gateway on it lets them log in), the addition is audited there, the
 * password never reaches the output, and backup/restore refuse with what to use instead.
 */
import { PassThrough, Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
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
