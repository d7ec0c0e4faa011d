/**
 * `npm start` as a user runs it, with the environment overrides the README documents: each demo
 * agent keeps its own outbox and publishes only its own checkpoint's topics (before, a set
 * CHECKPOINT_DATA_DIR gave both agents one outbox, and gate-2 tried to publish gate-1's
 * screenings, which the broker denied).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const root = path.resolve(import.meta.dirname, '../..');
const mirror = process.env.CHECKPOINT_MODELS_MIRROR ?? path.resolve(root, '../shared/models');
const built = existsSync(path.join(root, 'gateway/dist/index.js')) && existsSync(path.join(root, 'edge-agent/dist/index.js'));
const haveShared = existsSync(mirror) && existsSync(path.resolve(root, '../shared/datasets'));
if (!haveShared) console.warn(`demo test skipped: ${mirror} or ../shared/datasets is absent`);

describe.skipIf(!built || !haveShared)('npm start (scripts/demo.js)', () => {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'checkpoint-demo-test-'));
  let demo: ChildProcess | undefined;
  let stdout = '';
  let stderr = '';

  afterAll(async () => {
    if (demo && demo.exitCode === null) {
      const exited = new Promise((resolve) => demo!.once('exit', resolve));
      demo.kill('SIGTERM');
      await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 15_000))]);
      if (demo.exitCode === null) demo.kill('SIGKILL');
    }
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('keeps one outbox per agent and publishes only its own topics, whatever the environment says', async () => {
    demo = spawn(process.execPath, [path.join(root, 'scripts/demo.js')], {
      cwd: root,
      env: {
        ...process.env,
        CHECKPOINT_DATA_DIR: dataDir,
        CHECKPOINT_MQTT_PORT: '0',
        CHECKPOINT_HTTP_PORT: '0',
        CHECKPOINT_OPCUA_PORT: '0',
        CHECKPOINT_MODELS_MIRROR: mirror,
        CHECKPOINT_MODELS_DIR: path.join(dataDir, 'models'),
        // Per-machine overrides meant for a single program; the demo's agents must not take them.
        CHECKPOINT_MQTT_URL: 'mqtt://127.0.0.1:9',
        CHECKPOINT_MQTT_USERNAME: 'someone-else',
        CHECKPOINT_LOG_LEVEL: 'warn',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    demo.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
    demo.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));

    // Wait for the gateway to hold screenings of both gates (the agents' outboxes drained to it).
    const gatewayUrl = await until(() => /gateway: (http:\/\/127\.0\.0\.1:\d+)/.exec(stdout)?.[1], 120_000, 'the gateway URL on stdout');
    const login = await fetch(`${gatewayUrl}/api/auth/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ username: 'guard', password: 'checkpoint-demo' }),
    });
    expect(login.status).toBe(200);
    const { token } = (await login.json()) as { token: string };
    for (const checkpoint of ['gate-1', 'gate-2']) {
      await until(
        async () => {
          const r = await fetch(`${gatewayUrl}/api/screenings?site=hospital-a&checkpoint=${checkpoint}`, { headers: { authorization: `Bearer ${token}` } });
          const body = (await r.json()) as { screenings?: unknown[] };
          return (body.screenings?.length ?? 0) > 0 ? true : undefined;
        },
        120_000,
        `screenings of ${checkpoint} at the gateway`,
      );
    }
    expect(existsSync(path.join(dataDir, 'agent-gate-1', 'outbox.sqlite'))).toBe(true);
    expect(existsSync(path.join(dataDir, 'agent-gate-2', 'outbox.sqlite'))).toBe(true);
    expect(existsSync(path.join(dataDir, 'outbox.sqlite'))).toBe(false);
    // The broker logs every refused publish; none may come from an agent.
    expect(stderr).not.toMatch(/not allowed|denied|refused/i);
  }, 300_000);

  async function until<T>(probe: () => T | undefined | Promise<T | undefined>, timeoutMs: number, what: string): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (demo?.exitCode !== null && demo?.exitCode !== undefined) throw new Error(`the demo exited (${demo.exitCode}) before ${what}:\n${stderr.slice(-2000)}`);
      const value = await probe();
      if (value !== undefined) return value;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; stderr:\n${stderr.slice(-2000)}`);
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  }
});
