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
 * A robot message is handled synchronously inside the MQTT consumer's hook, so its PUBACK follows
 * the commit like every other message. Tasks that were not finished are loaded from the store at
 * start (the core re-queues the ones that were in progress and says so in their history).
 */
import { readFile } from 'node:fs/promises';
import type { Logger } from 'pino';
import { Counter, Gauge } from 'prom-client';
import type { GatewayConfig } from './config.js';
import { parseConfigText } from './config.js';
import {
  createFleet,
  loadRules,
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
  store: FleetStore;
  /** Where acknowledgements happen (API and OPC UA alike). */
  alerts: { onAcknowledged(listener: (alert: Alert, atMs: number) => void): () => void };
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
}

/** A refused API call: 400 (with the request's issues), 404 or 409. */
export class FleetRequestError extends Error {
  constructor(
    readonly statusCode: 400 | 404 | 409,
    message: string,
  ) {
    super(message);
    this.name = 'FleetRequestError';
  }
}

export interface FleetService {
  readonly map: SiteMap;
  /** A valid robot message (see ingest/classify.ts); synchronous: stored when it returns. */
  handleMessage(topic: string, payload: Buffer, receivedMs: number): void;
  submitTask(body: unknown, by: string): Task;
  cancelTask(id: string, by: string, reason?: string): Task;
  confirmTask(id: string, kind: ApiConfirmation, by: string): Task;
  /** startPause / stopPause to a robot (`manufacturer/serialNumber`); 404 unknown, 409 not ONLINE or not declared. */
  setPaused(robotId: string, paused: boolean, by: string): RobotApiView;
  robots(): RobotApiView[];
  tasks(filter: { status?: TaskStatus; limit: number }): TaskView[];
  task(id: string): TaskView | null;
  /** Robot records with the task each works on (OPC UA). */
  robotRecords(): Array<{ record: RobotRecord; task: Pick<Task, 'id' | 'type'> | null }>;
  /** Unfinished tasks: waiting for a robot, and with a robot. */
  taskCounts(): { queued: number; underway: number };
  /** Called after robots or tasks changed (once per fleet step); returns an unsubscribe function. */
  onChange(listener: () => void): () => void;
  close(): void;
}

/** Robot events are sent when what a dashboard shows changes (battery in whole percent, position in 0.5 m). */
const robotEventKey = (v: RobotApiView) =>
  JSON.stringify({ ...v, lastSeen: null, battery: v.battery === null ? null : Math.round(v.battery), x: v.x === null ? null : Math.round(v.x * 2), y: v.y === null ? null : Math.round(v.y * 2) });

export function createFleetService(deps: FleetServiceDeps): FleetService {
  const { store, log, now, setup } = deps;
  const { map } = setup;
  const restored = store.activeTasks();
  const fleet: Fleet = createFleet({
    map,
    rules: setup.rules,
    policy: deps.config.policy,
    tasks: restored,
    newTaskId: deps.newId,
    maxAttempts: deps.config.maxAttempts,
    confirmTimeoutS: deps.config.confirmTimeoutS,
    finishedTask: (id) => store.task(id),
  });

  // Non-terminal tasks by id, and who holds them: a robot's `taskId` and the OPC UA counts come from here.
  const active = new Map<string, Task>();
  const lastRobotEvent = new Map<string, string>();
  const listeners = new Set<() => void>();
  const loggedCauses = new Set<string>();
  const registers = [deps.metrics.registry];
  const fleetMessages = new Counter({
    name: 'checkpoint_gateway_fleet_messages_total',
    help: 'robot messages by result (accepted, duplicate, stale, rejected)',
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
      for (const r of fleet.robots()) this.inc({ connection: r.connection });
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

  /** Carry out one step's effects: store (one transaction), then publish and notify. */
  const apply = (fx: FleetEffects, atMs: number, audit: FleetChanges['audit'] = []): void => {
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
      const record = fleet.robot(key);
      if (!record) continue;
      const view = robotView(record, currentTaskOf(key), map);
      const eventKey = robotEventKey(view);
      if (lastRobotEvent.get(key) === eventKey) continue;
      pending.set(key, eventKey);
      robots.push(record);
      events.push({ type: 'robot', data: { robot: view } });
    }
    const points = fx.samples.map(robotStatePoint);
    store.commit({ tasks: fx.tasks, robots, points, events, audit }, atMs);
    // Persisted: finished tasks need not stay in memory (the API reads them from the store).
    if (fx.tasks.some((t) => TERMINAL.has(t.status))) fleet.forgetFinished();
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
    if (events.length > 0) for (const l of listeners) l();
  };

  // Restored tasks: persist what the core changed (in progress → re-queued, with the reason).
  const restoredChanged = restored.map((t) => fleet.task(t.id)!).filter((t, i) => t !== restored[i]);
  for (const t of fleet.tasks()) if (!TERMINAL.has(t.status)) active.set(t.id, t);
  if (restoredChanged.length > 0) {
    store.commit({ tasks: restoredChanged, robots: [], points: [], events: restoredChanged.map((t) => ({ type: 'task', data: { task: taskView(t) } })), audit: [] }, now());
    log.info({ requeued: restoredChanged.length }, 'tasks in progress at the last stop re-queued');
  }
  if (restored.length > 0) log.info({ tasks: restored.length }, 'unfinished tasks restored');

  /** Turns the core's refusals into API errors; anything else is a bug (500). */
  const asRequestError = (err: unknown): never => {
    if (err instanceof TaskRequestError) throw new FleetRequestError(400, `body: ${err.issues.join('; ')}`);
    if (err instanceof TaskNotFoundError) throw new FleetRequestError(404, err.message);
    if (err instanceof TaskStateError) throw new FleetRequestError(409, err.message);
    if (err instanceof RobotNotFoundError) throw new FleetRequestError(404, err.message);
    if (err instanceof RobotStateError) throw new FleetRequestError(409, err.message);
    throw err;
  };

  const submitTask = (body: unknown, by: string): Task => {
    const at = now();
    let result: ReturnType<Fleet['submitTask']>;
    try {
      result = fleet.submitTask(body, by, at);
    } catch (err) {
      return asRequestError(err);
    }
    apply(result.effects, at, [{ actor: by, action: 'task.create', target: result.task.id, detail: { type: result.task.type, priority: result.task.priority } }]);
    return fleet.task(result.task.id) ?? store.task(result.task.id)!;
  };

  const cancelTask = (id: string, by: string, reason?: string): Task => {
    const at = now();
    let result: ReturnType<Fleet['cancelTask']>;
    try {
      result = fleet.cancelTask(id, by, at, reason);
    } catch (err) {
      return asRequestError(err);
    }
    apply(result.effects, at, [{ actor: by, action: 'task.cancel', target: id, detail: reason ? { reason } : undefined }]);
    return fleet.task(id) ?? store.task(id)!;
  };

  const confirmTask = (id: string, kind: ApiConfirmation, by: string): Task => {
    const at = now();
    let result: ReturnType<Fleet['confirmTask']>;
    try {
      result = fleet.confirmTask(id, API_CONFIRMATIONS[kind], by, at);
    } catch (err) {
      return asRequestError(err);
    }
    apply(result.effects, at, [{ actor: by, action: 'task.confirm', target: id, detail: { kind } }]);
    return fleet.task(id) ?? store.task(id)!;
  };

  const setPaused = (robotId: string, paused: boolean, by: string): RobotApiView => {
    const at = now();
    let result: ReturnType<Fleet['setPaused']>;
    try {
      result = fleet.setPaused(robotId, paused, by, at);
    } catch (err) {
      return asRequestError(err);
    }
    apply(result.effects, at, [{ actor: by, action: paused ? 'robot.pause' : 'robot.resume', target: robotId }]);
    return robotView(result.robot, currentTaskOf(robotId), map);
  };

  // Rules: runs inside the acknowledgement's transaction, so the task commits with the acknowledgement.
  const unsubscribeAck = deps.alerts.onAcknowledged((alert, atMs) => {
    if (!alert.ack) return;
    try {
      const result = fleet.alertAcknowledged({ alertId: alert.id, site: alert.site, checkpoint: alert.checkpoint, outcome: alert.ack.outcome, by: alert.ack.by }, atMs);
      for (const s of result.skipped) log.warn({ rule: s.ruleId, alert: alert.id, reason: s.reason }, 'rule matched an acknowledged alert but created no task');
      if (result.tasks.length === 0 && result.effects.tasks.length === 0) return;
      apply(
        result.effects,
        atMs,
        result.tasks.map((t) => ({ actor: 'system', action: 'task.create', target: t.id, detail: { type: t.type, rule: t.ruleId, alert: alert.id } })),
      );
    } catch (err) {
      // The acknowledgement stands; the operator can still create the task by hand.
      log.error({ alert: alert.id, err: (err as Error).message }, 'rules failed on an acknowledged alert');
    }
  });

  const timer = setInterval(() => {
    try {
      const at = now();
      apply(fleet.tick(at), at);
    } catch (err) {
      log.error({ err: (err as Error).message }, 'fleet tick failed');
    }
  }, deps.config.tickMs);

  const handleMessage = (topic: string, payload: Buffer, receivedMs: number): void => {
    const before = fleet.stats();
    const fx = fleet.handleMessage(topic, payload, receivedMs);
    const after = fleet.stats();
    for (const result of ['accepted', 'duplicate', 'stale'] as const) {
      if (after[result] > before[result]) fleetMessages.inc({ result }, after[result] - before[result]);
    }
    if (fx.rejected.length > 0) fleetMessages.inc({ result: 'rejected' }, fx.rejected.length);
    apply(fx, receivedMs);
  };

  return {
    map,
    handleMessage,
    submitTask,
    cancelTask,
    confirmTask,
    setPaused,
    robots() {
      const live = fleet.robots().map((r) => robotView(r, currentTaskOf(r.key), map));
      // Robots known before a restart that have not spoken since: their last stored record.
      const known = new Set(live.map((r) => r.id));
      const stored = store.robots().filter((r) => !known.has(r.key)).map((r) => robotView(r, null, map));
      return [...live, ...stored].sort((a, b) => a.id.localeCompare(b.id));
    },
    tasks: (filter) => store.tasks(filter).map(taskView),
    task(id) {
      const t = store.task(id);
      return t ? taskView(t) : null;
    },
    robotRecords: () =>
      fleet.robots().map((record) => {
        const id = currentTaskOf(record.key);
        const t = id ? active.get(id) : undefined;
        return { record, task: t ? { id: t.id, type: t.type } : null };
      }),
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
    close() {
      clearInterval(timer);
      unsubscribeAck();
      listeners.clear();
    },
  };
}
