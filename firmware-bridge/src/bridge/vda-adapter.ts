/**
 * The VDA 5050 side of one serial robot, without I/O. The MCU only knows steps (drive to this
 * node, then run these actions), status and action progress; this adapter is what makes it look
 * like a native VDA 5050 vehicle: it accepts or rejects orders by the standard's rules (dedupe
 * by orderId/orderUpdateId), turns them into STEP commands, maps action ids to the MCU's 16-bit
 * refs, and composes `state` and `factsheet` from what the MCU reports.
 */
import {
  VDA5050_VERSION,
  type ActionState,
  type Vda5050Error,
  type Vda5050Factsheet,
  type Vda5050InstantActions,
  type Vda5050Node,
  type Vda5050Order,
  type Vda5050State,
} from '@checkpoint/protocol';
import type { Message, StepAction } from '../serial/messages.js';

type Body<T> = Omit<T, 'headerId' | 'timestamp' | 'version' | 'manufacturer' | 'serialNumber'>;
type StatusMessage = Extract<Message, { type: 'status' }>;
type HelloMessage = Extract<Message, { type: 'hello' }>;

export type OrderResult =
  | { result: 'accepted' | 'updated'; commands: Message[] }
  | { result: 'duplicate' }
  | { result: 'rejected'; error: Vda5050Error };

const BLOCKING: Record<string, StepAction['blocking']> = { NONE: 'NONE', SOFT: 'SOFT', HARD: 'HARD' };

export class VdaAdapter {
  private orderId = '';
  private orderUpdateId = 0;
  private token = 0;
  private nodes: Vda5050Order['nodes'] = [];
  private edges: Vda5050Order['edges'] = [];
  private actionStates: ActionState[] = [];
  private refToAction = new Map<number, string>();
  private actionToRef = new Map<string, number>();
  private nextRef = 1;
  private status: StatusMessage | null = null;
  private orderErrors: Vda5050Error[] = [];
  private lastBase: { nodeId: string; sequenceId: number } | null = null;
  private pendingCancel: ActionState | null = null;
  private readonly seenInstant = new Set<string>();
  mapId: string;

  constructor(options: { mapId?: string } = {}) {
    this.mapId = options.mapId ?? 'floor-0';
  }

  get busy(): boolean {
    return this.nodes.length > 0 || this.actionStates.some((a) => a.actionStatus === 'WAITING' || a.actionStatus === 'RUNNING' || a.actionStatus === 'INITIALIZING');
  }

  onOrder(order: Vda5050Order): OrderResult {
    const reject = (errorType: string, description: string): OrderResult => {
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
    const base = order.nodes.filter((n) => n.released);
    if (order.orderId === this.orderId) {
      if (order.orderUpdateId === this.orderUpdateId) return { result: 'duplicate' };
      if (order.orderUpdateId < this.orderUpdateId) return reject('orderUpdateError', `orderUpdateId ${order.orderUpdateId} is lower than ${this.orderUpdateId}`);
      if (!this.lastBase || first.nodeId !== this.lastBase.nodeId || first.sequenceId !== this.lastBase.sequenceId) {
        return reject('orderUpdateError', `update must start at the last base node ${this.lastBase?.nodeId}/${this.lastBase?.sequenceId}`);
      }
      this.orderUpdateId = order.orderUpdateId;
      const added = base.slice(1);
      this.nodes = [...this.nodes.filter((n) => n.released), ...added];
      this.edges = [...this.edges.filter((e) => e.released), ...order.edges.filter((e) => e.released)];
      this.orderErrors = [];
      return { result: 'updated', commands: this.steps(order, added) };
    }
    if (this.busy) return reject('orderError', `still executing order ${this.orderId}; cancel it first`);
    if (this.status && first.nodeId !== this.status.lastNodeId) {
      return reject('noRouteError', `order starts at ${first.nodeId} but the robot is at ${this.status.lastNodeId}`);
    }
    this.orderId = order.orderId;
    this.orderUpdateId = order.orderUpdateId;
    this.token = (this.token + 1) & 0xffff;
    this.nodes = base.slice(1);
    this.edges = order.edges.filter((e) => e.released);
    this.actionStates = this.actionStates.filter((a) => a.actionStatus === 'RUNNING' && !this.refToActionHasNode(a.actionId));
    this.orderErrors = [];
    if (first.nodePosition) this.mapId = first.nodePosition.mapId;
    return { result: 'accepted', commands: this.steps(order, base) };
  }

  private refToActionHasNode(actionId: string): boolean {
    return this.actionToRef.has(actionId);
  }

  /** STEP commands for `nodes` (the base part); the first node of a new order has no edge. */
  private steps(order: Vda5050Order, nodes: Vda5050Node[]): Message[] {
    const commands: Message[] = [];
    for (const node of nodes) {
      const edge = order.edges.find((e) => e.endNodeId === node.nodeId && e.sequenceId === node.sequenceId - 1);
      const prev = order.nodes.find((n) => n.sequenceId === node.sequenceId - 2);
      const lengthM = edge?.length ?? (edge && prev?.nodePosition && node.nodePosition ? Math.hypot(node.nodePosition.x - prev.nodePosition.x, node.nodePosition.y - prev.nodePosition.y) : 0);
      const actions: StepAction[] = node.actions.map((a) => {
        const ref = this.nextRef;
        this.nextRef = this.nextRef >= 0xffff ? 1 : this.nextRef + 1;
        this.refToAction.set(ref, a.actionId);
        this.actionToRef.set(a.actionId, ref);
        this.actionStates.push({ actionId: a.actionId, actionType: a.actionType, actionStatus: 'WAITING' });
        return {
          ref,
          type: a.actionType,
          blocking: BLOCKING[a.blockingType] ?? 'HARD',
          params: (a.actionParameters ?? []).map((p) => ({ key: p.key, value: typeof p.value === 'string' ? p.value : JSON.stringify(p.value) })),
        };
      });
      commands.push({
        type: 'step',
        orderToken: this.token,
        nodeSeq: node.sequenceId,
        nodeId: node.nodeId,
        xMm: (node.nodePosition?.x ?? 0) * 1000,
        yMm: (node.nodePosition?.y ?? 0) * 1000,
        edgeLengthMm: edge ? Math.max(1, lengthM * 1000) : 0,
        maxSpeedMmS: edge?.maxSpeed ? Math.min(65535, Math.round(edge.maxSpeed * 1000)) : 0,
        actions,
      });
      this.lastBase = { nodeId: node.nodeId, sequenceId: node.sequenceId };
    }
    return commands;
  }

  /** Serial commands for instant actions (deduplicated by actionId). */
  onInstantActions(msg: Vda5050InstantActions): Message[] {
    const commands: Message[] = [];
    for (const a of msg.actions) {
      if (this.seenInstant.has(a.actionId)) continue;
      this.seenInstant.add(a.actionId);
      const state: ActionState = { actionId: a.actionId, actionType: a.actionType, actionStatus: 'FINISHED' };
      switch (a.actionType) {
        case 'cancelOrder':
          if (!this.busy) {
            state.actionStatus = 'FAILED';
            state.resultDescription = 'noOrderToCancel';
            break;
          }
          commands.push({ type: 'cancel' });
          state.actionStatus = 'RUNNING';
          this.pendingCancel = state;
          break;
        case 'trigger': {
          const target = a.actionParameters?.find((p) => p.key === 'actionId')?.value;
          const ref = typeof target === 'string' ? this.actionToRef.get(target) : undefined;
          if (ref === undefined) {
            state.actionStatus = 'FAILED';
            state.resultDescription = `unknown action ${String(target)}`;
          } else commands.push({ type: 'trigger', ref });
          break;
        }
        case 'startPause':
        case 'stopPause':
          commands.push({ type: 'pause', paused: a.actionType === 'startPause' });
          break;
        case 'stateRequest':
        case 'factsheetRequest':
          break;
        default:
          state.actionStatus = 'FAILED';
          state.resultDescription = `unsupported instant action ${a.actionType}`;
      }
      this.actionStates.push(state);
    }
    if (this.seenInstant.size > 10_000) this.seenInstant.clear();
    return commands;
  }

  onStatus(s: StatusMessage): void {
    this.status = s;
    if (s.orderToken === this.token) {
      this.nodes = this.nodes.filter((n) => n.sequenceId > s.lastNodeSeq);
      this.edges = this.edges.filter((e) => e.sequenceId > s.lastNodeSeq);
    }
    if (this.pendingCancel && !s.driving) {
      this.nodes = [];
      this.edges = [];
      for (const a of this.actionStates) if (a.actionStatus === 'WAITING' || a.actionStatus === 'RUNNING') if (a !== this.pendingCancel) a.actionStatus = 'FAILED';
      this.pendingCancel.actionStatus = 'FINISHED';
      this.pendingCancel = null;
    }
  }

  onAction(m: Extract<Message, { type: 'action' }>): void {
    const id = this.refToAction.get(m.ref);
    const state = id ? this.actionStates.find((a) => a.actionId === id) : undefined;
    if (!state) return;
    state.actionStatus = m.status;
    if (m.result) state.resultDescription = m.result;
    else delete state.resultDescription;
  }

  /** The body of a VDA 5050 `state` (the caller adds the header). */
  state(): Body<Vda5050State> {
    const s = this.status;
    return {
      orderId: this.orderId,
      orderUpdateId: this.orderUpdateId,
      lastNodeId: s?.lastNodeId ?? '',
      lastNodeSequenceId: s?.lastNodeSeq ?? 0,
      driving: s?.driving ?? false,
      paused: s?.paused ?? false,
      operatingMode: 'AUTOMATIC',
      nodeStates: this.nodes.map((n) => ({ nodeId: n.nodeId, sequenceId: n.sequenceId, released: n.released, ...(n.nodePosition ? { nodePosition: n.nodePosition } : {}) })),
      edgeStates: this.edges.map((e) => ({ edgeId: e.edgeId, sequenceId: e.sequenceId, released: e.released })),
      ...(s ? { agvPosition: { x: s.xMm / 1000, y: s.yMm / 1000, theta: Math.max(-Math.PI, Math.min(Math.PI, s.thetaMrad / 1000)), mapId: this.mapId, positionInitialized: true } } : {}),
      actionStates: this.actionStates.slice(-200),
      batteryState: { batteryCharge: (s?.batteryPermille ?? 0) / 10, charging: s?.charging ?? false },
      errors: [
        ...this.orderErrors,
        ...(s?.errors ?? []).map((e) => ({ errorType: e.errorType || 'mcuError', errorLevel: e.fatal ? ('FATAL' as const) : ('WARNING' as const), ...(e.description ? { errorDescription: e.description } : {}) })),
      ],
      safetyState: { eStop: s?.eStop ?? 'NONE', fieldViolation: s?.fieldViolation ?? false },
    };
  }

  /** A factsheet from the MCU's hello (what it says it can do, how fast). */
  static factsheet(hello: HelloMessage): Body<Vda5050Factsheet> {
    return {
      typeSpecification: {
        seriesName: `${hello.manufacturer} firmware ${hello.firmware}`.slice(0, 128),
        agvKinematic: 'DIFF',
        agvClass: 'CARRIER',
        maxLoadMass: 0,
        localizationTypes: ['NATURAL'],
        navigationTypes: ['AUTONOMOUS'],
      },
      physicalParameters: { speedMin: 0, speedMax: hello.speedMmS / 1000, accelerationMax: 0.5, decelerationMax: 0.5, heightMin: 0.3, heightMax: 1.5, width: 0.6, length: 0.8 },
      // heightMin and these three are required by the official 2.0.0 factsheet schema.
      protocolLimits: { maxStringLens: {}, maxArrayLens: {}, timing: { minOrderInterval: 0.1, minStateInterval: 0.1 } },
      protocolFeatures: {
        optionalParameters: [],
        agvActions: [
          ...hello.capabilities.map((actionType) => ({ actionType, actionScopes: ['NODE' as const] })),
          ...['cancelOrder', 'startPause', 'stopPause', 'stateRequest', 'trigger'].map((actionType) => ({ actionType, actionScopes: ['INSTANT' as const] })),
        ],
      },
      agvGeometry: {},
      loadSpecification: {},
    };
  }
}

export { VDA5050_VERSION };
