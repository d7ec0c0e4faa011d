/** The dispatch board's ETA (pure): remaining route on the site graph, divided by the robot's speed. */
import { describe, expect, it } from 'vitest';
import { demoFleet } from '@checkpoint/gateway';
import { DEFAULT_SPEED_MPS, graphOf, quickestPath, routeThrough, stopsOf, taskEta } from '../src/eta.js';
import type { SiteMap, Task } from '../src/fleet.js';

// The demo hospital as GET /api/map gives it (edge length = straight distance, as the gateway computes it).
const nodes = demoFleet.map.nodes.map((n) => ({ id: n.id, x: n.x, y: n.y, floor: 0, kind: n.kind ?? 'waypoint' }));
const at = new Map(nodes.map((n) => [n.id, n]));
const map: SiteMap = {
  nodes,
  edges: demoFleet.map.edges.map((e) => ({ from: e.from, to: e.to, length: Math.hypot(at.get(e.from)!.x - at.get(e.to)!.x, at.get(e.from)!.y - at.get(e.to)!.y) })),
  zones: [],
};
const g = graphOf(map);

function task(over: Partial<Task>): Task {
  return { id: 't1', type: 'delivery', status: 'underway', priority: 50, request: { type: 'delivery', from: 'pharmacy', to: 'ward-2', what: 'x' }, history: [], targetNodes: ['pharmacy', 'ward-2'], ...over };
}

describe('quickest paths on the site graph', () => {
  it('adds edge lengths along the shortest way, both directions', () => {
    // park-1 → gate-1-hall (10) → hall-a (22.36) → pharmacy (20).
    const p = quickestPath(g, 'park-1', 'pharmacy', 1)!;
    expect(p.nodes).toEqual(['park-1', 'gate-1-hall', 'hall-a', 'pharmacy']);
    expect(p.lengthM).toBeCloseTo(10 + Math.hypot(20, 0) + 20, 6);
    expect(quickestPath(g, 'pharmacy', 'park-1', 1)!.nodes).toEqual(['pharmacy', 'hall-a', 'gate-1-hall', 'park-1']);
    expect(quickestPath(g, 'ward-1', 'ward-1', 1)).toEqual({ nodes: ['ward-1'], lengthM: 0, timeS: 0 });
  });

  it('respects one-way edges, an edge speed limit and extra time, and says when there is no way', () => {
    const small = graphOf({
      edges: [
        { from: 'a', to: 'b', length: 10, oneWay: true },
        { from: 'b', to: 'c', length: 10, maxSpeed: 0.5, extraTimeS: 4 },
        { from: 'a', to: 'c', length: 25 },
      ],
    });
    expect(quickestPath(small, 'b', 'a', 1)!.nodes).toEqual(['b', 'c', 'a']);
    // a→b→c: 10 s + 20 s + 4 s = 34 s; a→c direct: 25 s (longer but quicker).
    expect(quickestPath(small, 'a', 'c', 1)).toEqual({ nodes: ['a', 'c'], lengthM: 25, timeS: 25 });
    expect(quickestPath(small, 'a', 'nowhere', 1)).toBeNull();
    expect(routeThrough(small, 'a', ['b', 'c'], 1)).toEqual({ nodes: ['a', 'b', 'c'], lengthM: 20, timeS: 34 });
  });

  it('orders a disinfection nearest first from the robot, like the gateway, and closes a patrol loop', () => {
    const d = task({ type: 'disinfection', request: { type: 'disinfection', zone: 'gate-2-area' }, targetNodes: ['gate-2', 'gate-2-hall'] });
    expect(stopsOf(d, g, 'park-3', 1)).toEqual(['gate-2-hall', 'gate-2']);
    const p = task({ type: 'patrol', request: { type: 'patrol', nodes: ['ward-1', 'ward-2'] }, targetNodes: ['ward-1', 'ward-2'] });
    expect(stopsOf(p, g, 'park-1', 1)).toEqual(['ward-1', 'ward-2', 'ward-1']);
  });
});

describe('task ETA', () => {
  const robot = { lastNodeId: 'park-1', x: -10, y: 10, maxSpeed: 1 };
  const whole = routeThrough(g, 'park-1', ['pharmacy', 'ward-2'], 1)!;

  it('is the whole route at the factsheet speed for a task just assigned', () => {
    const eta = taskEta(map, robot, task({ status: 'assigned', progress: null }))!;
    expect(eta.remainingM).toBeCloseTo(whole.lengthM, 6);
    expect(eta.remainingS).toBeCloseTo(whole.lengthM / 1, 6);
    expect(eta).toMatchObject({ lastStop: 'ward-2', speed: 1, speedFrom: 'factsheet' });
    // Twice as fast, half the time.
    expect(taskEta(map, { ...robot, maxSpeed: 2 }, task({ status: 'assigned' }))!.remainingS).toBeCloseTo(whole.lengthM / 2, 6);
  });

  it("uses the gateway's default speed for a robot without a factsheet", () => {
    const eta = taskEta(map, { ...robot, maxSpeed: null }, task({ status: 'assigned' }))!;
    expect(eta).toMatchObject({ speed: DEFAULT_SPEED_MPS, speedFrom: 'default' });
    expect(eta.remainingS).toBeCloseTo(whole.lengthM / DEFAULT_SPEED_MPS, 6);
  });

  it('counts only the stops still ahead, read from the order progress', () => {
    // The order: park-1, gate-1-hall, hall-a, pharmacy, hall-a, hall-b, ward-2 (7 nodes). After the pickup
    // the robot is back at hall-a with 2 nodes left (hall-b, ward-2); from hall-a "pharmacy then ward-2" would be 4.
    const eta = taskEta(map, { lastNodeId: 'hall-a', x: 20, y: 10, maxSpeed: 1 }, task({ progress: { nodesDone: 5, nodesTotal: 7, lastNodeId: 'hall-a' } }))!;
    expect(eta.remainingM).toBeCloseTo(20 + Math.hypot(0, 15), 6);
    // Before the pickup, at hall-a on the way there: pharmacy and the ward are both ahead.
    const before = taskEta(map, { lastNodeId: 'hall-a', x: 20, y: 10, maxSpeed: 1 }, task({ progress: { nodesDone: 3, nodesTotal: 7, lastNodeId: 'hall-a' } }))!;
    expect(before.remainingM).toBeCloseTo(20 + 20 + 20 + 15, 6);
  });

  it('takes off the part of the current edge already driven', () => {
    // Halfway from park-1 to gate-1-hall (10 m edge): 5 m less.
    const eta = taskEta(map, { ...robot, x: -5, y: 10 }, task({ progress: { nodesDone: 1, nodesTotal: 7, lastNodeId: 'park-1' } }))!;
    expect(eta.remainingM).toBeCloseTo(whole.lengthM - 5, 6);
  });

  it('has none without a robot or a position, while it waits for a person, when finished or arrived', () => {
    expect(taskEta(map, undefined, task({}))).toBeNull();
    expect(taskEta(map, { ...robot, lastNodeId: null }, task({}))).toBeNull();
    expect(taskEta(map, robot, task({ waitingFor: 'received' }))).toBeNull();
    expect(taskEta(map, robot, task({ status: 'queued' }))).toBeNull();
    expect(taskEta(map, robot, task({ status: 'completed' }))).toBeNull();
    expect(taskEta(map, { lastNodeId: 'ward-2', x: 40, y: 25, maxSpeed: 1 }, task({ progress: { nodesDone: 7, nodesTotal: 7, lastNodeId: 'ward-2' } }))).toBeNull();
  });
});
