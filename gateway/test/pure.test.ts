/** Pure pieces: message classification, series points, percentile and interval parsing, config, backoff. */
import { describe, expect, it } from 'vitest';
import { checkpointTopics } from '@checkpoint/protocol';
import { envOverrides, parseInfluxUrl, redactUrl, resolveGatewayConfig } from '../src/config.js';
import { classifyMessage } from '../src/ingest/classify.js';
import { screeningPoint, screeningTimeNs } from '../src/series/points.js';
import { influxPercentile, parseInterval } from '../src/series/store.js';
import { backoffMs } from '../src/series/writer.js';
import { makeTempDir } from '@checkpoint/test-support';
import { openDatabase } from '../src/store/db.js';
import { createSqliteSeriesStore } from '../src/series/sqlite.js';
import { makeScreening } from './helpers/world.js';

const where = { site: 'hq', checkpoint: 'gate-1' };
const T0 = Date.parse('2026-12-01T10:00:00.000Z');

describe('classifyMessage', () => {
  it('accepts a valid screening and names the cause of every kind of bad message without quoting values', () => {
    const s = makeScreening();
    expect(classifyMessage(checkpointTopics.screening(where), Buffer.from(JSON.stringify(s)), T0)).toMatchObject({ kind: 'screening', screening: { id: s.id } });

    const topic = checkpointTopics.screening(where);
    expect(classifyMessage(topic, Buffer.from('{"id": '), T0)).toMatchObject({ kind: 'invalid', topicLabel: 'checkpoint/v1/+/+/screening', cause: 'not_json' });
    expect(classifyMessage(topic, Buffer.alloc(100_000, 0x20), T0)).toMatchObject({ cause: 'too_large' });
    const bad = classifyMessage(topic, Buffer.from(JSON.stringify({ ...s, temperatureC: '38.4' })), T0);
    expect(bad).toMatchObject({ kind: 'invalid', cause: 'schema' });
    expect(bad.kind === 'invalid' && bad.detail).toContain('/temperatureC');
    expect(bad.kind === 'invalid' && bad.detail).not.toContain('38.4');
    expect(classifyMessage(checkpointTopics.screening({ site: 'hq', checkpoint: 'gate-2' }), Buffer.from(JSON.stringify(s)), T0)).toMatchObject({ cause: 'topic_mismatch' });
    expect(classifyMessage('checkpoint/v1/hq/gate-1/bogus', Buffer.from('{}'), T0)).toMatchObject({ cause: 'unknown_topic', topicLabel: 'other' });
    expect(classifyMessage('elsewhere/x', Buffer.from('{}'), T0)).toMatchObject({ cause: 'unknown_topic' });
  });

  it('replaces a timestamp that names no instant by the receive time, flagged; anything else wrong stays invalid', () => {
    const topic = checkpointTopics.screening(where);
    for (const ts of ['2024-12-31T23:59:60Z', '2024-13-45T25:61:61Z']) {
      const s = makeScreening({ decision: 'secondary_check' });
      const c = classifyMessage(topic, Buffer.from(JSON.stringify({ ...s, ts })), T0);
      expect(c).toMatchObject({ kind: 'screening', screening: { id: s.id, ts: new Date(T0).toISOString(), temperatureC: s.temperatureC } });
      expect(c.kind === 'screening' && c.replacedTs).toEqual([{ path: '/ts', original: ts, problem: expect.stringMatching(/not a real instant/) }]);
    }
    const both = classifyMessage(topic, Buffer.from(JSON.stringify({ ...makeScreening(), ts: '2024-12-31T23:59:60Z', frames: 0 })), T0);
    expect(both).toMatchObject({ kind: 'invalid', cause: 'schema' });
    const telemetry = { ts: '2024-02-30T00:00:00.000Z', site: 'hq', checkpoint: 'gate-1', fps: 9, stages: {}, queueDepth: 0, cpuTempC: null, ambientC: null, blackbody: null };
    expect(classifyMessage(checkpointTopics.telemetry(where), Buffer.from(JSON.stringify(telemetry)), T0)).toMatchObject({ kind: 'telemetry', telemetry: { ts: new Date(T0).toISOString() }, replacedTs: [{ path: '/ts' }] });
  });

  it('checks snapshots are JPEGs and ignores our own commands and broker stats', () => {
    const id = makeScreening().id;
    const topic = checkpointTopics.snapshot(where, id);
    expect(classifyMessage(topic, Buffer.from([0xff, 0xd8, 0xff, 0xe0, 0, 0]), T0)).toMatchObject({ kind: 'snapshot', screeningId: id });
    expect(classifyMessage(topic, Buffer.from('GIF89a'), T0)).toMatchObject({ kind: 'invalid', cause: 'not_jpeg' });
    expect(classifyMessage(checkpointTopics.cmd(where), Buffer.from('{}'), T0)).toMatchObject({ kind: 'ignored' });
    expect(classifyMessage('$SYS/broker/clients/connected', Buffer.from('3'), T0)).toMatchObject({ kind: 'ignored' });
  });
});

describe('series points', () => {
  it('tags only low-cardinality values, keeps ids in fields, and derives a stable sub-millisecond time from the id', () => {
    const s = makeScreening({ decision: 'secondary_check' });
    const p = screeningPoint(s);
    expect(p.tags).toEqual({ site: 'hq', checkpoint: 'gate-1', decision: 'secondary_check', mask: 'mask' });
    expect(p.fields).toMatchObject({ id: s.id, temperatureC: 38.1, reasons: 'elevated_temperature' });
    expect(Object.keys(p.tags).filter((k) => k in p.fields)).toEqual([]);
    expect(p.timeNs).toBe(screeningTimeNs(Date.parse(s.ts), s.id));
    expect(p.timeNs.slice(0, -6)).toBe(String(Date.parse(s.ts)));
    expect(screeningPoint(s).timeNs).toBe(p.timeNs);
    // Pinned: a point re-written after a crash or an upgrade must land on the same timestamp (sha1 of the id).
    expect(screeningTimeNs(1764680000000, '01JDX8Q3ZK5Y7M2N4P6R8T0V1W')).toBe('1764680000000231457');
    expect(screeningPoint(makeScreening({ ts: s.ts })).timeNs).not.toBe(p.timeNs);
    expect('temperatureC' in screeningPoint(makeScreening({ decision: 'invalid' })).fields).toBe(false);
  });
});

describe('statistics helpers', () => {
  it('percentile is InfluxQL nearest rank', () => {
    const v = [36.1, 36.4, 36.5, 36.9, 38.2];
    expect(influxPercentile(v, 50)).toBe(36.5); // floor(2.5 + 0.5) - 1 = 2
    expect(influxPercentile(v, 90)).toBe(38.2);
    expect(influxPercentile(v, 10)).toBe(36.1); // floor(0.5 + 0.5) - 1 = 0
    expect(influxPercentile([36.6], 99)).toBe(36.6);
    expect(influxPercentile([36.6, 37], 10)).toBe(null); // floor(0.2 + 0.5) - 1 = -1: InfluxDB returns nothing
    expect(influxPercentile([], 50)).toBe(null);
  });

  it('intervals are InfluxQL durations', () => {
    expect(parseInterval('30s')).toBe(30_000);
    expect(parseInterval('5m')).toBe(300_000);
    expect(parseInterval('1d')).toBe(86_400_000);
    expect(() => parseInterval('5 minutes')).toThrow('expected a number and s, m, h or d');
  });

  it('counts every decision per bucket, people who walked past unscreened included', async () => {
    const db = openDatabase(makeTempDir('gw-stats-counts'));
    const series = createSqliteSeriesStore(db);
    const at = Date.parse('2026-03-01T10:00:10Z');
    const decisions = ['pass', 'pass', 'secondary_check', 'invalid', 'cannot_screen', 'cannot_screen'] as const;
    await series.write(decisions.map((decision, i) => screeningPoint(makeScreening({ decision, ts: new Date(at + i * 1000).toISOString(), ...(decision === 'cannot_screen' ? { temperatureC: null, reasons: ['face_too_small'] } : {}) }))));
    const [stats] = await series.checkpointStats({ fromMs: at - 10_000, toMs: at + 60_000, intervalMs: 60_000 });
    expect(stats!.buckets.map((b) => b.counts)).toEqual([{ pass: 2, secondary_check: 1, invalid: 1, cannot_screen: 2 }]);
    db.close();
  });

  it('backoff doubles from min to max with jitter', () => {
    const mid = () => 0.5;
    expect([1, 2, 3, 10, 30].map((a) => backoffMs(a, 100, 5000, mid))).toEqual([100, 200, 400, 5000, 5000]);
  });
});

describe('config', () => {
  it('fills defaults, applies the environment and names an unknown key by its path', () => {
    const env = {
      CHECKPOINT_MQTT_URL: 'mqtt://broker:1883',
      CHECKPOINT_INFLUX_URL: 'http://u:p%40ss@influx:8086/checkpoint',
      CHECKPOINT_HTTP_PORT: '9090',
      CHECKPOINT_DATA_DIR: '/var/lib/gw',
    };
    const config = resolveGatewayConfig(envOverrides(env));
    expect(config).toMatchObject({ dataDir: '/var/lib/gw', http: { port: 9090 }, mqtt: { url: 'mqtt://broker:1883', clientId: 'checkpoint-gateway' }, series: { batchSize: 5000, flushIntervalMs: 1000 } });
    expect(parseInfluxUrl(config.influx.url!)).toEqual({ protocol: 'http', host: 'influx', port: 8086, database: 'checkpoint', username: 'u', password: 'p@ss' });
    expect(() => resolveGatewayConfig({ series: { batchsize: 10 } }, 'gw.yaml')).toThrow('invalid config gw.yaml: /series/batchsize: unexpected field');
    expect(() => resolveGatewayConfig(envOverrides({ CHECKPOINT_HTTP_PORT: 'eighty' }))).toThrow('/http/port');
    expect(() => parseInfluxUrl('http://influx:8086/')).toThrow('must name one database');
  });

  it('store: sqlite by default; postgres from the environment; postgres without a url names store.postgres.url', () => {
    expect(resolveGatewayConfig({}).store).toEqual({ backend: 'sqlite', postgres: { poolSize: 10, leaderRetryMs: 1000, leaderCheckMs: 1000 } });
    const pg = resolveGatewayConfig(envOverrides({ CHECKPOINT_STORE: 'postgres', CHECKPOINT_POSTGRES_URL: 'postgresql://gw:s3cret@db:5432/checkpoint' }));
    expect(pg.store).toMatchObject({ backend: 'postgres', postgres: { url: 'postgresql://gw:s3cret@db:5432/checkpoint', poolSize: 10 } });
    expect(() => resolveGatewayConfig({ store: { backend: 'postgres' } }, 'gw.yaml')).toThrow('invalid config gw.yaml: /store/postgres/url: required when store.backend is postgres');
    expect(() => resolveGatewayConfig(envOverrides({ CHECKPOINT_STORE: 'mysql' }))).toThrow('/store/backend');
    expect(redactUrl('postgresql://gw:s3cret@db:5432/checkpoint')).not.toContain('s3cret');
  });
});
