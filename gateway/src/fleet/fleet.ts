/**
 * The fleet core: the VDA 5050 master control without I/O. The gateway feeds it MQTT messages,
 * API calls, alert acknowledgements and a periodic tick; every call returns the effects to carry
 * out (messages to publish, tasks to store and broadcast, robot samples for the time series).
 *
 *   const fleet = createFleet({ map, rules });
 *   client.subscribe(['uagv/v2/+/+/state', 'uagv/v2/+/+/connection', 'uagv/v2/+/+/factsheet', 'uagv/v2/+/+/visualization'], { qos: 1 });
 *   client.on('message', (topic, payload) => apply(fleet.handleMessage(topic, payload)));
 *   setInterval(() => apply(fleet.tick()), 1000);
 *   POST /api/tasks            -> fleet.submitTask(body, user)         (TaskRequestError -> 400)
 *   POST /api/tasks/:id/cancel -> fleet.cancelTask(id, user)           (TaskNotFoundError -> 404, TaskStateError -> 409)
 *   POST /api/tasks/:id/confirm-> fleet.confirmTask(id, kind, user)
 *   alert acknowledged         -> fleet.alertAcknowledged({ alertId, site, checkpoint, outcome })
 *   apply(effects): publish each effects.publish (QoS 1), upsert effects.tasks, write effects.samples,
 *                   broadcast tasks/robots on /api/live, count effects.rejected by cause.
 *
 * State is in memory; tasks are restored from the store with `createFleet({ tasks })`.
 */
import { ulid } from 'ulid';
import { parseVda5050, parseVda5050Topic, vda5050Topic, vda5050VersionFor, type RobotAddress } from '@checkpoint/protocol';
import { assignTasks, DEFAULT_POLICY, type DispatchPolicy, type RobotCandidate, type TaskCandidate } from './dispatch.js';
import type { SiteMap } from './map.js';
import {
  buildContinuation,
  buildMoveOrder,
  buildOrder,
  confirmsOnRobot,
  holdId,
  startDeviation,
  cancelOrderMessage,
  instantActionMessage,
  loadPolicyFor,
  nextPatrolUpdate,
  orderMessage,
  orderProgress,
  REQUIRED_ACTIONS,
  RouteError,
  taskExtent,
  triggerMessage,
  type OrderPlan,
} from './orders.js';
import { applyRobotMessage, isIdle, robotKey, unavailableReason, type RegistryMessage, type RobotKey, type RobotRecord } from './registry.js';
import { evaluateRules, type AlertAcknowledged, type Rule } from './rules.js';
import {
  confirm,
  newTask,
  note,
  parseTaskRequest,
  requeueOrFail,
  TERMINAL,
  transition,
  type ConfirmationKind,
  type Task,
  type TaskStatus,
} from './tasks.js';

export interface OutboundMessage {
  topic: string;
  payload: string;
  qos: 1;
  retain: false;
}

/** One point for the time series per accepted state message. */
export interface RobotSample {
  robot: RobotKey;
  at: number;
  batteryPct: number;
  charging: boolean;
  driving: boolean;
  lastNodeId: string | null;
  x: number | null;
  y: number | null;
  errors: number;
  taskId: string | null;
}

export interface FleetEffects {
  publish: OutboundMessage[];
  /** Tasks that changed (full snapshots). */
  tasks: Task[];
  /** Robots whose record changed. */
  robots: RobotRecord[];
  samples: RobotSample[];
  /** Dropped input: invalid payloads, unknown topics. `cause` is stable for counting. */
  rejected: Array<{ topic: string; cause: string; message: string }>;
}

export class TaskNotFoundError extends Error {
  constructor(id: string) {
    super(`no task ${id}`);
    this.name = 'TaskNotFoundError';
  }
}

export class RobotNotFoundError extends Error {
  constructor(key: string) {
    super(`no robot ${key}`);
    this.name = 'RobotNotFoundError';
  }
}

/** A robot command that the robot's state does not allow (offline, not declaring the action). */
export class RobotStateError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RobotStateError';
  }
}

export interface FleetOptions {
  map: SiteMap;
  rules?: Rule[];
  policy?: Partial<DispatchPolicy>;
  /** Tasks from the store; ones that were in progress are re-queued (we lost their orders). */
  tasks?: Task[];
  newTaskId?: () => string;
  /** Tries per task before it fails (a task request may lower or raise it). */
  maxAttempts?: number;
  /** How long a robot waits for a confirmation before the task fails (the master handles waitForTrigger timeouts). */
  confirmTimeoutS?: number;
  /** A finished task dropped from memory by `forgetFinished` (the caller persisted it), so that cancel/confirm still answer "already finished". */
  finishedTask?: (id: string) => Task | null;
  /** Robot records from the store: a gateway taking the fleet over knows the robots before they speak again. */
  robots?: RobotRecord[];
  /**
   * What becomes of `tasks` in progress: 'requeue' (the default: this gateway restarted and its
   * orders went with it) or 'adopt' (another gateway led the fleet until now: continue the orders
   * it sent, same order id, without sending them again).
   */
  restore?: 'requeue' | 'adopt';
  /** After adopting, a robot that sends no state this long loses its task (re-queued or failed), s; default 60. */
  adoptTimeoutS?: number;
  /**
   * A robot whose link broke mid-task (its CONNECTIONBROKEN will) keeps its task this long, s,
   * default 30: robots keep driving their order while offline, and a Wi-Fi hand-over or a lift
   * should not restart a delivery under a new order. Back ONLINE in time, its first state decides:
   * still running the order, it goes on; without it (rebooted), the task is re-queued and planned
   * from where the robot stands. 0 re-queues at once. OFFLINE (a clean disconnect) and fatal
   * errors never wait.
   */
  linkLossGraceS?: number;
  /** When the fleet is created (ms): the time of restore notes and of the adoption deadline. */
  now?: number;
}

type Work =
  | {
      kind: 'task';
      taskId: string;
      plan: OrderPlan | null;
      waitingSince: number | null;
      /** Waiting action ids (or holdId) already confirmed. */
      triggered: Set<string>;
      /** `trigger` instant actions sent and not yet seen through, by trigger action id: the waiting action it ends, when it was last sent and how often again. */
      triggersSent?: Map<string, Resend & { waitingId: string }>;
      /** After a refusal: do not send the order again before this time (ms). */
      retryAt?: number;
      /** stopCharging sent before this task's order (the robot was charging): when last, and how often again. */
      stopCharging?: Resend;
      /** The order (or update) in `plan`, while the robot's state has not shown it yet. */
      unconfirmed?: Resend;
    }
  | { kind: 'move'; plan: OrderPlan; target: string };

interface RobotRuntime {
  current: Work | null;
  next: string | null;
  headerIds: { order: number; instantActions: number };
  /** Orders we no longer want this robot to run; cancelled when it shows them. */
  abandoned: Set<string>;
  /** cancelOrder sent for these orders, and when last (ms). */
  cancelsSent: Map<string, number>;
  /** factsheetRequest back-off while the robot has not published a factsheet (null: none sent yet). */
  factsheetAsk: { nextAt: number; delayMs: number } | null;
  /** Failed charge tasks in a row, and no new charge task before `chargeRetryAt`. */
  chargeFailures: number;
  chargeRetryAt: number;
  /** A refused parking order: no new one before this time. */
  parkRetryAt: number;
  /** startPause (true) or stopPause (false) sent, while the robot's state does not show it yet. */
  pause?: Resend & { paused: boolean };
}

/** Back-off after a refused order: base × 2^(attempt − 1), capped. */
const REFUSAL_RETRY_MS = 5_000;
const REFUSAL_RETRY_MAX_MS = 120_000;
const CHARGE_RETRY_MS = 30_000;
const CHARGE_RETRY_MAX_MS = 600_000;
const PARK_RETRY_MS = 30_000;
/**
 * What the robot's state shows no effect of RESEND_AFTER_MS after it was sent is sent again:
 * - an order (or update), same orderId and orderUpdateId, at most MAX_RESENDS times, then the
 *   robot loses the task. Robots publish a state when an order arrives (VDA 5050 §6.10) and drop a
 *   repeat of what they have (§6.6.2); without it an order lost on the way (the robot subscribes
 *   at QoS 0, §6.2; a reconnect shorter than its keep-alive leaves no will) left the task
 *   assigned for good;
 * - a cancelOrder while the robot still runs the abandoned order (for as long as it does);
 * - a confirmation `trigger` (same action id) while the robot still waits and does not list it (at
 *   most MAX_RESENDS times, then the human is asked to confirm again);
 * - a stopCharging while it still charges (at most MAX_RESENDS times);
 * - a startPause or stopPause while the robot's state does not show it (at most MAX_RESENDS
 *   times): a dispatcher who paused a robot in a corridor must not find it still driving.
 */
const RESEND_AFTER_MS = 10_000;
const MAX_RESENDS = 3;
/** Something sent that the robot has not shown yet: when it was last sent, and how often again. */
interface Resend {
  sentAt: number;
  resends: number;
}
const backoff = (baseMs: number, n: number, maxMs: number) => Math.min(maxMs, baseMs * 2 ** Math.max(0, n - 1));

/** First wait after a factsheetRequest, doubled per unanswered request up to the maximum. */
const FACTSHEET_RETRY_MS = 10_000;
const FACTSHEET_RETRY_MAX_MS = 300_000;

export interface Fleet {
  readonly map: SiteMap;
  handleMessage(topic: string, payload: Buffer | string, now?: number): FleetEffects;
  submitTask(body: unknown, by: string, now?: number): { task: Task; effects: FleetEffects };
  cancelTask(id: string, by: string, now?: number, reason?: string): { task: Task; effects: FleetEffects };
  confirmTask(id: string, kind: ConfirmationKind, by: string, now?: number): { task: Task; effects: FleetEffects };
  alertAcknowledged(event: AlertAcknowledged, now?: number): { tasks: Task[]; skipped: Array<{ ruleId: string; reason: string }>; effects: FleetEffects };
  /**
   * startPause (pause) or stopPause (resume) to a robot (VDA 5050 §6.9). The robot's `paused`
   * comes from its next state; a paused robot gets no new work, and its order continues after
   * stopPause. RobotNotFoundError for an unknown robot, RobotStateError when it is not ONLINE or
   * its factsheet does not declare the action.
   */
  setPaused(key: RobotKey, paused: boolean, by: string, now?: number): { robot: RobotRecord; effects: FleetEffects };
  /** Timeouts and a dispatch round; call about once a second. */
  tick(now?: number): FleetEffects;
  /**
   * Queued tasks another gateway stored (it does not lead the fleet): the ones not known here are
   * taken in and dispatched. Others (known, or not queued) are ignored.
   */
  addTasks(stored: readonly Task[], now?: number): FleetEffects;
  robots(): RobotRecord[];
  robot(key: RobotKey): RobotRecord | undefined;
  tasks(status?: TaskStatus): Task[];
  task(id: string): Task | undefined;
  /**
   * Drops finished tasks no robot still refers to from memory, once the caller persisted them
   * (the map would otherwise grow by every task ever run); returns how many went.
   */
  forgetFinished(): number;
  /** Counters: accepted/duplicate/stale messages and rejected ones by cause. */
  stats(): { accepted: number; duplicate: number; stale: number; rejected: Record<string, number> };
}

const STATE_KINDS = new Set(['state', 'connection', 'factsheet', 'visualization']);

/** Order ids kept per robot to cancel (abandoned) or not to cancel twice: the newest this many. */
const MAX_REMEMBERED_ORDERS = 64;

/** Adds to an insertion-ordered set, dropping the oldest past `max` (pure bookkeeping, bounded). */
function remember(set: Set<string>, value: string, max = MAX_REMEMBERED_ORDERS): void {
  set.delete(value);
  set.add(value);
  while (set.size > max) set.delete(set.values().next().value!);
}

function rememberAt(map: Map<string, number>, key: string, at: number, max = MAX_REMEMBERED_ORDERS): void {
  map.delete(key);
  map.set(key, at);
  while (map.size > max) map.delete(map.keys().next().value!);
}

/** The error a robot reports when it rejects an order (VDA 5050 §6.6: errorReferences name the orderId), or null. */
function refusalOf(robot: RobotRecord, orderId: string): string | null {
  const e = robot.errors.find((x) => x.errorReferences?.some((ref) => ref.referenceKey === 'orderId' && ref.referenceValue === orderId));
  return e ? `${e.errorType}${e.errorDescription ? `: ${e.errorDescription}` : ''}` : null;
}

export function createFleet(options: FleetOptions): Fleet {
  const { map } = options;
  const policy: DispatchPolicy = { ...DEFAULT_POLICY, ...options.policy };
  const rules = options.rules ?? [];
  const newTaskId = options.newTaskId ?? (() => ulid());
  const confirmTimeoutMs = (options.confirmTimeoutS ?? 900) * 1000;

  const robots = new Map<RobotKey, RobotRecord>();
  const runtime = new Map<RobotKey, RobotRuntime>();
  const tasks = new Map<string, Task>();
  const counters = { accepted: 0, duplicate: 0, stale: 0, rejected: {} as Record<string, number> };
  let parkSeq = 0;
  let actionSeq = 0;

  const rt = (key: RobotKey): RobotRuntime => {
    let r = runtime.get(key);
    if (!r) {
      r = { current: null, next: null, headerIds: { order: 0, instantActions: 0 }, abandoned: new Set(), cancelsSent: new Map(), factsheetAsk: null, chargeFailures: 0, chargeRetryAt: 0, parkRetryAt: 0 };
      runtime.set(key, r);
    }
    return r;
  };
  const addressOf = (key: RobotKey): RobotAddress => {
    const r = robots.get(key);
    if (r) return { manufacturer: r.manufacturer, serialNumber: r.serialNumber };
    const [manufacturer, serialNumber] = key.split('/') as [string, string];
    return { manufacturer, serialNumber };
  };
  const speedOf = (r: RobotRecord | undefined) => r?.speedMax ?? policy.defaultSpeed;
  /** Speak the robot's own 2.x version (from its last state, connection or factsheet). */
  const versionOf = (key: RobotKey) => vda5050VersionFor(robots.get(key)?.version);

  const restoredAt = new Date(options.now ?? Date.now());
  const adoptTimeoutMs = (options.adoptTimeoutS ?? 60) * 1000;
  /** Robots given adopted work, and until when (ms) they must send a state to keep it. */
  const adopting = new Map<RobotKey, number>();
  const linkLossGraceMs = (options.linkLossGraceS ?? 30) * 1000;
  /** Robots whose link broke while they had work: since when (ms); they keep it until the grace ends. */
  const linkLost = new Map<RobotKey, number>();
  /** Robots back ONLINE within the grace, and until when (ms) their first state must come to keep the work. */
  const returning = new Map<RobotKey, number>();
  /** Robots known from the store that have not spoken to this fleet yet: no new work for them (their record may be stale). */
  const unheard = new Set<RobotKey>();
  for (const r of options.robots ?? []) {
    robots.set(r.key, r);
    unheard.add(r.key);
  }
  const inProgress = (t: Task) => t.status === 'assigned' || t.status === 'underway';
  const requeueRestored = (t: Task, why: string): Task => {
    // The robot may still be running that order (waiting for a trigger, say): cancel it when it shows it.
    if (t.robot && t.orderId) remember(rt(t.robot).abandoned, t.orderId);
    return transition(t, 'queued', why, restoredAt);
  };
  if (options.restore === 'adopt') {
    const restored = options.tasks ?? [];
    // The running orders go into the robots' runtime; snapshots get them again when stored (stamp).
    const withoutRunning = (t: Task): Task => {
      if (!t.running) return t;
      const { running: _moved, ...rest } = t;
      return rest;
    };
    // Running orders first (a robot runs one), then tasks assigned whose order was not sent yet.
    for (const t of restored) {
      if (!inProgress(t) || !t.robot || !t.running) continue;
      const r = rt(t.robot);
      if (r.current) {
        tasks.set(t.id, requeueRestored(withoutRunning(t), `robot ${t.robot} already runs an adopted order; re-queued`));
        continue;
      }
      const { plan, waitingSince, triggered, headerIds, triggersSent } = t.running;
      r.current = { kind: 'task', taskId: t.id, plan, waitingSince, triggered: new Set(triggered) };
      if (triggersSent?.length) r.current.triggersSent = new Map(triggersSent.map(({ triggerId, ...sent }) => [triggerId, sent]));
      r.headerIds = { order: Math.max(r.headerIds.order, headerIds.order), instantActions: Math.max(r.headerIds.instantActions, headerIds.instantActions) };
      adopting.set(t.robot, restoredAt.getTime() + adoptTimeoutMs);
      tasks.set(t.id, note(withoutRunning(t), `order ${plan.orderId} adopted by the gateway now leading the fleet`, restoredAt));
    }
    for (const t of restored) {
      if (tasks.has(t.id)) continue;
      if (!inProgress(t)) {
        tasks.set(t.id, withoutRunning(t));
        continue;
      }
      const r = t.robot ? rt(t.robot) : null;
      if (r && t.status === 'assigned' && !t.running && (!r.current || !r.next)) {
        if (!r.current) r.current = { kind: 'task', taskId: t.id, plan: null, waitingSince: null, triggered: new Set() };
        else r.next = t.id;
        adopting.set(t.robot!, restoredAt.getTime() + adoptTimeoutMs);
        tasks.set(t.id, t);
        continue;
      }
      tasks.set(t.id, requeueRestored(withoutRunning(t), 'no running order to adopt after the hand-over; re-queued'));
    }
    // A robot whose link broke before the hand-over keeps the rest of its grace, counted from when it broke, not anew.
    for (const key of adopting.keys()) {
      const robot = robots.get(key);
      if (robot?.connection === 'CONNECTIONBROKEN' && linkLossGraceMs > 0) linkLost.set(key, Math.min(restoredAt.getTime(), robot.connectionSince));
    }
  } else {
    // Restart: tasks that were in progress lost their order with the old process.
    for (const t of options.tasks ?? []) tasks.set(t.id, inProgress(t) ? requeueRestored(t, 'gateway restarted; re-queued') : t);
  }

  // ---- effects ---------------------------------------------------------------------------------
  const effects = (): FleetEffects => ({ publish: [], tasks: [], robots: [], samples: [], rejected: [] });
  const publish = (fx: FleetEffects, topic: string, message: unknown) =>
    fx.publish.push({ topic, payload: JSON.stringify(message), qos: 1, retain: false });
  const save = (fx: FleetEffects, task: Task): Task => {
    const before = tasks.get(task.id);
    if (task.type === 'charge' && task.robot && before?.status !== task.status) {
      // One charge task per robot at a time; after a failed one, wait longer each time before the next.
      const r = rt(task.robot);
      if (task.status === 'failed') {
        r.chargeFailures += 1;
        r.chargeRetryAt = Date.parse(task.updatedAt) + backoff(CHARGE_RETRY_MS, r.chargeFailures, CHARGE_RETRY_MAX_MS);
      } else if (task.status === 'completed') r.chargeFailures = 0;
    }
    tasks.set(task.id, task);
    const i = fx.tasks.findIndex((t) => t.id === task.id);
    if (i >= 0) fx.tasks[i] = task;
    else fx.tasks.push(task);
    return task;
  };
  /**
   * The snapshots leave with the order their robot runs for them (Task.running), so that a gateway
   * taking the fleet over can adopt it. Called on every effects a public method returns.
   */
  const stamp = (fx: FleetEffects): FleetEffects => {
    fx.tasks = fx.tasks.map((t) => {
      const r = t.robot && !TERMINAL.has(t.status) ? runtime.get(t.robot) : undefined;
      const work = r?.current;
      if (r && work?.kind === 'task' && work.taskId === t.id && work.plan) {
        const triggersSent = [...(work.triggersSent ?? [])].map(([triggerId, sent]) => ({ triggerId, ...sent }));
        return {
          ...t,
          running: {
            plan: work.plan,
            triggered: [...work.triggered],
            waitingSince: work.waitingSince,
            headerIds: { ...r.headerIds },
            ...(triggersSent.length > 0 ? { triggersSent } : {}),
          },
        };
      }
      if (!t.running) return t;
      const { running: _gone, ...rest } = t;
      return rest;
    });
    return fx;
  };
  const reject = (fx: FleetEffects, topic: string, cause: string, message: string) => {
    counters.rejected[cause] = (counters.rejected[cause] ?? 0) + 1;
    fx.rejected.push({ topic, cause, message });
  };

  const sendOrder = (fx: FleetEffects, key: RobotKey, plan: OrderPlan, now: number) => {
    const r = rt(key);
    publish(fx, vda5050Topic(addressOf(key), 'order'), orderMessage(plan, addressOf(key), r.headerIds.order++, new Date(now), versionOf(key)));
    if (r.current?.kind === 'task' && r.current.plan === plan) r.current.unconfirmed = { sentAt: now, resends: 0 };
  };
  const sendCancel = (fx: FleetEffects, key: RobotKey, now: number) => {
    const r = rt(key);
    const msg = cancelOrderMessage(addressOf(key), r.headerIds.instantActions++, `cancel-${now}-${actionSeq++}`, new Date(now), versionOf(key));
    publish(fx, vda5050Topic(addressOf(key), 'instantActions'), msg);
  };

  /** The `trigger` instant action that ends waiting action `waitingId` (a human confirmed). */
  const sendTrigger = (fx: FleetEffects, key: RobotKey, triggerId: string, waitingId: string, now: number) => {
    const r = rt(key);
    publish(fx, vda5050Topic(addressOf(key), 'instantActions'), triggerMessage(addressOf(key), r.headerIds.instantActions++, triggerId, waitingId, new Date(now), versionOf(key)));
  };

  const sendInstant = (fx: FleetEffects, key: RobotKey, actionType: string, now: number) => {
    const r = rt(key);
    const msg = instantActionMessage(addressOf(key), r.headerIds.instantActions++, actionType, `${actionType}-${now}-${actionSeq++}`, new Date(now), versionOf(key));
    publish(fx, vda5050Topic(addressOf(key), 'instantActions'), msg);
  };

  /**
   * Robots may publish their factsheet only when asked (vda-5050-lib does): ask an ONLINE robot
   * that has none once when we first hear from it, then again with a doubling back-off.
   */
  const askFactsheet = (fx: FleetEffects, key: RobotKey, now: number) => {
    const robot = robots.get(key);
    if (!robot || robot.cursors.factsheet || robot.connection !== 'ONLINE') return;
    const r = rt(key);
    if (r.factsheetAsk && now < r.factsheetAsk.nextAt) return;
    const delayMs = r.factsheetAsk ? Math.min(r.factsheetAsk.delayMs * 2, FACTSHEET_RETRY_MAX_MS) : FACTSHEET_RETRY_MS;
    r.factsheetAsk = { nextAt: now + delayMs, delayMs };
    sendInstant(fx, key, 'factsheetRequest', now);
  };

  /**
   * Gives up an order: cancels it now if the robot is running it, otherwise only remembers it
   * (cancelled when the robot shows it). No cancelOrder goes to an idle robot.
   */
  const abandon = (fx: FleetEffects, key: RobotKey, orderId: string, now: number) => {
    const r = rt(key);
    remember(r.abandoned, orderId);
    const robot = robots.get(key);
    if (robot && robot.orderId === orderId && !isIdle(robot) && !r.cancelsSent.has(orderId)) {
      rememberAt(r.cancelsSent, orderId, now);
      sendCancel(fx, key, now);
    }
  };

  // ---- starting, finishing and losing work ---------------------------------------------------------

  /** Sends the order of the robot's current task once the robot is idle (after a cancelled parking move, say). */
  const startIfReady = (fx: FleetEffects, key: RobotKey, now: number) => {
    const work = rt(key).current;
    const robot = robots.get(key);
    if (!work || work.kind !== 'task' || work.plan || !robot || !isIdle(robot) || robot.lastNodeId === null) return;
    if (work.retryAt !== undefined && now < work.retryAt) return;
    let task = tasks.get(work.taskId)!;
    if (robot.charging && task.type !== 'charge') {
      // A charging robot refuses orders (vda-5050-lib does): stop charging first, start on the state that shows it stopped.
      if (!work.stopCharging) {
        work.stopCharging = { sentAt: now, resends: 0 };
        sendInstant(fx, key, 'stopCharging', now);
        save(fx, note(task, `robot ${key} is charging: stopCharging sent`, new Date(now)));
      } else if (work.stopCharging.resends < MAX_RESENDS && now - work.stopCharging.sentAt >= RESEND_AFTER_MS) {
        // Lost on the way, most likely: ask again. A robot that will not stop keeps the task
        // waiting (as the history says); re-queuing would only hand it back to the same robot.
        work.stopCharging = { sentAt: now, resends: work.stopCharging.resends + 1 };
        sendInstant(fx, key, 'stopCharging', now);
        const last = work.stopCharging.resends === MAX_RESENDS ? '; no more after this one: cancel the task, or stop the charge at the robot' : '';
        save(fx, note(task, `robot ${key} still charging ${RESEND_AFTER_MS / 1000} s after stopCharging: sent again (${work.stopCharging.resends} of ${MAX_RESENDS})${last}`, new Date(now)));
      }
      return;
    }
    const attempt = task.attempts + 1;
    try {
      work.plan = buildOrder(task, map, robot.lastNodeId, {
        orderId: `${task.id}-${attempt}`,
        speed: speedOf(robot),
        disinfectDurationS: policy.disinfectDurationS,
        confirmOnRobot: confirmsOnRobot(robot.capabilities),
        load: loadPolicyFor(robot.loadTypes),
        startDeviationXY: startDeviation(map, robot.lastNodeId, robot.position),
      });
    } catch (err) {
      if (!(err instanceof RouteError)) throw err;
      rt(key).current = null;
      save(fx, transition(task, 'failed', `cannot route from ${robot.lastNodeId}: ${err.message}`, new Date(now)));
      return;
    }
    task = note(task, `order ${work.plan.orderId} sent (${work.plan.nodes.length} nodes)`, new Date(now), {
      attempts: attempt,
      orderId: work.plan.orderId,
      progress: { nodesDone: 0, nodesTotal: work.plan.nodesTotal, lastNodeId: robot.lastNodeId, actions: {} },
    });
    save(fx, task);
    sendOrder(fx, key, work.plan, now);
  };

  const finishCurrent = (fx: FleetEffects, key: RobotKey, now: number) => {
    const r = rt(key);
    r.current = null;
    if (r.next) {
      const next = tasks.get(r.next);
      r.next = null;
      if (next && !TERMINAL.has(next.status)) {
        r.current = { kind: 'task', taskId: next.id, plan: null, waitingSince: null, triggered: new Set() };
        startIfReady(fx, key, now);
      }
    }
  };

  /** The robot dropped off the network or failed: give its tasks back to the queue (or fail them). */
  const loseRobot = (fx: FleetEffects, key: RobotKey, why: string, now: number) => {
    const r = rt(key);
    const at = new Date(now);
    if (r.current?.kind === 'task') {
      const task = tasks.get(r.current.taskId)!;
      if (r.current.plan) remember(r.abandoned, r.current.plan.orderId);
      if (!TERMINAL.has(task.status)) save(fx, requeueOrFail(task, `robot ${key} ${why} mid-task`, at));
    } else if (r.current?.kind === 'move') {
      remember(r.abandoned, r.current.plan.orderId);
    }
    if (r.next) {
      const next = tasks.get(r.next)!;
      if (!TERMINAL.has(next.status)) save(fx, transition(next, 'queued', `robot ${key} ${why} before starting`, at));
    }
    r.current = null;
    r.next = null;
  };

  /** A note on the task a robot runs (and the one queued behind it). */
  const noteWork = (fx: FleetEffects, key: RobotKey, text: string, now: number) => {
    const r = rt(key);
    for (const id of [r.current?.kind === 'task' ? r.current.taskId : null, r.next]) {
      const task = id ? tasks.get(id) : undefined;
      if (task && !TERMINAL.has(task.status)) save(fx, note(task, text, new Date(now)));
    }
  };

  // ---- robot messages --------------------------------------------------------------------------

  const onRobotState = (fx: FleetEffects, key: RobotKey, now: number) => {
    const robot = robots.get(key)!;
    const r = rt(key);
    // A robot still running an order we gave up on (it was lost, or the task was cancelled): stop
    // it, and again every RESEND_AFTER_MS while it still runs it (the cancelOrder was lost).
    if (robot.orderId && r.abandoned.has(robot.orderId) && !isIdle(robot)) {
      const sentAt = r.cancelsSent.get(robot.orderId);
      if (sentAt === undefined || now - sentAt >= RESEND_AFTER_MS) {
        rememberAt(r.cancelsSent, robot.orderId, now);
        sendCancel(fx, key, now);
      }
    }
    const work = r.current;
    if (!work) return;
    if (work.kind === 'move') {
      if (robot.orderId !== work.plan.orderId && refusalOf(robot, work.plan.orderId)) {
        // A refused parking order: drop it (the robot is free) and do not park it again for a while.
        r.parkRetryAt = now + PARK_RETRY_MS;
        return finishCurrent(fx, key, now);
      }
      const v = orderProgress(work.plan, robot);
      if (v.status === 'finished' || v.status === 'failed') finishCurrent(fx, key, now);
      return;
    }
    if (!work.plan) return startIfReady(fx, key, now);
    let task = tasks.get(work.taskId)!;
    const at = new Date(now);
    // The robot refused our order (e.g. it was still busy): send it again once it is idle, a few times.
    const refusal = robot.orderId !== work.plan.orderId ? refusalOf(robot, work.plan.orderId) : null;
    if (refusal) {
      if (task.attempts >= task.maxAttempts) {
        save(fx, transition(task, 'failed', `robot ${key} refused order ${work.plan.orderId} (${refusal}); gave up after ${task.attempts} orders`, at));
        return finishCurrent(fx, key, now);
      }
      const waitMs = backoff(REFUSAL_RETRY_MS, task.attempts, REFUSAL_RETRY_MAX_MS);
      save(fx, note(task, `robot ${key} refused order ${work.plan.orderId} (${refusal}); sending it again in ${waitMs / 1000} s`, at));
      work.plan = null;
      work.unconfirmed = undefined;
      work.retryAt = now + waitMs;
      return;
    }
    if (work.unconfirmed && robot.orderId === work.plan.orderId && robot.orderUpdateId >= work.plan.orderUpdateId) work.unconfirmed = undefined;
    // A `trigger` the robot rejected (error naming it, or FAILED): the confirmation did not reach it; let the human confirm again.
    for (const [triggerId, sent] of work.triggersSent ?? []) {
      const waitingId = sent.waitingId;
      const failed = robot.actionStates.find((a) => a.actionId === triggerId && a.actionStatus === 'FAILED');
      const error = robot.errors.find((e) => e.errorReferences?.some((ref) => ref.referenceKey === 'actionId' && ref.referenceValue === triggerId));
      const done = robot.actionStates.some((a) => a.actionId === triggerId && a.actionStatus === 'FINISHED');
      if (!failed && !error) {
        if (done) {
          work.triggersSent!.delete(triggerId);
          continue;
        }
        // No trace of it and the robot still waits: the trigger was lost on the way.
        const stillWaiting = robot.actionStates.some((a) => a.actionId === waitingId && a.actionStatus === 'RUNNING');
        const seen = robot.actionStates.some((a) => a.actionId === triggerId);
        if (!stillWaiting || seen || now - sent.sentAt < RESEND_AFTER_MS) continue;
        if (sent.resends < MAX_RESENDS) {
          sent.sentAt = now;
          sent.resends += 1;
          sendTrigger(fx, key, triggerId, waitingId, now);
          task = note(task, `robot ${key} still waits and shows no confirmation trigger after ${RESEND_AFTER_MS / 1000} s: sent again (${sent.resends} of ${MAX_RESENDS})`, at);
          continue;
        }
        work.triggersSent!.delete(triggerId);
        work.triggered.delete(waitingId);
        work.waitingSince = now;
        task = note(task, `robot ${key} took none of ${MAX_RESENDS + 1} confirmation triggers; confirm again`, at, { awaiting: work.plan.triggers[waitingId] ?? null });
        continue;
      }
      work.triggersSent!.delete(triggerId);
      work.triggered.delete(waitingId);
      work.waitingSince = now;
      const why = error ? `${error.errorType}${error.errorDescription ? `: ${error.errorDescription}` : ''}` : (failed!.resultDescription ?? 'FAILED');
      task = note(task, `robot ${key} rejected the confirmation trigger (${why}); confirm again`, at, { awaiting: work.plan.triggers[waitingId] ?? null });
    }
    const v = orderProgress(work.plan, robot);
    if (v.status === 'not-started') {
      if (task !== tasks.get(task.id)) save(fx, task);
      return;
    }
    if (task.status === 'assigned') task = transition(task, 'underway', `robot ${key} took order ${work.plan.orderId}`, at);
    if (v.status === 'failed') {
      save(fx, transition(task, 'failed', v.reason, at, { progress: v.progress }));
      r.current = null;
      return finishCurrent(fx, key, now);
    }
    if (v.status === 'finished') {
      save(fx, transition(task, 'completed', `robot ${key} finished order ${work.plan.orderId}`, at, { progress: v.progress }));
      return finishCurrent(fx, key, now);
    }
    if (v.awaiting && !work.triggered.has(v.waitingActionId!) && task.awaiting !== v.awaiting) {
      work.waitingSince = now;
      task = note(task, `waiting at ${robot.lastNodeId} for ${v.awaiting} confirmation`, at, { awaiting: v.awaiting });
    }
    if (v.needsUpdate) {
      const update = nextPatrolUpdate(work.plan, map, speedOf(robot));
      if (update) {
        work.plan = update;
        sendOrder(fx, key, update, now);
        task = note(task, `order update ${update.orderUpdateId}: next patrol round`, at);
      }
    }
    const changed = JSON.stringify(task.progress) !== JSON.stringify(v.progress);
    if (changed) task = { ...task, progress: v.progress, updatedAt: at.toISOString() };
    if (task !== tasks.get(task.id)) save(fx, task);
  };

  /**
   * The first state of a robot whose order was adopted: it runs that order (the usual case), or it
   * never got it (the old leader stored it and stopped before it went out): send the same order,
   * once; an order update it cannot take without the order before, so it loses the task then.
   */
  const checkAdopted = (fx: FleetEffects, key: RobotKey, now: number) => {
    adopting.delete(key);
    const robot = robots.get(key)!;
    const work = rt(key).current;
    if (work?.kind !== 'task' || !work.plan || robot.orderId === work.plan.orderId || !isIdle(robot) || refusalOf(robot, work.plan.orderId)) return;
    const task = tasks.get(work.taskId)!;
    const start = work.plan.nodes[0]?.nodeId;
    if (work.plan.orderUpdateId === 0 && robot.lastNodeId === start) {
      save(fx, note(task, `robot ${key} does not run adopted order ${work.plan.orderId}: sent again`, new Date(now)));
      sendOrder(fx, key, work.plan, now);
      return;
    }
    // An update needs the order before it; an order starting elsewhere than the robot stands (it
    // moved, e.g. it lost its link and rebooted meanwhile) would be refused: plan it again.
    const why = work.plan.orderUpdateId > 0 ? `update ${work.plan.orderUpdateId}` : `it stands at ${robot.lastNodeId}, the order starts at ${start}`;
    loseRobot(fx, key, `does not run adopted order ${work.plan.orderId} (${why})`, now);
    dirty = true;
  };

  /**
   * The first state of a robot back from a broken link: it still runs its order (it drove on
   * offline), or it lost it (it rebooted). Then the task is planned again from where the robot
   * is now, as for a lost robot: the old order starts where the robot was when it was sent.
   */
  const checkReturned = (fx: FleetEffects, key: RobotKey, now: number) => {
    const work = rt(key).current;
    if (work?.kind !== 'task' || !work.plan || robots.get(key)!.orderId === work.plan.orderId) return;
    loseRobot(fx, key, `came back without order ${work.plan.orderId}`, now);
    dirty = true;
  };

  /** A note in the history of the robot's current task, if it has one that is not finished. */
  const noteOnTask = (fx: FleetEffects, key: RobotKey, text: string, now: number) => {
    const work = rt(key).current;
    const task = work?.kind === 'task' ? tasks.get(work.taskId) : undefined;
    if (task && !TERMINAL.has(task.status)) save(fx, note(task, text, new Date(now)));
  };

  /** A startPause/stopPause the ONLINE robot's state has not shown within RESEND_AFTER_MS: sent again, at most MAX_RESENDS times. */
  const resendPause = (fx: FleetEffects, key: RobotKey, now: number) => {
    const r = rt(key);
    const robot = robots.get(key);
    if (!r.pause) return;
    if (!robot || robot.paused === r.pause.paused) {
      delete r.pause;
      return;
    }
    if (robot.connection !== 'ONLINE' || now - r.pause.sentAt < RESEND_AFTER_MS) return;
    const actionType = r.pause.paused ? 'startPause' : 'stopPause';
    if (r.pause.resends >= MAX_RESENDS) {
      delete r.pause;
      noteOnTask(fx, key, `robot ${key} did not show ${actionType} after ${MAX_RESENDS} resends; check it at the robot`, now);
      return;
    }
    r.pause = { ...r.pause, sentAt: now, resends: r.pause.resends + 1 };
    sendInstant(fx, key, actionType, now);
    noteOnTask(fx, key, `robot ${key} has not shown ${actionType} for ${RESEND_AFTER_MS / 1000} s: sent again (${r.pause.resends} of ${MAX_RESENDS})`, now);
  };

  /** An order the robot has not shown within RESEND_AFTER_MS while ONLINE: sent again, or given up. */
  const resendUnconfirmed = (fx: FleetEffects, key: RobotKey, now: number) => {
    const work = rt(key).current;
    if (work?.kind !== 'task' || !work.plan || !work.unconfirmed || now - work.unconfirmed.sentAt < RESEND_AFTER_MS) return;
    // Away, or its first state since coming back is still awaited: those have their own deadlines.
    if (robots.get(key)?.connection !== 'ONLINE' || linkLost.has(key) || returning.has(key) || adopting.has(key)) return;
    const what = `order ${work.plan.orderId}${work.plan.orderUpdateId > 0 ? ` update ${work.plan.orderUpdateId}` : ''}`;
    const { resends } = work.unconfirmed;
    if (resends >= MAX_RESENDS) {
      loseRobot(fx, key, `did not show ${what} after ${MAX_RESENDS} resends`, now);
      dirty = true;
      return;
    }
    sendOrder(fx, key, work.plan, now);
    work.unconfirmed = { sentAt: now, resends: resends + 1 };
    const task = tasks.get(work.taskId)!;
    save(fx, note(task, `robot ${key} has not shown ${what} for ${RESEND_AFTER_MS / 1000} s: sent again (${resends + 1} of ${MAX_RESENDS})`, new Date(now)));
  };

  let dirty = true;

  const handleMessage = (topic: string, payload: Buffer | string, now = Date.now()): FleetEffects => {
    const fx = effects();
    const parsed = parseVda5050Topic(topic);
    if (!parsed || !STATE_KINDS.has(parsed.channel)) {
      reject(fx, topic, 'unexpected-topic', `not a robot-to-master VDA 5050 topic: ${topic}`);
      return fx;
    }
    const kind = parsed.channel as RegistryMessage['kind'];
    const result = parseVda5050(kind, payload, parsed);
    if (!result.ok) {
      reject(fx, topic, `invalid-${kind}`, result.message);
      return fx;
    }
    const key = robotKey(parsed);
    const before = robots.get(key);
    const outcome = applyRobotMessage(before, { kind, message: result.value } as RegistryMessage, now);
    if (!outcome.applied) {
      counters[outcome.reason] += 1;
      return fx;
    }
    counters.accepted += 1;
    if (unheard.delete(key)) dirty = true;
    const robot = outcome.record;
    robots.set(key, robot);
    fx.robots.push(robot);
    const wasAvailable = before ? unavailableReason(before) : 'new';
    const nowAvailable = unavailableReason(robot);
    // A factsheet (new capabilities) can make queued tasks assignable.
    if (kind === 'factsheet' || wasAvailable !== nowAvailable || (before && isIdle(before) !== isIdle(robot)) || before?.charging !== robot.charging) dirty = true;
    if (before?.batteryCharge != null && robot.batteryCharge != null) {
      for (const level of [policy.minBatteryPct, policy.resumeBatteryPct]) {
        if (before.batteryCharge >= level !== robot.batteryCharge >= level) dirty = true;
      }
    }

    if (kind === 'connection' && outcome.connectionChanged && robot.connection === 'ONLINE') rt(key).factsheetAsk = null;
    askFactsheet(fx, key, now);

    const lost =
      robot.connection === 'OFFLINE' || robot.connection === 'CONNECTIONBROKEN'
        ? `is ${robot.connection}`
        : robot.errors.some((e) => e.errorLevel === 'FATAL')
          ? `reported fatal error ${robot.errors.find((e) => e.errorLevel === 'FATAL')!.errorType}`
          : null;
    const hasWork = rt(key).current !== null || rt(key).next !== null;
    if (lost && hasWork && robot.connection === 'CONNECTIONBROKEN' && linkLossGraceMs > 0 && !robot.errors.some((e) => e.errorLevel === 'FATAL')) {
      // Its will: the link broke, the robot may well still be driving. Wait for it (tick ends the wait).
      if (!linkLost.has(key)) {
        linkLost.set(key, Math.min(now, robot.connectionSince || now));
        noteWork(fx, key, `robot ${key} lost its link (CONNECTIONBROKEN); it keeps the task up to ${linkLossGraceMs / 1000} s`, now);
      }
    } else if (lost && hasWork) {
      adopting.delete(key);
      linkLost.delete(key);
      returning.delete(key);
      loseRobot(fx, key, lost, now);
      dirty = true;
    } else if (kind === 'connection' && robot.connection === 'ONLINE' && linkLost.has(key)) {
      const since = linkLost.get(key)!;
      linkLost.delete(key);
      noteWork(fx, key, `robot ${key} back ONLINE after ${((now - since) / 1000).toFixed(1)} s; its next state shows whether it still runs the order`, now);
      returning.set(key, now + adoptTimeoutMs);
    } else if (kind === 'state') {
      if (adopting.has(key)) checkAdopted(fx, key, now);
      if (returning.delete(key)) checkReturned(fx, key, now);
      onRobotState(fx, key, now);
    }
    if (kind === 'state') {
      const current = rt(key).current;
      fx.samples.push({
        robot: key,
        at: now,
        batteryPct: robot.batteryCharge!,
        charging: robot.charging,
        driving: robot.driving,
        lastNodeId: robot.lastNodeId,
        x: robot.position?.x ?? null,
        y: robot.position?.y ?? null,
        errors: robot.errors.length,
        taskId: current?.kind === 'task' ? current.taskId : null,
      });
    }
    if (dirty) dispatch(fx, now);
    return fx;
  };

  // ---- dispatch ------------------------------------------------------------------------------------

  const remainingOf = (key: RobotKey, work: Work): { endNode: string; remainingS: number; remainingM: number; type: string } => {
    const robot = robots.get(key)!;
    const speed = speedOf(robot);
    if (work.kind === 'task' && !work.plan) {
      const task = tasks.get(work.taskId)!;
      const ext = taskExtent(task, map, speed, policy.actionDurationS, policy.disinfectDurationS);
      const approach = ext.startNode ? map.travelTimeS(robot.lastNodeId!, ext.startNode, speed) : 0;
      return { endNode: ext.endNode ?? robot.lastNodeId!, remainingS: approach + ext.lengthM / speed + ext.actionS, remainingM: approach * speed + ext.lengthM, type: task.type };
    }
    const plan = work.plan!;
    const remainingM = plan.edges.filter((e) => e.sequenceId > robot.lastNodeSequenceId).reduce((s, e) => s + (e.length ?? 0), 0);
    const done = new Set(robot.actionStates.filter((a) => a.actionStatus === 'FINISHED' || a.actionStatus === 'FAILED').map((a) => a.actionId));
    const actionS = plan.actions
      .filter((a) => !done.has(a.actionId))
      .reduce((s, a) => s + (a.actionType === 'disinfect' ? policy.disinfectDurationS : (policy.actionDurationS[a.actionType] ?? 0)), 0);
    return { endNode: plan.lastNodeId, remainingS: remainingM / speed + actionS, remainingM, type: work.kind === 'task' ? tasks.get(work.taskId)!.type : 'move' };
  };

  const dispatch = (fx: FleetEffects, now: number) => {
    dirty = false;
    const at = new Date(now);
    const candidates: RobotCandidate[] = [];
    for (const robot of robots.values()) {
      const r = rt(robot.key);
      const unavailable = unavailableReason(robot);
      if (robot.lastNodeId === null || unheard.has(robot.key)) continue;
      candidates.push({
        key: robot.key,
        node: robot.lastNodeId,
        speed: speedOf(robot),
        batteryPct: robot.batteryCharge ?? 0,
        charging: robot.charging,
        unavailable,
        capabilities: robot.capabilities,
        hasFactsheet: robot.cursors.factsheet !== undefined,
        current: r.current && r.current.kind === 'task' ? remainingOf(robot.key, r.current) : null,
        hasNext: r.next !== null,
        movingTo: r.current?.kind === 'move' ? r.current.target : null,
      });
    }
    const queued: TaskCandidate[] = [];
    for (const t of tasks.values()) {
      if (t.status !== 'queued') continue;
      const ext = taskExtent(t, map, policy.defaultSpeed, policy.actionDurationS, policy.disinfectDurationS);
      queued.push({
        id: t.id,
        priority: t.priority,
        deadline: t.deadline ? Date.parse(t.deadline) : null,
        createdAt: Date.parse(t.createdAt),
        startNode: ext.startNode,
        endNode: ext.endNode,
        lengthM: ext.lengthM,
        actionS: ext.actionS,
        requires: REQUIRED_ACTIONS[t.type],
        pinnedRobot: t.pinnedRobot,
      });
    }
    const plan = assignTasks({ map, robots: candidates, tasks: queued, now, policy });

    const assign = (taskId: string, key: RobotKey, reason: string) => {
      const r = rt(key);
      const task = tasks.get(taskId)!;
      save(fx, transition(task, 'assigned', reason, at, { robot: key }));
      const current = r.current;
      if (current && current.kind === 'task') {
        r.next = taskId;
        return;
      }
      r.current = { kind: 'task', taskId, plan: null, waitingSince: null, triggered: new Set() };
      if (current?.kind === 'move') {
        // Parking can be dropped: cancel it and start once the robot reports standing still
        // (its last state may predate the parking order, so do not trust it now). A parking
        // move the robot shows as done needs no cancelOrder.
        const robot = robots.get(key);
        if (robot && robot.orderId === current.plan.orderId && isIdle(robot)) {
          remember(r.abandoned, current.plan.orderId);
          return startIfReady(fx, key, now);
        }
        remember(r.abandoned, current.plan.orderId);
        rememberAt(r.cancelsSent, current.plan.orderId, now);
        sendCancel(fx, key, now);
        return;
      }
      startIfReady(fx, key, now);
    };

    for (const a of plan.assignments) {
      assign(a.taskId, a.robot, `assigned to ${a.robot} (${a.how}, done in ~${Math.round(a.finishS)} s${a.asNext ? ', after its current task' : ''})`);
    }
    for (const c of plan.toCharge) {
      const robot = robots.get(c.robot)!;
      // Never a second charge task for a robot, and none while backing off after a failed one.
      const open = [...tasks.values()].some((t) => t.type === 'charge' && (t.robot === c.robot || t.pinnedRobot === c.robot) && !TERMINAL.has(t.status));
      if (open || now < rt(c.robot).chargeRetryAt) continue;
      const spec = parseTaskRequest({ type: 'charge', charger: c.charger, robot: c.robot, priority: 100 }, map);
      const task = newTask(spec, { id: newTaskId(), now: at, requestedBy: 'dispatcher' });
      save(fx, note(task, `battery ${robot.batteryCharge?.toFixed(0)} % below ${policy.minBatteryPct} %`, at));
      assign(task.id, c.robot, `sent to charge at ${c.charger}`);
    }
    for (const p of plan.toPark) {
      const robot = robots.get(p.robot)!;
      // Still winding down an order (e.g. one just cancelled): a robot refuses a new order then
      // ("still executing order …") and keeps that error until its next one. Park it on a later
      // round, once it reports standing still.
      if (!isIdle(robot)) continue;
      if (now < rt(p.robot).parkRetryAt) continue;
      const orderId = `park-${robot.serialNumber}-${now}-${parkSeq++}`;
      try {
        const move = buildMoveOrder(map, robot.lastNodeId!, p.node, orderId, speedOf(robot), startDeviation(map, robot.lastNodeId!, robot.position));
        rt(p.robot).current = { kind: 'move', plan: move, target: p.node };
        sendOrder(fx, p.robot, move, now);
      } catch (err) {
        if (!(err instanceof RouteError)) throw err;
      }
    }
    // Tell the operator why a queued task waits (only when the reason changes).
    for (const u of plan.unassigned) {
      const task = tasks.get(u.taskId)!;
      const last = task.history[task.history.length - 1]!;
      const reason = `not assigned: ${u.reason}`;
      if (last.reason !== reason) save(fx, note(task, reason, at));
    }
  };

  // ---- API -------------------------------------------------------------------------------------------

  const getTask = (id: string): Task => {
    const t = tasks.get(id) ?? options.finishedTask?.(id);
    if (!t) throw new TaskNotFoundError(id);
    return t;
  };

  const fleet: Fleet = {
    map,
    handleMessage: (topic, payload, now) => stamp(handleMessage(topic, payload, now)),
    submitTask(body, by, now = Date.now()) {
      const spec = parseTaskRequest(body, map);
      const fx = effects();
      const task = save(fx, newTask(spec, { id: newTaskId(), now: new Date(now), requestedBy: by, ...(options.maxAttempts ? { defaultMaxAttempts: options.maxAttempts } : {}) }));
      dispatch(fx, now);
      return { task: tasks.get(task.id)!, effects: stamp(fx) };
    },
    cancelTask(id, by, now = Date.now(), reason) {
      const fx = effects();
      const task = getTask(id);
      const cancelled = transition(task, 'cancelled', `cancelled by ${by}${reason ? `: ${reason}` : ''}`, new Date(now));
      save(fx, cancelled);
      if (task.robot) {
        const r = rt(task.robot);
        if (r.next === id) r.next = null;
        if (r.current?.kind === 'task' && r.current.taskId === id) {
          if (r.current.plan) abandon(fx, task.robot, r.current.plan.orderId, now);
          finishCurrent(fx, task.robot, now);
        }
      }
      dispatch(fx, now);
      return { task: cancelled, effects: stamp(fx) };
    },
    confirmTask(id, kind, by, now = Date.now()) {
      const fx = effects();
      let task = save(fx, confirm(getTask(id), kind, by, new Date(now)));
      const r = rt(task.robot!);
      const work = r.current;
      if (work?.kind === 'task' && work.taskId === id && work.plan?.hold?.kind === kind) {
        // Master-side confirmation: send what was held back, as the next order from where the robot waits.
        const plan = work.plan;
        work.triggered.add(holdId(plan));
        work.waitingSince = null;
        try {
          work.plan = buildContinuation(plan, map, `${plan.orderId}.${kind}`, speedOf(robots.get(task.robot!)));
        } catch (err) {
          if (!(err instanceof RouteError)) throw err;
          task = save(fx, transition(task, 'failed', `cannot continue after ${kind}: ${err.message}`, new Date(now)));
          finishCurrent(fx, task.robot!, now);
          return { task, effects: stamp(fx) };
        }
        task = save(fx, note(task, `order ${work.plan.orderId} sent after ${kind} confirmation`, new Date(now), { orderId: work.plan.orderId }));
        sendOrder(fx, task.robot!, work.plan, now);
      } else if (work?.kind === 'task' && work.taskId === id && work.plan) {
        const waiting = Object.entries(work.plan.triggers).find(([actionId, k]) => k === kind && !work.triggered.has(actionId));
        if (waiting) {
          work.triggered.add(waiting[0]);
          work.waitingSince = null;
          const triggerId = `trigger-${now}-${actionSeq++}`;
          (work.triggersSent ??= new Map()).set(triggerId, { waitingId: waiting[0], sentAt: now, resends: 0 });
          sendTrigger(fx, task.robot!, triggerId, waiting[0], now);
        }
      }
      return { task, effects: stamp(fx) };
    },
    alertAcknowledged(event, now = Date.now()) {
      const fx = effects();
      const { matches, skipped } = evaluateRules(rules, event, map);
      const created: Task[] = [];
      for (const m of matches) {
        const spec = parseTaskRequest(m.request, map);
        created.push(save(fx, newTask(spec, { id: newTaskId(), now: new Date(now), alertId: m.alertId, ruleId: m.ruleId, requestedBy: event.by ?? null })));
      }
      if (created.length > 0) dispatch(fx, now);
      return { tasks: created.map((t) => tasks.get(t.id)!), skipped, effects: stamp(fx) };
    },
    setPaused(key, paused, by, now = Date.now()) {
      const robot = robots.get(key);
      if (!robot) throw new RobotNotFoundError(key);
      const actionType = paused ? 'startPause' : 'stopPause';
      if (robot.connection !== 'ONLINE') throw new RobotStateError(`robot ${key} is ${robot.connection}: cannot send ${actionType}`);
      if (robot.cursors.factsheet && !robot.capabilities.includes(actionType)) {
        throw new RobotStateError(`robot ${key} does not declare ${actionType} in its factsheet`);
      }
      const fx = effects();
      sendInstant(fx, key, actionType, now);
      rt(key).pause = { paused, sentAt: now, resends: 0 };
      noteOnTask(fx, key, `${actionType} sent to ${key} by ${by}`, now);
      return { robot, effects: stamp(fx) };
    },
    tick(now = Date.now()) {
      const fx = effects();
      for (const [key, deadline] of adopting) {
        if (now < deadline) continue;
        adopting.delete(key);
        if (rt(key).current || rt(key).next) loseRobot(fx, key, `sent no state within ${adoptTimeoutMs / 1000} s of the hand-over`, now);
      }
      for (const [key, deadline] of returning) {
        if (now < deadline) continue;
        returning.delete(key);
        if (rt(key).current || rt(key).next) {
          loseRobot(fx, key, `sent no state within ${adoptTimeoutMs / 1000} s of coming back`, now);
          dirty = true;
        }
      }
      for (const [key, since] of linkLost) {
        if (now - since < linkLossGraceMs) continue;
        linkLost.delete(key);
        if (rt(key).current || rt(key).next) {
          loseRobot(fx, key, `is CONNECTIONBROKEN (no link for ${linkLossGraceMs / 1000} s)`, now);
          dirty = true;
        }
      }
      for (const key of robots.keys()) askFactsheet(fx, key, now);
      for (const [key, r] of runtime) {
        const work = r.current;
        if (work?.kind !== 'task' || work.waitingSince === null || now - work.waitingSince < confirmTimeoutMs) continue;
        const task = tasks.get(work.taskId)!;
        const kind = task.awaiting;
        save(fx, transition(task, 'failed', `nobody confirmed ${kind} within ${confirmTimeoutMs / 1000} s`, new Date(now)));
        if (work.plan) abandon(fx, key, work.plan.orderId, now);
        finishCurrent(fx, key, now);
      }
      // Orders waiting out a refusal back-off.
      for (const [key, r] of runtime) if (r.current?.kind === 'task' && !r.current.plan) startIfReady(fx, key, now);
      for (const key of runtime.keys()) resendUnconfirmed(fx, key, now);
      for (const key of runtime.keys()) resendPause(fx, key, now);
      dispatch(fx, now);
      return stamp(fx);
    },
    addTasks(stored, now = Date.now()) {
      const fx = effects();
      let added = 0;
      for (const t of stored) {
        if (t.status !== 'queued' || tasks.has(t.id)) continue;
        tasks.set(t.id, t);
        added += 1;
      }
      if (added > 0) dispatch(fx, now);
      return stamp(fx);
    },
    robots: () => [...robots.values()],
    robot: (key) => robots.get(key),
    tasks: (status) => [...tasks.values()].filter((t) => !status || t.status === status),
    task: (id) => tasks.get(id),
    forgetFinished() {
      const referenced = new Set<string>();
      for (const r of runtime.values()) {
        if (r.current?.kind === 'task') referenced.add(r.current.taskId);
        if (r.next) referenced.add(r.next);
      }
      let n = 0;
      for (const [id, t] of tasks) {
        if (TERMINAL.has(t.status) && !referenced.has(id)) {
          tasks.delete(id);
          n++;
        }
      }
      return n;
    },
    stats: () => ({ ...counters, rejected: { ...counters.rejected } }),
  };
  return fleet;
}
