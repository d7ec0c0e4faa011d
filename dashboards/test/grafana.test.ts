/**
 * The Grafana provisioning: every panel query runs on a real influxd (InfluxQL) against points
 * made by the gateway's own point builders, and returns data — so measurement, field and tag
 * names match what the gateway writes. Grafana's macros are replaced as Grafana would.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import * as gateway from '@checkpoint/gateway';
import { deviceStatePoint, screeningPoint, telemetryPoint, type SeriesPoint } from '@checkpoint/gateway';
import { startInfluxd, type InfluxdServer } from '@checkpoint/test-support';
import { makeScreening } from '../../gateway/test/helpers/world.js';

const dir = new URL('../grafana/provisioning/', import.meta.url);
const dashboards = readdirSync(new URL('dashboards/', dir))
  .filter((f) => f.endsWith('.json'))
  .map((f) => ({ file: f, json: JSON.parse(readFileSync(new URL(`dashboards/${f}`, dir), 'utf8')) }));

let influxd: InfluxdServer;

type RobotSample = { robot: string; at: number; batteryPct: number; charging: boolean; driving: boolean; lastNodeId: string | null; x: number | null; y: number | null; errors: number; taskId: string | null };
/** The gateway's robot_state builder; while the fleet work is not in the gateway yet, its documented shape. */
function robotPoint(s: RobotSample): SeriesPoint {
  const build = (gateway as unknown as { robotStatePoint?: (s: RobotSample) => SeriesPoint }).robotStatePoint;
  if (build) return build(s);
  const [manufacturer, serialNumber] = s.robot.split('/') as [string, string];
  return {
    measurement: 'robot_state',
    tags: { manufacturer, serialNumber },
    fields: { batteryPct: s.batteryPct, charging: s.charging ? 1 : 0, driving: s.driving ? 1 : 0, errors: s.errors, lastNodeId: s.lastNodeId ?? '', x: s.x ?? 0, y: s.y ?? 0, taskId: s.taskId ?? '' },
    timeNs: `${s.at}000000`,
  };
}

beforeAll(async () => {
  influxd = await startInfluxd();
  const now = Date.now();
  const points: SeriesPoint[] = [];
  for (let i = 0; i < 20; i++) {
    const decision = i % 5 === 0 ? 'secondary_check' : i % 7 === 0 ? 'invalid' : 'pass';
    points.push(screeningPoint(makeScreening({ decision, mask: i % 3 === 0 ? 'no_mask' : 'mask', ts: new Date(now - i * 60_000).toISOString() })));
  }
  const ts = new Date(now - 30_000).toISOString();
  points.push(
    telemetryPoint({ ts, site: 'hq', checkpoint: 'gate-1', fps: 15, stages: { detect: 20, thermal: 2 }, cpuTempC: 50, ambientC: 22, blackbody: { setC: 35, measuredC: 34.9, status: 'ok' }, queueDepth: 1 }),
    deviceStatePoint({ status: 'online', ts, site: 'hq', checkpoint: 'gate-1', calibration: { reference: 'ok', mode: 'absolute', thresholdC: 37.3, homography: true } }),
    robotPoint({ robot: 'acme/r1', at: now - 30_000, batteryPct: 80, charging: false, driving: true, lastNodeId: 'pharmacy', x: 1, y: 2, errors: 0, taskId: 't1' }),
  );
  await influxd.influx.writePoints(
    points.map((p) => ({ measurement: p.measurement, tags: p.tags, fields: p.fields, timestamp: p.timeNs })),
    { precision: 'n' },
  );
});

afterAll(async () => {
  await influxd?.stop();
});

/** Grafana's macros and "All" variables, as Grafana expands them for a 24 h range. */
function expand(query: string): string {
  return query
    .replaceAll('$timeFilter', 'time > now() - 24h')
    .replaceAll('$__interval', '1m')
    .replace(/\/\^\$\w+\$\//g, '/.*/');
}

describe('Grafana provisioning', () => {
  it('has an InfluxQL datasource that the dashboards refer to', () => {
    const ds = parseYaml(readFileSync(new URL('datasources/checkpoint-influxdb.yaml', dir), 'utf8'));
    expect(ds.datasources[0]).toMatchObject({ type: 'influxdb', uid: 'checkpoint-influxdb', jsonData: { version: 'InfluxQL' } });
    expect(dashboards.map((d) => d.file).sort()).toEqual(['checkpoint-health.json', 'robots.json', 'screenings.json']);
    for (const { json } of dashboards) for (const p of json.panels) expect(p.datasource.uid).toBe('checkpoint-influxdb');
  });

  it('every panel query runs on influxd and finds the points the gateway writes', async () => {
    for (const { file, json } of dashboards) {
      for (const v of json.templating.list) {
        const rows = await influxd.influx.query(v.query.replace(/\/\^\$\w+\$\//g, '/.*/'));
        expect(rows.length, `${file} variable ${v.name}`).toBeGreaterThan(0);
      }
      for (const p of json.panels) {
        for (const t of p.targets) {
          const rows = await influxd.influx.query(expand(t.query));
          expect(rows.length, `${file} / ${p.title}: ${t.query}`).toBeGreaterThan(0);
          const values = rows.flatMap((r: Record<string, unknown>) => Object.entries(r).filter(([k]) => k !== 'time').map(([, v]) => v));
          expect(values.some((v) => v !== null && v !== 0), `${file} / ${p.title}: only empty values`).toBe(true);
        }
      }
    }
  });
});
