/**
 * The dispatch board's audible reminder (pure): a task that has waited longer than a threshold
 * for a person's confirmation ("area is clear", "received") chimes, under the guard screen's
 * sound policy (`soundDue`): at once when a task first passes the threshold, then — for
 * "repeat" — every interval while any task is still over it; "once" chimes only for a task newly
 * over, "off" never.
 */
import { soundDue, type SoundPolicy } from './model.js';

/** Thresholds offered on the board, in minutes; the issue asks that 8 min not go unnoticed. */
export const REMIND_AFTER_MIN = [3, 5, 8, 10, 15] as const;
export const DEFAULT_REMIND_AFTER_MIN = 8;

export interface WaitingTask {
  id: string;
  /** When the robot started waiting for the confirmation (epoch ms). */
  sinceMs: number;
}

/** Ids of the tasks that have waited `thresholdMs` or longer, longest wait first. */
export function overdueTasks(waiting: readonly WaitingTask[], nowMs: number, thresholdMs: number): string[] {
  return waiting
    .filter((w) => nowMs - w.sinceMs >= thresholdMs)
    .sort((a, b) => a.sinceMs - b.sinceMs)
    .map((w) => w.id);
}

export interface ReminderInput {
  policy: SoundPolicy;
  intervalMs: number;
  nowMs: number;
  lastSoundMs: number | null;
  /** Tasks over the threshold now. */
  overdue: readonly string[];
  /** Tasks already announced while over the threshold (the previous call's `announced`). */
  announced: ReadonlySet<string>;
}

/**
 * Whether to chime now, and the tasks announced so far. A task that leaves the list (confirmed,
 * cancelled) is forgotten, so waiting again later (its next stop) is announced again.
 */
export function reminderDue(input: ReminderInput): { sound: 'chime' | null; announced: Set<string> } {
  const { policy, intervalMs, nowMs, lastSoundMs, overdue, announced } = input;
  const newlyOverdue = overdue.some((id) => !announced.has(id));
  const sound = soundDue({ policy, intervalMs, nowMs, lastSoundMs, newPerson: newlyOverdue, newProblem: false, waiting: overdue.length, alarm: false });
  return { sound: sound === 'chime' ? 'chime' : null, announced: new Set(overdue) };
}

/** The board's reminder state, exposed on the page (`data-reminder`): nothing over, sounding, or silenced. */
export function reminderState(overdueCount: number, policy: SoundPolicy): 'none' | 'sounding' | 'silenced' {
  if (overdueCount === 0) return 'none';
  return policy === 'off' ? 'silenced' : 'sounding';
}

/** A stored threshold (minutes), or the default when missing or not one of the offered values. */
export function parseRemindAfter(stored: string | null): number {
  const n = Number(stored);
  return (REMIND_AFTER_MIN as readonly number[]).includes(n) ? n : DEFAULT_REMIND_AFTER_MIN;
}
