/**
 * The I/O shell around the pure fleet core (fleet/): it feeds the core robot messages, API calls,
 * alert acknowledgements and a periodic tick, and carries out the effects the core returns —
 *
 *   effects.tasks / robots / samples -> one SQLite transaction: task snapshots (with history),
 *                                       robot snapshots, robot_state points in the series spool,
 *                                       `task` / `robot` events for /api/live, audit rows
 *   effects.publish                  -> orders and instant actions, QoS 1, after that commit
 *   effects.rejected                 -> checkpoint_gateway_invalid_payloads_total + a log line per cause
 *
 * A robot message is handled inside the MQTT consumer's hook, so its PUBACK follows the commit like
 * every other message: synchronously on SQLite, through the returned promise on PostgreSQL (where
 * commits are queued so that they land in the order the core made them). Tasks that were not
 * finished are loaded from the store at start (the core re-queues the ones that were in progress
 * and says so in their history).
 *
 * Leadership (several gateways on one PostgreSQL database): only the leading gateway runs the core
 * — dispatch, orders and instant actions, timers. `follow()` hands the fleet over: a follower
 * stores new tasks as queued (the leader takes them in on its periodic reload), serves reads from
 * the store and refuses cancel/confirm/pause/resume (503 + Retry-After). `lead()` loads tasks and
 * robots from the store and adopts the orders the robots run (Task.running), so no task is
 * dispatched twice. A single gateway (SQLite) leads from the start, as before.
 */
import { readFile } from 'node:fs/promises';
import type { Logger } from 'pino';
import { Counter, Gauge } from 'prom-client';
import type { GatewayConfig } from './config.js';
import { parseConfigText } from './config.js';
import {
  createFleet,
  evaluateRules,
  loadRules,
  newTask,
  parseTaskRequest,
  loadSiteMap,
  RobotNotFoundError,
  RobotStateError,
  TaskNotFoundError,
  TaskRequestError,
  TaskStateError,
  TERMINAL,
  unavailableReason,
  type ConfirmationKind,
  type Fleet,
  type FleetEffects,
  type RobotRecord,
  type Rule,
  type SiteMap,
  type Task,
  type TaskStatus,
} from './fleet/index.js';
import type { GatewayMetrics } from './metrics.js';
import { robotStatePoint } from './series/points.js';
import type { Alert } from './alerts.js';
import type { Backend } from './store/backend.js';
import type { FleetChanges, FleetStore } from './store/fleet.js';

// ---- the API's JSON contract (dashboards code against it) ------------------------------------

/** What operators confirm, as the API names it, and as the core does. */
export const API_CONFIRMATIONS = { area_clear: 'area-clear', received: 'recipient' } as const satisfies Record<string, ConfirmationKind>;
export type ApiConfirmation = keyof typeof API_CONFIRMATIONS;
const apiConfirmation = (k: ConfirmationKind): ApiConfirmation => (k === 'area-clear' ? 'area_clear' : 'received');

export function taskView(t: Task) {
  const { targetNodes, ...request } = t.spec;
  return {
    id: t.id,
    type: t.type,
    status: t.status,
    priority: t.priority,
    ...(t.robot ? { robotId: t.robot } : {}),
    request,
    waitingFor: t.awaiting ? apiConfirmation(t.awaiting) : null,
    ...(t.alertId ? { alertId: t.alertId } : {}),
    history: t.history.map((h) => ({ at: h.at, status: h.status, reason: h.reason, ...(h.robot ? { robotId: h.robot } : {}) })),
    // Beyond the contract: useful to a task detail view.
    ruleId: t.ruleId,
    deadline: t.deadline,
    createdAt: t.createdAt,
    updatedAt: t.updatedAt,
    requestedBy: t.requestedBy,
    targetNodes,
    attempts: t.attempts,
    maxAttempts: t.maxAttempts,
    orderId: t.orderId,
    progress: t.progress,
    confirmations: t.confirmations.map((c) => ({ kind: apiConfirmation(c.kind), by: c.by, at: c.at })),
  };
}
export type TaskView = ReturnType<typeof taskView>;

export function robotView(r: RobotRecord, taskId: string | null, map: SiteMap) {
  const node = r.lastNodeId ? map.nodes.get(r.lastNodeId) : undefined;
  return {
    id: r.key,
    manufacturer: r.manufacturer,
    serialNumber: r.serialNumber,
    // A robot that sent state before any `connection` message: not known to be online.
    connection: r.connection === 'UNKNOWN' ? ('OFFLINE' as const) : r.connection,
    battery: r.batteryCharge,
    charging: r.charging,
    lastNodeId: r.lastNodeId,
    driving: r.driving,
    paused: r.paused,
    errors: r.errors.map((e) => ({ errorType: e.errorType, errorLevel: e.errorLevel, ...(e.errorDescription ? { errorDescription: e.errorDescription } : {}) })),
    ...(taskId ? { taskId } : {}),
    // Beyond the contract.
    available: unavailableReason(r) === null,
    unavailableReason: unavailableReason(r),
    x: r.position?.x ?? node?.x ?? null,
    y: r.position?.y ?? node?.y ?? null,
    floor: node?.floor ?? null,
    eStop: r.eStop,
    operatingMode: r.operatingMode,
    capabilities: r.capabilities,
    lastSeen: new Date(r.lastSeen).toISOString(),
    /** m/s from the factsheet (physicalParameters.speedMax); the dashboards' ETA divides by it. */
    maxSpeed: r.speedMax,
  };
}
export type RobotApiView = ReturnType<typeof robotView>;

/** GET /api/map: undirected edges once (the core keeps both directions), zones with their checkpoint. */
export function mapView(map: SiteMap) {
  const json = map.toJSON();
  const seen = new Set<string>();
  const edges: Array<{ from: string; to: string; length: number; oneWay?: true; maxSpeed?: number; extraTimeS?: number }> = [];
  for (const e of json.edges) {
    if (seen.has(`${e.to}--${e.from}`)) continue;
    seen.add(e.id);
    const back = json.edges.some((b) => b.from === e.to && b.to === e.from);
    edges.push({
      from: e.from,
      to: e.to,
      length: e.length,
      ...(back ? {} : { oneWay: true as const }),
      // What the route planner uses beyond the length (the dashboards' ETA plans the same way).
      ...(e.maxSpeed ? { maxSpeed: e.maxSpeed } : {}),
      ...(e.extraTimeS ? { extraTimeS: e.extraTimeS } : {}),
    });
  }
  return {
    nodes: json.nodes.map((n) => ({ id: n.id, ...(n.name ? { name: n.name } : {}), ...(n.names ? { names: n.names } : {}), x: n.x, y: n.y, floor: n.floor, kind: n.kind })),
    edges,
    zones: json.zones.map((z) => ({ id: z.id, nodes: z.nodes, ...(z.checkpoint ? { checkpoint: z.checkpoint } : {}), ...(z.name ? { name: z.name } : {}), ...(z.names ? { names: z.names } : {}) })),
  };
}

// ---- config --------------------------------------------------------------------------------------

export interface FleetSetup {
  map: SiteMap;
  rules: Rule[];
}

/** The map (inline or from a YAML/JSON file) and the rules, validated; null when no map is configured. */
export async function loadFleetSetup(config: GatewayConfig['fleet']): Promise<FleetSetup | null> {
  if (config.map === undefined) return null;
  let raw: unknown = config.map;
  let where = 'fleet.map';
  if (typeof config.map === 'string') {
    where = `fleet.map (${config.map})`;
    let text: string;
    try {
      text = await readFile(config.map, 'utf8');
    } catch (err) {
      throw new Error(`cannot read ${where}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
    raw = parseConfigText(text, config.map);
  }
  let map: SiteMap;
  try {
    map = loadSiteMap(raw);
  } catch (err) {
    throw new Error(`config ${where}: ${(err as Error).message}`);
  }
  try {
    return { map, rules: loadRules(config.rules, map) };
  } catch (err) {
    throw new Error(`config fleet.rules: ${(err as Error).message}`);
  }
}

// ---- the service ---------------------------------------------------------------------------------

export interface FleetServiceDeps {
  config: GatewayConfig['fleet'];
  setup: FleetSetup;
  /** SQLite (answers at once) or PostgreSQL (answers later). */
  store: FleetStore<Backend>;
  /** Where acknowledgements happen (API and OPC UA alike); on PostgreSQL the listener's promise is awaited. */
  alerts: { onAcknowledged(listener: (alert: Alert, atMs: number) => void | Promise<void>): () => void };
  /** QoS 1 publish through the gateway's MQTT client. */
  publish(topic: string, payload: string): Promise<void>;
  /** New live-feed events were committed. */
  notifyLive(): void;
  /** New points were spooled. */
  notifySeries(count: number): void;
  metrics: GatewayMetrics;
  log: Logger;
  now(): number;
  newId(): string;
  /**
   * Lead the fleet from the start (default true: a single gateway). False: follow until `lead()`.
   * On PostgreSQL a leading start loads the store first (the service follows until then).
   */
  leading?: boolean;
}

/** Seconds a client should wait before retrying a command a follower refused (a hand-over takes a few seconds). */
export const NOT_LEADING_RETRY_AFTER_S = 5;

/** A refused API call: 400 (with the request's issues), 404, 409, or 503 on a gateway that does not lead the fleet. */
export class FleetRequestError extends Error {
  constructor(
    readonly statusCode: 400 | 404 | 409 | 503,
    message: string,
    /** For 503: when to try again (Retry-After, seconds). */
    readonly retryAfterS?: number,
  ) {
    super(message);
    this.name = 'FleetRequestError';
  }
}

const notLeading = (what: string) => new FleetRequestError(503, `this gateway does not lead the fleet: cannot ${what} here; try again shortly`, NOT_LEADING_RETRY_AFTER_S);

export interface FleetService {
  readonly map: SiteMap;
  /**
   * A valid robot message (see ingest/classify.ts); stored when it returns (SQLite) or when the
   * promise resolves (PostgreSQL). A follower does not act on robot messages.
   */
  handleMessage(topic: string, payload: Buffer, receivedMs: number): void | Promise<void>;
  /** On a follower: stored as queued, for the leader to dispatch. */
  submitTask(body: unknown, by: string): Promise<Task>;
  /** 503 (FleetRequestError) on a follower, like confirmTask and setPaused. */
  cancelTask(id: string, by: string, reason?: string): Promise<Task>;
  confirmTask(id: string, kind: ApiConfirmation, by: string): Promise<Task>;
  /** startPause / stopPause to a robot (`manufacturer/serialNumber`); 404 unknown, 409 not ONLINE or not declared. */
  setPaused(robotId: string, paused: boolean, by: string): Promise<RobotApiView>;
  robots(): Promise<RobotApiView[]>;
  tasks(filter: { status?: TaskStatus; limit: number }): Promise<TaskView[]>;
  task(id: string): Promise<TaskView | null>;
  /** Robot records with the task each works on (OPC UA); a follower's come from its last reload. */
  robotRecords(): Array<{ record: RobotRecord; task: Pick<Task, 'id' | 'type'> | null }>;
  /** Unfinished tasks: waiting for a robot, and with a robot. */
  taskCounts(): { queued: number; underway: number };
  /** Called after robots or tasks changed (once per fleet step); returns an unsubscribe function. */
  onChange(listener: () => void): () => void;
  /**
   * Take the fleet over: load tasks and robots from the store, adopt the orders robots run, start
   * dispatching and the timers. Resolves once leading; no-op when leading already.
   */
  lead(): Promise<void>;
  /**
   * Hand the fleet over: stop dispatching and the timers; resolves once every step already taken
   * is stored and its orders published (then another gateway may `lead()`). No-op when following.
   */
  follow(): Promise<void>;
  isLeading(): boolean;
  /** Stops the fleet; resolves once a step under way is stored and its orders published. */
  close(): Promise<void>;
}

/** Robot events are sent when what a dashboard shows changes (battery in whole percent, position in 0.5 m). */
const robotEventKey = (v: RobotApiView) =>
  JSON.stringify({ ...v, lastSeen: null, battery: v.battery === null ? null : Math.round(v.battery), x: v.x === null ? null : Math.round(v.x * 2), y: v.y === null ? null : Math.round(v.y * 2) });

type Maybe<T> = T | Promise<T>;
const isPromise = <T>(v: Maybe<T>): v is Promise<T> => typeof (v as { then?: unknown } | null | undefined)?.then === 'function';
const noop = () => undefined;

export function createFleetService(deps: FleetServiceDeps): FleetService {
  const { store, log, now, setup } = deps;
  const { map } = setup;

  /** The core while this gateway leads the fleet, null while it follows. */
  let fleet: Fleet | null = null;
  // Non-terminal tasks by id, and who holds them: a robot's `taskId` and the OPC UA counts come from
  // here (the leader's core; a follower's last reload).
  const active = new Map<string, Task>();
  /** A follower's robots from its last reload. */
  let storedRobots: RobotRecord[] = [];
  const lastRobotEvent = new Map<string, string>();
  const listeners = new Set<() => void>();
  const loggedCauses = new Set<string>();
  const registers = [deps.metrics.registry];
  const fleetMessages = new Counter({
    name: 'checkpoint_gateway_fleet_messages_total',
    help: 'robot messages by result (accepted, duplicate, stale, rejected; ignored on a gateway not leading the fleet)',
    labelNames: ['result'],
    registers,
  });
  const published = new Counter({ name: 'checkpoint_gateway_fleet_published_total', help: 'orders and instant actions sent, by result', labelNames: ['channel', 'result'], registers });
  new Gauge({
    name: 'checkpoint_gateway_fleet_robots',
    help: 'robots by connection state',
    labelNames: ['connection'],
    registers,
    collect() {
      this.reset();
      for (const r of fleet ? fleet.robots() : storedRobots) this.inc({ connection: r.connection });
    },
  });
  new Gauge({
    name: 'checkpoint_gateway_fleet_tasks',
    help: 'unfinished tasks by status',
    labelNames: ['status'],
    registers,
    collect() {
      this.reset();
      for (const s of ['queued', 'assigned', 'underway'] as const) this.set({ status: s }, 0);
      for (const t of active.values()) this.inc({ status: t.status });
    },
  });

  const currentTaskOf = (key: string): string | null => {
    let best: Task | null = null;
    for (const t of active.values()) {
      if (t.robot !== key) continue;
      // The one it works on: underway, else the one whose order was sent, else the first assigned.
      const rank = (x: Task) => (x.status === 'underway' ? 2 : x.orderId ? 1 : 0);
      if (!best || rank(t) > rank(best)) best = t;
    }
    return best?.id ?? null;
  };
  const notifyListeners = () => {
    for (const l of listeners) l();
  };

  // ---- ordered store access --------------------------------------------------------------------
  // SQLite answers at once: nothing is queued and every step stays synchronous. PostgreSQL commits
  // are queued behind each other, so that a task's snapshots land in the order the core made them
  // (and a reload reads after every commit before it).
  let tail: Promise<unknown> | null = null;
  const ordered = <T>(run: () => Maybe<T>): Maybe<T> => {
    if (tail) {
      const p = tail.then(run);
      tail = p.then(noop, noop);
      return p;
    }
    const result = run();
    if (isPromise(result)) tail = result.then(noop, noop);
    return result;
  };
  const commit = (changes: FleetChanges, atMs: number): Maybe<void> => ordered(() => store.commit(changes, atMs));
  /** The last step's stored-and-published promise (PostgreSQL): `follow()` waits for it. */
  let lastStep: Promise<unknown> = Promise.resolve();

  /** Carry out one step's effects: store (one transaction), then publish and notify. */
  const apply = (core: Fleet, fx: FleetEffects, atMs: number, audit: FleetChanges['audit'] = []): Maybe<void> => {
    const touched = new Set<string>(fx.robots.map((r) => r.key));
    for (const t of fx.tasks) {
      const before = active.get(t.id);
      if (before?.robot) touched.add(before.robot);
      if (t.robot) touched.add(t.robot);
      if (TERMINAL.has(t.status)) active.delete(t.id);
      else active.set(t.id, t);
    }
    const robots: RobotRecord[] = [];
    const events: Array<{ type: 'robot' | 'task'; data: unknown }> = fx.tasks.map((t) => ({ type: 'task' as const, data: { task: taskView(t) } }));
    const pending = new Map<string, string>();
    for (const key of touched) {
      const record = core.robot(key);
      if (!record) continue;
      const view = robotView(record, currentTaskOf(key), map);
      const eventKey = robotEventKey(view);
      if (lastRobotEvent.get(key) === eventKey) continue;
      pending.set(key, eventKey);
      robots.push(record);
      events.push({ type: 'robot', data: { robot: view } });
    }
    const points = fx.samples.map(robotStatePoint);
    const stored = commit({ tasks: fx.tasks, robots, points, events, audit }, atMs);

    const carryOut = () => {
      // Persisted: finished tasks need not stay in memory (the API reads them from the store).
      if (fx.tasks.some((t) => TERMINAL.has(t.status))) core.forgetFinished();
      for (const [key, eventKey] of pending) lastRobotEvent.set(key, eventKey);

      for (const m of fx.publish) {
        const channel = m.topic.slice(m.topic.lastIndexOf('/') + 1);
        deps.publish(m.topic, m.payload).then(
          () => published.inc({ channel, result: 'ok' }),
          (err: Error) => {
            published.inc({ channel, result: 'failed' });
            log.error({ topic: m.topic, err: err.message }, 'cannot publish to a robot');
          },
        );
      }
      for (const r of fx.rejected) {
        deps.metrics.invalid.inc({ topic: r.topic.startsWith('uagv/') ? r.topic : 'other', cause: r.cause });
        const key = `${r.topic}\u0000${r.cause}`;
        if (!loggedCauses.has(key) && loggedCauses.size < 10_000) {
          loggedCauses.add(key);
          log.warn({ topic: r.topic.slice(0, 200), cause: r.cause, detail: r.message.slice(0, 500) }, 'robot message dropped (logged once per topic and cause)');
        }
      }
      if (events.length > 0) deps.notifyLive();
      if (points.length > 0) deps.notifySeries(points.length);
      if (events.length > 0) notifyListeners();
    };
    if (!isPromise(stored)) return carryOut();
    const step = stored.then(carryOut, (err: Error) => {
      // The core moved on; what it would have sent is not sent (the stored state does not say so).
      log.error({ err: err.message, tasks: fx.tasks.length, publish: fx.publish.length }, 'cannot store a fleet step; its orders were not sent');
      throw err;
    });
    lastStep = step.catch(noop);
    return step;
  };

  /** Turns the core's refusals into API errors; anything else is a bug (500). */
  const asRequestError = (err: unknown): never => {
    if (err instanceof TaskRequestError) throw new FleetRequestError(400, `body: ${err.issues.join('; ')}`);
    if (err instanceof TaskNotFoundError) throw new FleetRequestError(404, err.message);
    if (err instanceof TaskStateError) throw new FleetRequestError(409, err.message);
    if (err instanceof RobotNotFoundError) throw new FleetRequestError(404, err.message);
    if (err instanceof RobotStateError) throw new FleetRequestError(409, err.message);
    throw err;
  };

  // ---- leading and following ---------------------------------------------------------------------

  /**
   * Finished tasks the core forgot, for "already finished" answers. SQLite answers at once;
   * on PostgreSQL cancel/confirm read the task first (`prefetchFinished`).
   */
  const prefetched = new Map<string, Task>();
  const finishedTask = (id: string): Task | null => {
    const hit = prefetched.get(id);
    if (hit) return hit;
    const t = store.task(id);
    return isPromise(t) ? (t.catch(noop), null) : t;
  };
  const prefetchFinished = async (core: Fleet, id: string): Promise<void> => {
    if (core.task(id)) return;
    const t = await store.task(id);
    prefetched.clear();
    if (t) prefetched.set(id, t);
  };

  /** Builds the core from what the store holds and persists what restoring changed. */
  const startCore = (restored: Task[], robots: RobotRecord[], restore: 'requeue' | 'adopt'): Maybe<void> => {
    const at = now();
    const core = createFleet({
      map,
      rules: setup.rules,
      policy: deps.config.policy,
      tasks: restored,
      robots,
      restore,
      adoptTimeoutS: deps.config.adoptTimeoutS,
      linkLossGraceS: deps.config.linkLossGraceS,
      now: at,
      newTaskId: deps.newId,
      maxAttempts: deps.config.maxAttempts,
      confirmTimeoutS: deps.config.confirmTimeoutS,
      finishedTask,
    });
    fleet = core;
    lastRobotEvent.clear();
    active.clear();
    for (const t of core.tasks()) if (!TERMINAL.has(t.status)) active.set(t.id, t);
    tickTimer = setInterval(tick, deps.config.tickMs);
    // Restored tasks: persist what the core changed (re-queued or adopted, with the reason).
    const changed = restored.map((t) => core.task(t.id)!).filter((t, i) => t !== restored[i]);
    if (restored.length > 0) log.info({ tasks: restored.length, changed: changed.length, restore }, 'unfinished tasks restored');
    notifyListeners();
    if (changed.length === 0) return;
    return commit({ tasks: changed, robots: [], points: [], events: changed.map((t) => ({ type: 'task', data: { task: taskView(t) } })), audit: [] }, at);
  };

  /** Lead/follow one at a time, in the order asked. */
  let roles: Promise<unknown> = Promise.resolve();
  const serially = (change: () => Promise<void>): Promise<void> => {
    const p = roles.then(change);
    roles = p.catch(noop);
    return p;
  };

  let closed = false;
  // The role asked for last: a lead() whose reads finish after a follow() was asked for does not start.
  let wanted: 'lead' | 'follow' = deps.leading === false ? 'follow' : 'lead';
  const lead = () => {
    wanted = 'lead';
    return serially(async () => {
      if (fleet || closed) return;
      await lastStep;
      const [restored, robots] = await Promise.all([ordered(() => store.activeTasks()), store.robots()]);
      if (closed || wanted !== 'lead') return;
      await startCore(restored, robots, 'adopt');
      log.info({ adopted: [...active.values()].filter((t) => t.running).length }, 'leading the robot fleet');
    });
  };

  const follow = () => {
    wanted = 'follow';
    return serially(async () => {
      if (!fleet) return;
      // No new steps from here; the ones taken are stored and their orders published before this resolves.
      fleet = null;
      clearInterval(tickTimer);
      await lastStep;
      await reload();
      log.info('following: another gateway leads the robot fleet');
    });
  };

  // ---- timers --------------------------------------------------------------------------------------

  const tick = () => {
    const core = fleet;
    if (!core) return;
    try {
      const at = now();
      const done = apply(core, core.tick(at), at);
      if (isPromise(done)) done.catch(noop); // logged in apply
    } catch (err) {
      log.error({ err: (err as Error).message }, 'fleet tick failed');
    }
  };
  let tickTimer: ReturnType<typeof setInterval> | undefined;

  /**
   * Leader: take in the queued tasks other gateways stored. Follower: refresh the unfinished tasks
   * and robots it shows (OPC UA counts, robots' tasks).
   */
  let reloading = false;
  let followerKey = '';
  const reload = async (): Promise<void> => {
    if (reloading) return;
    reloading = true;
    try {
      const core = fleet;
      if (core) {
        const stored = await ordered(() => store.activeTasks());
        if (fleet !== core) return;
        const fx = core.addTasks(stored, now());
        if (fx.tasks.length > 0 || fx.publish.length > 0) await apply(core, fx, now());
        return;
      }
      const [tasks, robots] = await Promise.all([ordered(() => store.activeTasks()), store.robots()]);
      if (fleet) return;
      active.clear();
      for (const t of tasks) active.set(t.id, t);
      storedRobots = robots;
      const key = JSON.stringify([tasks.map((t) => [t.id, t.updatedAt]), robots.map((r) => [r.key, r.lastSeen])]);
      if (key !== followerKey) {
        followerKey = key;
        notifyListeners();
      }
    } catch (err) {
      log.error({ err: (err as Error).message }, 'fleet reload from the store failed');
    } finally {
      reloading = false;
    }
  };
  const reloadTimer = setInterval(() => void reload(), deps.config.reloadMs);

  // ---- start ---------------------------------------------------------------------------------------

  if (deps.leading !== false) {
    const restored = store.activeTasks();
    if (isPromise(restored)) {
      // PostgreSQL: follow until the store has answered, then lead (adopting what robots run).
      restored.catch(noop);
      lead().catch((err: Error) => log.error({ err: err.message }, 'cannot take the robot fleet over'));
    } else {
      // A single gateway restarting (SQLite): the orders went with the old process; re-queue.
      const started = startCore(restored, [], 'requeue');
      if (isPromise(started)) started.catch(noop);
    }
  } else {
    void reload();
  }

  // ---- API -------------------------------------------------------------------------------------------

  /** A follower stores new tasks as queued (the leader dispatches them after its next reload). */
  const storeQueued = async (tasks: Task[], atMs: number, audit: FleetChanges['audit']): Promise<void> => {
    await commit({ tasks, robots: [], points: [], events: tasks.map((t) => ({ type: 'task', data: { task: taskView(t) } })), audit }, atMs);
    for (const t of tasks) active.set(t.id, t);
    deps.notifyLive();
    notifyListeners();
  };

  const submitTask = async (body: unknown, by: string): Promise<Task> => {
    const at = now();
    const core = fleet;
    if (!core) {
      let task: Task;
      try {
        task = newTask(parseTaskRequest(body, map), { id: deps.newId(), now: new Date(at), requestedBy: by, defaultMaxAttempts: deps.config.maxAttempts });
      } catch (err) {
        return asRequestError(err);
      }
      await storeQueued([task], at, [{ actor: by, action: 'task.create', target: task.id, detail: { type: task.type, priority: task.priority } }]);
      return task;
    }
    let result: ReturnType<Fleet['submitTask']>;
    try {
      result = core.submitTask(body, by, at);
    } catch (err) {
      return asRequestError(err);
    }
    await apply(core, result.effects, at, [{ actor: by, action: 'task.create', target: result.task.id, detail: { type: result.task.type, priority: result.task.priority } }]);
    return core.task(result.task.id) ?? (await store.task(result.task.id))!;
  };

  const cancelTask = async (id: string, by: string, reason?: string): Promise<Task> => {
    let core = fleet;
    if (!core) throw notLeading('cancel a task');
    await prefetchFinished(core, id);
    // The fleet may have been handed over while reading.
    core = fleet;
    if (!core) throw notLeading('cancel a task');
    const at = now();
    let result: ReturnType<Fleet['cancelTask']>;
    try {
      result = core.cancelTask(id, by, at, reason);
    } catch (err) {
      return asRequestError(err);
    }
    await apply(core, result.effects, at, [{ actor: by, action: 'task.cancel', target: id, detail: reason ? { reason } : undefined }]);
    return core.task(id) ?? (await store.task(id))!;
  };

  const confirmTask = async (id: string, kind: ApiConfirmation, by: string): Promise<Task> => {
    let core = fleet;
    if (!core) throw notLeading('confirm a task');
    await prefetchFinished(core, id);
    core = fleet;
    if (!core) throw notLeading('confirm a task');
    const at = now();
    let result: ReturnType<Fleet['confirmTask']>;
    try {
      result = core.confirmTask(id, API_CONFIRMATIONS[kind], by, at);
    } catch (err) {
      return asRequestError(err);
    }
    await apply(core, result.effects, at, [{ actor: by, action: 'task.confirm', target: id, detail: { kind } }]);
    return core.task(id) ?? (await store.task(id))!;
  };

  const setPaused = async (robotId: string, paused: boolean, by: string): Promise<RobotApiView> => {
    const core = fleet;
    if (!core) throw notLeading(paused ? 'pause a robot' : 'resume a robot');
    const at = now();
    let result: ReturnType<Fleet['setPaused']>;
    try {
      result = core.setPaused(robotId, paused, by, at);
    } catch (err) {
      return asRequestError(err);
    }
    await apply(core, result.effects, at, [{ actor: by, action: paused ? 'robot.pause' : 'robot.resume', target: robotId }]);
    return robotView(result.robot, currentTaskOf(robotId), map);
  };

  // Rules: on SQLite inside the acknowledgement's transaction (the task commits with it), on
  // PostgreSQL right after it. A follower stores the tasks as queued for the leader.
  const unsubscribeAck = deps.alerts.onAcknowledged((alert, atMs) => {
    if (!alert.ack) return;
    const failed = (err: Error) => {
      // The acknowledgement stands; the operator can still create the task by hand.
      log.error({ alert: alert.id, err: err.message }, 'rules failed on an acknowledged alert');
    };
    const event = { alertId: alert.id, site: alert.site, checkpoint: alert.checkpoint, outcome: alert.ack.outcome, by: alert.ack.by };
    try {
      const core = fleet;
      if (!core) {
        const { matches, skipped } = evaluateRules(setup.rules, event, map);
        for (const s of skipped) log.warn({ rule: s.ruleId, alert: alert.id, reason: s.reason }, 'rule matched an acknowledged alert but created no task');
        if (matches.length === 0) return;
        const created = matches.map((m) =>
          newTask(parseTaskRequest(m.request, map), { id: deps.newId(), now: new Date(atMs), alertId: m.alertId, ruleId: m.ruleId, requestedBy: event.by ?? null }),
        );
        return storeQueued(
          created,
          atMs,
          created.map((t) => ({ actor: 'system', action: 'task.create', target: t.id, detail: { type: t.type, rule: t.ruleId, alert: alert.id } })),
        ).catch(failed);
      }
      const result = core.alertAcknowledged(event, atMs);
      for (const s of result.skipped) log.warn({ rule: s.ruleId, alert: alert.id, reason: s.reason }, 'rule matched an acknowledged alert but created no task');
      if (result.tasks.length === 0 && result.effects.tasks.length === 0) return;
      const done = apply(
        core,
        result.effects,
        atMs,
        result.tasks.map((t) => ({ actor: 'system', action: 'task.create', target: t.id, detail: { type: t.type, rule: t.ruleId, alert: alert.id } })),
      );
      if (isPromise(done)) return done.catch(failed);
    } catch (err) {
      failed(err as Error);
    }
  });

  const handleMessage = (topic: string, payload: Buffer, receivedMs: number): void | Promise<void> => {
    const core = fleet;
    if (!core) {
      // The leading gateway acts on it (and stores the robot's record).
      fleetMessages.inc({ result: 'ignored' });
      return;
    }
    const before = core.stats();
    const fx = core.handleMessage(topic, payload, receivedMs);
    const after = core.stats();
    for (const result of ['accepted', 'duplicate', 'stale'] as const) {
      if (after[result] > before[result]) fleetMessages.inc({ result }, after[result] - before[result]);
    }
    if (fx.rejected.length > 0) fleetMessages.inc({ result: 'rejected' }, fx.rejected.length);
    return apply(core, fx, receivedMs);
  };

  return {
    map,
    handleMessage,
    submitTask,
    cancelTask,
    confirmTask,
    setPaused,
    async robots() {
      const core = fleet;
      const stored = await store.robots();
      if (!core) return stored.map((r) => robotView(r, currentTaskOf(r.key), map)).sort((a, b) => a.id.localeCompare(b.id));
      const live = core.robots().map((r) => robotView(r, currentTaskOf(r.key), map));
      // Robots known before a restart that have not spoken since: their last stored record.
      const known = new Set(live.map((r) => r.id));
      const rest = stored.filter((r) => !known.has(r.key)).map((r) => robotView(r, null, map));
      return [...live, ...rest].sort((a, b) => a.id.localeCompare(b.id));
    },
    tasks: async (filter) => (await store.tasks(filter)).map(taskView),
    async task(id) {
      const t = await store.task(id);
      return t ? taskView(t) : null;
    },
    robotRecords() {
      const records = fleet ? fleet.robots() : storedRobots;
      return records.map((record) => {
        const id = currentTaskOf(record.key);
        const t = id ? active.get(id) : undefined;
        return { record, task: t ? { id: t.id, type: t.type } : null };
      });
    },
    taskCounts() {
      let queued = 0;
      let underway = 0;
      for (const t of active.values()) {
        if (t.status === 'queued') queued += 1;
        else underway += 1;
      }
      return { queued, underway };
    },
    onChange(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    lead,
    follow,
    isLeading: () => fleet !== null,
    async close() {
      closed = true;
      fleet = null;
      clearInterval(tickTimer);
      clearInterval(reloadTimer);
      unsubscribeAck();
      listeners.clear();
      // A step under way is stored and its orders published before the store may be closed.
      await lastStep.catch(noop);
    },
  };
}
