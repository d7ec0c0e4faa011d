import { describe, expect, it } from 'vitest';
import { vda5050Header, type Vda5050Connection, type Vda5050State } from '@checkpoint/protocol';
import { applyRobotMessage, unavailableReason, type RegistryMessage, type RobotRecord } from '../src/fleet/index.js';

const robot = { manufacturer: 'acme', serialNumber: 'AMR-1' };
const at = (s: number) => new Date(Date.parse('2025-03-01T08:00:00Z') + s * 1000);
const connection = (headerId: number, s: number, connectionState: Vda5050Connection['connectionState']): Vda5050Connection => ({
  ...vda5050Header(robot, headerId, at(s)),
  connectionState,
});
const state = (headerId: number, s: number, patch: Partial<Vda5050State> = {}): Vda5050State => ({
  ...vda5050Header(robot, headerId, at(s)),
  orderId: '',
  orderUpdateId: 0,
  lastNodeId: 'P1',
  lastNodeSequenceId: 0,
  driving: false,
  operatingMode: 'AUTOMATIC',
  nodeStates: [],
  edgeStates: [],
  actionStates: [],
  batteryState: { batteryCharge: 80, charging: false },
  errors: [],
  safetyState: { eStop: 'NONE', fieldViolation: false },
  ...patch,
});

function fold(messages: Array<{ kind: 'connection'; message: Vda5050Connection } | { kind: 'state'; message: Vda5050State }>) {
  let record: RobotRecord | undefined;
  const outcomes: string[] = [];
  messages.forEach((m, i) => {
    const o = applyRobotMessage(record, m, 1000 * i);
    record = o.record;
    outcomes.push(o.applied ? 'applied' : o.reason);
  });
  return { record: record!, outcomes };
}

describe('robot registry', () => {
  it('folds connection and state into a record that can take work', () => {
    const { record } = fold([
      { kind: 'connection', message: connection(1, 0, 'ONLINE') },
      { kind: 'state', message: state(0, 1, { batteryState: { batteryCharge: 55.5, charging: true }, lastNodeId: 'C1' }) },
    ]);
    expect(record).toMatchObject({ key: 'acme/AMR-1', connection: 'ONLINE', batteryCharge: 55.5, charging: true, lastNodeId: 'C1' });
    expect(unavailableReason(record)).toBeNull();
  });

  it('ignores duplicates and out-of-order messages, accepts a restart', () => {
    const { record, outcomes } = fold([
      { kind: 'state', message: state(5, 10, { lastNodeId: 'C1' }) },
      { kind: 'state', message: state(5, 10, { lastNodeId: 'C1' }) }, // QoS 1 redelivery
      { kind: 'state', message: state(4, 9, { lastNodeId: 'P1' }) }, // late
      { kind: 'state', message: state(6, 10, { lastNodeId: 'C2' }) }, // same 10 ms tick, next header
      { kind: 'state', message: state(0, 20, { lastNodeId: 'W3' }) }, // robot rebooted: headerId 0, newer time
    ]);
    expect(outcomes).toEqual(['applied', 'duplicate', 'stale', 'applied', 'applied']);
    expect(record.lastNodeId).toBe('W3');
  });

  it('applies the last will even though it was composed before ONLINE', () => {
    const { record, outcomes } = fold([
      { kind: 'connection', message: connection(7, 100, 'ONLINE') },
      // The will: headerId 6 and the connect time, i.e. "older" than the ONLINE.
      { kind: 'connection', message: connection(6, 99.9, 'CONNECTIONBROKEN') },
      // A retained replay of the old ONLINE after a gateway reconnect is not taken for a new session.
      { kind: 'connection', message: connection(7, 100, 'ONLINE') },
      // Reconnected; a QoS 1 redelivery of the will already applied is a duplicate.
      { kind: 'connection', message: connection(8, 101, 'ONLINE') },
      { kind: 'connection', message: connection(6, 99.9, 'CONNECTIONBROKEN') },
    ]);
    expect(outcomes).toEqual(['applied', 'applied', 'duplicate', 'applied', 'duplicate']);
    expect(record.connection).toBe('ONLINE');
    const broken = applyRobotMessage(record, { kind: 'connection', message: connection(9, 200, 'CONNECTIONBROKEN') }, 0);
    expect(broken.applied && unavailableReason(broken.record)).toBe('connection CONNECTIONBROKEN');
  });

  it('judges a last will by its arrival: composed at connect an hour ago, it still marks a crash', () => {
    const { record, outcomes } = fold([
      { kind: 'connection', message: connection(1, 100, 'ONLINE') },
      { kind: 'state', message: state(1, 3700) },
      { kind: 'connection', message: connection(0, 99.9, 'CONNECTIONBROKEN') },
    ]);
    expect(outcomes).toEqual(['applied', 'applied', 'applied']);
    expect(unavailableReason(record)).toBe('connection CONNECTIONBROKEN');
  });

  it('waits for the first state after a reconnect, and a paused robot is not available', () => {
    let { record } = fold([
      { kind: 'connection', message: connection(1, 100, 'ONLINE') },
      { kind: 'state', message: state(1, 101) },
    ]);
    expect(unavailableReason(record)).toBeNull();
    for (const [m, want] of [
      [{ kind: 'connection', message: connection(2, 110, 'CONNECTIONBROKEN') }, 'connection CONNECTIONBROKEN'],
      [{ kind: 'connection', message: connection(3, 120, 'ONLINE') }, 'waiting for its first state since connecting'],
      [{ kind: 'state', message: state(2, 121) }, null],
      [{ kind: 'state', message: state(3, 122, { paused: true }) }, 'paused'],
    ] as const) {
      const o = applyRobotMessage(record, m as RegistryMessage, 0);
      expect(o.applied).toBe(true);
      record = o.record!;
      expect(unavailableReason(record)).toBe(want);
    }
  });

  it('says why a robot cannot work: e-stop, fatal error, manual mode', () => {
    const base = fold([{ kind: 'connection', message: connection(1, 0, 'ONLINE') }]).record;
    const apply = (s: Vda5050State) => {
      const o = applyRobotMessage(base, { kind: 'state', message: s }, 0);
      return o.applied ? unavailableReason(o.record) : 'not applied';
    };
    expect(apply(state(1, 1, { safetyState: { eStop: 'MANUAL', fieldViolation: false } }))).toBe('emergency stop (MANUAL)');
    expect(apply(state(1, 1, { errors: [{ errorType: 'motorFault', errorLevel: 'FATAL' }] }))).toBe('fatal error motorFault');
    expect(apply(state(1, 1, { errors: [{ errorType: 'dusty', errorLevel: 'WARNING' }] }))).toBeNull();
    expect(apply(state(1, 1, { operatingMode: 'MANUAL' }))).toBe('operating mode MANUAL');
  });
});
