import { describe, expect, it } from 'vitest';
import { validateVda5050 } from '@checkpoint/protocol';
import {
  buildOrder,
  confirm,
  newTask,
  nextPatrolUpdate,
  orderMessage,
  parseTaskRequest,
  requeueOrFail,
  TaskRequestError,
  TaskStateError,
  transition,
} from '../src/fleet/index.js';
import { hospitalMap } from './fleet-fixtures.js';

const map = hospitalMap();
const now = new Date('2025-03-01T08:00:00Z');
const make = (body: unknown) => newTask(parseTaskRequest(body, map), { id: 'T1', now, requestedBy: 'dispatcher-1' });

describe('task requests', () => {
  it('rejects unknown nodes and zones with the field that names them', () => {
    expect(() => parseTaskRequest({ type: 'delivery', from: 'PH', to: 'ward-99', what: 'insulin' }, map)).toThrow(
      /\/to: unknown node "ward-99"/,
    );
    expect(() => parseTaskRequest({ type: 'disinfection', zone: 'moon' }, map)).toThrow(/\/zone: unknown zone "moon"/);
    expect(() => parseTaskRequest({ type: 'disinfection', zone: 'gate-2-area', node: 'G2' }, map)).toThrow(/exactly one of zone or node/);
    expect(() => parseTaskRequest({ type: 'charge', charger: 'PH' }, map)).toThrow(/is a pharmacy, not a charger/);
    expect(() => parseTaskRequest({ type: 'teleport' }, map)).toThrow(TaskRequestError);
    expect(() => parseTaskRequest({ type: 'patrol', nodes: ['C1'], repeat: 0 }, map)).toThrow(/\/repeat/);
  });

  it('resolves a zone to its nodes', () => {
    expect(parseTaskRequest({ type: 'disinfection', zone: 'gate-2-area' }, map).targetNodes).toEqual(['G2', 'G2b']);
  });
});

describe('task state machine', () => {
  it('walks queued → assigned → underway → completed with reasons in its history', () => {
    let t = make({ type: 'delivery', from: 'PH', to: 'W3', what: 'insulin' });
    t = transition(t, 'assigned', 'assigned to acme/1', now, { robot: 'acme/1' });
    t = transition(t, 'underway', 'robot took the order', now);
    t = transition(t, 'completed', 'done', now);
    expect(t.history.map((h) => [h.status, h.reason])).toEqual([
      ['queued', 'requested by dispatcher-1'],
      ['assigned', 'assigned to acme/1'],
      ['underway', 'robot took the order'],
      ['completed', 'done'],
    ]);
    expect(() => transition(t, 'underway', 'again', now)).toThrow(TaskStateError);
    expect(() => transition(make({ type: 'charge' }), 'underway', 'skip', now)).toThrow(/cannot go from queued to underway/);
  });

  it('re-queues a task whose robot was lost, and fails it after maxAttempts', () => {
    let t = make({ type: 'patrol', nodes: ['C1', 'C2'], maxAttempts: 2 });
    t = transition(t, 'assigned', 'a', now, { robot: 'acme/1', attempts: 1 });
    t = requeueOrFail(t, 'robot acme/1 is CONNECTIONBROKEN mid-task', now);
    expect(t).toMatchObject({ status: 'queued', robot: null });
    expect(t.history.at(-1)!.reason).toBe('robot acme/1 is CONNECTIONBROKEN mid-task; re-queued (attempt 1 of 2 used)');
    t = transition(t, 'assigned', 'b', now, { robot: 'acme/2', attempts: 2 });
    t = requeueOrFail(t, 'robot acme/2 reported fatal error motorFault mid-task', now);
    expect(t.status).toBe('failed');
    expect(t.history.at(-1)!.reason).toMatch(/gave up after 2 of 2 attempts/);
  });

  it('takes a confirmation only while the robot waits for it', () => {
    let t = make({ type: 'disinfection', node: 'G2' });
    expect(() => confirm(t, 'area-clear', 'guard', now)).toThrow(/not waiting for area-clear/);
    expect(() => confirm(t, 'recipient', 'guard', now)).toThrow(/a disinfection task takes no recipient confirmation/);
    t = transition(t, 'assigned', 'a', now, { robot: 'acme/1', awaiting: 'area-clear' });
    t = confirm(t, 'area-clear', 'guard-7', now);
    expect(t.awaiting).toBeNull();
    expect(t.confirmations).toEqual([{ kind: 'area-clear', by: 'guard-7', at: now.toISOString() }]);
  });
});

describe('orders', () => {
  it('builds a valid VDA 5050 delivery order: pick at the pharmacy, wait for the recipient, drop', () => {
    const t = make({ type: 'delivery', from: 'PH', to: 'W3', what: 'insulin' });
    const plan = buildOrder(t, map, 'P1', { orderId: 'T1-1', speed: 1, disinfectDurationS: 600 });
    const msg = orderMessage(plan, { manufacturer: 'acme', serialNumber: 'AMR-1' }, 0, now);
    expect(validateVda5050('order', msg)).toMatchObject({ ok: true });
    expect(msg.nodes.map((n) => n.nodeId)).toEqual(['P1', 'C1', 'PH', 'C1', 'C2', 'W3']);
    expect(msg.nodes.map((n) => n.actions.map((a) => a.actionType))).toEqual([[], [], ['pick'], [], [], ['waitForTrigger', 'drop']]);
    expect(Object.values(plan.triggers)).toEqual(['recipient']);
  });

  it('disinfects a zone nearest-first, waiting for "area clear" before the first UV action', () => {
    const t = make({ type: 'disinfection', zone: 'gate-2-area', durationS: 120 });
    const plan = buildOrder(t, map, 'C1', { orderId: 'T1-1', speed: 1, disinfectDurationS: 600 });
    expect(plan.actions.map((a) => a.actionType)).toEqual(['waitForTrigger', 'disinfect', 'disinfect']);
    expect(plan.nodes.filter((n) => n.actions.length > 0).map((n) => n.nodeId)).toEqual(['G2', 'G2b']);
    expect(plan.nodes.find((n) => n.nodeId === 'G2')!.actions[1]!.actionParameters).toEqual([{ key: 'durationS', value: 120 }]);
  });

  it('sends patrol rounds as order updates stitched at the last base node', () => {
    const t = make({ type: 'patrol', nodes: ['C1', 'C2'], repeat: 2 });
    const first = buildOrder(t, map, 'P1', { orderId: 'T1-1', speed: 1, disinfectDurationS: 600 });
    expect(first.nodes.map((n) => n.nodeId)).toEqual(['P1', 'C1', 'C2', 'C1']);
    const update = nextPatrolUpdate(first, map, 1)!;
    expect(update.orderUpdateId).toBe(1);
    expect(update.nodes[0]).toEqual({ ...first.nodes.at(-1)!, actions: [] });
    expect(update.nodes.map((n) => n.sequenceId)).toEqual([6, 8, 10]);
    const msg = orderMessage(update, { manufacturer: 'acme', serialNumber: 'AMR-1' }, 1, now);
    expect(validateVda5050('order', msg)).toMatchObject({ ok: true });
    expect(nextPatrolUpdate(update, map, 1)).toBeNull();
  });
});
