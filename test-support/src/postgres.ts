/**
 * A real, throwaway PostgreSQL server for tests (Debian `postgresql`, version 15): `initdb` into a
 * temp dir, `postgres` on a free loopback port with its unix socket in that dir, trust
 * authentication for one superuser, durability off (a test cluster need not survive a power
 * cut). PostgreSQL refuses to run as root: when we are root, initdb and the server run as the
 * `postgres` system user (the temp dir is handed to it).
 */
import { execFile } from 'node:child_process';
import { chownSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { findExecutable, freePort, makeTempDir, removeTempDir } from './helpers.js';
import { launchServer, retryOnAddressInUse, type StopOptions } from './process.js';

const run = promisify(execFile);

export interface PostgresOptions {
  /** Database to create (default `checkpoint`). */
  database?: string;
  /** Superuser to create (default `checkpoint`); no password (trust, loopback and socket only). */
  user?: string;
  /** Where initdb, postgres and pg_isready are (default: /usr/lib/postgresql/15/bin, then PATH). */
  binDir?: string;
  /** How long to wait for the server to accept connections (default 60 s: a busy 2-core box). */
  startTimeoutMs?: number;
}

export interface PostgresServer {
  /** The unix socket's directory: a `host` for libpq and `pg` (`{ host: socketDir, port }`). */
  socketDir: string;
  /** 127.0.0.1, for clients that need TCP. */
  host: string;
  port: number;
  user: string;
  database: string;
  /** `postgresql://user@127.0.0.1:port/database` (TCP). */
  url: string;
  /** Temp dir holding the cluster (`data/`), the socket and `postgres.log`. */
  dir: string;
  logFile: string;
  /** Creates another database on this server (e.g. one per test file). */
  createDatabase(name: string): Promise<void>;
  /** Stop the server and delete its temp dir. Safe to call twice. */
  stop(options?: StopOptions): Promise<void>;
}

/** The Debian install first (its binaries are not on PATH), then PATH. */
function binary(name: string, binDir: string | undefined): string {
  const debian = join(binDir ?? '/usr/lib/postgresql/15/bin', name);
  return existsSync(debian) ? debian : findExecutable(name, 'postgresql');
}

/** uid/gid of the `postgres` system user when we are root (PostgreSQL refuses root), else none. */
async function runAs(): Promise<{ uid: number; gid: number } | null> {
  if (process.getuid?.() !== 0) return null;
  try {
    const uid = Number((await run('id', ['-u', 'postgres'])).stdout.trim());
    const gid = Number((await run('id', ['-g', 'postgres'])).stdout.trim());
    return { uid, gid };
  } catch (error) {
    throw new Error('running as root, and PostgreSQL refuses root: a `postgres` system user is needed (Debian package postgresql creates it)', { cause: error });
  }
}

const quoteIdent = (name: string) => `"${name.replace(/"/g, '""')}"`;

/**
 * Start a PostgreSQL server on a free port with its data and socket in a temp dir, wait until it
 * accepts connections and create the database. Call `stop()` when done (e.g. in `afterAll`); the
 * process is also killed and the dir removed when the test process exits.
 */
export async function startPostgres(options: PostgresOptions = {}): Promise<PostgresServer> {
  const user = options.user ?? 'checkpoint';
  const database = options.database ?? 'checkpoint';
  const initdb = binary('initdb', options.binDir);
  const postgres = binary('postgres', options.binDir);
  const isReady = binary('pg_isready', options.binDir);
  const psql = binary('psql', options.binDir);
  const as = await runAs();
  const dir = makeTempDir('checkpoint-postgres');
  const dataDir = join(dir, 'data');
  const logFile = join(dir, 'postgres.log');
  if (as) chownSync(dir, as.uid, as.gid);
  // The caller's PG* variables (PGHOST, PGPORT, ...) must not steer these tools.
  const env = { ...Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith('PG'))), LC_ALL: 'C.UTF-8' };
  const asUser = as ? { uid: as.uid, gid: as.gid } : {};

  try {
    await run(initdb, ['-D', dataDir, '-U', user, '-A', 'trust', '-E', 'UTF8', '--no-sync', '--no-instructions'], { env, ...asUser });
  } catch (error) {
    removeTempDir(dir);
    const stderr = (error as { stderr?: string }).stderr ?? '';
    throw new Error(`initdb failed in ${dataDir}: ${stderr.trim() || (error as Error).message}`, { cause: error });
  }

  const host = '127.0.0.1';
  let port = 0;
  const server = await retryOnAddressInUse(async () => {
    port = await freePort();
    return launchServer({
      name: 'postgres',
      command: postgres,
      args: [
        '-D', dataDir,
        '-p', String(port),
        '-k', dir,
        '-c', `listen_addresses=${host}`,
        '-c', 'fsync=off',
        '-c', 'synchronous_commit=off',
        '-c', 'full_page_writes=off',
        '-c', 'max_connections=50',
        '-c', 'shared_buffers=32MB',
      ],
      env,
      ...asUser,
      logFile,
      timeoutMs: options.startTimeoutMs ?? 60_000,
      readyWhat: `pg_isready on ${dir}:${port}`,
      isReady: async () => {
        try {
          await run(isReady, ['-h', dir, '-p', String(port), '-U', user, '-d', 'postgres', '-q'], { env });
          return true;
        } catch {
          return false;
        }
      },
    });
  });

  const stop = async (stopOptions?: StopOptions): Promise<void> => {
    // SIGTERM: PostgreSQL's "smart" shutdown waits for connections that are closing (a "fast" one
    // would send them FATAL 57P01, an unhandled error in a pool that just ended); SIGKILL after 10 s.
    await server.stop(stopOptions);
    removeTempDir(dir);
  };
  const createDatabase = async (name: string): Promise<void> => {
    try {
      await run(psql, ['-h', dir, '-p', String(port), '-U', user, '-d', 'postgres', '-v', 'ON_ERROR_STOP=1', '-q', '-c', `CREATE DATABASE ${quoteIdent(name)}`], { env });
    } catch (error) {
      const stderr = (error as { stderr?: string }).stderr ?? '';
      throw new Error(`CREATE DATABASE ${name} failed: ${stderr.trim() || (error as Error).message}`, { cause: error });
    }
  };
  try {
    await createDatabase(database);
  } catch (error) {
    await stop();
    throw error;
  }
  return { socketDir: dir, host, port, user, database, url: `postgresql://${user}@${host}:${port}/${database}`, dir, logFile, createDatabase, stop };
}
