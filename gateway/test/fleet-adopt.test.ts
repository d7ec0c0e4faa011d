/**
 * A fleet core taking over from another (a hand-over between gateways): it adopts the order a
 * robot runs from the stored task snapshot (Task.running) — same order id, no new order —, sends
 * the same order once when the robot never got it, and gives the task back to the queue when the
 * robot stays silent past adoptTimeoutS.
 */
import { describe, expect, it } from 'vitest';
import { createFleet, TERMINAL, type Fleet, type FleetEffects, type Task } from '../src/fleet/index.js';
import { bringOnline, clock, deliver, hospitalMap, run, StepRobot } from './fleet-fixtures.js';

let ids = 0;
const newTaskId = () => `A${++ids}`;
const policy = { parkIdleRobots: false };

/** What the store would hold: the last snapshot of every task, as the effects carried it. */
function storeOf() {
  const tasks = new Map<string, Task>();
  return {
    keep(fx: FleetEffects): FleetEffects {
      for (const t of fx.tasks) tasks.set(t.id, t);
      return fx;
    },
    active: () => [...tasks.values()].filter((t) => !TERMINAL.has(t.status)),
  };
}

const ordersOf = (robot: StepRobot) => robot.received.filter((m): m is Extract<typeof m, { orderUpdateId: number }> => 'orderUpdateId' in m);

/** A first leader with one robot, a delivery under way on it (waiting for the recipient). */
function firstLeader(deliverOrders = true) {
  const now = clock();
  const store = storeOf();
  const old: Fleet = createFleet({ map: hospitalMap(), newTaskId, policy });
  const robot = new StepRobot('ADO-1', 'P1');
  bringOnline(old, [robot], now);
  const { task, effects } = old.submitTask({ type: 'delivery', from: 'PH', to: 'W3', what: 'insulin', recipient: 'nurse' }, 'disp', now());
  store.keep(effects);
  if (deliverOrders) {
    deliver(effects, [robot]);
    for (let i = 0; i < 200 && old.task(task.id)!.awaiting !== 'recipient'; i++) {
      robot.step();
      const t = now();
      deliver(store.keep(old.handleMessage(...robot.state(t), t)), [robot]);
    }
    expect(old.task(task.id)!.awaiting).toBe('recipient');
  }
  return { now, store, old, robot, taskId: task.id };
}

describe('adopting running orders after a hand-over', () => {
  it('continues the order the robot runs: no new order, the confirmation goes through, the task completes', () => {
    const { now, store, old, robot, taskId } = firstLeader();
    const stored = store.active().find((t) => t.id === taskId)!;
    expect(stored.running?.plan.orderId).toBe(stored.orderId);
    const before = ordersOf(robot).length;

    const next = createFleet({ map: hospitalMap(), newTaskId, policy, tasks: store.active(), robots: old.robots(), restore: 'adopt', adoptTimeoutS: 60, now: now() });
    expect(next.task(taskId)).toMatchObject({ status: 'underway', robot: robot.key, orderId: stored.orderId });
    expect(next.task(taskId)!.history.at(-1)!.reason).toBe(`order ${stored.orderId} adopted by the gateway now leading the fleet`);

    run(next, [robot], now, () => false, 3);
    const confirmed = next.confirmTask(taskId, 'recipient', 'nurse', now());
    expect(confirmed.effects.publish.some((m) => m.topic.endsWith('/instantActions'))).toBe(true);
    deliver(confirmed.effects, [robot]);
    run(next, [robot], now, () => next.task(taskId)?.status === 'completed');

    expect(next.task(taskId)!.status).toBe('completed');
    expect(ordersOf(robot).length).toBe(before);
    expect(new Set(ordersOf(robot).map((o) => o.orderId))).toEqual(new Set([stored.orderId]));
    // Header ids (per topic) keep increasing across the hand-over.
    for (const kind of ['orderUpdateId', 'actions']) {
      const headerIds = robot.received.filter((m) => kind in m).map((m) => m.headerId);
      expect(headerIds.length).toBeGreaterThan(0);
      expect(headerIds).toEqual([...headerIds].sort((x, y) => x - y));
      expect(new Set(headerIds).size).toBe(headerIds.length);
    }
  });

  it('carries a confirmation trigger that never reached the robot across the hand-over: the new leader sends it again (same action id)', () => {
    const { now, store, old, robot, taskId } = firstLeader();
    const confirmed = store.keep(old.confirmTask(taskId, 'recipient', 'nurse', now()).effects); // the trigger is lost
    const [trigger] = confirmed.publish.filter((m) => m.topic.endsWith('/instantActions')).flatMap((m) => JSON.parse(m.payload).actions as Array<{ actionId: string; actionType: string }>);
    expect(trigger).toMatchObject({ actionType: 'trigger' });
    expect(store.active().find((t) => t.id === taskId)!.running!.triggersSent).toEqual([expect.objectContaining({ triggerId: trigger!.actionId, resends: 0 })]);

    const next = createFleet({ map: hospitalMap(), newTaskId, policy, tasks: store.active(), robots: old.robots(), restore: 'adopt', now: now() });
    const resent: string[] = [];
    for (let i = 0; i < 15 && resent.length === 0; i++) {
      const t = now();
      const fx = deliver(next.handleMessage(...robot.state(t), t), [robot]);
      resent.push(...fx.filter((m) => m.topic.endsWith('/instantActions')).flatMap((m) => (JSON.parse(m.payload).actions as Array<{ actionId: string }>).map((a) => a.actionId)));
    }
    expect(resent).toEqual([trigger!.actionId]);
    run(next, [robot], now, () => next.task(taskId)?.status === 'completed');
    expect(next.task(taskId)).toMatchObject({ status: 'completed', attempts: 1 });
  });

  it('sends the same order once when the robot never got it (the old leader stopped before publishing)', () => {
    const { now, store, old, robot, taskId } = firstLeader(false);
    const stored = store.active().find((t) => t.id === taskId)!;
    expect(stored.running?.plan.orderId).toBeTruthy();
    expect(ordersOf(robot)).toHaveLength(0);

    const next = createFleet({ map: hospitalMap(), newTaskId, policy, tasks: store.active(), robots: old.robots(), restore: 'adopt', now: now() });
    run(next, [robot], now, () => next.task(taskId)?.awaiting === 'recipient');
    expect(ordersOf(robot).map((o) => [o.orderId, o.orderUpdateId])).toEqual([[stored.orderId, 0]]);
    expect(next.task(taskId)!.attempts).toBe(1);
    expect(next.task(taskId)!.history.some((h) => h.reason.includes('does not run adopted order'))).toBe(true);
  });

  it('re-queues (to plan again) an adopted order the robot never got when the robot no longer stands at its start', () => {
    const { now, store, old, robot, taskId } = firstLeader(false);
    const stored = store.active().find((t) => t.id === taskId)!;
    const start = stored.running!.plan.nodes[0]!.nodeId;
    const movedTo = start === 'C2' ? 'C1' : 'C2';
    robot.lastNodeId = movedTo; // it moved meanwhile
    const next = createFleet({ map: hospitalMap(), newTaskId, policy, tasks: store.active(), robots: old.robots(), restore: 'adopt', now: now() });
    deliver(next.handleMessage(...robot.state(now()), now()), [robot]);
    const reasons = next.task(taskId)!.history.map((h) => h.reason).join('\n');
    expect(reasons).toContain(`does not run adopted order ${stored.orderId} (it stands at ${movedTo}, the order starts at ${start})`);
    run(next, [robot], now, () => ordersOf(robot).length > 0, 5);
    // Never the old order; a new one planned from where it stands.
    expect(ordersOf(robot).map((o) => o.orderId)).not.toContain(stored.orderId);
    expect(ordersOf(robot)[0]!.nodes[0]!.nodeId).toBe(movedTo);
    expect(next.task(taskId)!.attempts).toBe(2);
  });

  it('keeps the rest of the link-loss grace of a robot whose link broke before the hand-over, counted from when it broke', () => {
    const { now, store, old, robot, taskId } = firstLeader();
    const brokeAt = now();
    store.keep(old.handleMessage(...robot.connection('CONNECTIONBROKEN', brokeAt), brokeAt));
    expect(old.task(taskId)!.history.at(-1)!.reason).toMatch(/lost its link \(CONNECTIONBROKEN\); it keeps the task up to 30 s/);
    // The hand-over 20 s into the grace: 10 s are left, not a fresh 30 (nor the 60 s adopt timeout).
    const at = brokeAt + 20_000;
    const next = createFleet({ map: hospitalMap(), newTaskId, policy, tasks: store.active(), robots: old.robots(), restore: 'adopt', adoptTimeoutS: 60, linkLossGraceS: 30, now: at });
    expect(next.tick(at + 9_000).tasks.find((t) => t.id === taskId)).toBeUndefined();
    const lost = next.tick(at + 10_500).tasks.find((t) => t.id === taskId);
    expect(lost?.history.map((h) => h.reason).join('\n')).toMatch(/CONNECTIONBROKEN \(no link for 30 s\)/);
    expect(lost?.status).toBe('queued');
  });

  it('re-queues the task of an adopted robot that sends no state within adoptTimeoutS', () => {
    const { now, store, old, robot, taskId } = firstLeader();
    const at = now();
    const next = createFleet({ map: hospitalMap(), newTaskId, policy, tasks: store.active(), robots: old.robots(), restore: 'adopt', adoptTimeoutS: 60, now: at });
    expect(next.tick(at + 59_000).tasks.find((t) => t.id === taskId)).toBeUndefined();
    expect(next.task(taskId)!.status).toBe('underway');
    const fx = next.tick(at + 61_000);
    const lost = fx.tasks.find((t) => t.id === taskId);
    expect(lost?.history.some((h) => h.reason.includes(`robot ${robot.key} sent no state within 60 s of the hand-over`))).toBe(true);
    // Re-queued (a try left); the silent robot's order is no longer the task's running order.
    expect(lost?.status).toBe('queued');
    expect(lost?.running).toBeUndefined();
    expect(next.task(taskId)!.status).toBe('queued');
  });
});
