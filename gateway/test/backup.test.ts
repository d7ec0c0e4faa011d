/** `checkpoint-gateway backup` / `restore`: an online backup of a running gateway, restored into a fresh data dir, gives back its users and alerts. */
import { statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { makeTempDir } from '@checkpoint/test-support';
import { main, type CliIo } from '../src/cli.js';
import { createGateway } from '../src/index.js';
import { openDatabase } from '../src/store/db.js';
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

const gatewayOn = (dataDir: string) => createGateway({ dataDir, logLevel: 'silent', http: { host: '127.0.0.1', port: 0 }, mqtt: { url: 'mqtt://127.0.0.1:1' } });

describe('gateway backup and restore', () => {
  it('backs up a running gateway and restores its state into another data dir', async () => {
    const live = makeTempDir('gw-backup-live');
    expect(await main(['user', 'add', 'guard-7', '--role', 'guard'], io('guard-7-password\n', { CHECKPOINT_DATA_DIR: live }))).toBe(0);
    const gateway = await gatewayOn(live);
    const backupFile = join(makeTempDir('gw-backup-out'), 'state.sqlite');
    try {
      // Written while the gateway holds the file open and keeps writing.
      const seeded = openDatabase(live);
      seeded.prepare("INSERT INTO audit (at_ms, actor, action, target, detail) VALUES (?, 'test', 'marker', 'backup-test', NULL)").run(Date.now());
      seeded.close();
      const cli = io('', { CHECKPOINT_DATA_DIR: live });
      expect(await main(['backup', backupFile], cli)).toBe(0);
      expect(cli.out()).toMatch(/written to .*state\.sqlite .*users 1/);
      expect(statSync(backupFile).mode & 0o777).toBe(0o600);
    } finally {
      await gateway.close();
    }

    const fresh = makeTempDir('gw-backup-restored');
    // A fresh install already has a (different) state: it is kept aside, not lost.
    expect(await main(['user', 'add', 'someone-else', '--role', 'admin'], io('other-password-1\n', { CHECKPOINT_DATA_DIR: fresh }))).toBe(0);
    const restore = io('', { CHECKPOINT_DATA_DIR: fresh });
    expect(await main(['restore', backupFile], restore)).toBe(0);
    const previous = /the previous state is in (\S+)$/m.exec(restore.out())?.[1];
    expect(previous).toBeDefined();
    const kept = openDatabase(fresh);
    try {
      expect(kept.prepare("SELECT count(*) AS n FROM audit WHERE action = 'marker'").get()).toEqual({ n: 1 });
    } finally {
      kept.close();
    }

    const restored = await gatewayOn(fresh);
    try {
      const api = await ApiClient.login(restored.url, 'guard-7', 'guard-7-password');
      expect((await api.get('/api/auth/me')).body).toMatchObject({ user: 'guard-7', role: 'guard' });
      await expect(ApiClient.login(restored.url, 'someone-else', 'other-password-1')).rejects.toThrow();
    } finally {
      await restored.close();
    }
  });

  it('refuses to restore a file that is not a gateway backup, and leaves the state alone', async () => {
    const dataDir = makeTempDir('gw-restore-bad');
    expect(await main(['user', 'add', 'keeper', '--role', 'guard'], io('keeper-password\n', { CHECKPOINT_DATA_DIR: dataDir }))).toBe(0);
    const junk = join(makeTempDir('gw-restore-junk'), 'notes.txt');
    writeFileSync(junk, 'this is not a database, just some notes that are long enough to be a file\n'.repeat(100));
    const cli = io('', { CHECKPOINT_DATA_DIR: dataDir });
    expect(await main(['restore', junk], cli)).toBe(1);
    expect(cli.err()).toContain(`backup ${junk}: not a SQLite database`);
    const db = openDatabase(dataDir);
    try {
      expect(db.prepare('SELECT name FROM users').all()).toEqual([{ name: 'keeper' }]);
    } finally {
      db.close();
    }
  });
});
