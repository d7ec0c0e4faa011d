import { describe, expect, it } from 'vitest';
import { assignTasks, loadSiteMap, type RobotCandidate, type TaskCandidate } from '../src/fleet/index.js';
import { hospitalMap } from './fleet-fixtures.js';

const robot = (key: string, node: string, patch: Partial<RobotCandidate> = {}): RobotCandidate => ({
  key,
  node,
  speed: 1,
  batteryPct: 90,
  charging: false,
  unavailable: null,
  capabilities: ['pick', 'drop', 'disinfect', 'waitForTrigger', 'startCharging'],
  current: null,
  hasNext: false,
  movingTo: null,
  ...patch,
});
const task = (id: string, startNode: string, patch: Partial<TaskCandidate> = {}): TaskCandidate => ({
  id,
  priority: 50,
  deadline: null,
  createdAt: 0,
  startNode,
  endNode: startNode,
  lengthM: 0,
  actionS: 0,
  requires: [],
  pinnedRobot: null,
  ...patch,
});

/** A line A0 - A1 - ... - A9, 10 m apart. */
const line = () =>
  loadSiteMap({
    nodes: [...Array(10).keys()].map((i) => ({ id: `A${i}`, x: 10 * i, y: 0, kind: i === 0 ? ('charger' as const) : ('corridor' as const) })),
    edges: [...Array(9).keys()].map((i) => ({ from: `A${i}`, to: `A${i + 1}` })),
  });

describe('assignTasks', () => {
  it('finds the optimal batch assignment where greedy would not', () => {
    // Greedy by task order gives t1 to r1 (cost 10) and then t2 to r2 (cost 80): 90 in total.
    // Optimal: t1 to r2 (20), t2 to r1 (10): 30.
    const plan = assignTasks({
      map: line(),
      robots: [robot('r1', 'A2'), robot('r2', 'A5')],
      tasks: [task('t1', 'A3'), task('t2', 'A1', { createdAt: 1 })],
      now: 0,
      policy: { parkIdleRobots: false },
    });
    const byTask = Object.fromEntries(plan.assignments.map((a) => [a.taskId, a.robot]));
    expect(byTask).toEqual({ t1: 'r2', t2: 'r1' });
    expect(plan.assignments.every((a) => a.how === 'optimal')).toBe(true);
  });

  it('gives an urgent task greedily to its quickest robot, counting current work', () => {
    const plan = assignTasks({
      map: line(),
      robots: [
        robot('near-but-busy', 'A8', { current: { endNode: 'A9', remainingS: 500, remainingM: 10, type: 'delivery' } }),
        robot('far-idle', 'A1'),
      ],
      tasks: [task('urgent', 'A9', { priority: 95 }), task('normal', 'A8')],
      now: 0,
      policy: { parkIdleRobots: false },
    });
    expect(plan.assignments.find((a) => a.taskId === 'urgent')).toMatchObject({ robot: 'far-idle', how: 'greedy', asNext: false });
    expect(plan.assignments.find((a) => a.taskId === 'normal')).toMatchObject({ robot: 'near-but-busy', asNext: true });
  });

  it('sends a low robot to charge and gives it no work; skips one whose battery would not last', () => {
    const plan = assignTasks({
      map: line(),
      robots: [robot('low', 'A9', { batteryPct: 15 }), robot('weak', 'A5', { batteryPct: 22 }), robot('ok', 'A1', { batteryPct: 80 })],
      tasks: [task('far', 'A9', { lengthM: 200 })],
      now: 0,
      policy: { parkIdleRobots: false, drainPctPerM: 0.02 },
    });
    expect(plan.toCharge).toEqual([{ robot: 'low', charger: 'A0' }]);
    expect(plan.assignments).toEqual([expect.objectContaining({ taskId: 'far', robot: 'ok' })]);
  });

  it('explains why a task stays queued', () => {
    const plan = assignTasks({
      map: line(),
      robots: [robot('weak', 'A5', { batteryPct: 22 }), robot('no-uv', 'A5', { capabilities: ['pick'] })],
      tasks: [task('uv', 'A9', { requires: ['disinfect'], lengthM: 200 })],
      now: 0,
    });
    expect(plan.assignments).toEqual([]);
    expect(plan.unassigned[0]!.reason).toMatch(/weak: battery 22 % would not last/);
    expect(plan.unassigned[0]!.reason).toMatch(/no-uv: cannot disinfect/);
  });

  it('keeps charging robots until they reach the resume level, and parks idle ones at free spots', () => {
    const map = hospitalMap();
    const plan = assignTasks({
      map,
      robots: [
        robot('charging', 'CH1', { batteryPct: 40, charging: true }),
        robot('idle-a', 'C2'),
        robot('idle-b', 'W3'),
        robot('parked', 'P1'),
      ],
      tasks: [task('t', 'G2')],
      now: 0,
    });
    expect(plan.assignments.map((a) => a.robot)).toEqual(['idle-a']);
    expect(plan.toPark).toEqual([{ robot: 'idle-b', node: 'P2' }]); // P1 is taken
  });

  it('honours pinned robots, deadlines and priorities when tasks outnumber robots', () => {
    const plan = assignTasks({
      map: line(),
      robots: [robot('r1', 'A0'), robot('r2', 'A9')],
      tasks: [
        task('low', 'A1', { priority: 10 }),
        task('due', 'A2', { priority: 10, deadline: 60_000 }),
        task('high', 'A3', { priority: 70 }),
        task('pinned', 'A1', { pinnedRobot: 'r3' }),
      ],
      now: 0,
      policy: { parkIdleRobots: false },
    });
    expect(plan.assignments.map((a) => a.taskId).sort()).toEqual(['due', 'high']);
    expect(plan.unassigned.find((u) => u.taskId === 'pinned')!.reason).toMatch(/pinned to another robot/);
  });
});
