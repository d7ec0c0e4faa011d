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
import { graphOf, routeThrough } from '../src/eta.js';

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
  await gateway.users.add({ name: 'guard', role: 'guard' }, API_PASSWORD);
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
      // And every ETA the board shows (metres and seconds left, and its words).
      const e = window as unknown as { etas: Array<{ task: string; m: number; s: number; text: string }> };
      e.etas = [];
      const seen = () => {
        for (const el of document.querySelectorAll('.task-eta')) {
          const task = el.closest('[data-task]')!.getAttribute('data-task')!;
          const rec = { task, m: Number(el.getAttribute('data-eta-m')), s: Number(el.getAttribute('data-eta-s')), text: el.textContent ?? '' };
          const last = e.etas.filter((x) => x.task === task).at(-1);
          if (!last || last.m !== rec.m || last.text !== rec.text) e.etas.push(rec);
        }
      };
      new MutationObserver(seen).observe(document.body, { subtree: true, childList: true, attributes: true, characterData: true });
    });

    const form = page.locator('form.new-task');
    await form.getByLabel('Type').selectOption('delivery');
    await form.getByLabel('From').selectOption({ label: 'Pharmacy' });
    await form.getByLabel('To').selectOption({ label: 'Ward 2 (surgery)' });
    await form.getByLabel('What').fill('insulin');
    await form.getByRole('button', { name: 'Create task' }).click();
    // The form is cleared once the gateway took the task: pressing again makes no duplicate.
    await form.getByText('Task created.').waitFor();
    expect(await form.getByLabel('What').inputValue()).toBe('');
    expect(await form.getByLabel('From').inputValue()).toBe('');

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

    // The ETA: the route still ahead on the map at the robot's factsheet speed (1 m/s), counting down.
    const etas = (await page.evaluate(() => (window as unknown as { etas: Array<{ task: string; m: number; s: number; text: string }> }).etas)).filter((e) => e.task === taskId);
    console.log(`ETAs seen: ${etas.map((e) => `${e.m} m/${e.s} s`).join(', ')}`);
    const start = demoFleet.robots.find((r) => robotId(r.serialNumber) === robot)!.startNode;
    const map = (await dispatcher.get('/api/map')).body;
    const whole = routeThrough(graphOf(map), start, ['pharmacy', 'ward-2'], 1)!.lengthM;
    expect(etas.length).toBeGreaterThanOrEqual(1);
    for (const e of etas) {
      expect(e.text).toMatch(/^arrives at Ward 2 \(surgery\) about \d\d:\d\d:\d\d \(in (\d+ s|\d+ min)/);
      expect(e.m).toBeGreaterThan(0);
      expect(e.m).toBeLessThanOrEqual(Math.round(whole));
      expect(Math.abs(e.s - e.m)).toBeLessThanOrEqual(1); // 1 m/s from the factsheet
    }
    // Seen while the robot drove: never going up, and below the whole route by the end.
    for (let i = 1; i < etas.length; i++) expect(etas[i]!.m).toBeLessThanOrEqual(etas[i - 1]!.m + 1);

    // What happened, in words and with times: created, given to the robot, started, received, completed.
    const done = history.locator(`li[data-task="${taskId}"]`);
    await done.locator('summary').click();
    expect(await done.locator('[data-history]').evaluateAll((els) => els.map((e) => e.getAttribute('data-history')))).toEqual(['created_by', 'assigned', 'underway', 'confirmed_received', 'completed']);
    const serial = robot.split('/')[1]!;
    expect(await done.locator('[data-history="assigned"]').textContent()).toMatch(new RegExp(`^\\d\\d:\\d\\d:\\d\\d Given to robot ${serial}$`));
    expect(await done.locator('[data-history="confirmed_received"]').textContent()).toMatch(/dispatcher confirmed receipt$/);
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
    // Nothing happens before the dispatcher confirms.
    await item.getByText('Cancel this task?').waitFor();
    expect((await dispatcher.get(`/api/tasks/${taskId}`)).body.task.status).not.toBe('cancelled');
    await item.getByRole('button', { name: 'Yes, cancel it' }).click();
    await page.getByRole('region', { name: 'History' }).locator(`li[data-task="${taskId}"][data-status="cancelled"]`).waitFor();
    expect((await dispatcher.get(`/api/tasks/${taskId}`)).body.task.status).toBe('cancelled');
    // The robots come back to idle: nothing is left driving for a cancelled task.
    await waitFor(async () => ((await dispatcher.get('/api/robots')).body.robots as any[]).every((r) => !r.taskId), { what: 'no robot holding a task', timeoutMs: 30_000 });
    // And none is left with an error: after a cancel the gateway must not send the robot a new
    // (parking) order before it has wound the cancelled one down — the robot would refuse it
    // ("still executing order …") and show that error until its next order.
    await waitFor(async () => ((await dispatcher.get('/api/robots')).body.robots as any[]).every((r) => !r.driving), { what: 'robots standing still', timeoutMs: 30_000 });
    const errors = ((await dispatcher.get('/api/robots')).body.robots as any[]).flatMap((r) => r.errors.map((e: any) => `${r.serialNumber}: ${e.errorType} ${e.errorDescription ?? ''}`));
    expect(errors).toEqual([]);
    await page.screenshot({ path: join(SHOTS, 'dispatch-cancelled.png'), fullPage: true });
  });

  it('draws every map label without overlapping another one (measured in the page), in both languages', async () => {
    const overlaps = async () =>
      page.locator('svg [data-label]').evaluateAll((els) => {
        const boxes = els.map((e) => ({ id: e.getAttribute('data-label')!, r: e.getBoundingClientRect() }));
        const out: string[] = [];
        for (let i = 0; i < boxes.length; i++)
          for (let j = i + 1; j < boxes.length; j++) {
            const a = boxes[i]!.r;
            const b = boxes[j]!.r;
            const w = Math.min(a.right, b.right) - Math.max(a.left, b.left);
            const h = Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top);
            if (w > 0.5 && h > 0.5) out.push(`${boxes[i]!.id} / ${boxes[j]!.id}`);
          }
        return { n: boxes.length, out };
      });
    const en = await overlaps();
    expect(en.n).toBe(demoFleet.map.nodes.length + demoFleet.robots.length);
    expect(en.out).toEqual([]);
    // The names come from the map file in the page's language.
    await page.getByLabel('Language').selectOption('zh-CN');
    await page.locator('svg [data-label="node:pharmacy"]').getByText('药房').waitFor();
    const zh = await overlaps();
    expect(zh.out).toEqual([]);
    await page.locator('figure.map svg').screenshot({ path: join(SHOTS, 'dispatch-map-zh-CN.png') });
    // The task history in Chinese too (told from its events, not translated from the gateway's text).
    const finished = page.locator('li[data-task][data-status="completed"]').first();
    const details = finished.locator('details.task-history');
    if ((await details.getAttribute('open')) === null) await details.locator('summary').click();
    const lines = await finished.locator('[data-history]').allTextContents();
    expect(lines[0]).toMatch(/^\d\d:\d\d:\d\d 由 dispatcher 创建$/);
    expect(lines.at(-1)).toMatch(/^\d\d:\d\d:\d\d 已完成$/);
    expect(lines.join(' ').replace(/DEL-\d|UV-\d|dispatcher/g, '')).not.toMatch(/[A-Za-z]{3,}/);
    // A robot's error: its kind and level in Chinese, its own description kept as sent and marked.
    const uv = robots.find((r) => r.address.serialNumber === 'UV-1')!;
    uv.inject({ kind: 'error', errorType: 'batteryLow', level: 'WARNING', description: 'battery below 20 %' });
    const row = page.locator(`tr[data-robot="${robotId('UV-1')}"]`);
    await row.locator('[data-error-type="batteryLow"]').waitFor({ timeout: 30_000 });
    const error = row.locator('[data-error-type="batteryLow"]');
    expect(await error.locator('strong').textContent()).toBe('电量低');
    expect(await error.textContent()).toContain('(警告)');
    expect(await error.locator('.original').textContent()).toContain('机器人原文（未翻译）');
    expect(await error.locator('q').textContent()).toBe('battery below 20 %');
    await page.screenshot({ path: join(SHOTS, 'dispatch-zh-CN-error.png'), fullPage: true });
    uv.inject({ kind: 'clear-errors' });
    await row.locator('[data-error-type]').waitFor({ state: 'detached', timeout: 30_000 });
    await page.getByLabel('语言').selectOption('en');
    // And at a laptop's width.
    await page.setViewportSize({ width: 1366, height: 768 });
    await expect.poll(async () => (await overlaps()).out).toEqual([]);
    await page.setViewportSize({ width: 1280, height: 900 });
  });

  it('shows a robot waiting at a gate for "area is clear" to the dispatcher (highlighted) and to the guard, who confirms it', async () => {
    // Created through the form: a disinfection of a zone, urgent.
    const form = page.locator('form.new-task');
    await form.getByLabel('Type').selectOption('disinfection');
    await form.getByLabel('Zone or place').selectOption({ label: 'Zone: Emergency entrance area' });
    await form.getByLabel('Priority').fill('90');
    await form.getByRole('button', { name: 'Create task' }).click();
    await form.getByText('Task created.').waitFor();
    const created = await waitFor(
      async () => ((await dispatcher.get('/api/tasks')).body.tasks as any[]).find((x) => x.type === 'disinfection' && x.request.zone === 'gate-2-area'),
      { what: 'the disinfection task created from the form' },
    );
    expect(created.priority).toBe(90);
    // The dispatcher's board: the task is marked as waiting, the robot's colour and words say so.
    const item = page.locator(`li[data-task="${created.id}"]`);
    await item.locator('.task-wait').waitFor({ timeout: 30_000 });
    expect(await item.getAttribute('class')).toContain('task-waiting');
    const task = (await dispatcher.get(`/api/tasks/${created.id}`)).body.task;
    expect(task.waitingFor).toBe('area_clear');
    await expect.poll(() => page.locator(`tr[data-robot="${task.robotId}"]`).getAttribute('data-state')).toBe('waiting');
    expect(await page.locator(`[data-robot-on-map="${task.robotId}"]`).getAttribute('data-state')).toBe('waiting');
    expect(await page.locator(`tr[data-robot="${task.robotId}"]`).textContent()).toContain('Waiting for "area is clear"');

    // The audible reminder (8 min by default): a second board whose clock is moved on past it.
    // Nothing can be heard headless; the page exposes the reminder's state and counts its chimes.
    // Signed in beforehand (the session a login stores), straight onto the board.
    const login = await fetch(`${gateway.url}/api/auth/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'dispatcher', password: API_PASSWORD }) });
    const session = (await login.json()) as { token: string; user: string; role: string; expiresAt: string };
    const boardContext = await browser.newContext({
      locale: 'en-US',
      viewport: { width: 1280, height: 900 },
      baseURL: gateway.url,
      storageState: { cookies: [], origins: [{ origin: new URL(gateway.url).origin, localStorage: [{ name: 'checkpoint.session', value: JSON.stringify(session) }] }] },
    });
    const board = await boardContext.newPage();
    await board.clock.install();
    await board.goto('/dispatch');
    const boardItem = board.locator(`li[data-task="${created.id}"]`);
    await boardItem.locator('.task-wait').waitFor();
    const reminder = board.locator('.reminder');
    const chimes = () => board.evaluate(() => Number(document.body.dataset.chimes ?? '0'));
    const minutesWaited = async () => Number(/waiting (\d+) min/.exec((await boardItem.locator('.task-wait').textContent()) ?? '')?.[1] ?? 0);
    expect(await reminder.getAttribute('data-reminder')).toBe('none');
    expect(await reminder.getByLabel('Remind when a confirmation waits longer than').inputValue()).toBe('8');
    expect(await chimes()).toBe(0);
    await board.clock.fastForward('08:05');
    await expect.poll(() => reminder.getAttribute('data-reminder')).toBe('sounding');
    expect(await boardItem.getAttribute('data-overdue')).toBe('yes');
    expect(await reminder.getByRole('status').textContent()).toBe('Tasks waiting longer than 8 min for a confirmation: 1');
    await expect.poll(chimes).toBeGreaterThanOrEqual(1);
    // Played through WebAudio, not only counted (headless Chromium here treats the page as already touched, so the
    // AudioContext runs; in a real browser it waits for a touch and the board offers a button meanwhile).
    expect(await board.evaluate(() => Number(document.body.dataset.chimesAudible ?? '0'))).toBe(await chimes());
    // Repeated every 30 s (the default) while the task still waits.
    const beforeRepeat = await chimes();
    await board.clock.fastForward(31_000);
    await expect.poll(chimes).toBeGreaterThan(beforeRepeat);
    // Silenced: the state says so and no chime follows, however long it waits.
    await reminder.getByLabel('Sound').selectOption('off');
    await expect.poll(() => reminder.getAttribute('data-reminder')).toBe('silenced');
    expect(await reminder.getByRole('status').textContent()).toContain('reminder sound off');
    const silenced = await chimes();
    await board.clock.fastForward('02:00');
    await expect.poll(minutesWaited).toBeGreaterThanOrEqual(10);
    expect(await chimes()).toBe(silenced);
    await board.screenshot({ path: join(SHOTS, 'dispatch-reminder.png'), fullPage: true });

    // The guard at gate-2 sees it on the guard screen, with how long it has waited.
    const guardContext = await browser.newContext({ locale: 'en-US', viewport: { width: 1366, height: 768 }, baseURL: gateway.url });
    const guard = await guardContext.newPage();
    await guard.goto('/');
    await guard.getByLabel('User name').fill('guard');
    await guard.getByLabel('Password').fill(API_PASSWORD);
    await guard.getByRole('button', { name: 'Sign in' }).click();
    const pending = guard.locator(`[data-gate-task="${created.id}"]`);
    await pending.waitFor();
    expect(await pending.textContent()).toMatch(/Robot UV-1 waits at gate-2 \(Disinfection\) until the area is clear · waiting \d+ s/);
    await guard.screenshot({ path: join(SHOTS, 'guard-gate-task.png') });
    await pending.getByRole('button', { name: 'Area is clear' }).click();
    await pending.waitFor({ state: 'detached' });
    const after = (await dispatcher.get(`/api/tasks/${created.id}`)).body.task;
    expect(after.confirmations).toEqual([expect.objectContaining({ kind: 'area_clear', by: 'guard' })]);
    expect(after.waitingFor).toBe(null);
    // Confirmed: the reminder has nothing left to remind of.
    await expect.poll(() => reminder.getAttribute('data-reminder')).toBe('none');
    expect(await boardItem.getAttribute('data-overdue')).toBe(null);
    await boardContext.close();
    // The guard cannot confirm anything else (a task that does not wait at a gate).
    const other = (await dispatcher.post('/api/tasks', { type: 'charge', priority: 10 })).body.task;
    const guardApi = await ApiClient.login(gateway.url, 'guard');
    expect((await guardApi.post(`/api/gate-tasks/${other.id}/area-clear`)).status).toBe(404);
    expect((await guardApi.get('/api/tasks')).status).toBe(403);
    await guardContext.close();
  });

  it('creates a patrol and a charge from the form as asked, and cancels both from the board', async () => {
    const form = page.locator('form.new-task');
    const created = async (type: string, before: Set<string>) =>
      waitFor(async () => ((await dispatcher.get('/api/tasks')).body.tasks as any[]).find((x) => x.type === type && !before.has(x.id)), { what: `the ${type} task created from the form` });
    const known = new Set(((await dispatcher.get('/api/tasks')).body.tasks as any[]).map((x) => x.id as string));

    await form.getByLabel('Type').selectOption('patrol');
    await form.getByLabel('Ward 1 (internal medicine)').check();
    await form.getByLabel('Ward 3 (isolation)').check();
    await form.getByRole('button', { name: 'Create task' }).click();
    const patrol = await created('patrol', known);
    expect(patrol.request).toMatchObject({ type: 'patrol', nodes: ['ward-1', 'ward-3'], priority: 50 });
    // Cleared: nothing stays ticked for a second patrol.
    await expect.poll(() => form.getByLabel('Ward 1 (internal medicine)').isChecked()).toBe(false);

    await form.getByLabel('Type').selectOption('charge');
    await form.getByLabel('Charger').selectOption({ label: 'Charger 2' });
    await form.getByRole('button', { name: 'Create task' }).click();
    const charge = await created('charge', known);
    expect(charge.request).toMatchObject({ type: 'charge', charger: 'charger-2' });

    for (const task of [patrol, charge]) {
      const item = page.locator(`li[data-task="${task.id}"]`);
      await item.getByRole('button', { name: 'Cancel task' }).click();
      await item.getByRole('button', { name: 'Yes, cancel it' }).click();
      await page.getByRole('region', { name: 'History' }).locator(`li[data-task="${task.id}"][data-status="cancelled"]`).waitFor({ timeout: 15_000 });
      expect((await dispatcher.get(`/api/tasks/${task.id}`)).body.task.status).toBe('cancelled');
    }
  });
});
