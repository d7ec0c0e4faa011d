import { describe, expect, it } from 'vitest';

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- tests mutate arbitrary fields
type Loose = Record<string, any>;
import {
  checkOrderGraph,
  parseVda5050,
  validateVda5050,
  vda5050Header,
  type Vda5050Order,
  type Vda5050State,
} from '@checkpoint/protocol';

const robot = { manufacturer: 'acme', serialNumber: 'AMR-7' };
const header = (version = '2.1.0') => ({ ...vda5050Header(robot, 3, new Date('2025-01-02T03:04:05.678Z')), version });

function order(): Vda5050Order {
  return {
    ...header(),
    orderId: 'task-1',
    orderUpdateId: 0,
    nodes: [
      { nodeId: 'pharmacy', sequenceId: 0, released: true, actions: [{ actionType: 'pick', actionId: 'a1', blockingType: 'HARD' }] },
      { nodeId: 'corridor', sequenceId: 2, released: true, nodePosition: { x: 1, y: 2, mapId: 'floor-1' }, actions: [] },
      {
        nodeId: 'ward-3',
        sequenceId: 4,
        released: true,
        actions: [
          { actionType: 'waitForTrigger', actionId: 'a2', blockingType: 'HARD', actionParameters: [{ key: 'reason', value: 'recipient' }] },
          { actionType: 'drop', actionId: 'a3', blockingType: 'HARD' },
        ],
      },
    ],
    edges: [
      { edgeId: 'e1', sequenceId: 1, released: true, startNodeId: 'pharmacy', endNodeId: 'corridor', length: 12.5, actions: [] },
      { edgeId: 'e2', sequenceId: 3, released: true, startNodeId: 'corridor', endNodeId: 'ward-3', actions: [], corridor: { leftWidth: 0.5, rightWidth: 0.5 } },
    ],
  };
}

function state(version = '2.0.0'): Vda5050State {
  return {
    ...header(version),
    orderId: 'task-1',
    orderUpdateId: 0,
    lastNodeId: 'pharmacy',
    lastNodeSequenceId: 0,
    driving: true,
    operatingMode: 'AUTOMATIC',
    nodeStates: [{ nodeId: 'corridor', sequenceId: 2, released: true }],
    edgeStates: [{ edgeId: 'e1', sequenceId: 1, released: true }],
    agvPosition: { x: 0.5, y: 0, theta: 0, mapId: 'floor-1', positionInitialized: true },
    actionStates: [{ actionId: 'a1', actionType: 'pick', actionStatus: 'FINISHED' }],
    batteryState: { batteryCharge: 81.5, charging: false },
    errors: [],
    safetyState: { eStop: 'NONE', fieldViolation: false },
  };
}

describe('VDA 5050 payloads', () => {
  it('accepts an order (2.1 with corridor) and round-trips it through JSON', () => {
    const o = order();
    expect(parseVda5050('order', Buffer.from(JSON.stringify(o)), robot)).toEqual({ ok: true, value: o });
  });

  it('accepts 2.0 and 2.1 state messages, with vendor extras', () => {
    expect(validateVda5050('state', state('2.0.0')).ok).toBe(true);
    const s = { ...state('2.1.0'), maps: [{ mapId: 'floor-1', mapVersion: '3', mapStatus: 'ENABLED' }], vendorX: 1 };
    expect(validateVda5050('state', s).ok).toBe(true);
  });

  it('accepts a state with more than 100 errors (the standard sets no limit; the payload size bounds them)', () => {
    const errors = Array.from({ length: 101 }, (_, i) => ({ errorType: `sensor${i}`, errorLevel: 'WARNING' as const }));
    expect(parseVda5050('state', JSON.stringify({ ...state(), errors, information: errors.map((e) => ({ infoType: e.errorType, infoLevel: 'INFO' })) })).ok).toBe(true);
    const flood = Array.from({ length: 20_000 }, (_, i) => ({ errorType: `sensor${i}`, errorLevel: 'WARNING' as const }));
    const big = parseVda5050('state', JSON.stringify({ ...state(), errors: flood }));
    expect(big.ok).toBe(false);
    if (!big.ok) expect(big.message).toMatch(/exceeds/);
  });

  it('accepts connection, instantActions, visualization and factsheet', () => {
    expect(validateVda5050('connection', { ...header(), connectionState: 'CONNECTIONBROKEN' }).ok).toBe(true);
    expect(
      validateVda5050('instantActions', { ...header(), actions: [{ actionType: 'cancelOrder', actionId: 'c1', blockingType: 'HARD' }] }).ok,
    ).toBe(true);
    expect(validateVda5050('visualization', { ...header(), agvPosition: state().agvPosition }).ok).toBe(true);
    const factsheet = {
      ...header('2.0.0'),
      typeSpecification: { seriesName: 'UVD-1', agvKinematic: 'DIFF', agvClass: 'CARRIER', maxLoadMass: 20, localizationTypes: ['NATURAL'], navigationTypes: ['AUTONOMOUS'] },
      physicalParameters: { speedMin: 0, speedMax: 1.2, accelerationMax: 0.5, decelerationMax: 0.8, heightMax: 1.8, width: 0.6, length: 0.8 },
      protocolLimits: { maxStringLens: {} },
      protocolFeatures: {
        optionalParameters: [],
        agvActions: [{ actionType: 'disinfect', actionScopes: ['NODE'], actionParameters: [{ key: 'durationS', valueDataType: 'NUMBER' }] }],
      },
      agvGeometry: {},
      loadSpecification: {},
    };
    expect(validateVda5050('factsheet', factsheet).ok).toBe(true);
  });

  const cases: Array<[string, 'order' | 'state' | 'connection', (m: Loose) => void, RegExp]> = [
    ['version 3', 'state', (m) => (m.version = '3.0.0'), /\/version/],
    ['version 1.1', 'state', (m) => (m.version = '1.1.0'), /\/version/],
    ['missing batteryState', 'state', (m) => delete m.batteryState, /\/batteryState: required field is missing/],
    ['battery above 100 %', 'state', (m) => (m.batteryState.batteryCharge = 140), /\/batteryState\/batteryCharge/],
    ['unknown actionStatus', 'state', (m) => (m.actionStates[0].actionStatus = 'DONE'), /\/actionStates\/0\/actionStatus/],
    ['unknown eStop', 'state', (m) => (m.safetyState.eStop = 'YES'), /\/safetyState\/eStop/],
    ['unknown error level', 'state', (m) => (m.errors = [{ errorType: 'x', errorLevel: 'URGENT' }]), /\/errors\/0\/errorLevel/],
    ['v3 spelling of broken', 'connection', (m) => (m.connectionState = 'CONNECTION_BROKEN'), /\/connectionState/],
    ['bad timestamp', 'connection', (m) => (m.timestamp = 'now'), /\/timestamp/],
    ['negative headerId', 'connection', (m) => (m.headerId = -1), /\/headerId/],
    ['no nodes', 'order', (m) => ((m.nodes = []), (m.edges = [])), /\/nodes/],
    ['edge count', 'order', (m) => m.edges.pop(), /\/edges: expected 2 edges for 3 nodes, got 1/],
    ['sequence ids', 'order', (m) => (m.nodes[1].sequenceId = 7), /\/nodes\/1\/sequenceId: expected 2, got 7/],
    ['edge endpoints', 'order', (m) => (m.edges[1].startNodeId = 'pharmacy'), /\/edges\/1: edge e2 joins pharmacy→ward-3/],
    ['released after horizon', 'order', (m) => ((m.nodes[1].released = false), (m.edges[0].released = false)), /\/nodes\/2\/released|\/edges\/1\/released/],
    ['bad blockingType', 'order', (m) => (m.nodes[0].actions[0].blockingType = 'FULL'), /\/nodes\/0\/actions\/0\/blockingType/],
  ];
  for (const [name, kind, mutate, message] of cases) {
    it(`rejects ${kind} with ${name} and names the field`, () => {
      const base = kind === 'order' ? order() : kind === 'state' ? state() : { ...header(), connectionState: 'ONLINE' };
      const m = structuredClone(base) as Loose;
      mutate(m);
      const result = validateVda5050(kind, m);
      expect(result.ok).toBe(false);
      if (!result.ok) expect(result.message).toMatch(message);
    });
  }

  it('rejects a payload whose header names another robot than its topic', () => {
    const result = parseVda5050('state', JSON.stringify(state()), { manufacturer: 'acme', serialNumber: 'AMR-8' });
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.message).toMatch(/names acme\/AMR-7 but was sent on the topic of acme\/AMR-8/);
  });

  it('rejects malformed JSON and oversized payloads', () => {
    const bad = parseVda5050('state', Buffer.from('{"headerId":'));
    expect(bad.ok).toBe(false);
    if (!bad.ok) expect(bad.message).toMatch(/^vda5050 state: \/: not valid JSON/);
    const big = parseVda5050('order', Buffer.alloc(1024 * 1024, 0x20));
    expect(big.ok).toBe(false);
    if (!big.ok) expect(big.message).toMatch(/exceeds/);
  });

  it('checkOrderGraph accepts an order update that starts at an odd-looking but even sequence id', () => {
    const o = order();
    o.nodes.forEach((n, i) => (n.sequenceId = 4 + 2 * i));
    o.edges.forEach((e, i) => (e.sequenceId = 5 + 2 * i));
    expect(checkOrderGraph(o)).toEqual([]);
  });
});
