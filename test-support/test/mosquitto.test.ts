import { createConnection } from 'node:net';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { startMosquitto, type MosquittoServer } from '@checkpoint/test-support';

/** Connect once (no reconnects) and close the client when the current test finishes. */
async function connect(url: string, options: IClientOptions = {}): Promise<MqttClient> {
  // allowRetries=false: fail on a refused TCP connection instead of waiting forever.
  const client = await mqtt.connectAsync(url, { reconnectPeriod: 0, connectTimeout: 5_000, ...options }, false);
  onTestFinished(() => client.endAsync(true));
  return client;
}

function tcpConnect(port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = createConnection({ host: '127.0.0.1', port }, () => {
      socket.end();
      resolve();
    });
    socket.once('error', reject);
  });
}

/** The next message on `topic` (subscribed by the caller). */
function nextMessage(client: MqttClient, topic: string): Promise<{ payload: string; retain: boolean }> {
  return new Promise((resolve) => {
    const onMessage = (t: string, payload: Buffer, packet: mqtt.IPublishPacket): void => {
      if (t !== topic) return;
      client.off('message', onMessage);
      resolve({ payload: payload.toString(), retain: packet.retain });
    };
    client.on('message', onMessage);
  });
}

describe('startMosquitto with users and an ACL', () => {
  let broker: MosquittoServer;
  beforeAll(async () => {
    broker = await startMosquitto({
      users: { 'edge-gate-1': 'edge-secret', guard: 'guard-secret' },
      acl: [
        'user edge-gate-1',
        'topic write checkpoint/v1/hq/gate-1/#',
        '',
        'user guard',
        'topic read checkpoint/v1/#',
      ].join('\n'),
    });
  });
  afterAll(async () => {
    await broker?.stop();
  });

  it('delivers a message from a writer to a reader allowed by the ACL', async () => {
    expect(broker.url).toBe(`mqtt://127.0.0.1:${broker.port}`);
    const guard = await connect(broker.url, { username: 'guard', password: 'guard-secret' });
    const edge = await connect(broker.url, { username: 'edge-gate-1', password: 'edge-secret' });
    const topic = 'checkpoint/v1/hq/gate-1/screening';
    await guard.subscribeAsync(topic, { qos: 1 });
    const received = nextMessage(guard, topic);
    await edge.publishAsync(topic, '{"decision":"pass"}', { qos: 1 });
    expect(await received).toEqual({ payload: '{"decision":"pass"}', retain: false });
  });

  it('refuses a publish the ACL does not allow (MQTT 5 PUBACK "Not authorized")', async () => {
    const guard = await connect(broker.url, { username: 'guard', password: 'guard-secret', protocolVersion: 5 });
    await expect(guard.publishAsync('checkpoint/v1/hq/gate-1/cmd', '{}', { qos: 1 })).rejects.toMatchObject({ code: 135 });
  });

  it('refuses anonymous clients', async () => {
    await expect(connect(broker.url)).rejects.toMatchObject({ code: 5 });
  });

  it('refuses a wrong password and an unknown user', async () => {
    await expect(connect(broker.url, { username: 'guard', password: 'not-the-password' })).rejects.toMatchObject({ code: 5 });
    await expect(connect(broker.url, { username: 'mallory', password: 'guard-secret' })).rejects.toMatchObject({ code: 5 });
  });
});

describe('startMosquitto stop/start', () => {
  it('keeps a retained message across a restart on the same port with persistence', async () => {
    const broker = await startMosquitto({ persistence: true });
    onTestFinished(() => broker.stop());
    const port = broker.port;
    const publisher = await connect(broker.url);
    await publisher.publishAsync('checkpoint/v1/hq/gate-1/state', '{"online":true}', { qos: 1, retain: true });
    await publisher.endAsync();

    await broker.stop();
    expect(broker.running).toBe(false);
    await expect(tcpConnect(port)).rejects.toMatchObject({ code: 'ECONNREFUSED' });

    await broker.start();
    expect(broker.running).toBe(true);
    expect(broker.port).toBe(port);
    const reader = await connect(broker.url);
    const received = nextMessage(reader, 'checkpoint/v1/hq/gate-1/state');
    await reader.subscribeAsync('checkpoint/v1/hq/gate-1/state', { qos: 1 });
    expect(await received).toEqual({ payload: '{"online":true}', retain: true });
  });

  it('loses retained messages across a restart without persistence', async () => {
    const broker = await startMosquitto();
    onTestFinished(() => broker.stop());
    const publisher = await connect(broker.url);
    await publisher.publishAsync('a/retained', 'x', { qos: 1, retain: true });
    await publisher.endAsync();
    await broker.restart();

    const reader = await connect(broker.url);
    const received = nextMessage(reader, 'a/retained');
    await reader.subscribeAsync('a/retained', { qos: 1 });
    // A marker published after subscribing arrives after any retained message would have.
    await reader.publishAsync('a/retained', 'fresh', { qos: 1 });
    expect(await received).toEqual({ payload: 'fresh', retain: false });
  });

  it('lets a reconnecting client ride out an outage (stop mid-test, then start)', async () => {
    const broker = await startMosquitto();
    onTestFinished(() => broker.stop());
    const client = await connect(broker.url, { reconnectPeriod: 100 });

    const offline = new Promise<void>((resolve) => client.once('offline', () => resolve()));
    await broker.stop();
    await offline;
    expect(client.connected).toBe(false);

    const reconnected = new Promise<void>((resolve) => client.once('connect', () => resolve()));
    await broker.start();
    await reconnected;
    expect(client.connected).toBe(true);
  });

  it('fails loudly when mosquitto is missing', async () => {
    await expect(startMosquitto({ binary: '/nonexistent/mosquitto' })).rejects.toThrow(
      /mosquitto not found: install Debian package mosquitto \(CI does this in \.ci\/run\)/,
    );
  });
});
