/**
 * VDA 5050 conformance of the master control towards robots we did not write (issue 19): the
 * protocol version the robot speaks, factsheetRequest, standard actions and parameters,
 * confirmations without custom instant actions, and the dispatch rules around refusals,
 * charging, cancellation, reconnects and last wills.
 */
import { describe, expect, it } from 'vitest';
import { createFleet } from '../src/fleet/index.js';
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
