import { describe, expect, it } from 'vitest';
import { Type } from '@sinclair/typebox';
import { ConfigError, mergeConfig, parseConfig, parseConfigText, redactUrl } from '@checkpoint/protocol';

const Schema = Type.Object(
  {
    site: Type.String({ pattern: '^[a-z0-9-]{1,64}$' }),
    mqtt: Type.Object({ url: Type.String({ default: 'mqtt://127.0.0.1:1883' }), keepalive: Type.Integer({ default: 30, minimum: 1 }) }, { additionalProperties: false, default: {} }),
  },
  { additionalProperties: false },
);

describe('parseConfig', () => {
  it('fills defaults, also for omitted sections', () => {
    expect(parseConfig(Schema, { site: 'a' }, 'agent.yaml')).toEqual({ site: 'a', mqtt: { url: 'mqtt://127.0.0.1:1883', keepalive: 30 } });
  });
  it('names unknown and wrong keys with their path and the file', () => {
    expect(() => parseConfig(Schema, { site: 'a', mqtt: { url: 'x', keepalve: 10 } }, 'agent.yaml')).toThrow(
      /invalid config agent.yaml: \/mqtt\/keepalve: unexpected field/,
    );
    expect(() => parseConfig(Schema, { site: 'A B' }, 'agent.yaml')).toThrow(ConfigError);
    expect(() => parseConfig(Schema, { site: 'a', mqtt: { keepalive: 0 } }, 'f')).toThrow(/\/mqtt\/keepalive/);
  });
  it('does not modify its input', () => {
    const input = { site: 'a' };
    parseConfig(Schema, input, 'x');
    expect(input).toEqual({ site: 'a' });
  });
});

describe('mergeConfig', () => {
  it('merges objects deeply and replaces arrays and scalars', () => {
    expect(mergeConfig({ a: { b: 1, c: [1, 2] }, d: 1 }, { a: { c: [3] }, e: 2 })).toEqual({ a: { b: 1, c: [3] }, d: 1, e: 2 });
    expect(mergeConfig({ a: 1 }, undefined)).toEqual({ a: 1 });
  });
});

describe('parseConfigText and redactUrl', () => {
  it('reads YAML and JSON and names the file on a syntax error', () => {
    expect(parseConfigText('site: a\nmqtt:\n  url: mqtt://x\n', 'agent.yaml')).toEqual({ site: 'a', mqtt: { url: 'mqtt://x' } });
    expect(parseConfigText('{"site": "a"}', 'agent.json')).toEqual({ site: 'a' });
    expect(parseConfigText('', 'empty.yaml')).toEqual({});
    expect(() => parseConfigText('site: [a', 'agent.yaml')).toThrow(/cannot parse config agent.yaml/);
  });
  it('hides passwords in URLs', () => {
    expect(redactUrl('mqtt://edge:s3cret@broker:1883')).toBe('mqtt://edge:***@broker:1883');
    expect(redactUrl('http://127.0.0.1:8086/db')).toBe('http://127.0.0.1:8086/db');
    expect(redactUrl('not a url')).toBe('(unparseable url)');
  });
});
