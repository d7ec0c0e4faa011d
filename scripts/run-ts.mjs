#!/usr/bin/env node
// Run a TypeScript bench script from source, the way vitest resolves the workspaces (export
// condition `source`), so benchmarks need no build step. Node 20 cannot strip types itself; vite
// (already installed with vitest) transforms the TS and leaves node_modules to Node.
// Usage: node scripts/run-ts.mjs edge-agent/bench/vision-vs-opencv.ts [args...]  (paths from the cwd)
import path from 'node:path';
import { runnerImport } from 'vite';

const [script, ...args] = process.argv.slice(2);
if (!script) {
  console.error('usage: node run-ts.mjs <script.ts> [args...]');
  process.exit(2);
}
process.argv = [process.argv[0], path.resolve(script), ...args];
await runnerImport(path.resolve(script), {
  configFile: false,
  logLevel: 'error',
  resolve: { conditions: ['source'] },
  ssr: { resolve: { conditions: ['source'], externalConditions: ['source'] } },
});
