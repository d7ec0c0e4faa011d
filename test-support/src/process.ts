import { spawn } from 'node:child_process';
import { appendFileSync, closeSync, openSync, readFileSync } from 'node:fs';
import { describeError, onProcessExit, waitFor } from './helpers.js';

export interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface StopOptions {
  /** Signal to send first (default SIGTERM: a graceful shutdown; SIGKILL simulates a crash). */
  signal?: NodeJS.Signals;
  /** After this long, SIGKILL (default 10 s). */
  timeoutMs?: number;
}

/** A server child process whose stdout and stderr go to a log file. */
export interface ServerProcess {
  readonly pid: number;
  readonly logFile: string;
  /** Resolves when the process has exited (never rejects). */
  readonly exited: Promise<ExitStatus>;
  hasExited(): boolean;
  /** Stop the process and wait for it to exit. Safe to call more than once. */
  stop(options?: StopOptions): Promise<ExitStatus>;
}

/**
 * Spawn a server with its output appended to `logFile`. The child is killed when this process
 * exits, so a failing or interrupted test run leaves no servers behind.
 */
export function spawnServer(
  command: string,
  args: readonly string[],
  /** `uid`/`gid`: run as that user (when we are root; e.g. postgres refuses root). */
  options: { logFile: string; env?: NodeJS.ProcessEnv; cwd?: string; uid?: number; gid?: number },
): ServerProcess {
  const { logFile } = options;
  // The child writes straight into the file: nothing to pump, and the log survives us.
  const fd = openSync(logFile, 'a');
  let child;
  try {
    child = spawn(command, args, {
      stdio: ['ignore', fd, fd],
      env: options.env ?? process.env,
      cwd: options.cwd,
      ...(options.uid !== undefined ? { uid: options.uid } : {}),
      ...(options.gid !== undefined ? { gid: options.gid } : {}),
    });
  } finally {
    closeSync(fd);
  }
  let status: ExitStatus | undefined;
  const exited = new Promise<ExitStatus>((resolve) => {
    child.once('exit', (code, signal) => {
      status ??= { code, signal };
      resolve(status);
    });
    child.once('error', (error) => {
      // Spawn failure (e.g. EACCES): report it as an exit, with the cause in the log.
      appendFileSync(logFile, `spawn ${command} failed: ${error.message}\n`);
      status ??= { code: -1, signal: null };
      resolve(status);
    });
  });
  const unregister = onProcessExit(() => {
    if (!status) child.kill('SIGKILL');
  });
  void exited.then(unregister);

  return {
    pid: child.pid ?? -1,
    logFile,
    exited,
    hasExited: () => status !== undefined,
    async stop({ signal = 'SIGTERM', timeoutMs = 10_000 } = {}) {
      if (status) return status;
      child.kill(signal);
      const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
      try {
        return await exited;
      } finally {
        clearTimeout(timer);
      }
    },
  };
}

/** The last `lines` lines of a log file, or a note saying why there are none. */
export function logTail(logFile: string, lines = 30): string {
  let text: string;
  try {
    text = readFileSync(logFile, 'utf8');
  } catch (error) {
    return `(no log: ${(error as Error).message})`;
  }
  const all = text.trimEnd().split('\n');
  const tail = all.slice(-lines).join('\n');
  return tail.length > 0 ? tail : '(log is empty)';
}

export function describeExit({ code, signal }: ExitStatus): string {
  return signal ? `killed by ${signal}` : `exited with code ${code}`;
}

/** A server that did not come up; `message` carries the tail of its log. */
export class ServerStartError extends Error {
  constructor(
    message: string,
    /** The log says the port was taken (another process won the race for a "free" port). */
    readonly addressInUse: boolean,
  ) {
    super(message);
    this.name = 'ServerStartError';
  }
}

export interface LaunchOptions {
  /** e.g. "influxd" — used in error messages. */
  name: string;
  command: string;
  args: readonly string[];
  logFile: string;
  env?: NodeJS.ProcessEnv;
  /** Run as this user and group (see spawnServer). */
  uid?: number;
  gid?: number;
  /** Resolves truthy once the server serves; throwing or falsy means "not yet". */
  isReady: () => Promise<boolean>;
  /** What readiness means, for messages, e.g. "GET /ping = 204 on 127.0.0.1:1234". */
  readyWhat: string;
  timeoutMs: number;
}

/**
 * Spawn a server and wait until `isReady`. If it exits first or never gets ready, it is killed
 * and the error quotes its log tail, so a failed start explains itself in the test output.
 */
export async function launchServer(options: LaunchOptions): Promise<ServerProcess> {
  const { name, logFile, readyWhat, timeoutMs } = options;
  const server = spawnServer(options.command, options.args, {
    logFile,
    env: options.env,
    ...(options.uid !== undefined ? { uid: options.uid } : {}),
    ...(options.gid !== undefined ? { gid: options.gid } : {}),
  });
  const giveUp = new AbortController();
  const exitedEarly = server.exited.then((status) => {
    throw new Error(`${name} ${describeExit(status)} before it was ready`);
  });
  try {
    await Promise.race([
      waitFor(options.isReady, { what: `${name}: ${readyWhat}`, timeoutMs, intervalMs: 50, signal: giveUp.signal }),
      exitedEarly,
    ]);
    exitedEarly.catch(() => {}); // it will reject when the server is stopped later; nobody awaits it
    return server;
  } catch (error) {
    giveUp.abort();
    exitedEarly.catch(() => {});
    await server.stop({ signal: 'SIGKILL' });
    const tail = logTail(logFile);
    throw new ServerStartError(
      `${name} failed to start: ${describeError(error)}\n` +
        `command: ${options.command} ${options.args.join(' ')}\n` +
        `log ${logFile} (last lines):\n${tail}`,
      /address already in use|address in use/i.test(tail),
    );
  }
}

/** Run `start` again (with new free ports) when the server lost the race for its port. */
export async function retryOnAddressInUse<T>(start: () => Promise<T>, attempts = 3): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await start();
    } catch (error) {
      if (!(error instanceof ServerStartError && error.addressInUse) || attempt >= attempts) throw error;
    }
  }
}
