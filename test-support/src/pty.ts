/**
 * A pseudo-terminal pair made by socat: two linked serial-port-like paths, so a test can open one
 * end with a real `serialport` binding and drive the other end from a device emulator.
 *
 * Limits (see reference/hardware-protocols.md §8.1): baud rate and timing are ignored, there are
 * no modem-control lines, and bytes written while nobody reads are queued by the kernel.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface PtyPair {
  /** Path of one end (a symlink to /dev/pts/N), e.g. for the code under test. */
  a: string;
  /** Path of the other end, e.g. for the emulator. */
  b: string;
  /** Kills socat (by its pid) and removes the temporary directory. Safe to call twice. */
  close(): Promise<void>;
}

/** Starts `socat -d -d pty,raw,echo=0,link=A pty,raw,echo=0,link=B` and waits for both links. */
export async function openPtyPair(options: { timeoutMs?: number } = {}): Promise<PtyPair> {
  const timeoutMs = options.timeoutMs ?? 5000;
  const dir = await mkdtemp(join(tmpdir(), 'checkpoint-pty-'));
  const a = join(dir, 'a');
  const b = join(dir, 'b');
  const child = spawn('socat', ['-d', '-d', `pty,raw,echo=0,link=${a}`, `pty,raw,echo=0,link=${b}`], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (s: string) => {
    stderr = (stderr + s).slice(-4000);
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let spawnError: Error | null = null;
  child.once('error', (err) => {
    spawnError = err;
  });

  const close = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null && child.pid !== undefined && !spawnError) {
      child.kill('SIGTERM');
      await exited;
    }
    await rm(dir, { recursive: true, force: true });
  };

  const deadline = Date.now() + timeoutMs;
  while (!(existsSync(a) && existsSync(b))) {
    const failed = spawnError ?? (child.exitCode !== null ? new Error(`socat exited with code ${child.exitCode}`) : null);
    if (failed || Date.now() > deadline) {
      await close();
      const why = failed ? failed.message : `links not created within ${timeoutMs} ms`;
      throw new Error(`socat pty pair failed: ${why}; stderr: ${stderr.trim() || '(empty)'}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  return { a, b, close };
}
