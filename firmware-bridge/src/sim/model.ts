/**
 * The simulated robot itself, without I/O: a VDA 5050 vehicle that follows orders node by node
 * at its speed, drains its battery per metre (and slowly when idle), charges after
 * `startCharging`, runs actions with durations (HARD: one at a time, no driving meanwhile),
 * waits in `waitForTrigger` until the master's `trigger`, obeys `cancelOrder`, and can be given
 * faults (e-stop, errors). Time only moves in `step(dtS)`, so tests and the demo decide the pace.
 *
 * Order acceptance follows VDA 5050 2.x §6.6: the same orderId/orderUpdateId again is ignored,
 * a lower orderUpdateId is rejected (orderUpdateError), a new order while busy is rejected
 * (orderError), and an update must start at the last base node.
 */
import type { ActionState, EStop, Vda5050Action, Vda5050Edge, Vda5050Error, Vda5050Node, Vda5050Order } from '@checkpoint/protocol';

export interface RobotModelOptions {
  startNode: string;
  x?: number;
  y?: number;
  mapId?: string;
  /** m/s */
  speed?: number;
  batteryPct?: number;
  /** % per metre driven */
  drainPctPerM?: number;
  /** % per second, always (electronics) */
  idleDrainPctPerS?: number;
  /** % per second while an action other than waiting runs (UV lamps) */
  actionDrainPctPerS?: number;
  chargePctPerS?: number;
  /** Seconds per action type; `disinfect` uses its `durationS` parameter when given. */
  actionDurationsS?: Record<string, number>;
}

interface ActionRun extends ActionState {
  /** Sequence id of the node it belongs to; null for instant actions. */
  nodeSeq: number | null;
  action: Vda5050Action;
  remainingS: number;
}

export type OrderOutcome = { result: 'accepted' | 'updated' | 'duplicate' } | { result: 'rejected'; error: Vda5050Error };

export interface ModelSnapshot {
  orderId: string;
  orderUpdateId: number;
  lastNodeId: string;
  lastNodeSequenceId: number;
  driving: boolean;
  paused: boolean;
  nodeStates: Array<{ nodeId: string; sequenceId: number; released: boolean; nodeDescription?: string }>;
  edgeStates: Array<{ edgeId: string; sequenceId: number; released: boolean }>;
  actionStates: ActionState[];
  batteryPct: number;
  charging: boolean;
  errors: Vda5050Error[];
  eStop: EStop;
  position: { x: number; y: number; theta: number; mapId: string };
  distanceSinceLastNode: number;
}

const DEFAULT_DURATIONS: Record<string, number> = { pick: 3, drop: 3, disinfect: 10, startCharging: 1, stopCharging: 1, finePositioning: 1, detectObject: 1 };

export class RobotModel {
  private orderId = '';
  private orderUpdateId = 0;
  private lastNodeId: string;
  private lastSeq = 0;
  private nodes: Vda5050Node[] = [];
  private edges: Vda5050Edge[] = [];
  private actions: ActionRun[] = [];
  private x: number;
  private y: number;
  private theta = 0;
  private mapId: string;
  private onEdge = 0;
  private battery: number;
  private charging = false;
  private paused = false;
  /** cancelOrder actions waiting for the robot to stop on a node (a master may send several). */
  private cancelling: ActionRun[] = [];
  private orderErrors: Vda5050Error[] = [];
  private faultErrors: Vda5050Error[] = [];
  eStop: EStop = 'NONE';
  readonly speed: number;
  private readonly o: Required<Omit<RobotModelOptions, 'x' | 'y' | 'mapId' | 'startNode' | 'batteryPct' | 'speed'>>;

  constructor(options: RobotModelOptions) {
    this.lastNodeId = options.startNode;
    this.x = options.x ?? 0;
    this.y = options.y ?? 0;
    this.mapId = options.mapId ?? 'floor-0';
    this.speed = options.speed ?? 1;
    this.battery = options.batteryPct ?? 100;
    this.o = {
      drainPctPerM: options.drainPctPerM ?? 0.02,
      idleDrainPctPerS: options.idleDrainPctPerS ?? 0.001,
      actionDrainPctPerS: options.actionDrainPctPerS ?? 0.01,
      chargePctPerS: options.chargePctPerS ?? 0.5,
      actionDurationsS: { ...DEFAULT_DURATIONS, ...options.actionDurationsS },
    };
  }

  /** Busy = something left to drive or an action not yet finished. */
  get busy(): boolean {
    return this.nodes.length > 0 || this.actions.some((a) => a.actionStatus === 'WAITING' || a.actionStatus === 'RUNNING' || a.actionStatus === 'INITIALIZING' || a.actionStatus === 'PAUSED');
  }

  acceptOrder(order: Pick<Vda5050Order, 'orderId' | 'orderUpdateId' | 'nodes' | 'edges'>): OrderOutcome {
    const reject = (errorType: string, description: string): OrderOutcome => {
      const error: Vda5050Error = {
        errorType,
        errorLevel: 'WARNING',
        errorDescription: description,
        errorReferences: [
          { referenceKey: 'orderId', referenceValue: order.orderId },
          { referenceKey: 'orderUpdateId', referenceValue: String(order.orderUpdateId) },
        ],
      };
      this.orderErrors = [error];
      return { result: 'rejected', error };
    };
    const first = order.nodes[0]!;
    if (order.orderId === this.orderId) {
      if (order.orderUpdateId === this.orderUpdateId) return { result: 'duplicate' };
      if (order.orderUpdateId < this.orderUpdateId) return reject('orderUpdateError', `orderUpdateId ${order.orderUpdateId} is lower than ${this.orderUpdateId}`);
      const lastBase = this.nodes.length > 0 ? this.nodes[this.nodes.length - 1]! : { nodeId: this.lastNodeId, sequenceId: this.lastSeq };
      if (first.nodeId !== lastBase.nodeId || first.sequenceId !== lastBase.sequenceId) {
        return reject('orderUpdateError', `update must start at the last base node ${lastBase.nodeId}/${lastBase.sequenceId}, got ${first.nodeId}/${first.sequenceId}`);
      }
      this.orderUpdateId = order.orderUpdateId;
      this.nodes.push(...order.nodes.slice(1));
      this.edges.push(...order.edges);
      this.queueActions(order.nodes.slice(1));
      this.orderErrors = [];
      return { result: 'updated' };
    }
    if (this.busy) return reject('orderError', `still executing order ${this.orderId}; cancel it first`);
    if (first.nodeId !== this.lastNodeId) return reject('noRouteError', `order starts at ${first.nodeId} but the robot is at ${this.lastNodeId}`);
    this.orderId = order.orderId;
    this.orderUpdateId = order.orderUpdateId;
    this.lastSeq = first.sequenceId;
    this.nodes = order.nodes.slice(1);
    this.edges = [...order.edges];
    this.actions = this.actions.filter((a) => a.nodeSeq === null && a.actionStatus === 'RUNNING');
    this.queueActions(order.nodes);
    this.orderErrors = [];
    if (first.nodePosition) this.mapId = first.nodePosition.mapId;
    return { result: 'accepted' };
  }

  private queueActions(nodes: Vda5050Node[]) {
    for (const n of nodes) {
      for (const a of n.actions) {
        this.actions.push({ actionId: a.actionId, actionType: a.actionType, actionStatus: 'WAITING', nodeSeq: n.sequenceId, action: a, remainingS: this.durationOf(a) });
      }
    }
  }

  private durationOf(a: Vda5050Action): number {
    const param = a.actionParameters?.find((p) => p.key === 'durationS')?.value;
    if (typeof param === 'number' || (typeof param === 'string' && param !== '' && !Number.isNaN(Number(param)))) return Number(param);
    return this.o.actionDurationsS[a.actionType] ?? 1;
  }

  /** Instant actions: cancelOrder, trigger, startPause/stopPause, startCharging, stateRequest. */
  instantAction(a: Vda5050Action): void {
    const run: ActionRun = { actionId: a.actionId, actionType: a.actionType, actionStatus: 'FINISHED', nodeSeq: null, action: a, remainingS: 0 };
    switch (a.actionType) {
      case 'cancelOrder': {
        if (!this.busy) {
          run.actionStatus = 'FAILED';
          run.resultDescription = 'noOrderToCancel';
          break;
        }
        for (const x of this.actions) {
          if (x.nodeSeq !== null && x.actionStatus !== 'FINISHED') x.actionStatus = 'FAILED';
        }
        // Stop at the node we are driving to (robots stop on nodes), then report FINISHED.
        const next = this.onEdge > 0 ? this.nodes[0] : undefined;
        this.nodes = next ? [next] : [];
        this.edges = next ? this.edges.slice(0, 1) : [];
        if (next) next.actions = [];
        if (next) {
          run.actionStatus = 'RUNNING';
          this.cancelling.push(run);
        }
        break;
      }
      case 'trigger': {
        const target = a.actionParameters?.find((p) => p.key === 'actionId')?.value;
        const waiting = this.actions.find((x) => x.actionId === target && x.actionType === 'waitForTrigger' && x.actionStatus === 'RUNNING');
        if (waiting) waiting.actionStatus = 'FINISHED';
        else {
          run.actionStatus = 'FAILED';
          run.resultDescription = `no waitForTrigger ${String(target)} is running`;
        }
        break;
      }
      case 'startPause':
        this.paused = true;
        break;
      case 'stopPause':
        this.paused = false;
        break;
      case 'startCharging':
        this.charging = true;
        break;
      case 'stopCharging':
        this.charging = false;
        break;
      case 'stateRequest':
      case 'factsheetRequest':
        break;
      default:
        run.actionStatus = 'FAILED';
        run.resultDescription = `unsupported instant action ${a.actionType}`;
    }
    this.actions.push(run);
  }

  // ---- faults ----------------------------------------------------------------------------------
  setEStop(eStop: EStop): void {
    this.eStop = eStop;
  }
  addError(errorType: string, level: 'WARNING' | 'FATAL', description = ''): void {
    this.faultErrors = [...this.faultErrors.filter((e) => e.errorType !== errorType), { errorType, errorLevel: level, errorDescription: description }];
  }
  clearErrors(): void {
    this.faultErrors = [];
  }
  setBattery(pct: number): void {
    this.battery = Math.max(0, Math.min(100, pct));
  }

  /** Advances time; returns true when something the master should hear about changed. */
  step(dtS: number): boolean {
    let event = false;
    this.battery = Math.max(0, this.battery - this.o.idleDrainPctPerS * dtS);
    if (this.charging) {
      this.battery = Math.min(100, this.battery + this.o.chargePctPerS * dtS);
      if (this.battery >= 100) {
        this.charging = false;
        event = true;
      }
    }
    const halted = this.eStop !== 'NONE' || this.paused || this.faultErrors.some((e) => e.errorLevel === 'FATAL');
    if (halted) return event;
    if (this.battery <= 0) {
      if (!this.faultErrors.some((e) => e.errorType === 'batteryEmpty')) {
        this.addError('batteryEmpty', 'FATAL', 'battery empty');
        return true;
      }
      return event;
    }

    const running = this.actions.find((a) => a.actionStatus === 'RUNNING' && a.nodeSeq !== null);
    if (running) {
      if (running.actionType === 'waitForTrigger') return event;
      running.remainingS -= dtS;
      this.battery = Math.max(0, this.battery - this.o.actionDrainPctPerS * dtS);
      if (running.remainingS <= 0) {
        running.actionStatus = 'FINISHED';
        if (running.actionType === 'startCharging') this.charging = true;
        if (running.actionType === 'stopCharging') this.charging = false;
        return true;
      }
      return event;
    }
    const due = this.actions.find((a) => a.actionStatus === 'WAITING' && a.nodeSeq === this.lastSeq);
    if (due) {
      due.actionStatus = 'RUNNING';
      return true;
    }
    const next = this.nodes[0];
    const edge = this.edges[0];
    if (!next || !edge || !next.released || !edge.released) {
      if (this.cancelling.length > 0) {
        this.finishCancelling();
        return true;
      }
      return event;
    }
    // Drive.
    if (this.onEdge === 0) {
      this.charging = false;
      event = true; // started driving
    }
    const from = { x: this.xAtNode ?? this.x, y: this.yAtNode ?? this.y };
    if (this.onEdge === 0) [this.xAtNode, this.yAtNode] = [this.x, this.y];
    const to = next.nodePosition ?? { x: from.x, y: from.y };
    const length = edge.length ?? Math.hypot(to.x - from.x, to.y - from.y);
    const speed = Math.min(this.speed, edge.maxSpeed ?? Infinity);
    const moved = Math.min(speed * dtS, length - this.onEdge);
    this.onEdge += moved;
    this.battery = Math.max(0, this.battery - moved * this.o.drainPctPerM);
    const f = length > 0 ? this.onEdge / length : 1;
    this.x = from.x + (to.x - from.x) * f;
    this.y = from.y + (to.y - from.y) * f;
    if (to.x !== from.x || to.y !== from.y) this.theta = Math.atan2(to.y - from.y, to.x - from.x);
    if (this.onEdge >= length - 1e-9) {
      this.nodes.shift();
      this.edges.shift();
      this.onEdge = 0;
      this.xAtNode = undefined;
      this.yAtNode = undefined;
      this.lastNodeId = next.nodeId;
      this.lastSeq = next.sequenceId;
      if (next.nodePosition) this.mapId = next.nodePosition.mapId;
      // Stopped on the node a cancelOrder drove to: the cancel is done in the same state that says
      // the robot stands still (a bridge or master sends the next order on that state; it must not
      // find the robot still busy with the cancel and be refused).
      if (this.nodes.length === 0) this.finishCancelling();
      return true;
    }
    return event;
  }
  private finishCancelling(): void {
    for (const c of this.cancelling) c.actionStatus = 'FINISHED';
    this.cancelling = [];
  }
  private xAtNode: number | undefined;
  private yAtNode: number | undefined;

  snapshot(): ModelSnapshot {
    return {
      orderId: this.orderId,
      orderUpdateId: this.orderUpdateId,
      lastNodeId: this.lastNodeId,
      lastNodeSequenceId: this.lastSeq,
      driving: (this.onEdge > 0 && !this.paused) || (this.nodes.length > 0 && !this.actions.some((a) => a.actionStatus === 'RUNNING' && a.nodeSeq !== null) && !this.actions.some((a) => a.actionStatus === 'WAITING' && a.nodeSeq === this.lastSeq) && this.eStop === 'NONE' && !this.paused),
      paused: this.paused,
      nodeStates: this.nodes.map((n) => ({ nodeId: n.nodeId, sequenceId: n.sequenceId, released: n.released, ...(n.nodePosition ? { nodePosition: n.nodePosition } : {}) })),
      edgeStates: this.edges.map((e) => ({ edgeId: e.edgeId, sequenceId: e.sequenceId, released: e.released })),
      actionStates: this.actions.map(({ actionId, actionType, actionStatus, resultDescription }) => ({ actionId, actionType, actionStatus, ...(resultDescription ? { resultDescription } : {}) })),
      batteryPct: Math.round(this.battery * 10) / 10,
      charging: this.charging,
      errors: [...this.orderErrors, ...this.faultErrors],
      eStop: this.eStop,
      position: { x: this.x, y: this.y, theta: this.theta, mapId: this.mapId },
      distanceSinceLastNode: this.onEdge,
    };
  }
}
