/**
 * The robot registry: what the master control knows about each robot, folded from its VDA 5050
 * `connection`, `state`, `visualization` and `factsheet` messages by a pure reducer.
 *
 * Ordering. Messages reach us through one broker, but QoS 1 redelivery, retained replays after a
 * reconnect and robot restarts (headerId back to 0) all happen. Per topic we keep the last
 * accepted (timestamp, headerId): an exact repeat is a duplicate; an older timestamp, or the same
 * timestamp with a lower-or-equal headerId, is stale. A restart has a newer timestamp and a low
 * headerId, so it is accepted.
 *
 * The last will is the exception: a CONNECTIONBROKEN will is composed when the robot connects,
 * just before it publishes ONLINE, so it is "older" than the ONLINE it overrides, by however long
 * the robot stayed connected. The broker publishes it when the connection breaks, so it is judged
 * by its arrival (VDA 5050 §6.14): a CONNECTIONBROKEN that arrives while the robot is ONLINE is
 * applied whatever its timestamp, unless it repeats the will applied last (QoS 1 redelivery).
 *
 * Reconnect. After a connection turns ONLINE again the last stored state predates the outage;
 * the robot is not available (`freshState` false) until its first state arrives after it.
 */
import type {
  ActionState,
  AgvPosition,
  ConnectionState,
  EStop,
  OperatingMode,
  RobotAddress,
  Vda5050Connection,
  Vda5050Error,
  Vda5050Factsheet,
  Vda5050State,
  Vda5050Visualization,
} from '@checkpoint/protocol';

export type RobotKey = string;
export const robotKey = (r: RobotAddress): RobotKey => `${r.manufacturer}/${r.serialNumber}`;


export interface Cursor {
  headerId: number;
  timestampMs: number;
}

export interface RobotRecord {
  key: RobotKey;
  manufacturer: string;
  serialNumber: string;
  /** UNKNOWN until the first `connection` message. */
  connection: ConnectionState | 'UNKNOWN';
  /** When `connection` last changed (receive time, ms). */
  connectionSince: number;
  /** Receive time of the last accepted message of any kind. */
  lastSeen: number;
  version: string | null;
  lastNodeId: string | null;
  lastNodeSequenceId: number;
  position: AgvPosition | null;
  driving: boolean;
  paused: boolean;
  batteryCharge: number | null;
  charging: boolean;
  operatingMode: OperatingMode | null;
  errors: Vda5050Error[];
  eStop: EStop;
  fieldViolation: boolean;
  orderId: string;
  orderUpdateId: number;
  /** Node and edge ids (with sequence ids) the robot still has to traverse. */
  nodeStates: Array<{ nodeId: string; sequenceId: number; released: boolean }>;
  edgeStates: Array<{ edgeId: string; sequenceId: number; released: boolean }>;
  actionStates: ActionState[];
  /** Action types from the factsheet (e.g. pick, drop, disinfect, waitForTrigger). */
  capabilities: string[];
  seriesName: string | null;
  /** Load types the factsheet declares (loadSpecification.loadSets[].loadType); absent in records stored before. */
  loadTypes?: string[];
  /** m/s from the factsheet (physicalParameters.speedMax), null until one arrives. */
  speedMax: number | null;
  /** False from a connection turning ONLINE until the next state arrives (the stored one predates it). */
  freshState: boolean;
  /** The last will applied, so that its redelivery is a duplicate. */
  lastWill: Cursor | null;
  cursors: Partial<Record<'connection' | 'state' | 'visualization' | 'factsheet', Cursor>>;
}

export type RegistryMessage =
  | { kind: 'connection'; message: Vda5050Connection }
  | { kind: 'state'; message: Vda5050State }
  | { kind: 'visualization'; message: Vda5050Visualization }
  | { kind: 'factsheet'; message: Vda5050Factsheet };

export type ApplyOutcome =
  | { applied: true; record: RobotRecord; connectionChanged: boolean }
  | { applied: false; record: RobotRecord | undefined; reason: 'duplicate' | 'stale' };

export function emptyRobot(address: RobotAddress, now: number): RobotRecord {
  return {
    key: robotKey(address),
    manufacturer: address.manufacturer,
    serialNumber: address.serialNumber,
    connection: 'UNKNOWN',
    connectionSince: now,
    lastSeen: now,
    version: null,
    lastNodeId: null,
    lastNodeSequenceId: 0,
    position: null,
    driving: false,
    paused: false,
    batteryCharge: null,
    charging: false,
    operatingMode: null,
    errors: [],
    eStop: 'NONE',
    fieldViolation: false,
    orderId: '',
    orderUpdateId: 0,
    nodeStates: [],
    edgeStates: [],
    actionStates: [],
    capabilities: [],
    seriesName: null,
    speedMax: null,
    freshState: false,
    lastWill: null,
    cursors: {},
  };
}

function order(cursor: Cursor | undefined, next: Cursor): 'newer' | 'duplicate' | 'stale' {
  if (!cursor) return 'newer';
  if (next.timestampMs === cursor.timestampMs && next.headerId === cursor.headerId) return 'duplicate';
  if (next.timestampMs > cursor.timestampMs) return 'newer';
  if (next.timestampMs === cursor.timestampMs && next.headerId > cursor.headerId) return 'newer';
  return 'stale';
}

/**
 * Folds one validated message into the robot's record (a new object; the input is not changed).
 * `now` is the receive time in ms. The message must already be checked to belong to the robot.
 */
export function applyRobotMessage(record: RobotRecord | undefined, input: RegistryMessage, now: number): ApplyOutcome {
  const { message } = input;
  const cursor: Cursor = { headerId: message.headerId, timestampMs: Date.parse(message.timestamp) };
  const prev = record ?? emptyRobot(message, now);
  const verdict = order(prev.cursors[input.kind], cursor);

  if (input.kind === 'connection') {
    const message = input.message;
    const repeatsWill = prev.lastWill !== null && prev.lastWill.headerId === cursor.headerId && prev.lastWill.timestampMs === cursor.timestampMs;
    const isWill = verdict === 'stale' && message.connectionState === 'CONNECTIONBROKEN' && prev.connection === 'ONLINE' && !repeatsWill;
    if (verdict !== 'newer' && !isWill) return { applied: false, record, reason: verdict === 'duplicate' || repeatsWill ? 'duplicate' : 'stale' };
    const changed = prev.connection !== message.connectionState;
    const next: RobotRecord = {
      ...prev,
      connection: message.connectionState,
      freshState: changed && message.connectionState === 'ONLINE' ? false : prev.freshState,
      lastWill: message.connectionState === 'CONNECTIONBROKEN' ? cursor : prev.lastWill,
      connectionSince: changed ? now : prev.connectionSince,
      lastSeen: now,
      version: message.version,
      // Keep the ONLINE's cursor when applying its will, so a replay of that ONLINE stays a duplicate.
      cursors: { ...prev.cursors, connection: isWill ? prev.cursors.connection! : cursor },
    };
    return { applied: true, record: next, connectionChanged: changed };
  }

  if (verdict !== 'newer') return { applied: false, record, reason: verdict };
  const base = { ...prev, lastSeen: now, version: message.version, cursors: { ...prev.cursors, [input.kind]: cursor } };

  switch (input.kind) {
    case 'state': {
      const s = input.message;
      return {
        applied: true,
        connectionChanged: false,
        record: {
          ...base,
          lastNodeId: s.lastNodeId || prev.lastNodeId,
          lastNodeSequenceId: s.lastNodeSequenceId,
          position: s.agvPosition ?? prev.position,
          driving: s.driving,
          paused: s.paused ?? false,
          freshState: true,
          batteryCharge: s.batteryState.batteryCharge,
          charging: s.batteryState.charging,
          operatingMode: s.operatingMode,
          errors: s.errors,
          eStop: s.safetyState.eStop,
          fieldViolation: s.safetyState.fieldViolation,
          orderId: s.orderId,
          orderUpdateId: s.orderUpdateId,
          nodeStates: s.nodeStates.map(({ nodeId, sequenceId, released }) => ({ nodeId, sequenceId, released })),
          edgeStates: s.edgeStates.map(({ edgeId, sequenceId, released }) => ({ edgeId, sequenceId, released })),
          actionStates: s.actionStates,
        },
      };
    }
    case 'visualization':
      return { applied: true, connectionChanged: false, record: { ...base, position: input.message.agvPosition ?? prev.position } };
    case 'factsheet': {
      const f = input.message;
      return {
        applied: true,
        connectionChanged: false,
        record: {
          ...base,
          capabilities: [...new Set(f.protocolFeatures.agvActions.map((a) => a.actionType))],
          seriesName: f.typeSpecification.seriesName,
          loadTypes: declaredLoadTypes(f.loadSpecification),
          speedMax: f.physicalParameters.speedMax > 0 ? f.physicalParameters.speedMax : prev.speedMax,
        },
      };
    }
  }
}

/** loadSpecification.loadSets[].loadType of a factsheet (an open section: anything not a string is ignored). */
function declaredLoadTypes(spec: unknown): string[] {
  const sets = (spec as { loadSets?: unknown } | undefined)?.loadSets;
  if (!Array.isArray(sets)) return [];
  return [...new Set(sets.map((s) => (s as { loadType?: unknown } | null)?.loadType).filter((t): t is string => typeof t === 'string' && t.length > 0))];
}

/** Why a robot cannot take work now, or null when it can. */
export function unavailableReason(r: RobotRecord): string | null {
  if (r.connection !== 'ONLINE') return `connection ${r.connection}`;
  if (r.eStop !== 'NONE') return `emergency stop (${r.eStop})`;
  const fatal = r.errors.find((e) => e.errorLevel === 'FATAL');
  if (fatal) return `fatal error ${fatal.errorType}`;
  if (!r.freshState) return 'waiting for its first state since connecting';
  if (r.paused) return 'paused';
  if (r.operatingMode !== 'AUTOMATIC') return `operating mode ${r.operatingMode ?? 'unknown'}`;
  if (r.lastNodeId === null) return 'position unknown (no lastNodeId)';
  if (r.batteryCharge === null) return 'battery unknown';
  return null;
}

/** The robot has nothing left to drive and no action running. */
export function isIdle(r: RobotRecord): boolean {
  return (
    r.nodeStates.length === 0 &&
    r.edgeStates.length === 0 &&
    r.actionStates.every((a) => a.actionStatus === 'FINISHED' || a.actionStatus === 'FAILED')
  );
}
