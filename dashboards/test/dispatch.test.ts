/* eslint-disable @typescript-eslint/no-explicit-any -- JSON bodies of API responses */
/**
 * The dispatch board in a real browser (Debian's Chromium, playwright-core) against a real gateway
 * with the demo hospital's fleet on our broker, and simulated robots speaking VDA 5050 over MQTT
 * (the firmware-bridge's simulator, 20× faster than real time): the map, robots with battery, a
 * delivery created through the form that the board watches move and complete (the recipient's
 * "Received" pressed on the board), and a second task cancelled from the board.
 *
 * Screenshots go to $CHECKPOINT_SCREENSHOTS or /tmp/checkpoint-dashboards (artifacts, never committed).
 */
import { existsSync, mkdirSync } from 'node:fs';
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
const SHOTS = process.env.CHECKPOINT_SCREENSHOTS ?? '/tmp/checkpoint-dashboards';
const dashboardsRoot = fileURLToPath(new URL('..', import.meta.url));
const TIME_SCALE = 20;

let broker: Broker;
let closeUsers: () => void;
let gateway: Gateway;
let dispatcher: ApiClient;
let browser: Browser;
let page: Page;
const robots: SimulatedRobot[] = [];

const nodeById = new Map(demoFleet.map.nodes.map((n) => [n.id, n]));
const robotId = (serial: string) => `${demoFleet.robots[0]!.manufacturer}/${serial}`;

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} not found: install Debian's chromium (apt-get install -y chromium); the tests never download a browser`);
  mkdirSync(SHOTS, { recursive: true });
  const outDir = makeTempDir('dispatch-dist');
  await build({ configFile: join(dashboardsRoot, 'vite.config.ts'), logLevel: 'warn', build: { outDir, emptyOutDir: true, sourcemap: false } });
  process.env.CHECKPOINT_DASHBOARDS_DIR = outDir;

  // Our broker with the gateway's user and one robot user per demo robot (the ACL lets a robot publish only as itself).
  const dir = makeTempDir('dispatch-broker');
  const users = openUserStore(join(dir, 'users.sqlite'), { mosquittoHashIterations: 0 });
  closeUsers = () => users.close();
  await users.add({ name: 'gw', role: 'gateway' }, BROKER_PASSWORD);
  for (const r of demoFleet.robots) {
    await users.add({ name: `robot-${r.serialNumber.toLowerCase()}`, role: 'robot', robot: { manufacturer: r.manufacturer, serialNumber: r.serialNumber } }, BROKER_PASSWORD);
  }
  broker = await createBroker({ config: { dataDir: dir, host: '127.0.0.1', mqtt: { port: 0 }, metrics: { port: null }, logLevel: 'silent', sysIntervalS: 0, persistence: 'memory' }, users });
  const url = `mqtt://127.0.0.1:${broker.ports.mqtt}`;

  gateway = await createGateway(gatewayConfig({ dataDir: makeTempDir('dispatch-gw'), mqttUrl: url, fleet: { map: demoFleet.map, rules: demoFleet.rules, tickMs: 200 } }));
  await gateway.users.add({ name: 'dispatcher', role: 'dispatcher' }, API_PASSWORD);
  dispatcher = await ApiClient.login(gateway.url, 'dispatcher');
  for (const r of demoFleet.robots) {
    robots.push(
      await createSimulatedRobot({
        ...r,
        capabilities: [...r.capabilities],
        timeScale: TIME_SCALE,
        reportMs: 2000,
        transport: { kind: 'mqtt', url, username: `robot-${r.serialNumber.toLowerCase()}`, password: BROKER_PASSWORD },
      }),
    );
  }
  await waitFor(
    async () => {
      const list = (await dispatcher.get('/api/robots')).body.robots as any[];
      return demoFleet.robots.every((r) => list.some((x) => x.id === robotId(r.serialNumber) && x.connection === 'ONLINE' && x.available && !x.driving));
    },
    { what: 'the three demo robots online and idle', timeoutMs: 20_000 },
  );

  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'] });
  const context = await browser.newContext({ locale: 'en-US', viewport: { width: 1280, height: 900 }, baseURL: gateway.url });
  page = await context.newPage();
  page.on('pageerror', (err) => console.error('page error:', err.message));
});

afterAll(async () => {
  await browser?.close();
  for (const r of robots) await r.close().catch(() => undefined);
  await gateway?.close();
  await broker?.close();
  closeUsers?.();
});

/** The robot marker's centre in map metres (the SVG flips y: map y grows up). */
async function markerPositions(): Promise<Record<string, { x: number; y: number }>> {
  return page.locator('[data-robot-on-map]').evaluateAll((els) =>
    Object.fromEntries(
      els.map((g) => {
        const r = g.querySelector('rect')!;
        return [g.getAttribute('data-robot-on-map'), { x: Number(r.getAttribute('x')) + Number(r.getAttribute('width')) / 2, y: Number(r.getAttribute('y')) + Number(r.getAttribute('height')) / 2 }];
      }),
    ),
  );
}

describe('dispatch board', () => {
  it('logs the dispatcher in to the map with every node of /api/map and the robots with their battery', async () => {
    await page.goto('/');
    await page.getByLabel('User name').fill('dispatcher');
    await page.getByLabel('Password').fill(API_PASSWORD);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('heading', { name: 'Robot dispatch', level: 1 }).waitFor();
    expect(new URL(page.url()).pathname).toBe('/dispatch');

    const map = (await dispatcher.get('/api/map')).body;
    const svg = page.getByRole('img', { name: 'Site map' });
    await svg.waitFor();
    const labels = await svg.locator('g.node text').allTextContents();
    expect(labels.sort()).toEqual(map.nodes.map((n: any) => n.name ?? n.id).sort());
    expect(await svg.locator('line.edge').count()).toBe(map.edges.length);

    for (const r of demoFleet.robots) {
      const row = page.locator(`tr[data-robot="${robotId(r.serialNumber)}"]`);
      await expect.poll(() => row.locator('td').allTextContents()).toEqual(['online', `${r.batteryPct} %`, 'Idle', nodeById.get(r.startNode)!.name]);
      const marker = svg.locator(`[data-robot-on-map="${robotId(r.serialNumber)}"]`);
      expect(await marker.textContent()).toBe(`${r.serialNumber} ${r.batteryPct}%`);
    }
    // Each marker sits on its robot's start node.
    const at = await markerPositions();
    const start = nodeById.get(demoFleet.robots[0]!.startNode)!;
    expect(at[robotId(demoFleet.robots[0]!.serialNumber)]).toEqual({ x: start.x, y: expect.any(Number) });
  });

  it('creates a delivery with the node pickers, shows the robot moving on the map, and completes it after "Received"', async () => {
    // Record every position each marker takes while the task runs (attribute changes on the map).
    await page.evaluate(() => {
      const w = window as unknown as { track: Array<{ id: string; x: string; y: string }> };
      w.track = [];
      new MutationObserver((records) => {
        for (const m of records) {
          const rect = m.target as Element;
          const id = rect.closest('[data-robot-on-map]')?.getAttribute('data-robot-on-map');
          if (id && rect.tagName === 'rect') w.track.push({ id, x: rect.getAttribute('x')!, y: rect.getAttribute('y')! });
        }
      }).observe(document.querySelector('svg')!, { subtree: true, attributes: true, attributeFilter: ['x', 'y'] });
    });

    const form = page.locator('form.new-task');
    await form.getByLabel('Type').selectOption('delivery');
    await form.getByLabel('From').selectOption({ label: 'Pharmacy' });
    await form.getByLabel('To').selectOption({ label: 'Ward 2 (surgery)' });
    await form.getByLabel('What').fill('insulin');
    await form.getByRole('button', { name: 'Create task' }).click();

    const queue = page.getByRole('region', { name: 'Task queue' });
    const item = queue.locator('li[data-task]').filter({ hasText: 'Pharmacy → Ward 2 (surgery) · insulin' });
    await item.waitFor();
    const taskId = (await item.getAttribute('data-task'))!;
    const created = (await dispatcher.get(`/api/tasks/${taskId}`)).body.task;
    expect(created.request).toMatchObject({ type: 'delivery', from: 'pharmacy', to: 'ward-2', what: 'insulin', priority: 50 });

    // At the ward the robot waits for the recipient: the board offers "Received".
    const received = page.locator(`li[data-task="${taskId}"]`).getByRole('button', { name: 'Received' });
    await received.waitFor({ timeout: 30_000 });
    const task = (await dispatcher.get(`/api/tasks/${taskId}`)).body.task;
    const robot = task.robotId as string;
    expect(await page.locator(`li[data-task="${taskId}"]`).textContent()).toContain(robot.split('/')[1]);
    await page.getByRole('img', { name: 'Site map' }).screenshot({ path: join(SHOTS, 'dispatch-map-waiting.png') });
    await page.screenshot({ path: join(SHOTS, 'dispatch-waiting.png'), fullPage: true });
    await received.click();

    const history = page.getByRole('region', { name: 'History' });
    await history.locator(`li[data-task="${taskId}"][data-status="completed"]`).waitFor({ timeout: 30_000 });
    expect(await queue.locator(`li[data-task="${taskId}"]`).count()).toBe(0);
    expect((await dispatcher.get(`/api/tasks/${taskId}`)).body.task.status).toBe('completed');

    // The marker moved from its start through the pharmacy to the ward, with positions between nodes on the way.
    const track = (await page.evaluate(() => (window as unknown as { track: Array<{ id: string; x: string; y: string }> }).track)).filter((p) => p.id === robot);
    const at = await markerPositions();
    const ward = nodeById.get('ward-2')!;
    expect(at[robot]!.x).toBeCloseTo(ward.x, 0);
    const xs = new Set(track.map((p) => p.x));
    console.log(`robot ${robot}: ${track.length} marker moves seen on the map, ${xs.size} distinct x positions`);
    expect(xs.size).toBeGreaterThanOrEqual(4);
    await page.screenshot({ path: join(SHOTS, 'dispatch-completed.png'), fullPage: true });
  });

  it('cancels a second task from the board', async () => {
    const form = page.locator('form.new-task');
    await form.getByLabel('From').selectOption({ label: 'Ward 2 (surgery)' });
    await form.getByLabel('To').selectOption({ label: 'Ward 1 (internal medicine)' });
    await form.getByLabel('What').fill('samples');
    await form.getByRole('button', { name: 'Create task' }).click();
    const item = page.getByRole('region', { name: 'Task queue' }).locator('li[data-task]').filter({ hasText: 'samples' });
    await item.waitFor();
    const taskId = (await item.getAttribute('data-task'))!;
    await item.getByRole('button', { name: 'Cancel task' }).click();
    await page.getByRole('region', { name: 'History' }).locator(`li[data-task="${taskId}"][data-status="cancelled"]`).waitFor();
    expect((await dispatcher.get(`/api/tasks/${taskId}`)).body.task.status).toBe('cancelled');
    // The robots come back to idle: nothing is left driving for a cancelled task.
    await waitFor(async () => ((await dispatcher.get('/api/robots')).body.robots as any[]).every((r) => !r.taskId), { what: 'no robot holding a task', timeoutMs: 30_000 });
    await page.screenshot({ path: join(SHOTS, 'dispatch-cancelled.png'), fullPage: true });
  });
});
