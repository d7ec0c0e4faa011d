/**
 * Group commit against a real broker (ours) and the gateway's real SQLite file: 200 screenings
 * with 64 in flight, two of them poisoned by injected triggers: one fails on its first write, the
 * other after three (its screening, device and spool rows are written, then its live-feed event
 * fails). Every PUBACK the broker receives comes after its screening is committed (checked on a
 * second connection at that moment), in the order they were stored; messages share transactions;
 * the poisoned ones are set aside, leave no row behind, and their neighbours are stored once each.
 */
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MqttClient } from 'mqtt';
import { makeTempDir, waitFor } from '@checkpoint/test-support';
import { createGateway, type Gateway } from '../src/index.js';
import { connectEdge, gatewayConfig, makeScreening, publishScreenings, startTestBroker, type TestBroker } from './helpers/world.js';

let broker: TestBroker;
let gateway: Gateway;
let edge: MqttClient;
let reader: Database.Database;
/** Screening ids in the order the broker got their PUBACKs, and whether each was stored by then. */
const acks: Array<{ id: string; storedBefore: boolean }> = [];

beforeAll(async () => {
  broker = await startTestBroker(['gate-1'], makeTempDir('gw-gc-broker'), 'memory');
  // A 50 ms gathering window: with 64 in flight, batches of many messages form whatever the load.
  gateway = await createGateway({ ...gatewayConfig({ dataDir: makeTempDir('gw-gc'), mqttUrl: broker.url }), ingest: { batchMaxMessages: 50, batchMaxWaitMs: 50 } });
  reader = new Database(join(gateway.config.dataDir, 'gateway.sqlite'), { readonly: true });
  const isStored = reader.prepare<[string, string], { n: number }>('SELECT (SELECT count(*) FROM screenings WHERE id = ?) + (SELECT count(*) FROM ingest_failed WHERE CAST(payload AS TEXT) LIKE ?) AS n');
  const gatewayClientId = gateway.config.mqtt.clientId;
  broker.broker.aedes.on('ack', (packet, client) => {
    if (client?.id !== gatewayClientId || !packet || !('topic' in packet) || !packet.topic.endsWith('/screening')) return;
    const id = (JSON.parse(packet.payload.toString()) as { id: string }).id;
    acks.push({ id, storedBefore: isStored.get(id, `%${id}%`)!.n === 1 });
  });
  await waitFor(() => gateway.mqttConnected(), { what: 'gateway connected' });
  edge = await connectEdge(broker.url, 'gate-1');
}, 60_000);

afterAll(async () => {
  await edge?.endAsync();
  reader?.close();
  await gateway?.close();
  await broker?.close();
});

describe('group commit through a real broker', () => {
  it('acknowledges each message after its batch committed, in order, and sets a poisoned one aside without losing its neighbours', async () => {
    const screenings = Array.from({ length: 200 }, (_, i) => makeScreening({ trackId: i, decision: i % 10 === 0 ? 'secondary_check' : 'pass' }));
    const poison = screenings[101]!;
    // A secondary check: it would also open an alert, after the event that fails.
    const latePoison = screenings[150]!;
    expect(latePoison.decision).toBe('secondary_check');
    const poisoned = [poison, latePoison];
    const fault = new Database(join(gateway.config.dataDir, 'gateway.sqlite'));
    try {
      fault.exec(`CREATE TRIGGER injected_fault BEFORE INSERT ON screenings WHEN NEW.id = '${poison.id}' BEGIN SELECT RAISE(ABORT, 'injected fault'); END`);
      fault.exec(
        `CREATE TRIGGER injected_late_fault BEFORE INSERT ON events WHEN NEW.type = 'screening' AND NEW.data LIKE '%${latePoison.id}%' BEGIN SELECT RAISE(ABORT, 'injected late fault'); END`,
      );
    } finally {
      fault.close();
    }
    await publishScreenings(edge, screenings, 64);
    await waitFor(() => acks.length >= screenings.length, { what: `${screenings.length} PUBACKs at the broker (have ${acks.length})`, timeoutMs: 60_000 });

    expect(acks.filter((a) => !a.storedBefore).map((a) => a.id)).toEqual([]);
    // Stored once each, but the poisoned one; PUBACKs in the order the messages were stored (the
    // order they arrived in: MQTT wants PUBACKs in PUBLISH order).
    const storedIds = reader.prepare<[], { id: string }>('SELECT id FROM screenings ORDER BY rowid').all().map((r) => r.id);
    expect([...storedIds].sort()).toEqual(screenings.filter((s) => !poisoned.includes(s)).map((s) => s.id).sort());
    expect(acks.map((a) => a.id).filter((id) => !poisoned.some((p) => p.id === id))).toEqual(storedIds);
    expect(acks.map((a) => a.id).sort()).toEqual(screenings.map((s) => s.id).sort());
    const failed = reader.prepare<[], { payload: Buffer; error: string }>('SELECT payload, error FROM ingest_failed').all();
    expect(failed.map((f) => (JSON.parse(f.payload.toString()) as { id: string }).id)).toEqual([poison.id, latePoison.id]);
    expect(failed.map((f) => f.error)).toEqual([expect.stringContaining('injected fault'), expect.stringContaining('injected late fault')]);
    // Nothing of the late poison's first writes stayed (its screening row: above): no point of it, queued or written.
    await waitFor(() => gateway.spoolDepth() === 0, { what: 'the spool drained' });
    const points = reader.prepare<[string], { n: number }>(`SELECT count(*) AS n FROM series_points WHERE measurement = 'screening' AND fields LIKE ?`);
    expect(points.get(`%${latePoison.id}%`)).toEqual({ n: 0 });
    expect(points.get(`%${screenings[149]!.id}%`)).toEqual({ n: 1 });
    // One alert per stored non-pass screening: none from the rolled-back poisons, none twice.
    expect(poison.decision).toBe('pass');
    expect(reader.prepare(`SELECT count(*) AS n, count(DISTINCT screening_id) AS distinct_screenings FROM alerts WHERE kind = 'screening'`).get()).toEqual({ n: 19, distinct_screenings: 19 });

    // Messages shared transactions: fewer transactions than messages (the poison's own retries are single).
    const metrics = await (await fetch(`${gateway.url}/metrics`)).text();
    const batches = Number(/^checkpoint_gateway_ingest_batch_messages_count (\d+)/m.exec(metrics)?.[1]);
    const batched = Number(/^checkpoint_gateway_ingest_batch_messages_sum (\d+)/m.exec(metrics)?.[1]);
    expect(batched).toBe(screenings.length - poisoned.length);
    expect(batches).toBeLessThan(batched);
  }, 120_000);
});
