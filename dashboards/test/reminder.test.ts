/** The dispatch board's reminder for confirmations waiting too long (pure policy). */
import { describe, expect, it } from 'vitest';
import { DEFAULT_REMIND_AFTER_MIN, overdueTasks, parseRemindAfter, reminderDue, reminderState } from '../src/reminder.js';

const MIN = 60_000;
const T0 = Date.parse('2026-01-05T08:00:00Z');

describe('overdueTasks', () => {
  it('lists the tasks waiting the threshold or longer, longest wait first', () => {
    const waiting = [
      { id: 'short', sinceMs: T0 - 2 * MIN },
      { id: 'exact', sinceMs: T0 - 8 * MIN },
      { id: 'long', sinceMs: T0 - 20 * MIN },
    ];
    expect(overdueTasks(waiting, T0, 8 * MIN)).toEqual(['long', 'exact']);
    expect(overdueTasks(waiting, T0, 30 * MIN)).toEqual([]);
    expect(overdueTasks([], T0, 8 * MIN)).toEqual([]);
  });
});

describe('reminderDue (the guard screen\'s sound policy)', () => {
  const base = { policy: 'repeat' as const, intervalMs: 30_000, nowMs: T0, lastSoundMs: null as number | null };

  it('chimes at once when a task first passes the threshold, then every interval while one is still over', () => {
    const first = reminderDue({ ...base, overdue: ['a'], announced: new Set() });
    expect(first.sound).toBe('chime');
    expect([...first.announced]).toEqual(['a']);
    // 10 s later: already announced, interval not over.
    expect(reminderDue({ ...base, nowMs: T0 + 10_000, lastSoundMs: T0, overdue: ['a'], announced: first.announced }).sound).toBe(null);
    // 30 s later: repeated.
    expect(reminderDue({ ...base, nowMs: T0 + 30_000, lastSoundMs: T0, overdue: ['a'], announced: first.announced }).sound).toBe('chime');
    // A second task passing the threshold chimes at once, whatever the interval.
    expect(reminderDue({ ...base, nowMs: T0 + 5_000, lastSoundMs: T0, overdue: ['a', 'b'], announced: first.announced }).sound).toBe('chime');
  });

  it('is quiet with nothing over the threshold, and forgets a confirmed task so its next wait is announced again', () => {
    const none = reminderDue({ ...base, overdue: [], announced: new Set(['a']) });
    expect(none.sound).toBe(null);
    expect(none.announced.size).toBe(0);
    expect(reminderDue({ ...base, nowMs: T0 + 1000, lastSoundMs: T0, overdue: ['a'], announced: none.announced }).sound).toBe('chime');
  });

  it('"once" chimes only for a task newly over; "off" never', () => {
    const once = { ...base, policy: 'once' as const };
    expect(reminderDue({ ...once, overdue: ['a'], announced: new Set() }).sound).toBe('chime');
    expect(reminderDue({ ...once, nowMs: T0 + 10 * MIN, lastSoundMs: T0, overdue: ['a'], announced: new Set(['a']) }).sound).toBe(null);
    const off = { ...base, policy: 'off' as const };
    expect(reminderDue({ ...off, overdue: ['a'], announced: new Set() }).sound).toBe(null);
    expect(reminderDue({ ...off, nowMs: T0 + 10 * MIN, overdue: ['a', 'b'], announced: new Set(['a']) }).sound).toBe(null);
  });

  it('says on the page whether it sounds or is silenced', () => {
    expect(reminderState(0, 'repeat')).toBe('none');
    expect(reminderState(2, 'repeat')).toBe('sounding');
    expect(reminderState(1, 'once')).toBe('sounding');
    expect(reminderState(1, 'off')).toBe('silenced');
  });
});

describe('parseRemindAfter', () => {
  it('keeps an offered threshold and falls back to 8 min otherwise', () => {
    expect(parseRemindAfter('5')).toBe(5);
    expect(parseRemindAfter('15')).toBe(15);
    expect(DEFAULT_REMIND_AFTER_MIN).toBe(8);
    for (const bad of [null, '', '0', '7', 'eight', '-3']) expect(parseRemindAfter(bad)).toBe(8);
  });
});
