/**
 * The screenshot script (`npm run screenshots -w dashboards`) in its quick form: two pages, both
 * languages, one size, against a real gateway serving a fresh build, with Debian's Chromium. It
 * must finish by itself (no waiting for a network idle that the live feed never gives), say
 * where the files went and how long it took, and write real PNGs of the viewport's size.
 */
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { build } from 'vite';
import { createGateway, type Gateway } from '@checkpoint/gateway';
import { makeTempDir } from '@checkpoint/test-support';
import { API_PASSWORD, gatewayConfig, startTestBroker, type TestBroker } from '../../gateway/test/helpers/world.js';

const CHROMIUM = '/usr/bin/chromium';
const dashboardsRoot = fileURLToPath(new URL('..', import.meta.url));
const script = join(dashboardsRoot, 'scripts', 'screenshots.mjs');

let broker: TestBroker;
let gateway: Gateway;

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} not found: install Debian's chromium (apt-get install -y chromium); the tests never download a browser`);
  const outDir = makeTempDir('screenshots-dist');
  await build({ configFile: join(dashboardsRoot, 'vite.config.ts'), logLevel: 'warn', build: { outDir, emptyOutDir: true, sourcemap: false } });
  process.env.CHECKPOINT_DASHBOARDS_DIR = outDir;
  broker = await startTestBroker(['gate-1'], makeTempDir('screenshots-broker'), 'memory');
  gateway = await createGateway(gatewayConfig({ dataDir: makeTempDir('screenshots-gw'), mqttUrl: broker.url }));
  await gateway.users.add({ name: 'guard', role: 'guard' }, API_PASSWORD);
}, 120_000);

afterAll(async () => {
  await gateway?.close();
  await broker?.close();
});

/** Width and height from a PNG's header (signature, then the IHDR chunk). */
function pngSize(file: string): { width: number; height: number } {
  const b = readFileSync(file);
  if (b.subarray(1, 4).toString('latin1') !== 'PNG' || b.subarray(12, 16).toString('latin1') !== 'IHDR') throw new Error(`${file} is not a PNG`);
  return { width: b.readUInt32BE(16), height: b.readUInt32BE(20) };
}

describe('screenshot script', () => {
  it('takes the guard screen and the login page in English and Chinese, prints where and how long, and exits 0', async () => {
    const out = makeTempDir('screens');
    const { stdout } = await promisify(execFile)(
      process.execPath,
      [script, '--url', gateway.url, '--out', out, '--pages', 'guard,login', '--locales', 'en,zh-CN', '--sizes', '1366x768', '--chromium', CHROMIUM],
      { env: { ...process.env, CHECKPOINT_DEMO_PASSWORD: API_PASSWORD }, timeout: 150_000 },
    );
    const summary = /^(\d+) screenshots in (.+) in ([\d.]+) s$/m.exec(stdout);
    expect(summary, stdout).not.toBeNull();
    expect(summary![1]).toBe('4');
    expect(summary![2]).toBe(out);
    expect(Number(summary![3])).toBeGreaterThan(0);
    for (const page of ['guard', 'login']) {
      for (const locale of ['en', 'zh-CN']) {
        const file = join(out, `${page}-${locale}-1366x768.png`);
        expect(existsSync(file), file).toBe(true);
        expect(pngSize(file)).toEqual({ width: 1366, height: 768 });
        // A blank page compresses to a few kB; a drawn page with text does not.
        expect(statSync(file).size, file).toBeGreaterThan(10_000);
      }
    }
  }, 180_000);

  it('names an unknown page and the known ones, and takes nothing', async () => {
    const out = makeTempDir('screens-bad');
    const run = promisify(execFile)(process.execPath, [script, '--url', gateway.url, '--out', out, '--pages', 'guard,nope'], { timeout: 60_000 });
    await expect(run).rejects.toMatchObject({ code: 1, stderr: expect.stringContaining('--pages: unknown page "nope" (known: guard, dispatch, devices, stats, login)') });
    expect(readdirSync(out)).toEqual([]);
  }, 90_000);
});
