/** Reading the agent's config: file (YAML or JSON) + environment overrides, validated once. */
import { readFile } from 'node:fs/promises';
import { mergeConfig, parseConfig, parseConfigText } from '@checkpoint/protocol';
import { profileDefaults } from './profiles.js';
import { AgentConfigSchema, type AgentConfig } from './schema.js';

type Env = Readonly<Record<string, string | undefined>>;

/** What differs per machine comes from the environment (DESIGN.md, "Configuration"). */
export function envOverrides(env: Env): Record<string, unknown> {
  const o: Record<string, unknown> = {};
  const mqtt: Record<string, unknown> = {};
  const model: Record<string, unknown> = {};
  if (env.CHECKPOINT_DATA_DIR) o.dataDir = env.CHECKPOINT_DATA_DIR;
  if (env.CHECKPOINT_MQTT_URL) mqtt.url = env.CHECKPOINT_MQTT_URL;
  if (env.CHECKPOINT_MQTT_URLS) mqtt.urls = env.CHECKPOINT_MQTT_URLS.split(',').map((u) => u.trim()).filter(Boolean);
  if (env.CHECKPOINT_MQTT_USERNAME) mqtt.username = env.CHECKPOINT_MQTT_USERNAME;
  if (env.CHECKPOINT_MQTT_PASSWORD) mqtt.password = env.CHECKPOINT_MQTT_PASSWORD;
  if (env.CHECKPOINT_MODELS_DIR) model.dir = env.CHECKPOINT_MODELS_DIR;
  if (env.CHECKPOINT_MODELS_MIRROR) model.mirror = env.CHECKPOINT_MODELS_MIRROR;
  if (env.CHECKPOINT_LOG_LEVEL) o.logLevel = env.CHECKPOINT_LOG_LEVEL;
  if (env.CHECKPOINT_EDGE_PROFILE) o.profile = env.CHECKPOINT_EDGE_PROFILE;
  if (env.CHECKPOINT_AGENT_HTTP_PORT) o.http = { port: Number(env.CHECKPOINT_AGENT_HTTP_PORT) };
  if (Object.keys(mqtt).length) o.mqtt = mqtt;
  if (Object.keys(model).length) o.model = model;
  return o;
}

/**
 * The effective config: `file` (if any) merged with `base` (e.g. defaults a subcommand needs),
 * then the environment on top, then validated. Throws ConfigError naming the bad field.
 */
export async function loadAgentConfig(file: string | undefined, env: Env = process.env, base: Record<string, unknown> = {}): Promise<AgentConfig> {
  let fromFile: unknown = {};
  if (file) {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (err) {
      throw new Error(`cannot read config ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
    fromFile = parseConfigText(text, file);
  }
  const overrides = envOverrides(env);
  const chosen = mergeConfig(mergeConfig(base, fromFile), overrides);
  // A profile fills in what neither the file nor the environment set.
  const profile = (chosen as { profile?: unknown }).profile;
  const merged = mergeConfig(mergeConfig(mergeConfig(profileDefaults(profile), base), fromFile), overrides);
  return parseConfig(AgentConfigSchema, merged, file ?? '(defaults)');
}
