/**
 * One compiled validator per payload schema, built once at import. `parsePayload` is the
 * boundary check every receiver uses: size limit, JSON parse, schema; on failure it says what
 * was wrong and where (`screening: /temperatureC: Expected number`).
 */
import { FormatRegistry, type Static, type TSchema } from '@sinclair/typebox';
import { TypeCompiler, type TypeCheck } from '@sinclair/typebox/compiler';
import { ValueErrorType, type ValueError } from '@sinclair/typebox/errors';
import { Value } from '@sinclair/typebox/value';
import { CheckpointState, Command, CommandAck, Screening, Telemetry } from './schemas.js';
import { NOT_AN_INSTANT, isRealInstant, timestampProblem } from './timestamps.js';

// TypeBox checks `format` through its (process-wide) registry and refuses every value of an
// unregistered format; ours is the strict one: a real instant, not just the right shape.
FormatRegistry.Set('date-time', isRealInstant);

export const PAYLOAD_SCHEMAS = {
  state: CheckpointState,
  screening: Screening,
  telemetry: Telemetry,
  cmd: Command,
  'cmd/ack': CommandAck,
} as const;

export type PayloadKind = keyof typeof PAYLOAD_SCHEMAS;
export type PayloadOf<K extends PayloadKind> = Static<(typeof PAYLOAD_SCHEMAS)[K]>;

/** JSON payloads above this are refused before parsing (a screening is ~700 bytes). */
export const MAX_JSON_PAYLOAD_BYTES = 64 * 1024;

export interface PayloadIssue {
  /** JSON pointer to the offending field; '' for the payload as a whole. */
  path: string;
  message: string;
  /** Set for problems a receiver may handle specially: `not_an_instant` (timestamps.ts). */
  code?: typeof NOT_AN_INSTANT;
}

export type PayloadResult<T> = { ok: true; value: T } | { ok: false; errors: PayloadIssue[]; message: string };

export class PayloadError extends Error {
  constructor(
    readonly kind: string,
    readonly errors: PayloadIssue[],
  ) {
    super(formatIssues(kind, errors));
    this.name = 'PayloadError';
  }
}

function formatIssues(kind: string, errors: PayloadIssue[]): string {
  return `${kind}: ${errors.map((e) => `${e.path || '/'}: ${e.message}`).join('; ')}`;
}

export interface Validator<T> {
  check(value: unknown): value is T;
  /** The first few problems, each with its field path. */
  explain(value: unknown): PayloadIssue[];
}

export function compileValidator<S extends TSchema>(schema: S): Validator<Static<S>> {
  const compiled: TypeCheck<S> = TypeCompiler.Compile(schema);
  return {
    check: (value): value is Static<S> => compiled.Check(value),
    explain: (value) => explainErrors(compiled, value),
  };
}

function explainErrors(compiled: TypeCheck<TSchema>, value: unknown, limit = 5): PayloadIssue[] {
  const issues: PayloadIssue[] = [];
  const seen = new Set<string>();
  for (const error of compiled.Errors(value)) {
    // Unions report one error per branch; the first error per path is the useful one.
    if (seen.has(error.path)) continue;
    seen.add(error.path);
    for (const issue of describeError(error)) {
      issues.push(issue);
    }
    if (issues.length >= limit) break;
  }
  return issues.length > 0 ? issues : [{ path: '', message: 'does not match the schema' }];
}

/**
 * For a union of objects told apart by one literal property (`type` of commands): the branch
 * the value names, or the allowed tags when it names none.
 */
function discriminated(
  branches: TSchema[],
  value: unknown,
): { key: string; options: string[]; got: unknown; branch: TSchema | undefined } | null {
  if (branches.length < 2 || typeof value !== 'object' || value === null) return null;
  const tagOf = (b: TSchema, key: string): unknown => (b.properties?.[key] as { const?: unknown } | undefined)?.const;
  const key = Object.keys(branches[0]!.properties ?? {}).find((k) => branches.every((b) => tagOf(b, k) !== undefined));
  if (!key) return null;
  const got = (value as Record<string, unknown>)[key];
  return { key, options: branches.map((b) => JSON.stringify(tagOf(b, key))), got, branch: branches.find((b) => tagOf(b, key) === got) };
}

/** Turns TypeBox's generic messages into ones an operator can act on. */
function describeError(error: ValueError): PayloadIssue[] {
  const { path } = error;
  switch (error.type) {
    case ValueErrorType.ObjectAdditionalProperties:
      return [{ path, message: 'unexpected field' }];
    case ValueErrorType.ObjectRequiredProperty:
      return [{ path, message: 'required field is missing' }];
    case ValueErrorType.StringFormat:
      if (error.schema.format === 'date-time' && typeof error.value === 'string') {
        return [{ path, message: `not a real instant: ${timestampProblem(error.value) ?? 'invalid'}`, code: NOT_AN_INSTANT }];
      }
      return [{ path, message: error.message }];
    case ValueErrorType.StringMaxLength:
      return [{ path, message: `${error.message} (got ${String(error.value).length})` }];
    case ValueErrorType.Union: {
      const branches = (error.schema as { anyOf?: TSchema[] }).anyOf ?? [];
      const tagged = discriminated(branches, error.value);
      if (tagged) {
        if (!tagged.branch) {
          return [{ path: `${path}/${tagged.key}`, message: `expected ${tagged.options.join(' or ')}, got ${JSON.stringify(tagged.got)?.slice(0, 40)}` }];
        }
        return [...Value.Errors(tagged.branch, error.value)].slice(0, 3).flatMap((e) => describeError({ ...e, path: path + e.path }));
      }
      // A nullable object that is present: report what is wrong inside it.
      const objectBranch = branches.filter((b) => b.type === 'object');
      if (objectBranch.length === 1 && typeof error.value === 'object' && error.value !== null) {
        const inner = [...Value.Errors(objectBranch[0]!, error.value)].flatMap((e) =>
          describeError({ ...e, path: path + e.path }),
        );
        if (inner.length > 0) return inner.slice(0, 3);
      }
      const options = branches.map((b) => ('const' in b ? JSON.stringify(b.const) : String(b.type)));
      return [{ path, message: `expected ${options.join(' or ')}, got ${JSON.stringify(error.value)?.slice(0, 40)}` }];
    }
    default:
      return [{ path, message: error.message }];
  }
}

const validators: { [K in PayloadKind]: Validator<PayloadOf<K>> } = {
  state: compileValidator(CheckpointState),
  screening: compileValidator(Screening),
  telemetry: compileValidator(Telemetry),
  cmd: compileValidator(Command),
  'cmd/ack': compileValidator(CommandAck),
};

export function validatePayload<K extends PayloadKind>(kind: K, value: unknown): PayloadResult<PayloadOf<K>> {
  const validator = validators[kind];
  if (validator.check(value)) return { ok: true, value };
  const errors = validator.explain(value);
  return { ok: false, errors, message: formatIssues(kind, errors) };
}

/** Size check, JSON parse and schema validation of a received MQTT payload. */
export function parsePayload<K extends PayloadKind>(kind: K, payload: Buffer | string): PayloadResult<PayloadOf<K>> {
  const size = typeof payload === 'string' ? Buffer.byteLength(payload) : payload.length;
  if (size > MAX_JSON_PAYLOAD_BYTES) {
    const errors = [{ path: '', message: `payload of ${size} bytes exceeds ${MAX_JSON_PAYLOAD_BYTES}` }];
    return { ok: false, errors, message: formatIssues(kind, errors) };
  }
  let value: unknown;
  try {
    value = JSON.parse(typeof payload === 'string' ? payload : payload.toString('utf8'));
  } catch (err) {
    const errors = [{ path: '', message: `not valid JSON (${(err as Error).message})` }];
    return { ok: false, errors, message: formatIssues(kind, errors) };
  }
  return validatePayload(kind, value);
}

/** Like validatePayload but throws a PayloadError; for senders checking their own output. */
export function assertPayload<K extends PayloadKind>(kind: K, value: unknown): PayloadOf<K> {
  const result = validatePayload(kind, value);
  if (!result.ok) throw new PayloadError(kind, result.errors);
  return result.value;
}
