/**
 * A task's history and a robot's errors in the page's language (pure). Nothing is translated
 * from free text: a history entry is told by what it is — the task's creation, a change of status
 * (with its robot), a person's confirmation — and its parameters; the gateway's own words (why a
 * task failed or went back to the queue, a cancellation's reason) and a robot's error description
 * are kept as they are, shown apart and marked as such. Notes the gateway adds without a change of
 * status (order sent, not assigned yet) are for engineers and stay in the API.
 */
import type { Robot, Task, TaskStatus } from './fleet.js';

export type HistoryKind =
  | 'created_by'
  | 'created_by_rule'
  | 'assigned'
  | 'underway'
  | 'requeued'
  | 'completed'
  | 'failed'
  | 'cancelled'
  | 'confirmed_area_clear'
  | 'confirmed_received';

export interface HistoryEvent {
  at: string;
  kind: HistoryKind;
  /** Placeholders for the message: robot (its serial number), by (a user name). */
  params: Record<string, string>;
  /** The gateway's own words, shown as they are (never translated). */
  original?: string;
}

const STATUS_KIND: Record<Exclude<TaskStatus, 'queued'>, HistoryKind> = {
  assigned: 'assigned',
  underway: 'underway',
  completed: 'completed',
  failed: 'failed',
  cancelled: 'cancelled',
};

/** A robot id (`manufacturer/serial`) as people say it: the serial number. */
export const robotSerial = (id: string | null | undefined) => (id ? (id.split('/').pop() ?? id) : '');

/** The events of a task, oldest first. */
export function taskHistory(task: Pick<Task, 'history' | 'createdAt' | 'alertId' | 'requestedBy' | 'confirmations'>): HistoryEvent[] {
  const out: HistoryEvent[] = [];
  const first = task.history[0];
  const createdAt = task.createdAt ?? first?.at;
  if (createdAt) {
    out.push(task.alertId ? { at: createdAt, kind: 'created_by_rule', params: {} } : { at: createdAt, kind: 'created_by', params: { by: task.requestedBy ?? '—' } });
  }
  let status: TaskStatus = first?.status ?? 'queued';
  for (const h of task.history.slice(1)) {
    if (h.status === status) continue; // a note, not a change
    status = h.status;
    const params = { robot: robotSerial(h.robotId) };
    if (h.status === 'queued') out.push({ at: h.at, kind: 'requeued', params, ...(h.reason ? { original: h.reason } : {}) });
    else {
      const kind = STATUS_KIND[h.status];
      // Why it failed or was cancelled is the gateway's (or the dispatcher's) own text.
      const keep = (kind === 'failed' || kind === 'cancelled') && h.reason;
      out.push({ at: h.at, kind, params, ...(keep ? { original: h.reason } : {}) });
    }
  }
  for (const c of task.confirmations ?? []) {
    out.push({ at: c.at, kind: `confirmed_${c.kind}`, params: { by: c.by } });
  }
  // Stable: equal times keep their order (creation, then changes, then confirmations).
  return out.map((e, i) => ({ e, i })).sort((a, b) => Date.parse(a.e.at) - Date.parse(b.e.at) || a.i - b.i).map(({ e }) => e);
}

/** VDA 5050 error types (§6.10.6 and what robots commonly send) that have a label in the catalogues. */
export const KNOWN_ERROR_TYPES = ['orderError', 'orderUpdateError', 'noRouteError', 'validationError', 'batteryEmpty', 'batteryLow', 'mcuError', 'eStop'] as const;
export type KnownErrorType = (typeof KNOWN_ERROR_TYPES)[number];

export interface RobotErrorView {
  /** A known type (catalogue label), else null: show `type` as the robot sent it. */
  known: KnownErrorType | null;
  type: string;
  level: 'WARNING' | 'FATAL' | null;
  /** The robot's own description, as it sent it. */
  description: string | null;
}

export function robotErrors(errors: Robot['errors']): RobotErrorView[] {
  return errors.map((e) => {
    if (typeof e === 'string') return { known: null, type: '', level: null, description: e };
    const type = e.errorType ?? '';
    const level = e.errorLevel === 'WARNING' || e.errorLevel === 'FATAL' ? e.errorLevel : null;
    return { known: (KNOWN_ERROR_TYPES as readonly string[]).includes(type) ? (type as KnownErrorType) : null, type, level, description: e.errorDescription ?? null };
  });
}
