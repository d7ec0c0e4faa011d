/**
 * The broker's config file (YAML or JSON) and environment overrides. This schema is the single
 * source of truth for keys and defaults (README "Configuration" lists them).
 */
import { readFile } from 'node:fs/promises';
import { Type, type Static, type TProperties } from '@sinclair/typebox';
import { mergeConfig, parseConfig, parseConfigText } from '@checkpoint/protocol';

const closed = { additionalProperties: false } as const;
const Section = <T extends TProperties>(props: T, description: string) =>
  Type.Object(props, { ...closed, default: {}, description });
const Port = (defaultPort: number, description: string) =>
  Type.Integer({ minimum: 0, maximum: 65535, default: defaultPort, description: `${description}; 0 = any free port` });

export const BrokerConfigSchema = Type.Object(
  {
    dataDir: Type.String({ default: '.checkpoint-broker', description: 'user store and persistence; env CHECKPOINT_DATA_DIR' }),
    host: Type.String({ default: '0.0.0.0', description: 'address the MQTT listeners bind to' }),
    mqtt: Section({ port: Port(1883, 'MQTT over TCP; env CHECKPOINT_MQTT_PORT') }, 'plain MQTT listener'),
    tls: Type.Optional(
      Type.Object(
        {
          port: Port(8883, 'MQTT over TLS'),
          certFile: Type.String({ description: 'server certificate chain (PEM)' }),
          keyFile: Type.String({ description: 'server private key (PEM)' }),
          caFile: Type.Optional(Type.String({ description: 'CA (PEM) that signs client certificates' })),
          requireClientCert: Type.Boolean({ default: false, description: 'refuse TLS clients without a certificate signed by caFile' }),
        },
        { ...closed, description: 'MQTT over TLS listener (off when absent)' },
      ),
    ),
    websocket: Type.Optional(
      Type.Object({ port: Port(8083, 'MQTT over WebSocket') }, { ...closed, description: 'MQTT over WebSocket listener (off when absent)' }),
    ),
    metrics: Section(
      {
        port: Type.Union([Type.Null(), Type.Integer({ minimum: 0, maximum: 65535 })], {
          default: 9883,
          description: 'Prometheus /metrics HTTP port; null = off',
        }),
        host: Type.String({ default: '127.0.0.1' }),
      },
      'Prometheus metrics',
    ),
    sysIntervalS: Type.Integer({ minimum: 0, maximum: 3600, default: 10, description: '$SYS/broker/... stats period; 0 = off' }),
    persistence: Type.Union([Type.Literal('level'), Type.Literal('memory')], {
      default: 'level',
      description: 'level = sessions, QoS 1/2 in flight and retained messages survive restarts',
    }),
    persistenceCommit: Section(
      {
        maxDelayMs: Type.Integer({
          minimum: 0,
          maximum: 1000,
          default: 2,
          description: 'a batch of newly queued messages closes this long after its first message at the latest (at once when no more publishes arrive and the disk is idle)',
        }),
        maxOps: Type.Integer({ minimum: 1, default: 1000, description: 'a batch closes at once with this many writes' }),
      },
      'group commit: a publisher gets its PUBACK once its message is written to LevelDB, in one batch with the others of the same moment',
    ),
    auth: Section(
      {
        maxFailures: Type.Integer({ minimum: 1, default: 5, description: 'failed logins per client address per window before refusing' }),
        failureWindowS: Type.Integer({ minimum: 1, default: 60 }),
        maxConcurrentChecks: Type.Integer({ minimum: 1, maximum: 64, default: 2, description: 'password checks (scrypt) running at once, taken round-robin over client addresses' }),
        maxWaitingLogins: Type.Integer({ minimum: 0, default: 1000, description: 'logins waiting for a password check; more are refused (CONNACK 3)' }),
        mosquittoHashIterations: Type.Integer({
          minimum: 0,
          default: 20_000,
          description: 'PBKDF2 iterations of the Mosquitto-format hash kept for mosquitto-export; 0 = keep none',
        }),
        natsBcryptCost: Type.Integer({
          minimum: 0,
          maximum: 31,
          default: 0,
          description: 'bcrypt cost of the NATS-format hash kept for nats-export (cluster mode; 10-12 advised); 0 = keep none',
        }),
      },
      'authentication',
    ),
    limits: Section(
      {
        maxPacketBytes: Type.Integer({ minimum: 1024, maximum: 268_435_455, default: 262_144, description: 'largest MQTT packet accepted (snapshots are ~30 KB JPEGs)' }),
        connectTimeoutMs: Type.Integer({ minimum: 100, default: 10_000, description: 'CONNECT must arrive within this' }),
        drainTimeoutMs: Type.Integer({ minimum: 0, default: 30_000, description: 'a subscriber whose socket does not drain is disconnected after this (others are not held up meanwhile)' }),
        maxBufferedBytesPerClient: Type.Integer({ minimum: 65_536, default: 8 * 1024 * 1024, description: 'bytes waiting to be read by one client; a subscriber over this is disconnected' }),
        concurrency: Type.Integer({ minimum: 1, default: 100, description: 'deliveries in flight in the broker' }),
        maxTopicLevels: Type.Integer({ minimum: 1, maximum: 100, default: 16 }),
        maxClientIdLength: Type.Integer({ minimum: 1, default: 128 }),
        maxConnections: Type.Integer({ minimum: 1, default: 10_000 }),
      },
      'deliberate limits',
    ),
    logLevel: Type.Union(
      ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].map((l) => Type.Literal(l)),
      { default: 'info', description: 'env CHECKPOINT_LOG_LEVEL' },
    ),
  },
  { ...closed, $id: 'BrokerConfig' },
);

export type BrokerConfig = Static<typeof BrokerConfigSchema>;

type Env = Readonly<Record<string, string | undefined>>;

/** What differs per machine comes from the environment (DESIGN.md, "Configuration"). */
export function envOverrides(env: Env): Record<string, unknown> {
  const o: Record<string, unknown> = {};
  if (env.CHECKPOINT_DATA_DIR) o.dataDir = env.CHECKPOINT_DATA_DIR;
  if (env.CHECKPOINT_MQTT_PORT) {
    const port = Number(env.CHECKPOINT_MQTT_PORT);
    // Left as text when not a number, so validation names the variable's target field.
    o.mqtt = { port: Number.isInteger(port) ? port : env.CHECKPOINT_MQTT_PORT };
  }
  if (env.CHECKPOINT_LOG_LEVEL) o.logLevel = env.CHECKPOINT_LOG_LEVEL;
  return o;
}

/** The effective config: file (if any), then the environment on top; throws naming the bad field. */
export async function loadBrokerConfig(file: string | undefined, env: Env = process.env): Promise<BrokerConfig> {
  let fromFile: unknown = {};
  if (file) {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (error) {
      throw new Error(`cannot read config ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
    }
    fromFile = parseConfigText(text, file);
  }
  return parseConfig(BrokerConfigSchema, mergeConfig(fromFile, envOverrides(env)), file ?? '(defaults)');
}
