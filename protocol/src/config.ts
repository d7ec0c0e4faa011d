/**
 * Validation of program config files (pure; the programs read the file). One rule for every
 * program: defaults from the schema are filled in, then the whole config is checked, and each
 * problem is named by its path (`config.yaml: /mqtt/url: ...`, `/screening/treshold: unexpected field`).
 */
import type { Static, TSchema } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { parse as parseYaml } from 'yaml';
import { compileValidator, type PayloadIssue } from './validators.js';

export class ConfigError extends Error {
  constructor(
    readonly where: string,
    readonly issues: PayloadIssue[],
  ) {
    super(`invalid config ${where}: ${issues.map((i) => `${i.path || '/'}: ${i.message}`).join('; ')}`);
    this.name = 'ConfigError';
  }
}

/** Fills defaults into a copy of `value`, validates it, and returns it typed or throws ConfigError. */
export function parseConfig<S extends TSchema>(schema: S, value: unknown, where: string): Static<S> {
  const validator = compileValidator(schema);
  const withDefaults = Value.Default(schema, Value.Clone(value ?? {}));
  if (validator.check(withDefaults)) return withDefaults;
  throw new ConfigError(where, validator.explain(withDefaults));
}

/** Deep-merges `patch` into `base` (objects merged, everything else replaced); for env overrides and set-config. */
export function mergeConfig<T>(base: T, patch: unknown): T {
  if (!isPlainObject(base) || !isPlainObject(patch)) return (patch === undefined ? base : patch) as T;
  const out: Record<string, unknown> = { ...base };
  for (const [key, value] of Object.entries(patch)) {
    out[key] = key in out ? mergeConfig(out[key], value) : value;
  }
  return out as T;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !Buffer.isBuffer(v);
}

/** A config file's text as data: JSON for `.json` files, YAML (a superset) otherwise. */
export function parseConfigText(text: string, where: string): unknown {
  try {
    return (where.endsWith('.json') ? JSON.parse(text) : parseYaml(text)) ?? {};
  } catch (err) {
    throw new Error(`cannot parse config ${where}: ${(err as Error).message}`);
  }
}

/** URLs may carry credentials (mqtt://user:pass@host, http://user:pass@influx); never log them. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '(unparseable url)';
  }
}
