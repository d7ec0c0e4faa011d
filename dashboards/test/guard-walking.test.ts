/* eslint-disable @typescript-eslint/no-explicit-any -- JSON bodies of API responses */
/**
 * The guard screen for a walking sequence (issue 13), in a real browser (Debian's Chromium via
 * playwright-core) against a real gateway on our broker: the screenings an edge agent publishes
 * for six people walking through gate-1 — passes, a fever seen by both cameras, a fever only the
 * thermal camera found (mask unknown), and a person it could not measure (`cannot_screen`) — plus
 * a redelivered duplicate. The guard must see exactly one card per person to check.
 * Setup as in browser.test.ts.
 */
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MqttClient } from 'mqtt';
import { chromium, type Browser } from 'playwright-core';
import { build } from 'vite';
import { createGateway, GatewayConfigSchema, type Gateway } from '@checkpoint/gateway';
import { checkpointTopics, type CheckpointState, type Screening } from '@checkpoint/protocol';
import { freePort, makeTempDir, waitFor } from '@checkpoint/test-support';
import { API_PASSWORD, ApiClient, connectEdge, gatewayConfig, makeScreening, startTestBroker, type TestBroker } from '../../gateway/test/helpers/world.js';

const CHROMIUM = '/usr/bin/chromium';
const SHOTS = process.env.CHECKPOINT_SCREENSHOTS ?? '/tmp/checkpoint-dashboards';
const JPEG = readFileSync(new URL('./fixtures/snapshot.jpg', import.meta.url));
const dashboardsRoot = fileURLToPath(new URL('..', import.meta.url));

let broker: TestBroker;
let gateway: Gateway;
let gate: MqttClient;
let admin: ApiClient;
let browser: Browser;

function state(checkpoint: string): CheckpointState {
  return {
    status: 'online',
    ts: new Date().toISOString(),
    site: 'hq',
    checkpoint,
    versions: { 'edge-agent': '0.1.0', node: '20.19.0' },
    sources: { thermal: { kind: 'sim', status: 'ok' }, visible: { kind: 'sim', status: 'ok' } },
    model: { name: 'masked-face-640', sha256: 'a'.repeat(64) },
    calibration: { reference: 'ok', mode: 'absolute', thresholdC: 37.3, homography: true },
  };
}

async function publish(s: Screening): Promise<void> {
  await gate.publishAsync(checkpointTopics.screening(s), JSON.stringify(s), { qos: 1 });
  if (s.snapshot) await gate.publishAsync(checkpointTopics.snapshot(s, s.id), JPEG, { qos: 1 });
}

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} not found: install Debian's chromium (apt-get install -y chromium); the tests never download a browser`);
  mkdirSync(SHOTS, { recursive: true });
  const outDir = makeTempDir('dashboards-dist');
  await build({ configFile: join(dashboardsRoot, 'vite.config.ts'), logLevel: 'warn', build: { outDir, emptyOutDir: true, sourcemap: false } });
  process.env.CHECKPOINT_DASHBOARDS_DIR = outDir;
  broker = await startTestBroker(['gate-1'], makeTempDir('walk-broker'), 'memory');
  const base = gatewayConfig({ dataDir: makeTempDir('walk-gw'), mqttUrl: broker.url }) as any;
  const options: Record<string, unknown> = { ...base, http: { host: '127.0.0.1', port: await freePort() }, mqtt: { ...base.mqtt, clientId: 'gw-walking-test' } };
  if ('opcua' in GatewayConfigSchema.properties) options.opcua = { enabled: false };
  gateway = await createGateway(options);
  await waitFor(() => gateway.mqttConnected(), { what: 'gateway connected to the broker' });
  for (const role of ['guard', 'admin'] as const) await gateway.users.add({ name: role, role }, API_PASSWORD);
  admin = await ApiClient.login(gateway.url, 'admin');
  gate = await connectEdge(broker.url, 'gate-1');
  const s = state('gate-1');
  await gate.publishAsync(checkpointTopics.state(s), JSON.stringify(s), { qos: 1, retain: true });
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'] });
});

afterAll(async () => {
  await browser?.close();
  await gate?.endAsync();
  await gateway?.close();
  await broker?.close();
});

describe('guard screen, walking traffic', () => {
  it('shows one card per person to check: a fever, a thermal-only fever (mask not known) and a cannot_screen, never a duplicate', async () => {
    const context = await browser.newContext({ locale: 'en-US', viewport: { width: 1280, height: 900 }, baseURL: gateway.url });
    const page = await context.newPage();
    await page.goto('/');
    await page.getByLabel(/user name/i).fill('guard');
    await page.getByLabel(/password/i).fill(API_PASSWORD);
    await page.getByRole('button', { name: /sign in/i }).click();
    await page.getByRole('navigation').waitFor();

    // Six people walking through gate-1, in the order the agent decides them.
    const people: Screening[] = [
      makeScreening({ trackId: 11, decision: 'pass', detectedBy: 'both' }),
      makeScreening({ trackId: 12, decision: 'secondary_check', temperatureC: 38.4, mask: 'no_mask', maskScore: 0.1, detectedBy: 'both', snapshot: true }),
      makeScreening({ trackId: 13, decision: 'pass', mask: 'unknown', maskScore: null, detectedBy: 'thermal' }),
      makeScreening({ trackId: 14, decision: 'secondary_check', temperatureC: 38.6, mask: 'unknown', maskScore: null, faceScore: 0.5, detectedBy: 'thermal', snapshot: true }),
      makeScreening({ trackId: 15, decision: 'cannot_screen', reasons: ['face_too_small'], temperatureC: null, method: null, blackbody: null, detectedBy: 'visible', snapshot: true }),
      makeScreening({ trackId: 16, decision: 'pass', detectedBy: 'both' }),
    ];
    for (const s of people) await publish(s);
    await publish(people[3]!); // a redelivery (QoS 1 after a reconnect) is not a second person

    const cards = page.locator('article.card');
    await expect.poll(() => cards.count(), { timeout: 15_000 }).toBe(3);
    const alerts = (await admin.get('/api/alerts?status=open')).body.alerts as any[];
    const cardOf = (s: Screening) => page.locator(`article.card[data-alert-id="${alerts.find((a) => a.screeningId === s.id)!.id}"]`);

    const fever = cardOf(people[1]!);
    expect(await fever.getAttribute('data-decision')).toBe('secondary_check');
    expect(await fever.textContent()).toContain('38.4 °C');

    const thermalOnly = cardOf(people[3]!);
    expect(await thermalOnly.getAttribute('data-detected-by')).toBe('thermal');
    const thermalText = (await thermalOnly.textContent())!;
    expect(thermalText).toContain('38.6 °C');
    expect(thermalText).toContain('Not known'); // the mask: the visible model never saw this face

    const unmeasured = cardOf(people[4]!);
    expect(await unmeasured.getAttribute('data-decision')).toBe('cannot_screen');
    const unmeasuredText = (await unmeasured.textContent())!;
    expect(unmeasuredText).toContain('Face too far from the camera');
    expect(await unmeasured.locator('.temp-value').textContent()).not.toContain('°C'); // nothing was measured

    // The passes made no card, and the alerts behind the cards are one per person.
    expect(alerts.filter((a) => a.kind === 'screening').map((a) => a.screeningId).sort()).toEqual([people[1]!.id, people[3]!.id, people[4]!.id].sort());
    await page.screenshot({ path: join(SHOTS, 'guard-walking.png'), fullPage: true });
    await context.close();
  }, 120_000);
});
