/**
 * Every table has a retention (README "Retention" lists them all, checked against the real
 * schema), and the retention job applies it: SQLite series points, closed alerts, finished
 * tasks, audit rows and rejected points go; open alerts stay. Real parts: our broker, the gateway.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MqttClient } from 'mqtt';
import { checkpointTopics } from '@checkpoint/protocol';
import { makeTempDir, waitFor } from '@checkpoint/test-support';
import { createGateway, type Gateway } from '../../src/index.js';
import { API_PASSWORD, ApiClient, connectEdge, gatewayConfig, makeScreening, startTestBroker, type TestBroker } from '../helpers/world.js';

let broker: TestBroker;
let gateway: Gateway;
let edge: MqttClient;
let clock = Date.now();
const count = (table: string, where = '1') => {
  const db = new Database(join(gateway.config.dataDir, 'gateway.sqlite'), { readonly: true });
  try {
    return (db.prepare(`SELECT count(*) AS n FROM ${table} WHERE ${where}`).get() as { n: number }).n;
  } finally {
    db.close();
  }
};

beforeAll(async () => {
  broker = await startTestBroker(['gate-1'], makeTempDir('gw-retention-broker'), 'memory');
  gateway = await createGateway(gatewayConfig({ dataDir: makeTempDir('gw-retention'), mqttUrl: broker.url }), { now: () => (clock = Math.max(clock, Date.now())) });
  await gateway.users.add({ name: 'guard', role: 'guard' }, API_PASSWORD);
  await waitFor(() => gateway.mqttConnected(), { what: 'gateway connected' });
  edge = await connectEdge(broker.url, 'gate-1');
});

afterAll(async () => {
  await edge?.endAsync();
  await gateway?.close();
  await broker?.close();
});

describe('retention', () => {
  it('the README names a retention for every table the gateway creates', () => {
    const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
    const section = readme.slice(readme.indexOf('## Retention'));
    const documented = new Set([...section.matchAll(/^\| `([a-z_]+)` \|/gm)].map((m) => m[1]));
    const db = new Database(join(gateway.config.dataDir, 'gateway.sqlite'), { readonly: true });
    const tables = (db.prepare(`SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'`).all() as Array<{ name: string }>).map((t) => t.name);
    db.close();
    expect(tables.length).toBeGreaterThan(10);
    expect(tables.filter((t) => !documented.has(t))).toEqual([]);
  });

  it('deletes old series points, closed alerts, audit and rejected rows; keeps open alerts', async () => {
    const closedOne = makeScreening({ decision: 'secondary_check' });
    const openOne = makeScreening({ decision: 'secondary_check' });
    for (const s of [closedOne, openOne]) await edge.publishAsync(checkpointTopics.screening(s), JSON.stringify(s), { qos: 1 });
    const guard = await ApiClient.login(gateway.url, 'guard');
    await waitFor(async () => (await guard.get('/api/alerts')).body.alerts.length === 2, { what: 'two alerts' });
    const alertOf = async (id: string) => ((await guard.get('/api/alerts')).body.alerts as Array<{ id: string; screeningId: string }>).find((a) => a.screeningId === id)!;
    expect((await guard.post(`/api/alerts/${(await alertOf(closedOne.id)).id}/ack`, { outcome: 'cleared' })).status).toBe(200);
    await waitFor(() => count('series_points') === 2 && gateway.spoolDepth() === 0, { what: 'series points written' });
    expect(count('audit')).toBeGreaterThan(0);

    clock += 400 * 86_400_000; // past every default retention
    const result = gateway.runRetention();
    expect(result).toMatchObject({ seriesPoints: 2, alerts: 1, screenings: 2 });
    expect(result.audit).toBeGreaterThan(0);
    expect(count('series_points')).toBe(0);
    expect(count('alerts', `status = 'closed'`)).toBe(0);
    expect(count('alerts', `status = 'open'`)).toBe(1);
    // Only the retention job's own record is left.
    expect(count('audit', `action != 'retention'`)).toBe(0);
  });

  it('screenings expire by receipt: a device clock in 1970 or 2090 neither loses them at once nor keeps them for ever', async () => {
    const past = makeScreening({ ts: '1970-01-01T00:00:05.000Z' });
    const future = makeScreening({ ts: '2090-06-01T12:00:00.000Z' });
    for (const s of [past, future]) await edge.publishAsync(checkpointTopics.screening(s), JSON.stringify(s), { qos: 1 });
    await waitFor(() => count('screenings', `id IN ('${past.id}', '${future.id}')`) === 2, { what: 'both stored' });
    expect(gateway.runRetention().screenings).toBe(0);
    expect(count('screenings')).toBe(2);
    clock += 31 * 86_400_000;
    expect(gateway.runRetention().screenings).toBe(2);
    expect(count('screenings')).toBe(0);
  });
});
