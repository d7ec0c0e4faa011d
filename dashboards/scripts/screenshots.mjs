#!/usr/bin/env node
/* eslint-disable no-console -- a command-line script that prints the files it wrote */
/* global document, requestAnimationFrame, fetch, performance -- the page's globals in evaluated code; Node 20's fetch and performance */
// Screenshots of every page, in both languages, at a laptop (1366x768) and a wall monitor
// (1920x1080), taken with Debian's Chromium against a running gateway (e.g. `npm start`).
//
//   node dashboards/scripts/screenshots.mjs [--url http://127.0.0.1:8080] [--out /tmp/checkpoint-screens]
//     [--pages guard,dispatch,devices,stats,login] [--locales en,zh-CN] [--sizes 1366x768,1920x1080]
//     [--page-timeout 30000] [--full]
//
// Logs in as the demo users (password from CHECKPOINT_DEMO_PASSWORD, default the demo's) once
// each, through the API, and opens every page straight at its path with that session. A page is
// taken once it shows its data (a selector per page, no "Loading…" left, images and fonts
// loaded), never after a fixed sleep: the live feed keeps a request open for ever, so "network
// idle" never comes. Prints the files, where they went and how long it took; exits 1 if a page
// did not settle (the others are still taken). The output is for people to look at and is never
// committed (the README's three images in docs/ are shrunk copies).
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { chromium } from 'playwright-core';

const { values: args } = parseArgs({
  options: {
    url: { type: 'string', default: `http://127.0.0.1:${process.env.CHECKPOINT_HTTP_PORT ?? 8080}` },
    out: { type: 'string', default: '/tmp/checkpoint-screens' },
    chromium: { type: 'string', default: '/usr/bin/chromium' },
    pages: { type: 'string', default: 'guard,dispatch,devices,stats,login' },
    locales: { type: 'string', default: 'en,zh-CN' },
    sizes: { type: 'string', default: '1366x768,1920x1080' },
    'page-timeout': { type: 'string', default: '30000' },
    full: { type: 'boolean', default: false },
  },
});
const password = process.env.CHECKPOINT_DEMO_PASSWORD ?? 'checkpoint-demo';
const baseUrl = new URL(args.url).origin;

/** Each page, the demo user who opens it, and what shows that its data is on screen. */
const ALL_PAGES = {
  guard: { user: 'guard', ready: '.state-banner:not([data-state="loading"])' },
  dispatch: { user: 'dispatcher', ready: '[data-robot-on-map], [data-fleet], #main [role="alert"]' },
  devices: { user: 'engineer', ready: '[data-device], #main [role="alert"]' },
  stats: { user: 'guard', ready: '.stats h2, .stats > p:not(:empty)' },
  login: { user: null, ready: 'input[type="password"]' },
};
const LOADING = ['Loading…', '加载中…'];

const list = (s) => s.split(',').map((x) => x.trim()).filter(Boolean);
const pages = list(args.pages).map((name) => {
  if (!(name in ALL_PAGES)) throw new Error(`--pages: unknown page "${name}" (known: ${Object.keys(ALL_PAGES).join(', ')})`);
  return { name, ...ALL_PAGES[name] };
});
const locales = list(args.locales).map((l) => {
  if (!['en', 'zh-CN'].includes(l)) throw new Error(`--locales: unknown language "${l}" (known: en, zh-CN)`);
  return l;
});
const sizes = list(args.sizes).map((s) => {
  const m = /^(\d+)x(\d+)$/.exec(s);
  if (!m) throw new Error(`--sizes: "${s}" is not WIDTHxHEIGHT`);
  return { name: s, width: Number(m[1]), height: Number(m[2]) };
});
const pageTimeoutMs = Number(args['page-timeout']);
if (!(pageTimeoutMs > 0)) throw new Error(`--page-timeout: "${args['page-timeout']}" is not a positive number of milliseconds`);

/** One session per demo user, through the API (what the login form does), reused for every page. */
async function loginAs(user) {
  const res = await fetch(`${baseUrl}/api/auth/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username: user, password }),
  }).catch((err) => {
    throw new Error(`cannot reach the gateway at ${baseUrl} (${err.cause?.code ?? err.message}); start it first, e.g. npm start`);
  });
  if (!res.ok) throw new Error(`login as "${user}" at ${baseUrl} refused: ${res.status} ${await res.text()}`);
  const body = await res.json();
  return JSON.stringify({ token: body.token, user: body.user, role: body.role, expiresAt: body.expiresAt });
}

/** Resolves once the page shows its data: the ready selector, no "Loading…", images and fonts in. */
async function settle(page, ready) {
  await page.waitForSelector(ready, { state: 'visible', timeout: pageTimeoutMs });
  await page.waitForFunction(
    (loading) => {
      const main = document.querySelector('#main') ?? document.body;
      const busy = [...main.querySelectorAll('p')].some((p) => loading.includes(p.textContent?.trim() ?? ''));
      const images = [...document.images].every((img) => img.complete);
      return !busy && images && document.fonts.status === 'loaded';
    },
    LOADING,
    { timeout: pageTimeoutMs, polling: 100 },
  );
  // Two frames, so what was just rendered is painted.
  await page.evaluate(() => new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve))));
}

const started = performance.now();
mkdirSync(args.out, { recursive: true });
const sessions = new Map();
for (const p of pages) if (p.user && !sessions.has(p.user)) sessions.set(p.user, await loginAs(p.user));

const browser = await chromium.launch({ executablePath: args.chromium, headless: true, args: ['--no-sandbox', '--disable-gpu', '--no-first-run'] });
const written = [];
const failed = [];
try {
  for (const locale of locales) {
    for (const size of sizes) {
      for (const p of pages) {
        const shotStarted = performance.now();
        const file = join(args.out, `${p.name}-${locale}-${size.name}.png`);
        // The language the user chose wins over the browser's; the session is the one the login form would store.
        const localStorage = [{ name: 'checkpoint.locale', value: locale }];
        if (p.user) localStorage.push({ name: 'checkpoint.session', value: sessions.get(p.user) });
        const context = await browser.newContext({
          locale,
          viewport: { width: size.width, height: size.height },
          baseURL: baseUrl,
          reducedMotion: 'reduce',
          storageState: { cookies: [], origins: [{ origin: baseUrl, localStorage }] },
        });
        try {
          const page = await context.newPage();
          page.setDefaultTimeout(pageTimeoutMs);
          await page.goto(`/${p.name}`, { waitUntil: 'domcontentloaded' });
          await settle(page, p.ready);
          await page.screenshot({ path: file, fullPage: args.full, animations: 'disabled', caret: 'hide' });
          written.push(file);
          console.log(`${file} (${Math.round(performance.now() - shotStarted)} ms)`);
        } catch (err) {
          failed.push(`${p.name} ${locale} ${size.name}: ${err.message.split('\n')[0]}`);
          console.error(`FAILED ${p.name} ${locale} ${size.name} after ${Math.round(performance.now() - shotStarted)} ms: ${err.message.split('\n')[0]}`);
        } finally {
          await context.close();
        }
      }
    }
  }
} finally {
  await browser.close();
}
const seconds = ((performance.now() - started) / 1000).toFixed(1);
console.log(`${written.length} screenshots in ${args.out} in ${seconds} s${failed.length ? `; ${failed.length} failed:\n  ${failed.join('\n  ')}` : ''}`);
process.exitCode = failed.length ? 1 : 0;
