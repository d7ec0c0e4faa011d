/**
 * The edge agent's one config file (YAML or JSON). This schema is the single source of truth
 * for what can be configured, its defaults and its limits; `edge-agent config --print-defaults`
 * shows the result. Environment overrides (DESIGN.md, "Configuration") are applied in load.ts.
 */
import { Type, type Static } from '@sinclair/typebox';
import { Id } from '@checkpoint/protocol';
import { EDGE_PROFILE_NAMES } from './profiles.js';

const closed = { additionalProperties: false } as const;
const Section = <T extends Parameters<typeof Type.Object>[0]>(props: T, description: string) =>
  Type.Object(props, { ...closed, default: {}, description });

const Blackbody = Type.Object(
  {
    x: Type.Integer({ minimum: 0 }),
    y: Type.Integer({ minimum: 0 }),
    w: Type.Integer({ minimum: 1, maximum: 64 }),
    h: Type.Integer({ minimum: 1, maximum: 64 }),
    setC: Type.Number({ minimum: 20, maximum: 50 }),
  },
  { ...closed, description: 'blackbody region in thermal pixels and its set point' },
);

const Geometry = Type.Object(
  {
    homography: Type.Optional(Type.Array(Type.Number(), { minItems: 9, maxItems: 9 })),
    blackbody: Type.Optional(Blackbody),
    ambientC: Type.Optional(Type.Number({ minimum: -20, maximum: 50 })),
    fps: Type.Optional(Type.Number({ exclusiveMinimum: 0, maximum: 100 })),
  },
  { ...closed, description: 'camera geometry for live sources (replays carry their own meta.json)' },
);

const ThermalSourceConfig = Type.Union([
  Type.Object(
    {
      kind: Type.Literal('sim'),
      people: Type.Optional(Type.Integer({ minimum: 1 })),
      feverRate: Type.Number({ minimum: 0, maximum: 1, default: 0.1 }),
      maskRate: Type.Number({ minimum: 0, maximum: 1, default: 0.5 }),
      seed: Type.Integer({ default: 1 }),
      facesDir: Type.Optional(Type.String()),
      realtime: Type.Boolean({ default: true }),
      /** `walking`: faces 60–250 px walking through, queues, blur, dropouts (see the sim's options). */
      traffic: Type.Union([Type.Literal('stationary'), Type.Literal('walking')], { default: 'stationary' }),
      queueRate: Type.Optional(Type.Number({ minimum: 0, maximum: 1 })),
    },
    closed,
  ),
  Type.Object(
    {
      kind: Type.Literal('replay'),
      dir: Type.String({ minLength: 1 }),
      realtime: Type.Boolean({ default: true }),
    },
    closed,
  ),
  Type.Object(
    {
      kind: Type.Literal('gy-mcu90640'),
      path: Type.String({ minLength: 1, description: 'serial port, e.g. /dev/ttyUSB0' }),
      baudRate: Type.Integer({ default: 115200 }),
    },
    closed,
  ),
  Type.Object(
    {
      kind: Type.Literal('y16-stream'),
      command: Type.Array(Type.String(), { minItems: 1, description: 'argv of a command writing raw Y16 frames' }),
      width: Type.Integer({ minimum: 1, maximum: 4096 }),
      height: Type.Integer({ minimum: 1, maximum: 4096 }),
    },
    closed,
  ),
]);

const VisibleSourceConfig = Type.Union([
  Type.Object({ kind: Type.Literal('mjpeg-command'), command: Type.Array(Type.String(), { minItems: 1 }) }, closed),
  Type.Object(
    { kind: Type.Literal('http-snapshot'), url: Type.String({ pattern: '^https?://' }), intervalMs: Type.Integer({ minimum: 20, default: 200 }) },
    closed,
  ),
]);

export const AgentConfigSchema = Type.Object(
  {
    site: Id,
    checkpoint: Id,
    profile: Type.Optional(
      Type.Union(EDGE_PROFILE_NAMES.map((n) => Type.Literal(n)), { description: 'edge box class (pi | jetson): defaults for model, threads, frames in flight; env CHECKPOINT_EDGE_PROFILE' }),
    ),
    dataDir: Type.String({ default: '.checkpoint-agent', description: 'outbox and state; env CHECKPOINT_DATA_DIR' }),
    mqtt: Section(
      {
        url: Type.String({ pattern: '^(mqtts?|wss?)://', default: 'mqtt://127.0.0.1:1883', description: 'env CHECKPOINT_MQTT_URL' }),
        urls: Type.Optional(
          Type.Array(Type.String({ pattern: '^(mqtts?|wss?)://[^/?#,\\s]+/?$' }), {
            minItems: 1,
            maxItems: 32,
            description: 'cluster mode: every node of the broker cluster (replaces url; tried in turn from a random one); env CHECKPOINT_MQTT_URLS, comma-separated. Unset: the single broker at url',
          }),
        ),
        username: Type.Optional(Type.String({ description: 'env CHECKPOINT_MQTT_USERNAME' })),
        password: Type.Optional(Type.String({ description: 'env CHECKPOINT_MQTT_PASSWORD; never logged' })),
        clientId: Type.Optional(Type.String({ maxLength: 128 })),
        caFile: Type.Optional(Type.String({ description: 'CA certificate (PEM) for mqtts://' })),
        certFile: Type.Optional(Type.String()),
        keyFile: Type.Optional(Type.String()),
        keepaliveS: Type.Integer({ minimum: 5, maximum: 600, default: 30 }),
        reconnectMs: Type.Optional(
          Type.Integer({
            minimum: 100,
            maximum: 60_000,
            description:
              'mean wait before the first reconnect attempt; unset: 2000 with one broker, 30000 in cluster mode (mqtt.urls), so that the thousands of agents of a dead node do not swamp the survivors. Each wait is drawn from [0.5, 1.5) times its mean, which doubles after each failed attempt up to reconnectMaxMs',
          }),
        ),
        reconnectMaxMs: Type.Optional(
          Type.Integer({
            minimum: 100,
            maximum: 600_000,
            description:
              'longest mean wait between reconnect attempts (the backoff cap); unset: reconnectMs with one broker (no backoff, as before), 30000 (or reconnectMs, if longer) in cluster mode, where after a node dies thousands of agents must not keep the survivors busy',
          }),
        ),
        maxInFlight: Type.Integer({ minimum: 1, maximum: 1000, default: 16 }),
      },
      'broker connection',
    ),
    source: Section(
      {
        thermal: Type.Union([ThermalSourceConfig], { default: { kind: 'sim' } }),
        visible: Type.Optional(VisibleSourceConfig),
        geometry: Type.Optional(Geometry),
      },
      'where frames come from',
    ),
    model: Section(
      {
        name: Type.String({ default: 'masked-face-640' }),
        dir: Type.Optional(Type.String({ description: 'env CHECKPOINT_MODELS_DIR' })),
        mirror: Type.Optional(Type.String({ description: 'env CHECKPOINT_MODELS_MIRROR' })),
        threads: Type.Optional(Type.Integer({ minimum: 1, maximum: 64 })),
        framesInFlight: Type.Optional(Type.Integer({ minimum: 1, maximum: 16, description: 'frames processed at once by replay (default 3)' })),
        faceScoreThreshold: Type.Number({ minimum: 0.05, maximum: 1, default: 0.3, description: 'per-frame score to track a face' }),
        confirmScore: Type.Number({ minimum: 0.05, maximum: 1, default: 0.6, description: 'a track becomes a person once a frame scores this' }),
      },
      'face/mask model',
    ),
    screening: Section(
      {
        thresholdC: Type.Number({ minimum: 34, maximum: 39, default: 37.3, description: 'absolute alarm threshold, 0.1 °C steps' }),
        noReference: Type.Union([Type.Literal('relative'), Type.Literal('invalid')], { default: 'relative' }),
        relativeOffsetC: Type.Number({ minimum: 0.3, maximum: 3, default: 1.0 }),
        baselineSamples: Type.Integer({ minimum: 3, maximum: 100, default: 10 }),
        maskPolicy: Type.Union([Type.Literal('report'), Type.Literal('require')], { default: 'report' }),
        emissivity: Type.Number({ minimum: 0.9, maximum: 1, default: 0.98 }),
        minPlausibleC: Type.Number({ minimum: 25, maximum: 37, default: 34.5 }),
        framesPerDecision: Type.Integer({ minimum: 1, maximum: 50, default: 5 }),
        minFaceWidthPx: Type.Integer({ minimum: 2, maximum: 200, default: 12, description: 'thermal pixels' }),
      },
      'decision rules',
    ),
    snapshots: Section(
      {
        policy: Type.Union([Type.Literal('non-pass'), Type.Literal('all'), Type.Literal('never')], { default: 'non-pass' }),
        quality: Type.Integer({ minimum: 30, maximum: 100, default: 80 }),
      },
      'evidence JPEGs (health data: only where a decision needs them)',
    ),
    telemetry: Section({ intervalMs: Type.Integer({ minimum: 1000, maximum: 600_000, default: 10_000 }) }, 'telemetry'),
    http: Section(
      {
        host: Type.String({ default: '127.0.0.1' }),
        port: Type.Integer({ minimum: 0, maximum: 65535, default: 9100, description: 'health and metrics; 0 = any free port' }),
      },
      'local HTTP (/healthz, /metrics)',
    ),
    logLevel: Type.Union(
      ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].map((l) => Type.Literal(l)),
      { default: 'info', description: 'env CHECKPOINT_LOG_LEVEL' },
    ),
  },
  { ...closed, $id: 'AgentConfig' },
);

export type AgentConfig = Static<typeof AgentConfigSchema>;
