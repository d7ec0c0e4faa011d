import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';
import { makeTempDir } from '@checkpoint/test-support';

const repoRoot = fileURLToPath(new URL('../../', import.meta.url));

/** Live (non-zombie) processes whose command line mentions `text`. */
function processesMentioning(text: string): string[] {
  const found: string[] = [];
  for (const pid of readdirSync('/proc').filter((name) => /^\d+$/.test(name))) {
    try {
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
      const state = /^State:\s+(\S)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
      if (cmdline.includes(text) && state !== 'Z') found.push(`${pid}: ${cmdline}`);
    } catch {
      // the process went away while we looked
    }
  }
  return found;
}

it('kills servers and removes their dirs when a failing test forgot to stop them', async () => {
  const report = join(makeTempDir('checkpoint-exit-cleanup'), 'report.json');
  const result = await new Promise<{ code: number | null; output: string }>((resolve) => {
    const child = execFile(
      process.execPath,
      [join(repoRoot, 'node_modules/vitest/vitest.mjs'), 'run', '--config', 'test-support/test/fixtures/vitest.config.ts'],
      { cwd: repoRoot, env: { ...process.env, CHECKPOINT_FIXTURE_REPORT: report, CI: '1' }, timeout: 120_000 },
      (_error, stdout, stderr) => resolve({ code: child.exitCode, output: stdout + stderr }),
    );
  });
  expect(result.output).toContain('failing on purpose');
  expect(result.code).toBe(1);

  const { dirs } = JSON.parse(readFileSync(report, 'utf8')) as { dirs: string[] };
  expect(dirs).toHaveLength(2);
  for (const dir of dirs) {
    expect(processesMentioning(dir)).toEqual([]);
    expect(existsSync(dir)).toBe(false);
  }
});
