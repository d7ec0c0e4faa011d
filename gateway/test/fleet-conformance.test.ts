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
