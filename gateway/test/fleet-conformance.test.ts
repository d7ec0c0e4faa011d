/**
 * VDA 5050 conformance of the master control towards robots we did not write (issue 19): the
 * protocol version the robot speaks, factsheetRequest, standard actions and parameters,
 * confirmations without custom instant actions, and the dispatch rules around refusals,
 * charging, cancellation, reconnects and last wills.
 */
import { describe, expect, it } from 'vitest';
import type { Vda5050Order } from '@checkpoint/protocol';
import { createFleet as createBareFleet } from '../src/fleet/index.js';
import { checkedCount, officiallyChecked } from './fleet-wire-schemas.js';

/** Every message in and out checked against the official VDA 5050 2.0.0 schemas. */
const createFleet = (...a: Parameters<typeof createBareFleet>) => officiallyChecked(createBareFleet(...a));
import { bringOnline, clock, deliver, hospitalMap, run, StepRobot } from './fleet-fixtures.js';

let ids = 0;
const newTaskId = () => `C${++ids}`;

describe('fleet conformance with other makers\' robots', () => {
  it('speaks the protocol version each robot speaks in orders and instant actions', () => {
    const now = clock();
    const fleet = createFleet({ map: hospitalMap(), newTaskId, policy: { parkIdleRobots: false } });
    const old = new StepRobot('OLD-1', 'P1');
    old.version = '2.0.0';
    bringOnline(fleet, [old], now);
    const { task, effects } = fleet.submitTask({ type: 'delivery', from: 'PH', to: 'W3', what: 'insulin', confirmRecipient: false }, 'disp', now());
    const [order] = deliver(effects, [old]);
    expect(JSON.parse(order!.payload).version).toBe('2.0.0');
    const cancel = deliver(fleet.cancelTask(task.id, 'disp', now()).effects, [old]);
    run(fleet, [old], now, () => false, 1);
    for (const m of cancel) expect(JSON.parse(m.payload).version).toBe('2.0.0');
  });
});

describe('factsheetRequest', () => {
  it('asks a robot without a factsheet for one on connect, backs off, and names the robot once while it waits', () => {
    const now = clock();
    const fleet = createFleet({ map: hospitalMap(), newTaskId, policy: { parkIdleRobots: false } });
    const shy = new StepRobot('SHY-1', 'P1');
    const sent: string[] = [];
    const feed = (fx: ReturnType<typeof fleet.tick>) => {
      for (const m of deliver(fx, [shy])) if (m.topic.endsWith('/instantActions')) sent.push(...JSON.parse(m.payload).actions.map((a: { actionType: string }) => a.actionType));
    };
    feed(fleet.handleMessage(...shy.connection('ONLINE', now()), now()));
    feed(fleet.handleMessage(...shy.state(now()), now()));
    expect(sent).toEqual(['factsheetRequest']);
    const { task, effects } = fleet.submitTask({ type: 'delivery', from: 'PH', to: 'W3', what: 'insulin' }, 'disp', now());
    feed(effects);
    const waiting = fleet.task(task.id)!.history.at(-1)!.reason;
    expect(waiting).toMatch(/no factsheet yet/);
    expect(waiting.split('SHY-1').length - 1).toBe(1);
    // More states and ticks within the back-off: no second request.
    feed(fleet.handleMessage(...shy.state(now()), now()));
    feed(fleet.tick(now()));
    expect(sent).toEqual(['factsheetRequest']);
    // After the back-off, once more; then the interval doubles.
    const t0 = now();
    feed(fleet.tick(t0 + 11_000));
    expect(sent).toEqual(['factsheetRequest', 'factsheetRequest']);
    feed(fleet.tick(t0 + 25_000));
    expect(sent).toHaveLength(2);
    feed(fleet.tick(t0 + 32_000));
    expect(sent).toHaveLength(3);
    // The factsheet arrives: the task goes to the robot and the requests stop.
    const later = t0 + 33_000;
    feed(fleet.handleMessage(...shy.factsheet(later), later));
    expect(fleet.task(task.id)!.status).toBe('assigned');
    feed(fleet.tick(later + 600_000));
    expect(sent.filter((s) => s === 'factsheetRequest')).toHaveLength(3);
  });
});

describe('standard actions and confirmations', () => {
  it('delivers with a robot that knows only pick and drop: standard parameters, confirmation held in the master', () => {
    const now = clock();
    const fleet = createFleet({ map: hospitalMap(), newTaskId, policy: { parkIdleRobots: false } });
    const plain = new StepRobot('STD-1', 'P1', 90, ['pick', 'drop']);
    bringOnline(fleet, [plain], now);
    const { task, effects } = fleet.submitTask({ type: 'delivery', from: 'PH', to: 'W3', what: 'insulin', recipient: 'ward 3 nurse' }, 'disp', now());
    const [first] = deliver(effects, [plain]);
    const order = JSON.parse(first!.payload) as Vda5050Order;
    const actions = order.nodes.flatMap((n) => n.actions);
    expect(actions.map((a) => a.actionType)).toEqual(['pick']);
    const params = Object.fromEntries(actions[0]!.actionParameters!.map((p) => [p.key, p.value]));
    expect(params).toMatchObject({ stationType: expect.any(String), loadType: expect.any(String), stationName: 'PH' });
    expect(order.nodes.at(-1)!.nodeId).toBe('W3');

    run(fleet, [plain], now, () => fleet.task(task.id)!.awaiting === 'recipient');
    expect(fleet.task(task.id)).toMatchObject({ status: 'underway', awaiting: 'recipient' });
    expect(plain.lastNodeId).toBe('W3');
    const confirmed = deliver(fleet.confirmTask(task.id, 'recipient', 'nurse-3', now()).effects, [plain]);
    expect(confirmed.map((m) => m.topic)).toEqual(['uagv/v2/acme/STD-1/order']);
    const second = JSON.parse(confirmed[0]!.payload) as Vda5050Order;
    expect(second.orderId).not.toBe(order.orderId);
    expect(second.nodes).toHaveLength(1);
    expect(second.nodes[0]).toMatchObject({ nodeId: 'W3', actions: [expect.objectContaining({ actionType: 'drop' })] });
    run(fleet, [plain], now, () => fleet.task(task.id)!.status === 'completed');
    expect(fleet.task(task.id)!.status).toBe('completed');
    const sentTypes = plain.received.flatMap((m) => ('nodes' in m ? m.nodes.flatMap((n) => n.actions) : m.actions).map((a) => a.actionType));
    expect(sentTypes).not.toContain('trigger');
    expect(sentTypes).not.toContain('waitForTrigger');
  });

  it('disinfects with a robot without waitForTrigger: the UV starts only after "area clear"', () => {
    const now = clock();
    const fleet = createFleet({ map: hospitalMap(), newTaskId, policy: { parkIdleRobots: false } });
    const uv = new StepRobot('UV-9', 'C1', 90, ['disinfect']);
    bringOnline(fleet, [uv], now);
    const { task, effects } = fleet.submitTask({ type: 'disinfection', zone: 'gate-2-area', durationS: 10 }, 'guard', now());
    deliver(effects, [uv]);
    run(fleet, [uv], now, () => fleet.task(task.id)!.awaiting === 'area-clear');
    expect(fleet.task(task.id)!.awaiting).toBe('area-clear');
    expect(uv.actions.filter((a) => a.actionType === 'disinfect')).toEqual([]);
    deliver(fleet.confirmTask(task.id, 'area-clear', 'guard-2', now()).effects, [uv]);
    run(fleet, [uv], now, () => fleet.task(task.id)!.status === 'completed');
    expect(fleet.task(task.id)!.status).toBe('completed');
    expect(uv.actions.filter((a) => a.actionType === 'disinfect' && a.status === 'FINISHED')).toHaveLength(2);
  });

  it('a trigger the robot rejects lets the human confirm again instead of leaving the task underway for good', () => {
    const now = clock();
    const fleet = createFleet({ map: hospitalMap(), newTaskId, policy: { parkIdleRobots: false } });
    const r = new StepRobot('TRG-1', 'P1');
    r.rejectTriggers = 1;
    bringOnline(fleet, [r], now);
    const { task, effects } = fleet.submitTask({ type: 'delivery', from: 'PH', to: 'W3', what: 'insulin' }, 'disp', now());
    deliver(effects, [r]);
    run(fleet, [r], now, () => fleet.task(task.id)!.awaiting === 'recipient');
    deliver(fleet.confirmTask(task.id, 'recipient', 'nurse', now()).effects, [r]);
    run(fleet, [r], now, () => fleet.task(task.id)!.awaiting === 'recipient', 5);
    expect(fleet.task(task.id)!.awaiting).toBe('recipient');
    expect(fleet.task(task.id)!.history.at(-1)!.reason).toMatch(/rejected the confirmation trigger \(triggerRejected\); confirm again/);
    deliver(fleet.confirmTask(task.id, 'recipient', 'nurse', now()).effects, [r]);
    run(fleet, [r], now, () => fleet.task(task.id)!.status === 'completed');
    expect(fleet.task(task.id)!.status).toBe('completed');
  });
});

describe('dispatch rules', () => {
  const ordersIn = (published: Array<{ topic: string; payload: string }>) => published.filter((m) => m.topic.endsWith('/order'));

  it('creates at most one charge task per robot and backs off after refusals', () => {
    let t = Date.parse('2025-03-01T08:00:00Z');
    const now = () => (t += 100);
    const fleet = createFleet({ map: hospitalMap(), newTaskId, policy: { parkIdleRobots: false } });
    const low = new StepRobot('LOW-1', 'P1', 15);
    low.refuseOrders = true;
    bringOnline(fleet, [low], now);
    const published: Array<{ topic: string; payload: string }> = [];
    // 17 s of states every 100 ms and a tick every second.
    for (let i = 0; i < 170; i++) {
      published.push(...deliver(fleet.handleMessage(...low.state(now()), t), [low]));
      if (i % 10 === 0) published.push(...deliver(fleet.tick(t), [low]));
    }
    const charges = fleet.tasks().filter((x) => x.type === 'charge');
    expect(charges).toHaveLength(1);
    const orders = ordersIn(published).map((m) => JSON.parse(m.payload).timestamp as string);
    expect(orders.length).toBeGreaterThanOrEqual(2);
    expect(orders.length).toBeLessThanOrEqual(3);
    // The second order came seconds after the first refusal, not within 100 ms.
    expect(Date.parse(orders[1]!) - Date.parse(orders[0]!)).toBeGreaterThanOrEqual(5_000);
  });

  it('sends stopCharging before new work to a charging robot, and the order once it stopped', () => {
    const now = clock();
    const fleet = createFleet({ map: hospitalMap(), newTaskId, policy: { parkIdleRobots: false } });
    const r = new StepRobot('CHG-1', 'CH1', 80);
    r.charging = true;
    bringOnline(fleet, [r], now);
    const { task, effects } = fleet.submitTask({ type: 'delivery', from: 'PH', to: 'W3', what: 'insulin', confirmRecipient: false }, 'disp', now());
    const first = deliver(effects, [r]);
    expect(first.map((m) => m.topic)).toEqual(['uagv/v2/acme/CHG-1/instantActions']);
    expect(JSON.parse(first[0]!.payload).actions[0].actionType).toBe('stopCharging');
    expect(r.charging).toBe(false);
    const next = deliver(fleet.handleMessage(...r.state(now()), now()), [r]);
    expect(ordersIn(next)).toHaveLength(1);
    run(fleet, [r], now, () => fleet.task(task.id)!.status === 'completed');
    expect(fleet.task(task.id)!.status).toBe('completed');
  });

  it('sends stopCharging again while the robot still charges 10 s later, at most 3 times', () => {
    const now = clock();
    const fleet = createFleet({ map: hospitalMap(), newTaskId, policy: { parkIdleRobots: false } });
    const r = new StepRobot('CHG-2', 'CH1', 80);
    r.charging = true;
    bringOnline(fleet, [r], now);
    const { task, effects } = fleet.submitTask({ type: 'delivery', from: 'PH', to: 'W3', what: 'insulin', confirmRecipient: false }, 'disp', now());
    const stops = (publish: Array<{ topic: string; payload: string }>) =>
      publish.filter((m) => m.topic.endsWith('/instantActions') && JSON.parse(m.payload).actions[0].actionType === 'stopCharging').length;
    let sent = stops(effects.publish); // none reaches the robot: it keeps charging
    const firstStates: number[] = [];
    for (let i = 0; i < 60; i++) {
      const n = stops(fleet.handleMessage(...r.state(now()), now()).publish);
      if (n > 0) firstStates.push(i);
      sent += n;
    }
    expect(sent).toBe(4);
    // About every 10 s (one state a second here), not on every state.
    expect(firstStates.length).toBe(3);
    for (let i = 1; i < firstStates.length; i++) expect(firstStates[i]! - firstStates[i - 1]!).toBeGreaterThanOrEqual(5);
    const reasons = fleet.task(task.id)!.history.map((h) => h.reason).join('\n');
    expect(reasons).toMatch(/robot acme\/CHG-2 still charging 10 s after stopCharging: sent again \(3 of 3\); no more after this one/);
    expect(fleet.task(task.id)).toMatchObject({ status: 'assigned', robot: 'acme/CHG-2', attempts: 0 });
    // Once it stops, the order goes out.
    r.charging = false;
    expect(ordersIn(deliver(fleet.handleMessage(...r.state(now()), now()), [r]))).toHaveLength(1);
  });

  it('starts the order after a cancel mid-edge at the robot\'s position (allowedDeviationXY, §6.6.3.1)', () => {
    const now = clock();
    const fleet = createFleet({ map: hospitalMap(), newTaskId, policy: { parkIdleRobots: false } });
    const r = new StepRobot('MID-1', 'C1');
    r.position = { x: 16, y: 0 }; // stopped 6 m past C1 on the way to C2
    bringOnline(fleet, [r], now);
    const { effects } = fleet.submitTask({ type: 'delivery', from: 'PH', to: 'W3', what: 'insulin', confirmRecipient: false }, 'disp', now());
    const [order] = ordersIn(deliver(effects, [r]));
    const firstNode = (JSON.parse(order!.payload) as Vda5050Order).nodes[0]!;
    expect(firstNode.nodeId).toBe('C1');
    expect(firstNode.nodePosition!.allowedDeviationXY).toBeGreaterThanOrEqual(6);
  });

  it('sends no cancelOrder to a robot that does not show the cancelled order, but cancels it if it shows up', () => {
    const now = clock();
    const fleet = createFleet({ map: hospitalMap(), newTaskId, policy: { parkIdleRobots: false } });
    const r = new StepRobot('IDL-1', 'P1');
    bringOnline(fleet, [r], now);
    const { task, effects } = fleet.submitTask({ type: 'delivery', from: 'PH', to: 'W3', what: 'insulin' }, 'disp', now());
    const [order] = ordersIn(effects.publish); // not delivered yet (in flight)
    const cancelled = fleet.cancelTask(task.id, 'disp', now()).effects.publish;
    expect(cancelled.filter((m) => m.topic.endsWith('/instantActions'))).toEqual([]);
    // The order arrives late and the robot starts it: now it is cancelled.
    r.receive(order!.topic, order!.payload);
    r.step();
    const later = fleet.handleMessage(...r.state(now()), now()).publish;
    expect(later.filter((m) => m.topic.endsWith('/instantActions')).map((m) => JSON.parse(m.payload).actions[0].actionType)).toEqual(['cancelOrder']);
  });
});

describe('wire check', () => {
  it('pauses and resumes a robot mid-task: startPause/stopPause, no new work while paused, the order continues after', () => {
    const now = clock();
    const fleet = createFleet({ map: hospitalMap(), newTaskId, policy: { parkIdleRobots: false } });
    const bot = new StepRobot('PAU-1', 'P1', 90, ['pick', 'drop', 'startPause', 'stopPause']);
    const other = new StepRobot('PAU-2', 'P2', 90, ['pick', 'drop']);
    bringOnline(fleet, [bot], now);
    const { task, effects } = fleet.submitTask({ type: 'delivery', from: 'PH', to: 'W3', what: 'insulin', confirmRecipient: false }, 'disp', now());
    deliver(effects, [bot]);
    run(fleet, [bot], now, () => bot.lastNodeId === 'PH');
    const paused = deliver(fleet.setPaused(bot.key, true, 'disp', now()).effects, [bot]);
    expect(paused.map((m) => [m.topic.split('/').pop(), JSON.parse(m.payload).actions[0].actionType])).toEqual([['instantActions', 'startPause']]);
    run(fleet, [bot], now, () => false, 5);
    expect(fleet.robot(bot.key)).toMatchObject({ paused: true, driving: false, lastNodeId: 'PH' });
    expect(fleet.task(task.id)!.history.some((h) => /startPause sent to acme\/PAU-1 by disp/.test(h.reason))).toBe(true);
    // No new work for a paused robot: a second task waits, and says why.
    const second = fleet.submitTask({ type: 'delivery', from: 'PH', to: 'W3', what: 'gauze', confirmRecipient: false }, 'disp', now()).task;
    expect(fleet.task(second.id)!.status).toBe('queued');
    // Clear errors: unknown robot, a robot not ONLINE, a robot whose factsheet lacks the action.
    expect(() => fleet.setPaused('acme/NOPE', true, 'disp', now())).toThrow(/no robot acme\/NOPE/);
    bringOnline(fleet, [other], now);
    expect(() => fleet.setPaused(other.key, true, 'disp', now())).toThrow(/does not declare startPause in its factsheet/);
    fleet.handleMessage(...other.connection('OFFLINE', now()), now());
    expect(() => fleet.setPaused(other.key, false, 'disp', now())).toThrow(/is OFFLINE: cannot send stopPause/);
    // Resume: the same order runs to the end.
    deliver(fleet.setPaused(bot.key, false, 'disp', now()).effects, [bot]);
    run(fleet, [bot], now, () => fleet.task(task.id)!.status === 'completed');
    expect(fleet.task(task.id)).toMatchObject({ status: 'completed', attempts: 1 });
    expect(bot.paused).toBe(false);
  });

  it('sends startPause again while the robot does not show it paused, at most 3 times; stopPause likewise', () => {
    const now = clock();
    const fleet = createFleet({ map: hospitalMap(), newTaskId, policy: { parkIdleRobots: false } });
    const bot = new StepRobot('PAU-3', 'P1', 90, ['pick', 'drop', 'startPause', 'stopPause']);
    bringOnline(fleet, [bot], now);
    const { task, effects } = fleet.submitTask({ type: 'delivery', from: 'PH', to: 'W3', what: 'insulin', confirmRecipient: false }, 'disp', now());
    deliver(effects, [bot]);
    const pauses = (publish: Array<{ topic: string; payload: string }>, type: string) =>
      publish.filter((m) => m.topic.endsWith('/instantActions') && JSON.parse(m.payload).actions[0].actionType === type);
    // The first startPause is lost on the way (QoS 0 to the robot): the robot drives on.
    expect(pauses(fleet.setPaused(bot.key, true, 'disp', now()).effects.publish, 'startPause')).toHaveLength(1);
    const resent: number[] = [];
    for (let i = 0; i < 15 && resent.length === 0; i++) {
      bot.step();
      fleet.handleMessage(...bot.state(now()), now());
      const again = pauses(fleet.tick(now()).publish, 'startPause');
      if (again.length > 0) resent.push(i);
      for (const m of again) bot.receive(m.topic, m.payload);
    }
    // About 10 s later (two clock reads per round here), not on every tick; this one arrives.
    expect(resent).toHaveLength(1);
    expect(resent[0]).toBeGreaterThanOrEqual(3);
    run(fleet, [bot], now, () => false, 3);
    expect(fleet.robot(bot.key)).toMatchObject({ paused: true, driving: false });
    expect(fleet.task(task.id)!.history.map((h) => h.reason).join('\n')).toMatch(/robot acme\/PAU-3 has not shown startPause for 10 s: sent again \(1 of 3\)/);
    // Shown: no more resends.
    let more = 0;
    for (let i = 0; i < 30; i++) more += pauses(fleet.tick(now()).publish, 'startPause').length;
    expect(more).toBe(0);
    // Every stopPause lost: sent 4 times in all, then the history says to check the robot.
    let stops = pauses(fleet.setPaused(bot.key, false, 'disp', now()).effects.publish, 'stopPause').length;
    for (let i = 0; i < 60; i++) {
      fleet.handleMessage(...bot.state(now()), now());
      stops += pauses(fleet.tick(now()).publish, 'stopPause').length;
    }
    expect(stops).toBe(4);
    expect(fleet.task(task.id)!.history.map((h) => h.reason).join('\n')).toMatch(/robot acme\/PAU-3 did not show stopPause after 3 resends; check it at the robot/);
    expect(bot.paused).toBe(true);
  });

  it('checked every message of the tests above against the official schemas', () => {
    for (const kind of ['order', 'instantActions', 'state', 'connection', 'factsheet']) expect(checkedCount[kind] ?? 0).toBeGreaterThan(0);
  });
});

describe('reconnects and last wills', () => {
  it('re-queues the task of a robot whose last will (timestamped at connect, long ago) arrives, and waits for a fresh state after it reconnects', () => {
    let t = Date.parse('2025-03-01T08:00:00Z');
    const now = () => (t += 1000);
    // No grace for a broken link here (fleet-core.test.ts covers it): the will alone re-queues.
    const fleet = createFleet({ map: hospitalMap(), newTaskId, policy: { parkIdleRobots: false }, linkLossGraceS: 0 });
    const r = new StepRobot('WILL-1', 'P1');
    // The will is composed at connect time, just before ONLINE.
    const will = r.connection('CONNECTIONBROKEN', now());
    bringOnline(fleet, [r], now);
    t += 3_600_000; // an hour of work later
    const { task, effects } = fleet.submitTask({ type: 'delivery', from: 'PH', to: 'W3', what: 'insulin' }, 'disp', now());
    deliver(effects, [r]);
    run(fleet, [r], now, () => fleet.task(task.id)!.status === 'underway');
    deliver(fleet.handleMessage(...will, now()), [r]);
    expect(fleet.robot(r.key)!.connection).toBe('CONNECTIONBROKEN');
    expect(fleet.task(task.id)!.status).toBe('queued');
    // Back online: the state stored before the crash is not used to dispatch.
    r.nodes = [];
    r.edges = [];
    r.actions = [];
    r.lastNodeId = 'C2';
    const back = deliver(fleet.handleMessage(...r.connection('ONLINE', now()), now()), [r]);
    expect(back.filter((m) => m.topic.endsWith('/order'))).toEqual([]);
    expect(fleet.task(task.id)!.status).toBe('queued');
    const fresh = deliver(fleet.handleMessage(...r.state(now()), now()), [r]);
    const orders = fresh.filter((m) => m.topic.endsWith('/order'));
    expect(orders).toHaveLength(1);
    expect((JSON.parse(orders[0]!.payload) as Vda5050Order).nodes[0]!.nodeId).toBe('C2');
  });
});
