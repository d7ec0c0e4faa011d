/** The fleet simulation's pure parts, and a small run of the real thing against a 3-node cluster. */
import { describe, expect, it } from 'vitest';
import { validatePayload } from '@checkpoint/protocol';
import { assignDevices, checkFleetOptions, commandReport, DEFAULT_FLEET, fleetReport, nextArrivalMs, simDevice, simScreening, simTelemetry, simUlid } from '../sim/fleet-core.js';
import { runFleet } from '../sim/fleet.js';

describe('sim:fleet core', () => {
  it('spreads devices over processes and asks for --force past 500 sessions', () => {
    expect(assignDevices(5, 2)).toEqual([[0, 2, 4], [1, 3]]);
    expect(() => checkFleetOptions({ ...DEFAULT_FLEET, sessions: 10_000 })).toThrow(/--sessions 10000 is over 500; add --force/);
    expect(checkFleetOptions({ ...DEFAULT_FLEET, sessions: 10_000 }, true).sessions).toBe(10_000);
    expect(() => checkFleetOptions({ ...DEFAULT_FLEET, processes: 0 })).toThrow(/--processes/);
    expect(() => checkFleetOptions({ ...DEFAULT_FLEET, ratePerCheckpoint: 0 })).toThrow(/--rate/);
    expect(() => checkFleetOptions({ ...DEFAULT_FLEET, durationS: 10, killNodeAtS: 10 })).toThrow(/--kill-node-at/);
    expect(() => checkFleetOptions({ ...DEFAULT_FLEET, killNode: 'leader' })).toThrow(/--kill-node needs --kill-node-at/);
    expect(() => checkFleetOptions({ ...DEFAULT_FLEET, killNodeAtS: 5, killNode: 'any' as 'leader' })).toThrow(/leader or follower/);
    expect(checkFleetOptions({ ...DEFAULT_FLEET, killNodeAtS: 5, killNode: 'follower' }).killNode).toBe('follower');
    expect(() => checkFleetOptions({ ...DEFAULT_FLEET, telemetryEveryS: 0.5 })).toThrow(/--telemetry-every/);
  });

  it('makes protocol-valid telemetry, as agents send every 10 s by default', () => {
    expect(DEFAULT_FLEET.telemetryEveryS).toBe(10);
    const result = validatePayload('telemetry', simTelemetry(simDevice(3, 'x'), Date.parse('2026-12-03T08:00:00.000Z')));
    expect(result.ok).toBe(true);
  });

  it('asks for PostgreSQL with gateway replicas, and a survivor when one is killed', () => {
    expect(() => checkFleetOptions({ ...DEFAULT_FLEET, gateways: 2 })).toThrow(/--gateways needs --postgres/);
    expect(() => checkFleetOptions({ ...DEFAULT_FLEET, postgres: true })).toThrow(/add --gateways/);
    expect(() => checkFleetOptions({ ...DEFAULT_FLEET, gateways: 1, postgres: true, killGatewayAtS: 5 })).toThrow(/--kill-gateway-at needs --gateways 2/);
    expect(checkFleetOptions({ ...DEFAULT_FLEET, gateways: 2, postgres: true, killGatewayAtS: 5 }).gateways).toBe(2);
  });

  it('makes protocol-valid screenings with ULID ids for the gateways', () => {
    const atMs = Date.parse('2026-12-03T08:00:00.000Z');
    const id = simUlid(atMs, () => 0.5);
    expect(id).toMatch(/^[0-9A-HJKMNP-TV-Z]{26}$/);
    expect(simUlid(atMs + 1, () => 0.5) > id).toBe(true); // time first: sorts by time
    const result = validatePayload('screening', simScreening(simDevice(7, 'x'), id, atMs));
    expect(result.ok).toBe(true);
  });

  it('draws Poisson waits with the configured mean', () => {
    expect(nextArrivalMs(0.1, Math.exp(-1))).toBeCloseTo(10_000);
    expect(nextArrivalMs(1, 1)).toBe(0);
  });

  it('counts lost and duplicated screenings and publish→stored latency', () => {
    const report = fleetReport({
      sessions: 2,
      connected: 2,
      published: 4,
      accepted: new Map([['a', 100], ['b', 100], ['c', 100]]),
      reads: new Map([['a', { firstAt: 110, copies: 1 }], ['b', { firstAt: 130, copies: 3 }]]),
      loadSeconds: 1,
    });
    expect(report).toMatchObject({ accepted: 3, stored: 2, lost: 1, duplicated: 2, latencyMs: { p50: 30, p99: 30 }, acceptedPerS: 3, maxReadGapMs: 20 });
  });
});

describe('sim:fleet commands', () => {
  it('subscribes devices to cmd by default, as agents do, and counts delivered, lost and duplicated commands', () => {
    expect(DEFAULT_FLEET.cmdSubscriptions).toBe(true);
    expect(() => checkFleetOptions({ ...DEFAULT_FLEET, cmdSubscriptions: false, commandsPerS: 1 })).toThrow(/--commands-per-s needs/);
    expect(() => checkFleetOptions({ ...DEFAULT_FLEET, commandsPerS: -1 })).toThrow(/--commands-per-s must be/);
    expect(checkFleetOptions({ ...DEFAULT_FLEET, cmdSubscriptions: false, commandsPerS: 0 }).cmdSubscriptions).toBe(false);
    const report = commandReport(
      3,
      new Map([['c1', 1000], ['c2', 1000], ['c3', 1000]]),
      new Map([['c1', { firstAt: 1040, copies: 1 }], ['c2', { firstAt: 1100, copies: 2 }], ['other', { firstAt: 1000, copies: 1 }]]),
    );
    expect(report).toEqual({ subscribed: 3, sent: 3, delivered: 2, lost: 1, duplicated: 1, latencyMs: { p50: 100, p99: 100 } });
  });
});

describe('sim:fleet against a local 3-node NATS cluster', () => {
  it('connects every session with its own user, reads back every accepted screening, and delivers every command', async () => {
    const run = await runFleet({ sessions: 20, processes: 2, ratePerCheckpoint: 2, durationS: 4, drainS: 30, bcryptCost: 4, commandsPerS: 5 });
    expect(run.connected).toBe(20);
    expect(run.accepted).toBeGreaterThan(0);
    expect(run.accepted).toBe(run.published);
    expect(run.lost).toBe(0);
    expect(run.stored).toBe(run.accepted);
    expect(run.latencyMs.p50).toBeGreaterThanOrEqual(0);
    expect(run.nodes.map((n) => n.name)).toEqual(['n1', 'n2', 'n3']);
    // Every session subscribed to its cmd topic; the commands sent through the stream reached their devices.
    expect(run.commands?.subscribed).toBe(20);
    expect(run.commands?.sent).toBeGreaterThanOrEqual(10);
    expect(run.commands?.delivered).toBe(run.commands?.sent);
    expect(run.commands?.lost).toBe(0);
  }, 180_000);
});
