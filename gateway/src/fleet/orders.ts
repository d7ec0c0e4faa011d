/**
 * VDA 5050 orders built from the map: a chain of released nodes and edges along shortest paths,
 * with actions at the stops (pick, drop, waitForTrigger, disinfect, startCharging), and the
 * progress of an order read back from the robot's state.
 *
 * Human confirmations (recipient, area clear) work with any conforming robot: the master control
 * holds the work behind the confirmation back. The order ends at the waiting point; once a human
 * confirms, the rest (drop, disinfect, the way on) is sent as the next order from that node. Only
 * a robot whose factsheet declares both `waitForTrigger` and our custom instant action `trigger`
 * gets a `waitForTrigger` action (HARD) that the master completes with `trigger` (parameter
 * `actionId` = the waiting action); see firmware-bridge/PROTOCOL.md, "Actions".
 *
 * Pick and drop carry the parameters of VDA 5050 2.0 §6.8.1: `stationType` and `loadType`
 * (required for pick), `stationName` (the node), and `loadId`; what is carried goes into
 * `actionDescription`, which the standard leaves free.
 *
 * Patrols are sent one round at a time; the next round is an order update (same orderId,
 * orderUpdateId + 1) stitched at the last base node, sent when the robot is on its last edge.
 */
import {
  vda5050Header,
  type RobotAddress,
  type Vda5050Action,
  type Vda5050Edge,
  type Vda5050InstantActions,
  type Vda5050Node,
  type Vda5050Order,
} from '@checkpoint/protocol';
import type { SiteMap } from './map.js';
import type { RobotRecord } from './registry.js';
import type { ConfirmationKind, Task, TaskProgress } from './tasks.js';

export const TRIGGER_ACTION = 'trigger';
export const DISINFECT_ACTION = 'disinfect';

/** Actions a robot must list in its factsheet to be given a task of each type. */
export const REQUIRED_ACTIONS: Record<Task['type'], string[]> = {
  delivery: ['pick', 'drop'],
  disinfection: [DISINFECT_ACTION],
  patrol: [],
  charge: ['startCharging'],
};

/** A stop on the route and what to do there. */
export interface Stop {
  node: string;
  actions: Array<{ type: string; params?: Record<string, string | number | boolean>; trigger?: ConfirmationKind; description?: string }>;
}

/** The robot can wait for a confirmation itself: it declares waitForTrigger and our `trigger` instant action. */
export function confirmsOnRobot(capabilities: readonly string[]): boolean {
  return capabilities.includes('waitForTrigger') && capabilities.includes(TRIGGER_ACTION);
}

/** Standard pick/drop parameters (§6.8.1) used when a task does not say. */
export interface LoadPolicy {
  stationType: string;
  loadType: string;
}
export const DEFAULT_LOAD: LoadPolicy = { stationType: 'floor', loadType: 'tote' };

/**
 * The pick/drop parameters for a robot: our default load type, unless its factsheet declares load
 * sets without it; then the first type it declares (§6.8.1 leaves load types to the maker).
 */
export function loadPolicyFor(declaredLoadTypes: readonly string[] | undefined): LoadPolicy {
  const declared = declaredLoadTypes ?? [];
  if (declared.length === 0 || declared.includes(DEFAULT_LOAD.loadType)) return DEFAULT_LOAD;
  return { ...DEFAULT_LOAD, loadType: declared[0]! };
}

/** What the master control keeps about an order it sent. */
export interface OrderPlan {
  orderId: string;
  orderUpdateId: number;
  /** Nodes and edges of the latest message (for an update: from the stitching node). */
  nodes: Vda5050Node[];
  edges: Vda5050Edge[];
  /** Every action id of this order so far, in order, with its type. */
  actions: Array<{ actionId: string; actionType: string }>;
  /** waitForTrigger action id → what it waits for. */
  triggers: Record<string, ConfirmationKind>;
  /** Sequence id of the last base node. */
  lastSequenceId: number;
  lastNodeId: string;
  /** Total base nodes sent so far. */
  nodesTotal: number;
  /** Patrol rounds still to send as order updates. */
  roundsLeft: number;
  /** Patrol loop to repeat. */
  loop: string[];
  /** Held back until a human confirms (master-side confirmation): the stops to send after it, from `node`. */
  hold: { kind: ConfirmationKind; node: string; rest: Stop[] } | null;
}

export class RouteError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RouteError';
  }
}

/** The stops of a task, in order, starting from where the robot is. */
export function stopsOf(task: Task, map: SiteMap, startNode: string, speed: number, policy: { disinfectDurationS: number; load?: LoadPolicy }): Stop[] {
  const spec = task.spec;
  const load = policy.load ?? DEFAULT_LOAD;
  switch (spec.type) {
    case 'delivery': {
      const confirmRecipient = spec.confirmRecipient ?? true;
      const loadParams = { stationType: load.stationType, loadType: load.loadType, loadId: task.id };
      return [
        { node: spec.from, actions: [{ type: 'pick', params: { ...loadParams, stationName: spec.from }, description: `pick up ${spec.what}` }] },
        {
          node: spec.to,
          actions: [
            ...(confirmRecipient ? [{ type: 'waitForTrigger', params: { triggerType: 'recipient' }, trigger: 'recipient' as const }] : []),
            { type: 'drop', params: { ...loadParams, stationName: spec.to }, description: `hand over ${spec.what}${spec.recipient ? ` to ${spec.recipient}` : ''}` },
          ],
        },
      ];
    }
    case 'disinfection': {
      // Visit the zone's nodes nearest-first; wait for "area clear" at the first one before any UV.
      const order = nearestNeighbourOrder(spec.targetNodes, startNode, map, speed);
      const durationS = spec.durationS ?? policy.disinfectDurationS;
      return order.map((node, i): Stop => ({
        node,
        actions: [
          ...(i === 0 ? [{ type: 'waitForTrigger', params: { triggerType: 'areaClear' }, trigger: 'area-clear' as const }] : []),
          { type: DISINFECT_ACTION, params: { durationS } },
        ],
      }));
    }
    case 'patrol':
      return [...spec.nodes, spec.nodes[0]!].map((node) => ({ node, actions: [] }));
    case 'charge': {
      const charger = spec.targetNodes[0] ?? map.nearestOfKind(startNode, 'charger');
      if (!charger) throw new RouteError(`no charger reachable from ${startNode}`);
      return [{ node: charger, actions: [{ type: 'startCharging' }] }];
    }
  }
}

function nearestNeighbourOrder(nodes: string[], from: string, map: SiteMap, speed: number): string[] {
  const left = new Set(nodes);
  const out: string[] = [];
  let at = from;
  while (left.size > 0) {
    let best: string | null = null;
    let bestT = Infinity;
    for (const n of left) {
      const t = map.travelTimeS(at, n, speed);
      if (t < bestT || best === null) [best, bestT] = [n, t];
    }
    out.push(best!);
    left.delete(best!);
    at = best!;
  }
  return out;
}

/** Nodes and edges for a route through `stops`, starting at `startNode` with sequence id `firstSeq`. */
function route(
  map: SiteMap,
  orderId: string,
  startNode: string,
  stops: Stop[],
  speed: number,
  firstSeq: number,
  actionCounter: { n: number },
  startActions: Vda5050Action[] = [],
  startDeviationXY?: number,
): { nodes: Vda5050Node[]; edges: Vda5050Edge[]; triggers: Record<string, ConfirmationKind> } {
  const nodes: Vda5050Node[] = [];
  const edges: Vda5050Edge[] = [];
  const triggers: Record<string, ConfirmationKind> = {};
  let seq = firstSeq;
  const pushNode = (nodeId: string, actions: Vda5050Action[]) => {
    const n = map.node(nodeId);
    nodes.push({
      nodeId,
      sequenceId: seq,
      released: true,
      nodePosition: { x: n.x, y: n.y, mapId: map.mapIdOf(nodeId) },
      actions,
    });
    seq += 1;
  };
  const makeActions = (stop: Stop): Vda5050Action[] =>
    stop.actions.map((a) => {
      const actionId = `${orderId}/a${actionCounter.n++}`;
      if (a.trigger) triggers[actionId] = a.trigger;
      return {
        actionType: a.type,
        actionId,
        ...(a.description ? { actionDescription: a.description.slice(0, 256) } : {}),
        blockingType: 'HARD',
        ...(a.params ? { actionParameters: Object.entries(a.params).map(([key, value]) => ({ key, value })) } : {}),
      };
    });

  pushNode(startNode, startActions);
  // §6.6.3.1: a robot stopped between nodes (after a cancel mid-edge) counts the first node as traversed.
  if (startDeviationXY !== undefined) nodes[0]!.nodePosition!.allowedDeviationXY = startDeviationXY;
  let at = startNode;
  for (const stop of stops) {
    const path = map.shortestPath(at, stop.node, speed);
    if (!path) throw new RouteError(`no route from ${at} to ${stop.node}`);
    if (path.edges.length === 0) {
      // Already there: the actions go on the node we are at.
      const last = nodes[nodes.length - 1]!;
      last.actions = [...last.actions, ...makeActions(stop)];
      continue;
    }
    path.edges.forEach((e, i) => {
      edges.push({ edgeId: e.id, sequenceId: seq, released: true, startNodeId: e.from, endNodeId: e.to, length: e.length, ...(e.maxSpeed ? { maxSpeed: e.maxSpeed } : {}), actions: [] });
      seq += 1;
      pushNode(e.to, i === path.edges.length - 1 ? makeActions(stop) : []);
    });
    at = stop.node;
  }
  return { nodes, edges, triggers };
}

export interface BuildOrderOptions {
  orderId: string;
  speed: number;
  disinfectDurationS: number;
  load?: LoadPolicy;
  /** The robot completes waitForTrigger on our `trigger` (see confirmsOnRobot); otherwise the master holds the rest back. Default true. */
  confirmOnRobot?: boolean;
  /** Set when the robot stands away from its last node (see startDeviation). */
  startDeviationXY?: number;
}

/**
 * The allowedDeviationXY for an order's first node when the robot is not on its last node (e.g.
 * stopped mid-edge by a cancelOrder): its distance plus a margin, so that it accepts the order
 * (VDA 5050 §6.6.3.1, second option). Undefined when it is on the node or its position is unknown.
 */
export function startDeviation(map: SiteMap, lastNodeId: string, position: { x: number; y: number } | null, marginM = 0.5): number | undefined {
  if (!position) return undefined;
  const n = map.node(lastNodeId);
  const d = Math.hypot(position.x - n.x, position.y - n.y);
  return d > 0.05 ? Math.round((d + marginM) * 1000) / 1000 : undefined;
}

/** Splits stops at the first confirmation: what to send now, and what to hold until it. */
function splitAtConfirmation(stops: Stop[]): { now: Stop[]; hold: OrderPlan['hold'] } {
  for (let i = 0; i < stops.length; i++) {
    const stop = stops[i]!;
    const j = stop.actions.findIndex((a) => a.trigger);
    if (j < 0) continue;
    return {
      now: [...stops.slice(0, i), { node: stop.node, actions: stop.actions.slice(0, j) }],
      hold: { kind: stop.actions[j]!.trigger!, node: stop.node, rest: [{ node: stop.node, actions: stop.actions.slice(j + 1) }, ...stops.slice(i + 1)] },
    };
  }
  return { now: stops, hold: null };
}

/** The first message of a task's order, from the robot's current node. Throws RouteError. */
export function buildOrder(task: Task, map: SiteMap, startNode: string, o: BuildOrderOptions): OrderPlan {
  const all = stopsOf(task, map, startNode, o.speed, o);
  const { now: stops, hold } = o.confirmOnRobot === false ? splitAtConfirmation(all) : { now: all, hold: null };
  const counter = { n: 0 };
  const r = route(map, o.orderId, startNode, stops, o.speed, 0, counter, [], o.startDeviationXY);
  const plan = planOf(o.orderId, 0, r, task.spec.type === 'patrol' ? (task.spec.repeat ?? 1) - 1 : 0, task.spec.type === 'patrol' ? task.spec.nodes : []);
  return { ...plan, hold };
}

/**
 * After a master-side confirmation: the held-back stops as a new order (`orderId`) from the node
 * the robot waits at. Further confirmations in them are held again.
 */
export function buildContinuation(plan: OrderPlan, map: SiteMap, orderId: string, speed: number): OrderPlan {
  if (!plan.hold) throw new RouteError(`order ${plan.orderId} holds nothing back`);
  const { now: stops, hold } = splitAtConfirmation(plan.hold.rest);
  const r = route(map, orderId, plan.hold.node, stops, speed, 0, { n: 0 });
  return { ...planOf(orderId, 0, r, 0, []), hold };
}

/** A plain move (parking) with no actions. */
export function buildMoveOrder(map: SiteMap, startNode: string, target: string, orderId: string, speed: number, startDeviationXY?: number): OrderPlan {
  const r = route(map, orderId, startNode, [{ node: target, actions: [] }], speed, 0, { n: 0 }, [], startDeviationXY);
  return planOf(orderId, 0, r, 0, []);
}

function planOf(
  orderId: string,
  orderUpdateId: number,
  r: ReturnType<typeof route>,
  roundsLeft: number,
  loop: string[],
  previous?: OrderPlan,
): OrderPlan {
  const last = r.nodes[r.nodes.length - 1]!;
  const actions = r.nodes.flatMap((n) => n.actions.map((a) => ({ actionId: a.actionId, actionType: a.actionType })));
  return {
    orderId,
    orderUpdateId,
    nodes: r.nodes,
    edges: r.edges,
    actions: [...(previous?.actions ?? []), ...actions],
    triggers: { ...(previous?.triggers ?? {}), ...r.triggers },
    lastSequenceId: last.sequenceId,
    lastNodeId: last.nodeId,
    nodesTotal: (previous ? previous.nodesTotal - 1 : 0) + r.nodes.length,
    roundsLeft,
    loop,
    hold: previous?.hold ?? null,
  };
}

/**
 * The next patrol round as an order update (orderUpdateId + 1), stitched at the last base node,
 * or null when no round is left.
 */
export function nextPatrolUpdate(plan: OrderPlan, map: SiteMap, speed: number): OrderPlan | null {
  if (plan.roundsLeft <= 0 || plan.loop.length === 0) return null;
  const stops = [...plan.loop.slice(plan.loop[0] === plan.lastNodeId ? 1 : 0), plan.loop[0]!].map((node) => ({ node, actions: [] }));
  const r = route(map, plan.orderId, plan.lastNodeId, stops, speed, plan.lastSequenceId, { n: plan.actions.length });
  // The stitching node is resent unchanged (no actions: those were sent with the previous update).
  r.nodes[0]!.actions = [];
  return planOf(plan.orderId, plan.orderUpdateId + 1, r, plan.roundsLeft - 1, plan.loop, plan);
}

/** The message to publish on `uagv/v2/{m}/{s}/order`. */
export function orderMessage(plan: OrderPlan, robot: RobotAddress, headerId: number, now: Date, version?: string): Vda5050Order {
  return { ...vda5050Header(robot, headerId, now, version), orderId: plan.orderId, orderUpdateId: plan.orderUpdateId, nodes: plan.nodes, edges: plan.edges };
}

export function cancelOrderMessage(robot: RobotAddress, headerId: number, actionId: string, now: Date, version?: string): Vda5050InstantActions {
  return { ...vda5050Header(robot, headerId, now, version), actions: [{ actionType: 'cancelOrder', actionId, blockingType: 'HARD' }] };
}

export function triggerMessage(robot: RobotAddress, headerId: number, actionId: string, waitingActionId: string, now: Date, version?: string): Vda5050InstantActions {
  return {
    ...vda5050Header(robot, headerId, now, version),
    actions: [{ actionType: TRIGGER_ACTION, actionId, blockingType: 'NONE', actionParameters: [{ key: 'actionId', value: waitingActionId }] }],
  };
}

/** An instant action without parameters (factsheetRequest, stopCharging, startPause, ...). */
export function instantActionMessage(robot: RobotAddress, headerId: number, actionType: string, actionId: string, now: Date, version?: string): Vda5050InstantActions {
  return { ...vda5050Header(robot, headerId, now, version), actions: [{ actionType, actionId, blockingType: 'NONE' }] };
}

export type OrderVerdict =
  | { status: 'not-started' }
  | { status: 'running'; progress: TaskProgress; awaiting: ConfirmationKind | null; waitingActionId: string | null; needsUpdate: boolean }
  | { status: 'finished'; progress: TaskProgress }
  | { status: 'failed'; progress: TaskProgress; reason: string };

/** The id under which a master-side hold is tracked like a waiting action. */
export const holdId = (plan: OrderPlan) => `${plan.orderId}/hold`;

/** Reads the robot's state against the order we sent it. */
export function orderProgress(plan: OrderPlan, robot: RobotRecord): OrderVerdict {
  if (robot.orderId !== plan.orderId) return { status: 'not-started' };
  const statuses = new Map(robot.actionStates.map((a) => [a.actionId, a]));
  const actions: Record<string, string> = {};
  for (const a of plan.actions) actions[a.actionId] = statuses.get(a.actionId)?.actionStatus ?? 'WAITING';
  const remaining = robot.nodeStates.length;
  const progress: TaskProgress = {
    nodesDone: Math.max(0, plan.nodesTotal - remaining),
    nodesTotal: plan.nodesTotal,
    lastNodeId: robot.lastNodeId,
    actions,
  };
  const failed = plan.actions.find((a) => statuses.get(a.actionId)?.actionStatus === 'FAILED');
  if (failed) {
    const why = statuses.get(failed.actionId)!.resultDescription;
    return { status: 'failed', progress, reason: `action ${failed.actionType} (${failed.actionId}) failed${why ? `: ${why}` : ''}` };
  }
  const allDone = plan.actions.every((a) => actions[a.actionId] === 'FINISHED');
  const atEnd = robot.orderUpdateId === plan.orderUpdateId && remaining === 0 && robot.edgeStates.length === 0;
  if (atEnd && allDone && plan.roundsLeft === 0) {
    // Master-side confirmation: the robot is done with this part and waits where it stands.
    if (plan.hold) return { status: 'running', progress, awaiting: plan.hold.kind, waitingActionId: holdId(plan), needsUpdate: false };
    return { status: 'finished', progress };
  }
  const waiting = Object.keys(plan.triggers).find((id) => {
    const s = actions[id];
    return s === 'RUNNING' || s === 'INITIALIZING';
  });
  const needsUpdate = plan.roundsLeft > 0 && robot.orderUpdateId === plan.orderUpdateId && remaining <= 1;
  return { status: 'running', progress, awaiting: waiting ? plan.triggers[waiting]! : null, waitingActionId: waiting ?? null, needsUpdate };
}

/** Length (m) and action time (s) of a task's route between its own stops, for cost and battery estimates. */
export function taskExtent(
  task: Task,
  map: SiteMap,
  speed: number,
  durations: Record<string, number>,
  disinfectDurationS: number,
): { startNode: string | null; endNode: string | null; lengthM: number; actionS: number } {
  const targets = task.spec.targetNodes;
  if (targets.length === 0) return { startNode: null, endNode: null, lengthM: 0, actionS: durations.startCharging ?? 0 };
  const stops = stopsOf(task, map, targets[0]!, speed, { disinfectDurationS });
  let lengthM = 0;
  let actionS = 0;
  let at = stops[0]!.node;
  for (const stop of stops) {
    const p = map.shortestPath(at, stop.node, speed);
    lengthM += p ? p.lengthM : Infinity;
    at = stop.node;
    for (const a of stop.actions) {
      actionS += a.type === DISINFECT_ACTION ? Number(a.params?.durationS ?? disinfectDurationS) : (durations[a.type] ?? 0);
    }
  }
  const rounds = task.spec.type === 'patrol' ? (task.spec.repeat ?? 1) : 1;
  return { startNode: stops[0]!.node, endNode: at, lengthM: lengthM * rounds, actionS };
}
