/**
 * Who does what: a pure function from robots, queued tasks and the map to a plan.
 *
 *  - A robot below `minBatteryPct` gets no work and is sent to the nearest free charger; a
 *    charging robot is available again from `resumeBatteryPct`.
 *  - A robot whose battery would not last approach + task + the way to a charger (keeping
 *    `minBatteryPct` in reserve) is skipped for that task.
 *  - cost(robot, task) = time to finish its current work + travel to the task's first stop + the
 *    task itself at the robot's speed (quickest finish), minus a priority/deadline bonus so that
 *    urgent tasks win when there are more tasks than robots.
 *  - Urgent tasks (priority >= `urgentPriority`) are taken first, greedily, each by its cheapest
 *    robot; the rest are assigned together, optimally (Hungarian / Munkres).
 *  - Robots with nothing to do return to the nearest free parking node.
 * A busy robot can take one next task (it starts when the current one ends); parking moves are
 * not "work" and cost nothing to abandon.
 */
import { munkres } from 'munkres';
import type { SiteMap } from './map.js';
import type { RobotKey } from './registry.js';

export interface DispatchPolicy {
  /** Below this a robot gets no work and goes to charge (RMF 10 %, openTCS 30 %). */
  minBatteryPct: number;
  /** A charging robot takes work again from this charge. */
  resumeBatteryPct: number;
  /** Battery percent used per metre driven. */
  drainPctPerM: number;
  /** Battery percent used per second of actions (UV lamps, lifting). */
  drainPctPerActionS: number;
  /** m/s when the factsheet does not say. */
  defaultSpeed: number;
  urgentPriority: number;
  /** Seconds of cost one priority point is worth. */
  priorityWeightS: number;
  /** Tasks closer than this to their deadline get a bonus growing to the same amount. */
  deadlineHorizonS: number;
  /** Expected durations of action types (s). */
  actionDurationS: Record<string, number>;
  disinfectDurationS: number;
  parkIdleRobots: boolean;
}

export const DEFAULT_POLICY: DispatchPolicy = {
  minBatteryPct: 20,
  resumeBatteryPct: 50,
  drainPctPerM: 0.02,
  drainPctPerActionS: 0.005,
  defaultSpeed: 0.7,
  urgentPriority: 80,
  priorityWeightS: 10,
  deadlineHorizonS: 600,
  actionDurationS: { pick: 20, drop: 20, waitForTrigger: 60, startCharging: 5 },
  disinfectDurationS: 600,
  parkIdleRobots: true,
};

export interface RobotCandidate {
  key: RobotKey;
  /** Where it is now. */
  node: string;
  speed: number;
  batteryPct: number;
  charging: boolean;
  /** Null when it can take work; otherwise why not (offline, e-stop, fatal error...). */
  unavailable: string | null;
  capabilities: readonly string[];
  /** False while the robot has not published a factsheet (its capabilities are unknown, not empty). */
  hasFactsheet?: boolean;
  /** Its current task, if any (parking is not a task). */
  current: { endNode: string; remainingS: number; remainingM: number; type: string } | null;
  /** It already has a next task lined up. */
  hasNext: boolean;
  /** It is driving to a parking spot or a charger right now (that move can be dropped). */
  movingTo: string | null;
}

export interface TaskCandidate {
  id: string;
  priority: number;
  /** ms since epoch, or null. */
  deadline: number | null;
  createdAt: number;
  /** First stop; null for a charge task without a given charger (any charger). */
  startNode: string | null;
  endNode: string | null;
  lengthM: number;
  actionS: number;
  requires: readonly string[];
  pinnedRobot: RobotKey | null;
}

export interface Assignment {
  taskId: string;
  robot: RobotKey;
  /** Estimated seconds until the task is done. */
  finishS: number;
  /** The robot is busy: the task waits until its current one ends. */
  asNext: boolean;
  how: 'greedy' | 'optimal';
}

export interface DispatchPlan {
  assignments: Assignment[];
  /** Queued tasks nobody can take now, with the reason for each robot class. */
  unassigned: Array<{ taskId: string; reason: string }>;
  toCharge: Array<{ robot: RobotKey; charger: string }>;
  toPark: Array<{ robot: RobotKey; node: string }>;
}

export interface DispatchInput {
  map: SiteMap;
  robots: readonly RobotCandidate[];
  tasks: readonly TaskCandidate[];
  now: number;
  policy?: Partial<DispatchPolicy>;
  /** Chargers / parking nodes already taken or targeted (by robots outside this input). */
  occupied?: ReadonlySet<string>;
}

type Eval = { finishS: number; cost: number } | { infeasible: string };

export function assignTasks(input: DispatchInput): DispatchPlan {
  const policy = { ...DEFAULT_POLICY, ...input.policy };
  const { map, now } = input;
  const plan: DispatchPlan = { assignments: [], unassigned: [], toCharge: [], toPark: [] };
  const occupied = new Set(input.occupied ?? []);
  for (const r of input.robots) {
    occupied.add(r.node);
    if (r.movingTo) occupied.add(r.movingTo);
  }

  // 1. Who needs charge, who can work.
  const workers: RobotCandidate[] = [];
  for (const r of input.robots) {
    if (r.unavailable) continue;
    const low = r.batteryPct < policy.minBatteryPct || (r.charging && r.batteryPct < policy.resumeBatteryPct);
    if (low) {
      const goingToCharger = r.movingTo !== null && map.nodes.get(r.movingTo)?.kind === 'charger';
      const atCharger = map.nodes.get(r.node)?.kind === 'charger';
      if (!r.charging && !goingToCharger && !atCharger && r.current === null) {
        const charger = map.nearestOfKind(r.node, 'charger', occupied);
        if (charger) {
          plan.toCharge.push({ robot: r.key, charger });
          occupied.add(charger);
        }
      }
      continue;
    }
    if (!r.hasNext) workers.push(r);
  }

  // 2. Evaluate every (robot, task) pair.
  const evaluate = (r: RobotCandidate, t: TaskCandidate): Eval => {
    if (t.pinnedRobot && t.pinnedRobot !== r.key) return { infeasible: 'pinned to another robot' };
    if (r.hasFactsheet === false && t.requires.length > 0) return { infeasible: 'no factsheet yet (requested)' };
    const missing = t.requires.filter((a) => !r.capabilities.includes(a));
    if (missing.length > 0) return { infeasible: `cannot ${missing.join(', ')}` };
    const from = r.current ? r.current.endNode : r.node;
    const busyS = r.current ? r.current.remainingS : 0;
    const busyM = r.current ? r.current.remainingM : 0;
    let start = t.startNode;
    if (start === null) start = map.nearestOfKind(from, 'charger');
    if (start === null) return { infeasible: 'no reachable charger' };
    const approachS = map.travelTimeS(from, start, r.speed);
    if (!Number.isFinite(approachS)) return { infeasible: `no route from ${from} to ${start}` };
    const approachM = map.distanceM(from, start);
    const end = t.endNode ?? start;
    const charger = map.kindAt(end) === 'charger' ? end : map.nearestOfKind(end, 'charger');
    const homeM = charger ? map.distanceM(end, charger) : 0;
    const needPct = (busyM + approachM + t.lengthM + homeM) * policy.drainPctPerM + t.actionS * policy.drainPctPerActionS;
    if (t.requires.includes('startCharging') === false && r.batteryPct - needPct < policy.minBatteryPct) {
      return { infeasible: `battery ${r.batteryPct.toFixed(0)} % would not last (needs ~${needPct.toFixed(1)} % + ${policy.minBatteryPct} % reserve)` };
    }
    const finishS = busyS + approachS + t.lengthM / r.speed + t.actionS;
    return { finishS, cost: finishS - bonus(t) };
  };
  const bonus = (t: TaskCandidate): number => {
    let b = t.priority * policy.priorityWeightS;
    if (t.deadline !== null) {
      const slackS = (t.deadline - now) / 1000;
      b += Math.max(0, Math.min(policy.deadlineHorizonS, policy.deadlineHorizonS - slackS));
    }
    return b;
  };

  const tasks = [...input.tasks].sort(
    (a, b) => b.priority - a.priority || (a.deadline ?? Infinity) - (b.deadline ?? Infinity) || a.createdAt - b.createdAt || (a.id < b.id ? -1 : 1),
  );
  const freeRobots = new Set(workers.map((r) => r.key));
  const byKey = new Map(workers.map((r) => [r.key, r]));
  const reasons = new Map<string, string[]>();
  const note = (taskId: string, why: string) => reasons.set(taskId, [...(reasons.get(taskId) ?? []), why]);
  const assigned = new Set<string>();

  const take = (t: TaskCandidate, r: RobotCandidate, finishS: number, how: Assignment['how']) => {
    plan.assignments.push({ taskId: t.id, robot: r.key, finishS, asNext: r.current !== null, how });
    freeRobots.delete(r.key);
    assigned.add(t.id);
  };

  // 3. Urgent tasks (or a lone task): greedy, most urgent first.
  const greedy = tasks.length === 1 ? tasks : tasks.filter((t) => t.priority >= policy.urgentPriority);
  for (const t of greedy) {
    let best: { r: RobotCandidate; e: { finishS: number; cost: number } } | null = null;
    for (const key of freeRobots) {
      const r = byKey.get(key)!;
      const e = evaluate(r, t);
      if ('infeasible' in e) {
        note(t.id, `${r.key}: ${e.infeasible}`);
        continue;
      }
      if (!best || e.cost < best.e.cost || (e.cost === best.e.cost && r.key < best.r.key)) best = { r, e };
    }
    if (best) take(t, best.r, best.e.finishS, 'greedy');
  }

  // 4. The rest: optimal assignment on the cost matrix (rows robots, columns tasks).
  // Greedy tasks left over already tried every free robot (and noted why not): not again.
  const greedyIds = new Set(greedy.map((t) => t.id));
  const rest = tasks.filter((t) => !assigned.has(t.id) && !greedyIds.has(t.id));
  const robots = [...freeRobots].map((k) => byKey.get(k)!);
  if (rest.length > 0 && robots.length > 0) {
    const evals = robots.map((r) => rest.map((t) => evaluate(r, t)));
    const matrix = evals.map((row) => row.map((e) => ('infeasible' in e ? Infinity : e.cost)));
    const pairs = munkres(matrix);
    for (const [i, j] of pairs) {
      const e = evals[i]![j]!;
      if ('infeasible' in e) continue;
      take(rest[j]!, robots[i]!, e.finishS, 'optimal');
    }
    evals.forEach((row, i) =>
      row.forEach((e, j) => {
        if ('infeasible' in e) note(rest[j]!.id, `${robots[i]!.key}: ${e.infeasible}`);
      }),
    );
  }

  for (const t of tasks) {
    if (assigned.has(t.id)) continue;
    const why = reasons.get(t.id);
    const reason =
      input.robots.length === 0
        ? 'no robots'
        : why && why.length > 0
          ? why.slice(0, 5).join('; ')
          : freeRobots.size === 0
            ? 'all available robots are busy'
            : 'waiting for a robot';
    plan.unassigned.push({ taskId: t.id, reason });
  }

  // 5. Idle robots park.
  if (policy.parkIdleRobots) {
    const charging = new Set(plan.toCharge.map((c) => c.robot));
    for (const key of freeRobots) {
      const r = byKey.get(key)!;
      if (r.current || r.movingTo || r.charging || charging.has(key)) continue;
      if (map.kindAt(r.node) === 'parking') continue;
      const spot = map.nearestOfKind(r.node, 'parking', occupied);
      if (spot) {
        plan.toPark.push({ robot: key, node: spot });
        occupied.add(spot);
      }
    }
  }
  return plan;
}
