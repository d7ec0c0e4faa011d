/**
 * Two gateway processes on one PostgreSQL and one broker (both subscribed to every checkpoint
 * topic: each stores what it receives, a screening id is stored once). The first leads the
 * once-only jobs, the second follows; killed with SIGKILL, the leader is replaced within seconds
 * (measured), escalation goes on, every alert is escalated exactly once (audit), and no screening
 * is lost.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, logTail, makeTempDir, spawnServer, startPostgres, waitFor, type PostgresServer, type ServerProcess } from '@checkpoint/test-support';
import { connectEdge, gatewayConfig, makeScreening, publishScreenings, startTestMosquitto } from './helpers/world.js';

const REPO = fileURLToPath(new URL('../../', import.meta.url));

let broker: { url: string; close(): Promise<void> };
let postgres: PostgresServer;
let pool: pg.Pool;
const gateways: ServerProcess[] = [];
beforeAll(async () => {
  [broker, postgres] = await Promise.all([startTestMosquitto(['gate-1']), startPostgres()]);
  pool = new pg.Pool({ connectionString: postgres.url, max: 2 });
}, 120_000);
afterAll(async () => {
  await Promise.all(gateways.map((g) => g.stop({ signal: 'SIGKILL' })));
  await pool?.end();
  await broker?.close();
  await postgres?.stop();
});

const count = async (sql: string, params: unknown[] = []) => Number((await pool.query<{ n: string }>(sql, params)).rows[0]!.n);

describe('two gateways on one PostgreSQL', () => {
  it('the leader killed with SIGKILL: the other leads within seconds, escalates each alert once, and no screening is lost', async () => {
    const dir = makeTempDir('gw-pg-pair');
    const start = async (name: string) => {
      const port = await freePort();
      const dataDir = join(dir, name);
      const configFile = join(dir, `${name}.json`);
      const { mqtt, ...rest } = gatewayConfig({ dataDir, mqttUrl: broker.url });
      // Leadership timings left at their defaults (store.postgres.leaderRetryMs/leaderCheckMs 1000): the hand-over measured is what an operator gets.
      writeFileSync(
        configFile,
        JSON.stringify({ ...rest, mqtt: { ...mqtt, clientId: `gw-pair-${name}` }, alerts: { escalateAfterS: 2, checkIntervalMs: 200 }, store: { backend: 'postgres', postgres: { url: postgres.url } } }),
      );
      const logFile = join(dir, `${name}.log`);
      const proc = spawnServer('node', [join(REPO, 'scripts/run-ts.mjs'), 'gateway/test/fixtures/gateway-process.ts', 'run', '--config', configFile], {
        logFile,
        env: { ...process.env, CHECKPOINT_HTTP_PORT: String(port), CHECKPOINT_LOG_LEVEL: 'info' },
        cwd: REPO,
      });
      gateways.push(proc);
      const role = async () => {
        const res = await fetch(`http://127.0.0.1:${port}/healthz`);
        return res.status === 200 ? ((await res.json()) as { store: { backend: string; role: string } }).store.role : 'unhealthy';
      };
      const leaderGauge = async () => {
        const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
        return Number(text.split('\n').find((l) => l.startsWith('checkpoint_gateway_leader '))?.split(' ')[1]);
      };
      await waitFor(async () => (await role().catch(() => 'down')) !== 'down' && (await role()) !== 'unhealthy', { what: `${name} healthy\n${logTail(logFile)}`, timeoutMs: 60_000 });
      return { proc, role, leaderGauge, logFile };
    };

    const a = await start('a');
    await waitFor(async () => (await a.role()) === 'leader', { what: 'a leading' });
    const b = await start('b');
    await waitFor(async () => (await b.role()) === 'follower', { what: 'b following' });
    expect(await a.leaderGauge()).toBe(1);
    expect(await b.leaderGauge()).toBe(0);

    const edge = await connectEdge(broker.url, 'gate-1');
    const escalations = async (screeningIds: string[]) =>
      (
        await pool.query<{ screening_id: string; n: string }>(
          `SELECT a.screening_id, count(au.seq) AS n FROM alerts a LEFT JOIN audit au ON au.action = 'alert.escalated' AND au.target = a.id WHERE a.screening_id = ANY($1) GROUP BY a.screening_id`,
          [screeningIds],
        )
      ).rows;
    const allEscalatedOnce = async (ids: string[]) => {
      const rows = await escalations(ids);
      return rows.length === ids.length && rows.every((r) => Number(r.n) === 1);
    };

    // Before the kill: a leads, so a escalates.
    const before = Array.from({ length: 5 }, (_, i) => makeScreening({ trackId: 1000 + i, decision: 'secondary_check' }));
    await publishScreenings(edge, before);
    await waitFor(() => allEscalatedOnce(before.map((s) => s.id)), { what: 'the first alerts escalated by a', timeoutMs: 30_000 });

    // A stream of screenings is under way when a dies; the referrals in it come due after the kill.
    const stream = Array.from({ length: 1000 }, (_, i) => makeScreening({ trackId: i, decision: i % 100 === 0 ? 'secondary_check' : 'pass' }));
    const publishing = publishScreenings(edge, stream, 4);
    await waitFor(async () => (await count('SELECT count(*) AS n FROM screenings')) >= 200, { what: '200 of the stream stored', intervalMs: 5 });
    const killedAt = Date.now();
    await a.proc.stop({ signal: 'SIGKILL' });
    await waitFor(async () => (await b.role()) === 'leader', { what: `b leading after the kill\n${logTail(b.logFile)}`, timeoutMs: 30_000, intervalMs: 10 });
    const handOverMs = Date.now() - killedAt;
    console.log(`leader killed with SIGKILL: the other gateway led ${handOverMs} ms later (store.postgres.leaderRetryMs 1000, leaderCheckMs 1000)`);
    expect(handOverMs).toBeLessThan(10_000);
    expect(await b.leaderGauge()).toBe(1);

    await publishing;
    await edge.endAsync();
    const all = [...before, ...stream];
    await waitFor(async () => (await count('SELECT count(*) AS n FROM screenings WHERE id = ANY($1)', [all.map((s) => s.id)])) === all.length, { what: 'every screening stored', timeoutMs: 60_000 });
    expect(await count('SELECT count(*) AS n FROM screenings')).toBe(all.length);
    const referrals = all.filter((s) => s.decision === 'secondary_check').map((s) => s.id);
    expect(referrals).toHaveLength(15);
    await waitFor(() => allEscalatedOnce(referrals), { what: `every alert escalated, by b after the kill\n${logTail(b.logFile)}`, timeoutMs: 30_000 });
    // Exactly once each, and one alert per referral (both gateways received every message).
    expect(await count(`SELECT count(*) AS n FROM audit WHERE action = 'alert.escalated'`)).toBe(15);
    expect(await count('SELECT count(*) AS n FROM alerts')).toBe(15);
    // The spool (shared) drained by the new leader.
    await waitFor(async () => (await count('SELECT count(*) AS n FROM series_spool')) === 0, { what: 'spool drained by b', timeoutMs: 30_000 });
  }, 300_000);
});
