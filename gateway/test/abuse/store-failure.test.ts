/**
 * Storing a message fails (another process holds the SQLite write lock, as a backup or an admin
 * shell would): the gateway must neither lose nor reorder it, must acknowledge it (PUBACK, seen by
 * the broker) as soon as it is stored, and must keep answering /healthz meanwhile (no
 * synchronous 5-10 s busy wait). Real parts: our broker, the gateway, a second SQLite connection.
 */
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MqttClient } from 'mqtt';
import { checkpointTopics } from '@checkpoint/protocol';
import { makeTempDir, waitFor } from '@checkpoint/test-support';
import { createGateway, type Gateway } from '../../src/index.js';
import { connectEdge, gatewayConfig, makeScreening, startTestBroker, type TestBroker } from '../helpers/world.js';

let broker: TestBroker;
let gateway: Gateway;
let edge: MqttClient;
const acked: string[] = [];

beforeAll(async () => {
  broker = await startTestBroker(['gate-1'], makeTempDir('gw-busy-broker'), 'memory');
  gateway = await createGateway(gatewayConfig({ dataDir: makeTempDir('gw-busy'), mqttUrl: broker.url }));
  const gatewayClientId = gateway.config.mqtt.clientId;
  // PUBACKs the broker receives from the gateway, by screening id.
  broker.broker.aedes.on('ack', (packet, client) => {
    if (client?.id === gatewayClientId && packet && 'topic' in packet && packet.topic.endsWith('/screening')) acked.push((JSON.parse(packet.payload.toString()) as { id: string }).id);
  });
  await waitFor(() => gateway.mqttConnected(), { what: 'gateway connected' });
  edge = await connectEdge(broker.url, 'gate-1');
});

afterAll(async () => {
  await edge?.endAsync();
  await gateway?.close();
  await broker?.close();
});

async function timedHealth(): Promise<{ ms: number; body: Record<string, unknown> }> {
  const t0 = performance.now();
  const res = await fetch(`${gateway.url}/healthz`);
  const body = (await res.json()) as Record<string, unknown>;
  return { ms: performance.now() - t0, body };
}

describe('a store that is busy for longer than its timeout', () => {
  it('retries in order, acknowledges once stored, and /healthz answers meanwhile', async () => {
    const lock = new Database(join(gateway.config.dataDir, 'gateway.sqlite'));
    const screenings = Array.from({ length: 5 }, (_, i) => makeScreening({ decision: i % 2 ? 'secondary_check' : 'pass' }));
    let committed = false;
    try {
      lock.exec('BEGIN IMMEDIATE'); // the write lock, held by another connection
      for (const s of screenings) await edge.publishAsync(checkpointTopics.screening(s), JSON.stringify(s), { qos: 1 });
      await waitFor(async () => (await timedHealth()).body.ingest === 'retrying', { what: '/healthz reports ingest retrying' });
      // The event loop is not frozen: /healthz answers quickly, several times, while the lock is held.
      const samples = [];
      for (let i = 0; i < 5; i++) samples.push(await timedHealth());
      expect(samples.every((s) => s.body.status === 'degraded')).toBe(true);
      expect(Math.max(...samples.map((s) => s.ms))).toBeLessThan(1500);
      expect(acked).toEqual([]);
      lock.exec('COMMIT');
      committed = true;
    } finally {
      if (!committed) lock.exec('ROLLBACK');
      lock.close();
    }
    // Stored promptly, in publication order, and each acknowledged.
    await waitFor(() => acked.length === screenings.length, { what: 'all screenings acknowledged', timeoutMs: 10_000 });
    expect(acked).toEqual(screenings.map((s) => s.id));
    const db = new Database(join(gateway.config.dataDir, 'gateway.sqlite'), { readonly: true });
    try {
      expect(db.prepare('SELECT id FROM screenings ORDER BY rowid').all().map((r) => (r as { id: string }).id)).toEqual(screenings.map((s) => s.id));
      expect((db.prepare(`SELECT count(*) AS n FROM alerts WHERE kind = 'screening'`).get() as { n: number }).n).toBe(2);
    } finally {
      db.close();
    }
    expect((await timedHealth()).body).toMatchObject({ status: 'ok', ingest: 'ok' });
    const metrics = await (await fetch(`${gateway.url}/metrics`)).text();
    expect(Number(/^checkpoint_gateway_ingest_retries_total (\d+)/m.exec(metrics)?.[1])).toBeGreaterThan(0);
  });

  it('a message that fails for another reason (here a trigger) is set aside after 5 attempts and does not block the rest', async () => {
    const poison = makeScreening({ decision: 'secondary_check' });
    const after = makeScreening();
    const fault = new Database(join(gateway.config.dataDir, 'gateway.sqlite'));
    try {
      fault.exec(`CREATE TRIGGER injected_fault BEFORE INSERT ON screenings WHEN NEW.id = '${poison.id}' BEGIN SELECT RAISE(ABORT, 'injected fault'); END`);
    } finally {
      fault.close();
    }
    const ackedBefore = acked.length;
    await edge.publishAsync(checkpointTopics.screening(poison), JSON.stringify(poison), { qos: 1 });
    await edge.publishAsync(checkpointTopics.screening(after), JSON.stringify(after), { qos: 1 });
    await waitFor(() => acked.length === ackedBefore + 2, { what: 'both acknowledged', timeoutMs: 10_000 });
    expect(acked.slice(ackedBefore)).toEqual([poison.id, after.id]);
    const db = new Database(join(gateway.config.dataDir, 'gateway.sqlite'), { readonly: true });
    try {
      const kept = db.prepare('SELECT topic, payload, error FROM ingest_failed').all() as Array<{ topic: string; payload: Buffer; error: string }>;
      expect(kept).toHaveLength(1);
      expect(kept[0]!.error).toContain('injected fault');
      expect((JSON.parse(kept[0]!.payload.toString()) as { id: string }).id).toBe(poison.id);
      expect(db.prepare('SELECT id FROM screenings WHERE id = ?').get(after.id)).toBeTruthy();
    } finally {
      db.close();
    }
    const metrics = await (await fetch(`${gateway.url}/metrics`)).text();
    expect(metrics).toMatch(/^checkpoint_gateway_ingest_failed_total 1$/m);
  });
});
