/**
 * The InfluxDB writes: line protocol encoded by series/line-protocol.ts must be byte for byte what
 * the `influx` package sends for the same points (its requests captured by a local HTTP server),
 * and the series store must write it to a real influxd: awkward strings read back as written, a
 * field type conflict refused as the points' fault, an unreachable server a plain error with its cause.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InfluxDB } from 'influx';
import { startInfluxd, type InfluxdServer } from '@checkpoint/test-support';
import { createInfluxSeriesStore } from '../src/series/influx.js';
import { createLineProtocolEncoder } from '../src/series/line-protocol.js';
import type { SeriesPoint } from '../src/series/points.js';
import { RejectedPointsError } from '../src/series/store.js';

const awkward: SeriesPoint[] = [
  {
    measurement: 'screening',
    tags: { site: 'hq north', checkpoint: 'gate,1=a', decision: 'pass', mask: 'mask' },
    fields: { id: '01J"quoted"\\back', trackId: 7, faceScore: 0.95, snapshot: false, reasons: 'a,b c=d', temperatureC: -1.5, model: 'ümlaut ☃' },
    timeNs: '1764680000000123456',
  },
  { measurement: 'telemetry', tags: { site: 'hq', checkpoint: 'gate-2' }, fields: { fps: 15, queueDepth: 0, ok: true }, timeNs: '1764680000001000000' },
  { measurement: 'device_state', tags: { site: 'hq', checkpoint: 'gate-2' }, fields: { status: "it's online" }, timeNs: '1764680000002000000' },
];

describe('line protocol', () => {
  let server: Server;
  const bodies: string[] = [];

  beforeAll(async () => {
    server = createServer((req, res) => {
      let body = '';
      req.on('data', (chunk: Buffer) => (body += chunk.toString('utf8')));
      req.on('end', () => {
        bodies.push(body);
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  });
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  it('is what the influx package sends for the same points', async () => {
    const client = new InfluxDB({ host: '127.0.0.1', port: (server.address() as AddressInfo).port, database: 'x', pool: { maxRetries: 0 } });
    await client.writePoints(awkward.map((p) => ({ measurement: p.measurement, tags: p.tags, fields: p.fields, timestamp: p.timeNs })), { precision: 'n' });
    expect(bodies).toHaveLength(1);
    const encoder = createLineProtocolEncoder();
    expect(encoder.encode(awkward)).toBe(bodies[0]);
    // Memoised escapes give the same text the second time.
    expect(encoder.encode(awkward)).toBe(bodies[0]);
  });

  it('refuses a time that is not integer nanoseconds, naming the point', () => {
    expect(() => createLineProtocolEncoder().encode([awkward[1]!, { ...awkward[1]!, timeNs: '17646800.5' }])).toThrow(/point 1 \(telemetry\): time "17646800.5"/);
  });
});

describe('InfluxDB series store writes (real influxd)', () => {
  let influxd: InfluxdServer;

  beforeAll(async () => {
    influxd = await startInfluxd({ database: 'writes' });
  }, 120_000);
  afterAll(async () => {
    await influxd?.stop();
  });

  const store = () => createInfluxSeriesStore({ protocol: 'http', host: influxd.host, port: influxd.port, database: 'writes' }, { retentionPolicy: 'raw', retentionDuration: 'INF', timeoutMs: 30_000 });

  it('writes awkward tags and strings that read back as written', async () => {
    await store().write(awkward);
    const rows = (await influxd.influx.query('SELECT * FROM "raw"."screening"', { database: 'writes' })) as unknown as Array<Record<string, unknown>>;
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ site: 'hq north', checkpoint: 'gate,1=a', id: '01J"quoted"\\back', reasons: 'a,b c=d', model: 'ümlaut ☃', temperatureC: -1.5, snapshot: false });
  }, 60_000);

  it('a field type conflict is the points fault (RejectedPointsError); other points still write', async () => {
    const s = store();
    await s.write([awkward[1]!]);
    const conflicting: SeriesPoint = { ...awkward[1]!, fields: { fps: 'fifteen' }, timeNs: '1764680000009000000' };
    await expect(s.write([conflicting])).rejects.toBeInstanceOf(RejectedPointsError);
    await expect(s.write([{ ...awkward[1]!, timeNs: '1764680000010000000' }])).resolves.toBeUndefined();
  }, 60_000);

  it('an unreachable server is a plain error with its cause, not the points fault', async () => {
    const s = createInfluxSeriesStore({ protocol: 'http', host: '127.0.0.1', port: influxd.port, database: 'writes' }, { retentionPolicy: 'raw', retentionDuration: 'INF', timeoutMs: 30_000 });
    await s.init();
    await influxd.stop();
    const error = await s.write([awkward[1]!]).then(() => null, (err: Error) => err);
    expect(error).toBeInstanceOf(Error);
    expect(error).not.toBeInstanceOf(RejectedPointsError);
    expect(error!.message).toMatch(/ECONNREFUSED/);
  }, 60_000);
});
