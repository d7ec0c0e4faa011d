/**
 * The gateway's config file (YAML or JSON) and environment overrides. This schema is the single
 * source of truth for keys and defaults (README "Configuration" lists them).
 */
import { readFile } from 'node:fs/promises';
import { Type, type Static, type TProperties } from '@sinclair/typebox';
import { parse as parseYaml } from 'yaml';
import { ConfigError, mergeConfig, parseConfig } from '@checkpoint/protocol';

const closed = { additionalProperties: false } as const;
const Section = <T extends TProperties>(props: T, description: string) =>
  Type.Object(props, { ...closed, default: {}, description });

export const GatewayConfigSchema = Type.Object(
  {
    dataDir: Type.String({ default: '.checkpoint-gateway', description: 'SQLite store (gateway.sqlite); env CHECKPOINT_DATA_DIR' }),
    mqtt: Section(
      {
        url: Type.String({ pattern: '^(mqtts?|wss?)://', default: 'mqtt://127.0.0.1:1883', description: 'env CHECKPOINT_MQTT_URL' }),
        urls: Type.Optional(
          Type.Array(Type.String({ pattern: '^(mqtts?|wss?)://[^/?#,\\s]+/?$' }), {
            minItems: 1,
            maxItems: 32,
            description:
              'cluster mode: every node\'s MQTT listener (replaces url; tried in turn); the robot fleet\'s connection uses them (docs/scale.md); env CHECKPOINT_MQTT_URLS, comma-separated',
          }),
        ),
        username: Type.Optional(Type.String({ description: 'a broker user of role gateway; env CHECKPOINT_MQTT_USERNAME' })),
        password: Type.Optional(Type.String({ description: 'env CHECKPOINT_MQTT_PASSWORD; never logged' })),
        clientId: Type.String({
          maxLength: 128,
          default: 'checkpoint-gateway',
          description: 'fixed: the broker keeps this persistent session (and its unacknowledged messages) while the gateway is away',
        }),
        caFile: Type.Optional(Type.String({ description: 'CA certificate (PEM) for mqtts://' })),
        keepaliveS: Type.Integer({ minimum: 5, maximum: 600, default: 30 }),
        reconnectMs: Type.Integer({ minimum: 100, maximum: 60_000, default: 1000 }),
        storeRetryMinMs: Type.Integer({ minimum: 1, maximum: 60_000, default: 20, description: 'a message the store could not take (database busy) is retried after this, doubling' }),
        storeRetryMaxMs: Type.Integer({ minimum: 1, maximum: 60_000, default: 1000, description: '... up to this; it is acknowledged once stored, later messages wait (order kept)' }),
      },
      'broker connection (MQTT 3.1.1, clean: false, QoS 1)',
    ),
    ingest: Section(
      {
        batchMaxMessages: Type.Integer({
          minimum: 1,
          maximum: 10_000,
          default: 500,
          description: 'group commit: messages arriving while a batch gathers or is stored share one transaction, at most this many; each is acknowledged (PUBACK) once its batch committed',
        }),
        batchMaxWaitMs: Type.Integer({
          minimum: 0,
          maximum: 1000,
          default: 5,
          description: 'a batch is stored at the latest this long after its first message arrived (0: on the next event-loop turn)',
        }),
        source: Type.Union([Type.Literal('mqtt'), Type.Literal('jetstream')], {
          default: 'mqtt',
          description: 'mqtt: one persistent MQTT session (mqtt.*); jetstream: cluster mode, replicas share a durable consumer on a NATS cluster (nats.*, docs/scale.md)',
        }),
      },
      'MQTT ingest (group commit into the operational store)',
    ),
    nats: Section(
      {
        servers: Type.Array(Type.String({ pattern: '^(nats|tls)://' }), {
          minItems: 1,
          default: ['nats://127.0.0.1:4222'],
          description: 'every node of the cluster (NATS client port); env CHECKPOINT_NATS_SERVERS (comma-separated)',
        }),
        user: Type.Optional(Type.String({ description: 'a user of role gateway from checkpoint-broker nats-export' })),
        password: Type.Optional(Type.String({ description: 'env CHECKPOINT_NATS_PASSWORD; never logged' })),
        durable: Type.String({
          pattern: '^[A-Za-z0-9_-]{1,64}$',
          default: 'checkpoint-gateway',
          description: 'the durable consumer on $MQTT_msgs every replica shares (also their queue group for QoS 0); nats-export grants this name',
        }),
        fetchBatch: Type.Integer({ minimum: 1, maximum: 10_000, default: 500, description: 'messages asked for per pull' }),
        fetchExpiresMs: Type.Integer({ minimum: 100, maximum: 60_000, default: 1000, description: 'a pull waits at most this long for messages' }),
        ackWaitS: Type.Integer({
          minimum: 1,
          maximum: 3600,
          default: 10,
          description: 'a message not acknowledged this long after delivery (its replica died, or the pull that carried it was lost with a node) is delivered again; bounds the ingest gap after such a loss; must exceed the time to store a batch; set when the consumer is created',
        }),
      },
      'cluster mode (ingest.source: jetstream): the NATS cluster devices publish to',
    ),
    influx: Section(
      {
        url: Type.Union([Type.Null(), Type.String({ pattern: '^https?://' })], {
          default: null,
          description: 'http://user:pass@host:8086/database; null = time series in SQLite; env CHECKPOINT_INFLUX_URL',
        }),
        retentionPolicy: Type.String({ pattern: '^[A-Za-z0-9_]{1,64}$', default: 'checkpoint_raw', description: 'created (as default RP) when missing' }),
        retentionDuration: Type.String({ pattern: '^(INF|[0-9]+[hdw])$', default: '30d', description: 'InfluxQL duration of that policy' }),
        timeoutMs: Type.Integer({ minimum: 100, default: 10_000, description: 'per HTTP request' }),
      },
      'InfluxDB (v1 HTTP API: /write, /query)',
    ),
    series: Section(
      {
        batchSize: Type.Integer({ minimum: 1, maximum: 50_000, default: 5000, description: 'points per write (InfluxDB guidance: 5000)' }),
        flushIntervalMs: Type.Integer({ minimum: 10, maximum: 60_000, default: 1000, description: 'a partial batch is written after this' }),
        retryMinMs: Type.Integer({ minimum: 10, default: 200, description: 'first retry delay; doubles per failure' }),
        retryMaxMs: Type.Integer({ minimum: 10, default: 30_000, description: 'longest retry delay' }),
      },
      'time-series writer (reads the durable spool in order)',
    ),
    http: Section(
      {
        host: Type.String({ default: '0.0.0.0' }),
        port: Type.Integer({ minimum: 0, maximum: 65535, default: 8080, description: 'env CHECKPOINT_HTTP_PORT; 0 = any free port' }),
      },
      'API, /docs, /metrics',
    ),
    auth: Section(
      {
        tokenTtlS: Type.Integer({ minimum: 60, default: 12 * 3600, description: 'bearer token lifetime' }),
        sessionMaxS: Type.Integer({
          minimum: 60,
          default: 7 * 86_400,
          description: 'absolute session limit: renewals (wall monitors) never extend a session past this long after the password was entered',
        }),
        loginMaxFailures: Type.Integer({ minimum: 1, default: 10, description: 'failed logins per client address per window' }),
        loginWindowS: Type.Integer({ minimum: 1, default: 300 }),
      },
      'API authentication',
    ),
    alerts: Section(
      {
        escalateAfterS: Type.Integer({ minimum: 1, default: 120, description: 'an open alert not acknowledged after this is escalated' }),
        invalidStormCount: Type.Integer({
          minimum: 2,
          default: 5,
          description: 'this many invalid screenings from one checkpoint within the window become one device alert',
        }),
        invalidStormWindowS: Type.Integer({ minimum: 1, default: 60 }),
        checkIntervalMs: Type.Integer({ minimum: 100, default: 5000, description: 'escalation and storm-resolution check period' }),
      },
      'alert workflow',
    ),
    retention: Section(
      {
        screeningsDays: Type.Number({ exclusiveMinimum: 0, default: 30, description: 'screening rows (health data) older than this are deleted' }),
        snapshotsDays: Type.Number({ exclusiveMinimum: 0, default: 7, description: 'snapshot JPEGs older than this are deleted' }),
        eventsHours: Type.Number({ exclusiveMinimum: 0, default: 24, description: 'live-feed replay window (Last-Event-ID)' }),
        seriesDays: Type.Number({ exclusiveMinimum: 0, default: 30, description: 'SQLite series points (no InfluxDB) older than this are deleted; like the InfluxDB retention policy' }),
        alertsDays: Type.Number({ exclusiveMinimum: 0, default: 90, description: 'closed alerts older than this are deleted (open and acknowledged ones are kept)' }),
        tasksDays: Type.Number({ exclusiveMinimum: 0, default: 90, description: 'finished robot tasks older than this are deleted' }),
        auditDays: Type.Number({ exclusiveMinimum: 0, default: 365, description: 'audit rows (logins, acknowledgements, snapshot views) older than this are deleted' }),
        rejectedDays: Type.Number({ exclusiveMinimum: 0, default: 30, description: 'series points the store refused (series_rejected) are kept this long for inspection' }),
        intervalS: Type.Integer({ minimum: 1, default: 3600, description: 'how often the retention job runs' }),
      },
      'retention (every table: README "Retention")',
    ),
    devices: Section(
      {
        offlineAfterS: Type.Integer({
          minimum: 0,
          maximum: 86_400,
          default: 30,
          description:
            'a device silent this long (no telemetry, state or screening) is reported offline even without its last will (lost when a cluster node crashes); 3x the agent telemetry.intervalMs (10 s); default 30 with ingest.source jetstream, else 0 (off: one broker publishes the last will)',
        }),
      },
      'device liveness (offline from silence)',
    ),
    commands: Section(
      { timeoutMs: Type.Integer({ minimum: 100, maximum: 600_000, default: 10_000, description: 'wait for the agent cmd/ack, then 504' }) },
      'commands to agents',
    ),
    // --- robot fleet (issue 6; README "Robots") ---
    fleet: Section(
      {
        map: Type.Optional(
          Type.Union([Type.String({ minLength: 1 }), Type.Object({}, { additionalProperties: true })], {
            description: 'site map: inline {nodes, edges, zones} or a YAML/JSON file path (relative to the working directory); the fleet runs only when a map is set',
          }),
        ),
        rules: Type.Array(Type.Unknown(), { default: [], description: 'rules, e.g. {id, when: {alertAcknowledged: {outcome: referred, checkpoint: gate-2}}, then: {type: disinfection, target: checkpoint-zone}}' }),
        policy: Section(
          {
            minBatteryPct: Type.Optional(Type.Number({ minimum: 0, maximum: 100, description: 'below: no work, sent to charge (default 20)' })),
            resumeBatteryPct: Type.Optional(Type.Number({ minimum: 0, maximum: 100, description: 'a charging robot takes work again from this (default 50)' })),
            drainPctPerM: Type.Optional(Type.Number({ minimum: 0 })),
            drainPctPerActionS: Type.Optional(Type.Number({ minimum: 0 })),
            defaultSpeed: Type.Optional(Type.Number({ exclusiveMinimum: 0, description: 'm/s when a factsheet does not say' })),
            urgentPriority: Type.Optional(Type.Integer({ minimum: 0, maximum: 101 })),
            priorityWeightS: Type.Optional(Type.Number({ minimum: 0 })),
            deadlineHorizonS: Type.Optional(Type.Number({ minimum: 0 })),
            actionDurationS: Type.Optional(Type.Record(Type.String(), Type.Number({ minimum: 0 }))),
            disinfectDurationS: Type.Optional(Type.Number({ exclusiveMinimum: 0 })),
            parkIdleRobots: Type.Optional(Type.Boolean()),
          },
          'dispatch policy (gateway/src/fleet/dispatch.ts DEFAULT_POLICY)',
        ),
        tickMs: Type.Integer({ minimum: 50, maximum: 60_000, default: 1000, description: 'timeouts and a dispatch round this often' }),
        maxAttempts: Type.Integer({ minimum: 1, maximum: 10, default: 3, description: 'a task whose robot is lost this often fails' }),
        confirmTimeoutS: Type.Integer({ minimum: 1, default: 900, description: 'a robot waiting for a confirmation this long gives up (task failed)' }),
        adoptTimeoutS: Type.Integer({
          minimum: 1,
          default: 60,
          description: 'a gateway that takes over the fleet adopts the running orders; a robot silent this long after that loses its task (re-queued or failed)',
        }),
        linkLossGraceS: Type.Integer({
          minimum: 0,
          maximum: 3600,
          default: 30,
          description: 'a robot whose link broke mid-task (CONNECTIONBROKEN) keeps its task this long before it is re-queued; 0 = at once',
        }),
        reloadMs: Type.Integer({ minimum: 100, maximum: 600_000, default: 2000, description: 'the leading gateway picks up tasks other gateways stored (queued) this often' }),
      },
      'robot fleet: VDA 5050 master control',
    ),
    // --- end robot fleet ---
    live: Section(
      {
        maxClients: Type.Integer({ minimum: 1, maximum: 100_000, default: 200, description: 'live-feed (SSE) connections in total; more get 503' }),
        maxClientsPerUser: Type.Integer({ minimum: 1, maximum: 10_000, default: 10, description: 'per user; more get 429' }),
        stallTimeoutS: Type.Integer({ minimum: 1, maximum: 3600, default: 30, description: 'a connection that does not read what was sent for this long is closed (it resumes with Last-Event-ID)' }),
        sessionCheckMs: Type.Integer({ minimum: 100, maximum: 600_000, default: 5000, description: 'streams end this soon after their session expires or its user is removed (logout ends them at once)' }),
      },
      'live feed (SSE)',
    ),
    store: Section(
      {
        backend: Type.Union([Type.Literal('sqlite'), Type.Literal('postgres')], {
          default: 'sqlite',
          description: 'where the operational store lives: sqlite (embedded, one gateway) or postgres (several gateways on one database); env CHECKPOINT_STORE',
        }),
        postgres: Section(
          {
            url: Type.Optional(Type.String({ pattern: '^postgres(ql)?://', description: 'postgresql://user:pass@host:5432/database (required for backend postgres); env CHECKPOINT_POSTGRES_URL; the password is never logged' })),
            poolSize: Type.Integer({ minimum: 1, maximum: 1000, default: 10, description: 'connections in the pool (plus one for leadership)' }),
            leaderRetryMs: Type.Integer({ minimum: 50, maximum: 60_000, default: 1000, description: 'a follower tries to take leadership this often (the hand-over time after a leader dies)' }),
            leaderCheckMs: Type.Integer({ minimum: 50, maximum: 60_000, default: 1000, description: 'the leader checks this often that its connection still holds the lock' }),
          },
          'PostgreSQL (store.backend postgres)',
        ),
      },
      'operational store backend',
    ),
    sqlite: Section(
      {
        synchronous: Type.Union([Type.Literal('normal'), Type.Literal('full')], {
          default: 'normal',
          description: 'WAL + normal survives a process crash; full also survives power loss (one fsync per message)',
        }),
        busyTimeoutMs: Type.Integer({
          minimum: 0,
          maximum: 10_000,
          default: 200,
          description: "how long one statement waits for another process's write lock; short, because the wait blocks the event loop: ingest retries asynchronously instead",
        }),
        walAutocheckpointPages: Type.Integer({
          minimum: 100,
          maximum: 1_000_000,
          default: 10_000,
          description: 'WAL pages (4 KB) written before SQLite checkpoints them into the file; larger means fewer checkpoints on the ingest path and a larger -wal file (about 40 MB at the default)',
        }),
      },
      'operational store',
    ),
    // --- OPC UA server (issue 8; see OPCUA.md) ---
    opcua: Section(
      {
        enabled: Type.Boolean({ default: true }),
        port: Type.Integer({ minimum: 0, maximum: 65535, default: 4840, description: '0 = any free port' }),
        host: Type.Optional(Type.String({ description: 'listen address; default all interfaces' })),
        resourcePath: Type.String({ default: '/UA/Checkpoint', description: 'path of the endpoint URL' }),
        securityModes: Type.Array(Type.Union([Type.Literal('None'), Type.Literal('Sign'), Type.Literal('SignAndEncrypt')]), {
          minItems: 1,
          uniqueItems: true,
          default: ['SignAndEncrypt'],
          description: 'None only when listed here (OPC 10000-2: profile None disabled by default)',
        }),
        securityPolicies: Type.Array(Type.Union([Type.Literal('Basic256Sha256'), Type.Literal('Aes128_Sha256_RsaOaep'), Type.Literal('Aes256_Sha256_RsaPss')]), {
          minItems: 1,
          uniqueItems: true,
          default: ['Basic256Sha256', 'Aes128_Sha256_RsaOaep', 'Aes256_Sha256_RsaPss'],
        }),
        pkiDir: Type.Optional(Type.String({ description: 'default <dataDir>/pki: own/ (server certificate, created on first start), trusted/, rejected/, issuers/' })),
        automaticallyAcceptUnknownCertificates: Type.Boolean({ default: false, description: 'labs only: trust every client certificate' }),
        allowAnonymous: Type.Boolean({ default: false, description: 'anonymous sessions may browse and read, never call methods' }),
        maxSessions: Type.Integer({ minimum: 1, maximum: 1000, default: 20 }),
      },
      'OPC UA server for SCADA / building management',
    ),
    // --- end OPC UA ---
    // --- provisioning and model roll-outs (issue 9; README "Installing an edge device") ---
    provisioning: Section(
      {
        brokerUsersFile: Type.Optional(
          Type.String({ description: "the broker's users.sqlite (its dataDir/users.sqlite): the gateway adds and removes device users there; unset (and no embedded broker) = provisioning off" }),
        ),
        deviceMqttUrl: Type.Optional(Type.String({ pattern: '^(mqtts?|wss?)://', description: 'broker URL enrolled devices get; default mqtt.url' })),
        caFile: Type.Optional(Type.String({ description: 'CA certificate (PEM) enrolled devices get to trust the broker (mqtts://)' })),
        publicUrl: Type.Optional(Type.String({ pattern: '^https?://', description: 'this gateway as devices reach it (model downloads, enroll hint); default its own http://host:port' })),
        tokenTtlS: Type.Integer({ minimum: 60, maximum: 7 * 86_400, default: 3600, description: 'enrollment token lifetime' }),
        modelsDir: Type.Optional(Type.String({ description: 'published model files on SQLite; default <dataDir>/models (on PostgreSQL the files are in the database, shared by every gateway)' })),
        maxModelBytes: Type.Integer({ minimum: 1024, maximum: 1024 ** 3, default: 64 * 1024 ** 2, description: 'largest model upload' }),
        updateTimeoutS: Type.Integer({ minimum: 5, maximum: 86_400, default: 600, description: 'a device without a final update-model ack after this counts as failed' }),
      },
      'edge device enrollment and model roll-outs',
    ),
    // --- end provisioning ---
    logLevel: Type.Union(
      ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].map((l) => Type.Literal(l)),
      { default: 'info', description: 'env CHECKPOINT_LOG_LEVEL' },
    ),
  },
  { ...closed, $id: 'GatewayConfig' },
);

export type GatewayConfig = Static<typeof GatewayConfigSchema>;

type Env = Readonly<Record<string, string | undefined>>;

/** What differs per machine comes from the environment (DESIGN.md, "Configuration"). */
export function envOverrides(env: Env): Record<string, unknown> {
  const o: Record<string, unknown> = {};
  const mqtt: Record<string, unknown> = {};
  if (env.CHECKPOINT_DATA_DIR) o.dataDir = env.CHECKPOINT_DATA_DIR;
  if (env.CHECKPOINT_MQTT_URL) mqtt.url = env.CHECKPOINT_MQTT_URL;
  if (env.CHECKPOINT_MQTT_URLS) mqtt.urls = env.CHECKPOINT_MQTT_URLS.split(',').map((s) => s.trim()).filter(Boolean);
  if (env.CHECKPOINT_MQTT_USERNAME) mqtt.username = env.CHECKPOINT_MQTT_USERNAME;
  if (env.CHECKPOINT_MQTT_PASSWORD) mqtt.password = env.CHECKPOINT_MQTT_PASSWORD;
  if (Object.keys(mqtt).length) o.mqtt = mqtt;
  const store: Record<string, unknown> = {};
  if (env.CHECKPOINT_STORE) store.backend = env.CHECKPOINT_STORE;
  if (env.CHECKPOINT_POSTGRES_URL) store.postgres = { url: env.CHECKPOINT_POSTGRES_URL };
  if (Object.keys(store).length) o.store = store;
  const nats: Record<string, unknown> = {};
  if (env.CHECKPOINT_NATS_SERVERS) nats.servers = env.CHECKPOINT_NATS_SERVERS.split(',').map((s) => s.trim()).filter(Boolean);
  if (env.CHECKPOINT_NATS_PASSWORD) nats.password = env.CHECKPOINT_NATS_PASSWORD;
  if (Object.keys(nats).length) o.nats = nats;
  if (env.CHECKPOINT_INFLUX_URL) o.influx = { url: env.CHECKPOINT_INFLUX_URL };
  if (env.CHECKPOINT_HTTP_PORT) {
    const port = Number(env.CHECKPOINT_HTTP_PORT);
    // Left as a string when not a number, so that validation names CHECKPOINT_HTTP_PORT's key.
    o.http = { port: Number.isInteger(port) ? port : env.CHECKPOINT_HTTP_PORT };
  }
  if (env.CHECKPOINT_LOG_LEVEL) o.logLevel = env.CHECKPOINT_LOG_LEVEL;
  return o;
}

export function parseConfigText(text: string, where: string): unknown {
  try {
    return where.endsWith('.json') ? JSON.parse(text) : parseYaml(text);
  } catch (err) {
    throw new Error(`cannot parse config ${where}: ${(err as Error).message}`);
  }
}

/** Validates a config object (defaults filled in); throws ConfigError naming the bad key. */
export function resolveGatewayConfig(value: unknown, where = '(gateway options)'): GatewayConfig {
  const config = parseConfig(GatewayConfigSchema, value ?? {}, where);
  if (config.store.backend === 'postgres' && !config.store.postgres.url) {
    throw new ConfigError(where, [{ path: '/store/postgres/url', message: 'required when store.backend is postgres (or env CHECKPOINT_POSTGRES_URL)' }]);
  }
  // Offline from silence is for cluster mode, where a crashed node takes devices' last wills with
  // it; on one broker the will arrives, and the rule is off unless set.
  const silenceSet = (value as { devices?: { offlineAfterS?: unknown } } | null)?.devices?.offlineAfterS !== undefined;
  if (!silenceSet && config.ingest.source !== 'jetstream') config.devices.offlineAfterS = 0;
  return config;
}

/** The effective config: file (if any), then the environment on top, validated once. */
export async function loadGatewayConfig(file: string | undefined, env: Env = process.env): Promise<GatewayConfig> {
  let fromFile: unknown = {};
  if (file) {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (err) {
      throw new Error(`cannot read config ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
    fromFile = parseConfigText(text, file) ?? {};
  }
  return resolveGatewayConfig(mergeConfig(fromFile, envOverrides(env)), file ?? '(defaults + environment)');
}

export interface InfluxTarget {
  protocol: 'http' | 'https';
  host: string;
  port: number;
  database: string;
  username?: string;
  password?: string;
}

/** `http://user:pass@host:8086/db` → connection parts; the database is required. */
export function parseInfluxUrl(url: string): InfluxTarget {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new Error('influx.url is not a URL (expected http://user:pass@host:8086/database)');
  }
  const database = decodeURIComponent(u.pathname.replace(/^\/+|\/+$/g, ''));
  if (!database || database.includes('/')) {
    throw new Error(`influx.url must name one database in its path, e.g. http://127.0.0.1:8086/checkpoint (got path ${JSON.stringify(u.pathname)})`);
  }
  const protocol = u.protocol === 'https:' ? 'https' : 'http';
  return {
    protocol,
    host: u.hostname,
    port: u.port ? Number(u.port) : 8086,
    database,
    ...(u.username ? { username: decodeURIComponent(u.username) } : {}),
    ...(u.password ? { password: decodeURIComponent(u.password) } : {}),
  };
}

/** Kept here for the modules that import it from the config. */
export { redactUrl } from '@checkpoint/protocol';
