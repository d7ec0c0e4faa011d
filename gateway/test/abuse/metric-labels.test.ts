/**
 * Issue 14: Prometheus labels carried full topics, snapshot ids included, so every invalid
 * snapshot (or every robot) made a new time series. Labels are topic patterns now.
 */
import { describe, expect, it } from 'vitest';
import { ulid } from 'ulid';
import { createGatewayMetrics, topicPattern } from '../../src/metrics.js';

describe('metric labels are bounded', () => {
  it('maps topics to their contract pattern', () => {
    expect(topicPattern(`checkpoint/v1/hq/gate-1/snapshot/${ulid()}`)).toBe('checkpoint/v1/+/+/snapshot/+');
    expect(topicPattern('checkpoint/v1/hq/gate-1/screening')).toBe('checkpoint/v1/+/+/screening');
    expect(topicPattern('checkpoint/v1/site-9/gate-77/cmd/ack')).toBe('checkpoint/v1/+/+/cmd/ack');
    expect(topicPattern('uagv/v2/acme/AMR-7/state')).toBe('uagv/v2/+/+/state');
    expect(topicPattern('checkpoint/v1/hq/gate-1/snapshot/not-a-ulid')).toBe('other');
    expect(topicPattern('anything/else')).toBe('other');
    expect(topicPattern('uagv/v2/acme/AMR-7/state"} 1\nfake_metric{')).toBe('other');
  });

  it('keeps one series per pattern and cause however many snapshot ids and robots there are', async () => {
    const metrics = createGatewayMetrics({ spoolDepth: () => 0, rejected: () => 0, sseClients: () => 0, mqttConnected: () => true });
    for (let i = 0; i < 500; i++) {
      metrics.invalid.inc({ topic: `checkpoint/v1/hq/gate-${i % 50}/snapshot/${ulid()}`, cause: 'not_jpeg' });
      metrics.invalid.inc({ topic: `uagv/v2/acme/R-${i}/state`, cause: 'schema' });
    }
    const series = (await metrics.invalid.get()).values;
    expect(series.map((s) => s.labels)).toEqual(
      expect.arrayContaining([
        { topic: 'checkpoint/v1/+/+/snapshot/+', cause: 'not_jpeg' },
        { topic: 'uagv/v2/+/+/state', cause: 'schema' },
      ]),
    );
    expect(series).toHaveLength(2);
    expect(series.every((s) => s.value === 500)).toBe(true);
  });
});
