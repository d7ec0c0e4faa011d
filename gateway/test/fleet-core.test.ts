import { describe, expect, it } from 'vitest';
import { createFleet, loadRules, TaskStateError } from '../src/fleet/index.js';
import { bringOnline, clock, deliver, hospitalMap, run, StepRobot } from './fleet-fixtures.js';
import type { Vda5050Order } from '@checkpoint/protocol';

let ids = 0;
const newTaskId = () => `T${++ids}`;

describe('fleet core (master control without sockets)', () => {
  it('runs a delivery to completion, waiting for the recipient to confirm', () => {
    const now = clock();
    const fleet = createFleet({ map: hospitalMap(), newTaskId });
    const r1 = new StepRobot('AMR-1', 'P1');
    bringOnline(fleet, [r1], now);
    const { task, effects } = fleet.submitTask({ type: 'delivery', from: 'PH', to: 'W3', what: 'insulin', recipient: 'ward 3 nurse' }, 'disp', now());
    deliver(effects, [r1]);
    expect(fleet.task(task.id)!.status).toBe('assigned');
    expect(effects.publish).toEqual([expect.objectContaining({ topic: 'uagv/v2/acme/AMR-1/order', qos: 1 })]);

    run(fleet, [r1], now, () => fleet.task(task.id)!.awaiting === 'recipient');
    expect(fleet.task(task.id)).toMatchObject({ status: 'underway', awaiting: 'recipient' });
    expect(r1.lastNodeId).toBe('W3');
    // The robot stays put however long nobody confirms.
    run(fleet, [r1], now, () => false, 5);
    expect(fleet.task(task.id)!.status).toBe('underway');

    const confirmed = fleet.confirmTask(task.id, 'recipient', 'nurse-3', now());
    const [trigger] = deliver(confirmed.effects, [r1]);
    expect(trigger!.topic).toBe('uagv/v2/acme/AMR-1/instantActions');
    expect(JSON.parse(trigger!.payload).actions[0]).toMatchObject({ actionType: 'trigger' });
    run(fleet, [r1], now, () => fleet.task(task.id)!.status === 'completed');
    const done = fleet.task(task.id)!;
    expect(done.status).toBe('completed');
    expect(done.history.map((h) => h.status)).toEqual(['queued', 'assigned', 'assigned', 'underway', 'underway', 'underway', 'completed']);
    expect(done.history.map((h) => h.reason).join('\n')).toMatch(/waiting at W3 for recipient confirmation[\s\S]*recipient confirmed by nurse-3/);
    // Idle afterwards: back to parking.
    run(fleet, [r1], now, () => r1.lastNodeId === 'P1' || r1.lastNodeId === 'P2');
    expect(['P1', 'P2']).toContain(r1.lastNodeId);
  });

  it('turns an acknowledged alert into a disinfection that waits for "area clear"', () => {
    const now = clock();
    const map = hospitalMap();
    const rules = loadRules(
      [{ id: 'uv-after-referral', when: { alertAcknowledged: { outcome: 'referred' } }, then: { type: 'disinfection', target: 'checkpoint-zone', priority: 90 } }],
      map,
    );
    const fleet = createFleet({ map, rules, newTaskId });
    const r1 = new StepRobot('UV-1', 'C1');
    bringOnline(fleet, [r1], now);
    expect(fleet.alertAcknowledged({ alertId: 'A1', site: 'hq', checkpoint: 'gate-2', outcome: 'passed' }, now()).tasks).toEqual([]);
    const { tasks, effects } = fleet.alertAcknowledged({ alertId: 'A2', site: 'hq', checkpoint: 'gate-2', outcome: 'referred' }, now());
    deliver(effects, [r1]);
    expect(tasks).toHaveLength(1);
    const id = tasks[0]!.id;
    expect(tasks[0]).toMatchObject({ type: 'disinfection', alertId: 'A2', ruleId: 'uv-after-referral', priority: 90 });

    run(fleet, [r1], now, () => fleet.task(id)!.awaiting === 'area-clear');
    expect(r1.actions.filter((a) => a.actionType === 'disinfect').every((a) => a.status === 'WAITING')).toBe(true);
    expect(() => fleet.confirmTask(id, 'recipient', 'guard', now())).toThrow(TaskStateError);
    deliver(fleet.confirmTask(id, 'area-clear', 'guard-2', now()).effects, [r1]);
    run(fleet, [r1], now, () => fleet.task(id)!.status === 'completed');
    expect(fleet.task(id)!.status).toBe('completed');
    const actions = fleet.task(id)!.progress!.actions;
    expect(Object.values(actions)).toEqual(['FINISHED', 'FINISHED', 'FINISHED']); // wait, UV at G2, UV at G2b
  });

  /** Two robots online, a patrol underway on AMR-1 (one step driven). */
  const patrolUnderway = (options: { linkLossGraceS?: number } = {}) => {
    const now = clock();
    const fleet = createFleet({ map: hospitalMap(), newTaskId, policy: { parkIdleRobots: false }, ...options });
    const r1 = new StepRobot('AMR-1', 'C1');
    const r2 = new StepRobot('AMR-2', 'P2');
    bringOnline(fleet, [r1, r2], now);
    const { task, effects } = fleet.submitTask({ type: 'patrol', nodes: ['C2', 'G2'], repeat: 1 }, 'disp', now());
    deliver(effects, [r1, r2]);
    expect(fleet.task(task.id)!.robot).toBe('acme/AMR-1');
    run(fleet, [r1], now, () => fleet.task(task.id)!.status === 'underway');
    r1.step();
    /** Lets `seconds` pass on the clock; returns the time reached. */
    const wait = (seconds: number) => {
      let t = now();
      for (let i = 1; i < seconds; i++) t = now();
      return t;
    };
    return { now, wait, fleet, r1, r2, task };
  };
  const reasons = (fleet: ReturnType<typeof createFleet>, id: string) => fleet.task(id)!.history.map((h) => h.reason).join('\n');

  it('re-queues the task of a robot whose link stays broken past the grace period, lets another robot finish it, and cancels the stale order on return', () => {
    const { now, wait, fleet, r1, r2, task } = patrolUnderway();

    deliver(fleet.handleMessage(...r1.connection('CONNECTIONBROKEN', now()), now()), [r1, r2]);
    // The robot may still be driving: it keeps the task for the grace period (default 30 s).
    expect(fleet.task(task.id)).toMatchObject({ status: 'underway', robot: 'acme/AMR-1', attempts: 1 });
    expect(reasons(fleet, task.id)).toMatch(/robot acme\/AMR-1 lost its link \(CONNECTIONBROKEN\); it keeps the task up to 30 s/);
    deliver(fleet.tick(wait(27)), [r1, r2]);
    expect(fleet.task(task.id)).toMatchObject({ status: 'underway', robot: 'acme/AMR-1' });

    deliver(fleet.tick(wait(3)), [r1, r2]);
    const t = fleet.task(task.id)!;
    expect(reasons(fleet, task.id)).toMatch(/robot acme\/AMR-1 is CONNECTIONBROKEN \(no link for 30 s\) mid-task; re-queued \(attempt 1 of 3 used\)/);
    expect(t).toMatchObject({ status: 'assigned', robot: 'acme/AMR-2' });
    run(fleet, [r2], now, () => fleet.task(task.id)!.status === 'completed');
    expect(fleet.task(task.id)!).toMatchObject({ status: 'completed', attempts: 2 });

    // AMR-1 comes back still holding the old order: it is told to cancel it.
    deliver(fleet.handleMessage(...r1.connection('ONLINE', now()), now()), [r1, r2]);
    const back = fleet.handleMessage(...r1.state(now()), now());
    expect(back.publish.map((p) => JSON.parse(p.payload).actions?.[0]?.actionType)).toContain('cancelOrder');
  });

  it('keeps the task of a robot whose link came back within the grace period: same order, one attempt, nothing sent to another robot', () => {
    const { now, wait, fleet, r1, r2, task } = patrolUnderway();
    const orderId = fleet.task(task.id)!.orderId;
    deliver(fleet.handleMessage(...r1.connection('CONNECTIONBROKEN', now()), now()), [r1, r2]);
    // It drives on while offline; nobody hears its states.
    r1.step();
    r1.step();
    deliver(fleet.tick(wait(20)), [r1, r2]);
    deliver(fleet.handleMessage(...r1.connection('ONLINE', now()), now()), [r1, r2]);
    expect(reasons(fleet, task.id)).toMatch(/robot acme\/AMR-1 back ONLINE after 2\d\.0 s/);
    run(fleet, [r1], now, () => fleet.task(task.id)!.status === 'completed');
    expect(fleet.task(task.id)).toMatchObject({ status: 'completed', robot: 'acme/AMR-1', attempts: 1, orderId });
    expect(r2.received.filter((m) => 'nodes' in m)).toEqual([]);
    // The grace does not come back to haunt it: a tick much later changes nothing.
    deliver(fleet.tick(wait(60)), [r1, r2]);
    expect(fleet.task(task.id)!.status).toBe('completed');
  });

  it('plans the task again from where it stands for a robot back within the grace period without its order (rebooted)', () => {
    const { now, fleet, r1, r2, task } = patrolUnderway();
    const orderId = fleet.task(task.id)!.orderId!;
    deliver(fleet.handleMessage(...r1.connection('CONNECTIONBROKEN', now()), now()), [r1, r2]);
    const stoodAt = r1.lastNodeId;
    Object.assign(r1, { orderId: '', orderUpdateId: 0, nodes: [], edges: [], actions: [] });
    deliver(fleet.handleMessage(...r1.connection('ONLINE', now()), now()), [r1, r2]);
    expect(fleet.task(task.id)!.orderId).toBe(orderId);
    deliver(fleet.handleMessage(...r1.state(now()), now()), [r1, r2]);
    expect(reasons(fleet, task.id)).toMatch(new RegExp(`robot acme/AMR-1 came back without order ${orderId} mid-task; re-queued \\(attempt 1 of 3 used\\)`));
    run(fleet, [r1, r2], now, () => fleet.task(task.id)!.status === 'completed');
    const done = fleet.task(task.id)!;
    expect(done).toMatchObject({ status: 'completed', attempts: 2 });
    expect(done.orderId).not.toBe(orderId);
    // Whoever took it, the new order starts where that robot stood, not where AMR-1 was first sent from.
    const taker = done.robot === r1.key ? r1 : r2;
    const firstOrder = taker.received.find((m): m is Vda5050Order => 'nodes' in m && m.orderId === done.orderId)!;
    expect(firstOrder.nodes[0]!.nodeId).toBe(taker === r1 ? stoodAt : 'P2');
  });

  it('sends an order the robot has not shown again after 10 s (it was lost on the way), and the task goes on under the same order', () => {
    const now = clock();
    const fleet = createFleet({ map: hospitalMap(), newTaskId, policy: { parkIdleRobots: false } });
    const r1 = new StepRobot('AMR-1', 'C1');
    bringOnline(fleet, [r1], now);
    const { task, effects } = fleet.submitTask({ type: 'patrol', nodes: ['C2', 'G2'], repeat: 1 }, 'disp', now());
    const lost = effects.publish.filter((p) => p.topic.endsWith('/order'));
    expect(lost).toHaveLength(1); // and never delivered
    const orderId = fleet.task(task.id)!.orderId;
    deliver(fleet.handleMessage(...r1.state(now()), now()), [r1]);
    // Not yet: 10 s after the send.
    expect(fleet.tick(now()).publish.filter((p) => p.topic.endsWith('/order'))).toEqual([]);
    let again: ReturnType<typeof fleet.tick>['publish'] = [];
    for (let i = 0; i < 12 && again.length === 0; i++) again = deliver(fleet.tick(now()), [r1]).filter((p) => p.topic.endsWith('/order'));
    expect(again).toHaveLength(1);
    expect(JSON.parse(again[0]!.payload)).toMatchObject({ orderId, orderUpdateId: 0 });
    expect(reasons(fleet, task.id)).toMatch(new RegExp(`robot acme/AMR-1 has not shown order ${orderId} for 10 s: sent again \\(1 of 3\\)`));
    run(fleet, [r1], now, () => fleet.task(task.id)!.status === 'completed');
    expect(fleet.task(task.id)).toMatchObject({ status: 'completed', attempts: 1, orderId });
    // Shown by the robot: no more resends.
    for (let i = 0; i < 30; i++) expect(fleet.tick(now()).publish.filter((p) => p.topic.endsWith('/order'))).toEqual([]);
  });

  it('re-queues the task of a robot that shows none of 3 resends of its order', () => {
    const now = clock();
    const fleet = createFleet({ map: hospitalMap(), newTaskId, policy: { parkIdleRobots: false } });
    const deaf = new StepRobot('AMR-1', 'C1');
    bringOnline(fleet, [deaf], now);
    const { task } = fleet.submitTask({ type: 'patrol', nodes: ['C2', 'G2'], repeat: 1 }, 'disp', now());
    const orderId = fleet.task(task.id)!.orderId;
    let sent = 1;
    // It keeps publishing its (idle) state, and every order is lost.
    for (let i = 0; i < 60 && fleet.task(task.id)!.attempts === 1 && fleet.task(task.id)!.status !== 'queued'; i++) {
      fleet.handleMessage(...deaf.state(now()), now());
      sent += fleet.tick(now()).publish.filter((p) => p.topic.endsWith('/order') && JSON.parse(p.payload).orderId === orderId).length;
    }
    expect(sent).toBe(4);
    expect(reasons(fleet, task.id)).toMatch(new RegExp(`robot acme/AMR-1 did not show order ${orderId} after 3 resends mid-task; re-queued \\(attempt 1 of 3 used\\)`));
  });

  /** A delivery on AMR-1 waiting at W3 for the recipient (the confirmation is a `trigger` to the robot). */
  const deliveryAwaitingRecipient = () => {
    const now = clock();
    const fleet = createFleet({ map: hospitalMap(), newTaskId, policy: { parkIdleRobots: false } });
    const r1 = new StepRobot('AMR-1', 'P1');
    bringOnline(fleet, [r1], now);
    const { task, effects } = fleet.submitTask({ type: 'delivery', from: 'PH', to: 'W3', what: 'insulin', recipient: 'ward 3 nurse' }, 'disp', now());
    deliver(effects, [r1]);
    run(fleet, [r1], now, () => fleet.task(task.id)!.awaiting === 'recipient');
    return { now, fleet, r1, task };
  };
  const instantActionsIn = (publish: Array<{ topic: string; payload: string }>) =>
    publish.filter((p) => p.topic.endsWith('/instantActions')).flatMap((p) => JSON.parse(p.payload).actions as Array<{ actionId: string; actionType: string }>);

  it('sends a confirmation trigger the robot shows no trace of again after 10 s (same action id), and the delivery completes', () => {
    const { now, fleet, r1, task } = deliveryAwaitingRecipient();
    const [lost] = instantActionsIn(fleet.confirmTask(task.id, 'recipient', 'nurse-3', now()).effects.publish); // never reaches the robot
    expect(lost).toMatchObject({ actionType: 'trigger' });
    const resent: Array<{ actionId: string; actionType: string }> = [];
    for (let i = 0; i < 15 && resent.length === 0; i++) {
      resent.push(...instantActionsIn(deliver(fleet.handleMessage(...r1.state(now()), now()), [r1])));
    }
    expect(resent).toEqual([expect.objectContaining({ actionType: 'trigger', actionId: lost!.actionId })]);
    expect(fleet.task(task.id)!.history.map((h) => h.reason).join('\n')).toMatch(/still waits and shows no confirmation trigger after 10 s: sent again \(1 of 3\)/);
    run(fleet, [r1], now, () => fleet.task(task.id)!.status === 'completed');
    expect(fleet.task(task.id)!.status).toBe('completed');
  });

  it('asks the human to confirm again when the robot takes none of 4 triggers', () => {
    const { now, fleet, r1, task } = deliveryAwaitingRecipient();
    fleet.confirmTask(task.id, 'recipient', 'nurse-3', now());
    let triggers = 1;
    for (let i = 0; i < 60 && fleet.task(task.id)!.awaiting !== 'recipient'; i++) {
      triggers += instantActionsIn(fleet.handleMessage(...r1.state(now()), now()).publish).filter((a) => a.actionType === 'trigger').length;
    }
    expect(triggers).toBe(4);
    expect(fleet.task(task.id)).toMatchObject({ status: 'underway', awaiting: 'recipient' });
    expect(fleet.task(task.id)!.history.at(-1)!.reason).toBe('robot acme/AMR-1 took none of 4 confirmation triggers; confirm again');
    deliver(fleet.confirmTask(task.id, 'recipient', 'nurse-3', now()).effects, [r1]);
    run(fleet, [r1], now, () => fleet.task(task.id)!.status === 'completed');
    expect(fleet.task(task.id)!.status).toBe('completed');
  });

  it('sends cancelOrder again every 10 s while the robot still runs the cancelled order', () => {
    const { now, wait, fleet, r1, task } = patrolUnderway();
    const orderId = fleet.task(task.id)!.orderId;
    const first = instantActionsIn(fleet.cancelTask(task.id, 'disp', now()).effects.publish); // lost
    expect(first).toEqual([expect.objectContaining({ actionType: 'cancelOrder' })]);
    expect(r1.orderId).toBe(orderId);
    // A state 5 s later: not yet.
    expect(instantActionsIn(fleet.handleMessage(...r1.state(wait(5)), wait(0)).publish)).toEqual([]);
    const again = instantActionsIn(deliver(fleet.handleMessage(...r1.state(wait(6)), wait(0)), [r1]));
    expect(again).toEqual([expect.objectContaining({ actionType: 'cancelOrder' })]);
    // Delivered this time: the robot stops, and nothing more is sent.
    for (let i = 0; i < 5; i++) expect(instantActionsIn(fleet.handleMessage(...r1.state(wait(11)), wait(0)).publish)).toEqual([]);
  });

  it('re-queues at once when the robot disconnects cleanly (OFFLINE), or on CONNECTIONBROKEN with linkLossGraceS 0', () => {
    for (const [state, options] of [
      ['OFFLINE', {}],
      ['CONNECTIONBROKEN', { linkLossGraceS: 0 }],
    ] as const) {
      const { now, fleet, r1, r2, task } = patrolUnderway(options);
      deliver(fleet.handleMessage(...r1.connection(state, now()), now()), [r1, r2]);
      expect(reasons(fleet, task.id)).toMatch(new RegExp(`robot acme/AMR-1 is ${state} mid-task; re-queued \\(attempt 1 of 3 used\\)`));
      expect(fleet.task(task.id)).toMatchObject({ status: 'assigned', robot: 'acme/AMR-2' });
    }
  });

  it('sends a low robot to charge with a visible charge task', () => {
    const now = clock();
    const fleet = createFleet({ map: hospitalMap(), newTaskId });
    const r1 = new StepRobot('AMR-1', 'C2', 12);
    bringOnline(fleet, [r1], now);
    const charge = fleet.tasks().find((t) => t.type === 'charge')!;
    expect(charge).toMatchObject({ status: 'assigned', robot: 'acme/AMR-1', requestedBy: 'dispatcher' });
    expect(charge.history.map((h) => h.reason)).toContain('battery 12 % below 20 %');
    const d = fleet.submitTask({ type: 'delivery', from: 'PH', to: 'W3', what: 'x' }, 'disp', now());
    deliver(d.effects, [r1]);
    run(fleet, [r1], now, () => fleet.task(charge.id)!.status === 'completed');
    expect(r1.lastNodeId).toBe('CH1');
    expect(r1.charging).toBe(true);
    expect(fleet.task(d.task.id)!.status).toBe('queued');
    expect(fleet.task(d.task.id)!.history.at(-1)!.reason).toMatch(/not assigned/);
  });

  it('after a cancel, sends no new order (parking) until the robot has wound the cancelled one down', () => {
    const now = clock();
    const fleet = createFleet({ map: hospitalMap(), newTaskId });
    const r1 = new StepRobot('AMR-1', 'P1');
    bringOnline(fleet, [r1], now);
    const { task, effects } = fleet.submitTask({ type: 'patrol', nodes: ['G2'] }, 'disp', now());
    deliver(effects, [r1]);
    run(fleet, [r1], now, () => fleet.task(task.id)!.status === 'underway');
    const cancelled = fleet.cancelTask(task.id, 'disp', now());
    // A robot still executing refuses any new order ("still executing order …; cancel it first")
    // and keeps that error until its next order: only the cancelOrder may go out now.
    expect(cancelled.effects.publish.map((p) => p.topic)).toEqual(['uagv/v2/acme/AMR-1/instantActions']);
    deliver(cancelled.effects, [r1]);
    // Once it reports standing still it is parked as usual, without refusing anything.
    run(fleet, [r1], now, () => r1.lastNodeId === 'P1' || r1.lastNodeId === 'P2');
    expect(['P1', 'P2']).toContain(r1.lastNodeId);
    expect(fleet.robot('acme/AMR-1')!.errors).toEqual([]);
  });

  it('cancels a running task with cancelOrder and drops invalid payloads with a counted cause', () => {
    const now = clock();
    const fleet = createFleet({ map: hospitalMap(), newTaskId, policy: { parkIdleRobots: false } });
    const r1 = new StepRobot('AMR-1', 'P1');
    bringOnline(fleet, [r1], now);
    const { task, effects } = fleet.submitTask({ type: 'patrol', nodes: ['G2'] }, 'disp', now());
    deliver(effects, [r1]);
    run(fleet, [r1], now, () => fleet.task(task.id)!.status === 'underway');
    const cancelled = fleet.cancelTask(task.id, 'disp', now(), 'wrong gate');
    const [msg] = deliver(cancelled.effects, [r1]);
    expect(JSON.parse(msg!.payload).actions[0].actionType).toBe('cancelOrder');
    expect(cancelled.task.history.at(-1)!.reason).toBe('cancelled by disp: wrong gate');
    expect(() => fleet.cancelTask(task.id, 'disp', now())).toThrow(/cannot go from cancelled to cancelled/);

    const bad = fleet.handleMessage('uagv/v2/acme/AMR-1/state', JSON.stringify({ ...JSON.parse(r1.state(now())[1]), headerId: 'x' }), now());
    expect(bad.rejected[0]).toMatchObject({ cause: 'invalid-state' });
    expect(bad.rejected[0]!.message).toMatch(/\/headerId/);
    const spoof = fleet.handleMessage('uagv/v2/acme/AMR-9/state', r1.state(now())[1], now());
    expect(spoof.rejected[0]!.message).toMatch(/names acme\/AMR-1 but was sent on the topic of acme\/AMR-9/);
    fleet.handleMessage('uagv/v2/acme/AMR-1/order', '{}', now());
    expect(fleet.stats().rejected).toEqual({ 'invalid-state': 2, 'unexpected-topic': 1 });
    const dup = r1.state(now());
    fleet.handleMessage(...dup, now());
    fleet.handleMessage(...dup, now());
    expect(fleet.stats().duplicate).toBe(1);
  });
});
