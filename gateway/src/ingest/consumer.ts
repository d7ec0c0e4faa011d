/**
 * The MQTT side of the gateway: a persistent session (clean: false, fixed client id) subscribed
 * with QoS 1, where a message is acknowledged (PUBACK) only after `handle` returned, i.e. after
 * it was stored durably. mqtt.js sends the PUBACK of a QoS 1 message when its `handleMessage`
 * hook calls back (MQTT 3.1.1; the `customHandleAcks` option only exists for MQTT 5, which
 * aedes does not speak). mqtt.js hands over the next message only after that callback, and
 * ignores an error passed to it (no PUBACK, no disconnect, nothing): so when `handle` throws
 * (database busy, disk full) the message is retried here, with backoff, until it is stored; then
 * it is acknowledged and the next one follows (order kept). If the connection drops meanwhile,
 * the retry stops: the broker redelivers the unacknowledged message on the new connection.
 * A refused CONNACK (bad credentials, id taken) is retried like a lost connection
 * (`reconnectOnConnackError`; mqtt.js gives up on the first refusal otherwise).
 */
import { readFileSync } from 'node:fs';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import type { Logger } from 'pino';
import { redactUrl, type GatewayConfig } from '../config.js';

export const SUBSCRIPTIONS = ['checkpoint/v1/#'] as const;

/** A message failing this often for a non-transient reason is set aside, not retried forever. */
const MAX_ATTEMPTS_UNLESS_TRANSIENT = 5;

/** Errors that retrying cures: the database busy, locked by another process, full, or an I/O hiccup. */
export function isTransient(err: Error | null): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && /^SQLITE_(BUSY|LOCKED|FULL|IOERR|CANTOPEN|PROTOCOL|NOMEM)/.test(code);
}
/** With a fleet: what robots publish (VDA 5050 §6.1), never `order`/`instantActions` (ours). */
export const FLEET_SUBSCRIPTIONS = ['state', 'connection', 'factsheet', 'visualization'].map((c) => `uagv/v2/+/+/${c}`);

export interface Consumer {
  client: MqttClient;
  /** Connected and subscribed. */
  connected(): boolean;
  /** A message is being retried because the store failed. */
  storeFailing(): boolean;
  publish(topic: string, payload: string): Promise<void>;
  close(): Promise<void>;
}

export function startConsumer(
  config: GatewayConfig['mqtt'],
  handle: (topic: string, payload: Buffer) => void,
  log: Logger,
  subscriptions: readonly string[] = SUBSCRIPTIONS,
  onRetry: () => void = () => undefined,
  /**
   * Keeps a message that fails for a reason retrying cannot cure (a bug, not a busy database),
   * so that it does not block everything behind it; may throw (then it is retried like the rest).
   */
  setAside: (topic: string, payload: Buffer, error: Error) => void = (_t, _p, error) => {
    throw error;
  },
): Consumer {
  const options: IClientOptions = {
    clientId: config.clientId,
    clean: false,
    protocolVersion: 4,
    keepalive: config.keepaliveS,
    reconnectPeriod: config.reconnectMs,
    connectTimeout: 10_000,
    resubscribe: false,
    reconnectOnConnackError: true,
    ...(config.username !== undefined ? { username: config.username } : {}),
    ...(config.password !== undefined ? { password: config.password } : {}),
    ...(config.caFile ? { ca: readFileSync(config.caFile) } : {}),
  };
  const client = mqtt.connect(config.url, options);

  let closing = false;
  // Messages waiting behind one the store refused (also across a reconnect, so order holds).
  let backlog = 0;
  let chain: Promise<void> = Promise.resolve();
  let lastStoreError = '';
  let lastStoreFailure: Error | null = null;

  /** One attempt; false (after logging a new cause) when the store threw. */
  const tryStore = (topic: string, payload: Buffer, attempt: number): boolean => {
    try {
      if (attempt > MAX_ATTEMPTS_UNLESS_TRANSIENT && !isTransient(lastStoreFailure)) {
        setAside(topic, payload, lastStoreFailure!);
        log.error({ err: lastStoreFailure!.message, topic: topic.slice(0, 200), attempts: attempt - 1 }, 'message set aside in ingest_failed (it failed every attempt, not for a busy or full database); acknowledging it');
        lastStoreFailure = null;
        lastStoreError = '';
        return true;
      }
      handle(topic, payload);
      lastStoreFailure = null;
      if (attempt > 1) log.info({ topic: topic.slice(0, 200), attempts: attempt }, 'message stored after retries; acknowledging it');
      lastStoreError = '';
      return true;
    } catch (err) {
      onRetry();
      lastStoreFailure = err as Error;
      const message = (err as Error).message;
      if (message !== lastStoreError) log.error({ err: message, topic: topic.slice(0, 200), attempt }, 'cannot store message; retrying before acknowledging it');
      lastStoreError = message;
      return false;
    }
  };

  /** Retries until stored (true), or until the connection that delivered it is gone or we close (false: the broker keeps it). */
  const storeWithRetry = async (topic: string, payload: Buffer, stream: unknown, firstAttempt: number): Promise<boolean> => {
    for (let attempt = firstAttempt; ; attempt++) {
      if (attempt > 1) await new Promise((resolve) => setTimeout(resolve, Math.min(config.storeRetryMaxMs, config.storeRetryMinMs * 2 ** (attempt - 2))));
      if (closing || client.stream !== stream) return false;
      if (tryStore(topic, payload, attempt)) return true;
    }
  };

  // Called by mqtt.js once per incoming PUBLISH, in order, one at a time; the PUBACK follows the callback.
  client.handleMessage = (packet, callback) => {
    if (packet.cmd !== 'publish') return callback();
    const payload = Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload);
    // Behind a message being retried (from an earlier connection), it waits its turn.
    const firstAttempt = backlog === 0 ? 2 : 1;
    if (backlog === 0 && tryStore(packet.topic, payload, 1)) return callback();
    // The store refused it: retry asynchronously (a synchronous wait would freeze the API and /healthz).
    const stream = client.stream;
    backlog++;
    chain = chain.then(async () => {
      try {
        const stored = await storeWithRetry(packet.topic, payload, stream, firstAttempt);
        // A PUBACK on a newer connection could acknowledge another message with the same packet id.
        if (stored && client.stream === stream && !closing) callback();
      } finally {
        backlog--;
      }
    });
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
    storeFailing: () => backlog > 0 && lastStoreError !== '',
    async publish(topic, payload) {
      await client.publishAsync(topic, payload, { qos: 1 });
    },
    async close() {
      closing = true;
      await client.endAsync();
    },
  };
}
