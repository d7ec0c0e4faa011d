import { existsSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startInfluxd, type InfluxdServer } from '@checkpoint/test-support';

describe('startInfluxd', () => {
  let influxd: InfluxdServer;
  beforeAll(async () => {
    influxd = await startInfluxd({ database: 'checkpoint_test' });
  });
  afterAll(async () => {
    await influxd?.stop();
  });

  it('serves the v1 API on a loopback port with the database created', async () => {
    expect(influxd.url).toBe(`http://127.0.0.1:${influxd.port}/checkpoint_test`);
    const ping = await fetch(`http://127.0.0.1:${influxd.port}/ping`);
    expect(ping.status).toBe(204);
    expect(ping.headers.get('x-influxdb-version')).toMatch(/^1\.6\./);
    expect(await influxd.influx.getDatabaseNames()).toContain('checkpoint_test');
  });

  it('stores a point written with writePoints and returns it to InfluxQL', async () => {
    const ts = new Date('2024-03-01T08:30:00.000Z');
    await influxd.influx.writePoints([
      {
        measurement: 'telemetry',
        tags: { site: 'hq', checkpoint: 'gate-2' },
        fields: { fps: 14.5, queueDepth: 3, ambientC: 21.25 },
        timestamp: ts,
      },
    ]);
    const rows = await influxd.influx.query<{ time: Date; fps: number; queueDepth: number; ambientC: number; checkpoint: string }>(
      `SELECT fps, "queueDepth", "ambientC", checkpoint FROM telemetry WHERE site = 'hq'`,
    );
    expect(rows).toHaveLength(1);
    const row = rows[0]!;
    expect(row.time.toISOString()).toBe(ts.toISOString());
    expect(row.fps).toBe(14.5);
    expect(row.queueDepth).toBe(3);
    expect(row.ambientC).toBe(21.25);
    expect(row.checkpoint).toBe('gate-2');
  });
});

describe('startInfluxd lifecycle', () => {
  it('gives each server its own random database, and stop() frees the port and removes the dir', async () => {
    const a = await startInfluxd();
    try {
      expect(a.database).toMatch(/^test_[0-9a-f]{8}$/);
      expect(existsSync(a.dir)).toBe(true);
    } finally {
      await a.stop();
    }
    expect(existsSync(a.dir)).toBe(false);
    await expect(fetch(`http://127.0.0.1:${a.port}/ping`)).rejects.toThrow();
    await a.stop(); // idempotent
  });

  it('fails loudly when influxd is missing', async () => {
    await expect(startInfluxd({ binary: '/nonexistent/influxd' })).rejects.toThrow(
      /influxd not found: install Debian package influxdb \(CI does this in \.ci\/run\)/,
    );
  });
});
