/**
 * Cluster mode against a real 3-node NATS cluster (JetStream + MQTT): the agent's own outbox,
 * sender and broker connection publish a stream of QoS 1 screenings while the node they are
 * connected to is killed with SIGKILL. Every screening the cluster acknowledged must be in the
 * server's MQTT message stream `$MQTT_msgs`, read with nats.js the way gateway replicas will;
 * duplicates are allowed and counted.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { AckPolicy, DeliverPolicy, RetentionPolicy, connect as natsConnect, type NatsConnection } from 'nats';
import { describe, expect, it, onTestFinished } from 'vitest';
import { freePort, startNatsCluster, waitFor } from '@checkpoint/test-support';
import { brokerUrls, connectBroker, reconnectCap, reconnectMean } from '../src/outbox/connection.js';
import { jitteredPeriod, reconnectDelay, serverList } from '@checkpoint/protocol';
import { OutboxSender } from '../src/outbox/sender.js';
import { OutboxStore } from '../src/outbox/store.js';
import { loadAgentConfig } from '../src/config/load.js';

/** nats-server's internal stream of MQTT QoS 1 messages (2.9); gateway replicas consume it. */
const MQTT_MSGS_STREAM = '$MQTT_msgs';
const SCREENINGS = '$MQTT.msgs.checkpoint.v1.*.*.screening';

describe('broker connection settings', () => {
  it('keeps the single broker unless a cluster list is configured', async () => {
    const single = await loadAgentConfig(undefined, {}, { site: 's', checkpoint: 'c' });
    expect(single.mqtt.urls).toBeUndefined();
    expect(brokerUrls(single.mqtt)).toEqual(['mqtt://127.0.0.1:1883']);
    const cluster = await loadAgentConfig(undefined, { CHECKPOINT_MQTT_URLS: 'mqtt://a:1, mqtts://b:8883' }, { site: 's', checkpoint: 'c' });
    expect(brokerUrls(cluster.mqtt)).toEqual(['mqtt://a:1', 'mqtts://b:8883']);
    await expect(loadAgentConfig(undefined, { CHECKPOINT_MQTT_URLS: 'http://a:1' }, { site: 's', checkpoint: 'c' })).rejects.toThrow(/mqtt\/urls\/0/);
  });

  it('rotates the server list and draws reconnect periods around the mean', () => {
    expect(serverList(['mqtt://a:1', 'mqtt://b:2', 'mqtts://c'], 1)).toEqual([
      { host: 'b', port: 2, protocol: 'mqtt' },
      { host: 'c', port: 8883, protocol: 'mqtts' },
      { host: 'a', port: 1, protocol: 'mqtt' },
    ]);
    expect(jitteredPeriod(2000, () => 0)).toBe(1000);
    expect(jitteredPeriod(2000, () => 0.999)).toBe(2998);
  });

  it('doubles the mean wait after each failed attempt, up to the cap, jittered around it', () => {
    const mid = () => 0.5; // the mean itself
    expect([0, 1, 2, 3, 4, 5, 6].map((failures) => reconnectDelay(failures, 2000, 30_000, mid))).toEqual([2000, 4000, 8000, 16_000, 30_000, 30_000, 30_000]);
    expect(reconnectDelay(1000, 2000, 30_000, () => 0)).toBe(15_000);
    expect(reconnectDelay(3, 2000, 30_000, () => 0.999)).toBe(23_984);
    // A cap below the base is the base.
    expect(reconnectDelay(5, 2000, 500, mid)).toBe(2000);
  });

  it('backs off against brokers that refuse: each failed attempt doubles the next wait, up to the cap', async () => {
    // Nothing listens on these ports: every attempt fails at once.
    const urls = [`mqtt://127.0.0.1:${await freePort()}`, `mqtt://127.0.0.1:${await freePort()}`];
    const client = connectBroker({ url: urls[0]!, urls, reconnectMs: 100, reconnectMaxMs: 800 }, { clientId: 'backoff', connectTimeout: 1000 }, () => 0.5);
    onTestFinished(() => client.endAsync(true));
    const waits: number[] = [];
    client.on('close', () => waits.push(client.options.reconnectPeriod!));
    await waitFor(() => waits.length >= 6, { what: 'six failed attempts', timeoutMs: 20_000 });
    expect(waits.slice(0, 6)).toEqual([100, 200, 400, 800, 800, 800]);
  });

  it('waits 2 s on average before reconnecting to one broker, 30 s in cluster mode (a shorter mean backing off to 30 s), unless configured', async () => {
    const single = await loadAgentConfig(undefined, {}, { site: 's', checkpoint: 'c' });
    expect(reconnectMean(single.mqtt)).toBe(2000);
    const cluster = await loadAgentConfig(undefined, { CHECKPOINT_MQTT_URLS: 'mqtt://a:1,mqtt://b:2' }, { site: 's', checkpoint: 'c' });
    expect(reconnectMean(cluster.mqtt)).toBe(30_000);
    expect(reconnectCap(cluster.mqtt)).toBe(30_000);
    expect(reconnectCap({ ...cluster.mqtt, reconnectMs: 2000 })).toBe(30_000);
    // One broker: every wait around the same mean, as before cluster mode.
    expect(reconnectCap(single.mqtt)).toBe(2000);
    const set = await loadAgentConfig(undefined, { CHECKPOINT_MQTT_URLS: 'mqtt://a:1,mqtt://b:2' }, { site: 's', checkpoint: 'c', mqtt: { reconnectMs: 500 } });
    expect(reconnectMean(set.mqtt)).toBe(500);
  });
});

describe('outbox against a 3-node NATS cluster with kill -9 of the connected node', () => {
  it('every acknowledged screening is in $MQTT_msgs; duplicates counted', async () => {
    const cluster = await startNatsCluster();
    onTestFinished(() => cluster.stop());
    const work = await mkdtemp(path.join(tmpdir(), 'cluster-failover-'));
    onTestFinished(() => rm(work, { recursive: true, force: true }));

    const store = new OutboxStore(path.join(work, 'outbox.sqlite'));
    onTestFinished(() => store.close());
    const ackedAt = new Map<number, number>(); // outbox seq -> PUBACK time
    const acknowledge = store.acknowledge.bind(store);
    store.acknowledge = (seq) => {
      ackedAt.set(seq, Date.now());
      acknowledge(seq);
    };
    const client = connectBroker(
      { url: cluster.mqttUrls[0]!, urls: cluster.mqttUrls, reconnectMs: 300 },
      { clientId: 'edge-hq-gate-1', clean: false, keepalive: 5, connectTimeout: 5_000 },
    );
    onTestFinished(() => client.endAsync(true));
    const sender = new OutboxSender(store, client, { maxInFlight: 16, retryDelayMs: 200 });
    onTestFinished(() => sender.stop());
    const connectedAt: number[] = [];
    client.on('connect', () => connectedAt.push(Date.now()));
    await waitFor(() => client.connected, { what: 'the agent connected to the cluster', timeoutMs: 30_000 });

    // The stream exists once an MQTT client has connected. Its retention is "interest": a
    // message is kept only for consumers that exist when it arrives, so the durable consumer
    // (the shape gateway replicas will share; one filter subject, 2.9 has no multi-filter
    // consumers) is made before the first screening. nats.js moves to a survivor after the kill.
    const nc: NatsConnection = await natsConnect({ servers: cluster.natsUrls });
    onTestFinished(() => nc.close());
    const jsm = await nc.jetstreamManager();
    const info = await waitFor(() => jsm.streams.info(MQTT_MSGS_STREAM), { what: `stream ${MQTT_MSGS_STREAM}`, timeoutMs: 30_000 });
    expect(info.config.subjects).toEqual(['$MQTT.msgs.>']); // pins the internal name and layout
    expect(info.config.retention).toBe(RetentionPolicy.Interest);
    expect(info.config.num_replicas).toBe(3);
    await jsm.consumers.add(MQTT_MSGS_STREAM, { durable_name: 'failover-test', filter_subject: SCREENINGS, ack_policy: AckPolicy.Explicit, deliver_policy: DeliverPolicy.All });

    // The stream of screenings: one every 5 ms (200/s), 1,500 in all, in the outbox first.
    const total = 1_500;
    const idOfSeq = new Map<number, string>();
    let produced = 0;
    const producer = setInterval(() => {
      if (produced >= total) return clearInterval(producer);
      const id = `scr-${String(produced++).padStart(5, '0')}`;
      const [seq] = store.enqueue([{ topic: 'checkpoint/v1/hq/gate-1/screening', payload: Buffer.from(JSON.stringify({ id })), qos: 1 }]);
      idOfSeq.set(seq!, id);
      sender.pump();
    }, 5);
    onTestFinished(() => clearInterval(producer));

    // Kill the node the agent is connected to once the stream is flowing.
    await waitFor(() => ackedAt.size >= 200, { what: '200 screenings acknowledged before the kill', timeoutMs: 60_000 });
    const socket = client.stream as unknown as { remotePort: number };
    const victim = cluster.nodes.findIndex((n) => n.mqttPort === socket.remotePort);
    expect(victim).toBeGreaterThanOrEqual(0);
    const killedAt = Date.now();
    const ackedBeforeKill = ackedAt.size;
    await cluster.kill(victim, 'SIGKILL');

    await waitFor(() => produced >= total && store.count() === 0, { what: `all ${total} screenings acknowledged after the kill (outbox ${store.count()} left)`, timeoutMs: 120_000, intervalMs: 200 });
    const node = cluster.nodes.findIndex((n) => n.mqttPort === (client.stream as unknown as { remotePort: number }).remotePort);
    expect(node).not.toBe(victim); // it failed over to a survivor

    // Read them back, as a gateway replica would: fetch, then ack.
    const seen = new Map<string, number>();
    const wanted = new Set([...ackedAt.keys()].map((seq) => idOfSeq.get(seq)!));
    await waitFor(
      async () => {
        // Looked up again each round: after a consumer leader moved, a long-lived iterator stalled.
        const consumer = await nc.jetstream().consumers.get(MQTT_MSGS_STREAM, 'failover-test');
        for await (const m of await consumer.fetch({ max_messages: 1_000, expires: 1_000 })) {
          expect(m.subject).toBe('$MQTT.msgs.checkpoint.v1.hq.gate-1.screening');
          const id = (JSON.parse(m.string()) as { id: string }).id;
          seen.set(id, (seen.get(id) ?? 0) + 1);
          m.ack();
          if (seen.size % 500 === 0) console.log("DBG seen", seen.size);
        }
        return [...wanted].every((id) => seen.has(id));
      },
      { what: 'every acknowledged screening read from $MQTT_msgs', timeoutMs: 60_000, intervalMs: 0 },
    );

    const lost = [...wanted].filter((id) => !seen.has(id));
    const duplicates = [...seen.values()].reduce((sum, n) => sum + n - 1, 0);
    const acks = [...ackedAt.values()].sort((a, b) => a - b);
    // PUBACKs already on their way from the victim can still arrive after the kill: the gap
    // counts from the kill to the first PUBACK on the new connection.
    const reconnectedAt = connectedAt.find((t) => t > killedAt);
    expect(reconnectedAt).toBeDefined();
    const firstAfter = acks.find((t) => t >= reconnectedAt!);
    const gapMs = firstAfter! - killedAt;
    const firstAck = acks[0]!;
    const rate = Math.round((ackedBeforeKill / Math.max(1, killedAt - firstAck)) * 1000);
    console.log(
      `cluster failover: ${wanted.size} acknowledged, ${lost.length} lost, ${duplicates} duplicates, ` +
        `${sender.retried} publishes retried by the outbox, reconnected ${reconnectedAt! - killedAt} ms and first PUBACK ${gapMs} ms after the kill, ` +
        `~${rate} screenings/s acknowledged before it (producer 200/s, 16 in flight)`,
    );
    expect(wanted.size).toBe(total);
    expect(lost).toEqual([]);
    expect(gapMs).toBeGreaterThanOrEqual(reconnectedAt! - killedAt);
  }, 300_000);
});
