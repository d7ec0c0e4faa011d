#!/usr/bin/env node
/* eslint-disable no-console -- a command-line script that prints the files it wrote */
/* global localStorage, history, dispatchEvent, PopStateEvent -- evaluated in the browser page */
// Screenshots of every page, in both languages, at a laptop (1366x768) and a wall monitor
// (1920x1080), taken with Debian's Chromium against a running gateway (e.g. `npm start`).
//
//   node dashboards/scripts/screenshots.mjs [--url http://127.0.0.1:8080] [--out /tmp/checkpoint-screens]
//
// Logs in as the demo users (password from CHECKPOINT_DEMO_PASSWORD, default the demo's). The
// output is for people to look at; it is never committed (the README's three images are copies).
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { chromium } from 'playwright-core';

const { values: args } = parseArgs({
  options: {
    url: { type: 'string', default: `http://127.0.0.1:${process.env.CHECKPOINT_HTTP_PORT ?? 8080}` },
    out: { type: 'string', default: '/tmp/checkpoint-screens' },
    chromium: { type: 'string', default: '/usr/bin/chromium' },
    full: { type: 'boolean', default: false, description: 'whole page, not just the viewport' },
  },
});
const password = process.env.CHECKPOINT_DEMO_PASSWORD ?? 'checkpoint-demo';
const PAGES = [
  { path: '/guard', user: 'guard' },
  { path: '/dispatch', user: 'dispatcher' },
  { path: '/devices', user: 'engineer' },
  { path: '/stats', user: 'guard' },
  { path: '/login', user: null },
];
const SIZES = [
  { name: '1366x768', width: 1366, height: 768 },
  { name: '1920x1080', width: 1920, height: 1080 },
];
const LOCALES = ['en', 'zh-CN'];

mkdirSync(args.out, { recursive: true });
const browser = await chromium.launch({ executablePath: args.chromium, headless: true, args: ['--no-sandbox', '--disable-gpu', '--no-first-run'] });
const written = [];
try {
  for (const locale of LOCALES) {
    for (const size of SIZES) {
      for (const p of PAGES) {
        const context = await browser.newContext({ locale, viewport: { width: size.width, height: size.height }, baseURL: args.url });
        // The language the user chose wins over the browser's: set it like the switch does.
        await context.addInitScript((l) => localStorage.setItem('checkpoint.locale', l), locale);
        const page = await context.newPage();
        await page.goto('/');
        if (p.user) {
          await page.locator('input[autocomplete="username"], input[name="username"]').first().fill(p.user);
          await page.locator('input[type="password"]').fill(password);
          await page.locator('form button[type="submit"]').click();
          await page.getByRole('navigation').waitFor();
          await page.evaluate((path) => {
            history.pushState(null, '', path);
            dispatchEvent(new PopStateEvent('popstate'));
          }, p.path);
          // Let the page load its data and the live feed settle.
          await page.waitForLoadState('networkidle').catch(() => undefined);
          await page.waitForTimeout(2500);
        }
        const file = join(args.out, `${p.path.slice(1)}-${locale}-${size.name}.png`);
        await page.screenshot({ path: file, fullPage: args.full });
        written.push(file);
        await context.close();
      }
    }
  }
} finally {
  await browser.close();
}
console.log(written.join('\n'));
