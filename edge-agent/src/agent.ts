/**
 * `edge-agent run`: the composition root. It wires config to components —
 *   source -> ScreeningPipeline -> OutboxStore -> OutboxSender -> MQTT
 * plus the retained state (online, offline as last will), telemetry, commands, and a local
 * HTTP server for /healthz and /metrics. Nothing here decides anything; it only moves data.
 */
import { mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import Fastify, { type FastifyInstance } from 'fastify';
import type { IClientOptions, MqttClient } from 'mqtt';
import pino, { type Logger } from 'pino';
import { Counter, Gauge, Registry, Summary, collectDefaultMetrics } from 'prom-client';
import {
  assertPayload,
  checkpointVersion,
  checkpointTopics,
  mergeConfig,
  parseConfig,
  parsePayload,
  redactUrl,
  type CheckpointState,
  type Command,
  type CommandAck,
  type Telemetry,
} from '@checkpoint/protocol';
import { AgentConfigSchema, type AgentConfig } from './config/schema.js';
import { defaultModelsDir } from '@checkpoint/models';
import { createDetector } from './detector-setup.js';
import { prepareModelUpdate, saveActiveModel } from './model-update.js';
import type { FaceDetector } from './vision/detector.js';
import type { FrameSource } from './frames.js';
import { OutboxSender } from './outbox/sender.js';
import { brokerUrls, connectBroker, connectedBroker } from './outbox/connection.js';
import { CHECK_DEFAULT_S, checkDetail, ReferenceCheck } from './calibration/reference-check.js';
import { OutboxStore } from './outbox/store.js';
import { pipelineOptionsFromConfig } from './pipeline/from-config.js';
import { ScreeningPipeline, type ScreeningResult, type StageTimings } from './pipeline/pipeline.js';
import { openSource } from './sources/open.js';
import { readCpuTemperature } from './telemetry/cpu-temperature.js';

/** The release version (stamped by `npm run release`), in the state message and command acks. */
export const AGENT_VERSION = checkpointVersion();

export interface RunningAgent {
  readonly config: AgentConfig;
  readonly httpPort: number;
  readonly mqtt: MqttClient;
  /** Resolves when the source ends (finite replays and sims) or fails. */
  readonly done: Promise<void>;
  /** Messages not yet acknowledged by the broker. */
  outboxDepth(): number;
  stop(): Promise<void>;
}

export interface AgentDeps {
  logger?: Logger;
  /** Overrides the configured source (tests, demos). */
  source?: FrameSource;
  /** Called with each decision once it is safely in the outbox (demo output, tests). */
  onScreening?: (result: ScreeningResult) => void;
}

function mqttOptions(config: AgentConfig, will: Buffer, files: { ca?: Buffer; cert?: Buffer; key?: Buffer }): IClientOptions {
  const m = config.mqtt;
  return {
    clientId: m.clientId ?? `edge-${config.site}-${config.checkpoint}`,
    // A persistent session: commands sent while the agent was away are delivered on return.
    clean: false,
    keepalive: m.keepaliveS,
    connectTimeout: 10_000,
    ...(m.username !== undefined ? { username: m.username } : {}),
    ...(m.password !== undefined ? { password: m.password } : {}),
    ...files,
    will: { topic: checkpointTopics.state(config), payload: will, qos: 1, retain: true },
  };
}

export async function runAgent(config: AgentConfig, deps: AgentDeps = {}): Promise<RunningAgent> {
  const log = deps.logger ?? pino({ name: 'edge-agent', level: config.logLevel }, pino.destination(2));
  const where = { site: config.site, checkpoint: config.checkpoint };
  await mkdir(config.dataDir, { recursive: true });

  // --- components ---------------------------------------------------------------------------
  const loaded = await createDetector(config.model, config.dataDir);
  let model = loaded.model;
  let detector = loaded.detector;
  log.info({ model: model.name, sha256: model.sha256 }, 'model loaded');
  const source = deps.source ?? (await openSource(config));
  const pipeline = new ScreeningPipeline(source.geometry, detector, pipelineOptionsFromConfig(config, model));
  const store = new OutboxStore(path.join(config.dataDir, 'outbox.sqlite'));
  if (store.count() > 0) log.info({ pending: store.count() }, 'outbox has messages from a previous run');

  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const metrics = {
    frames: new Counter({ name: 'checkpoint_agent_frames_total', help: 'frames processed', registers: [registry] }),
    screenings: new Counter({ name: 'checkpoint_agent_screenings_total', help: 'screening decisions', labelNames: ['decision'], registers: [registry] }),
    stage: new Summary({ name: 'checkpoint_agent_stage_ms', help: 'per-frame stage time, ms', labelNames: ['stage'], percentiles: [0.5, 0.95], maxAgeSeconds: 60, ageBuckets: 3, registers: [registry] }),
    outbox: new Gauge({ name: 'checkpoint_agent_outbox_depth', help: 'messages waiting for the broker', registers: [registry], collect() { this.set(store.count()); } }),
    connected: new Gauge({ name: 'checkpoint_agent_mqtt_connected', help: '1 when connected to the broker', registers: [registry] }),
    badCommands: new Counter({ name: 'checkpoint_agent_invalid_commands_total', help: 'commands refused as invalid', registers: [registry] }),
  };

  const stateOf = (status: 'online' | 'offline'): CheckpointState =>
    status === 'offline'
      ? { status, ts: new Date().toISOString(), ...where }
      : {
          status,
          ts: new Date().toISOString(),
          ...where,
          versions: { agent: AGENT_VERSION, protocol: 'v1' },
          sources: { thermal: { kind: config.source.thermal.kind, status: sourceStatus }, visible: source.geometry.visible ? { kind: config.source.visible?.kind ?? config.source.thermal.kind, status: sourceStatus } : null },
          model,
          calibration: {
            reference: pipeline.referenceState.status,
            mode: pipeline.referenceState.status === 'ok' ? 'absolute' : config.screening.noReference === 'relative' ? 'relative' : 'absolute',
            thresholdC: pipeline.options.decision.thresholdC,
            homography: source.geometry.homography !== null,
          },
        };
  let sourceStatus: 'ok' | 'starting' | 'error' | 'stopped' = 'starting';

  const files = {
    ...(config.mqtt.caFile ? { ca: await readFile(config.mqtt.caFile) } : {}),
    ...(config.mqtt.certFile ? { cert: await readFile(config.mqtt.certFile) } : {}),
    ...(config.mqtt.keyFile ? { key: await readFile(config.mqtt.keyFile) } : {}),
  };
  const will = Buffer.from(JSON.stringify(assertPayload('state', stateOf('offline'))));
  const client = connectBroker(config.mqtt, mqttOptions(config, will, files));
  const sender = new OutboxSender(store, client, { maxInFlight: config.mqtt.maxInFlight }, (err) =>
    log.warn({ err: err.message }, 'publish failed; message stays in the outbox'),
  );
  let lastError = '';
  // What the retained state says about the camera and the reference; when either changes (the
  // camera starts delivering, the blackbody becomes usable or is lost), the state is republished
  // so that the gateway and the screens do not show the state from the moment of connecting.
  // At most one such republish per STATE_CHANGE_MIN_INTERVAL_MS: a reference that people walk in
  // front of may flap between ok and unstable, and a retained state per frame would be noise.
  const STATE_CHANGE_MIN_INTERVAL_MS = 5_000;
  const liveStatusKey = () => `${sourceStatus}|${pipeline.referenceState.status}`;
  let publishedStatusKey = '';
  let publishedAtMs = 0;
  const publishState = () => {
    const state = assertPayload('state', stateOf('online'));
    publishedStatusKey = liveStatusKey();
    publishedAtMs = Date.now();
    client.publish(checkpointTopics.state(config), JSON.stringify(state), { qos: 1, retain: true });
  };
  const republishStateIfChanged = () => {
    if (!client.connected || liveStatusKey() === publishedStatusKey) return;
    if (Date.now() - publishedAtMs >= STATE_CHANGE_MIN_INTERVAL_MS || sourceStatus !== 'ok') publishState();
  };

  client.on('connect', () => {
    metrics.connected.set(1);
    log.info(config.mqtt.urls ? { cluster: brokerUrls(config.mqtt).map(redactUrl), node: connectedBroker(client) } : { url: redactUrl(config.mqtt.url) }, 'connected to broker');
    lastError = '';
    publishState();
    client.subscribe(checkpointTopics.cmd(config), { qos: 1 }, (err, granted) => {
      if (err || granted?.some((g) => g.qos === 128)) log.error({ err: err?.message }, 'cannot subscribe to commands (check the broker ACL)');
    });
  });
  client.on('close', () => metrics.connected.set(0));
  client.on('error', (err) => {
    // mqtt.js retries by itself; say it once per distinct cause, not once per attempt.
    if (err.message !== lastError) log.warn({ err: err.message }, 'broker connection problem');
    lastError = err.message;
  });
  client.on('message', (topic, payload) => void handleCommand(payload));

  // --- commands -----------------------------------------------------------------------------
  let current = config;
  const referenceCheck = new ReferenceCheck();
  const ack = (a: Omit<CommandAck, 'ts'>) =>
    client.publish(checkpointTopics.cmdAck(config), JSON.stringify(assertPayload('cmd/ack', { ...a, ts: new Date().toISOString() })), { qos: 1 });

  async function handleCommand(payload: Buffer): Promise<void> {
    const parsed = parsePayload('cmd', payload);
    if (!parsed.ok) {
      metrics.badCommands.inc();
      log.warn({ problem: parsed.message }, 'invalid command dropped');
      const id = tryId(payload);
      if (id) ack({ id, ok: false, error: parsed.message.slice(0, 1000) });
      return;
    }
    const cmd: Command = parsed.value;
    try {
      switch (cmd.type) {
        case 'ping':
          ack({ id: cmd.id, ok: true });
          return;
        case 'set-config': {
          // Validated against the full config schema; only screening and snapshot rules apply live.
          const next = parseConfig(AgentConfigSchema, mergeConfig(current, cmd.config), 'set-config');
          const unsupported = Object.keys(cmd.config).filter((k) => k !== 'screening' && k !== 'snapshots');
          if (unsupported.length > 0) throw new Error(`only screening and snapshots can change at run time, not: ${unsupported.join(', ')}`);
          current = next;
          const options = pipelineOptionsFromConfig(next, model);
          pipeline.updateOptions({ decision: options.decision, snapshots: options.snapshots });
          log.info({ screening: next.screening, snapshots: next.snapshots }, 'config changed by command');
          ack({ id: cmd.id, ok: true, detail: { thresholdC: next.screening.thresholdC } });
          publishState();
          return;
        }
        case 'update-model':
          await updateModel(cmd);
          return;
        case 'calibrate': {
          // Only the reference check runs live; fitting a homography or placing the blackbody
          // region needs someone at the box (`edge-agent calibrate`).
          if (cmd.action !== 'check-reference') throw new Error(`calibrate "${cmd.action}" is done on the box with \`edge-agent calibrate\`; only "check-reference" runs remotely`);
          const durationS = cmd.params?.durationS === undefined ? CHECK_DEFAULT_S : Number(cmd.params.durationS);
          const report = await referenceCheck.run(source.geometry.blackbody, durationS, Date.now());
          log.info({ verdict: report.verdict, frames: report.frames }, 'reference check done');
          ack({ id: cmd.id, ok: true, detail: checkDetail(report, durationS) });
          return;
        }
        default:
          ack({ id: cmd.id, ok: false, error: `command "${cmd.type}" is not supported by edge-agent ${AGENT_VERSION}` });
      }
    } catch (err) {
      ack({ id: cmd.id, ok: false, error: (err as Error).message.slice(0, 1000) });
    }
  }

  let updating = false;
  async function updateModel(cmd: Extract<Command, { type: 'update-model' }>): Promise<void> {
    if (updating) throw new Error('a model update is already running');
    updating = true;
    try {
      ack({ id: cmd.id, ok: true, progress: 0 });
      let lastReported = 0;
      const prepared = await prepareModelUpdate(cmd.model, {
        modelsDir: config.model.dir ?? defaultModelsDir(process.env),
        // The gateway serves roll-outs to devices with their broker credentials.
        ...(config.mqtt.username && config.mqtt.password
          ? { headers: { authorization: `Basic ${Buffer.from(`${config.mqtt.username}:${config.mqtt.password}`).toString('base64')}` } }
          : {}),
        ...(config.model.threads ? { threads: config.model.threads } : {}),
        references: [...pipeline.recentConfidentFaces],
        confirmScore: config.model.confirmScore,
        onProgress: (f) => {
          if (f - lastReported >= 0.2) {
            lastReported = f;
            ack({ id: cmd.id, ok: true, progress: Math.round(f * 80) / 100 });
          }
        },
      });
      const previous = pipeline.swapDetector(prepared.detector, prepared.model);
      const old = model;
      detector = prepared.detector;
      model = prepared.model;
      await saveActiveModel(config.dataDir, { manifest: prepared.manifest, path: prepared.path });
      await (previous as FaceDetector | null)?.close();
      log.info({ from: old.sha256, to: model.sha256, selfTest: prepared.selfTest }, 'model switched');
      ack({ id: cmd.id, ok: true, done: true, detail: { model: model.name, version: cmd.model.version, sha256: model.sha256, selfTest: prepared.selfTest } });
      publishState();
    } catch (err) {
      // Nothing was switched: the running model stays (that is the roll-back).
      log.warn({ err: (err as Error).message }, 'model update refused');
      ack({ id: cmd.id, ok: false, done: true, error: `${(err as Error).message.slice(0, 900)}; still running ${model.name} ${model.sha256.slice(0, 12)}` });
    } finally {
      updating = false;
    }
  }

  // --- telemetry ----------------------------------------------------------------------------
  const stageWindow: StageTimings[] = [];
  let framesInWindow = 0;
  let windowStart = Date.now();
  const telemetryTimer = setInterval(() => void publishTelemetry(), config.telemetry.intervalMs);
  async function publishTelemetry(): Promise<void> {
    const cpuTempC = await readCpuTemperature();
    const now = Date.now();
    const ref = pipeline.referenceState;
    const bb = source.geometry.blackbody;
    const stages: Record<string, number> = {};
    for (const key of ['decode', 'preprocess', 'inference', 'postprocess', 'thermometry', 'decision'] as const) {
      const values = stageWindow.map((s) => s[key]).sort((a, b) => a - b);
      if (values.length) stages[key] = Math.round(values[values.length >> 1]! * 100) / 100;
    }
    const t: Telemetry = {
      ts: new Date(now).toISOString(),
      ...where,
      fps: Math.round((framesInWindow / Math.max(0.001, (now - windowStart) / 1000)) * 10) / 10,
      stages,
      cpuTempC,
      ambientC: source.geometry.ambientC,
      blackbody: bb ? { setC: bb.setC, measuredC: ref.measuredC === null ? null : Math.round(ref.measuredC * 100) / 100, status: ref.status } : null,
      queueDepth: store.count(),
      rssMb: Math.round(process.memoryUsage().rss / 1e5) / 10,
    };
    stageWindow.length = 0;
    framesInWindow = 0;
    windowStart = now;
    if (client.connected) client.publish(checkpointTopics.telemetry(config), JSON.stringify(assertPayload('telemetry', t)), { qos: 0 });
  }

  // --- HTTP ---------------------------------------------------------------------------------
  const http: FastifyInstance = Fastify({ logger: false });
  http.get('/healthz', async (_req, reply) => {
    const healthy = sourceStatus !== 'error';
    reply.code(healthy ? 200 : 503);
    return {
      status: healthy ? 'ok' : 'error',
      source: sourceStatus,
      mqtt: client.connected ? 'connected' : 'disconnected',
      outbox: store.count(),
      reference: pipeline.referenceState.status,
      frames: pipeline.framesProcessed,
    };
  });
  http.get('/metrics', async (_req, reply) => {
    reply.header('content-type', registry.contentType);
    return registry.metrics();
  });
  await http.listen({ host: config.http.host, port: config.http.port });
  const httpPort = (http.server.address() as { port: number }).port;
  log.info({ port: httpPort }, 'health and metrics listening');

  // --- main loop ----------------------------------------------------------------------------
  const abort = new AbortController();
  const handle = (r: ScreeningResult) => {
    const messages: Array<{ topic: string; payload: Buffer; qos: 1 }> = [
      { topic: checkpointTopics.screening(config), payload: Buffer.from(JSON.stringify(r.screening)), qos: 1 },
    ];
    if (r.snapshot) messages.push({ topic: checkpointTopics.snapshot(config, r.screening.id), payload: r.snapshot, qos: 1 });
    store.enqueue(messages);
    metrics.screenings.inc({ decision: r.screening.decision });
    // Ids and decisions only: temperatures and faces are health data and stay out of logs.
    log.info({ id: r.screening.id, decision: r.screening.decision, reasons: r.screening.reasons }, 'screening');
    sender.pump();
    deps.onScreening?.(r);
  };
  const done = (async () => {
    try {
      sourceStatus = 'ok';
      for await (const pair of source.frames(abort.signal)) {
        referenceCheck.onFrame(pair.thermal, Date.now());
        for (const r of await pipeline.process(pair)) handle(r);
        metrics.frames.inc();
        republishStateIfChanged();
        framesInWindow++;
        const t = pipeline.lastTimings;
        stageWindow.push({ ...t });
        for (const [stage, ms] of Object.entries(t)) metrics.stage.observe({ stage }, ms);
      }
      for (const r of await pipeline.finish()) handle(r);
      referenceCheck.abort('the camera stopped during the reference check');
      sourceStatus = 'stopped';
      republishStateIfChanged();
    } catch (err) {
      if (abort.signal.aborted) return;
      sourceStatus = 'error';
      referenceCheck.abort(`the camera failed during the reference check: ${(err as Error).message}`);
      log.error({ err: (err as Error).message }, 'source failed');
      if (client.connected) publishState();
    }
  })();

  let stopped = false;
  return {
    config,
    httpPort,
    mqtt: client,
    done,
    outboxDepth: () => store.count(),
    async stop() {
      if (stopped) return;
      stopped = true;
      abort.abort();
      await source.close();
      await done;
      clearInterval(telemetryTimer);
      sender.stop();
      if (client.connected) {
        await client.publishAsync(checkpointTopics.state(config), will, { qos: 1, retain: true }).catch(() => undefined);
      }
      await client.endAsync();
      store.close();
      await http.close();
      await detector.close();
      log.info('stopped');
    },
  };
}

function tryId(payload: Buffer): string | null {
  try {
    const id = (JSON.parse(payload.toString('utf8')) as { id?: unknown }).id;
    return typeof id === 'string' && /^[A-Za-z0-9_-]{1,64}$/.test(id) ? id : null;
  } catch {
    return null;
  }
}
