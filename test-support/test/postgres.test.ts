import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startPostgres, type PostgresServer } from '@checkpoint/test-support';

const run = promisify(execFile);
const PSQL = '/usr/lib/postgresql/15/bin/psql';

/** One query through psql, as `user`, over the socket (host = a dir) or TCP; its single value. */
async function psql(host: string, port: number, user: string, database: string, sql: string): Promise<string> {
  const { stdout } = await run(PSQL, ['-h', host, '-p', String(port), '-U', user, '-d', database, '-X', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-c', sql], {
    env: { ...process.env, PGCONNECT_TIMEOUT: '10' },
  });
  return stdout.trim();
}

describe('startPostgres', () => {
  let pg: PostgresServer;
  beforeAll(async () => {
    pg = await startPostgres({ database: 'checkpoint_test' });
  }, 90_000);
  afterAll(async () => {
    await pg?.stop();
  });

  it('serves PostgreSQL 15 on its unix socket in the temp dir and on a loopback port, with the database made', async () => {
    expect(pg.socketDir).toBe(pg.dir);
    expect(existsSync(`${pg.socketDir}/.s.PGSQL.${pg.port}`)).toBe(true);
    expect(pg.url).toBe(`postgresql://checkpoint@127.0.0.1:${pg.port}/checkpoint_test`);
    expect(await psql(pg.socketDir, pg.port, pg.user, pg.database, 'SHOW server_version_num')).toMatch(/^15\d{4}$/);
    expect(await psql(pg.host, pg.port, pg.user, pg.database, 'SELECT current_database()')).toBe('checkpoint_test');
    // Its cluster is the one initdb made in the temp dir.
    expect(await psql(pg.socketDir, pg.port, pg.user, pg.database, "SELECT current_setting('data_directory')")).toBe(`${pg.dir}/data`);
  });

  it('creates more databases on request, and says which one failed', async () => {
    await pg.createDatabase('second');
    expect(await psql(pg.socketDir, pg.port, pg.user, 'second', 'SELECT 1')).toBe('1');
    await expect(pg.createDatabase('second')).rejects.toThrow(/CREATE DATABASE second failed: .*already exists/);
  });
});

describe('startPostgres lifecycle', () => {
  it('stop() ends the server and removes its dir', async () => {
    const a = await startPostgres();
    try {
      expect(a.database).toBe('checkpoint');
      expect(existsSync(a.dir)).toBe(true);
    } finally {
      await a.stop();
    }
    expect(existsSync(a.dir)).toBe(false);
    await expect(psql(a.host, a.port, a.user, a.database, 'SELECT 1')).rejects.toThrow();
  }, 90_000);
});
