import { describe, expect, it } from 'vitest';
import { RobotModel } from '../src/sim/model.js';

const node = (nodeId: string, sequenceId: number, x: number) => ({
  nodeId,
  sequenceId,
  released: true,
  nodePosition: { x, y: 0, mapId: 'floor-0' },
  actions: [],
});
const edge = (from: string, to: string, sequenceId: number) => ({
  edgeId: `${from}-${to}`,
  sequenceId,
  released: true,
  startNodeId: from,
  endNodeId: to,
  actions: [],
});
const order = (orderId: string, ids: string[]) => ({
  orderId,
  orderUpdateId: 0,
  nodes: ids.map((id, i) => node(id, i * 2, i * 10)),
  edges: ids.slice(1).map((id, i) => edge(ids[i]!, id, i * 2 + 1)),
});
const cancel = (actionId: string) => ({ actionId, actionType: 'cancelOrder', blockingType: 'HARD' as const });

describe('simulated robot model', () => {
  it('finishes every cancelOrder once it stops, and then takes a new order (a master may cancel twice)', () => {
    const robot = new RobotModel({ startNode: 'A', x: 0, y: 0, speed: 1 });
    expect(robot.acceptOrder(order('o1', ['A', 'B', 'C']))).toMatchObject({ result: 'accepted' });
    for (let i = 0; i < 3; i++) robot.step(1); // on the edge to B
    robot.instantAction(cancel('c1'));
    robot.instantAction(cancel('c2'));
    for (let i = 0; i < 20; i++) robot.step(1);
    const states = robot.snapshot().actionStates.filter((a) => a.actionType === 'cancelOrder');
    expect(states.map((a) => [a.actionId, a.actionStatus])).toEqual([
      ['c1', 'FINISHED'],
      ['c2', 'FINISHED'],
    ]);
    expect(robot.busy).toBe(false);
    expect(robot.acceptOrder(order('o2', [robot.snapshot().lastNodeId, 'C']))).toMatchObject({ result: 'accepted' });
  });

  it('is done with a cancelOrder in the same step that stops it on the node (not busy when it first reports standing still)', () => {
    const robot = new RobotModel({ startNode: 'A', x: 0, y: 0, speed: 1 });
    robot.acceptOrder(order('o1', ['A', 'B', 'C']));
    for (let i = 0; i < 3; i++) robot.step(1); // on the edge to B
    robot.instantAction(cancel('c1'));
    while (robot.snapshot().driving) robot.step(1);
    expect(robot.snapshot()).toMatchObject({ lastNodeId: 'B', driving: false });
    expect(robot.snapshot().actionStates.find((a) => a.actionId === 'c1')?.actionStatus).toBe('FINISHED');
    expect(robot.busy).toBe(false);
    // The next order, sent on that very state, is taken.
    expect(robot.acceptOrder(order('o2', ['B', 'C']))).toMatchObject({ result: 'accepted' });
  });
});
