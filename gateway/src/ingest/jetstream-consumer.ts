/**
 * Cluster mode ingest (issue #18, docs/scale.md): gateway replicas read what devices publish to a
 * NATS cluster (nats-server with JetStream and its MQTT listener) instead of holding an MQTT
 * session of their own. Same `Consumer` interface and the same sink as the MQTT consumer.
 *
 * What nats-server 2.9 does with MQTT publishes (measured, see the tests):
 * - QoS 1: stored in the server's own stream `$MQTT_msgs` (subjects `$MQTT.msgs.>`, interest
 *   retention, R3 with `mqtt { stream_replicas: 3 }`) before the PUBACK, under subject
 *   `$MQTT.msgs.` + the topic with `/` → `.`. All replicas pull from ONE shared durable pull
 *   consumer on that stream (filter `$MQTT.msgs.checkpoint.v1.>`). It must exist before devices
 *   publish: interest retention keeps a message only for the consumers that exist when it
 *   arrives. (A separate stream capturing the same subjects lost acknowledged messages when its
 *   leader was killed: not used.)
 * - QoS 0 (telemetry): not stored anywhere; it reaches plain NATS subscribers only, so it is read
 *   on a plain subscription in a queue group the replicas share (each message to one replica).
 *   Plain subscribers also get QoS 1 messages; a header `Nmqtt-Pub: <qos>` tells them apart.
 *
 * A message is acknowledged only after the transaction holding it committed (ack, then one flush
 * per batch); one the store failed on is nak'd with a delay and comes back, to this replica or
 * another. Exactly-once effects come from the store's idempotency by message id, as after a
 * gateway crash between commit and PUBACK today. Order across messages is not kept (several
 * replicas, redeliveries): the store orders by the timestamps in the payloads.
 *
 * The fetch loop looks the consumer up again after any error: nats.js's `consume()` iterator
 * stalled for good after the consumer's leader moved to another node; a fresh `fetch()` recovers.
 *
 * Commands to devices go into `$MQTT_msgs` through JetStream (header `Nmqtt-Pub: 1`), so a device
 * subscribed with QoS 1 gets them as QoS 1, kept for it while it is offline. Their `cmd/ack`s come
 * through the shared consumer like any message, so to one replica, often not the one whose API
 * call waits for the ack: every replica also reads every ack on a plain subscription of its own
 * (`onCommandAck`, no queue group; nats-server hands MQTT QoS 1 publishes to plain subscribers too).
 *
 * Robot topics (VDA 5050) go over an MQTT connection of each replica instead: see
 * `jetStreamConsumerFor`.
 */
import { AckPolicy, DeliverPolicy, connect, headers, type ConsumerConfig, type JsMsg, type Msg, type NatsConnection, type Subscription } from 'nats';
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import mqtt from 'mqtt';
import type { Logger } from 'pino';
import { redactUrl, type GatewayConfig } from '../config.js';
import { isTransient, startConsumer, type Consumer, type IngestMessage, type SessionOptions } from './consumer.js';
import type { BatchResult } from './group-commit.js';

/** nats-server's MQTT message stream (internal name, pinned by test/jetstream-ingest.test.ts). */
export const MQTT_STREAM = '$MQTT_msgs';
/** Prefix of the stream's subjects: `$MQTT.msgs.checkpoint.v1.s.c.screening`. */
export const MQTT_STREAM_PREFIX = '$MQTT.msgs.';
/** What the gateway's durable consumer reads: every checkpoint topic stored as QoS 1. */
export const INGEST_FILTER = `${MQTT_STREAM_PREFIX}checkpoint.v1.>`;
/** Command acks: each replica reads all of them on a plain subscription (see the file comment). */
export const COMMAND_ACK_SUBJECT = 'checkpoint.v1.*.*.cmd.ack';
/** Channels devices publish with QoS 0 (never in the stream): read on a plain subscription. */
export const QOS0_SUBJECTS = ['checkpoint.v1.*.*.telemetry'] as const;
/** The header nats-server 2.9 puts on messages from MQTT clients: their QoS, `0` or `1`. */
export const MQTT_QOS_HEADER = 'Nmqtt-Pub';
/** QoS 0 messages waiting to be stored, at most (see receivePlain). */
const MAX_PLAIN_WAITING = 5_000;
/** Replies to the gateway's requests (API, fetches) come under this inbox prefix. */
export const GATEWAY_INBOX_PREFIX = '_INBOX';

/** `$MQTT.msgs.checkpoint.v1.s.c.screening` → `checkpoint/v1/s/c/screening`; undefined for anything else. */
export function topicOfStreamSubject(subject: string): string | undefined {
  if (!subject.startsWith(MQTT_STREAM_PREFIX)) return undefined;
  return topicOfSubject(subject.slice(MQTT_STREAM_PREFIX.length));
}

/** `checkpoint.v1.s.c.telemetry` → `checkpoint/v1/s/c/telemetry`; undefined when a level is empty. */
export function topicOfSubject(subject: string): string | undefined {
  const levels = subject.split('.');
  return levels.some((level) => level === '') ? undefined : levels.join('/');
}

/**
 * The stream subject a QoS 1 publish to `topic` is stored under. Throws for a topic NATS 2.9
 * cannot carry (a `.`, an empty level, wildcards, `$` topics).
 */
export function streamSubjectOfTopic(topic: string): string {
  const levels = topic.split('/');
  if (topic.startsWith('$') || levels.some((level) => level === '' || /[.*>+#\s]/.test(level))) {
    throw new Error(`topic ${JSON.stringify(topic.slice(0, 200))} cannot be published through NATS (empty level, ".", wildcard, space or "$")`);
  }
  return MQTT_STREAM_PREFIX + levels.join('.');
}

/** A message as the fetch loop hands it over: where it came from, and how to settle it. */
export interface FetchedMessage extends IngestMessage {
  /** 1 on first delivery. */
  deliveries: number;
  ack(): void;
  /** Deliver again after `delayMs` (to any replica). */
  nak(delayMs: number): void;
}

/** The gateway's sink; the PostgreSQL store answers with a promise, SQLite at once. */
export interface AsyncIngestSink {
  storeBatch(messages: readonly IngestMessage[]): BatchResult | Promise<BatchResult>;
}

export interface SettleOptions {
  /** First redelivery delay after a failure; doubles per delivery up to `retryMaxMs`. */
  retryMinMs: number;
  retryMaxMs: number;
  /** A message failing this many deliveries for a reason retrying does not cure is set aside. */
  maxAttemptsUnlessTransient: number;
  isTransient(error: Error): boolean;
  /** Keeps a message that cannot be stored (throws: then it is retried like the rest). */
  /** Keeps the message in ingest_failed; settles once stored (it is acknowledged only then). */
  setAside(message: IngestMessage, error: Error): void | Promise<void>;
}

export interface SettleOutcome {
  stored: number;
  setAside: number;
  /** Nak'd: delivered again later. */
  retried: number;
  /** The last store error, if any message failed. */
  error?: Error;
}

const redeliveryDelay = (o: SettleOptions, deliveries: number) => Math.min(o.retryMaxMs, o.retryMinMs * 2 ** Math.max(0, deliveries - 1));

/**
 * Stores a batch (one `storeBatch` call per run of messages the store takes together) and settles
 * each message: ack once committed, nak with backoff when the store failed on it, set aside (and
 * ack) one that failed too often for a reason retrying does not cure. Acks are sent by the caller's
 * flush after this returns. Never throws.
 */
export async function storeAndSettle(batch: readonly FetchedMessage[], sink: AsyncIngestSink, o: SettleOptions): Promise<SettleOutcome> {
  const outcome: SettleOutcome = { stored: 0, setAside: 0, retried: 0 };
  const fail = async (m: FetchedMessage, error: Error) => {
    outcome.error = error;
    if (m.deliveries >= o.maxAttemptsUnlessTransient && !o.isTransient(error)) {
      try {
        await o.setAside({ topic: m.topic, payload: m.payload }, error);
        outcome.setAside++;
        m.ack();
        return;
      } catch (asideError) {
        outcome.error = asideError as Error;
      }
    }
    outcome.retried++;
    m.nak(redeliveryDelay(o, m.deliveries));
  };
  let rest = batch;
  while (rest.length > 0) {
    let result: BatchResult;
    try {
      const answer = sink.storeBatch(rest.map(({ topic, payload }) => ({ topic, payload })));
      // Await only a promise: a synchronous store settles in the same turn.
      result = answer instanceof Promise ? await answer : answer;
    } catch (error) {
      // The transaction as a whole failed (BEGIN, COMMIT): nothing of this run is stored.
      for (const m of rest) await fail(m, error as Error);
      return outcome;
    }
    const stored = Math.max(0, Math.min(rest.length, Math.trunc(result.stored)));
    for (const m of rest.slice(0, stored)) m.ack();
    outcome.stored += stored;
    if (result.error) {
      await fail(rest[stored]!, result.error);
      rest = rest.slice(stored + 1);
    } else if (stored === 0) {
      // Nothing taken and no reason given: do not spin on it; it comes back later.
      for (const m of rest) await fail(m, new Error('the store took none of the batch'));
      return outcome;
    } else {
      // The rest was not tried (a message that must be stored alone): next run.
      rest = rest.slice(stored);
    }
  }
  return outcome;
}

/** One pull: messages as they arrive, until the batch is full or the request expires. */
export interface PullRound extends AsyncIterable<FetchedMessage> {
  /** Ends the round early (on close). */
  stop(): void;
}

export interface FetchLoopDeps {
  /** Looks the consumer up (again) and starts one pull; throws when the cluster cannot answer. */
  pull(): Promise<PullRound>;
  /** Stores and settles one gathered batch (`storeAndSettle`). */
  handle(batch: FetchedMessage[]): Promise<void>;
  /** Makes the acks of settled messages reach the server. */
  flush(): Promise<void>;
  /**
   * A round not ended by then is stopped and counted as an error (the consumer is looked up
   * again): a pull whose answer was lost with a killed node can leave nats.js's fetch iterator
   * waiting for good (seen: 50 messages stuck, no pull request left at the server).
   */
  roundTimeoutMs: number;
  /** A batch closes at this many messages, or `maxWaitMs` after its first arrived. */
  maxMessages: number;
  maxWaitMs: number;
  /** Wait before pulling again after an error (doubling, capped). */
  errorBackoffMinMs: number;
  errorBackoffMaxMs: number;
  onError(error: Error): void;
  /** A pull worked (after errors: the consumer is reachable again). */
  onPulled(): void;
  sleep(ms: number): Promise<void>;
}

export interface FetchLoop {
  /** Resolves when the loop has ended (after `stop`). */
  done: Promise<void>;
  stop(): void;
}

/**
 * Pulls rounds forever, gathering what arrives into batches (group commit: `maxMessages`, or
 * `maxWaitMs` after a batch's first message), each stored while the next gathers; after any
 * error it waits and starts over with a fresh lookup of the consumer.
 */
export function runFetchLoop(deps: FetchLoopDeps): FetchLoop {
  let stopped = false;
  let round: PullRound | null = null;
  let wake: (() => void) | null = null;

  const oneRound = async (): Promise<void> => {
    const current = await deps.pull();
    round = current;
    deps.onPulled();
    let timedOut = false;
    const watchdog = setTimeout(() => {
      timedOut = true;
      current.stop();
    }, deps.roundTimeoutMs);
    let pending: FetchedMessage[] = [];
    let chain = Promise.resolve();
    let timer: NodeJS.Timeout | null = null;
    const close = () => {
      if (timer) clearTimeout(timer);
      timer = null;
      const batch = pending;
      pending = [];
      if (batch.length === 0) return;
      chain = chain.then(async () => {
        await deps.handle(batch);
        await deps.flush();
      });
    };
    try {
      for await (const m of current) {
        pending.push(m);
        if (pending.length >= deps.maxMessages) close();
        else timer ??= setTimeout(close, deps.maxWaitMs);
        if (stopped) break;
      }
    } finally {
      clearTimeout(watchdog);
      // What arrived is stored (and acked) even when the round ended with an error.
      if (!stopped) close();
      else {
        if (timer) clearTimeout(timer);
        // Handed back at once, not after ack_wait: another replica takes it.
        for (const m of pending) m.nak(0);
        if (pending.length > 0) chain = chain.then(() => deps.flush());
      }
      await chain;
      round = null;
    }
    if (timedOut && !stopped) throw new Error(`a pull did not end within ${deps.roundTimeoutMs} ms`);
  };

  const done = (async () => {
    let backoff = deps.errorBackoffMinMs;
    while (!stopped) {
      try {
        await oneRound();
        backoff = deps.errorBackoffMinMs;
      } catch (error) {
        if (stopped) break;
        deps.onError(error as Error);
        await Promise.race([deps.sleep(backoff), new Promise<void>((resolve) => (wake = resolve))]);
        wake = null;
        backoff = Math.min(deps.errorBackoffMaxMs, backoff * 2);
      }
    }
  })();

  return {
    done,
    stop() {
      stopped = true;
      (round as PullRound | null)?.stop();
      wake?.();
    },
  };
}

/**
 * The MQTT section: its store retry applies here too; its URL and user, when a user is set, are
 * used once to make nats-server create its MQTT streams if they do not exist yet (see below).
 */
type MqttSection = Pick<GatewayConfig['mqtt'], 'storeRetryMinMs' | 'storeRetryMaxMs'> & Partial<Pick<GatewayConfig['mqtt'], 'url' | 'urls' | 'username' | 'password' | 'caFile'>>;

/** A message failing this often for a non-transient reason is set aside (as in consumer.ts). */
const MAX_ATTEMPTS_UNLESS_TRANSIENT = 5;

/** Checkpoint topics: read from the stream (and the QoS 0 queue group), commands published into it. */
const isCheckpointTopic = (topicOrFilter: string) => topicOrFilter.startsWith('checkpoint/v1/');

/**
 * The robot fleet's session in cluster mode: clean and QoS 0. Each replica holds its own (every
 * replica must see the robots; the leading one acts, see fleet-service.ts), so nothing is kept for
 * a replica that is away. Robots repeat their state (VDA 5050: at least every 30 s), and on
 * every (re)subscribe nats-server sends the retained `connection` and `factsheet`.
 */
export const ROBOT_SESSION: SessionOptions = { clean: true, qos: 0 };

/**
 * The robot connection's client id: one per process, since replicas often share `mqtt.clientId`'s
 * default and nats-server closes the older of two connections with one id (they would take
 * turns forever).
 */
export function robotClientId(clientId: string): string {
  // At most 128 characters (the config's limit), shortening the configured part: the suffix is what makes it unique.
  const suffix = `-robots-${hostname().slice(0, 40)}-${process.pid}`;
  return clientId.slice(0, 128 - suffix.length) + suffix;
}

/**
 * Starts cluster mode's ingest; same signature as `startConsumer` after the NATS section, so the
 * composition root picks one by `ingest.source`. Checkpoint topics come from the stream (below);
 * other subscriptions (the robot fleet's `uagv/v2/...`) over an MQTT connection of this replica
 * to the cluster (`mqtt.urls`, every node), in a clean session at QoS 0 (ROBOT_SESSION).
 *
 * Why MQTT and not a plain NATS subscription: robots' `connection` and `factsheet` are retained,
 * and only an MQTT subscription gets the retained messages (a replica started after the robots
 * would see them as UNKNOWN); and an order published over MQTT with QoS 1 reaches the robot
 * whichever QoS it subscribed with, where a JetStream publish reaches QoS 1 subscribers only.
 */
export function jetStreamConsumerFor(nats: GatewayConfig['nats'], onCommandAck?: JetStreamConsumerOptions['onCommandAck']) {
  return (
    mqtt: GatewayConfig['mqtt'],
    groupCommit: GatewayConfig['ingest'],
    sink: AsyncIngestSink,
    log: Logger,
    subscriptions: readonly string[] = [],
    onRetry: () => void = () => undefined,
    setAside: (topic: string, payload: Buffer, error: Error) => void | Promise<void> = (_t, _p, error) => {
      throw error;
    },
  ): Omit<Consumer, 'client'> => {
    const devices = startJetStreamConsumer({ nats, retry: mqtt, groupCommit, sink, log, onRetry, setAside, ...(onCommandAck ? { onCommandAck } : {}) });
    const robotFilters = subscriptions.filter((filter) => !isCheckpointTopic(filter));
    if (robotFilters.length === 0) return devices;
    const robots = startConsumer({ ...mqtt, clientId: robotClientId(mqtt.clientId) }, groupCommit, sink, log.child({ connection: 'robots' }), robotFilters, onRetry, setAside, ROBOT_SESSION);
    return {
      connected: () => devices.connected() && robots.connected(),
      storeFailing: () => devices.storeFailing() || robots.storeFailing(),
      publish: (topic, payload) => (isCheckpointTopic(topic) ? devices.publish(topic, payload) : robots.publish(topic, payload)),
      async close() {
        await Promise.all([devices.close(), robots.close()]);
      },
    };
  };
}

export interface JetStreamConsumerOptions {
  nats: GatewayConfig['nats'];
  retry: MqttSection;
  groupCommit: Pick<GatewayConfig['ingest'], 'batchMaxMessages' | 'batchMaxWaitMs'>;
  sink: AsyncIngestSink;
  log: Logger;
  onRetry?: () => void;
  setAside?: (topic: string, payload: Buffer, error: Error) => void | Promise<void>;
  /** Every device's `cmd/ack`, to this replica as to every other (not stored: the stream's copy is). */
  onCommandAck?: (topic: string, payload: Buffer) => void;
}

/** The durable pull consumer every replica shares. */
export function ingestConsumerConfig(nats: GatewayConfig['nats']): Partial<ConsumerConfig> {
  return {
    durable_name: nats.durable,
    filter_subject: INGEST_FILTER,
    ack_policy: AckPolicy.Explicit,
    // Also what was stored before the consumer existed and is still kept (commands for offline devices, retained state).
    deliver_policy: DeliverPolicy.All,
    ack_wait: nats.ackWaitS * 1_000_000_000,
    max_ack_pending: Math.max(1000, nats.fetchBatch * 4),
  };
}

export function startJetStreamConsumer(o: JetStreamConsumerOptions): Omit<Consumer, 'client'> {
  const { nats, log } = o;
  const onRetry = o.onRetry ?? (() => undefined);
  const setAside = o.setAside ?? ((_t: string, _p: Buffer, error: Error) => {
    throw error;
  });
  const servers = nats.servers.map(redactUrl);
  let nc: NatsConnection | null = null;
  let closing = false;
  let pulling = false;
  let failing = false;
  let lastError = '';
  let lastPullError = '';
  let consumerReady = false;
  let plain: Subscription[] = [];
  let loop: FetchLoop | null = null;

  const settleOptions: SettleOptions = {
    retryMinMs: o.retry.storeRetryMinMs,
    retryMaxMs: o.retry.storeRetryMaxMs,
    maxAttemptsUnlessTransient: MAX_ATTEMPTS_UNLESS_TRANSIENT,
    isTransient,
    setAside: async (m, error) => {
      await setAside(m.topic, m.payload, error);
      log.error({ err: error.message, topic: m.topic.slice(0, 200) }, 'message set aside in ingest_failed (it failed every delivery, not for a busy or full database); acknowledging it');
    },
  };

  const handle = async (batch: FetchedMessage[]): Promise<void> => {
    const outcome = await storeAndSettle(batch, o.sink, settleOptions);
    if (outcome.error) {
      onRetry();
      if (!failing || outcome.error.message !== lastError) log.error({ err: outcome.error.message, retried: outcome.retried }, 'cannot store messages; they are delivered again later');
      lastError = outcome.error.message;
      failing = true;
    } else if (failing) {
      failing = false;
      lastError = '';
      log.info('storing again');
    }
  };

  /** Creates the durable consumer unless it exists; refuses one with another filter. */
  const ensureConsumer = async (conn: NatsConnection) => {
    const jsm = await conn.jetstreamManager({ checkAPI: false });
    try {
      const info = await jsm.consumers.info(MQTT_STREAM, nats.durable);
      if (info.config.filter_subject !== INGEST_FILTER) {
        throw new Error(`consumer ${nats.durable} on ${MQTT_STREAM} exists with filter ${JSON.stringify(info.config.filter_subject)}, not ${INGEST_FILTER}: delete it or set nats.durable`);
      }
      if (info.config.ack_wait !== nats.ackWaitS * 1_000_000_000) {
        log.warn({ durable: nats.durable, ackWaitS: (info.config.ack_wait ?? 0) / 1e9 }, 'the existing ingest consumer keeps its ack wait; nats.ackWaitS applies when it is created');
      }
    } catch (error) {
      const text = (error as Error).message;
      if (/stream not found/i.test(text)) {
        await createMqttStreams();
        throw new Error(`stream ${MQTT_STREAM} not found: nats-server creates it at the first MQTT connection (is the MQTT listener on, with JetStream?)`, { cause: error });
      }
      if (!/consumer not found/i.test(text)) throw error;
      await jsm.consumers.add(MQTT_STREAM, ingestConsumerConfig(nats));
      log.info({ stream: MQTT_STREAM, durable: nats.durable, filter: INGEST_FILTER }, 'created the durable ingest consumer');
    }
    consumerReady = true;
  };

  /**
   * nats-server 2.9 creates `$MQTT_msgs` at the first MQTT connection. The consumer must exist
   * before devices publish (interest retention), so a gateway started before the devices
   * connects once itself (its MQTT user) and creates the consumer on the next round.
   */
  const createMqttStreams = async () => {
    const { username, password, caFile } = o.retry;
    // Any node will do: the stream is the cluster's.
    const url = o.retry.urls?.[0] ?? o.retry.url;
    if (!url || username === undefined) return;
    try {
      const client = await mqtt.connectAsync(url, {
        username,
        ...(password !== undefined ? { password } : {}),
        ...(caFile ? { ca: readFileSync(caFile) } : {}),
        clientId: `${nats.durable}-bootstrap-${process.pid}`,
        clean: true,
        reconnectPeriod: 0,
        connectTimeout: 5000,
      });
      await client.endAsync();
      log.info({ url: redactUrl(url) }, `connected once over MQTT so that nats-server creates ${MQTT_STREAM}`);
    } catch (error) {
      log.warn({ err: (error as Error).message, url: redactUrl(url) }, `cannot connect over MQTT to make nats-server create ${MQTT_STREAM}`);
    }
  };

  const toFetched = (m: JsMsg): FetchedMessage | null => {
    const topic = topicOfStreamSubject(m.subject);
    if (topic === undefined) {
      m.term(); // cannot be a checkpoint topic: never deliver it again
      return null;
    }
    return {
      topic,
      payload: Buffer.from(m.data),
      deliveries: m.info.redeliveryCount,
      ack: () => m.ack(),
      nak: (delayMs) => m.nak(delayMs),
    };
  };

  const started = (async () => {
    const conn = await connect({
      servers: nats.servers,
      ...(nats.user !== undefined ? { user: nats.user } : {}),
      ...(nats.password !== undefined ? { pass: nats.password } : {}),
      name: `checkpoint-gateway ${nats.durable}`,
      waitOnFirstConnect: true,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 1000,
      reconnectJitter: 500,
      inboxPrefix: GATEWAY_INBOX_PREFIX,
    });
    if (closing) {
      await conn.close();
      return;
    }
    nc = conn;
    log.info({ servers, durable: nats.durable }, 'connected to the NATS cluster');
    void (async () => {
      for await (const s of conn.status()) {
        if (s.type === 'disconnect' || s.type === 'reconnect') log.warn({ status: s.type, server: typeof s.data === 'string' ? s.data.replace(/^.*@/, '') : undefined }, 'NATS connection');
      }
    })();

    // QoS 0 telemetry: one copy per message to one replica of the queue group.
    plain = QOS0_SUBJECTS.map((subject) =>
      conn.subscribe(subject, { queue: nats.durable, callback: (error, m) => (error ? log.warn({ err: error.message, subject }, 'QoS 0 subscription') : void receivePlain(m)) }),
    );
    const onCommandAck = o.onCommandAck;
    if (onCommandAck) {
      plain.push(
        conn.subscribe(COMMAND_ACK_SUBJECT, {
          callback: (error, m) => {
            if (error) return log.warn({ err: error.message, subject: COMMAND_ACK_SUBJECT }, 'command ack subscription');
            const topic = topicOfSubject(m.subject);
            if (topic && !closing) onCommandAck(topic, Buffer.from(m.data));
          },
        }),
      );
    }

    const js = conn.jetstream();
    loop = runFetchLoop({
      async pull() {
        if (!consumerReady) await ensureConsumer(conn);
        const consumer = await js.consumers.get(MQTT_STREAM, nats.durable);
        const messages = await consumer.fetch({ max_messages: nats.fetchBatch, expires: nats.fetchExpiresMs });
        return {
          stop: () => void messages.stop(),
          async *[Symbol.asyncIterator]() {
            for await (const m of messages) {
              const f = toFetched(m);
              if (f) yield f;
            }
          },
        };
      },
      handle,
      flush: async () => {
        // Acks are fire-and-forget; a flush round trip makes sure the server has them. Bounded:
        // during a reconnect it may not answer (an ack that did not arrive means a redelivery).
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([conn.flush().catch(() => undefined), new Promise((resolve) => (timer = setTimeout(resolve, 5000)))]);
        clearTimeout(timer);
      },
      roundTimeoutMs: nats.fetchExpiresMs + 5000,
      maxMessages: o.groupCommit.batchMaxMessages,
      maxWaitMs: o.groupCommit.batchMaxWaitMs,
      errorBackoffMinMs: 100,
      errorBackoffMaxMs: 2000,
      onError(error) {
        pulling = false;
        if (error.message !== lastPullError) log.warn({ err: error.message }, 'cannot pull from the ingest consumer; looking it up again');
        lastPullError = error.message;
        if (/not found/i.test(error.message)) consumerReady = false;
      },
      onPulled() {
        if (!pulling && lastPullError) log.info('pulling from the ingest consumer again');
        pulling = true;
        lastPullError = '';
      },
      sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
    });
  })().catch((error: Error) => {
    log.error({ err: error.message, servers }, 'cannot connect to the NATS cluster');
  });

  // Telemetry arrives at most once and is not acknowledged (QoS 0). It is stored by group commit
  // too (one transaction at a time; what arrives meanwhile goes in the next, up to the batch size):
  // at 10,000 checkpoints sending every 10 s that is 1,000 messages/s, too many for a transaction
  // each. At most MAX_PLAIN_WAITING wait, so that a slow store does not queue them without bound
  // in front of the stream's batches (which would then pass their ack wait and come again); past
  // that, QoS 0 messages are dropped, as a broker drops them for a slow subscriber.
  let plainWaiting: IngestMessage[] = [];
  let plainStoring: Promise<void> | null = null;
  let plainDropped = 0;
  let lastPlainError = '';
  const receivePlain = (m: Msg) => {
    if (closing) return;
    // QoS 1 copies of the same subjects come through the stream.
    if (m.headers?.get(MQTT_QOS_HEADER) !== '0') return;
    const topic = topicOfSubject(m.subject);
    if (!topic) return;
    if (plainWaiting.length >= MAX_PLAIN_WAITING) {
      if (plainDropped++ % 1000 === 0) log.warn({ dropped: plainDropped }, 'QoS 0 messages arrive faster than the store takes them; dropping some (as a broker would)');
      return;
    }
    plainWaiting.push({ topic, payload: Buffer.from(m.data) });
    // From the next turn of the event loop: the messages of one socket read go in one batch.
    plainStoring ??= new Promise<void>((resolve) => setImmediate(resolve))
      .then(storePlain)
      .finally(() => (plainStoring = null));
  };
  const storePlain = async () => {
    while (plainWaiting.length > 0 && !closing) {
      const batch = plainWaiting.slice(0, o.groupCommit.batchMaxMessages);
      plainWaiting = plainWaiting.slice(batch.length);
      // storeBatch stores a prefix: what follows a failing message is handed over again, without it.
      for (let from = 0; from < batch.length; ) {
        let result: BatchResult;
        try {
          const answer = o.sink.storeBatch(batch.slice(from));
          result = answer instanceof Promise ? await answer : answer;
        } catch (error) {
          result = { stored: 0, error: error as Error };
        }
        if (result.error) {
          // Once per distinct cause, not once per message during an outage.
          if (result.error.message !== lastPlainError) log.warn({ err: result.error.message, topic: batch[from + result.stored]!.topic.slice(0, 200) }, 'cannot store a QoS 0 message; dropped (as the broker would)');
          lastPlainError = result.error.message;
          from += result.stored + 1;
        } else {
          lastPlainError = '';
          if (result.stored === 0) break;
          from += result.stored;
        }
      }
    }
  };

  return {
    connected: () => nc !== null && !nc.isClosed() && pulling && plain.length > 0 && plain.every((s) => !s.isClosed()),
    storeFailing: () => failing,
    async publish(topic, payload) {
      if (!nc || nc.isClosed()) throw new Error('not connected to the NATS cluster');
      const h = headers();
      // What nats-server's MQTT side stores with a QoS 1 publish; the device gets it as QoS 1.
      h.set(MQTT_QOS_HEADER, '1');
      await nc.jetstream().publish(streamSubjectOfTopic(topic), Buffer.from(payload), { headers: h });
    },
    async close() {
      closing = true;
      // A connect still under way (cluster unreachable) is not waited for: it closes itself.
      await Promise.race([started, new Promise((resolve) => setTimeout(resolve, 2000).unref())]);
      loop?.stop();
      await loop?.done;
      await plainStoring;
      if (nc && !nc.isClosed()) await nc.drain().catch(() => nc?.close());
    },
  };
}
