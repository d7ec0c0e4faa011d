import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { makeTempDir, waitFor } from '@checkpoint/test-support';
import { main } from '../src/cli.js';
import { connect } from './matrix.js';

function io(env: Record<string, string>, stdinText = '', shutdownSignal?: Promise<string>) {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let out = '';
  let err = '';
  stdout.on('data', (d) => (out += d));
  stderr.on('data', (d) => (err += d));
  return { io: { stdin: Readable.from([stdinText]), stdout, stderr, env, shutdownSignal }, out: () => out, err: () => err };
}

describe('checkpoint-broker CLI', () => {
  it('manages users in CHECKPOINT_DATA_DIR, exports them for Mosquitto, and never prints stored hashes', async () => {
    const env = { CHECKPOINT_DATA_DIR: makeTempDir('checkpoint-broker-cli') };
    const add = io(env);
    expect(await main(['user', 'add', 'gate-1', '--role', 'edge', '--site', 'hq', '--checkpoint', 'gate-1'], add.io)).toBe(0);
    const generated = /password: (\S+)/.exec(add.out())![1]!;
    expect(generated).toHaveLength(32);

    expect(await main(['user', 'add', 'gw', '--role', 'gateway', '--password-stdin'], io(env, 'from-stdin-pw\n').io)).toBe(0);
    expect(await main(['user', 'add', 'b', '--role', 'bridge', '--robot', 'acme/R1', '--robot', 'acme/R2'], io(env).io)).toBe(0);

    const bad = io(env);
    expect(await main(['user', 'add', 'x', '--role', 'robot'], bad.io)).toBe(1);
    expect(bad.err()).toContain('role robot needs exactly one --robot MANUFACTURER/SERIAL');
    const badRobot = io(env);
    expect(await main(['user', 'add', 'x', '--role', 'robot', '--robot', 'nope'], badRobot.io)).not.toBe(0);
    expect(badRobot.err()).toContain('expected MANUFACTURER/SERIAL');

    const list = io(env);
    expect(await main(['user', 'list'], list.io)).toBe(0);
    expect(list.out()).toMatch(/b\s+bridge\s+acme\/R1,acme\/R2/);
    expect(list.out()).toMatch(/gate-1\s+edge\s+hq\/gate-1/);
    expect(list.out()).not.toMatch(/scrypt|\$7\$/);

    const passwd = io(env, 'new-password-1\n');
    expect(await main(['user', 'passwd', 'gw', '--password-stdin'], passwd.io)).toBe(0);
    expect(passwd.out()).not.toContain('new-password-1');

    const outDir = join(env.CHECKPOINT_DATA_DIR, 'mosquitto');
    expect(await main(['mosquitto-export', '--out', outDir], io(env).io)).toBe(0);
    expect(readFileSync(join(outDir, 'passwd'), 'utf8').split('\n').filter(Boolean).map((l) => l.split(':')[0])).toEqual(['b', 'gate-1', 'gw']);
    expect(readFileSync(join(outDir, 'acl'), 'utf8')).toContain('user gate-1\ntopic write checkpoint/v1/hq/gate-1/state');

    expect(await main(['user', 'remove', 'b'], io(env).io)).toBe(0);
    const again = io(env);
    expect(await main(['user', 'remove', 'b'], again.io)).toBe(1);
    expect(again.err()).toContain('no user "b"');
  });

  it('runs the broker on CHECKPOINT_MQTT_PORT until told to stop, and names a bad config key', async () => {
    const dir = makeTempDir('checkpoint-broker-cli-run');
    const env = { CHECKPOINT_DATA_DIR: dir, CHECKPOINT_MQTT_PORT: '0', CHECKPOINT_LOG_LEVEL: 'silent' };
    expect(await main(['user', 'add', 'gw', '--role', 'gateway', '--password-stdin'], io(env, 'gateway-password\n').io)).toBe(0);
    let stop: (s: string) => void = () => {};
    const run = io(env, '', new Promise((resolve) => (stop = resolve)));
    const configFile = join(dir, 'broker.yaml');
    writeFileSync(configFile, 'metrics:\n  port: null\n');
    const exit = main(['run', '--config', configFile], run.io);
    const port = await waitFor(() => /MQTT on [\d.]+:(\d+)/.exec(run.out())?.[1], { what: 'broker start line' });
    const client = await connect(`mqtt://127.0.0.1:${port}`, { username: 'gw', password: 'gateway-password' });
    await client.endAsync();
    stop('SIGTERM');
    expect(await exit).toBe(0);
    expect(run.out()).toContain('SIGTERM, shutting down');

    writeFileSync(configFile, 'mqtt:\n  port: 1883\n  tls: true\n');
    const bad = io(env);
    expect(await main(['run', '--config', configFile], bad.io)).toBe(1);
    expect(bad.err()).toContain(`invalid config ${configFile}: /mqtt/tls`);
  });
});
