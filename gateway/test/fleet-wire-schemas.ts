/**
 * The official VDA 5050 2.0.0 JSON schemas (../shared/reference/vda5050/schemas-2.0.0, from the
 * VDA5050 repository) as a check of every message on the wire in the fleet tests, in both
 * directions. Our own TypeBox schemas (protocol/src/vda5050.ts) are not used here on purpose:
 * this is the independent check.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormatsModule from 'ajv-formats';
import type { Fleet, FleetEffects } from '../src/fleet/index.js';

const SCHEMA_DIR = fileURLToPath(new URL('../../../shared/reference/vda5050/schemas-2.0.0/', import.meta.url));
const KINDS = ['order', 'instantActions', 'state', 'connection', 'factsheet', 'visualization'] as const;

const addFormats = addFormatsModule as unknown as (ajv: Ajv2020) => void;
const ajv = new Ajv2020({ strict: false, allErrors: true });
addFormats(ajv);
const validators = Object.fromEntries(
  KINDS.map((k) => [k, ajv.compile(JSON.parse(readFileSync(`${SCHEMA_DIR}${k}.schema`, 'utf8')) as object)]),
) as Record<(typeof KINDS)[number], ReturnType<typeof ajv.compile>>;

/** Throws, naming topic and field, when a message does not validate against the official schema. */
export function checkOfficial(topic: string, payload: string | Buffer): void {
  const kind = topic.split('/').at(-1) as (typeof KINDS)[number];
  const validate = validators[kind];
  if (!validate) throw new Error(`no official schema for topic ${topic}`);
  const message: unknown = JSON.parse(payload.toString());
  if (!validate(message)) {
    throw new Error(`${topic} does not validate against the official ${kind} schema: ${ajv.errorsText(validate.errors)}\n${payload.toString()}`);
  }
}

/** Every message checked so far, by kind (to assert the check really ran). */
export const checkedCount: Record<string, number> = {};

const count = (topic: string) => {
  const kind = topic.split('/').at(-1)!;
  checkedCount[kind] = (checkedCount[kind] ?? 0) + 1;
};

/** The fleet with every incoming and outgoing VDA 5050 message checked against the official schemas. */
export function officiallyChecked(fleet: Fleet): Fleet {
  const checkEffects = (fx: FleetEffects) => {
    for (const m of fx.publish) {
      checkOfficial(m.topic, m.payload);
      count(m.topic);
    }
    return fx;
  };
  return new Proxy(fleet, {
    get(target, prop, receiver) {
      const value = Reflect.get(target, prop, receiver) as unknown;
      if (typeof value !== 'function') return value;
      return (...args: unknown[]) => {
        if (prop === 'handleMessage') {
          checkOfficial(args[0] as string, args[1] as string);
          count(args[0] as string);
        }
        const result = (value as (...a: unknown[]) => unknown).apply(target, args);
        if (result && typeof result === 'object') {
          if ('publish' in result) checkEffects(result as FleetEffects);
          else if ('effects' in result) checkEffects((result as { effects: FleetEffects }).effects);
        }
        return result;
      };
    },
  });
}
