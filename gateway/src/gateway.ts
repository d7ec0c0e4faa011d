/**
 * `createGateway`: the composition root. It wires config to components —
 *   MQTT consumer -> group commit -> classify -> operational store (+ spool, alerts, events) -> PUBACK
 *   spool -> SpoolWriter -> series store (InfluxDB or SQLite)
 *   fastify API (auth, alerts, screenings, stats, devices, snapshots, live feed, commands)
 * plus the periodic alert check and the retention job. Embeddable (demo, tests): port 0 works,
 * and `close()` undoes everything.
 *
 * The operational store is SQLite (embedded, the default) or PostgreSQL (`store.backend`), where
 * several gateways share one database: each ingests what it receives (a screening id is stored
 * once), and the once-only jobs (alert check, retention, spool -> series store) run on the one
 * holding the leadership lock (cluster/), which also sends roll-out commands.
 */
import pg from 'pg';
import pino, { type Logger } from 'pino';
import { monotonicFactory } from 'ulid';
import { createApi } from './api/server.js';
import { LiveFeed } from './api/live.js';
import { CommandDispatcher } from './commands.js';
import { parseInfluxUrl, redactUrl, resolveGatewayConfig, type GatewayConfig } from './config.js';
import { classifyMessage, type Classified } from './ingest/classify.js';
import { FLEET_SUBSCRIPTIONS, startConsumer, SUBSCRIPTIONS, type Consumer, type IngestMessage } from './ingest/consumer.js';
import { jetStreamConsumerFor } from './ingest/jetstream-consumer.js';
import type { BatchResult } from './ingest/group-commit.js';
import { createFleetService, loadFleetSetup, type FleetService } from './fleet-service.js';
import { createFleetStore } from './store/fleet.js';
import { createPostgresFleetStore } from './store/postgres/fleet.js';
import { fleetOpcuaView } from './fleet-opcua-view.js';
import { createGatewayMetrics, type GatewayMetrics } from './metrics.js';
import { createInfluxSeriesStore } from './series/influx.js';
import type { SeriesPoint } from './series/points.js';
import { createSqliteSeriesStore } from './series/sqlite.js';
import type { SeriesStore } from './series/store.js';
import { SpoolWriter } from './series/writer.js';
import { openDatabase } from './store/db.js';
import { createOperationalStore, type AnyOperationalStore, type DeviceView, type IngestOutcome, type OperationalStore, type RetentionResult } from './store/operational.js';
import { migratePostgres } from './store/postgres/migrations.js';
import { createPostgresOperationalStore, type AsyncOperationalStore, type IngestItem } from './store/postgres/operational.js';
import { startPostgresLeadership, type Leadership } from './cluster/postgres-leadership.js';
import { runWhileLeading, type LeaderJob } from './cluster/leader-job.js';
import { createUserStore, type UserStore } from './store/users.js';
import type { Backend } from './store/backend.js';
import { followPostgresEvents } from './store/postgres/event-follower.js';
import { createPostgresEventStore } from './store/postgres/events.js';
import { createPostgresUserStore } from './store/postgres/users.js';
import { createPostgresProvisioningStore } from './store/postgres/provisioning.js';
import { createProvisioningStore } from './provisioning/store.js';
import type { FleetView } from './opcua/fleet-view.js';
import type { GatewayOpcuaServer } from './opcua/server.js';
import { join } from 'node:path';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { createLoginGuard, openUserStore } from '@checkpoint/broker';
import { registerProvisioningRoutes } from './api/provisioning.js';
import { createProvisioning, readCaCert, type DeviceCredentialStore, type DeviceRef, type Provisioning } from './provisioning/index.js';

export interface GatewayDeps {
  logger?: Logger;
  /** Clock for alerts, sessions and retention (tests). */
  now?: () => number;
  /** Called when the series store accepted points (benchmarks, tests). */
  onSeriesWritten?: (points: SeriesPoint[], atMs: number) => void;
  /** Called when MQTT messages were committed to the operational store, before their PUBACKs (benchmarks). */
  onIngested?: (messages: readonly IngestMessage[], atMs: number) => void;
  /** Robots and tasks for the OPC UA server (until the fleet is wired in here). */
  fleetView?: FleetView;
  /** The broker's user store when the broker runs in this process (else provisioning.brokerUsersFile is opened). */
  brokerUsers?: DeviceCredentialStore;
  /** Fault injection for tests only: model download bytes as they leave the gateway, per device. */
  tamperModelDownload?: (device: DeviceRef, bytes: Buffer) => Buffer;
}

export interface Gateway {
  readonly config: GatewayConfig;
  readonly httpPort: number;
  /** `http://host:port` of the API. */
  readonly url: string;
  /**
   * API users (`add({ name, role }, password)`): on the gateway's SQLite file, or shared by every
   * gateway on PostgreSQL (answers are then promises: await them).
   */
  readonly users: UserStore<Backend>;
  /** SQLite's answers at once, PostgreSQL's later: await every answer. */
  readonly store: AnyOperationalStore;
  readonly series: SeriesStore;
  readonly metrics: GatewayMetrics;
  /** The robot fleet (VDA 5050 master control), null when no site map is configured. */
  readonly fleet: FleetService | null;
  /** The OPC UA server, null when `opcua.enabled` is false. */
  readonly opcua: Pick<GatewayOpcuaServer, 'port' | 'endpointUrl' | 'pkiDir'> | null;
  /** Checkpoint enrollment, revocation, model versions and roll-outs. */
  readonly provisioning: Provisioning;
  mqttConnected(): boolean;
  /** Points waiting for the series store (a promise on PostgreSQL). */
  spoolDepth(): number | Promise<number>;
  /** Run the retention job now (it also runs every retention.intervalS; on PostgreSQL, on the leader). */
  runRetention(): RetentionResult | Promise<RetentionResult>;
  /** `single` on SQLite; on PostgreSQL whether this gateway runs the once-only jobs. */
  role(): StoreRole;
  close(): Promise<void>;
}

export type StoreRole = 'single' | 'leader' | 'follower' | 'connecting';

/** Never log health data or secrets, whatever a call site passes by mistake. */
const REDACT = ['password', 'token', 'authorization', 'temperatureC', 'jpeg', 'payload', '*.password', '*.token', '*.temperatureC'];
/** How often the leader sends what roll-outs started or advanced on another gateway are waiting for. */
const ROLLOUT_DRIVE_MS = 1000;

export function createLogger(level: GatewayConfig['logLevel']): Logger {
  return pino({ name: 'checkpoint-gateway', level, redact: { paths: REDACT, censor: '[redacted]' } }, pino.destination(2));
}

export async function createGateway(configInput: unknown, deps: GatewayDeps = {}): Promise<Gateway> {
  const config = resolveGatewayConfig(configInput);
  const log = deps.logger ?? createLogger(config.logLevel);
  const now = deps.now ?? Date.now;
  const newId = monotonicFactory();
  // The site map and rules are checked before anything starts (errors name fleet.map / fleet.rules).
  const fleetSetup = await loadFleetSetup(config.fleet);
  // Provisioning files are checked before anything starts (errors name provisioning.caFile / the users file).
  const provisioningCa = readCaCert(config.provisioning.caFile);
  const ownBrokerUsers = !deps.brokerUsers && config.provisioning.brokerUsersFile ? openUserStore(config.provisioning.brokerUsersFile) : null;

  const db = openDatabase(config.dataDir, {
    synchronous: config.sqlite.synchronous,
    busyTimeoutMs: config.sqlite.busyTimeoutMs,
    walAutocheckpointPages: config.sqlite.walAutocheckpointPages,
  });
  // The one guard for every password this gateway checks: API login, OPC UA sessions, model downloads.
  const loginGuard = createLoginGuard({ maxFailures: config.auth.loginMaxFailures, windowMs: config.auth.loginWindowS * 1000, now });
  const policy = {
    escalateAfterMs: config.alerts.escalateAfterS * 1000,
    invalidStormCount: config.alerts.invalidStormCount,
    invalidStormWindowMs: config.alerts.invalidStormWindowS * 1000,
  };
  // PostgreSQL: the pool, the schema, the leadership lock; null on SQLite.
  let postgres: { pool: pg.Pool; store: AsyncOperationalStore; leadership: Leadership } | null = null;
  if (config.store.backend === 'postgres') {
    try {
      postgres = await openPostgres(config.store.postgres, policy, () => newId(), log);
    } catch (err) {
      ownBrokerUsers?.close();
      db.close();
      throw err;
    }
  }
  // Users and sessions live beside the operational store: on PostgreSQL every gateway knows every session.
  const users: UserStore<Backend> = postgres ? createPostgresUserStore(postgres.pool, now) : createUserStore(db, now);
  const sqliteStore: OperationalStore | null = postgres ? null : createOperationalStore(db, policy, () => newId());
  const store: AnyOperationalStore = postgres?.store ?? (sqliteStore as OperationalStore);
  const role = (): StoreRole => {
    if (!postgres) return 'single';
    const r = postgres.leadership.role();
    return r === 'stopped' ? 'follower' : r;
  };

  /**
   * On PostgreSQL, what must be read synchronously (/healthz, provisioning's device list) comes
   * from here, refreshed every second; on SQLite it is read from the store when asked.
   */
  const cached = { spoolDepth: 0, rejected: 0, devices: [] as DeviceView[] };
  let cacheFailure = '';
  const refreshCache = async (pgStore: AsyncOperationalStore) => {
    try {
      const [spoolDepth, rejected, devices] = await Promise.all([pgStore.spoolDepth(), pgStore.rejectedCount(), pgStore.devices()]);
      Object.assign(cached, { spoolDepth, rejected, devices });
      cacheFailure = '';
    } catch (err) {
      if ((err as Error).message !== cacheFailure) log.warn({ err: (err as Error).message }, 'cannot read the PostgreSQL store (spool depth, devices); retrying');
      cacheFailure = (err as Error).message;
    }
  };
  if (postgres) await refreshCache(postgres.store);
  const cacheTimer = postgres ? setInterval(() => void refreshCache(postgres.store), 1000) : null;
  const spoolDepthNow = () => (sqliteStore ? sqliteStore.spoolDepth() : cached.spoolDepth);
  const rejectedNow = () => (sqliteStore ? sqliteStore.rejectedCount() : cached.rejected);
  const devicesNow = () => (sqliteStore ? sqliteStore.devices() : cached.devices);
  const closePostgres = async () => {
    if (cacheTimer) clearInterval(cacheTimer);
    await eventFollower?.stop();
    if (!postgres) return;
    await postgres.leadership.stop();
    await postgres.pool.end().catch(() => undefined);
  };
  if (postgres && !config.influx.url) {
    // The spool is shared, but the SQLite series store is not: points land with whoever leads when they drain.
    log.warn('store.backend is postgres without influx.url: time series go to the SQLite file of whichever gateway leads when they are written; set influx.url when several gateways share the database');
  }
  const series: SeriesStore = config.influx.url
    ? createInfluxSeriesStore(parseInfluxUrl(config.influx.url), config.influx)
    : createSqliteSeriesStore(db);

  let consumer: Omit<Consumer, 'client'> | null = null;
  // The metrics exist only below (they probe the live feed): closures are counted through this.
  let countLiveClosed: (reason: 'session' | 'stalled') => void = () => undefined;
  // On PostgreSQL the feed is driven by the database's events (every gateway sees every gateway's), from the last seq now.
  let followFrom = 0;
  if (postgres) {
    try {
      followFrom = (await postgres.store.eventRange()).last;
    } catch (err) {
      if (cacheTimer) clearInterval(cacheTimer);
      await postgres.leadership.stop();
      await postgres.pool.end().catch(() => undefined);
      ownBrokerUsers?.close();
      db.close();
      throw new Error(`cannot read the live feed's position from PostgreSQL: ${(err as Error).message}`, { cause: err });
    }
  }
  const live = new LiveFeed(
    store,
    {
      maxClients: config.live.maxClients,
      maxClientsPerUser: config.live.maxClientsPerUser,
      stallTimeoutMs: config.live.stallTimeoutS * 1000,
      sessionCheckMs: config.live.sessionCheckMs,
    },
    (reason) => countLiveClosed(reason),
    postgres ? { kind: 'follower', fromSeq: followFrom } : { kind: 'notify' },
  );
  // OPC UA follows the same events as the live feed: tell it whenever the feed is told (also by API
  // routes; on PostgreSQL, whenever the event follower delivers).
  let opcua: GatewayOpcuaServer | null = null;
  const notifyLive = live.notify.bind(live);
  live.notify = () => {
    notifyLive();
    opcua?.eventsCommitted();
  };
  const eventFollower = postgres
    ? followPostgresEvents({
        connection: { connectionString: config.store.postgres.url!, application_name: 'checkpoint-gateway-events' },
        events: createPostgresEventStore(postgres.pool),
        fromSeq: followFrom,
        onEvents(events) {
          live.deliver(events);
          opcua?.eventsCommitted();
        },
        log: (message) => log.warn({ url: redactUrl(config.store.postgres.url!) }, message),
      })
    : null;
  const metrics = createGatewayMetrics({
    spoolDepth: () => store.spoolDepth(),
    rejected: () => store.rejectedCount(),
    sseClients: () => live.size,
    mqttConnected: () => consumer?.connected() ?? false,
    leader: () => role() === 'single' || role() === 'leader',
  });

  countLiveClosed = (reason) => metrics.liveClosed.inc({ reason });

  // --- time series ----------------------------------------------------------------------------
  let lastWriteError = '';
  const writer = new SpoolWriter(store, series, config.series, {
    written(points, rows, atMs) {
      for (const p of points) metrics.seriesPoints.inc({ measurement: p.measurement });
      for (const r of rows) metrics.seriesLag.observe((atMs - r.enqueuedMs) / 1000);
      if (lastWriteError) log.info({ store: series.kind }, 'series store accepts writes again; spool draining');
      lastWriteError = '';
      deps.onSeriesWritten?.(points, atMs);
    },
    failed(err, attempt, retryInMs) {
      const status = (err as { res?: { statusCode?: number } }).res?.statusCode;
      metrics.seriesErrors.inc({ reason: status ? String(status) : 'unreachable' });
      if (err.message !== lastWriteError) log.warn({ err: err.message.slice(0, 300), attempt, retryInMs, spooled: spoolDepthNow() }, 'series write failed; points stay in the spool');
      lastWriteError = err.message;
    },
    rejected(row, err) {
      metrics.seriesErrors.inc({ reason: 'rejected' });
      log.error({ measurement: row.point.measurement, seq: row.seq, err: err.message.slice(0, 300) }, 'series store refused a point; kept in series_rejected');
    },
  }, now);
  try {
    await series.init();
  } catch (err) {
    log.warn({ err: (err as Error).message }, 'series store not ready at start; the writer keeps trying');
  }
  // On PostgreSQL the spool is shared: only the leader drains it (below); until then the writer idles.
  if (postgres) await writer.stop({ flush: false });
  else writer.start();
  if (config.influx.url) log.info({ url: redactUrl(config.influx.url) }, 'time series go to InfluxDB');
  else log.info('no InfluxDB configured: time series go to SQLite');

  // --- ingest ---------------------------------------------------------------------------------
  const commands = new CommandDispatcher((topic, payload) => {
    if (!consumer) return Promise.reject(new Error('not connected to the broker'));
    return consumer.publish(topic, payload);
  }, config.commands.timeoutMs);
  const loggedCauses = new Set<string>();

  // --- robot fleet (when a site map is configured) ---------------------------------------------
  const fleet: FleetService | null = fleetSetup
    ? createFleetService({
        config: config.fleet,
        setup: fleetSetup,
        store: postgres ? createPostgresFleetStore(postgres.pool) : createFleetStore(db),
        alerts: store,
        // On PostgreSQL the gateway that holds the leadership lock leads the fleet (below).
        leading: !postgres,
        publish: (topic, payload) => (consumer ? consumer.publish(topic, payload) : Promise.reject(new Error('not connected to the broker'))),
        notifyLive: () => live.notify(),
        notifySeries: (n) => writer.notify(n),
        metrics,
        log: log.child({ component: 'fleet' }),
        now,
        newId: () => newId(),
      })
    : null;
  if (fleetSetup) log.info({ nodes: fleetSetup.map.nodes.size, rules: fleetSetup.rules.length }, 'robot fleet: VDA 5050 master control on uagv/v2');

  // --- provisioning and model roll-outs -------------------------------------------------------
  // Updates take minutes, not seconds: their own dispatcher with the longer timeout.
  const updateCommands = new CommandDispatcher((topic, payload) => {
    if (!consumer) return Promise.reject(new Error('not connected to the broker'));
    return consumer.publish(topic, payload);
  }, config.provisioning.updateTimeoutS * 1000);
  let selfUrl = '';
  const provisioning = createProvisioning({
    // On PostgreSQL tokens, devices, models (their files too) and roll-outs are shared by every gateway.
    store: postgres ? createPostgresProvisioningStore(postgres.pool) : createProvisioningStore(db, config.provisioning.modelsDir ?? join(config.dataDir, 'models')),
    drives: () => role() !== 'follower',
    credentials: deps.brokerUsers ?? ownBrokerUsers,
    loginGuard,
    sendCommand: (site, checkpoint, body) => updateCommands.send(site, checkpoint, body),
    audit: (atMs, actor, action, target, detail) => store.audit(atMs, actor, action, target, detail),
    seenDevices: () => devicesNow().map((d) => ({ site: d.site, checkpoint: d.checkpoint, model: d.model })),
    settings: {
      deviceMqttUrl: config.provisioning.deviceMqttUrl ?? config.mqtt.url,
      caCert: provisioningCa,
      tokenTtlMs: config.provisioning.tokenTtlS * 1000,
      updateTimeoutMs: config.provisioning.updateTimeoutS * 1000,
      publicUrl: () => config.provisioning.publicUrl?.replace(/\/+$/, '') ?? selfUrl,
    },
    log,
    now,
    newId: () => newId(),
    ...(deps.tamperModelDownload ? { tamperDownload: deps.tamperModelDownload } : {}),
  });

  /** Metrics and notifications of a stored message: run once its transaction committed. */
  function recorded(channel: string, outcome: IngestOutcome, series: boolean): () => void {
    return () => {
      metrics.messages.inc({ channel, result: outcome.stored ? 'stored' : 'duplicate' });
      for (const c of outcome.alertChanges) metrics.alerts.inc({ kind: c.alert.kind, action: c.action });
      if (outcome.stored) live.notify();
      if (series) writer.notify(1);
    };
  }

  /** Once per device (topic without snapshot id), channel and cause: what was wrong and where, never values. */
  function logOnce(key: string, level: 'warn' | 'error', fields: Record<string, unknown>, message: string): void {
    if (loggedCauses.has(key) || loggedCauses.size >= 10_000) return;
    loggedCauses.add(key);
    log[level](fields, message);
  }

  const nothingMore = () => undefined;

  /**
   * Robot messages and command acknowledgements act beyond the database (fleet state in memory,
   * orders published, pending commands resolved), which a rolled-back batch could not undo: they
   * are stored alone, in their own transaction, as before group commit.
   */
  const storedAlone = (c: Classified) => c.kind === 'robot' || c.kind === 'cmd/ack';

  /** A replaced timestamp: counted, logged once per topic. */
  function noteReplaced(topic: string, c: Classified): void {
    if ('replacedTs' in c && c.replacedTs?.length) {
      // Stored at the receive time and flagged (API `tsReplaced`, series field `tsReplaced`): a device clock to fix.
      const channel = c.kind === 'robot' ? `robot/${c.channel}` : c.kind;
      metrics.replacedTimestamps.inc({ channel });
      logOnce(`ts\u0000${topic}`, 'warn', { topic: topic.slice(0, 200), replaced: c.replacedTs }, 'timestamp names no instant; message stored with the receive time and flagged (logged once per topic)');
    }
  }

  /**
   * Stores one classified message on SQLite (inside the caller's transaction, if any); returns
   * what to do once that committed (metrics, live feed, series writer).
   */
  function storeClassified(topic: string, c: Classified, receivedMs: number): () => void {
    const effect = storeClassifiedOnly(topic, c, receivedMs);
    // Counted once the message is stored (a batch rolled back and stored again counts it once).
    return () => {
      noteReplaced(topic, c);
      effect();
    };
  }
  function storeClassifiedOnly(topic: string, c: Classified, receivedMs: number): () => void {
    const sqlite = sqliteStore as OperationalStore;
    switch (c.kind) {
      case 'screening':
        return recorded('screening', sqlite.ingestScreening(c.screening, receivedMs, c.replacedTs), true);
      case 'state':
        return recorded('state', sqlite.ingestState(c.state, receivedMs, c.replacedTs), true);
      case 'telemetry':
        return recorded('telemetry', sqlite.ingestTelemetry(c.telemetry, receivedMs, c.replacedTs), true);
      case 'snapshot':
        return recorded('snapshot', sqlite.ingestSnapshot(c.where, c.screeningId, c.jpeg, receivedMs), false);
      default:
        return handledWithoutStore(topic, c, receivedMs);
    }
  }

  /** What needs no operational store (either backend): command acks, robot messages, ignored and invalid ones. */
  /** A robot message to the fleet; on PostgreSQL the promise settles once the fleet's changes committed. */
  function handleRobot(topic: string, c: Extract<Classified, { kind: 'robot' }>, receivedMs: number): void | Promise<void> {
    metrics.messages.inc({ channel: `robot/${c.channel}`, result: fleet ? 'stored' : 'ignored' });
    return fleet?.handleMessage(topic, c.payload, receivedMs);
  }

  function handledWithoutStore(topic: string, c: Exclude<Classified, { kind: 'screening' | 'state' | 'telemetry' | 'snapshot' }>, receivedMs: number): () => void {
    switch (c.kind) {
      case 'cmd/ack':
        provisioning.onAck(c.where, c.ack).catch((err: Error) => log.error({ err: err.message, command: c.ack.id }, 'cannot record a roll-out ack'));
        metrics.messages.inc({ channel: 'cmd/ack', result: commands.onAck(c.where, c.ack) || updateCommands.onAck(c.where, c.ack) ? 'stored' : 'ignored' });
        return nothingMore;
      case 'robot':
        // On SQLite the fleet stores what changed (tasks, robots, robot_state points) before this returns.
        void handleRobot(topic, c, receivedMs);
        return nothingMore;
      case 'ignored':
        return () => metrics.messages.inc({ channel: 'other', result: 'ignored' });
      case 'invalid': {
        // Counted and dropped (and acknowledged, so that it does not come back forever).
        logOnce(`${c.logKey}\u0000${c.cause}`, 'warn', { topic: topic.slice(0, 200), cause: c.cause, detail: c.detail.slice(0, 500) }, 'invalid message dropped (logged once per topic and cause)');
        return () => {
          metrics.messages.inc({ channel: 'other', result: 'invalid' });
          metrics.invalid.inc({ topic: c.topicLabel, cause: c.cause });
        };
      }
    }
  }

  /**
   * A batch in one transaction, two ways. First without a savepoint per message (4 statements less
   * each): a message that throws rolls the whole batch back, and it is stored again the second
   * way, one savepoint per message, so that a message that throws leaves no trace and the batch
   * commits what came before it. Messages that throw are rare (a full disk, a poison message).
   */
  const storeInSavepoint = db.transaction(storeClassified);
  type Batch = { messages: readonly IngestMessage[]; stored: number; error?: Error; effects: Array<() => void> };
  const groupOf = (store: typeof storeClassified, catchPerMessage: boolean) =>
    db.transaction((batch: Batch) => {
      for (const m of batch.messages) {
        const stop = metrics.ingestSeconds.startTimer();
        const receivedMs = now();
        const c = classifyMessage(m.topic, m.payload, receivedMs);
        // Stored alone, in the next batch (of its own): this one commits without it.
        if (storedAlone(c)) break;
        try {
          batch.effects.push(store(m.topic, c, receivedMs));
        } catch (err) {
          if (!catchPerMessage) throw err;
          batch.error = err as Error;
          break;
        } finally {
          stop();
        }
        batch.stored++;
      }
    });
  const storeGroupDirect = groupOf(storeClassified, false);
  const storeGroup = groupOf(storeInSavepoint, true);

  /**
   * Group commit (ingest/group-commit.ts): the messages in one transaction, up to the first that
   * fails (the ones before it commit) or must be stored alone. Throws when the transaction as a
   * whole fails (BEGIN IMMEDIATE: another process holds the write lock; COMMIT: disk full).
   */
  function storeBatch(messages: readonly IngestMessage[]): BatchResult {
    const first = messages[0];
    if (!first) return { stored: 0 };
    const receivedMs = now();
    const c = classifyMessage(first.topic, first.payload, receivedMs);
    if (storedAlone(c)) {
      const stop = metrics.ingestSeconds.startTimer();
      try {
        storeClassified(first.topic, c, receivedMs)();
        deps.onIngested?.([first], now());
        return { stored: 1 };
      } catch (err) {
        return { stored: 0, error: err as Error };
      } finally {
        stop();
      }
    }
    let batch: Batch = { messages, stored: 0, effects: [] };
    // IMMEDIATE: take the write lock first, so a busy database fails the batch before any work.
    try {
      storeGroupDirect.immediate(batch);
    } catch {
      // Rolled back as a whole. Again with a savepoint per message: that commits the messages
      // before the one that throws (and throws again if the transaction itself cannot be had).
      batch = { messages, stored: 0, effects: [] };
      storeGroup.immediate(batch);
    }
    for (const effect of batch.effects) effect();
    if (deps.onIngested && batch.stored > 0) deps.onIngested(messages.slice(0, batch.stored), now());
    metrics.ingestBatchSize.observe(batch.stored);
    return batch.error ? { stored: batch.stored, error: batch.error } : { stored: batch.stored };
  }

  /**
   * Group commit on PostgreSQL: the same contract, through `ingestBatch` (one transaction, a
   * savepoint per message). The batch is the run of screenings, states and telemetry (and ignored
   * or invalid messages, which store nothing) from the first message; a snapshot (its own insert),
   * a command ack or a robot message goes alone, as the first of a batch of its own.
   */
  async function storeBatchOnPostgres(pgStore: AsyncOperationalStore, messages: readonly IngestMessage[]): Promise<BatchResult> {
    const first = messages[0];
    if (!first) return { stored: 0 };
    const stop = metrics.ingestSeconds.startTimer();
    const receivedMs = now();
    const c = classifyMessage(first.topic, first.payload, receivedMs);
    if (storedAlone(c) || c.kind === 'snapshot') {
      try {
        noteReplaced(first.topic, c);
        // A robot message is acknowledged only once the fleet's changes committed.
        const effect =
          c.kind === 'snapshot'
            ? recorded('snapshot', await pgStore.ingestSnapshot(c.where, c.screeningId, c.jpeg, receivedMs), false)
            : c.kind === 'robot'
              ? (await handleRobot(first.topic, c, receivedMs), nothingMore)
              : handledWithoutStore(first.topic, c, receivedMs);
        effect();
        deps.onIngested?.([first], now());
        return { stored: 1 };
      } catch (err) {
        return { stored: 0, error: err as Error };
      } finally {
        stop();
      }
    }
    // Per message, in order: its item in the batch (stored by the transaction) or what to do without the store.
    const items: IngestItem[] = [];
    const plan: Array<{ item: number; channel: 'screening' | 'state' | 'telemetry' } | { effect: () => void }> = [];
    for (const [i, m] of messages.entries()) {
      const mc = i === 0 ? c : classifyMessage(m.topic, m.payload, receivedMs);
      if (storedAlone(mc) || mc.kind === 'snapshot') break;
      noteReplaced(m.topic, mc);
      const tsReplaced = 'replacedTs' in mc && mc.replacedTs?.length ? { tsReplaced: mc.replacedTs } : {};
      if (mc.kind === 'screening') items.push({ kind: 'screening', screening: mc.screening, receivedMs, ...tsReplaced });
      else if (mc.kind === 'state') items.push({ kind: 'state', state: mc.state, receivedMs, ...tsReplaced });
      else if (mc.kind === 'telemetry') items.push({ kind: 'telemetry', telemetry: mc.telemetry, receivedMs, ...tsReplaced });
      else {
        plan.push({ effect: handledWithoutStore(m.topic, mc, receivedMs) });
        continue;
      }
      plan.push({ item: items.length - 1, channel: mc.kind });
    }
    try {
      // Throws when the transaction failed as a whole (group commit stores the messages one by one then).
      const outcome = items.length ? await pgStore.ingestBatch(items) : { outcomes: [] };
      let stored = 0;
      const effects: Array<() => void> = [];
      for (const step of plan) {
        if ('item' in step) {
          const o = outcome.outcomes[step.item];
          if (!o) break;
          effects.push(recorded(step.channel, o, true));
        } else effects.push(step.effect);
        stored++;
      }
      for (const effect of effects) effect();
      if (deps.onIngested && stored > 0) deps.onIngested(messages.slice(0, stored), now());
      metrics.ingestBatchSize.observe(stored);
      return outcome.error && stored < plan.length ? { stored, error: outcome.error } : { stored };
    } finally {
      stop();
    }
  }

  // --- OPC UA ---------------------------------------------------------------------------------
  if (config.opcua.enabled) {
    try {
      // Loaded only when enabled: node-opcua alone costs ~0.8 s and ~100 MB to load.
      const { startOpcuaServer } = await import('./opcua/server.js');
      opcua = await startOpcuaServer({
        config: config.opcua,
        dataDir: config.dataDir,
        store,
        users,
        loginGuard,
        // PostgreSQL may commit event seq 12 before 11: the refresh waits at such a gap (as the live feed's follower does).
        eventGapWaitMs: postgres ? 2000 : 0,
        fleet: fleet ? fleetOpcuaView(fleet) : (deps.fleetView ?? null),
        log,
        now,
        alertChanged(change) {
          metrics.alerts.inc({ kind: change.alert.kind, action: change.action });
          live.notify();
        },
      });
    } catch (err) {
      fleet?.close();
      await writer.stop({ flush: false });
      live.close();
      await closePostgres();
      db.close();
      throw new Error(`cannot start the OPC UA server on port ${config.opcua.port}: ${(err as Error).message}`, { cause: err });
    }
  }

  // --- API ------------------------------------------------------------------------------------
  const health = () => {
    const connected = consumer?.connected() ?? false;
    const spooled = spoolDepthNow();
    const storing = consumer?.storeFailing() ? 'retrying' : 'ok';
    const status = !connected ? 'disconnected' : writer.failing || storing !== 'ok' ? 'degraded' : 'ok';
    return {
      healthy: connected,
      body: {
        status,
        mqtt: connected ? 'connected' : 'disconnected',
        ingest: storing,
        series: { store: series.kind, writing: writer.failing ? 'failing' : 'ok', spoolDepth: spooled, rejected: rejectedNow() },
        store: { backend: config.store.backend, role: role() },
        liveClients: live.size,
      },
    };
  };
  const app = await createApi({ config, store, users, loginGuard, series, metrics, live, commands, fleet, health, log, now });
  registerProvisioningRoutes(app.withTypeProvider<TypeBoxTypeProvider>(), {
    provisioning,
    currentModels: () => new Map(devicesNow().map((d) => [`${d.site}/${d.checkpoint}`, d.model])),
    maxModelBytes: config.provisioning.maxModelBytes,
    publicUrl: () => config.provisioning.publicUrl?.replace(/\/+$/, '') ?? selfUrl,
    now,
  });
  try {
    await app.listen({ host: config.http.host, port: config.http.port });
  } catch (err) {
    fleet?.close();
    await opcua?.close();
    await writer.stop({ flush: false });
    live.close();
    await closePostgres();
    db.close();
    const code = (err as NodeJS.ErrnoException).code;
    throw new Error(`cannot listen for HTTP on ${config.http.host}:${config.http.port}: ${code === 'EADDRINUSE' ? 'address already in use' : (err as Error).message}`, { cause: err });
  }
  const httpPort = (app.server.address() as { port: number }).port;
  const host = config.http.host === '0.0.0.0' || config.http.host === '::' ? '127.0.0.1' : config.http.host;
  selfUrl = `http://${host.includes(':') ? `[${host}]` : host}:${httpPort}`;
  log.info({ port: httpPort }, 'API listening (OpenAPI at /docs)');

  // Cluster mode: an ack reaches one replica through the stream; every replica also gets a copy, so the one waiting for it answers its API call.
  const resolveCommand = (topic: string, payload: Buffer) => {
    const c = classifyMessage(topic, payload, now());
    if (c.kind === 'cmd/ack' && !commands.onAck(c.where, c.ack)) updateCommands.onAck(c.where, c.ack);
  };
  consumer = (config.ingest.source === 'jetstream' ? jetStreamConsumerFor(config.nats, resolveCommand) : startConsumer)(
    config.mqtt,
    config.ingest,
    { storeBatch: postgres ? (messages) => storeBatchOnPostgres(postgres.store, messages) : storeBatch },
    log,
    fleet ? [...SUBSCRIPTIONS, ...FLEET_SUBSCRIPTIONS] : SUBSCRIPTIONS,
    () => metrics.ingestRetries.inc(),
    (topic, payload, err) => {
      const done = store.setAside(topic, payload, err.message, now());
      if (done instanceof Promise) return done.then(() => void metrics.ingestFailed.inc());
      metrics.ingestFailed.inc();
    },
  );
  // Alone, a restart lost the commands in flight: they are sent again. Sharing a database, the leader's drive() below ends those of a gateway gone.
  if (!postgres) await provisioning.resume();

  // --- periodic jobs --------------------------------------------------------------------------
  // On SQLite they run here; on PostgreSQL on the leader only (one gateway of those sharing the database).
  const noteAlertChanges = (changes: Awaited<ReturnType<AnyOperationalStore['runPeriodic']>>) => {
    for (const c of changes) metrics.alerts.inc({ kind: c.alert.kind, action: c.action });
    if (changes.length) live.notify();
  };
  const retentionPolicy = () => {
    const r = config.retention;
    const day = 86_400_000;
    return {
      screeningsMs: r.screeningsDays * day,
      snapshotsMs: r.snapshotsDays * day,
      eventsMs: r.eventsHours * 3_600_000,
      // Without InfluxDB, series_points holds the time series (InfluxDB applies its own retention policy).
      seriesMs: r.seriesDays * day,
      alertsMs: r.alertsDays * day,
      tasksMs: r.tasksDays * day,
      auditMs: r.auditDays * day,
      rejectedMs: r.rejectedDays * day,
    };
  };
  const reportRetention = (result: RetentionResult) => {
    if (result.screenings + result.snapshots + result.seriesPoints + result.alerts + result.tasks + result.audit + result.rejected > 0) log.info(result, 'retention: old rows deleted');
    return result;
  };
  const runRetention = (): RetentionResult | Promise<RetentionResult> => {
    const result = store.retention(now(), retentionPolicy());
    return result instanceof Promise ? result.then(reportRetention) : reportRetention(result);
  };
  const timers: NodeJS.Timeout[] = [];
  const leaderJobs: LeaderJob[] = [];
  let writerHandOver: Promise<void> = Promise.resolve();
  // The fleet's lead/follow changes, one at a time (PostgreSQL); awaited on close.
  let fleetHandOver: Promise<void> = Promise.resolve();
  let stopping = false;
  if (sqliteStore) {
    timers.push(
      setInterval(() => {
        try {
          noteAlertChanges(sqliteStore.runPeriodic(now()));
        } catch (err) {
          log.error({ err: (err as Error).message }, 'alert check failed');
        }
      }, config.alerts.checkIntervalMs),
      setInterval(() => {
        try {
          runRetention();
        } catch (err) {
          log.error({ err: (err as Error).message }, 'retention job failed');
        }
      }, config.retention.intervalS * 1000),
    );
  } else if (postgres) {
    const { leadership, store: pgStore } = postgres;
    leaderJobs.push(
      runWhileLeading(leadership, config.alerts.checkIntervalMs, async () => noteAlertChanges(await pgStore.runPeriodic(now())), (err) => log.error({ err: err.message }, 'alert check failed')),
      runWhileLeading(leadership, config.retention.intervalS * 1000, async () => void (await runRetention()), (err) => log.error({ err: err.message }, 'retention job failed')),
      runWhileLeading(leadership, ROLLOUT_DRIVE_MS, () => provisioning.drive(), (err) => log.error({ err: err.message }, 'roll-out step failed')),
    );
    // The series writer drains the shared spool on the leader only; one change at a time, in order.
    const leadingChanged = (leading: boolean) => {
      log.info({ role: leading ? 'leader' : 'follower' }, leading ? 'leading: this gateway runs the alert check, retention and the series writer' : 'not leading: another gateway runs the once-only jobs');
      writerHandOver = writerHandOver.then(async () => {
        if (stopping) return;
        if (leading) writer.start();
        else await writer.stop({ flush: false });
      });
    };
    const unsubscribeWriter = leadership.onChange(leadingChanged);
    leaderJobs.push({ stop: async () => unsubscribeWriter() });
    if (leadership.isLeader()) leadingChanged(true);
    // The fleet follows the lock too: one gateway dispatches; the next leader adopts the running orders.
    if (fleet) {
      const fleetLeadingChanged = (leading: boolean) => {
        fleetHandOver = fleetHandOver
          .then(() => (stopping ? undefined : leading ? fleet.lead() : fleet.follow()))
          .catch((err: Error) => log.error({ err: err.message }, leading ? 'fleet: cannot take the lead' : 'fleet: cannot step down'));
      };
      const unsubscribeFleet = leadership.onChange(fleetLeadingChanged);
      leaderJobs.push({ stop: async () => unsubscribeFleet() });
      if (leadership.isLeader()) fleetLeadingChanged(true);
    }
  }

  let closing: Promise<void> | null = null;
  return {
    config,
    httpPort,
    url: `http://${host.includes(':') ? `[${host}]` : host}:${httpPort}`,
    users,
    store,
    series,
    metrics,
    fleet,
    opcua: opcua ? { port: opcua.port, endpointUrl: opcua.endpointUrl, pkiDir: opcua.pkiDir } : null,
    provisioning,
    mqttConnected: () => consumer?.connected() ?? false,
    spoolDepth: () => store.spoolDepth(),
    runRetention,
    role,
    close() {
      closing ??= (async () => {
        for (const t of timers) clearInterval(t);
        // Jobs stop first; one under way finishes before the pool it uses is closed (below).
        const jobsStopped = Promise.all(leaderJobs.map((job) => job.stop()));
        // Stop taking messages first: whatever the broker has not had a PUBACK for, it keeps.
        await consumer?.close().catch(() => undefined);
        await jobsStopped;
        await fleetHandOver;
        // The fleet's last step is stored (and its orders published) before the connections close.
        await fleet?.close();
        commands.cancelAll();
        provisioning.close();
        updateCommands.cancelAll();
        live.close();
        await opcua?.close();
        await app.close();
        stopping = true;
        await writerHandOver;
        // A leader flushes what it can; a follower's writer is stopped already (nothing to do).
        await writer.stop({ flush: true });
        await series.close();
        // Frees the leadership lock: another gateway takes over the once-only jobs.
        await closePostgres();
        ownBrokerUsers?.close();
        db.close();
        log.info('stopped');
      })();
      return closing;
    },
  };
}


/**
 * Opens the PostgreSQL store: a pool (errors of idle connections logged, not thrown), the schema
 * brought up to date (migrations take a lock: several gateways may start at once), the operational
 * store, and the leadership on its own connection. Errors name the database without its password.
 */
async function openPostgres(
  settings: GatewayConfig['store']['postgres'],
  policy: Parameters<typeof createPostgresOperationalStore>[1],
  newId: () => string,
  log: Logger,
): Promise<{ pool: pg.Pool; store: AsyncOperationalStore; leadership: Leadership }> {
  const url = settings.url!;
  const where = redactUrl(url);
  const pool = new pg.Pool({ connectionString: url, max: settings.poolSize, application_name: 'checkpoint-gateway' });
  let lastPoolError = '';
  pool.on('error', (err) => {
    // An idle connection died (database restarted): the pool opens a new one when needed.
    if (err.message !== lastPoolError) log.warn({ err: err.message, url: where }, 'PostgreSQL connection lost; the pool reconnects');
    lastPoolError = err.message;
  });
  try {
    const report = await migratePostgres(pool);
    log.info({ url: where, ...report }, 'operational store: PostgreSQL');
  } catch (err) {
    await pool.end().catch(() => undefined);
    throw new Error(`cannot open the PostgreSQL store (store.postgres.url ${where}): ${(err as Error).message}`, { cause: err });
  }
  const leadership = startPostgresLeadership({
    connection: { connectionString: url, application_name: 'checkpoint-gateway-leadership' },
    name: 'checkpoint-gateway',
    retryMs: settings.leaderRetryMs,
    checkMs: settings.leaderCheckMs,
    log: (message) => log.warn({ url: where }, message),
  });
  return { pool, store: createPostgresOperationalStore(pool, policy, newId), leadership };
}
