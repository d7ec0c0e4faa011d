/**
 * Tasks: what operators (or rules) ask robots to do, each an explicit state machine
 *
 *   queued → assigned → underway → completed | failed | cancelled
 *              ↘ queued (robot lost before/while working: re-queued, or failed after N tries)
 *
 * Every transition appends a history entry with its reason, so the operator sees why a task was
 * re-queued or failed. Functions here are pure: they return a new task or throw.
 */
import { Type, type Static } from '@sinclair/typebox';
import { compileValidator } from '@checkpoint/protocol';
import type { SiteMap } from './map.js';
import type { OrderPlan } from './orders.js';
import type { RobotKey } from './registry.js';

const closed = { additionalProperties: false } as const;
const NodeRef = Type.String({ minLength: 1, maxLength: 64 });
const common = {
  /** 0..100, higher is more urgent; >= policy.urgentPriority is dispatched greedily at once. */
  priority: Type.Optional(Type.Integer({ minimum: 0, maximum: 100 })),
  deadline: Type.Optional(Type.String({ pattern: '^\\d{4}-\\d{2}-\\d{2}T', maxLength: 40 })),
  /** Only this robot (manufacturer/serialNumber) may do it. */
  robot: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9_.-]{1,64}/[A-Za-z0-9_.-]{1,64}$' })),
  maxAttempts: Type.Optional(Type.Integer({ minimum: 1, maximum: 10 })),
  note: Type.Optional(Type.String({ maxLength: 500 })),
};

export const TaskRequestSchema = Type.Union([
  Type.Object(
    {
      type: Type.Literal('delivery'),
      from: NodeRef,
      to: NodeRef,
      what: Type.String({ minLength: 1, maxLength: 200 }),
      recipient: Type.Optional(Type.String({ maxLength: 200 })),
      /** The robot waits at `to` until someone confirms receipt (default true). */
      confirmRecipient: Type.Optional(Type.Boolean()),
      ...common,
    },
    closed,
  ),
  Type.Object(
    {
      type: Type.Literal('disinfection'),
      zone: Type.Optional(NodeRef),
      node: Type.Optional(NodeRef),
      /** UV/spray time per node. */
      durationS: Type.Optional(Type.Number({ minimum: 1, maximum: 3600 })),
      ...common,
    },
    closed,
  ),
  Type.Object(
    {
      type: Type.Literal('patrol'),
      nodes: Type.Array(NodeRef, { minItems: 1, maxItems: 100 }),
      repeat: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })),
      ...common,
    },
    closed,
  ),
  Type.Object({ type: Type.Literal('charge'), charger: Type.Optional(NodeRef), ...common }, closed),
]);
export type TaskRequest = Static<typeof TaskRequestSchema>;
export type TaskType = TaskRequest['type'];

export type TaskStatus = 'queued' | 'assigned' | 'underway' | 'completed' | 'failed' | 'cancelled';
export const TERMINAL: ReadonlySet<TaskStatus> = new Set(['completed', 'failed', 'cancelled']);

/** What a human confirms: the area is clear of people (disinfection) or the recipient has the goods. */
export type ConfirmationKind = 'area-clear' | 'recipient';

export interface HistoryEntry {
  at: string;
  status: TaskStatus;
  reason: string;
  robot?: RobotKey;
}

export interface TaskProgress {
  nodesDone: number;
  nodesTotal: number;
  lastNodeId: string | null;
  /** actionId → VDA 5050 actionStatus */
  actions: Record<string, string>;
}

export interface Task {
  id: string;
  type: TaskType;
  status: TaskStatus;
  priority: number;
  deadline: string | null;
  /** The validated request, with a disinfection's zone resolved to its nodes. */
  spec: TaskRequest & { targetNodes: string[] };
  createdAt: string;
  updatedAt: string;
  requestedBy: string | null;
  /** Set when a rule created the task. */
  alertId: string | null;
  ruleId: string | null;
  pinnedRobot: RobotKey | null;
  robot: RobotKey | null;
  orderId: string | null;
  /** Assignments so far (the current one included). */
  attempts: number;
  maxAttempts: number;
  /** The robot is waiting at a waitForTrigger action for this confirmation. */
  awaiting: ConfirmationKind | null;
  confirmations: Array<{ kind: ConfirmationKind; by: string; at: string }>;
  progress: TaskProgress | null;
  history: HistoryEntry[];
  /**
   * The order the robot runs for this task, as the master last sent it: a gateway that takes the
   * fleet over adopts it (same order id, order updates continued) instead of sending a new one.
   * Absent while no order is out.
   */
  running?: RunningOrder;
}

export interface RunningOrder {
  plan: OrderPlan;
  /** Waiting action ids (or the hold id) already confirmed. */
  triggered: string[];
  /** Since when (ms) the robot waits for a confirmation; null when it does not. */
  waitingSince: number | null;
  /** The robot's header ids (order, instantActions) next to use, so that they keep increasing across a hand-over. */
  headerIds: { order: number; instantActions: number };
  /** Confirmation `trigger`s sent and not yet seen through: whoever leads next sends a lost one again. */
  triggersSent?: Array<{ triggerId: string; waitingId: string; sentAt: number; resends: number }>;
}

export class TaskRequestError extends Error {
  constructor(readonly issues: string[]) {
    super(`invalid task request: ${issues.join('; ')}`);
    this.name = 'TaskRequestError';
  }
}

export class TaskStateError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TaskStateError';
  }
}

const requestValidator = compileValidator(TaskRequestSchema);

/** Schema check, then the map: every node and zone must exist. Throws TaskRequestError. */
export function parseTaskRequest(body: unknown, map: SiteMap): TaskRequest & { targetNodes: string[] } {
  if (!requestValidator.check(body)) {
    throw new TaskRequestError(requestValidator.explain(body).map((e) => `${e.path || '/'}: ${e.message}`));
  }
  const issues: string[] = [];
  const known = (path: string, id: string) => {
    if (!map.nodes.has(id)) issues.push(`${path}: unknown node "${id}"`);
  };
  let targetNodes: string[] = [];
  switch (body.type) {
    case 'delivery':
      known('/from', body.from);
      known('/to', body.to);
      targetNodes = [body.from, body.to];
      break;
    case 'disinfection':
      if ((body.zone === undefined) === (body.node === undefined)) {
        issues.push('/: give exactly one of zone or node');
      } else if (body.zone !== undefined) {
        const zone = map.zones.get(body.zone);
        if (!zone) issues.push(`/zone: unknown zone "${body.zone}"`);
        else targetNodes = [...zone.nodes];
      } else {
        known('/node', body.node!);
        targetNodes = [body.node!];
      }
      break;
    case 'patrol':
      body.nodes.forEach((n, i) => known(`/nodes/${i}`, n));
      targetNodes = [...body.nodes];
      break;
    case 'charge':
      if (body.charger !== undefined) {
        known('/charger', body.charger);
        if (map.nodes.get(body.charger) && map.node(body.charger).kind !== 'charger') {
          issues.push(`/charger: node "${body.charger}" is a ${map.node(body.charger).kind}, not a charger`);
        }
        targetNodes = [body.charger];
      }
      break;
  }
  if (body.deadline !== undefined && Number.isNaN(Date.parse(body.deadline))) issues.push(`/deadline: not a date "${body.deadline}"`);
  if (issues.length > 0) throw new TaskRequestError(issues);
  return { ...body, targetNodes };
}

export interface NewTaskOptions {
  id: string;
  now: Date;
  requestedBy?: string | null;
  alertId?: string | null;
  ruleId?: string | null;
  defaultMaxAttempts?: number;
}

export function newTask(spec: TaskRequest & { targetNodes: string[] }, o: NewTaskOptions): Task {
  const at = o.now.toISOString();
  const origin = o.ruleId ? `created by rule ${o.ruleId} for alert ${o.alertId}` : `requested by ${o.requestedBy ?? 'unknown'}`;
  return {
    id: o.id,
    type: spec.type,
    status: 'queued',
    priority: spec.priority ?? 50,
    deadline: spec.deadline ?? null,
    spec,
    createdAt: at,
    updatedAt: at,
    requestedBy: o.requestedBy ?? null,
    alertId: o.alertId ?? null,
    ruleId: o.ruleId ?? null,
    pinnedRobot: spec.robot ?? null,
    robot: null,
    orderId: null,
    attempts: 0,
    maxAttempts: spec.maxAttempts ?? o.defaultMaxAttempts ?? 3,
    awaiting: null,
    confirmations: [],
    progress: null,
    history: [{ at, status: 'queued', reason: origin }],
  };
}

const ALLOWED: Record<TaskStatus, readonly TaskStatus[]> = {
  queued: ['assigned', 'cancelled', 'failed'],
  assigned: ['underway', 'queued', 'cancelled', 'failed', 'completed'],
  underway: ['completed', 'failed', 'cancelled', 'queued'],
  completed: [],
  failed: [],
  cancelled: [],
};

/** Moves a task to `to`, or throws TaskStateError naming the illegal move. */
export function transition(task: Task, to: TaskStatus, reason: string, now: Date, patch: Partial<Task> = {}): Task {
  if (!ALLOWED[task.status].includes(to)) {
    throw new TaskStateError(`task ${task.id} cannot go from ${task.status} to ${to}`);
  }
  const at = now.toISOString();
  const robot = patch.robot ?? task.robot;
  const leavingRobot = to === 'queued' || TERMINAL.has(to);
  return {
    ...task,
    ...patch,
    status: to,
    updatedAt: at,
    awaiting: leavingRobot ? null : (patch.awaiting ?? task.awaiting),
    ...(to === 'queued' ? { robot: null, orderId: null, progress: null } : {}),
    history: [...task.history, { at, status: to, reason, ...(robot ? { robot } : {}) }],
  };
}

/**
 * The robot lost its link or reported a fatal error mid-task: re-queue it, or fail it when it
 * has used up its attempts.
 */
export function requeueOrFail(task: Task, why: string, now: Date): Task {
  if (task.attempts >= task.maxAttempts) {
    return transition(task, 'failed', `${why}; gave up after ${task.attempts} of ${task.maxAttempts} attempts`, now);
  }
  return transition(task, 'queued', `${why}; re-queued (attempt ${task.attempts} of ${task.maxAttempts} used)`, now);
}

/** Records a human confirmation; only accepted while the robot waits for exactly that. */
export function confirm(task: Task, kind: ConfirmationKind, by: string, now: Date): Task {
  if (TERMINAL.has(task.status)) throw new TaskStateError(`task ${task.id} is ${task.status}`);
  const expected: ConfirmationKind | null = task.type === 'disinfection' ? 'area-clear' : task.type === 'delivery' ? 'recipient' : null;
  if (expected !== kind) throw new TaskStateError(`a ${task.type} task takes no ${kind} confirmation`);
  if (task.awaiting !== kind) {
    const where = task.robot ? `robot ${task.robot} has not reached the waiting point yet` : 'no robot is on it yet';
    throw new TaskStateError(`task ${task.id} is not waiting for ${kind} (status ${task.status}; ${where})`);
  }
  const at = now.toISOString();
  return {
    ...task,
    awaiting: null,
    updatedAt: at,
    confirmations: [...task.confirmations, { kind, by, at }],
    history: [...task.history, { at, status: task.status, reason: `${kind} confirmed by ${by}`, ...(task.robot ? { robot: task.robot } : {}) }],
  };
}

/** A history entry that does not change the status (e.g. "waiting for area-clear"). */
export function note(task: Task, reason: string, now: Date, patch: Partial<Task> = {}): Task {
  const at = now.toISOString();
  return {
    ...task,
    ...patch,
    updatedAt: at,
    history: [...task.history, { at, status: task.status, reason, ...(task.robot ? { robot: task.robot } : {}) }],
  };
}
