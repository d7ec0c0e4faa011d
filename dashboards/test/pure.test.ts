/** The dashboards' pure parts: SSE parsing, reconnect backoff, alert merging, banners, statistics. */
import { describe, expect, it } from 'vitest';
import { createSseParser } from '../src/sse.js';
import { backoffMs } from '../src/live.js';
import { banners, fillBuckets, guardCards, histogram, mergeAlerts, newerAlert, screenState, soundDue, totals, type Alert, type Device } from '../src/model.js';
import { upsertById } from '../src/fleet.js';
import { overlap, placeLabels, type Box } from '../src/map-layout.js';

describe('SSE parser', () => {
  it('parses the gateway frames with ids, event types and JSON data, across arbitrary chunk splits', () => {
    const stream = 'retry: 2000\n\nid: 7\nevent: alert\ndata: {"a":1}\n\n: keepalive\n\nid: 8\nevent: screening\ndata: {"b":\ndata: 2}\n\n';
    for (let cut = 0; cut < stream.length; cut++) {
      const p = createSseParser();
      const events = [...p.push(stream.slice(0, cut)), ...p.push(stream.slice(cut))];
      expect(events.map((e) => [e.lastEventId, e.event, e.data])).toEqual([
        ['7', 'alert', '{"a":1}'],
        ['8', 'screening', '{"b":\n2}'],
      ]);
      expect(p.retryMs).toBe(2000);
    }
  });

  it('handles CRLF and CR line ends (also split between chunks), default event type and events without id', () => {
    const p = createSseParser('3');
    const out = [...p.push('data: x\r'), ...p.push('\n\r\nevent: resync\rdata: {}\r\r')];
    expect(out).toEqual([
      { lastEventId: '3', hasId: false, event: 'message', data: 'x' },
      { lastEventId: '3', hasId: false, event: 'resync', data: '{}' },
    ]);
  });

  it('does not dispatch an event until its blank line arrives', () => {
    const p = createSseParser();
    expect(p.push('id: 1\nevent: alert\ndata: {}\n')).toEqual([]);
    expect(p.push('\n')).toHaveLength(1);
  });
});

describe('reconnect backoff', () => {
  it('doubles from the minimum up to the cap, with ±25 % jitter', () => {
    const mid = () => 0.5;
    expect([0, 1, 2, 3, 10, 50].map((n) => backoffMs(n, 500, 15_000, mid))).toEqual([500, 1000, 2000, 4000, 15_000, 15_000]);
    expect(backoffMs(0, 500, 15_000, () => 0)).toBe(375);
    expect(backoffMs(0, 500, 15_000, () => 0.999999)).toBe(625);
  });
});

const alert = (over: Partial<Alert>): Alert => ({
  id: '01J00000000000000000000001',
  kind: 'screening',
  severity: 'major',
  status: 'open',
  site: 'hq',
  checkpoint: 'gate-1',
  screeningId: null,
  decision: 'secondary_check',
  reasons: ['elevated_temperature'],
  count: 1,
  openedAt: '2025-01-01T10:00:00.000Z',
  lastAt: '2025-01-01T10:00:00.000Z',
  resolvedAt: null,
  escalatedAt: null,
  acknowledgement: null,
  closedAt: null,
  groupedInto: null,
  screening: null,
  ...over,
});

describe('guard state', () => {
  it('never moves an alert back: an acknowledged or closed version wins over a late open one', () => {
    const open = alert({});
    const acked = alert({ status: 'acknowledged' });
    const closed = alert({ status: 'closed', closedAt: '2025-01-01T10:01:00.000Z' });
    expect(newerAlert(acked, open)).toBe(acked);
    expect(newerAlert(open, closed)).toBe(closed);
    const escalated = alert({ escalatedAt: '2025-01-01T10:02:00.000Z' });
    expect(newerAlert(escalated, open)).toBe(escalated);
    expect(newerAlert(open, escalated)).toBe(escalated);
  });

  it('shows each person once, escalated first, then oldest first, and drops acknowledged ones', () => {
    const a = alert({ id: 'A', openedAt: '2025-01-01T10:00:00.000Z' });
    const b = alert({ id: 'B', openedAt: '2025-01-01T10:05:00.000Z' });
    const c = alert({ id: 'C', openedAt: '2025-01-01T10:07:00.000Z', escalatedAt: '2025-01-01T10:09:00.000Z' });
    const storm = alert({ id: 'S', kind: 'invalid_storm', decision: null });
    let m = mergeAlerts(new Map(), [b, a, storm]);
    m = mergeAlerts(m, [a, b]); // replayed after a reconnect
    expect(guardCards(m).map((x) => x.id)).toEqual(['A', 'B']);
    m = mergeAlerts(m, [c]);
    expect(guardCards(m).map((x) => x.id)).toEqual(['C', 'A', 'B']);
    m = mergeAlerts(m, [{ ...a, status: 'closed' }]);
    expect(guardCards(m).map((x) => x.id)).toEqual(['C', 'B']);
  });

  it('raises one banner per checkpoint that cannot screen, with every reason', () => {
    const device = (over: Partial<Device>): Device => ({
      site: 'hq',
      checkpoint: 'gate-1',
      status: 'online',
      lastSeen: '2025-01-01T10:00:00.000Z',
      stateAt: null,
      versions: null,
      model: null,
      sources: { thermal: { kind: 'sim', status: 'ok' }, visible: null },
      calibration: { reference: 'ok', mode: 'absolute', thresholdC: 37.3, homography: false },
      telemetry: null,
      ...over,
    });
    const list = [
      device({}),
      device({ checkpoint: 'gate-2', status: 'offline' }),
      device({ checkpoint: 'gate-3', sources: { thermal: { kind: 'x', status: 'error' }, visible: null }, calibration: { reference: 'not_seen', mode: 'absolute', thresholdC: 37.3, homography: false } }),
      // Relative mode works without a blackbody: not a problem.
      device({ checkpoint: 'gate-4', calibration: { reference: 'not_seen', mode: 'relative', thresholdC: 37.3, homography: false } }),
    ];
    const storm = alert({ id: 'S', kind: 'invalid_storm', decision: null, checkpoint: 'gate-1' });
    expect(banners(list, mergeAlerts(new Map(), [storm]))).toEqual([
      { site: 'hq', checkpoint: 'gate-1', problems: ['invalid_storm'] },
      { site: 'hq', checkpoint: 'gate-2', problems: ['offline'] },
      { site: 'hq', checkpoint: 'gate-3', problems: ['thermal_error', 'no_blackbody'] },
    ]);
  });
});

describe('guard screen state banner', () => {
  const online = { site: 'hq', checkpoint: 'gate-1', status: 'online' } as Device;
  const base = { live: 'live' as const, loaded: true, loadError: null, devices: [online], problems: [], waiting: 0 };
  it('is green only when loaded, live, with checkpoints, all screening and nobody waiting', () => {
    expect(screenState(base)).toEqual({ kind: 'ok' });
    expect(screenState({ ...base, loaded: false }).kind).toBe('loading');
    expect(screenState({ ...base, live: 'connecting' }).kind).toBe('loading');
    expect(screenState({ ...base, loadError: 'HTTP 500' })).toEqual({ kind: 'load_error', message: 'HTTP 500' });
    expect(screenState({ ...base, live: 'reconnecting' }).kind).toBe('outage');
    expect(screenState({ ...base, live: 'unauthorized' }).kind).toBe('signed_out');
    expect(screenState({ ...base, devices: [] }).kind).toBe('no_checkpoints');
    expect(screenState({ ...base, waiting: 2 })).toEqual({ kind: 'waiting', waiting: 2 });
    expect(screenState({ ...base, problems: [{ site: 'hq', checkpoint: 'gate-3', problems: ['offline'] }], waiting: 1 })).toEqual({ kind: 'not_screening', checkpoints: ['gate-3'], waiting: 1 });
    // An outage wins over a stale load error: the most serious state is shown.
    expect(screenState({ ...base, live: 'reconnecting', loadError: 'x' }).kind).toBe('outage');
  });

  it('repeats the chime while people wait and the alarm while something is broken, by policy', () => {
    const s = { policy: 'repeat' as const, intervalMs: 30_000, nowMs: 100_000, lastSoundMs: 90_000, newPerson: false, newProblem: false, waiting: 0, alarm: false };
    expect(soundDue(s)).toBe(null);
    expect(soundDue({ ...s, newPerson: true })).toBe('chime');
    expect(soundDue({ ...s, newProblem: true, newPerson: true })).toBe('alarm');
    expect(soundDue({ ...s, waiting: 1 })).toBe(null); // 10 s since the last sound
    expect(soundDue({ ...s, waiting: 1, nowMs: 120_000 })).toBe('chime');
    expect(soundDue({ ...s, waiting: 1, alarm: true, nowMs: 120_000 })).toBe('alarm');
    expect(soundDue({ ...s, policy: 'once', waiting: 1, nowMs: 120_000 })).toBe(null);
    expect(soundDue({ ...s, policy: 'once', newPerson: true })).toBe('chime');
    expect(soundDue({ ...s, policy: 'off', newPerson: true, newProblem: true })).toBe(null);
  });
});

describe('statistics and lists', () => {
  it('sums decisions into a secondary-check rate', () => {
    const b = (pass: number, secondary_check: number, invalid: number) => ({ start: '', counts: { pass, secondary_check, invalid }, temperatureC: { n: 0, p50: null, p90: null, p99: null } });
    // An older gateway sends no cannot_screen count: none.
    expect(totals({ site: 'hq', checkpoint: 'g', buckets: [b(8, 1, 1), b(9, 1, 0)] })).toEqual({ screened: 20, secondary: 2, invalid: 1, cannotScreen: 0, rate: 0.1 });
    const missed = { ...b(7, 1, 0), counts: { pass: 7, secondary_check: 1, invalid: 0, cannot_screen: 2 } };
    expect(totals({ site: 'hq', checkpoint: 'g', buckets: [missed] })).toEqual({ screened: 10, secondary: 1, invalid: 0, cannotScreen: 2, rate: 0.1 });
    expect(totals({ site: 'hq', checkpoint: 'g', buckets: [] }).rate).toBeNull();
  });

  it('bins temperatures, clamping outliers into the end bins', () => {
    const bins = histogram([33, 36.5, 36.55, 36.7, 38.1, 41], 34, 40, 0.5);
    expect(bins).toHaveLength(12);
    expect(bins[0]).toEqual({ start: 34, count: 1 });
    expect(bins[5]).toEqual({ start: 36.5, count: 3 });
    expect(bins[8]).toEqual({ start: 38, count: 1 });
    expect(bins[11]).toEqual({ start: 39.5, count: 1 });
  });

  it('upserts fleet items by id, keeping order', () => {
    expect(upsertById([{ id: 'a', v: 1 }, { id: 'b', v: 1 }], { id: 'a', v: 2 })).toEqual([{ id: 'a', v: 2 }, { id: 'b', v: 1 }]);
    expect(upsertById([{ id: 'a' }], { id: 'c' })).toEqual([{ id: 'a' }, { id: 'c' }]);
  });
});

describe('statistics buckets', () => {
  it('fills the hours without screenings with zeros, aligned like GROUP BY time()', () => {
    const h = 3_600_000;
    const from = Date.parse('2025-01-01T10:20:00Z');
    const data = [{ start: '2025-01-01T11:00:00.000Z', counts: { pass: 4, secondary_check: 1, invalid: 0 }, temperatureC: { n: 5, p50: 36.6, p90: 37.9, p99: 37.9 } }];
    const filled = fillBuckets(data, from, from + 3 * h, h);
    expect(filled.map((b) => b.start)).toEqual(['2025-01-01T10:00:00.000Z', '2025-01-01T11:00:00.000Z', '2025-01-01T12:00:00.000Z', '2025-01-01T13:00:00.000Z']);
    expect(filled[1]).toBe(data[0]);
    expect(filled[0]!.counts).toEqual({ pass: 0, secondary_check: 0, invalid: 0, cannot_screen: 0 });
  });
});

describe('map label placement', () => {
  it('moves a label further out when robot markers cover every place next to its point', () => {
    // Two robots on one node: their markers cover the node and every place at the usual gap.
    const markers: Box[] = [
      { x: -22, y: -22, w: 44, h: 44 },
      { x: -8, y: -30, w: 44, h: 44 },
    ];
    const [label] = placeLabels([{ id: 'node:hall', x: 0, y: 0, text: 'Emergency hall', fontSize: 13, gap: 9 }], markers);
    expect(markers.map((m) => overlap(label!.box, m))).toEqual([0, 0]);
    // With nothing in the way it stays next to its point (above).
    const [free] = placeLabels([{ id: 'node:hall', x: 0, y: 0, text: 'Emergency hall', fontSize: 13, gap: 9 }], []);
    expect(free!.box.y + free!.box.h).toBeCloseTo(-9, 6);
  });
});
