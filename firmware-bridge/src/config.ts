/**
 * `firmware-bridge run --config FILE`: YAML or JSON, validated at start (wrong or unknown keys are
 * named by path), with the shared environment overrides CHECKPOINT_MQTT_URL,
 * CHECKPOINT_MQTT_USERNAME, CHECKPOINT_MQTT_PASSWORD, CHECKPOINT_LOG_LEVEL.
 *
 *   mqtt: { url: mqtt://127.0.0.1:1883, username: bridge-1 }   # a broker user of role bridge
 *   robots:
 *     - { port: /dev/serial/by-id/usb-acme-AMR-7, baudRate: 115200, manufacturer: acme, serialNumber: AMR-7 }
 */
import { readFile } from 'node:fs/promises';
import { Type, type Static } from '@sinclair/typebox';
import { mergeConfig, parseConfig, parseConfigText, ROBOT_ID_PATTERN } from '@checkpoint/protocol';

const closed = { additionalProperties: false } as const;

export const BridgeConfigSchema = Type.Object(
  {
    mqtt: Type.Object(
      {
        url: Type.String({ pattern: '^(mqtts?|wss?)://', default: 'mqtt://127.0.0.1:1883' }),
        username: Type.Optional(Type.String({ maxLength: 128 })),
        password: Type.Optional(Type.String({ maxLength: 1024 })),
        keepaliveS: Type.Integer({ minimum: 5, maximum: 600, default: 15, description: 'VDA 5050 suggests about 15 s' }),
      },
      { ...closed, default: {} },
    ),
    robots: Type.Array(
      Type.Object(
        {
          port: Type.String({ minLength: 1, description: 'serial device, e.g. /dev/serial/by-id/...' }),
          baudRate: Type.Integer({ minimum: 1200, maximum: 4_000_000, default: 115200 }),
          manufacturer: Type.String({ pattern: ROBOT_ID_PATTERN }),
          serialNumber: Type.String({ pattern: ROBOT_ID_PATTERN }),
          mapId: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
        },
        closed,
      ),
      { minItems: 1, maxItems: 64 },
    ),
    linkTimeoutMs: Type.Integer({ minimum: 200, maximum: 60_000, default: 2000, description: 'no valid frame for this long = CONNECTIONBROKEN' }),
    reopenMs: Type.Integer({ minimum: 100, maximum: 60_000, default: 1000 }),
    statePeriodMs: Type.Integer({ minimum: 1000, maximum: 30_000, default: 30_000 }),
    stateMinIntervalMs: Type.Integer({ minimum: 10, maximum: 10_000, default: 100, description: 'at most one state per this many ms; changes in between are coalesced, the latest wins' }),
    retransmitMs: Type.Integer({ minimum: 20, maximum: 10_000, default: 200 }),
    logLevel: Type.Union(['fatal', 'error', 'warn', 'info', 'debug', 'trace'].map((l) => Type.Literal(l)), { default: 'info' }),
  },
  closed,
);
export type BridgeConfig = Static<typeof BridgeConfigSchema>;

export function envOverrides(env: Readonly<Record<string, string | undefined>>): Record<string, unknown> {
  const mqtt: Record<string, string> = {};
  if (env.CHECKPOINT_MQTT_URL) mqtt.url = env.CHECKPOINT_MQTT_URL;
  if (env.CHECKPOINT_MQTT_USERNAME) mqtt.username = env.CHECKPOINT_MQTT_USERNAME;
  if (env.CHECKPOINT_MQTT_PASSWORD) mqtt.password = env.CHECKPOINT_MQTT_PASSWORD;
  return { ...(Object.keys(mqtt).length > 0 ? { mqtt } : {}), ...(env.CHECKPOINT_LOG_LEVEL ? { logLevel: env.CHECKPOINT_LOG_LEVEL } : {}) };
}

export async function loadBridgeConfig(file: string, env: Readonly<Record<string, string | undefined>> = process.env): Promise<BridgeConfig> {
  const text = await readFile(file, 'utf8').catch((err: NodeJS.ErrnoException) => {
    throw new Error(`cannot read config ${file}: ${err.code ?? err.message}`);
  });
  return parseConfig(BridgeConfigSchema, mergeConfig(parseConfigText(text, file), envOverrides(env)), file);
}
