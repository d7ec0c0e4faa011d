import { describe, expect, it } from 'vitest';
import {
  checkpointFilter,
  checkpointTopics,
  parseCheckpointTopic,
  parseVda5050Topic,
  vda5050Filter,
  vda5050Topic,
} from '@checkpoint/protocol';

const at = { site: 'hospital-a', checkpoint: 'gate-2' };

describe('checkpoint topics', () => {
  it('builds and parses every channel', () => {
    expect(checkpointTopics.screening(at)).toBe('checkpoint/v1/hospital-a/gate-2/screening');
    for (const [build, channel] of [
      [checkpointTopics.state, 'state'],
      [checkpointTopics.screening, 'screening'],
      [checkpointTopics.telemetry, 'telemetry'],
      [checkpointTopics.cmd, 'cmd'],
      [checkpointTopics.cmdAck, 'cmd/ack'],
    ] as const) {
      expect(parseCheckpointTopic(build(at))).toEqual({ ...at, channel });
    }
    const id = '01JD3Q8Z5W6X7Y8Z9A0B1C2D3E';
    expect(parseCheckpointTopic(checkpointTopics.snapshot(at, id))).toEqual({ ...at, channel: 'snapshot', screeningId: id });
  });

  it('refuses bad ids when building', () => {
    expect(() => checkpointTopics.state({ site: 'Hospital A', checkpoint: 'gate-2' })).toThrow(/invalid site id "Hospital A"/);
    expect(() => checkpointTopics.state({ site: 'a', checkpoint: 'x'.repeat(65) })).toThrow(/invalid checkpoint id/);
    expect(() => checkpointTopics.state({ site: 'a/b', checkpoint: 'c' })).toThrow(/invalid site id/);
    expect(() => checkpointTopics.snapshot(at, 'not-a-ulid')).toThrow(/ULID/);
  });

  it('returns null for topics outside the contract', () => {
    for (const topic of [
      'checkpoint/v2/a/b/state',
      'checkpoint/v1/a/b/unknown',
      'checkpoint/v1/A/b/state',
      'checkpoint/v1/a/b/state/extra',
      'checkpoint/v1/a/b/snapshot/lowercase-not-ulid',
      'checkpoint/v1/a/b',
      '',
      'uagv/v2/m/s/state',
    ]) {
      expect(parseCheckpointTopic(topic), topic).toBeNull();
    }
  });

  it('builds subscription filters', () => {
    expect(checkpointFilter('screening')).toBe('checkpoint/v1/+/+/screening');
    expect(checkpointFilter('snapshot', { site: 'hospital-a' })).toBe('checkpoint/v1/hospital-a/+/snapshot/+');
    expect(() => checkpointFilter('state', { site: '#' })).toThrow(/invalid site id/);
  });
});

describe('VDA 5050 topics', () => {
  it('round-trips every channel', () => {
    const robot = { manufacturer: 'acme', serialNumber: 'uvd-07' };
    for (const channel of ['order', 'instantActions', 'state', 'visualization', 'connection', 'factsheet'] as const) {
      const topic = vda5050Topic(robot, channel);
      expect(topic).toBe(`uagv/v2/acme/uvd-07/${channel}`);
      expect(parseVda5050Topic(topic)).toEqual({ ...robot, channel });
    }
    expect(vda5050Filter('state')).toBe('uagv/v2/+/+/state');
  });

  it('refuses wildcards and unknown channels', () => {
    expect(() => vda5050Topic({ manufacturer: '+', serialNumber: 'x' }, 'state')).toThrow(/manufacturer/);
    expect(parseVda5050Topic('uagv/v2/acme/r1/teleport')).toBeNull();
    expect(parseVda5050Topic('uagv/v1/acme/r1/state')).toBeNull();
  });
});
