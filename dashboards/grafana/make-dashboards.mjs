#!/usr/bin/env node
// Writes the Grafana dashboards JSON (provisioning/dashboards/*.json) from one description, so
// that queries, units and datasource stay consistent. Measurements and fields are the gateway's
// (gateway/src/series/points.ts): screening, telemetry, device_state, robot_state.
// Run: node dashboards/grafana/make-dashboards.mjs
import { writeFileSync } from 'node:fs';

const ds = { type: 'influxdb', uid: 'checkpoint-influxdb' };
let nextId = 1;

function panel(title, type, queries, { x, y, w = 12, h = 8, unit, stack = false, decimals, thresholds, description } = {}) {
  return {
    id: nextId++,
    title,
    ...(description ? { description } : {}),
    type,
    datasource: ds,
    gridPos: { x, y, w, h },
    targets: queries.map((q, i) => ({ refId: String.fromCharCode(65 + i), datasource: ds, rawQuery: true, resultFormat: type === 'table' ? 'table' : 'time_series', query: q.query, alias: q.alias ?? '' })),
    fieldConfig: {
      defaults: {
        ...(unit ? { unit } : {}),
        ...(decimals !== undefined ? { decimals } : {}),
        ...(thresholds ? { thresholds: { mode: 'absolute', steps: thresholds } } : {}),
        custom: type === 'timeseries' ? { drawStyle: stack ? 'bars' : 'line', stacking: { mode: stack ? 'normal' : 'none' }, fillOpacity: stack ? 80 : 10, spanNulls: false } : {},
      },
      overrides: [],
    },
    options: type === 'stat' ? { reduceOptions: { calcs: ['lastNotNull'] }, colorMode: 'background' } : {},
  };
}

function dashboard(uid, title, panels, variables) {
  nextId = 1;
  return {
    uid,
    title,
    tags: ['checkpoint'],
    timezone: 'browser',
    schemaVersion: 39,
    version: 1,
    editable: false,
    refresh: '30s',
    time: { from: 'now-24h', to: 'now' },
    templating: { list: variables },
    panels: panels(),
  };
}

const tagVar = (name, measurement, tag, depends = '') => ({
  name,
  label: name,
  type: 'query',
  datasource: ds,
  query: `SHOW TAG VALUES FROM "${measurement}" WITH KEY = "${tag}"${depends}`,
  refresh: 2,
  includeAll: true,
  multi: true,
  current: { text: 'All', value: '$__all' },
});
const cpVars = (m) => [tagVar('site', m, 'site'), tagVar('checkpoint', m, 'checkpoint', ' WHERE "site" =~ /^$site$/')];
const where = `"site" =~ /^$site$/ AND "checkpoint" =~ /^$checkpoint$/ AND $timeFilter`;

const screenings = dashboard('checkpoint-screenings', 'Checkpoint · Screenings', () => [
  panel('People screened per hour, by decision', 'timeseries', [
    { query: `SELECT count("id") FROM "screening" WHERE ${where} GROUP BY time(1h), "decision" fill(0)`, alias: '$tag_decision' },
  ], { x: 0, y: 0, w: 24, stack: true }),
  panel('Secondary-check rate', 'timeseries', [
    { query: `SELECT count("id") FROM "screening" WHERE ${where} AND "decision" = 'secondary_check' GROUP BY time(1h), "checkpoint" fill(0)`, alias: 'secondary checks $tag_checkpoint' },
    { query: `SELECT count("id") FROM "screening" WHERE ${where} GROUP BY time(1h), "checkpoint" fill(0)`, alias: 'screened $tag_checkpoint' },
  ], { x: 0, y: 8, description: 'Secondary checks against everyone screened, per hour and checkpoint (divide in a transformation, or compare the bars).' }),
  panel('Skin temperature percentiles (°C)', 'timeseries', [
    { query: `SELECT percentile("temperatureC", 50) AS "p50", percentile("temperatureC", 90) AS "p90", percentile("temperatureC", 99) AS "p99" FROM "screening" WHERE ${where} GROUP BY time(1h) fill(null)` },
  ], { x: 12, y: 8, unit: 'celsius', decimals: 1 }),
  panel('Without a mask, per hour', 'timeseries', [
    { query: `SELECT count("id") FROM "screening" WHERE ${where} AND "mask" = 'no_mask' GROUP BY time(1h), "checkpoint" fill(0)`, alias: '$tag_checkpoint' },
  ], { x: 0, y: 16 }),
  panel('Decision latency (ms, p90)', 'timeseries', [
    { query: `SELECT percentile("latencyMs", 90) FROM "screening" WHERE ${where} GROUP BY time(10m), "checkpoint" fill(null)`, alias: '$tag_checkpoint' },
  ], { x: 12, y: 16, unit: 'ms' }),
], cpVars('screening'));

const health = dashboard('checkpoint-health', 'Checkpoint · Checkpoint health', () => [
  panel('Online', 'stat', [
    { query: `SELECT last("online") FROM "device_state" WHERE "site" =~ /^$site$/ AND "checkpoint" =~ /^$checkpoint$/ GROUP BY "checkpoint"`, alias: '$tag_checkpoint' },
  ], { x: 0, y: 0, w: 8, h: 5, thresholds: [{ color: 'red', value: null }, { color: 'green', value: 1 }] }),
  panel('Threshold (°C)', 'stat', [
    { query: `SELECT last("thresholdC") FROM "device_state" WHERE "site" =~ /^$site$/ AND "checkpoint" =~ /^$checkpoint$/ GROUP BY "checkpoint"`, alias: '$tag_checkpoint' },
  ], { x: 8, y: 0, w: 8, h: 5, unit: 'celsius', decimals: 1 }),
  panel('Blackbody measured vs set (°C)', 'timeseries', [
    { query: `SELECT mean("blackbodyMeasuredC") AS "measured", mean("blackbodySetC") AS "set" FROM "telemetry" WHERE ${where} GROUP BY time($__interval), "checkpoint" fill(null)`, alias: '$tag_checkpoint $col' },
  ], { x: 16, y: 0, w: 8, h: 5, unit: 'celsius', decimals: 2 }),
  panel('Frames per second', 'timeseries', [
    { query: `SELECT mean("fps") FROM "telemetry" WHERE ${where} GROUP BY time($__interval), "checkpoint" fill(null)`, alias: '$tag_checkpoint' },
  ], { x: 0, y: 5 }),
  panel('Stage latencies (ms)', 'timeseries', [
    { query: `SELECT mean(/^stage_.*_ms$/) FROM "telemetry" WHERE ${where} GROUP BY time($__interval) fill(null)` },
  ], { x: 12, y: 5, unit: 'ms' }),
  panel('Outbox queue depth', 'timeseries', [
    { query: `SELECT max("queueDepth") FROM "telemetry" WHERE ${where} GROUP BY time($__interval), "checkpoint" fill(null)`, alias: '$tag_checkpoint' },
  ], { x: 0, y: 13 }),
  panel('CPU temperature (°C)', 'timeseries', [
    { query: `SELECT max("cpuTempC") FROM "telemetry" WHERE ${where} GROUP BY time($__interval), "checkpoint" fill(null)`, alias: '$tag_checkpoint' },
  ], { x: 12, y: 13, unit: 'celsius' }),
  panel('Could not screen, per 10 minutes', 'timeseries', [
    { query: `SELECT count("id") FROM "screening" WHERE ${where} AND "decision" = 'invalid' GROUP BY time(10m), "checkpoint" fill(0)`, alias: '$tag_checkpoint' },
  ], { x: 0, y: 21, w: 24 }),
], cpVars('telemetry'));

const robotWhere = `"serialNumber" =~ /^$robot$/ AND $timeFilter`;
const robots = dashboard('checkpoint-robots', 'Checkpoint · Robots', () => [
  panel('Battery (%)', 'timeseries', [
    { query: `SELECT mean("batteryPct") FROM "robot_state" WHERE ${robotWhere} GROUP BY time($__interval), "serialNumber" fill(null)`, alias: '$tag_serialNumber' },
  ], { x: 0, y: 0, unit: 'percent' }),
  panel('Driving (share of time)', 'timeseries', [
    { query: `SELECT mean("driving") FROM "robot_state" WHERE ${robotWhere} GROUP BY time(10m), "serialNumber" fill(null)`, alias: '$tag_serialNumber' },
  ], { x: 12, y: 0, unit: 'percentunit' }),
  panel('Charging', 'timeseries', [
    { query: `SELECT max("charging") FROM "robot_state" WHERE ${robotWhere} GROUP BY time($__interval), "serialNumber" fill(null)`, alias: '$tag_serialNumber' },
  ], { x: 0, y: 8 }),
  panel('Errors reported', 'timeseries', [
    { query: `SELECT max("errors") FROM "robot_state" WHERE ${robotWhere} GROUP BY time($__interval), "serialNumber" fill(null)`, alias: '$tag_serialNumber' },
  ], { x: 12, y: 8 }),
  panel('Last position', 'table', [
    { query: `SELECT last("lastNodeId") AS "node", last("x") AS "x", last("y") AS "y", last("taskId") AS "task", last("batteryPct") AS "battery" FROM "robot_state" WHERE ${robotWhere} GROUP BY "serialNumber"` },
  ], { x: 0, y: 16, w: 24 }),
], [tagVar('robot', 'robot_state', 'serialNumber')]);

const dir = new URL('./provisioning/dashboards/', import.meta.url);
for (const [name, d] of [['screenings', screenings], ['checkpoint-health', health], ['robots', robots]]) {
  writeFileSync(new URL(`${name}.json`, dir), `${JSON.stringify(d, null, 2)}\n`);
}
