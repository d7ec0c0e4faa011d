/**
 * A task's estimated time of arrival (pure): the robot's remaining route on the site graph —
 * shortest paths (edge lengths, an edge's own speed limit and extra time, as the gateway plans
 * them) from where the robot is through the stops it has not reached yet — divided by its speed
 * (the factsheet's speedMax, else the gateway's default dispatch speed). Driving time only: what
 * the robot does at a stop (disinfecting, waiting for a person) is shown separately.
 *
 * Which stops are left is read from the order's progress: the gateway reports how many of the
 * order's nodes are done and how many there are, so the nodes still ahead are `total - done`;
 * the first stop from which the route through the rest has that many nodes is the next one.
 */
import type { MapNode, Robot, SiteMap, Task } from './fleet.js';

/** The gateway's default dispatch speed (fleet.policy.defaultSpeed) for a robot without a factsheet. */
export const DEFAULT_SPEED_MPS = 0.7;

interface Hop {
  to: string;
  length: number;
  maxSpeed?: number;
  extraTimeS?: number;
}
export type Graph = Map<string, Hop[]>;

export function graphOf(map: Pick<SiteMap, 'edges'>): Graph {
  const g: Graph = new Map();
  const add = (from: string, hop: Hop) => g.set(from, [...(g.get(from) ?? []), hop]);
  for (const e of map.edges) {
    const extra = { ...(e.maxSpeed ? { maxSpeed: e.maxSpeed } : {}), ...(e.extraTimeS ? { extraTimeS: e.extraTimeS } : {}) };
    add(e.from, { to: e.to, length: e.length, ...extra });
    if (!e.oneWay) add(e.to, { to: e.from, length: e.length, ...extra });
  }
  return g;
}

const hopTime = (h: Hop, speed: number) => h.length / Math.min(speed, h.maxSpeed ?? Infinity) + (h.extraTimeS ?? 0);

export interface Path {
  /** Node ids from start to end, both included. */
  nodes: string[];
  lengthM: number;
  timeS: number;
}

/** Quickest path by driving time (Dijkstra; maps have tens of nodes, so a linear scan is enough). */
export function quickestPath(g: Graph, from: string, to: string, speed: number): Path | null {
  if (from === to) return { nodes: [from], lengthM: 0, timeS: 0 };
  const best = new Map<string, { timeS: number; lengthM: number; prev: string | null }>([[from, { timeS: 0, lengthM: 0, prev: null }]]);
  const done = new Set<string>();
  for (;;) {
    let at: string | null = null;
    for (const [id, v] of best) if (!done.has(id) && (at === null || v.timeS < best.get(at)!.timeS)) at = id;
    if (at === null) return null;
    if (at === to) break;
    done.add(at);
    const here = best.get(at)!;
    for (const h of g.get(at) ?? []) {
      const timeS = here.timeS + hopTime(h, speed);
      const known = best.get(h.to);
      if (!done.has(h.to) && (!known || timeS < known.timeS)) best.set(h.to, { timeS, lengthM: here.lengthM + h.length, prev: at });
    }
  }
  const nodes: string[] = [];
  for (let id: string | null = to; id !== null; id = best.get(id)!.prev) nodes.unshift(id);
  const end = best.get(to)!;
  return { nodes, lengthM: end.lengthM, timeS: end.timeS };
}

/** A route through stops in order; null when one is unreachable. */
export function routeThrough(g: Graph, from: string, stops: readonly string[], speed: number): Path | null {
  const out: Path = { nodes: [from], lengthM: 0, timeS: 0 };
  let at = from;
  for (const stop of stops) {
    const p = quickestPath(g, at, stop, speed);
    if (!p) return null;
    out.nodes.push(...p.nodes.slice(1));
    out.lengthM += p.lengthM;
    out.timeS += p.timeS;
    at = stop;
  }
  return out;
}

/** A task's stops in the order the gateway drives them (a disinfection: nearest first from `from`). */
export function stopsOf(task: Pick<Task, 'type' | 'request' | 'targetNodes'>, g: Graph, from: string, speed: number): string[] {
  const r = task.request;
  const targets = task.targetNodes ?? [];
  switch (task.type) {
    case 'delivery':
      return typeof r.from === 'string' && typeof r.to === 'string' ? [r.from, r.to] : targets;
    case 'patrol': {
      const nodes = Array.isArray(r.nodes) ? (r.nodes as string[]) : targets;
      return nodes.length ? [...nodes, nodes[0]!] : [];
    }
    case 'charge':
      return targets.length ? [targets[0]!] : typeof r.charger === 'string' ? [r.charger] : [];
    case 'disinfection': {
      const left = new Set(targets);
      const out: string[] = [];
      let at = from;
      while (left.size > 0) {
        let next: string | null = null;
        let bestT = Infinity;
        for (const n of left) {
          const t = quickestPath(g, at, n, speed)?.timeS ?? Infinity;
          if (t < bestT) [next, bestT] = [n, t];
        }
        if (next === null) break;
        out.push(next);
        left.delete(next);
        at = next;
      }
      return out;
    }
  }
}

export interface Eta {
  /** Metres still to drive. */
  remainingM: number;
  /** Seconds of driving left at the robot's speed. */
  remainingS: number;
  /** The stop it drives to last (where it arrives). */
  lastStop: string;
  /** The speed used, m/s, and where it came from. */
  speed: number;
  speedFrom: 'factsheet' | 'default';
}

const dist = (a: { x: number; y: number }, b: { x: number; y: number }) => Math.hypot(a.x - b.x, a.y - b.y);

/**
 * The ETA of a robot's task, or null when there is nothing to estimate: no robot on it yet, the
 * robot's position unknown, it waits for a person, or it has arrived.
 */
export function taskEta(map: Pick<SiteMap, 'nodes' | 'edges'>, robot: Pick<Robot, 'lastNodeId' | 'x' | 'y' | 'maxSpeed'> | undefined, task: Task, g: Graph = graphOf(map)): Eta | null {
  if (!robot?.lastNodeId || task.waitingFor) return null;
  if (task.status !== 'assigned' && task.status !== 'underway') return null;
  const speedFrom = robot.maxSpeed && robot.maxSpeed > 0 ? 'factsheet' : 'default';
  const speed = speedFrom === 'factsheet' ? robot.maxSpeed! : DEFAULT_SPEED_MPS;
  // Under way, the node the progress was counted at (robot events and task events arrive apart).
  const from = (task.status === 'underway' ? task.progress?.lastNodeId : null) ?? robot.lastNodeId;
  const stops = stopsOf(task, g, from, speed);
  if (stops.length === 0) return null;

  // Which stops are still ahead: the first k whose route from here has as many nodes as the order has left.
  let remaining = routeThrough(g, from, stops, speed);
  const left = task.progress && task.progress.nodesTotal > 0 ? task.progress.nodesTotal - task.progress.nodesDone : null;
  if (left !== null && task.status === 'underway') {
    let bestGap = Infinity;
    for (let k = 0; k < stops.length; k++) {
      const r = routeThrough(g, from, stops.slice(k), speed);
      if (!r) continue;
      const gap = Math.abs(r.nodes.length - 1 - left);
      if (gap < bestGap) [bestGap, remaining] = [gap, r];
    }
    if (left === 0) remaining = { nodes: [from], lengthM: 0, timeS: 0 };
  }
  if (!remaining) return null;

  // Part of the first edge may be behind it already (the robot reports where it is between nodes).
  let { lengthM, timeS } = remaining;
  const nodes = new Map<string, MapNode>(map.nodes.map((n) => [n.id, n]));
  const a = nodes.get(remaining.nodes[0]!);
  const b = remaining.nodes[1] ? nodes.get(remaining.nodes[1]) : undefined;
  if (a && b && typeof robot.x === 'number' && typeof robot.y === 'number') {
    const edge = dist(a, b);
    const gone = Math.min(dist(a, { x: robot.x, y: robot.y }), edge);
    // Only when it is on that edge (ahead of the last node, towards the next).
    if (edge > 0 && dist(b, { x: robot.x, y: robot.y }) <= edge) {
      const first = quickestPath(g, a.id, b.id, speed) ?? { lengthM: edge, timeS: edge / speed };
      lengthM -= first.lengthM * (gone / edge);
      timeS -= first.timeS * (gone / edge);
    }
  }
  lengthM = Math.max(0, lengthM);
  timeS = Math.max(0, timeS);
  if (lengthM === 0) return null;
  return { remainingM: lengthM, remainingS: timeS, lastStop: stops.at(-1)!, speed, speedFrom };
}
