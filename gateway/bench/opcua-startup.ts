/**
 * Gateway start-up time and memory with and without the OPC UA server. Each run is a fresh plain
 * Node process on the compiled gateway (run `npx tsc -b gateway` first), so module loading is
 * included and no TypeScript runner inflates the figures:
 *   off  = opcua.enabled false;  cold = OPC UA with an empty data dir (server certificate created);
 *   warm = OPC UA again on that data dir (certificate already there).
 * Time: from process start to createGateway() resolved (HTTP and OPC UA listening).
 * Memory: RSS and heap right after start, and after 10 s idle with a forced GC.
 * Usage (repo root): npx tsc -b gateway && node scripts/run-ts.mjs gateway/bench/opcua-startup.ts [runs=3]
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const dist = new URL('../dist/index.js', import.meta.url);
if (!existsSync(fileURLToPath(dist))) throw new Error(`no compiled gateway at ${fileURLToPath(dist)}: run npx tsc -b gateway first`);

// The measured process: plain Node, compiled code, no broker (start-up only).
const child = `
const [mode, dataDir] = process.argv.slice(1);
const { createGateway } = await import(${JSON.stringify(dist.href)});
const gateway = await createGateway({
  dataDir, logLevel: 'silent', http: { host: '127.0.0.1', port: 0 },
  mqtt: { url: 'mqtt://127.0.0.1:1', reconnectMs: 60000 },
  opcua: { enabled: mode === 'on', port: 0 },
});
const startMs = performance.now();
const atStart = process.memoryUsage();
await new Promise((r) => setTimeout(r, 10000));
globalThis.gc();
const idle = process.memoryUsage();
await gateway.close();
const mb = (b) => b / 2 ** 20;
console.log(JSON.stringify({ startMs, rssMb: mb(atStart.rss), heapMb: mb(atStart.heapUsed), idleRssMb: mb(idle.rss), idleHeapMb: mb(idle.heapUsed) }));
process.exit(0);
`;

type Sample = { startMs: number; rssMb: number; heapMb: number; idleRssMb: number; idleHeapMb: number };
const sample = (mode: 'off' | 'on', dir: string): Sample => {
  const out = execFileSync(process.execPath, ['--expose-gc', '--input-type=module', '-e', child, mode, dir], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  return JSON.parse(out.trim().split('\n').pop()!) as Sample;
};
const out = (line: string) => process.stdout.write(`${line}\n`);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

const runs = Number(process.argv[2] ?? 3);
const results: Record<'off' | 'cold' | 'warm', Sample[]> = { off: [], cold: [], warm: [] };
for (let i = 0; i < runs; i++) {
  const dir = mkdtempSync(join(tmpdir(), 'gw-opcua-bench-'));
  results.off.push(sample('off', join(dir, 'off')));
  results.cold.push(sample('on', join(dir, 'on')));
  results.warm.push(sample('on', join(dir, 'on')));
  rmSync(dir, { recursive: true, force: true });
}
out(`gateway start-up, median of ${runs} fresh processes (Node ${process.version}, ${cpus().length} CPUs, compiled code, no broker)`);
out('variant               start ms   RSS MB   heap MB   idle RSS MB   idle heap MB');
for (const [name, label] of [['off', 'OPC UA off'], ['cold', 'OPC UA, first start'], ['warm', 'OPC UA, restart']] as const) {
  const s = results[name];
  const row = [median(s.map((x) => x.startMs)), median(s.map((x) => x.rssMb)), median(s.map((x) => x.heapMb)), median(s.map((x) => x.idleRssMb)), median(s.map((x) => x.idleHeapMb))];
  out(`${label.padEnd(20)} ${row.map((v, i) => v.toFixed(0).padStart([9, 8, 9, 13, 14][i]!)).join(' ')}`);
}
