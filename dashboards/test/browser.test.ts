/* eslint-disable @typescript-eslint/no-explicit-any -- JSON bodies of API responses */
/**
 * The dashboards in a real browser (Debian's Chromium driven by playwright-core, never a
 * downloaded one) against a real gateway on our broker, fed the way an edge agent feeds it:
 * screenings, snapshots, retained state and telemetry over MQTT. The app is built with Vite
 * first (into a temporary folder the gateway serves), so the test always runs today's sources.
 *
 * Screenshots go to $CHECKPOINT_SCREENSHOTS or /tmp/checkpoint-dashboards (artifacts, never committed).
 */
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MqttClient } from 'mqtt';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
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
let gatewayOptions: Record<string, unknown>;
let gate1: MqttClient;
let gate2: MqttClient;
let admin: ApiClient;
let browser: Browser;
const contexts: BrowserContext[] = [];

async function startGateway(): Promise<Gateway> {
  // The broker runs in this process: the gateway enrols and revokes devices in its user store.
  const g = await createGateway(gatewayOptions, { brokerUsers: broker.broker.users });
  await waitFor(() => g.mqttConnected(), { what: 'gateway connected to the broker' });
  return g;
}

function state(checkpoint: string, over: Partial<CheckpointState> = {}): CheckpointState {
  return {
    status: 'online',
    ts: new Date().toISOString(),
    site: 'hq',
    checkpoint,
    versions: { 'edge-agent': '0.1.0', node: '20.19.0' },
    sources: { thermal: { kind: 'sim', status: 'ok' }, visible: { kind: 'sim', status: 'ok' } },
    model: { name: 'masked-face-640', sha256: 'a'.repeat(64) },
    calibration: { reference: 'ok', mode: 'absolute', thresholdC: 37.3, homography: true },
    ...over,
  };
}

const publishState = (edge: MqttClient, s: CheckpointState) => edge.publishAsync(checkpointTopics.state(s), JSON.stringify(s), { qos: 1, retain: true });

/** A screening as the edge sends it: the result, then (for a non-pass with snapshot) the JPEG. */
async function screen(edge: MqttClient, over: Partial<Screening> & { checkpoint?: string }): Promise<Screening> {
  const s = makeScreening(over);
  await edge.publishAsync(checkpointTopics.screening(s), JSON.stringify(s), { qos: 1 });
  if (s.snapshot) await edge.publishAsync(checkpointTopics.snapshot(s, s.id), JPEG, { qos: 1 });
  return s;
}

async function openPage(locale = 'en-US'): Promise<Page> {
  const context = await browser.newContext({ locale, viewport: { width: 1280, height: 800 }, baseURL: gateway.url });
  contexts.push(context);
  const page = await context.newPage();
  page.on('pageerror', (err) => console.error('page error:', err.message));
  return page;
}

async function login(page: Page, user: string): Promise<void> {
  await page.goto('/');
  await page.getByLabel(/user name|用户名/i).fill(user);
  await page.getByLabel(/password|密码/i).fill(API_PASSWORD);
  await page.getByRole('button', { name: /sign in|登录/i }).click();
  await page.getByRole('navigation').waitFor();
}

const shot = (page: Page, name: string) => page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} not found: install Debian's chromium (apt-get install -y chromium); the tests never download a browser`);
  mkdirSync(SHOTS, { recursive: true });
  // Build the app as `npm run build -w dashboards` does, into a folder of this run.
  const outDir = makeTempDir('dashboards-dist');
  await build({ configFile: join(dashboardsRoot, 'vite.config.ts'), logLevel: 'warn', build: { outDir, emptyOutDir: true, sourcemap: false } });
  if (!existsSync(join(outDir, 'index.html'))) throw new Error(`vite build wrote no index.html into ${outDir}`);
  process.env.CHECKPOINT_DASHBOARDS_DIR = outDir;

  broker = await startTestBroker(['gate-1', 'gate-2'], makeTempDir('dash-broker'), 'memory');
  const base = gatewayConfig({ dataDir: makeTempDir('dash-gw'), mqttUrl: broker.url }) as any;
  // A fixed port and MQTT client id: the restart test brings the same gateway back where the page expects it.
  gatewayOptions = { ...base, http: { host: '127.0.0.1', port: await freePort() }, mqtt: { ...base.mqtt, clientId: 'gw-dashboards-test' }, commands: { timeoutMs: 3000 } };
  // Not under test here (and port 4840 may be taken): no OPC UA server, where the gateway has one.
  if ('opcua' in GatewayConfigSchema.properties) gatewayOptions.opcua = { enabled: false };
  gateway = await startGateway();
  for (const role of ['guard', 'dispatcher', 'engineer', 'admin'] as const) await gateway.users.add({ name: role, role }, API_PASSWORD);
  admin = await ApiClient.login(gateway.url, 'admin');
  gate1 = await connectEdge(broker.url, 'gate-1');
  gate2 = await connectEdge(broker.url, 'gate-2');
  await publishState(gate1, state('gate-1'));
  await publishState(gate2, state('gate-2'));
  await waitFor(async () => (await admin.get('/api/devices')).body.devices.filter((d: any) => d.status === 'online').length === 2, { what: 'both checkpoints online' });

  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--autoplay-policy=no-user-gesture-required'],
  });
});

afterAll(async () => {
  for (const c of contexts) await c.close().catch(() => undefined);
  await browser?.close();
  await gate1?.endAsync();
  await gate2?.endAsync();
  await gateway?.close();
  await broker?.close();
});

describe('served by the gateway', () => {
  it('serves the app at / and page paths, and leaves /api, /docs, /healthz and /metrics alone', async () => {
    const html = { accept: 'text/html,application/xhtml+xml' };
    for (const path of ['/', '/guard', '/devices?x=1']) {
      const res = await fetch(`${gateway.url}${path}`, { headers: html });
      expect(res.status, path).toBe(200);
      expect(await res.text(), path).toContain('<div id="app">');
    }
    const asset = /src="(\/assets\/[^"]+\.js)"/.exec(await (await fetch(gateway.url)).text())![1]!;
    const js = await fetch(`${gateway.url}${asset}`);
    expect(js.status).toBe(200);
    expect(js.headers.get('cache-control')).toContain('immutable');
    const missing = await fetch(`${gateway.url}/api/nothing`, { headers: html });
    expect(missing.status).toBe(404);
    expect((await missing.json()).error).toBe('Not Found');
    expect((await fetch(`${gateway.url}/assets/nothing.js`)).status).toBe(404);
    expect((await fetch(`${gateway.url}/api/alerts`)).status).toBe(401);
    expect((await fetch(`${gateway.url}/healthz`)).status).toBe(200);
    expect((await (await fetch(`${gateway.url}/docs/json`)).json()).openapi).toMatch(/^3\./);
    expect(await (await fetch(`${gateway.url}/metrics`)).text()).toContain('checkpoint_gateway_');
  });
});

describe('guard screen', () => {
  let page: Page;
  let alertId: string;

  it('logs the guard in to a calm "screening normally" screen that counts the people passed', async () => {
    page = await openPage();
    await login(page, 'guard');
    expect(new URL(page.url()).pathname).toBe('/guard');
    await page.locator('.state-banner[data-state="ok"]').getByText('Screening normally').waitFor();
    for (let i = 0; i < 3; i++) await screen(gate1, { trackId: i });
    await page.locator('[data-checkpoint="hq/gate-1"]').getByText('3 passed today').waitFor();
    await page.locator('[data-checkpoint="hq/gate-2"]').getByText('0 passed today').waitFor();
    expect(await page.locator('[data-live]').getAttribute('data-live')).toBe('live');
    expect(await page.evaluate(() => document.body.dataset.chimes ?? '0')).toBe('0');
    expect(await page.title()).toBe('Guard screen · Checkpoint');
    await shot(page, 'guard-calm');
  });

  it('shows a card within a second of the screening being published, with its snapshot, a chime and a flash', async () => {
    const published = Date.now();
    const s = await screen(gate1, { decision: 'secondary_check', temperatureC: 38.1, mask: 'mask', reasons: ['elevated_temperature'], snapshot: true, trackId: 10 });
    const card = page.locator('article.card');
    await card.first().waitFor({ timeout: 5000 });
    const elapsed = Date.now() - published;
    console.log(`alert card visible ${elapsed} ms after the screening was published`);
    expect(elapsed).toBeLessThan(1000);
    await expect.poll(() => card.count()).toBe(1);
    alertId = (await card.getAttribute('data-alert-id'))!;
    const alert = (await admin.get(`/api/alerts/${alertId}`)).body;
    expect(alert.screeningId).toBe(s.id);

    await expect.poll(() => card.getByRole('heading').textContent()).toBe('Secondary check required');
    const text = (await card.textContent())!;
    expect(text).toContain('38.1 °C');
    expect(text).toContain('threshold 37.3 °C');
    expect(text).toContain('Wearing a mask');
    expect(text).toContain('Temperature above the threshold');
    expect(text).toContain('gate-1');
    expect(text).not.toMatch(/fever/i);

    const img = card.getByRole('img', { name: /face and thermal image/i });
    await img.waitFor({ timeout: 15_000 });
    await expect.poll(() => img.evaluate((el: HTMLImageElement) => el.complete && el.naturalWidth)).toBe(400);
    expect(await img.getAttribute('src')).toMatch(/^blob:/);

    expect(await page.evaluate(() => document.body.dataset.chimes)).toBe('1');
    expect(await page.evaluate(() => document.body.dataset.chimesAudible)).toBe('1');
    expect(await page.locator('.guard').getAttribute('data-flash')).toBe('on');
    await page.getByText('1 waiting', { exact: true }).waitFor();
    await shot(page, 'guard-alert');
    // Viewing the face image is audited.
    const audit = (await admin.get('/api/audit?limit=50')).body.entries as any[];
    expect(audit.some((e) => e.action === 'snapshot.view' && e.target === s.id && e.actor === 'guard')).toBe(true);
  });

  it('lets the guard choose the sound policy (remembered); repeating is the default', async () => {
    const select = page.getByLabel('Sound');
    expect(await select.inputValue()).toBe('repeat-30');
    await select.selectOption('off');
    expect(await page.evaluate(() => localStorage.getItem('checkpoint.sound'))).toBe('off');
    await select.selectOption('repeat-30');
  });

  it('takes an acknowledgement back within the undo window: nothing reaches the gateway', async () => {
    const card = page.locator(`[data-alert-id="${alertId}"]`);
    await card.getByRole('button', { name: 'Cleared' }).click();
    await card.getByText(/Cleared – saved in \d s/).waitFor();
    expect(await page.getByText('0 waiting', { exact: true }).count()).toBe(1);
    await card.getByRole('button', { name: 'Undo' }).click();
    await card.getByRole('button', { name: 'Referred' }).waitFor();
    await page.getByText('1 waiting', { exact: true }).waitFor();
    // Longer than the window: still open on the gateway.
    await page.waitForTimeout(6500);
    expect((await admin.get(`/api/alerts/${alertId}`)).body.status).toBe('open');
    expect(await card.getAttribute('data-pending')).toBe('no');
  });

  it('acknowledges with an outcome and a note in one tap; the API and the audit log show it', async () => {
    const card = page.locator(`[data-alert-id="${alertId}"]`);
    await card.getByLabel('Note (optional)').fill('sent to the fever clinic desk');
    await card.getByRole('button', { name: 'Referred' }).click();
    await card.getByRole('button', { name: 'Undo' }).waitFor();
    await card.waitFor({ state: 'detached', timeout: 15_000 });
    await page.locator('.state-banner[data-state="ok"]').waitFor();
    const alert = (await admin.get(`/api/alerts/${alertId}`)).body;
    expect(alert.status).toBe('closed');
    expect(alert.acknowledgement).toMatchObject({ by: 'guard', outcome: 'referred', note: 'sent to the fever clinic desk' });
    const audit = (await admin.get('/api/audit?limit=50')).body.entries as any[];
    expect(audit.find((e) => e.target === alertId && e.actor === 'guard')).toMatchObject({ action: 'alert.closed', detail: { outcome: 'referred', note: true } });
  });

  it('raises a red banner when a checkpoint goes offline or loses its blackbody, and clears it when it is back', async () => {
    await publishState(gate2, { status: 'offline', ts: new Date().toISOString(), site: 'hq', checkpoint: 'gate-2' });
    const banner = page.locator('.banner[data-checkpoint="hq/gate-2"]');
    await banner.waitFor();
    expect(await banner.textContent()).toMatch(/gate-2 cannot screen.*offline/);
    // The one state banner is red, names the gate, and the alarm tone sounds; nothing green anywhere.
    const stateBanner = page.locator('.state-banner');
    expect(await stateBanner.getAttribute('data-state')).toBe('not_screening');
    expect(await stateBanner.textContent()).toContain('NOT SCREENING at gate-2');
    expect(await page.getByText('Screening normally').count()).toBe(0);
    await expect.poll(() => page.evaluate(() => Number(document.body.dataset.alarms ?? '0'))).toBeGreaterThan(0);
    await publishState(gate2, state('gate-2', { calibration: { reference: 'not_seen', mode: 'absolute', thresholdC: 37.3, homography: true } }));
    await banner.getByText('reference blackbody not seen').waitFor();
    expect(await banner.textContent()).not.toContain('offline');
    // gate-1 keeps screening normally beside it.
    await page.locator('[data-checkpoint="hq/gate-1"]').getByText('3 passed today').waitFor();
    // A person without a mask at gate-1 while gate-2 is down: what a guard sees on a busy moment.
    await screen(gate1, { decision: 'secondary_check', temperatureC: 37.9, mask: 'no_mask', reasons: ['elevated_temperature', 'no_mask'], snapshot: true, trackId: 11 });
    await page.locator('article.card img').waitFor({ timeout: 15_000 });
    await shot(page, 'guard-banner-and-card');
    await publishState(gate2, state('gate-2'));
    await banner.waitFor({ state: 'detached' });
  });

  it('keeps working through a gateway restart: reconnects, catches up, shows no card twice', async () => {
    const before = await page.locator('article.card').evaluateAll((els) => els.map((e) => e.getAttribute('data-alert-id')));
    expect(before).toHaveLength(1);
    const chimes = Number(await page.evaluate(() => document.body.dataset.chimes));

    await gateway.close();
    await page.locator('[data-live="reconnecting"]').waitFor();
    // Impossible to miss: a red full-width banner, the old cards greyed as not live.
    await page.locator('.state-banner[data-state="outage"]').getByText('Gateway not reachable – alerts are NOT arriving').waitFor();
    expect(await page.locator('section.cards').getAttribute('data-stale')).toBe('yes');
    await shot(page, 'guard-outage');
    // Screened while the gateway is away: the broker keeps it for the gateway's persistent session.
    const during = await screen(gate1, { decision: 'secondary_check', temperatureC: 38.4, trackId: 12 });
    gateway = await startGateway();
    await page.locator('[data-live="live"]').waitFor({ timeout: 30_000 });
    const after = await screen(gate2, { checkpoint: 'gate-2', decision: 'secondary_check', temperatureC: 38.0, trackId: 13 });

    const open = async () =>
      ((await admin.get('/api/alerts?status=open')).body.alerts as any[]).filter((a) => a.kind === 'screening').sort((a, b) => Date.parse(a.openedAt) - Date.parse(b.openedAt));
    await waitFor(async () => (await open()).length === 3, { what: 'three open screening alerts in the API' });
    const expected = (await open()).map((a) => a.id);
    expect((await open()).map((a) => a.screeningId)).toEqual(expect.arrayContaining([during.id, after.id]));
    await expect.poll(() => page.locator('article.card').count(), { timeout: 20_000 }).toBe(3);
    const ids = await page.locator('article.card').evaluateAll((els) => els.map((e) => e.getAttribute('data-alert-id')));
    expect(new Set(ids).size).toBe(3);
    // Oldest first, exactly the open alerts.
    expect(ids).toEqual(expected);
    expect(await page.locator('section.cards').getAttribute('data-stale')).toBe('no');
    // One chime per new person, none for replays.
    expect(Number(await page.evaluate(() => document.body.dataset.chimes))).toBe(chimes + 2);
  });

  it('does not let a guard open the devices page', async () => {
    await expect.poll(() => page.getByRole('navigation').getByRole('link').allTextContents()).toEqual(['Guard screen', 'Statistics']);
    await page.goto('/devices');
    await page.getByRole('alert').filter({ hasText: 'This page is for the engineer role or above' }).waitFor();
    expect(await page.locator('.devices').count()).toBe(0);
    // And the API agrees.
    const guard = await ApiClient.login(gateway.url, 'guard');
    expect((await guard.post('/api/checkpoints/hq/gate-1/cmd', { type: 'ping' })).status).toBe(403);
  });

  it('switches to Simplified Chinese, with every text from the catalogue', async () => {
    await page.goto('/guard');
    await page.locator('article.card').first().waitFor();
    await page.getByLabel('Language').selectOption('zh-CN');
    await page.getByRole('heading', { name: '入口筛查', level: 1 }).waitFor();
    expect(await page.locator('html').getAttribute('lang')).toBe('zh-CN');
    expect(await page.locator('article.card h2').first().textContent()).toBe('需要复检');
    expect(await page.getByRole('navigation').getByRole('link').allTextContents()).toEqual(['安保屏', '统计']);
    const text = (await page.locator('body').innerText())!;
    expect(text).not.toMatch(/\b(guard|nav|reason|outcome|problem|mask|live|role)\.[a-z_]+/);
    expect(text).not.toMatch(/Secondary check required|Cleared|Referred/);
    await shot(page, 'guard-zh-CN');
    // Remembered on this device.
    await page.reload();
    await page.getByRole('heading', { name: '入口筛查', level: 1 }).waitFor();
    await page.getByLabel('语言').selectOption('en');
    await page.getByRole('heading', { name: 'Entrance screening', level: 1 }).waitFor();
  });

  it('starts in Chinese for a browser set to Chinese', async () => {
    const zh = await openPage('zh-CN');
    await zh.goto('/');
    await zh.getByRole('button', { name: '登录' }).waitFor();
    expect(await zh.locator('html').getAttribute('lang')).toBe('zh-CN');
  });
});

describe('guard wall mode and the states a shift runs into', () => {
  let wall: Page;
  const openAlerts = async () =>
    ((await admin.get('/api/alerts?status=open')).body.alerts as any[]).filter((a) => a.kind === 'screening').sort((a, b) => Date.parse(a.openedAt) - Date.parse(b.openedAt));

  it('fits 12 waiting people on a 1920x1080 wall monitor, oldest first, with the header always in view', async () => {
    for (let i = (await openAlerts()).length; i < 12; i++) {
      await screen(i % 2 ? gate2 : gate1, { ...(i % 2 ? { checkpoint: 'gate-2' } : {}), decision: 'secondary_check', temperatureC: 37.6 + i / 10, reasons: ['elevated_temperature'], snapshot: true, trackId: 100 + i });
    }
    await waitFor(async () => (await openAlerts()).length === 12, { what: '12 open screening alerts' });
    const context = await browser.newContext({ locale: 'en-US', viewport: { width: 1920, height: 1080 }, baseURL: gateway.url });
    contexts.push(context);
    wall = await context.newPage();
    await login(wall, 'guard');
    await wall.goto('/guard?wall=1');
    await expect.poll(() => wall.locator('article.card').count(), { timeout: 10_000 }).toBe(12);
    // Wall mode: no navigation bar, the header is the page's own.
    expect(await wall.locator('header.topbar').count()).toBe(0);
    const ids = await wall.locator('article.card').evaluateAll((els) => els.map((e) => e.getAttribute('data-alert-id')));
    expect(ids).toEqual((await openAlerts()).map((a) => a.id));
    await expect.poll(() => wall.locator('[data-snapshot="loading"]').count(), { timeout: 15_000 }).toBe(0);
    const visible = await wall.locator('article.card').evaluateAll((els) => els.filter((e) => e.getBoundingClientRect().bottom <= innerHeight && e.getBoundingClientRect().top >= 0).length);
    console.log(`wall mode 1920x1080: ${visible} of 12 cards fully visible without scrolling`);
    await wall.screenshot({ path: join(SHOTS, 'guard-wall-1920.png') });
    expect(visible).toBe(12);
    // Scrolled to the newest card, the state banner, count and gates stay on screen.
    await wall.locator('article.card').nth(11).scrollIntoViewIfNeeded();
    const head = await wall.locator('[data-guard-head]').boundingBox();
    expect(head!.y).toBeGreaterThanOrEqual(0);
    expect(head!.y).toBeLessThan(20);
    expect(await wall.locator('.state-banner').isVisible()).toBe(true);
    await wall.getByText('12 waiting', { exact: true }).waitFor();
    expect(await wall.locator('.state-banner').getAttribute('data-state')).toBe('waiting');
  });

  it('is never green while loading or after a load error, and recovers by itself', async () => {
    const context = await browser.newContext({ locale: 'en-US', viewport: { width: 1366, height: 768 }, baseURL: gateway.url });
    contexts.push(context);
    const p = await context.newPage();
    // Every 'state' the banner takes, recorded from the first paint.
    await p.addInitScript(() => {
      const w = window as unknown as { states: string[] };
      w.states = [];
      new MutationObserver(() => {
        const s = document.querySelector('.state-banner')?.getAttribute('data-state');
        if (s && w.states.at(-1) !== s) w.states.push(s);
      }).observe(document, { subtree: true, childList: true, attributes: true });
    });
    await login(p, 'guard');
    // The devices answer fails twice, then the gateway answers again. Every request that arrives
    // before release() is held (the screen may ask more than once while it loads, e.g. when its
    // live feed connects), so it stays 'loading' for as long as the test looks at it.
    let failures = 0;
    let release: () => void = () => undefined;
    const held = new Promise<void>((r) => (release = r));
    await p.route('**/api/devices', async (route) => {
      if (failures < 2) {
        await held;
        failures++;
        return route.fulfill({ status: 500, contentType: 'application/json', body: JSON.stringify({ statusCode: 500, error: 'Internal Server Error', message: 'database is locked' }) });
      }
      return route.continue();
    });
    await p.goto('/guard');
    await p.locator('.state-banner[data-state="loading"]').waitFor();
    expect(await p.locator('.state-banner').textContent()).toContain('Loading – status not known yet');
    release();
    await p.locator('.state-banner[data-state="load_error"]').getByText('database is locked').waitFor();
    expect(await p.locator('.state-banner').getAttribute('data-tone')).toBe('alarm');
    // Retried without anyone touching the screen (every 5 s after an error; generous for a loaded CI box).
    await p.locator('.state-banner[data-state="waiting"]').waitFor({ timeout: 45_000 });
    const states = await p.evaluate(() => (window as unknown as { states: string[] }).states);
    expect(states).not.toContain('ok');
    expect(states.indexOf('loading')).toBeLessThan(states.indexOf('load_error'));
  });

  it('renews the session of a wall monitor before it ends, in every tab', async () => {
    const before = await wall.evaluate(() => JSON.parse(localStorage.getItem('checkpoint.session')!));
    const second = await wall.context().newPage();
    await second.goto('/stats');
    await second.getByRole('navigation').waitFor(); // same login: no sign-in form in the second tab
    // Pretend the token ends in 4 s (the gateway's lasts 12 h): the screen renews at once.
    await wall.evaluate((s) => localStorage.setItem('checkpoint.session', JSON.stringify({ ...s, expiresAt: new Date(Date.now() + 4000).toISOString() })), before);
    await wall.reload();
    await expect.poll(() => wall.evaluate(() => JSON.parse(localStorage.getItem('checkpoint.session')!).token), { timeout: 10_000 }).not.toBe(before.token);
    const renewed = await wall.evaluate(() => JSON.parse(localStorage.getItem('checkpoint.session')!));
    expect(Date.parse(renewed.expiresAt)).toBeGreaterThan(Date.now() + 3600_000);
    // The old token is over; the new one works; the other tab uses it too.
    expect((await new ApiClient(gateway.url, before.token).get('/api/auth/me')).status).toBe(401);
    expect((await new ApiClient(gateway.url, renewed.token).get('/api/auth/me')).status).toBe(200);
    expect(await second.evaluate(() => JSON.parse(localStorage.getItem('checkpoint.session')!).token)).toBe(renewed.token);
    await wall.locator('[data-live="live"]').waitFor();
    await second.close();
  });

  it('says loudly when the session ends on a wall monitor, and comes back after signing in there', async () => {
    const token = await wall.evaluate(() => JSON.parse(localStorage.getItem('checkpoint.session')!).token as string);
    const alarms = await wall.evaluate(() => Number(document.body.dataset.alarms ?? '0'));
    gateway.users.endSession(token);
    // The next person arrives: loading the face image is refused, the screen knows it is signed out.
    await screen(gate1, { decision: 'secondary_check', temperatureC: 38.2, reasons: ['elevated_temperature'], snapshot: true, trackId: 300 });
    const dialog = wall.getByRole('alertdialog', { name: 'Signed out – this screen is NOT receiving alerts' });
    await dialog.waitFor({ timeout: 40_000 });
    expect(await wall.locator('.state-banner').getAttribute('data-state')).toBe('signed_out');
    await expect.poll(() => wall.evaluate(() => Number(document.body.dataset.alarms ?? '0'))).toBeGreaterThan(alarms);
    await wall.screenshot({ path: join(SHOTS, 'guard-signed-out.png') });
    await dialog.getByLabel('Password').fill(API_PASSWORD);
    await dialog.getByRole('button', { name: 'Sign in' }).click();
    await dialog.waitFor({ state: 'detached' });
    await expect.poll(() => wall.locator('article.card').count(), { timeout: 10_000 }).toBe(13);
    await wall.locator('[data-live="live"]').waitFor();
    expect(await wall.locator('.state-banner').getAttribute('data-state')).toBe('waiting');
  });
});

describe('devices page (engineer)', () => {
  it('shows each agent with model and sha256, telemetry, and a threshold command with its ack', async () => {
    const received: any[] = [];
    const cmdTopic = checkpointTopics.cmd({ site: 'hq', checkpoint: 'gate-1' });
    await gate1.subscribeAsync(cmdTopic, { qos: 1 });
    gate1.on('message', (topic, payload) => {
      if (topic !== cmdTopic) return;
      const cmd = JSON.parse(payload.toString());
      received.push(cmd);
      // The agent applies the config and acknowledges (as edge-agent does for set-config).
      void gate1.publishAsync(checkpointTopics.cmdAck({ site: 'hq', checkpoint: 'gate-1' }), JSON.stringify({ id: cmd.id, ts: new Date().toISOString(), ok: true }), { qos: 1 });
    });
    for (const fps of [14.5, 15.2]) {
      await gate1.publishAsync(
        checkpointTopics.telemetry({ site: 'hq', checkpoint: 'gate-1' }),
        JSON.stringify({ ts: new Date().toISOString(), site: 'hq', checkpoint: 'gate-1', fps, stages: { inference: 7.46, thermometry: 0.3 }, cpuTempC: 51.5, ambientC: 22, blackbody: { setC: 35, measuredC: 34.9, status: 'ok' }, queueDepth: 0, rssMb: 231.4 }),
        { qos: 0 },
      );
    }
    await waitFor(async () => (await admin.get('/api/devices')).body.devices.find((d: any) => d.checkpoint === 'gate-1')?.telemetry?.fps === 15.2, { what: 'telemetry stored' });

    const page = await openPage();
    await login(page, 'engineer');
    expect(new URL(page.url()).pathname).toBe('/devices');
    const card = page.locator('[data-device="hq/gate-1"]');
    await card.waitFor();
    const text = (await card.textContent())!;
    expect(text).toContain('online');
    expect(text).toContain('masked-face-640');
    expect(text).toContain(`sha256 ${'a'.repeat(12)}`);
    expect(text).toContain('15.2');
    expect(text).toContain('51.5 °C');
    expect(text).toContain('inference 7.5 · thermometry 0.3 ms');
    expect(text).toContain('reads 34.90 °C, set 35.0 °C');
    expect(text).toContain('231 MB');
    expect(text).toContain('edge-agent 0.1.0');

    await page.getByLabel('Checkpoint', { exact: true }).selectOption('hq/gate-1');
    await page.getByLabel('Command', { exact: true }).selectOption('threshold');
    await page.getByLabel('Threshold (°C)').fill('37.6');
    await page.getByRole('button', { name: 'Send' }).click();
    const ack = page.locator('.ack-result[data-ack="ok"]');
    await ack.waitFor();
    expect(received).toHaveLength(1);
    expect(received[0]).toMatchObject({ type: 'set-config', config: { screening: { thresholdC: 37.6 } } });
    expect(await ack.textContent()).toContain(received[0].id);
    await shot(page, 'devices');

    // An agent that does not answer: the page says so instead of hanging.
    await page.getByLabel('Checkpoint', { exact: true }).selectOption('hq/gate-2');
    await page.getByLabel('Command', { exact: true }).selectOption('ping');
    await page.getByRole('button', { name: 'Send' }).click();
    await page.locator('.ack-result[data-ack="timeout"]').waitFor({ timeout: 10_000 });
  });
});

describe('enrolment and revocation from the devices page', () => {
  it('creates an enrolment token, sees the device enrol with it, and revokes it (the broker user is gone)', async () => {
    const page = await openPage();
    await login(page, 'engineer');
    const section = page.getByRole('region', { name: 'Enrol and revoke checkpoints' });
    await section.getByLabel('Site id').fill('hq');
    await section.getByLabel('Checkpoint id').fill('gate-9');
    await section.getByRole('button', { name: 'Create enrolment token' }).click();
    const command = await section.locator('[data-issued="hq/gate-9"] .enroll-command').textContent();
    const token = /--token (\S+)/.exec(command!)![1]!;
    expect(command).toContain(`edge-agent enroll --gateway ${gateway.url}`);
    await section.locator('tr[data-provisioned="hq/gate-9"][data-status="registered"]').waitFor();
    // The device uses the token (as `edge-agent enroll` does) and gets its broker credentials.
    const enrolled = await fetch(`${gateway.url}/api/enroll`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token }) });
    expect(enrolled.status).toBe(200);
    const username = ((await enrolled.json()) as any).mqtt.username as string;
    expect(broker.broker.users.get(username)).toBeTruthy();
    const row = section.locator('tr[data-provisioned="hq/gate-9"]');
    await section.locator('tr[data-provisioned="hq/gate-9"][data-status="enrolled"]').waitFor({ timeout: 10_000 });
    await row.getByRole('button', { name: 'Revoke' }).click();
    await row.getByRole('button', { name: 'Yes, revoke' }).click();
    await section.locator('tr[data-provisioned="hq/gate-9"][data-status="revoked"]').waitFor({ timeout: 10_000 });
    expect(broker.broker.users.get(username)).toBeFalsy();
    await shot(page, 'devices-provisioning');
    await page.context().close();
  });
});

describe('statistics page', () => {
  it('shows people screened per checkpoint and the secondary-check rate, as the API counts them', async () => {
    await waitFor(() => gateway.spoolDepth() === 0, { what: 'series written' });
    const from = new Date(Date.now() - 24 * 3_600_000).toISOString();
    const api = (await admin.get(`/api/stats/checkpoints?from=${encodeURIComponent(from)}&interval=1h`)).body.checkpoints as any[];
    const gate1Stats = api.find((c) => c.checkpoint === 'gate-1');
    const screened = gate1Stats.buckets.reduce((a: number, b: any) => a + b.counts.pass + b.counts.secondary_check + b.counts.invalid + b.counts.cannot_screen, 0);
    const secondary = gate1Stats.buckets.reduce((a: number, b: any) => a + b.counts.secondary_check, 0);
    const missed = gate1Stats.buckets.reduce((a: number, b: any) => a + b.counts.cannot_screen, 0);
    expect(screened).toBeGreaterThanOrEqual(6);

    const page = await openPage();
    await login(page, 'guard');
    await page.getByRole('navigation').getByRole('link', { name: 'Statistics' }).click();
    const row = page.locator('tr[data-checkpoint="hq/gate-1"]');
    await row.waitFor();
    const cells = await row.locator('td').allTextContents();
    expect(cells[0]).toBe(String(screened));
    expect(cells[1]).toBe(String(secondary));
    expect(cells[3]).toBe(String(missed));
    expect(cells[4]).toBe(`${((secondary / screened) * 100).toFixed(1)} %`);
    expect(await page.locator('svg.chart').count()).toBeGreaterThanOrEqual(3);
    await shot(page, 'statistics');
  });
});
