import { readFileSync } from 'node:fs';
import { connect as netConnect, createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import mqtt from 'mqtt';
import { makeTempDir, waitFor } from '@checkpoint/test-support';
import { createBroker, openUserStore, type Broker, type UserStore } from '../src/index.js';
import { makeCerts } from './certs.js';
import { addMatrixUsers, connect, PASSWORD, PUBLISH_CASES, publishAsync, runMatrix, subackCode, SUBSCRIBE_CASES } from './matrix.js';

const quiet = { logLevel: 'silent' as const, metrics: { port: null }, mqtt: { port: 0 }, host: '127.0.0.1' };

/** A user store with the matrix users in a fresh dir (hashing once per file keeps tests quick). */
async function makeStore(): Promise<{ dir: string; store: UserStore }> {
  const dir = makeTempDir('checkpoint-broker-test');
  const store = openUserStore(join(dir, 'users.sqlite'), { mosquittoHashIterations: 0 });
  await addMatrixUsers(store);
  return { dir, store };
}

async function startBroker(config: object = {}, extra: { now?: () => number } = {}): Promise<{ broker: Broker; url: string; dir: string }> {
  const { dir, store } = await makeStore();
  const broker = await createBroker({ config: { ...quiet, dataDir: dir, ...config }, users: store, ...extra });
  onTestFinished(async () => {
    await broker.close();
    store.close();
  });
  return { broker, url: `mqtt://127.0.0.1:${broker.ports.mqtt}`, dir };
}

/** CONNACK return code of a connect attempt (0 = accepted). */
async function connackCode(url: string, options: mqtt.IClientOptions): Promise<number> {
  const client = mqtt.connect(url, { reconnectPeriod: 0, ...options });
  return new Promise((resolve, reject) => {
    client.on('packetreceive', (packet) => {
      if (packet.cmd === 'connack') {
        client.end(true);
        resolve(packet.returnCode ?? (packet as { reasonCode?: number }).reasonCode ?? -1);
      }
    });
    client.on('error', () => {}); // the refusal also arrives as an error
    client.on('close', () => setTimeout(() => reject(new Error('closed without CONNACK')), 100));
  });
}

describe('authentication', () => {
  it('refuses anonymous clients, unknown users and wrong passwords, and accepts the right one', async () => {
    const { url, broker } = await startBroker();
    expect(await connackCode(url, {})).toBe(5);
    expect(await connackCode(url, { username: 'edge-a' })).toBe(5);
    expect(await connackCode(url, { username: 'edge-a', password: 'wrong-password' })).toBe(4);
    expect(await connackCode(url, { username: 'nobody', password: PASSWORD })).toBe(4);
    expect(await connackCode(url, { username: 'edge-a', password: PASSWORD })).toBe(0);
    expect((await broker.metrics.snapshot()).denied.connect).toBe(4);
  });

  it('rate-limits failed logins per address until the window has passed', async () => {
    let now = 1_000_000;
    const { url } = await startBroker({ auth: { maxFailures: 3, failureWindowS: 60 } }, { now: () => now });
    for (let i = 0; i < 3; i++) expect(await connackCode(url, { username: 'edge-a', password: 'wrong-password' })).toBe(4);
    // Even the right password is refused now, without being checked.
    expect(await connackCode(url, { username: 'edge-a', password: PASSWORD })).toBe(5);
    now += 61_000;
    expect(await connackCode(url, { username: 'edge-a', password: PASSWORD })).toBe(0);
  });

  it('refuses a last will on a topic the user may not publish', async () => {
    const { url } = await startBroker();
    const will = { topic: 'checkpoint/v1/hq/gate-2/state', payload: Buffer.from('offline'), qos: 1 as const, retain: true };
    expect(await connackCode(url, { username: 'edge-a', password: PASSWORD, will })).toBe(5);
    expect(await connackCode(url, { username: 'edge-a', password: PASSWORD, will: { ...will, topic: 'checkpoint/v1/hq/gate-1/state' } })).toBe(0);
  });

  it("does not let one user take over another user's client id", async () => {
    const { url } = await startBroker();
    const b = await connect(url, { username: 'edge-b', password: PASSWORD, clientId: 'gate-2-agent' });
    onTestFinished(() => b.endAsync());
    expect(await connackCode(url, { username: 'edge-a', password: PASSWORD, clientId: 'gate-2-agent' })).toBe(2);
    expect(b.connected).toBe(true);
  });
});

describe('authorization (real clients, the shared matrix)', () => {
  it('allows and denies exactly the matrix, drops denied publishes without disconnecting, and counts them', async () => {
    const { url, broker } = await startBroker();
    const result = await runMatrix(url);
    expect(result.publishMismatches).toEqual([]);
    expect(result.subscribeMismatches).toEqual([]);
    expect(result.publishersStillConnected).toBe(true);
    const stats = await broker.metrics.snapshot();
    expect(stats.denied.publish).toBe(PUBLISH_CASES.filter((c) => !c.allowed).length);
    expect(stats.denied.subscribe).toBe(SUBSCRIBE_CASES.filter((c) => !c.allowed).length);
  });

  it('answers a denied subscription with 0x80 and keeps the granted ones of the same SUBSCRIBE', async () => {
    const { url } = await startBroker();
    const edge = await connect(url, { username: 'edge-a', password: PASSWORD });
    onTestFinished(() => edge.endAsync());
    const granted = await edge.subscribeAsync({ 'checkpoint/v1/hq/gate-1/cmd': { qos: 1 }, 'checkpoint/v1/hq/gate-2/cmd': { qos: 1 } }).catch((e: Error) => e);
    // mqtt.js rejects when any filter is refused; read the codes from the wire instead.
    expect(granted).toBeInstanceOf(Error);
    expect(await subackCode(edge, 'checkpoint/v1/hq/gate-2/cmd')).toBe(0x80);
    expect(await subackCode(edge, 'checkpoint/v1/hq/gate-1/cmd')).toBe(1);
  });
});

describe('limits', () => {
  it('closes a connection sending an oversized packet, and only that one', async () => {
    const { url, broker } = await startBroker({ limits: { maxPacketBytes: 64 * 1024 } });
    const gateway = await connect(url, { username: 'gateway', password: PASSWORD });
    const edge = await connect(url, { username: 'edge-a', password: PASSWORD });
    onTestFinished(async () => {
      await gateway.endAsync();
      await edge.endAsync(true);
    });
    await gateway.subscribeAsync('checkpoint/v1/#', { qos: 1 });
    const got: string[] = [];
    gateway.on('message', (topic) => got.push(topic));

    const closed = new Promise<void>((resolve) => edge.once('close', () => resolve()));
    edge.publish('checkpoint/v1/hq/gate-1/snapshot/01HZY3V6Q8J7K2M4N5P6R7S8T9', Buffer.alloc(100 * 1024), { qos: 1 });
    await closed;
    expect((await broker.metrics.registry.getSingleMetricAsString('checkpoint_broker_rejected_packets_total'))).toContain('reason="too_large"} 1');

    // Other clients carry on; a 30 KB snapshot (the real size) still passes.
    const edge2 = await connect(url, { username: 'edge-a', password: PASSWORD });
    onTestFinished(() => edge2.endAsync());
    await publishAsync(edge2, 'checkpoint/v1/hq/gate-1/snapshot/01HZY3V6Q8J7K2M4N5P6R7S8T9', Buffer.alloc(30 * 1024));
    await waitFor(() => got.includes('checkpoint/v1/hq/gate-1/snapshot/01HZY3V6Q8J7K2M4N5P6R7S8T9'), { what: 'snapshot at gateway' });
    expect(gateway.connected).toBe(true);
  });

  it('closes connections sending malformed packets without affecting others', async () => {
    const { url, broker } = await startBroker();
    const gateway = await connect(url, { username: 'gateway', password: PASSWORD });
    onTestFinished(() => gateway.endAsync());
    const garbage = [
      Buffer.from([0x00, 0x00]), // reserved packet type 0
      Buffer.from([0x30, 0xff, 0xff, 0xff, 0xff, 0x01]), // remaining length of 5 bytes
      Buffer.from([0x10, 0x0c, 0x00, 0x04, 0x4e, 0x4f, 0x50, 0x45, 0x04, 0x02, 0x00, 0x0a, 0x00, 0x00]), // CONNECT with protocol "NOPE"
      Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'),
    ];
    const port = broker.ports.mqtt;
    for (const bytes of garbage) {
      await new Promise<void>((resolve, reject) => {
        const socket = netConnect({ host: '127.0.0.1', port }, () => socket.write(bytes));
        socket.on('data', () => {}); // a CONNACK refusal may come first; what matters is the close
        socket.on('error', () => {}); // reset by the broker is fine
        socket.on('close', () => resolve());
        setTimeout(() => reject(new Error(`connection not closed after ${bytes.toString('hex')}`)), 5000).unref();
      });
    }
    const edge = await connect(url, { username: 'edge-a', password: PASSWORD });
    onTestFinished(() => edge.endAsync());
    const message = new Promise<string>((resolve) => gateway.once('message', (_t, p) => resolve(p.toString())));
    await gateway.subscribeAsync('checkpoint/v1/+/+/screening', { qos: 1 });
    await publishAsync(edge, 'checkpoint/v1/hq/gate-1/screening', 'still here');
    expect(await message).toBe('still here');
  });
});

describe('persistence', () => {
  it('delivers QoS 1 messages queued for an offline persistent session, and retained state, after a broker restart', async () => {
    const { dir, store } = await makeStore();
    onTestFinished(() => store.close());
    const config = { ...quiet, dataDir: dir };
    let broker = await createBroker({ config, users: store });
    onTestFinished(() => broker.close());
    let url = `mqtt://127.0.0.1:${broker.ports.mqtt}`;

    const session = { username: 'edge-a', password: PASSWORD, clientId: 'edge-a-agent', clean: false };
    const edge = await connect(url, session);
    await edge.subscribeAsync('checkpoint/v1/hq/gate-1/cmd', { qos: 1 });
    await publishAsync(edge, 'checkpoint/v1/hq/gate-1/state', '{"online":true}', 1, true);
    await edge.endAsync();

    // Many at once, and the broker stopped as soon as the last is acknowledged: aedes sends PUBACK
    // before it stores a message for offline sessions, so close() must let those writes finish.
    const sent = Array.from({ length: 60 }, (_, i) => `{"id":"${i}"}`);
    const gateway = await connect(url, { username: 'gateway', password: PASSWORD });
    await Promise.all(sent.map((payload) => publishAsync(gateway, 'checkpoint/v1/hq/gate-1/cmd', payload)));
    await broker.close();
    gateway.end(true);
    broker = await createBroker({ config, users: store });
    url = `mqtt://127.0.0.1:${broker.ports.mqtt}`;

    const got: string[] = [];
    const back = mqtt.connect(url, { ...session, reconnectPeriod: 0 });
    onTestFinished(() => back.endAsync());
    back.on('message', (_topic, payload) => got.push(payload.toString()));
    // On a timeout the comparison below shows what did arrive.
    await waitFor(() => got.length >= sent.length, { what: 'the queued commands after restart' }).catch(() => undefined);
    expect(got).toEqual(sent);

    const viewer = await connect(url, { username: 'viewer', password: PASSWORD });
    onTestFinished(() => viewer.endAsync());
    const retained = new Promise<string>((resolve) => viewer.once('message', (_t, p) => resolve(p.toString())));
    await viewer.subscribeAsync('checkpoint/v1/+/+/state');
    expect(await retained).toBe('{"online":true}');
  });
});

describe('stopping', () => {
  it('close() ends the connections of clients that are still connected, and returns', async () => {
    const { broker, url } = await startBroker();
    const clients = await Promise.all(['edge-a', 'viewer'].map((username) => connect(url, { username, password: PASSWORD, reconnectPeriod: 0 })));
    const ended = clients.map((c) => new Promise<void>((resolve) => c.once('close', () => resolve())));
    const closed = await Promise.race([broker.close().then(() => true), new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 10_000))]);
    expect(closed).toBe(true);
    await Promise.all(ended);
    for (const c of clients) c.end(true);
  });
});

describe('persistent subscribers under load', () => {
  it('deliver a retained state followed at once by QoS 1 and QoS 0 messages, none held back (level persistence)', async () => {
    const { url } = await startBroker({ persistence: 'level' });
    const got: string[] = [];
    const sub = await connect(url, { username: 'gateway', password: PASSWORD, clientId: 'gw-mixed', clean: false });
    onTestFinished(() => sub.endAsync());
    sub.on('message', (_t, p) => got.push(p.toString()));
    await sub.subscribeAsync('checkpoint/v1/#', { qos: 1 });
    const edge = await connect(url, { username: 'edge-a', password: PASSWORD });
    onTestFinished(() => edge.endAsync());
    const sent: Promise<unknown>[] = [];
    for (let round = 0; round < 20; round++) {
      sent.push(edge.publishAsync('checkpoint/v1/hq/gate-1/state', `state-${round}`, { qos: 1, retain: true }));
      for (let i = 0; i < 5; i++) sent.push(edge.publishAsync('checkpoint/v1/hq/gate-1/screening', `s-${round}-${i}`, { qos: 1 }));
      sent.push(edge.publishAsync('checkpoint/v1/hq/gate-1/telemetry', `t-${round}`, { qos: 0 }));
    }
    await Promise.all(sent);
    await waitFor(() => got.length >= 140, { what: `all 140 messages while connected (got ${got.length})`, timeoutMs: 10_000 });
    expect(new Set(got).size).toBe(140);
  });

  it('deliver every concurrent QoS 1 message to a connected persistent session at once (level persistence)', async () => {
    const { url } = await startBroker({ persistence: 'level' });
    const got = new Set<string>();
    const sub = await connect(url, { username: 'gateway', password: PASSWORD, clientId: 'gw-load', clean: false });
    onTestFinished(() => sub.endAsync());
    sub.on('message', (_t, p) => got.add(p.toString()));
    await sub.subscribeAsync('checkpoint/v1/#', { qos: 1 });
    const edge = await connect(url, { username: 'edge-a', password: PASSWORD });
    onTestFinished(() => edge.endAsync());
    // Many publishes in flight at once: their offline copies finish storing in any order.
    const ids = Array.from({ length: 400 }, (_, i) => `{"n":${i}}`);
    let next = 0;
    await Promise.all(
      Array.from({ length: 64 }, async () => {
        while (next < ids.length) await edge.publishAsync('checkpoint/v1/hq/gate-1/screening', ids[next++]!, { qos: 1 });
      }),
    );
    await waitFor(() => got.size === ids.length, { what: `all ${ids.length} messages while connected (got ${got.size})`, timeoutMs: 10_000 });
  });
});

describe('listeners', () => {
  let certs: ReturnType<typeof makeCerts>;
  beforeAll(() => {
    certs = makeCerts(makeTempDir('checkpoint-broker-certs'));
  });

  it('serves MQTT over TLS, with client certificates when required', async () => {
    const { broker } = await startBroker({
      tls: { port: 0, certFile: certs.serverCert, keyFile: certs.serverKey, caFile: certs.caCert, requireClientCert: true },
    });
    const url = `mqtts://127.0.0.1:${broker.ports.mqtts}`;
    const ca = readFileSync(certs.caCert);
    const withCert = { ca, cert: readFileSync(certs.clientCert), key: readFileSync(certs.clientKey), username: 'edge-a', password: PASSWORD };
    const edge = await connect(url, withCert);
    onTestFinished(() => edge.endAsync());
    expect(await subackCode(edge, 'checkpoint/v1/hq/gate-1/cmd')).toBe(1);
    // Without a client certificate the TLS handshake itself fails.
    await expect(connect(url, { ca, username: 'edge-a', password: PASSWORD })).rejects.toThrow();
  });

  it('serves MQTT over WebSocket with the same auth and ACL', async () => {
    const { broker, url } = await startBroker({ websocket: { port: 0 } });
    const wsUrl = `ws://127.0.0.1:${broker.ports.ws}/mqtt`;
    expect(await connackCode(wsUrl, { username: 'viewer', password: 'wrong-password' })).toBe(4);
    const viewer = await connect(wsUrl, { username: 'viewer', password: PASSWORD });
    onTestFinished(() => viewer.endAsync());
    expect(await subackCode(viewer, 'checkpoint/v1/+/+/snapshot/+')).toBe(0x80);
    expect(await subackCode(viewer, 'checkpoint/v1/+/+/screening')).toBe(1);
    const message = new Promise<string>((resolve) => viewer.once('message', (_t, p) => resolve(p.toString())));
    const edge = await connect(url, { username: 'edge-a', password: PASSWORD });
    onTestFinished(() => edge.endAsync());
    await publishAsync(edge, 'checkpoint/v1/hq/gate-1/screening', '{"decision":"pass"}');
    expect(await message).toBe('{"decision":"pass"}');
  });
});

describe('observability', () => {
  it('serves Prometheus /metrics and publishes $SYS stats readable by the gateway', async () => {
    const { broker, url } = await startBroker({ metrics: { port: 0, host: '127.0.0.1' }, sysIntervalS: 1 });
    const gateway = await connect(url, { username: 'gateway', password: PASSWORD });
    onTestFinished(() => gateway.endAsync());
    const stats = new Map<string, string>();
    gateway.on('message', (topic, payload) => {
      if (topic === '$SYS/broker/version') stats.clear(); // first topic of each round
      stats.set(topic, payload.toString());
    });
    await gateway.subscribeAsync('$SYS/broker/#');
    // One round of stats is several messages; wait for the last topic of a round that saw us.
    await waitFor(() => stats.get('$SYS/broker/clients/connected') === '1' && stats.has('$SYS/broker/denied/connect') && stats.has('$SYS/broker/bytes/received'), { what: '$SYS round with clients/connected = 1' });
    expect(Number(stats.get('$SYS/broker/bytes/received'))).toBeGreaterThan(0);

    const res = await fetch(`http://127.0.0.1:${broker.ports.metrics}/metrics`);
    const text = await res.text();
    expect(res.status).toBe(200);
    expect(text).toContain('checkpoint_broker_clients_connected 1');
    expect(text).toMatch(/checkpoint_broker_denied_total\{operation="publish"\} 0/);
    expect(text).toMatch(/checkpoint_broker_messages_sent_total \d+/);
  });
});

describe('start-up errors', () => {
  let busy: ReturnType<typeof createServer>;
  afterAll(() => busy?.close());

  it('names the port in use, the unreadable cert and the bad config key', async () => {
    busy = createServer();
    await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve));
    const port = (busy.address() as AddressInfo).port;
    const dir = makeTempDir('checkpoint-broker-errors');
    await expect(createBroker({ config: { ...quiet, dataDir: dir, mqtt: { port } } })).rejects.toThrow(`cannot listen for MQTT on 127.0.0.1:${port}: address already in use`);
    await expect(
      createBroker({ config: { ...quiet, dataDir: dir, tls: { port: 0, certFile: join(dir, 'missing.pem'), keyFile: join(dir, 'k.pem') } } }),
    ).rejects.toThrow(`cannot read tls.certFile ${join(dir, 'missing.pem')}: ENOENT`);
    await expect(createBroker({ config: { ...quiet, dataDir: dir, mqtt: { prot: 1 } } })).rejects.toThrow('/mqtt/prot');
    // The failed starts released everything: the same data dir starts fine now.
    const broker = await createBroker({ config: { ...quiet, dataDir: dir } });
    await broker.close();
  });
});
