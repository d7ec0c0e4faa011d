/**
 * The MQTT side of the gateway: a persistent session (clean: false, fixed client id) subscribed
 * with QoS 1, where a message is acknowledged (PUBACK) only after `handle` returned, i.e. after
 * it was stored durably. mqtt.js sends the PUBACK of a QoS 1 message when its `handleMessage`
 * hook calls back (MQTT 3.1.1; the `customHandleAcks` option only exists for MQTT 5, which
 * aedes does not speak). If `handle` throws, no PUBACK is sent, the connection is dropped and
 * the broker delivers the message again on reconnect.
 */
import { readFileSync } from 'node:fs';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import type { Logger } from 'pino';
import { redactUrl, type GatewayConfig } from '../config.js';

export const SUBSCRIPTIONS = ['checkpoint/v1/#'] as const;
/** With a fleet: what robots publish (VDA 5050 §6.1), never `order`/`instantActions` (ours). */
export const FLEET_SUBSCRIPTIONS = ['state', 'connection', 'factsheet', 'visualization'].map((c) => `uagv/v2/+/+/${c}`);

export interface Consumer {
  client: MqttClient;
  /** Connected and subscribed. */
  connected(): boolean;
  publish(topic: string, payload: string): Promise<void>;
  close(): Promise<void>;
}

export function startConsumer(
  config: GatewayConfig['mqtt'],
  handle: (topic: string, payload: Buffer) => void,
  log: Logger,
  subscriptions: readonly string[] = SUBSCRIPTIONS,
): Consumer {
  const options: IClientOptions = {
    clientId: config.clientId,
    clean: false,
    protocolVersion: 4,
    keepalive: config.keepaliveS,
    reconnectPeriod: config.reconnectMs,
    connectTimeout: 10_000,
    resubscribe: false,
    ...(config.username !== undefined ? { username: config.username } : {}),
    ...(config.password !== undefined ? { password: config.password } : {}),
    ...(config.caFile ? { ca: readFileSync(config.caFile) } : {}),
  };
  const client = mqtt.connect(config.url, options);

  // Called by mqtt.js once per incoming PUBLISH, in order, one at a time; the PUBACK follows the callback.
  client.handleMessage = (packet, callback) => {
    if (packet.cmd !== 'publish') return callback();
    try {
      handle(packet.topic, Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload));
      callback();
    } catch (err) {
      log.error({ err: (err as Error).message, topic: packet.topic }, 'cannot store message; not acknowledging it (the broker will redeliver)');
      callback(err as Error);
    }
  };

  let lastError = '';
  // Connected *and* subscribed: until the SUBACK, a new session would miss messages.
  let subscribed = false;
  client.on('close', () => {
    subscribed = false;
  });
  client.on('connect', (connack) => {
    lastError = '';
    log.info({ url: redactUrl(config.url), clientId: config.clientId, sessionPresent: connack.sessionPresent }, 'connected to broker');
    client.subscribe([...subscriptions], { qos: 1 }, (err, granted) => {
      const refused = granted?.filter((g) => g.qos === 128).map((g) => g.topic) ?? [];
      if (err || refused.length) log.error({ err: err?.message, refused }, 'subscription refused (is the MQTT user of role gateway?)');
      else subscribed = true;
    });
  });
  client.on('error', (err) => {
    // mqtt.js retries by itself; say it once per distinct cause, not once per attempt.
    if (err.message !== lastError) log.warn({ err: err.message }, 'broker connection problem');
    lastError = err.message;
  });

  return {
    client,
    connected: () => client.connected && subscribed,
    async publish(topic, payload) {
      await client.publishAsync(topic, payload, { qos: 1 });
    },
    async close() {
      await client.endAsync();
    },
  };
}
