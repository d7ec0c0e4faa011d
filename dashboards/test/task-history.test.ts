/** Task history and robot errors told from what they are (kind + parameters), never from their free text. */
import { describe, expect, it } from 'vitest';
import { en } from '../src/i18n/en.js';
import { zhCN } from '../src/i18n/zh-CN.js';
import { translate } from '../src/i18n/index.js';
import { KNOWN_ERROR_TYPES, robotErrors, taskHistory } from '../src/task-history.js';
import type { Task } from '../src/fleet.js';

const t0 = '2026-12-02T10:00:00.000Z';
const at = (s: number) => new Date(Date.parse(t0) + s * 1000).toISOString();

const task: Pick<Task, 'history' | 'createdAt' | 'alertId' | 'requestedBy' | 'confirmations'> = {
  createdAt: t0,
  requestedBy: 'dispatcher',
  alertId: null,
  history: [
    { at: t0, status: 'queued', reason: 'requested by dispatcher' },
    { at: at(1), status: 'queued', reason: 'not assigned: no robot available' },
    { at: at(2), status: 'assigned', reason: 'assigned to checkpoint/DEL-1 (greedy, done in ~343 s)', robotId: 'checkpoint/DEL-1' },
    { at: at(3), status: 'assigned', reason: 'order t1-1 sent (6 nodes)', robotId: 'checkpoint/DEL-1' },
    { at: at(4), status: 'underway', reason: 'robot checkpoint/DEL-1 took order t1-1', robotId: 'checkpoint/DEL-1' },
    { at: at(5), status: 'queued', reason: 'robot checkpoint/DEL-1 lost its connection mid-task; re-queued (attempt 1 of 3 used)' },
    { at: at(6), status: 'assigned', reason: 'assigned to checkpoint/DEL-2 (greedy, done in ~120 s)', robotId: 'checkpoint/DEL-2' },
    { at: at(7), status: 'underway', reason: 'robot checkpoint/DEL-2 took order t1-2', robotId: 'checkpoint/DEL-2' },
    { at: at(9), status: 'completed', reason: 'robot checkpoint/DEL-2 finished order t1-2.recipient', robotId: 'checkpoint/DEL-2' },
  ],
  confirmations: [{ kind: 'received', by: 'nurse', at: at(8) }],
};

describe('task history', () => {
  it('tells creation, every change of status with its robot, and confirmations, in time order; notes stay out', () => {
    expect(taskHistory(task).map((e) => [e.at, e.kind, e.params])).toEqual([
      [t0, 'created_by', { by: 'dispatcher' }],
      [at(2), 'assigned', { robot: 'DEL-1' }],
      [at(4), 'underway', { robot: 'DEL-1' }],
      [at(5), 'requeued', { robot: '' }],
      [at(6), 'assigned', { robot: 'DEL-2' }],
      [at(7), 'underway', { robot: 'DEL-2' }],
      [at(8), 'confirmed_received', { by: 'nurse' }],
      [at(9), 'completed', { robot: 'DEL-2' }],
    ]);
  });

  it("keeps the gateway's own words only where they say why (re-queued, failed, cancelled), untouched", () => {
    const events = taskHistory(task);
    expect(events.filter((e) => e.original).map((e) => [e.kind, e.original])).toEqual([['requeued', task.history[5]!.reason]]);
    const cancelled = taskHistory({ ...task, confirmations: [], history: [task.history[0]!, { at: at(1), status: 'cancelled', reason: 'cancelled by dispatcher: wrong ward' }] });
    expect(cancelled.at(-1)).toEqual({ at: at(1), kind: 'cancelled', params: { robot: '' }, original: 'cancelled by dispatcher: wrong ward' });
    const byRule = taskHistory({ ...task, alertId: 'a1', requestedBy: null, history: [task.history[0]!], confirmations: [] });
    expect(byRule).toEqual([{ at: t0, kind: 'created_by_rule', params: {} }]);
  });

  it('has a message for every event in both languages, with the parameters filled and no English left in Chinese', () => {
    for (const e of taskHistory(task)) {
      const zh = translate('zh-CN', `history.${e.kind}`, e.params);
      expect(zh).not.toMatch(/\{\w+\}/);
      expect(zh.replace(/DEL-\d|nurse|dispatcher/g, '')).not.toMatch(/[A-Za-z]{3,}/);
      expect(translate('en', `history.${e.kind}`, e.params)).not.toMatch(/\{\w+\}/);
    }
    expect(translate('zh-CN', 'history.assigned', { robot: 'DEL-1' })).toBe('分配给机器人 DEL-1');
  });
});

describe('robot errors', () => {
  it('labels known types and levels from the catalogue and keeps the description as the robot sent it', () => {
    const errors = robotErrors([
      { errorType: 'orderError', errorLevel: 'WARNING', errorDescription: 'still executing order o1; cancel it first' },
      { errorType: 'lidarDirty', errorLevel: 'FATAL' },
      'something odd',
    ]);
    expect(errors).toEqual([
      { known: 'orderError', type: 'orderError', level: 'WARNING', description: 'still executing order o1; cancel it first' },
      { known: null, type: 'lidarDirty', level: 'FATAL', description: null },
      { known: null, type: '', level: null, description: 'something odd' },
    ]);
    for (const type of KNOWN_ERROR_TYPES) {
      expect(en[`robotError.type.${type}`]).toBeTruthy();
      expect(zhCN[`robotError.type.${type}`]).toMatch(/[\u4e00-\u9fff]/);
    }
  });
});
