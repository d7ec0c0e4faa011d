/**
 * `createGateway`: the composition root. It wires config to components —
 *   MQTT consumer -> group commit -> classify -> operational store (+ spool, alerts, events) -> PUBACK
 *   spool -> SpoolWriter -> series store (InfluxDB or SQLite)
 *   fastify API (auth, alerts, screenings, stats, devices, snapshots, live feed, commands)
 * plus the periodic alert check and the retention job. Embeddable (demo, tests): port 0 works,
 * and `close()` undoes everything.
 */
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
import { fleetOpcuaView } from './fleet-opcua-view.js';
import { createGatewayMetrics, type GatewayMetrics } from './metrics.js';
import { createInfluxSeriesStore } from './series/influx.js';
import type { SeriesPoint } from './series/points.js';
import { createSqliteSeriesStore } from './series/sqlite.js';
import type { SeriesStore } from './series/store.js';
import { SpoolWriter } from './series/writer.js';
import { openDatabase } from './store/db.js';
import { createOperationalStore, type IngestOutcome, type OperationalStore } from './store/operational.js';
import { createUserStore, type UserStore } from './store/users.js';
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
  /** API users (`add({ name, role }, password)`), on the gateway's SQLite file. */
  readonly users: UserStore;
  readonly store: OperationalStore;
  readonly series: SeriesStore;
  readonly metrics: GatewayMetrics;
  /** The robot fleet (VDA 5050 master control), null when no site map is configured. */
  readonly fleet: FleetService | null;
  /** The OPC UA server, null when `opcua.enabled` is false. */
  readonly opcua: Pick<GatewayOpcuaServer, 'port' | 'endpointUrl' | 'pkiDir'> | null;
  /** Checkpoint enrollment, revocation, model versions and roll-outs. */
  readonly provisioning: Provisioning;
  mqttConnected(): boolean;
  /** Points waiting for the series store. */
  spoolDepth(): number;
  /** Run the retention job now (it also runs every retention.intervalS). */
  runRetention(): ReturnType<OperationalStore['retention']>;
  close(): Promise<void>;
}

/** Never log health data or secrets, whatever a call site passes by mistake. */
const REDACT = ['password', 'token', 'authorization', 'temperatureC', 'jpeg', 'payload', '*.password', '*.token', '*.temperatureC'];

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
  const users = createUserStore(db, now);
  // The one guard for every password this gateway checks: API login, OPC UA sessions, model downloads.
  const loginGuard = createLoginGuard({ maxFailures: config.auth.loginMaxFailures, windowMs: config.auth.loginWindowS * 1000, now });
  const store = createOperationalStore(
    db,
    {
      escalateAfterMs: config.alerts.escalateAfterS * 1000,
      invalidStormCount: config.alerts.invalidStormCount,
      invalidStormWindowMs: config.alerts.invalidStormWindowS * 1000,
    },
    () => newId(),
  );
  const series: SeriesStore = config.influx.url
    ? createInfluxSeriesStore(parseInfluxUrl(config.influx.url), config.influx)
    : createSqliteSeriesStore(db);

  let consumer: Omit<Consumer, 'client'> | null = null;
  // The metrics exist only below (they probe the live feed): closures are counted through this.
  let countLiveClosed: (reason: 'session' | 'stalled') => void = () => undefined;
  const live = new LiveFeed(
    store,
    {
      maxClients: config.live.maxClients,
      maxClientsPerUser: config.live.maxClientsPerUser,
      stallTimeoutMs: config.live.stallTimeoutS * 1000,
      sessionCheckMs: config.live.sessionCheckMs,
    },
    (reason) => countLiveClosed(reason),
  );
  // OPC UA follows the same events as the live feed: tell it whenever the feed is told (also by API routes).
  let opcua: GatewayOpcuaServer | null = null;
  const notifyLive = live.notify.bind(live);
  live.notify = () => {
    notifyLive();
    opcua?.eventsCommitted();
  };
  const metrics = createGatewayMetrics({
    spoolDepth: () => store.spoolDepth(),
    rejected: () => store.rejectedCount(),
    sseClients: () => live.size,
    mqttConnected: () => consumer?.connected() ?? false,
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
      if (err.message !== lastWriteError) log.warn({ err: err.message.slice(0, 300), attempt, retryInMs, spooled: store.spoolDepth() }, 'series write failed; points stay in the spool');
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
  writer.start();
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
        store: createFleetStore(db),
        alerts: store,
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
    db,
    credentials: deps.brokerUsers ?? ownBrokerUsers,
    loginGuard,
    sendCommand: (site, checkpoint, body) => updateCommands.send(site, checkpoint, body),
    audit: (atMs, actor, action, target, detail) => store.audit(atMs, actor, action, target, detail),
    seenDevices: () => store.devices().map((d) => ({ site: d.site, checkpoint: d.checkpoint, model: d.model })),
    settings: {
      deviceMqttUrl: config.provisioning.deviceMqttUrl ?? config.mqtt.url,
      caCert: provisioningCa,
      tokenTtlMs: config.provisioning.tokenTtlS * 1000,
      modelsDir: config.provisioning.modelsDir ?? join(config.dataDir, 'models'),
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

  /**
   * Stores one classified message (inside the caller's transaction, if any); returns what to do
   * once that committed (metrics, live feed, series writer).
   */
  function storeClassified(topic: string, c: Classified, receivedMs: number): () => void {
    if ('replacedTs' in c && c.replacedTs?.length) {
      // Stored at the receive time and flagged (API `tsReplaced`, series field `tsReplaced`): a device clock to fix.
      const channel = c.kind === 'robot' ? `robot/${c.channel}` : c.kind;
      metrics.replacedTimestamps.inc({ channel });
      logOnce(`ts\u0000${topic}`, 'warn', { topic: topic.slice(0, 200), replaced: c.replacedTs }, 'timestamp names no instant; message stored with the receive time and flagged (logged once per topic)');
    }
    switch (c.kind) {
      case 'screening':
        return recorded('screening', store.ingestScreening(c.screening, receivedMs, c.replacedTs), true);
      case 'state':
        return recorded('state', store.ingestState(c.state, receivedMs, c.replacedTs), true);
      case 'telemetry':
        return recorded('telemetry', store.ingestTelemetry(c.telemetry, receivedMs, c.replacedTs), true);
      case 'snapshot':
        return recorded('snapshot', store.ingestSnapshot(c.where, c.screeningId, c.jpeg, receivedMs), false);
      case 'cmd/ack':
        provisioning.onAck(c.where, c.ack);
        metrics.messages.inc({ channel: 'cmd/ack', result: commands.onAck(c.where, c.ack) || updateCommands.onAck(c.where, c.ack) ? 'stored' : 'ignored' });
        return nothingMore;
      case 'robot':
        // The fleet stores what changed (tasks, robots, robot_state points) before this returns.
        if (fleet) fleet.handleMessage(topic, c.payload, receivedMs);
        metrics.messages.inc({ channel: `robot/${c.channel}`, result: fleet ? 'stored' : 'ignored' });
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

  // One message inside a batch: a savepoint, so that a message that throws leaves no trace and the batch commits what came before it.
  const storeInSavepoint = db.transaction(storeClassified);
  type Batch = { messages: readonly IngestMessage[]; stored: number; error?: Error; effects: Array<() => void> };
  const storeGroup = db.transaction((batch: Batch) => {
    for (const m of batch.messages) {
      const stop = metrics.ingestSeconds.startTimer();
      const receivedMs = now();
      const c = classifyMessage(m.topic, m.payload, receivedMs);
      // Stored alone, in the next batch (of its own): this one commits without it.
      if (storedAlone(c)) break;
      try {
        batch.effects.push(storeInSavepoint(m.topic, c, receivedMs));
      } catch (err) {
        batch.error = err as Error;
        break;
      } finally {
        stop();
      }
      batch.stored++;
    }
  });

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
    const batch: Batch = { messages, stored: 0, effects: [] };
    // IMMEDIATE: take the write lock first, so a busy database fails the batch before any work.
    storeGroup.immediate(batch);
    for (const effect of batch.effects) effect();
    if (deps.onIngested && batch.stored > 0) deps.onIngested(messages.slice(0, batch.stored), now());
    metrics.ingestBatchSize.observe(batch.stored);
    return batch.error ? { stored: batch.stored, error: batch.error } : { stored: batch.stored };
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
      db.close();
      throw new Error(`cannot start the OPC UA server on port ${config.opcua.port}: ${(err as Error).message}`, { cause: err });
    }
  }

  // --- API ------------------------------------------------------------------------------------
  const health = () => {
    const connected = consumer?.connected() ?? false;
    const spooled = store.spoolDepth();
    const storing = consumer?.storeFailing() ? 'retrying' : 'ok';
    const status = !connected ? 'disconnected' : writer.failing || storing !== 'ok' ? 'degraded' : 'ok';
    return {
      healthy: connected,
      body: {
        status,
        mqtt: connected ? 'connected' : 'disconnected',
        ingest: storing,
        series: { store: series.kind, writing: writer.failing ? 'failing' : 'ok', spoolDepth: spooled, rejected: store.rejectedCount() },
        liveClients: live.size,
      },
    };
  };
  const app = await createApi({ config, store, users, loginGuard, series, metrics, live, commands, fleet, health, log, now });
  registerProvisioningRoutes(app.withTypeProvider<TypeBoxTypeProvider>(), {
    provisioning,
    currentModels: () => new Map(store.devices().map((d) => [`${d.site}/${d.checkpoint}`, d.model])),
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
    db.close();
    const code = (err as NodeJS.ErrnoException).code;
    throw new Error(`cannot listen for HTTP on ${config.http.host}:${config.http.port}: ${code === 'EADDRINUSE' ? 'address already in use' : (err as Error).message}`, { cause: err });
  }
  const httpPort = (app.server.address() as { port: number }).port;
  const host = config.http.host === '0.0.0.0' || config.http.host === '::' ? '127.0.0.1' : config.http.host;
  selfUrl = `http://${host.includes(':') ? `[${host}]` : host}:${httpPort}`;
  log.info({ port: httpPort }, 'API listening (OpenAPI at /docs)');

  consumer = (config.ingest.source === 'jetstream' ? jetStreamConsumerFor(config.nats) : startConsumer)(
    config.mqtt,
    config.ingest,
    { storeBatch },
    log,
    fleet ? [...SUBSCRIPTIONS, ...FLEET_SUBSCRIPTIONS] : SUBSCRIPTIONS,
    () => metrics.ingestRetries.inc(),
    (topic, payload, err) => {
      store.setAside(topic, payload, err.message, now());
      metrics.ingestFailed.inc();
    },
  );
  provisioning.resume();

  // --- periodic jobs --------------------------------------------------------------------------
  const alertTimer = setInterval(() => {
    try {
      const changes = store.runPeriodic(now());
      for (const c of changes) metrics.alerts.inc({ kind: c.alert.kind, action: c.action });
      if (changes.length) live.notify();
    } catch (err) {
      log.error({ err: (err as Error).message }, 'alert check failed');
    }
  }, config.alerts.checkIntervalMs);
  const runRetention = () => {
    const r = config.retention;
    const day = 86_400_000;
    const result = store.retention(now(), {
      screeningsMs: r.screeningsDays * day,
      snapshotsMs: r.snapshotsDays * day,
      eventsMs: r.eventsHours * 3_600_000,
      // Without InfluxDB, series_points holds the time series (InfluxDB applies its own retention policy).
      seriesMs: r.seriesDays * day,
      alertsMs: r.alertsDays * day,
      tasksMs: r.tasksDays * day,
      auditMs: r.auditDays * day,
      rejectedMs: r.rejectedDays * day,
    });
    if (result.screenings + result.snapshots + result.seriesPoints + result.alerts + result.tasks + result.audit + result.rejected > 0) log.info(result, 'retention: old rows deleted');
    return result;
  };
  const retentionTimer = setInterval(() => {
    try {
      runRetention();
    } catch (err) {
      log.error({ err: (err as Error).message }, 'retention job failed');
    }
  }, config.retention.intervalS * 1000);

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
    close() {
      closing ??= (async () => {
        clearInterval(alertTimer);
        clearInterval(retentionTimer);
        // Stop taking messages first: whatever the broker has not had a PUBACK for, it keeps.
        await consumer?.close().catch(() => undefined);
        fleet?.close();
        commands.cancelAll();
        provisioning.close();
        updateCommands.cancelAll();
        live.close();
        await opcua?.close();
        await app.close();
        await writer.stop({ flush: true });
        await series.close();
        ownBrokerUsers?.close();
        db.close();
        log.info('stopped');
      })();
      return closing;
    },
  };
}
