/**
 * The fleet core keeps in memory only what it still works on: finished tasks, once persisted,
 * are forgotten (a site runs thousands of tasks a month), and a forgotten task still answers
 * cancel/confirm with "already finished" through the store lookup.
 */
import { describe, expect, it } from 'vitest';
import { createFleet, TaskStateError, type Task } from '../../src/fleet/index.js';
import { bringOnline, clock, deliver, hospitalMap, run, StepRobot } from '../fleet-fixtures.js';

describe('fleet memory', () => {
  it('finished tasks leave memory after they are persisted; cancel still says they are finished', () => {
    const now = clock();
    const persisted = new Map<string, Task>();
    let n = 0;
    const fleet = createFleet({ map: hospitalMap(), newTaskId: () => `task-${String(++n).padStart(4, '0')}`, policy: { parkIdleRobots: false }, finishedTask: (id) => persisted.get(id) ?? null });
    const r1 = new StepRobot('AMR-1', 'P1');
    bringOnline(fleet, [r1], now);
    const ids: string[] = [];
    for (let i = 0; i < 25; i++) {
      const { task, effects } = fleet.submitTask({ type: 'patrol', nodes: [i % 2 ? 'G2' : 'W3'] }, 'disp', now());
      ids.push(task.id);
      deliver(effects, [r1]);
      run(fleet, [r1], now, () => fleet.task(task.id)?.status === 'completed');
      // What the service does after committing a step: persist, then forget.
      for (const t of fleet.tasks()) persisted.set(t.id, t);
      fleet.forgetFinished();
      expect(fleet.tasks().length).toBeLessThanOrEqual(1);
    }
    expect(fleet.tasks()).toEqual([]);
    expect(fleet.task(ids[0]!)).toBeUndefined();
    expect(persisted.get(ids[0]!)!.status).toBe('completed');
    expect(() => fleet.cancelTask(ids[0]!, 'disp', now())).toThrow(TaskStateError);
    expect(() => fleet.cancelTask('task-9999', 'disp', now())).toThrow(/no task task-9999/);
  });

  it('a task still referenced by a robot is not forgotten', () => {
    const now = clock();
    const fleet = createFleet({ map: hospitalMap(), newTaskId: () => 'task-running', policy: { parkIdleRobots: false } });
    const r1 = new StepRobot('AMR-1', 'P1');
    bringOnline(fleet, [r1], now);
    const { task, effects } = fleet.submitTask({ type: 'patrol', nodes: ['G2'] }, 'disp', now());
    deliver(effects, [r1]);
    expect(fleet.forgetFinished()).toBe(0);
    expect(fleet.task(task.id)!.status).toBe('assigned');
  });
});
