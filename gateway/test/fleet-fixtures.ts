/**
 * Test fixtures for the fleet core: a small hospital map and a step-wise VDA 5050 robot that
 * follows orders the way the standard describes (node by node, actions in order, HARD actions
 * block driving, waitForTrigger until the master's `trigger`, cancelOrder). No sockets: tests
 * pass its messages to the fleet and the fleet's publications back to it.
 */
import type { Vda5050Action, Vda5050InstantActions, Vda5050Order, Vda5050State } from '@checkpoint/protocol';
import { vda5050Header, vda5050Topic } from '@checkpoint/protocol';
import { loadSiteMap, type Fleet, type FleetEffects } from '../src/fleet/index.js';

/**
 *   P1 --- C1 --- C2 --- G2 (gate-2)    (10 m per edge along x)
 *          |       |      |
 *   CH1    PH     W3     G2b
 */
export const hospitalMap = () =>
  loadSiteMap({
    nodes: [
      { id: 'P1', x: 0, y: 0, kind: 'parking' },
      { id: 'P2', x: 0, y: 10, kind: 'parking' },
      { id: 'C1', x: 10, y: 0 },
      { id: 'C2', x: 20, y: 0 },
      { id: 'G2', x: 30, y: 0, kind: 'gate' },
      { id: 'G2b', x: 30, y: -10, kind: 'gate' },
      { id: 'PH', x: 10, y: -10, kind: 'pharmacy' },
      { id: 'W3', x: 20, y: -10, kind: 'ward' },
      { id: 'CH1', x: 0, y: -10, kind: 'charger' },
    ],
    edges: [
      { from: 'P1', to: 'C1' },
      { from: 'P1', to: 'P2' },
      { from: 'C1', to: 'C2' },
      { from: 'C2', to: 'G2' },
      { from: 'C1', to: 'PH' },
      { from: 'C2', to: 'W3' },
      { from: 'G2', to: 'G2b' },
      { from: 'PH', to: 'CH1' },
    ],
    zones: [{ id: 'gate-2-area', nodes: ['G2', 'G2b'], checkpoint: 'gate-2' }],
  });

type ActionRun = Vda5050Action & { status: 'WAITING' | 'RUNNING' | 'FINISHED' | 'FAILED'; result?: string };

export class StepRobot {
  readonly address: { manufacturer: string; serialNumber: string };
  private headerIds = { state: 0, connection: 0, factsheet: 0 };
  orderId = '';
  orderUpdateId = 0;
  lastNodeId: string;
  lastNodeSequenceId = 0;
  nodes: Vda5050Order['nodes'] = [];
  edges: Vda5050Order['edges'] = [];
  actions: ActionRun[] = [];
  errors: Vda5050State['errors'] = [];
  battery: number;
  charging = false;
  /** startPause / stopPause (§6.9): a paused robot neither drives nor starts actions. */
  paused = false;
  received: Array<Vda5050Order | Vda5050InstantActions> = [];
  /** Reject the next this many `trigger` instant actions with an error naming them (§6.9: instant action rejected). */
  rejectTriggers = 0;
  /** Refuse every order (an error naming its orderId, §6.6) while true. */
  refuseOrders = false;
  /** Where it stands when between nodes (published as agvPosition); null: on its last node, not published. */
  position: { x: number; y: number } | null = null;
  /** The protocol version this robot speaks (and the only one it accepts, as vda-5050-lib does). */
  version = '2.1.0';

  constructor(serial: string, node: string, battery = 90, readonly capabilities = ['pick', 'drop', 'waitForTrigger', 'trigger', 'disinfect', 'startCharging']) {
    this.address = { manufacturer: 'acme', serialNumber: serial };
    this.lastNodeId = node;
    this.battery = battery;
  }

  get key(): string {
    return `acme/${this.address.serialNumber}`;
  }

  private header(kind: keyof StepRobot['headerIds'], now: number) {
    return vda5050Header(this.address, this.headerIds[kind]++, new Date(now), this.version);
  }

  connection(state: 'ONLINE' | 'OFFLINE' | 'CONNECTIONBROKEN', now: number): [string, string] {
    return [vda5050Topic(this.address, 'connection'), JSON.stringify({ ...this.header('connection', now), connectionState: state })];
  }

  factsheet(now: number): [string, string] {
    return [
      vda5050Topic(this.address, 'factsheet'),
      JSON.stringify({
        ...this.header('factsheet', now),
        typeSpecification: { seriesName: 'test', agvKinematic: 'DIFF', agvClass: 'CARRIER', maxLoadMass: 10, localizationTypes: ['NATURAL'], navigationTypes: ['AUTONOMOUS'] },
        physicalParameters: { speedMin: 0, speedMax: 1, accelerationMax: 1, decelerationMax: 1, heightMin: 0.3, heightMax: 1, width: 0.5, length: 0.7 },
        // What the official 2.0.0 schema requires.
        protocolLimits: { maxStringLens: {}, maxArrayLens: {}, timing: { minOrderInterval: 0.1, minStateInterval: 0.1 } },
        protocolFeatures: { optionalParameters: [], agvActions: this.capabilities.map((actionType) => ({ actionType, actionScopes: ['NODE'] })) },
        agvGeometry: {},
        loadSpecification: {},
      }),
    ];
  }

  state(now: number): [string, string] {
    const msg: Vda5050State = {
      ...this.header('state', now),
      orderId: this.orderId,
      orderUpdateId: this.orderUpdateId,
      lastNodeId: this.lastNodeId,
      lastNodeSequenceId: this.lastNodeSequenceId,
      driving: this.nodes.length > 0 && !this.blocked() && !this.paused,
      operatingMode: 'AUTOMATIC',
      nodeStates: this.nodes.map(({ nodeId, sequenceId, released }) => ({ nodeId, sequenceId, released })),
      edgeStates: this.edges.map(({ edgeId, sequenceId, released }) => ({ edgeId, sequenceId, released })),
      actionStates: this.actions.map((a) => ({ actionId: a.actionId, actionType: a.actionType, actionStatus: a.status, ...(a.result ? { resultDescription: a.result } : {}) })),
      batteryState: { batteryCharge: this.battery, charging: this.charging },
      paused: this.paused,
      errors: this.errors,
      ...(this.position ? { agvPosition: { ...this.position, theta: 0, mapId: 'floor-1', positionInitialized: true } } : {}),
      safetyState: { eStop: 'NONE', fieldViolation: false },
    };
    return [vda5050Topic(this.address, 'state'), JSON.stringify(msg)];
  }

  private blocked(): boolean {
    return this.actions.some((a) => a.status === 'RUNNING' || a.status === 'WAITING');
  }

  receive(topic: string, payload: string): void {
    const msg = JSON.parse(payload);
    this.received.push(msg);
    if (topic.endsWith('/order')) {
      const order = msg as Vda5050Order;
      if (this.refuseOrders) {
        this.errors = [{ errorType: 'orderError', errorLevel: 'WARNING', errorReferences: [{ referenceKey: 'orderId', referenceValue: order.orderId }] }];
        return;
      }
      if (order.orderId === this.orderId && order.orderUpdateId <= this.orderUpdateId) return; // duplicate
      if (order.orderId !== this.orderId) this.actions = this.actions.filter((a) => a.status === 'RUNNING');
      this.orderId = order.orderId;
      this.orderUpdateId = order.orderUpdateId;
      const [first, ...rest] = order.nodes;
      if (order.orderUpdateId === 0) {
        this.lastNodeSequenceId = first!.sequenceId;
        this.queueActions(first!.actions);
        this.nodes = rest;
        this.edges = [...order.edges];
      } else {
        this.nodes = [...this.nodes, ...rest];
        this.edges = [...this.edges, ...order.edges];
      }
    } else {
      for (const a of (msg as Vda5050InstantActions).actions) {
        if (a.actionType === 'cancelOrder') {
          for (const run of this.actions) if (run.status !== 'FINISHED') run.status = 'FAILED';
          this.nodes = [];
          this.edges = [];
          this.actions.push({ ...a, status: 'FINISHED' });
        } else if (a.actionType === 'startPause' || a.actionType === 'stopPause') {
          this.paused = a.actionType === 'startPause';
          this.actions.push({ ...a, status: 'FINISHED' });
        } else if (a.actionType === 'stopCharging') {
          this.charging = false;
          this.actions.push({ ...a, status: 'FINISHED' });
        } else if (a.actionType === 'trigger' && this.rejectTriggers > 0) {
          this.rejectTriggers -= 1;
          this.errors = [...this.errors, { errorType: 'triggerRejected', errorLevel: 'WARNING', errorReferences: [{ referenceKey: 'actionId', referenceValue: a.actionId }] }];
        } else if (a.actionType === 'trigger') {
          const target = a.actionParameters?.find((p) => p.key === 'actionId')?.value;
          const run = this.actions.find((r) => r.actionId === target && r.status === 'RUNNING');
          if (run) run.status = 'FINISHED';
        }
      }
    }
  }

  private queueActions(actions: Vda5050Action[]) {
    this.actions.push(...actions.map((a) => ({ ...a, status: 'WAITING' as const })));
  }

  /** One step: finish/start one action, or drive one edge. Returns false when nothing happened. */
  step(): boolean {
    if (this.paused) return false;
    const running = this.actions.find((a) => a.status === 'RUNNING');
    if (running) {
      if (running.actionType === 'waitForTrigger') return false;
      running.status = 'FINISHED';
      if (running.actionType === 'startCharging') this.charging = true;
      return true;
    }
    const waiting = this.actions.find((a) => a.status === 'WAITING');
    if (waiting) {
      waiting.status = 'RUNNING';
      return true;
    }
    const edge = this.edges.shift();
    const node = this.nodes.shift();
    if (!edge || !node) return false;
    this.charging = false;
    this.battery = Math.max(0, this.battery - 0.2);
    this.lastNodeId = node.nodeId;
    this.lastNodeSequenceId = node.sequenceId;
    this.queueActions(node.actions);
    return true;
  }
}

/** Routes the fleet's publications to the robots and returns them for inspection. */
export function deliver(fx: FleetEffects, robots: StepRobot[]): FleetEffects['publish'] {
  for (const m of fx.publish) {
    const robot = robots.find((r) => m.topic.startsWith(`uagv/v2/acme/${r.address.serialNumber}/`));
    robot?.receive(m.topic, m.payload);
  }
  return fx.publish;
}

/** A clock that moves forward 1 s per call, so every message has a newer timestamp. */
export function clock(start = Date.parse('2025-03-01T08:00:00Z')) {
  let t = start;
  return () => (t += 1000);
}

export function bringOnline(fleet: Fleet, robots: StepRobot[], now: () => number): void {
  for (const r of robots) {
    deliver(fleet.handleMessage(...r.connection('ONLINE', now()), now()), robots);
    deliver(fleet.handleMessage(...r.factsheet(now()), now()), robots);
    deliver(fleet.handleMessage(...r.state(now()), now()), robots);
  }
}

/** Steps every robot and feeds its state to the fleet, `n` times or until `until()` holds. */
export function run(fleet: Fleet, robots: StepRobot[], now: () => number, until: () => boolean, max = 200): void {
  for (let i = 0; i < max && !until(); i++) {
    for (const r of robots) {
      r.step();
      const t = now();
      deliver(fleet.handleMessage(...r.state(t), t), robots);
    }
  }
}
