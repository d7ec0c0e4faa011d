/**
 * Two gateways' once-only work on one PostgreSQL, each its own process (test/fixtures/cluster-node.ts:
 * leadership and alert escalation while leading): the leader escalates; killed with SIGKILL, the
 * other takes over within seconds and escalates what comes due after; every alert is escalated
 * exactly once, by one of them.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { logTail, makeTempDir, spawnServer, startPostgres, waitFor, type PostgresServer, type ServerProcess } from '@checkpoint/test-support';
import { migratePostgres } from '../src/store/postgres/migrations.js';
import { createPostgresOperationalStore } from '../src/store/postgres/operational.js';
import { makeScreening } from './helpers/world.js';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const ESCALATE_AFTER_MS = 1_000;

let server: PostgresServer;
let pool: pg.Pool;
const nodes: ServerProcess[] = [];
beforeAll(async () => {
  server = await startPostgres();
  pool = new pg.Pool({ host: server.socketDir, port: server.port, user: server.user, database: server.database, max: 4 });
  await migratePostgres(pool);
}, 90_000);
afterAll(async () => {
  await Promise.all(nodes.map((n) => n.stop({ signal: 'SIGKILL' })));
  await pool?.end();
  await server?.stop();
});

describe('two gateways on one PostgreSQL', () => {
  it('the leader killed with SIGKILL: the other takes over escalation, each alert escalated once', async () => {
    const dir = makeTempDir('gw-cluster');
    const connection = JSON.stringify({ host: server.socketDir, port: server.port, user: server.user, database: server.database });
    const log = (name: string) => join(dir, `${name}.log`);
    const lines = (name: string) => readFileSync(log(name), 'utf8').split('\n');
    const start = (name: string) => {
      const node = spawnServer('node', [join(REPO, 'scripts/run-ts.mjs'), 'gateway/test/fixtures/cluster-node.ts', connection, name, String(ESCALATE_AFTER_MS)], { logFile: log(name), cwd: REPO });
      nodes.push(node);
      return node;
    };
    const a = start('node-a');
    await waitFor(() => lines('node-a').includes('role leader'), { what: `node-a leading\n${logTail(log('node-a'))}`, timeoutMs: 60_000 });
    start('node-b');
    await waitFor(() => lines('node-b').includes('role follower'), { what: `node-b following\n${logTail(log('node-b'))}`, timeoutMs: 60_000 });

    let n = 0;
    const ingest = createPostgresOperationalStore(pool, { escalateAfterMs: ESCALATE_AFTER_MS, invalidStormCount: 5, invalidStormWindowMs: 60_000 }, () => `ingest-${++n}`);
    const openAlerts = async (count: number) => {
      const ids: string[] = [];
      for (let i = 0; i < count; i++) {
        const s = makeScreening({ checkpoint: `gate-${i}`, decision: 'secondary_check', ts: new Date().toISOString() });
        ids.push((await ingest.ingestScreening(s, Date.now())).alertChanges[0]!.alert.id);
      }
      return ids;
    };
    const escalatedBy = (name: string) => lines(name).filter((l) => l.startsWith('escalated ')).map((l) => l.slice('escalated '.length));
    const escalations = async () =>
      (await pool.query<{ target: string; n: string }>(`SELECT target, count(*) AS n FROM audit WHERE action = 'alert.escalated' GROUP BY target`)).rows;

    const before = await openAlerts(10);
    await waitFor(() => before.every((id) => escalatedBy('node-a').includes(id)), { what: `node-a escalating the first 10\n${logTail(log('node-a'))}`, timeoutMs: 60_000 });
    expect(escalatedBy('node-b')).toEqual([]);

    const killedAt = Date.now();
    await a.stop({ signal: 'SIGKILL' });
    const after = await openAlerts(10);
    await waitFor(() => lines('node-b').includes('role leader'), { what: `node-b leading\n${logTail(log('node-b'))}`, timeoutMs: 30_000, intervalMs: 10 });
    const failoverMs = Date.now() - killedAt;
    await waitFor(() => after.every((id) => escalatedBy('node-b').includes(id)), { what: `node-b escalating the 10 opened after the kill\n${logTail(log('node-b'))}`, timeoutMs: 60_000 });
    console.log(`leader SIGKILLed: the other led ${failoverMs} ms later (retries every 250 ms)`);

    const rows = await escalations();
    expect(rows.map((r) => r.target).sort()).toEqual([...before, ...after].sort());
    expect(rows.every((r) => r.n === '1')).toBe(true);
    expect(escalatedBy('node-b').filter((id) => before.includes(id))).toEqual([]);
  }, 180_000);
});
