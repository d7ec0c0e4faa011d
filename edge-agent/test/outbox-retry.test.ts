/**
 * A publish that mqtt.js fails (here: the client is closing when the sender hands it over; on a
 * NATS cluster: "Connection closed" during a leader election) is sent again by the outbox on the
 * next connection, not left for the next start of the agent.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import mqtt from 'mqtt';
import { expect, it, onTestFinished } from 'vitest';
import { startMosquitto, waitFor } from '@checkpoint/test-support';
import { OutboxSender } from '../src/outbox/sender.js';
import { OutboxStore } from '../src/outbox/store.js';

it('resends a failed publish on the next connection, once', async () => {
  const broker = await startMosquitto();
  onTestFinished(() => broker.stop());
  const work = await mkdtemp(path.join(tmpdir(), 'outbox-retry-'));
  onTestFinished(() => rm(work, { recursive: true, force: true }));
  const topic = 'checkpoint/v1/hq/gate-1/screening';

  const received: string[] = [];
  const watcher = await mqtt.connectAsync(broker.url, { clientId: 'watcher', reconnectPeriod: 0 });
  onTestFinished(() => watcher.endAsync(true));
  await watcher.subscribeAsync(topic, { qos: 1 });
  watcher.on('message', (_t, payload) => received.push(payload.toString()));

  const store = new OutboxStore(path.join(work, 'outbox.sqlite'));
  onTestFinished(() => store.close());
  const client = await mqtt.connectAsync(broker.url, { clientId: 'edge', clean: false, reconnectPeriod: 0 });
  onTestFinished(() => client.endAsync(true));
  const errors: string[] = [];
  const sender = new OutboxSender(store, client, { maxInFlight: 4, retryDelayMs: 100 }, (e) => errors.push(e.message));
  onTestFinished(() => sender.stop());

  // The client starts closing; the sender still sees it connected and hands the message over.
  const closed = client.endAsync();
  store.enqueue([{ topic, payload: Buffer.from('screening-1'), qos: 1 }]);
  sender.pump();
  await closed;
  expect(errors).toEqual(['client disconnecting']);
  expect(sender.retried).toBe(1);
  expect(store.count()).toBe(1); // still in the outbox

  client.reconnect();
  await waitFor(() => store.count() === 0, { what: 'the failed publish acknowledged after the reconnect', timeoutMs: 15_000 });
  await waitFor(() => received.length >= 1, { what: 'the screening at the subscriber', timeoutMs: 15_000 });
  await watcher.publishAsync(topic, 'flush', { qos: 1 }); // one round trip: a second copy would be here by now
  await waitFor(() => received.includes('flush'), { what: 'the flush message', timeoutMs: 15_000 });
  expect(received.filter((p) => p === 'screening-1')).toHaveLength(1);
});
