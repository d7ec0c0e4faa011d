import { accessSync, constants, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, isAbsolute, join } from 'node:path';

/**
 * A TCP port on 127.0.0.1 that was free a moment ago. The OS hands it out and we release it at
 * once, so another process may take it before the server binds it; callers retry on EADDRINUSE.
 */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', reject);
    server.listen({ host: '127.0.0.1', port: 0, exclusive: true }, () => {
      const address = server.address();
      server.close(() => {
        if (address && typeof address === 'object') resolve(address.port);
        else reject(new Error(`freePort: unexpected server address ${String(address)}`));
      });
    });
  });
}

const tempDirs = new Set<string>();

/** Set CHECKPOINT_KEEP_TEST_DIRS=1 to keep temporary dirs (and server logs) for a post-mortem. */
function keepTempDirs(): boolean {
  return process.env.CHECKPOINT_KEEP_TEST_DIRS === '1';
}

/**
 * A new empty directory under the OS temp dir, named `<prefix>-XXXXXX`. It is removed when the
 * process exits (see {@link removeTempDir} to remove it earlier).
 */
export function makeTempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), `${prefix}-`));
  tempDirs.add(dir);
  registerExitCleanup();
  return dir;
}

/** Remove a directory made by {@link makeTempDir} now rather than at exit. */
export function removeTempDir(dir: string): void {
  tempDirs.delete(dir);
  if (!keepTempDirs()) rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
}

export interface WaitForOptions {
  /** Give up after this long (default 10 s). */
  timeoutMs?: number;
  /** Pause between attempts (default 50 ms). */
  intervalMs?: number;
  /**
   * What we are waiting for, for the timeout message, e.g. "influxd /ping on port 4321"; a
   * function is called at the timeout, so the message can say what was seen instead.
   */
  what: string | (() => string);
  /** Stop waiting early (the returned promise rejects with the signal's reason). */
  signal?: AbortSignal;
}

/**
 * Call `probe` until it returns a truthy value and resolve with that value. A probe that throws
 * counts as "not yet"; its last error is quoted in the timeout error.
 */
export async function waitFor<T>(
  probe: () => T | Promise<T>,
  options: WaitForOptions,
): Promise<NonNullable<T>> {
  const { timeoutMs = 10_000, intervalMs = 50, what, signal } = options;
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    signal?.throwIfAborted();
    try {
      const value = await probe();
      if (value) return value as NonNullable<T>;
    } catch (error) {
      lastError = error;
    }
    if (Date.now() >= deadline) {
      const cause = lastError === undefined ? '' : ` (last error: ${describeError(lastError)})`;
      const described = typeof what === 'function' ? what() : what;
      throw new Error(`Timed out after ${timeoutMs} ms waiting for ${described}${cause}`);
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

export function describeError(error: unknown): string {
  if (error instanceof Error) {
    const code = (error as NodeJS.ErrnoException).code;
    const cause = error.cause === undefined ? '' : `: ${describeError(error.cause)}`;
    return `${code ? `${code} ` : ''}${error.message}${cause}`;
  }
  return String(error);
}

/**
 * Absolute path of an executable: `name` itself if it is a path, else the first hit on PATH,
 * then in /usr/sbin and /usr/bin (Debian puts mosquitto in /usr/sbin, often not on a user's PATH).
 * Throws a loud error naming the Debian package when it is missing: tests must never pass silently
 * because a server is not installed.
 */
export function findExecutable(name: string, debianPackage: string): string {
  const candidates = isAbsolute(name) || name.includes('/')
    ? [name]
    : [...(process.env.PATH ?? '').split(delimiter).filter(Boolean), '/usr/sbin', '/usr/bin', '/usr/local/sbin', '/usr/local/bin']
        .map((dir) => join(dir, name));
  for (const candidate of candidates) {
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here; try the next one
    }
  }
  throw new Error(
    `${name} not found: install Debian package ${debianPackage} (CI does this in .ci/run)` +
      ` — looked in ${candidates.join(', ')}`,
  );
}

// ---- process-exit cleanup -------------------------------------------------------------------

type ExitCallback = () => void;
const exitCallbacks = new Set<ExitCallback>();
let exitHookRegistered = false;

/** Run `callback` (synchronously) when the process exits or is interrupted. Returns an unregister function. */
export function onProcessExit(callback: ExitCallback): () => void {
  exitCallbacks.add(callback);
  registerExitCleanup();
  return () => exitCallbacks.delete(callback);
}

function runExitCleanup(): void {
  for (const callback of exitCallbacks) {
    try {
      callback();
    } catch {
      // best effort: the process is going away
    }
  }
  exitCallbacks.clear();
  if (!keepTempDirs()) {
    for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
  }
  tempDirs.clear();
}

function registerExitCleanup(): void {
  if (exitHookRegistered) return;
  exitHookRegistered = true;
  process.once('exit', runExitCleanup);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(signal, () => {
      runExitCleanup();
      // Keep the default behaviour (die by this signal) unless somebody else handles it.
      if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
    });
  }
}
