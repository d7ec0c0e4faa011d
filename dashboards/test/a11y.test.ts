/* eslint-disable @typescript-eslint/no-explicit-any -- JSON bodies of API responses, CDP answers */
/**
 * Accessibility basics of every page (login, guard, dispatch, devices, statistics) in a real
 * browser (Debian's Chromium, playwright-core) against a real gateway on our broker, with an edge
 * publishing screenings and a simulated robot on the demo hospital's map:
 *   - every interactive control has an accessible name, as Chromium's own accessibility tree
 *     computes it (CDP Accessibility.getFullAXTree);
 *   - the main flows work from the keyboard alone (log in; Tab to an acknowledgement and press
 *     Enter), and the focused control shows a focus indicator;
 *   - text contrast meets WCAG 2.x AA: the computed text colour against the background painted
 *     behind it, ≥ 4.5:1 for normal text and ≥ 3:1 for large text (24 px, or 18.66 px bold).
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MqttClient } from 'mqtt';
import { chromium, type Browser, type Page } from 'playwright-core';
import { build } from 'vite';
import { createBroker, openUserStore, type Broker } from '@checkpoint/broker';
import { createSimulatedRobot, type SimulatedRobot } from '@checkpoint/firmware-bridge';
import { createGateway, demoFleet, type Gateway } from '@checkpoint/gateway';
import { checkpointTopics } from '@checkpoint/protocol';
import { makeTempDir, waitFor } from '@checkpoint/test-support';
import { API_PASSWORD, ApiClient, BROKER_PASSWORD, connectEdge, gatewayConfig, makeScreening } from '../../gateway/test/helpers/world.js';

const CHROMIUM = '/usr/bin/chromium';
const dashboardsRoot = fileURLToPath(new URL('..', import.meta.url));

let broker: Broker;
let closeUsers: () => void;
let gateway: Gateway;
let edge: MqttClient;
let robot: SimulatedRobot;
let browser: Browser;

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} not found: install Debian's chromium (apt-get install -y chromium); the tests never download a browser`);
  const outDir = makeTempDir('a11y-dist');
  await build({ configFile: join(dashboardsRoot, 'vite.config.ts'), logLevel: 'warn', build: { outDir, emptyOutDir: true, sourcemap: false } });
  process.env.CHECKPOINT_DASHBOARDS_DIR = outDir;

  const dir = makeTempDir('a11y-broker');
  const users = openUserStore(join(dir, 'users.sqlite'), { mosquittoHashIterations: 0 });
  closeUsers = () => users.close();
  await users.add({ name: 'gw', role: 'gateway' }, BROKER_PASSWORD);
  await users.add({ name: 'edge-gate-1', role: 'edge', site: 'hq', checkpoint: 'gate-1' }, BROKER_PASSWORD);
  const r = demoFleet.robots[0]!;
  await users.add({ name: 'robot-1', role: 'robot', robot: { manufacturer: r.manufacturer, serialNumber: r.serialNumber } }, BROKER_PASSWORD);
  broker = await createBroker({ config: { dataDir: dir, host: '127.0.0.1', mqtt: { port: 0 }, metrics: { port: null }, logLevel: 'silent', sysIntervalS: 0, persistence: 'memory' }, users });
  const url = `mqtt://127.0.0.1:${broker.ports.mqtt}`;

  gateway = await createGateway(gatewayConfig({ dataDir: makeTempDir('a11y-gw'), mqttUrl: url, fleet: { map: demoFleet.map, rules: demoFleet.rules, tickMs: 200 } }));
  await waitFor(() => gateway.mqttConnected(), { what: 'gateway connected to the broker' });
  for (const role of ['guard', 'dispatcher', 'engineer'] as const) await gateway.users.add({ name: role, role }, API_PASSWORD);
  robot = await createSimulatedRobot({ ...r, capabilities: [...r.capabilities], reportMs: 2000, transport: { kind: 'mqtt', url, username: 'robot-1', password: BROKER_PASSWORD } });

  edge = await connectEdge(url, 'gate-1');
  const state = {
    status: 'online',
    ts: new Date().toISOString(),
    site: 'hq',
    checkpoint: 'gate-1',
    versions: { 'edge-agent': '0.1.0' },
    sources: { thermal: { kind: 'sim', status: 'ok' }, visible: { kind: 'sim', status: 'ok' } },
    model: { name: 'masked-face-640', sha256: 'a'.repeat(64) },
    calibration: { reference: 'ok', mode: 'absolute', thresholdC: 37.3, homography: true },
  };
  await edge.publishAsync(checkpointTopics.state(state as any), JSON.stringify(state), { qos: 1, retain: true });
  for (const s of [makeScreening({ trackId: 1 }), makeScreening({ trackId: 2, decision: 'secondary_check', temperatureC: 38.2, reasons: ['elevated_temperature'] })]) {
    await edge.publishAsync(checkpointTopics.screening(s), JSON.stringify(s), { qos: 1 });
  }
  const admin = await ApiClient.login(gateway.url, 'guard');
  await waitFor(async () => ((await admin.get('/api/alerts?status=open')).body.alerts as any[]).length === 1, { what: 'one open alert' });

  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'] });
});

afterAll(async () => {
  await browser?.close();
  await robot?.close().catch(() => undefined);
  await edge?.endAsync();
  await gateway?.close();
  await broker?.close();
  closeUsers?.();
});

async function openPage(): Promise<Page> {
  const context = await browser.newContext({ locale: 'en-US', viewport: { width: 1280, height: 900 }, baseURL: gateway.url });
  const page = await context.newPage();
  page.on('pageerror', (err) => console.error('page error:', err.message));
  return page;
}

async function login(page: Page, user: string): Promise<void> {
  await page.goto('/');
  await page.getByLabel('User name').fill(user);
  await page.getByLabel('Password').fill(API_PASSWORD);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('navigation').waitFor();
}

const INTERACTIVE = new Set(['button', 'link', 'textbox', 'combobox', 'listbox', 'checkbox', 'radio', 'spinbutton', 'slider', 'switch', 'searchbox', 'menuitem', 'tab', 'option']);

/** Interactive nodes of Chromium's accessibility tree without a computed name. */
async function unnamedControls(page: Page): Promise<string[]> {
  const cdp = await page.context().newCDPSession(page);
  try {
    const { nodes } = (await cdp.send('Accessibility.getFullAXTree')) as { nodes: any[] };
    const controls = nodes.filter((n) => !n.ignored && INTERACTIVE.has(n.role?.value));
    expect(controls.length).toBeGreaterThan(0);
    return controls.filter((n) => !String(n.name?.value ?? '').trim()).map((n) => `${n.role.value} (backend node ${n.backendDOMNodeId})`);
  } finally {
    await cdp.detach();
  }
}

interface ContrastFailure {
  text: string;
  ratio: number;
  needed: number;
  fg: string;
  bg: string;
}

/**
 * Every visible element with its own text: its colour (SVG text: fill) against the first opaque
 * background behind it (semi-transparent layers blended in), with the opacity of its ancestors.
 * Disabled controls are exempt (WCAG 1.4.3).
 */
async function contrastFailures(page: Page): Promise<{ checked: number; failures: ContrastFailure[] }> {
  return page.evaluate(() => {
    type RGBA = [number, number, number, number];
    const parse = (c: string): RGBA => {
      const m = /^rgba?\(([\d.]+),\s*([\d.]+),\s*([\d.]+)(?:,\s*([\d.]+))?\)$/.exec(c);
      if (!m) throw new Error(`colour not in rgb()/rgba(): ${c}`);
      return [Number(m[1]), Number(m[2]), Number(m[3]), m[4] === undefined ? 1 : Number(m[4])];
    };
    const over = (top: RGBA, under: RGBA): RGBA => [0, 1, 2].map((i) => top[i]! * top[3] + under[i]! * (1 - top[3])).concat(1) as RGBA;
    const lum = (c: RGBA) => {
      const [r, g, b] = [c[0], c[1], c[2]].map((v) => {
        const s = v / 255;
        return s <= 0.03928 ? s / 12.92 : ((s + 0.055) / 1.055) ** 2.4;
      });
      return 0.2126 * r! + 0.7152 * g! + 0.0722 * b!;
    };
    const background = (el: Element): RGBA => {
      const layers: RGBA[] = [];
      for (let e: Element | null = el; e; e = e.parentElement) {
        const c = parse(getComputedStyle(e).backgroundColor);
        if (c[3] > 0) layers.push(c);
        if (c[3] >= 1) break;
      }
      return layers.reduceRight<RGBA>((under, top) => over(top, under), [255, 255, 255, 1]);
    };
    const failures: ContrastFailure[] = [];
    let checked = 0;
    for (const el of Array.from(document.body.querySelectorAll('*'))) {
      const own = Array.from(el.childNodes)
        .filter((n) => n.nodeType === Node.TEXT_NODE)
        .map((n) => n.textContent ?? '')
        .join('')
        .trim();
      if (!own) continue;
      const style = getComputedStyle(el);
      const box = el.getBoundingClientRect();
      if (style.visibility !== 'visible' || style.display === 'none' || box.width === 0 || box.height === 0) continue;
      if (el.closest(':disabled, option')) continue;
      let opacity = 1;
      for (let e: Element | null = el; e; e = e.parentElement) opacity *= Number(getComputedStyle(e).opacity);
      const bg = background(el);
      const raw = parse(el instanceof SVGElement ? style.fill : style.color);
      const fg = over([raw[0], raw[1], raw[2], raw[3] * opacity], bg);
      const [l1, l2] = [lum(fg), lum(bg)].sort((a, b) => b - a);
      const ratio = (l1! + 0.05) / (l2! + 0.05);
      const px = parseFloat(style.fontSize);
      const large = px >= 24 || (px >= 18.66 && Number(style.fontWeight) >= 700);
      const needed = large ? 3 : 4.5;
      checked++;
      if (ratio < needed) failures.push({ text: own.slice(0, 40), ratio: Math.round(ratio * 100) / 100, needed, fg: `rgb(${fg.slice(0, 3).map(Math.round).join(',')})`, bg: `rgb(${bg.slice(0, 3).map(Math.round).join(',')})` });
    }
    return { checked, failures };
  });
}

/** Press Tab until the focused element matches `selector` (at most `max` presses); returns the presses. */
async function tabTo(page: Page, selector: string, max = 40): Promise<number> {
  for (let i = 1; i <= max; i++) {
    await page.keyboard.press('Tab');
    if (await page.evaluate((s) => document.activeElement?.matches(s) ?? false, selector)) return i;
  }
  throw new Error(`${selector} not reached with ${max} Tab presses`);
}

/** The focused element draws a focus indicator (outline or box shadow). */
const focusVisible = (page: Page) =>
  page.evaluate(() => {
    const s = getComputedStyle(document.activeElement!);
    return (s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) > 0) || s.boxShadow !== 'none';
  });

/**
 * The focused element's outline against the background it is drawn on (the outline sits outside
 * the element, on its parent's background): WCAG 1.4.11 asks 3:1 for such indicators.
 */
const focusOutlineContrast = (page: Page) =>
  page.evaluate(() => {
    const parse = (c: string) => {
      const m = /^rgba?\(([\d.]+),\s*([\d.]+),\s*([\d.]+)(?:,\s*([\d.]+))?\)$/.exec(c);
      if (!m) throw new Error(`colour not in rgb()/rgba(): ${c}`);
      return [Number(m[1]), Number(m[2]), Number(m[3]), m[4] === undefined ? 1 : Number(m[4])];
    };
    const lum = (c: number[]) => {
      const [r, g, b] = c.slice(0, 3).map((v) => {
        const s = v / 255;
        return s <= 0.03928 ? s / 12.92 : ((s + 0.055) / 1.055) ** 2.4;
      });
      return 0.2126 * r! + 0.7152 * g! + 0.0722 * b!;
    };
    const el = document.activeElement!;
    let bg = [255, 255, 255, 1];
    for (let e = el.parentElement; e; e = e.parentElement) {
      const c = parse(getComputedStyle(e).backgroundColor);
      if (c[3]! >= 1) {
        bg = c;
        break;
      }
    }
    const [l1, l2] = [lum(parse(getComputedStyle(el).outlineColor)), lum(bg)].sort((a, b) => b - a);
    return { what: `${el.tagName.toLowerCase()} "${(el.textContent ?? el.getAttribute('name') ?? '').trim().slice(0, 30)}"`, ratio: Math.round(((l1! + 0.05) / (l2! + 0.05)) * 100) / 100 };
  });

const PAGES: Array<{ name: string; user: string | null; path: string; ready: (page: Page) => Promise<unknown> }> = [
  { name: 'login', user: null, path: '/', ready: (p) => p.getByRole('button', { name: 'Sign in' }).waitFor() },
  { name: 'guard', user: 'guard', path: '/guard', ready: (p) => p.locator('article.card').waitFor() },
  { name: 'statistics', user: 'guard', path: '/stats', ready: (p) => p.locator('tr[data-checkpoint="hq/gate-1"]').waitFor() },
  { name: 'dispatch', user: 'dispatcher', path: '/dispatch', ready: (p) => p.locator('[data-robot-on-map]').waitFor() },
  { name: 'devices', user: 'engineer', path: '/devices', ready: (p) => p.locator('[data-device="hq/gate-1"]').waitFor() },
];

describe('accessibility basics', () => {
  it('the checks find an unnamed control and low-contrast text when there is one', async () => {
    const page = await openPage();
    await page.goto('/');
    await page.getByRole('button', { name: 'Sign in' }).waitFor();
    await page.evaluate(() => {
      document.body.insertAdjacentHTML('beforeend', '<div id="bad"><button type="button"></button><p style="color:#999;background:#fff">grey on white</p></div>');
    });
    expect(await unnamedControls(page)).toHaveLength(1);
    const { failures } = await contrastFailures(page);
    expect(failures).toEqual([{ text: 'grey on white', ratio: 2.85, needed: 4.5, fg: 'rgb(153,153,153)', bg: 'rgb(255,255,255)' }]);
    await page.context().close();
  });

  for (const def of PAGES) {
    it(`${def.name}: every control is named and text contrast passes WCAG AA`, async () => {
      const page = await openPage();
      if (def.user) {
        await login(page, def.user);
        await page.getByRole('navigation').getByRole('link', { name: { guard: 'Guard screen', statistics: 'Statistics', dispatch: 'Dispatch', devices: 'Devices' }[def.name] }).click();
      } else {
        await page.goto(def.path);
      }
      await def.ready(page);
      expect(new URL(page.url()).pathname).toBe(def.path);
      expect(await page.locator('html').getAttribute('lang')).toBe('en');
      expect(await unnamedControls(page)).toEqual([]);
      const { checked, failures } = await contrastFailures(page);
      console.log(`${def.name}: ${checked} text elements checked for contrast`);
      expect(checked).toBeGreaterThan(5);
      expect(failures).toEqual([]);
      await page.context().close();
    });
  }

  it('logs in with the keyboard alone and acknowledges an alert with Tab and Enter', async () => {
    const page = await openPage();
    await page.goto('/');
    await page.getByRole('button', { name: 'Sign in' }).waitFor();
    await tabTo(page, 'input[name="username"]');
    expect(await focusVisible(page)).toBe(true);
    await page.keyboard.type('guard');
    await page.keyboard.press('Tab');
    expect(await page.evaluate(() => document.activeElement?.getAttribute('name'))).toBe('password');
    await page.keyboard.type(API_PASSWORD);
    await page.keyboard.press('Enter');
    await page.getByRole('navigation').waitFor();
    const card = page.locator('article.card');
    await card.waitFor();

    const presses = await tabTo(page, 'article.card button');
    const label = await page.evaluate(() => document.activeElement!.textContent);
    console.log(`first acknowledgement button "${label}" reached with ${presses} Tab presses`);
    expect(await focusVisible(page)).toBe(true);
    await page.keyboard.press('Enter');
    await card.waitFor({ state: 'detached' });
    await page.getByText('Screening normally').waitFor();
    await page.context().close();
  });

  it('shows a focus indicator with 3:1 contrast on every control of the dispatch board and the top bar', async () => {
    const page = await openPage();
    await login(page, 'dispatcher');
    await page.locator('[data-robot-on-map]').waitFor();
    const weak: Array<{ what: string; ratio: number }> = [];
    let seen = 0;
    for (let i = 0; i < 60; i++) {
      await page.keyboard.press('Tab');
      if (await page.evaluate(() => document.activeElement === document.body)) break;
      seen++;
      if (!(await focusVisible(page))) weak.push({ what: (await focusOutlineContrast(page)).what, ratio: 0 });
      const c = await focusOutlineContrast(page);
      if (c.ratio < 3) weak.push(c);
    }
    console.log(`dispatch: ${seen} controls reached with Tab`);
    expect(seen).toBeGreaterThan(8);
    expect(weak).toEqual([]);
    await page.context().close();
  });
});
