/**
 * The MQTT side of the gateway: a persistent session (clean: false, fixed client id) subscribed
 * with QoS 1, where a message is acknowledged (PUBACK) only after the transaction that stored it
 * committed, with group commit (ingest/group-commit.ts): messages arriving while a batch gathers
 * or is stored go into the next batch, one transaction each.
 *
 * How mqtt.js acknowledges (read in node_modules/mqtt/build/lib/handlers/publish.js, v5): for a
 * QoS 1 PUBLISH it calls our `handleMessage(packet, callback)`; `callback()` sends the PUBACK and
 * only then lets the next parsed packet through; `callback(error)` lets the next packet through
 * *without* a PUBACK (and nothing else). The `customHandleAcks` option only exists for MQTT 5,
 * which aedes does not speak. So each message is handed on with `callback(ACK_LATER)` at once
 * (the next one can join the batch), and its PUBACK is sent by us after its batch committed, on
 * the same connection only (a PUBACK on a newer connection could acknowledge another message
 * with the same packet id). If the connection drops first, the broker delivers the message again
 * and the store recognises it (exactly-once effects, as after a kill -9 between commit and PUBACK).
 *
 * When the store throws (database busy, disk full) the message is retried here, with backoff,
 * until it is stored; later messages wait behind it (order kept), and past one batch of them
 * mqtt.js is paused, so the backlog stays in the broker. A message failing for a reason retrying
 * cannot cure is set aside. A refused CONNACK (bad credentials, id taken) is retried like a lost
 * connection (`reconnectOnConnackError`; mqtt.js gives up on the first refusal otherwise).
 */
import { readFileSync } from 'node:fs';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import type { Logger } from 'pino';
import { serverList } from '@checkpoint/protocol';
import { redactUrl, type GatewayConfig } from '../config.js';
import { createGroupCommitter, type BatchResult } from './group-commit.js';

export const SUBSCRIPTIONS = ['checkpoint/v1/#'] as const;

/** A message failing this often for a non-transient reason is set aside, not retried forever. */
const MAX_ATTEMPTS_UNLESS_TRANSIENT = 5;

/**
 * Errors that retrying cures: the database busy, locked by another process, full, or an I/O
 * hiccup (SQLite); on PostgreSQL a lost or refused connection (class 08, socket errors), the
 * server shutting down or out of resources (57P, 53), a serialization failure or deadlock (40).
 */
export function isTransient(err: Error | null): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && /^SQLITE_(BUSY|LOCKED|FULL|IOERR|CANTOPEN|PROTOCOL|NOMEM)/.test(code)) return true;
  if (typeof code === 'string' && /^(08|53|57P|40001|40P01|ECONN|ETIMEDOUT|EPIPE|ENOTFOUND|EAI_AGAIN)/.test(code)) return true;
  // node-postgres reports a connection that ended under a query without a code.
  return !!err && /Connection terminated|connection timeout|timeout exceeded when trying to connect|Client has encountered a connection error/i.test(err.message);
}
/** With a fleet: what robots publish (VDA 5050 §6.1), never `order`/`instantActions` (ours). */
export const FLEET_SUBSCRIPTIONS = ['state', 'connection', 'factsheet', 'visualization'].map((c) => `uagv/v2/+/+/${c}`);

/**
 * How the broker keeps the gateway's session. The default: persistent (clean: false) and QoS 1,
 * so that nothing published while the gateway is away is lost. Cluster mode's robot connection
 * (jetstream-consumer.ts) is a clean session at QoS 0 instead.
 */
export interface SessionOptions {
  clean: boolean;
  qos: 0 | 1;
}
export const PERSISTENT_SESSION: SessionOptions = { clean: false, qos: 1 };

export interface Consumer {
  client: MqttClient;
  /** Connected and subscribed. */
  connected(): boolean;
  /** A message is being retried because the store failed. */
  storeFailing(): boolean;
  publish(topic: string, payload: string): Promise<void>;
  close(): Promise<void>;
}

/** A message as the store gets it. */
export interface IngestMessage {
  topic: string;
  payload: Buffer;
}

/** Where messages are stored: a batch in one transaction (see `GroupCommitDeps.storeBatch`); a promise on a server database. */
export interface IngestSink {
  storeBatch(messages: readonly IngestMessage[]): BatchResult | Promise<BatchResult>;
}

/** Hands a message on to mqtt.js's next packet without a PUBACK (see the file comment). */
const ACK_LATER = new Error('acknowledged after its batch commits');

interface Delivered extends IngestMessage {
  /** The connection it came on: its PUBACK goes there or nowhere. */
  stream: unknown;
  /** Undefined for QoS 0 (nothing to acknowledge). */
  messageId: number | undefined;
}

export function startConsumer(
  config: GatewayConfig['mqtt'],
  groupCommit: GatewayConfig['ingest'],
  sink: IngestSink,
  log: Logger,
  subscriptions: readonly string[] = SUBSCRIPTIONS,
  onRetry: () => void = () => undefined,
  /**
   * Keeps a message that fails for a reason retrying cannot cure (a bug, not a busy database),
   * so that it does not block everything behind it; may throw (then it is retried like the rest).
   */
  setAside: (topic: string, payload: Buffer, error: Error) => void | Promise<void> = (_t, _p, error) => {
    throw error;
  },
  session: SessionOptions = PERSISTENT_SESSION,
): Consumer {
  const options: IClientOptions = {
    clientId: config.clientId,
    clean: session.clean,
    // Every node of a cluster (mqtt.urls), tried in turn on each reconnect.
    ...(config.urls?.length ? { servers: serverList(config.urls, 0) } : {}),
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
  const client = mqtt.connect(config.urls?.[0] ?? config.url, options);

  let closing = false;
  let lastStoreError = '';
  let lastStoreFailure: Error | null = null;

  const storeAlone = async (topic: string, payload: Buffer) => {
    const answer = sink.storeBatch([{ topic, payload }]);
    const result = answer instanceof Promise ? await answer : answer;
    if (result.error) throw result.error;
    if (result.stored !== 1) throw new Error('the store did not take a message stored alone');
  };

  const noteFailure = (err: Error, topic: string, attempt: number) => {
    onRetry();
    lastStoreFailure = err;
    if (err.message !== lastStoreError) log.error({ err: err.message, topic: topic.slice(0, 200), attempt }, 'cannot store message; retrying before acknowledging it');
    lastStoreError = err.message;
  };

  /** One attempt; false (after logging a new cause) when the store threw. */
  const tryStore = async (topic: string, payload: Buffer, attempt: number): Promise<boolean> => {
    try {
      if (attempt > MAX_ATTEMPTS_UNLESS_TRANSIENT && !isTransient(lastStoreFailure)) {
        await setAside(topic, payload, lastStoreFailure!);
        log.error({ err: lastStoreFailure!.message, topic: topic.slice(0, 200), attempts: attempt - 1 }, 'message set aside in ingest_failed (it failed every attempt, not for a busy or full database); acknowledging it');
        lastStoreFailure = null;
        lastStoreError = '';
        return true;
      }
      await storeAlone(topic, payload);
      lastStoreFailure = null;
      if (attempt > 1) log.info({ topic: topic.slice(0, 200), attempts: attempt }, 'message stored after retries; acknowledging it');
      lastStoreError = '';
      return true;
    } catch (err) {
      noteFailure(err as Error, topic, attempt);
      return false;
    }
  };

  /** Retries until stored (true), or until the connection that delivered it is gone or we close (false: the broker keeps it). */
  const storeWithRetry = async (m: Delivered, firstError: Error | null): Promise<boolean> => {
    let firstAttempt = 1;
    if (firstError) {
      // Its try inside the batch was attempt 1.
      noteFailure(firstError, m.topic, 1);
      firstAttempt = 2;
    }
    for (let attempt = firstAttempt; ; attempt++) {
      if (attempt > 1) await new Promise((resolve) => setTimeout(resolve, Math.min(config.storeRetryMaxMs, config.storeRetryMinMs * 2 ** (attempt - 2))));
      if (closing || client.stream !== m.stream) return false;
      if (await tryStore(m.topic, m.payload, attempt)) return true;
    }
  };

  const committer = createGroupCommitter<Delivered>(
    { maxMessages: groupCommit.batchMaxMessages, maxWaitMs: groupCommit.batchMaxWaitMs },
    {
      storeBatch: (messages) => sink.storeBatch(messages),
      storeOne: storeWithRetry,
      ack(m) {
        if (m.messageId === undefined || closing || client.stream !== m.stream || !client.connected) return;
        // mqtt.js has no public call for this; `_sendPacket` is what its own acknowledgement uses.
        (client as unknown as { _sendPacket(packet: { cmd: 'puback'; messageId: number }): void })._sendPacket({ cmd: 'puback', messageId: m.messageId });
      },
      wanted: (m) => !closing && client.stream === m.stream,
      setTimer: (fn, ms) => setTimeout(fn, ms),
      clearTimer: (handle) => clearTimeout(handle as NodeJS.Timeout),
      onBatchFailed(err, size) {
        log.warn({ err: err.message, size }, 'a batch could not be stored as one transaction; storing its messages one by one');
      },
    },
  );

  // Called by mqtt.js once per incoming PUBLISH, in order; the next one follows `callback`.
  client.handleMessage = (packet, callback) => {
    if (packet.cmd !== 'publish') return callback();
    const payload = Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload);
    committer.push(
      { topic: packet.topic, payload, stream: client.stream, messageId: packet.qos > 0 ? packet.messageId : undefined },
      () => callback(ACK_LATER),
    );
  };

  let lastError = '';
  // Connected *and* subscribed: until the SUBACK, a new session would miss messages.
  let subscribed = false;
  client.on('close', () => {
    subscribed = false;
  });
  client.on('connect', (connack) => {
    lastError = '';
    const socket = client.stream as { remoteAddress?: string; remotePort?: number };
    const where = config.urls?.length ? { cluster: config.urls.map(redactUrl), node: `${socket.remoteAddress}:${socket.remotePort}` } : { url: redactUrl(config.url) };
    log.info({ ...where, clientId: config.clientId, sessionPresent: connack.sessionPresent }, 'connected to broker');
    client.subscribe([...subscriptions], { qos: session.qos }, (err, granted) => {
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
    storeFailing: () => committer.retrying && lastStoreError !== '',
    async publish(topic, payload) {
      await client.publishAsync(topic, payload, { qos: 1 });
    },
    async close() {
      // What is gathered now is stored and acknowledged before the goodbye; the rest stays with the broker.
      committer.flush();
      // A batch in flight (server database) is acknowledged when it commits, before the goodbye.
      await committer.idle();
      closing = true;
      committer.close();
      await client.endAsync();
    },
  };
}
