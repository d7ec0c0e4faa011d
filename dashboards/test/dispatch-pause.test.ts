/* eslint-disable @typescript-eslint/no-explicit-any -- JSON bodies of API responses */
/**
 * Pause and resume a robot from the dispatch board (issue 19), in a real browser (Debian's
 * Chromium) against a real gateway on our broker, with one simulated delivery robot speaking
 * VDA 5050 over MQTT (the firmware-bridge's simulator, 5× real time so it is still driving when
 * the dispatcher presses Pause). The robot stops where it is (startPause), the board shows it
 * paused, and after Resume (stopPause) the same order runs on to the ward.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chromium, type Browser, type Page } from 'playwright-core';
import { build } from 'vite';
import { createBroker, openUserStore, type Broker } from '@checkpoint/broker';
import { createSimulatedRobot, type SimulatedRobot } from '@checkpoint/firmware-bridge';
import { createGateway, demoFleet, type Gateway } from '@checkpoint/gateway';
import { makeTempDir, waitFor } from '@checkpoint/test-support';
import { API_PASSWORD, ApiClient, BROKER_PASSWORD, gatewayConfig } from '../../gateway/test/helpers/world.js';

const CHROMIUM = '/usr/bin/chromium';
const dashboardsRoot = fileURLToPath(new URL('..', import.meta.url));
const demo = demoFleet.robots.find((r) => r.serialNumber === 'DEL-1')!;
const ROBOT = `${demo.manufacturer}/${demo.serialNumber}`;

let broker: Broker;
let closeUsers: () => void;
let gateway: Gateway;
let dispatcher: ApiClient;
let robot: SimulatedRobot;
let browser: Browser;
let page: Page;

const robotView = async () => ((await dispatcher.get('/api/robots')).body.robots as any[]).find((r) => r.id === ROBOT);

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} not found: install Debian's chromium (apt-get install -y chromium); the tests never download a browser`);
  const outDir = makeTempDir('dispatch-pause-dist');
  await build({ configFile: join(dashboardsRoot, 'vite.config.ts'), logLevel: 'warn', build: { outDir, emptyOutDir: true, sourcemap: false } });
  process.env.CHECKPOINT_DASHBOARDS_DIR = outDir;

  const dir = makeTempDir('dispatch-pause-broker');
  const users = openUserStore(join(dir, 'users.sqlite'), { mosquittoHashIterations: 0 });
  closeUsers = () => users.close();
  await users.add({ name: 'gw', role: 'gateway' }, BROKER_PASSWORD);
  await users.add({ name: 'robot-del-1', role: 'robot', robot: { manufacturer: demo.manufacturer, serialNumber: demo.serialNumber } }, BROKER_PASSWORD);
  broker = await createBroker({ config: { dataDir: dir, host: '127.0.0.1', mqtt: { port: 0 }, metrics: { port: null }, logLevel: 'silent', sysIntervalS: 0, persistence: 'memory' }, users });
  const url = `mqtt://127.0.0.1:${broker.ports.mqtt}`;

  gateway = await createGateway(gatewayConfig({ dataDir: makeTempDir('dispatch-pause-gw'), mqttUrl: url, fleet: { map: demoFleet.map, rules: demoFleet.rules, tickMs: 200 } }));
  await gateway.users.add({ name: 'dispatcher', role: 'dispatcher' }, API_PASSWORD);
  dispatcher = await ApiClient.login(gateway.url, 'dispatcher');
  robot = await createSimulatedRobot({
    ...demo,
    capabilities: [...demo.capabilities],
    timeScale: 5,
    reportMs: 500,
    transport: { kind: 'mqtt', url, username: 'robot-del-1', password: BROKER_PASSWORD },
  });
  await waitFor(async () => (await robotView())?.available === true, { what: 'DEL-1 online and available', timeoutMs: 20_000 });

  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'] });
  const context = await browser.newContext({ locale: 'en-US', viewport: { width: 1280, height: 900 }, baseURL: gateway.url });
  page = await context.newPage();
  page.on('pageerror', (err) => console.error('page error:', err.message));
});

afterAll(async () => {
  await browser?.close();
  await robot?.close().catch(() => undefined);
  await gateway?.close();
  await broker?.close();
  closeUsers?.();
});

describe('pause and resume on the dispatch board', () => {
  it('pauses a driving robot where it is and resumes the same order', async () => {
    await page.goto('/');
    await page.getByLabel('User name').fill('dispatcher');
    await page.getByLabel('Password').fill(API_PASSWORD);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('heading', { name: 'Robot dispatch', level: 1 }).waitFor();
    const row = page.locator(`tr[data-robot="${ROBOT}"]`);
    await row.getByRole('button', { name: 'Pause DEL-1' }).waitFor();

    const created = (await dispatcher.post('/api/tasks', { type: 'delivery', from: 'pharmacy', to: 'ward-1', what: 'insulin' })).body.task;
    await expect.poll(() => row.getAttribute('data-state'), { timeout: 20_000 }).toBe('driving');
    // The click must reach the gateway (a row re-rendered by a live update can swallow it).
    const [answer] = await Promise.all([
      page.waitForResponse((r) => r.url().endsWith(`/pause`) && r.request().method() === 'POST', { timeout: 30_000 }),
      row.getByRole('button', { name: 'Pause DEL-1' }).click(),
    ]);
    expect(answer.status(), await answer.text()).toBe(202);

    // The robot reports paused: the board says so, the button turns into Resume, and the robot stays put.
    await expect.poll(() => row.getAttribute('data-state'), { timeout: 60_000 }).toBe('paused');
    expect(await row.locator('td.robot-state-paused').textContent()).toBe('Paused');
    expect(await page.locator(`[data-robot-on-map="${ROBOT}"]`).getAttribute('data-state')).toBe('paused');
    const stopped = await robotView();
    expect(stopped).toMatchObject({ paused: true, driving: false, available: false, unavailableReason: 'paused', taskId: created.id });
    // Three more state reports (lastSeen moves on): no movement while paused.
    const seen = Date.parse(stopped.lastSeen);
    await waitFor(async () => Date.parse((await robotView()).lastSeen) >= seen + 1500, { what: 'three more state reports from the paused robot', timeoutMs: 20_000 });
    const still = await robotView();
    expect({ x: still.x, y: still.y, lastNodeId: still.lastNodeId }).toEqual({ x: stopped.x, y: stopped.y, lastNodeId: stopped.lastNodeId });
    expect((await dispatcher.get(`/api/tasks/${created.id}`)).body.task.status).toBe('underway');

    await row.getByRole('button', { name: 'Resume DEL-1' }).click();
    await row.getByRole('button', { name: 'Pause DEL-1' }).waitFor({ timeout: 20_000 });
    // The same order runs on to the ward, where the robot waits for the recipient.
    await waitFor(async () => (await dispatcher.get(`/api/tasks/${created.id}`)).body.task.waitingFor === 'received', { what: 'the delivery at the ward after Resume', timeoutMs: 60_000 });
    const task = (await dispatcher.get(`/api/tasks/${created.id}`)).body.task;
    expect(task.attempts).toBe(1);
    expect((task.history as any[]).map((h) => h.reason)).toEqual(expect.arrayContaining([`startPause sent to ${ROBOT} by dispatcher`, `stopPause sent to ${ROBOT} by dispatcher`]));
    expect((await robotView()).lastNodeId).toBe('ward-1');
  });
});
