import { describe, expect, it } from 'vitest';
import { assertBinding, canPublish, canSubscribe, filterContains, grantsFor, isValidFilter, topicMatchesFilter, type Principal } from '../src/index.js';
import { PUBLISH_CASES, SUBSCRIBE_CASES, USERS } from './matrix.js';

const user = (name: string): Principal => USERS.find((u) => u.name === name)!;

describe('topic algebra', () => {
  it.each([
    ['a/b/c', 'a/b/c', true], ['a/b/c', 'a/+/c', true], ['a/b/c', 'a/#', true], ['a', 'a/#', true], ['a/b/c', '#', true],
    ['a/b/c', 'a/+', false], ['a/b', 'a/b/c', false], ['a/b/c', '+/+', false], ['$SYS/x', '#', false], ['$SYS/x', '+/x', false],
    ['$SYS/broker/x', '$SYS/broker/#', true], ['a//c', 'a/+/c', true], ['a/b', 'a/b/#', true],
  ])('topic %s vs filter %s -> %s', (topic, filter, expected) => {
    expect(topicMatchesFilter(topic, filter)).toBe(expected);
  });

  it.each([
    ['checkpoint/v1/#', 'checkpoint/v1/+/+/cmd', true], ['checkpoint/v1/#', 'checkpoint/v1/#', true], ['checkpoint/v1/#', 'checkpoint/v1', true],
    ['checkpoint/v1/a/b/cmd', 'checkpoint/v1/#', false], ['checkpoint/v1/a/b/cmd', 'checkpoint/v1/+/b/cmd', false],
    ['checkpoint/v1/+/+/cmd', 'checkpoint/v1/a/b/cmd', true], ['checkpoint/v1/+/+/cmd', 'checkpoint/v1/+/+/+', false],
    ['checkpoint/v1/+/+/cmd', 'checkpoint/v1/+/+/cmd/#', false], ['a/+', 'a/+/#', false], ['#', '$SYS/#', false], ['+/#', '$SYS/x', false],
    ['$SYS/broker/#', '$SYS/#', false], ['$SYS/broker/#', '$SYS/broker/clients/+', true], ['$SYS/broker/#', '#', false],
  ])('%s contains %s -> %s', (outer, inner, expected) => {
    expect(filterContains(outer, inner)).toBe(expected);
  });

  it.each(['a/#/b', 'a+/b', 'a/b#', '', 'a/\u0000'])('rejects invalid filter %j', (filter) => {
    expect(isValidFilter(filter)).toBe(false);
  });
});

describe('role grants (the matrix without sockets)', () => {
  it.each(PUBLISH_CASES.map((c) => [c.user, c.topic, c.allowed] as const))('%s publish %s -> %s', (name, topic, allowed) => {
    expect(canPublish(user(name), topic)).toBe(allowed);
  });

  it.each(SUBSCRIBE_CASES.map((c) => [c.user, c.topic, c.allowed] as const))('%s subscribe %s -> %s', (name, filter, allowed) => {
    expect(canSubscribe(user(name), filter)).toBe(allowed);
  });

  it('never lets anyone publish to $SYS or with wildcards, or subscribe to bare wildcards', () => {
    for (const u of USERS) {
      for (const topic of ['$SYS/broker/clients/connected', '$SYS/x', 'checkpoint/v1/hq/gate-1/+', 'checkpoint/v1/hq/gate-1/#', '']) {
        expect(canPublish(u, topic), `${u.name} publish ${topic}`).toBe(false);
      }
      for (const filter of ['#', '+', '+/#', '+/+/+/+/+', '$SYS/#', 'checkpoint/+/#', 'uagv/+/+/+/+']) {
        expect(canSubscribe(u, filter), `${u.name} subscribe ${filter}`).toBe(false);
      }
    }
  });

  it('keeps every edge, robot and bridge inside its own subtree for every wildcard variant of its grants', () => {
    // Replace each level of each grant by + and # in turn: any variant that is allowed must not
    // match a topic of another checkpoint or robot.
    const foreign = ['checkpoint/v1/hq/gate-9/cmd', 'checkpoint/v1/other/gate-1/cmd', 'uagv/v2/acme/R9/order', 'uagv/v2/other/R1/order'];
    for (const u of USERS.filter((x) => x.role !== 'gateway' && x.role !== 'viewer')) {
      for (const grant of grantsFor(u).subscribe) {
        const levels = grant.split('/');
        const variants = levels.flatMap((_, i) => [
          [...levels.slice(0, i), '+', ...levels.slice(i + 1)].join('/'),
          [...levels.slice(0, i), '#'].join('/'),
        ]);
        for (const v of variants.filter((f) => canSubscribe(u, f))) {
          for (const topic of foreign) expect(topicMatchesFilter(topic, v), `${u.name} via ${v} reads ${topic}`).toBe(false);
        }
      }
    }
  });

  it('does not grant viewers face snapshots or commands', () => {
    const viewer = user('viewer');
    expect(grantsFor(viewer).publish).toEqual([]);
    expect(canSubscribe(viewer, 'checkpoint/v1/hq/gate-1/snapshot/01HZY3V6Q8J7K2M4N5P6R7S8T9')).toBe(false);
    expect(canSubscribe(viewer, 'checkpoint/v1/hq/gate-1/cmd')).toBe(false);
  });

  it('rejects bindings that would not be a single topic level', () => {
    expect(() => assertBinding({ name: 'e', role: 'edge', site: 'hq/+', checkpoint: 'g' })).toThrow(/invalid site "hq\/\+"/);
    expect(() => assertBinding({ name: 'e', role: 'edge', site: 'hq', checkpoint: '#' })).toThrow(/invalid checkpoint/);
    expect(() => assertBinding({ name: 'r', role: 'robot', robot: { manufacturer: 'a', serialNumber: 'x/y' } })).toThrow(/serial number/);
    expect(() => assertBinding({ name: 'b', role: 'bridge', robots: [] })).toThrow(/at least one robot/);
    expect(() => assertBinding({ name: 'bad name', role: 'viewer' })).toThrow(/invalid name/);
    expect(() => assertBinding({ name: 'x', role: 'admin' } as unknown as Principal)).toThrow(/unknown role "admin"/);
  });
});
