/**
 * The site map: a graph of named places (gates, pharmacy, ward doors, chargers, disinfection
 * stations, parking) with coordinates and floors, corridors as edges with lengths, and zones
 * (e.g. the area around checkpoint gate-2). Loaded once from the gateway config, validated with
 * errors that name the offending entry, then immutable. Shortest paths are Dijkstra on travel
 * time, memoised per source node (dispatch asks for the same sources over and over).
 */
import { Type, type Static } from '@sinclair/typebox';
import { compileValidator } from '@checkpoint/protocol';

const closed = { additionalProperties: false } as const;
const NodeId = Type.String({ pattern: '^[A-Za-z0-9_.:-]{1,64}$', description: 'used as VDA 5050 nodeId' });
/** The name in other languages, by BCP 47 tag (e.g. `zh-CN: 药房`); `name` is the default. */
const LANGUAGE_TAG = /^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$/;
const Names = Type.Optional(
  Type.Record(Type.String(), Type.String({ minLength: 1, maxLength: 128 }), {
    maxProperties: 50,
    description: 'names by language tag',
  }),
);

export const NODE_KINDS = ['gate', 'pharmacy', 'ward', 'charger', 'disinfection', 'parking', 'corridor', 'lift', 'storage', 'other'] as const;
export type NodeKind = (typeof NODE_KINDS)[number];

export const SiteMapSchema = Type.Object(
  {
    nodes: Type.Array(
      Type.Object(
        {
          id: NodeId,
          x: Type.Number({ description: 'metres' }),
          y: Type.Number({ description: 'metres' }),
          floor: Type.Optional(Type.Integer({ minimum: -10, maximum: 200, default: 0 })),
          kind: Type.Optional(Type.Union(NODE_KINDS.map((k) => Type.Literal(k)), { default: 'corridor' })),
          name: Type.Optional(Type.String({ maxLength: 128 })),
          names: Names,
        },
        closed,
      ),
      { minItems: 1, maxItems: 10_000 },
    ),
    edges: Type.Array(
      Type.Object(
        {
          from: NodeId,
          to: NodeId,
          /** Metres; default: straight-line distance (which needs both nodes on one floor). */
          length: Type.Optional(Type.Number({ exclusiveMinimum: 0 })),
          /** Fixed extra time, e.g. waiting for and riding a lift. */
          extraTimeS: Type.Optional(Type.Number({ minimum: 0 })),
          maxSpeed: Type.Optional(Type.Number({ exclusiveMinimum: 0 })),
          oneWay: Type.Optional(Type.Boolean({ default: false })),
        },
        closed,
      ),
      { maxItems: 50_000 },
    ),
    zones: Type.Optional(Type.Array(
      Type.Object(
        {
          id: NodeId,
          nodes: Type.Array(NodeId, { minItems: 1, maxItems: 1000 }),
          /** The checkpoint whose surroundings this zone is (rules use it). */
          checkpoint: Type.Optional(Type.String({ pattern: '^[a-z0-9-]{1,64}$' })),
          name: Type.Optional(Type.String({ maxLength: 128 })),
          names: Names,
        },
        closed,
      ),
      { default: [], maxItems: 1000 },
    )),
  },
  closed,
);
export type SiteMapConfig = Static<typeof SiteMapSchema>;

export interface MapNode {
  id: string;
  x: number;
  y: number;
  floor: number;
  kind: NodeKind;
  name?: string;
  names?: Record<string, string>;
}

export interface MapEdge {
  /** `${from}--${to}`; used as the VDA 5050 edgeId. */
  id: string;
  from: string;
  to: string;
  length: number;
  extraTimeS: number;
  maxSpeed?: number;
}

export interface Zone {
  id: string;
  nodes: string[];
  checkpoint?: string;
  name?: string;
  names?: Record<string, string>;
}

export interface Path {
  nodes: string[];
  edges: MapEdge[];
  lengthM: number;
  /** At the speed the path was computed for, including edges' extra time. */
  timeS: number;
}

export class SiteMapError extends Error {
  constructor(readonly issues: string[]) {
    super(`invalid site map: ${issues.join('; ')}`);
    this.name = 'SiteMapError';
  }
}

export interface SiteMap {
  readonly nodes: ReadonlyMap<string, MapNode>;
  readonly edges: readonly MapEdge[];
  readonly zones: ReadonlyMap<string, Zone>;
  /** VDA 5050 mapId of a floor. */
  mapIdOf(nodeId: string): string;
  /** Throws a clear error for an unknown node. */
  node(nodeId: string): MapNode;
  /** The kind of a node, undefined when unknown. */
  kindAt(nodeId: string): NodeKind | undefined;
  /** Fastest path at `speed` m/s, or null when `to` cannot be reached. */
  shortestPath(from: string, to: string, speed: number): Path | null;
  /** Travel time in seconds, Infinity when unreachable. Cheap after the first call per source. */
  travelTimeS(from: string, to: string, speed: number): number;
  /** Shortest driving distance in metres, Infinity when unreachable. */
  distanceM(from: string, to: string): number;
  /** The reachable node of `kind` at the shortest distance (ties: id order); null if none. */
  nearestOfKind(from: string, kind: NodeKind, exclude?: ReadonlySet<string>): string | null;
  /** The zone a checkpoint belongs to. */
  zoneOfCheckpoint(checkpoint: string): Zone | undefined;
  toJSON(): { nodes: MapNode[]; edges: MapEdge[]; zones: Zone[] };
}

const validator = compileValidator(SiteMapSchema);

/**
 * Validates a map config (shape, then references: unknown nodes, duplicate ids, cross-floor edges
 * without a length) and returns the immutable graph. Throws SiteMapError listing every problem.
 */
export function loadSiteMap(config: unknown): SiteMap {
  if (!validator.check(config)) {
    throw new SiteMapError(validator.explain(config).map((e) => `${e.path || '/'}: ${e.message}`));
  }
  const issues: string[] = [];
  const nodes = new Map<string, MapNode>();
  const checkNames = (where: string, names: Record<string, string> | undefined) => {
    for (const tag of Object.keys(names ?? {})) if (!LANGUAGE_TAG.test(tag)) issues.push(`${where}/names: "${tag}" is not a language tag (e.g. zh-CN)`);
  };
  config.nodes.forEach((n, i) => {
    checkNames(`/nodes/${i}`, n.names);
    if (nodes.has(n.id)) issues.push(`/nodes/${i}/id: duplicate node id "${n.id}"`);
    nodes.set(n.id, { id: n.id, x: n.x, y: n.y, floor: n.floor ?? 0, kind: n.kind ?? 'corridor', ...(n.name ? { name: n.name } : {}), ...(n.names ? { names: { ...n.names } } : {}) });
  });
  const edges: MapEdge[] = [];
  const seenEdges = new Set<string>();
  config.edges.forEach((e, i) => {
    const a = nodes.get(e.from);
    const b = nodes.get(e.to);
    if (!a) issues.push(`/edges/${i}/from: unknown node "${e.from}"`);
    if (!b) issues.push(`/edges/${i}/to: unknown node "${e.to}"`);
    if (!a || !b) return;
    if (e.from === e.to) return void issues.push(`/edges/${i}: edge from "${e.from}" to itself`);
    if (a.floor !== b.floor && e.length === undefined) {
      issues.push(`/edges/${i}: "${e.from}" (floor ${a.floor}) and "${e.to}" (floor ${b.floor}) are on different floors; give the edge a length`);
      return;
    }
    const length = e.length ?? Math.hypot(a.x - b.x, a.y - b.y);
    if (!(length > 0)) return void issues.push(`/edges/${i}: "${e.from}" and "${e.to}" are at the same place; give the edge a length`);
    const directions: Array<[string, string]> = e.oneWay ? [[e.from, e.to]] : [[e.from, e.to], [e.to, e.from]];
    for (const [from, to] of directions) {
      const id = `${from}--${to}`;
      if (seenEdges.has(id)) {
        issues.push(`/edges/${i}: duplicate edge ${from} → ${to}`);
        continue;
      }
      seenEdges.add(id);
      edges.push({ id, from, to, length, extraTimeS: e.extraTimeS ?? 0, ...(e.maxSpeed ? { maxSpeed: e.maxSpeed } : {}) });
    }
  });
  const zones = new Map<string, Zone>();
  (config.zones ?? []).forEach((z, i) => {
    checkNames(`/zones/${i}`, z.names);
    if (zones.has(z.id)) issues.push(`/zones/${i}/id: duplicate zone id "${z.id}"`);
    z.nodes.forEach((n, j) => {
      if (!nodes.has(n)) issues.push(`/zones/${i}/nodes/${j}: unknown node "${n}"`);
    });
    zones.set(z.id, { id: z.id, nodes: [...z.nodes], ...(z.checkpoint ? { checkpoint: z.checkpoint } : {}), ...(z.name ? { name: z.name } : {}), ...(z.names ? { names: { ...z.names } } : {}) });
  });
  if (issues.length > 0) throw new SiteMapError(issues);
  return buildSiteMap(nodes, edges, zones);
}

function buildSiteMap(nodes: Map<string, MapNode>, edges: MapEdge[], zones: Map<string, Zone>): SiteMap {
  const outgoing = new Map<string, MapEdge[]>();
  for (const n of nodes.keys()) outgoing.set(n, []);
  for (const e of edges) outgoing.get(e.from)!.push(e);
  const byCheckpoint = new Map<string, Zone>();
  for (const z of zones.values()) if (z.checkpoint) byCheckpoint.set(z.checkpoint, z);

  // Single-source Dijkstra results, keyed by `${speed}|${from}`.
  const memo = new Map<string, { time: Map<string, number>; via: Map<string, MapEdge> }>();

  const node = (id: string): MapNode => {
    const n = nodes.get(id);
    if (!n) throw new Error(`unknown map node "${id}"`);
    return n;
  };

  // speed 0 means "by distance": Dijkstra on metres rather than seconds.
  const edgeTime = (e: MapEdge, speed: number) => (speed === 0 ? e.length : e.length / Math.min(speed, e.maxSpeed ?? Infinity) + e.extraTimeS);
  const nearestMemo = new Map<string, string | null>();

  const solve = (from: string, speed: number) => {
    const key = `${speed}|${from}`;
    let result = memo.get(key);
    if (result) return result;
    node(from);
    const time = new Map<string, number>([[from, 0]]);
    const via = new Map<string, MapEdge>();
    const heap = new MinHeap();
    heap.push(0, from);
    const done = new Set<string>();
    while (heap.size > 0) {
      const [t, u] = heap.pop();
      if (done.has(u)) continue;
      done.add(u);
      for (const e of outgoing.get(u)!) {
        const nt = t + edgeTime(e, speed);
        if (nt < (time.get(e.to) ?? Infinity)) {
          time.set(e.to, nt);
          via.set(e.to, e);
          heap.push(nt, e.to);
        }
      }
    }
    result = { time, via };
    if (memo.size > 50_000) {
      memo.clear();
      nearestMemo.clear();
    }
    memo.set(key, result);
    return result;
  };

  const map: SiteMap = {
    nodes,
    edges,
    zones,
    node,
    kindAt: (id) => nodes.get(id)?.kind,
    mapIdOf: (id) => `floor-${node(id).floor}`,
    shortestPath(from, to, speed) {
      node(to);
      const { time, via } = solve(from, speed);
      const total = time.get(to);
      if (total === undefined) return null;
      const pathEdges: MapEdge[] = [];
      for (let at = to; at !== from; ) {
        const e = via.get(at)!;
        pathEdges.unshift(e);
        at = e.from;
      }
      return {
        nodes: [from, ...pathEdges.map((e) => e.to)],
        edges: pathEdges,
        lengthM: pathEdges.reduce((s, e) => s + e.length, 0),
        timeS: total,
      };
    },
    travelTimeS(from, to, speed) {
      return solve(from, speed).time.get(to) ?? Infinity;
    },
    distanceM(from, to) {
      return solve(from, 0).time.get(to) ?? Infinity;
    },
    nearestOfKind(from, kind, exclude) {
      const memoKey = `${kind}|${from}`;
      if (!exclude && nearestMemo.has(memoKey)) return nearestMemo.get(memoKey)!;
      const { time } = solve(from, 0);
      let best: string | null = null;
      let bestTime = Infinity;
      for (const [id, t] of time) {
        if (nodes.get(id)!.kind !== kind || exclude?.has(id)) continue;
        if (t < bestTime || (t === bestTime && best !== null && id < best)) {
          best = id;
          bestTime = t;
        }
      }
      if (!exclude) nearestMemo.set(memoKey, best);
      return best;
    },
    zoneOfCheckpoint: (checkpoint) => byCheckpoint.get(checkpoint),
    toJSON: () => ({ nodes: [...nodes.values()], edges: [...edges], zones: [...zones.values()] }),
  };
  return map;
}

/** Binary heap of (priority, value), smallest priority first. */
class MinHeap {
  private readonly keys: number[] = [];
  private readonly values: string[] = [];
  get size(): number {
    return this.keys.length;
  }
  push(key: number, value: string): void {
    const { keys, values } = this;
    let i = keys.length;
    keys.push(key);
    values.push(value);
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (keys[parent]! <= key) break;
      keys[i] = keys[parent]!;
      values[i] = values[parent]!;
      i = parent;
    }
    keys[i] = key;
    values[i] = value;
  }
  pop(): [number, string] {
    const { keys, values } = this;
    const top: [number, string] = [keys[0]!, values[0]!];
    const lastKey = keys.pop()!;
    const lastValue = values.pop()!;
    const n = keys.length;
    if (n > 0) {
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= n) break;
        const r = l + 1;
        const c = r < n && keys[r]! < keys[l]! ? r : l;
        if (keys[c]! >= lastKey) break;
        keys[i] = keys[c]!;
        values[i] = values[c]!;
        i = c;
      }
      keys[i] = lastKey;
      values[i] = lastValue;
    }
    return top;
  }
}
