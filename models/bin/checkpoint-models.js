#!/usr/bin/env node
/* global AbortController */
// Entry point of `checkpoint-models`; the program is models/src/cli.ts, built to dist by `npm run build`.
import { main } from '../dist/cli.js';

// Ctrl-C aborts a running fetch so that its temp file is removed before the process exits.
const controller = new AbortController();
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, () => controller.abort());
}
const code = await main(process.argv.slice(2), { signal: controller.signal });
process.exitCode = controller.signal.aborted ? 130 : code;
