/**
 * VDA 5050 2.x message schemas (order, instantActions, state, visualization, connection,
 * factsheet) as TypeBox schemas, their TS types and compiled validators.
 *
 * Field names follow the standard (VDA5050/VDA5050, json_schemas/*.schema on release/2.0.0 and
 * release/2.1.0). Both 2.0.x and 2.1.x payloads are accepted: 2.1 only added optional fields
 * (edge `corridor`, state `maps`, error `errorHint`, factsheet `vehicleConfig`, ...).
 *
 * Unlike our own payloads (schemas.ts), VDA 5050 objects are left open: the standard's schemas
 * do not forbid additional properties and vendors add their own. Every string and array we read
 * is still bounded. `parseVda5050` also checks what a JSON schema cannot: an order's node/edge
 * chain and sequence ids, and that the header names the robot of the topic.
 */
import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { compileValidator, MAX_JSON_PAYLOAD_BYTES, type PayloadIssue, type PayloadResult, type Validator } from './validators.js';
import { ROBOT_ID_PATTERN, type RobotAddress } from './topics.js';

/** The version we send. We accept any 2.0.x or 2.1.x. */
export const VDA5050_VERSION = '2.1.0';
export const VDA5050_VERSION_PATTERN = '^2\\.[01]\\.\\d+$';

const Text = (maxLength = 256) => Type.String({ maxLength });
const Ident = (maxLength = 128) => Type.String({ minLength: 1, maxLength });
const List = <T extends TSchema>(item: T, maxItems = 1000) => Type.Array(item, { maxItems });
const Uint32 = Type.Integer({ minimum: 0, maximum: 4_294_967_295 });
const Angle = Type.Number({ minimum: -Math.PI - 1e-9, maximum: Math.PI + 1e-9 });
const NonNegative = Type.Number({ minimum: 0 });

/** ISO 8601 UTC (`2017-04-15T11:40:03.12Z`); an explicit offset is tolerated. */
export const Vda5050Timestamp = Type.String({
  format: 'date-time',
  pattern: '^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}(\\.\\d{1,9})?(Z|[+-]\\d{2}:\\d{2})$',
  maxLength: 40,
});

const RobotId = Type.String({ pattern: ROBOT_ID_PATTERN, maxLength: 64 });

/** Fields every VDA 5050 message starts with (§6.4). */
const headerFields = {
  /** Counted per topic by the sender, +1 per message sent. */
  headerId: Uint32,
  timestamp: Vda5050Timestamp,
  version: Type.String({ pattern: VDA5050_VERSION_PATTERN, maxLength: 16, description: '2.0.x or 2.1.x' }),
  manufacturer: RobotId,
  serialNumber: RobotId,
};
export const Vda5050Header = Type.Object(headerFields);
export type Vda5050Header = Static<typeof Vda5050Header>;

// ---- actions ----------------------------------------------------------------------------------

export const BlockingType = Type.Union([Type.Literal('NONE'), Type.Literal('SOFT'), Type.Literal('HARD')]);
export type BlockingType = Static<typeof BlockingType>;

export const ActionParameter = Type.Object({
  key: Ident(),
  value: Type.Union([Type.String({ maxLength: 4096 }), Type.Number(), Type.Boolean(), Type.Array(Type.Unknown(), { maxItems: 1000 }), Type.Object({})]),
});
export type ActionParameter = Static<typeof ActionParameter>;

export const Vda5050Action = Type.Object({
  /** Predefined (pick, drop, cancelOrder, waitForTrigger, startCharging, ...) or custom (disinfect). */
  actionType: Ident(),
  /** Unique; a UUID is suggested. Deduplication and progress use it. */
  actionId: Ident(),
  actionDescription: Type.Optional(Text()),
  blockingType: BlockingType,
  actionParameters: Type.Optional(List(ActionParameter, 100)),
});
export type Vda5050Action = Static<typeof Vda5050Action>;

// ---- order ------------------------------------------------------------------------------------

export const NodePosition = Type.Object({
  x: Type.Number(),
  y: Type.Number(),
  theta: Type.Optional(Angle),
  allowedDeviationXY: Type.Optional(NonNegative),
  allowedDeviationTheta: Type.Optional(Type.Number({ minimum: 0, maximum: Math.PI + 1e-9 })),
  /** One map per floor. */
  mapId: Ident(),
  mapDescription: Type.Optional(Text()),
});
export type NodePosition = Static<typeof NodePosition>;

export const Vda5050Node = Type.Object({
  nodeId: Ident(),
  /** Runs across nodes and edges: node 0, edge 1, node 2, ... */
  sequenceId: Uint32,
  nodeDescription: Type.Optional(Text()),
  /** true = base (may be driven), false = horizon. */
  released: Type.Boolean(),
  nodePosition: Type.Optional(NodePosition),
  actions: List(Vda5050Action, 100),
});
export type Vda5050Node = Static<typeof Vda5050Node>;

const ControlPoint = Type.Object({ x: Type.Number(), y: Type.Number(), weight: Type.Optional(Type.Number({ minimum: 0 })) });
export const Trajectory = Type.Object({
  degree: Type.Integer({ minimum: 1 }),
  knotVector: List(Type.Number({ minimum: 0, maximum: 1 })),
  controlPoints: List(ControlPoint),
});

export const Vda5050Edge = Type.Object({
  edgeId: Ident(),
  sequenceId: Uint32,
  edgeDescription: Type.Optional(Text()),
  released: Type.Boolean(),
  startNodeId: Ident(),
  endNodeId: Ident(),
  maxSpeed: Type.Optional(NonNegative),
  maxHeight: Type.Optional(NonNegative),
  minHeight: Type.Optional(NonNegative),
  orientation: Type.Optional(Angle),
  orientationType: Type.Optional(Type.Union([Type.Literal('GLOBAL'), Type.Literal('TANGENTIAL')])),
  direction: Type.Optional(Text()),
  rotationAllowed: Type.Optional(Type.Boolean()),
  maxRotationSpeed: Type.Optional(NonNegative),
  trajectory: Type.Optional(Trajectory),
  /** Metres; helps the robot plan. */
  length: Type.Optional(NonNegative),
  /** 2.1+ */
  corridor: Type.Optional(
    Type.Object({
      leftWidth: NonNegative,
      rightWidth: NonNegative,
      corridorRefPoint: Type.Optional(Type.Union([Type.Literal('KINEMATICCENTER'), Type.Literal('CONTOUR')])),
    }),
  ),
  actions: List(Vda5050Action, 100),
});
export type Vda5050Edge = Static<typeof Vda5050Edge>;

export const Vda5050Order = Type.Object({
  ...headerFields,
  orderId: Ident(),
  /** Same orderId with a higher orderUpdateId extends/replaces the horizon. */
  orderUpdateId: Uint32,
  zoneSetId: Type.Optional(Ident()),
  nodes: Type.Array(Vda5050Node, { minItems: 1, maxItems: 1000 }),
  edges: List(Vda5050Edge),
});
export type Vda5050Order = Static<typeof Vda5050Order>;

// ---- instantActions -----------------------------------------------------------------------------

export const Vda5050InstantActions = Type.Object({
  ...headerFields,
  actions: List(Vda5050Action, 100),
});
export type Vda5050InstantActions = Static<typeof Vda5050InstantActions>;

// ---- state ----------------------------------------------------------------------------------------

export const AgvPosition = Type.Object({
  x: Type.Number(),
  y: Type.Number(),
  theta: Angle,
  mapId: Ident(),
  mapDescription: Type.Optional(Text()),
  positionInitialized: Type.Boolean(),
  localizationScore: Type.Optional(Type.Number({ minimum: 0, maximum: 1 })),
  deviationRange: Type.Optional(NonNegative),
});
export type AgvPosition = Static<typeof AgvPosition>;

export const Velocity = Type.Object({
  vx: Type.Optional(Type.Number()),
  vy: Type.Optional(Type.Number()),
  omega: Type.Optional(Type.Number()),
});

export const NodeState = Type.Object({
  nodeId: Ident(),
  sequenceId: Uint32,
  nodeDescription: Type.Optional(Text()),
  nodePosition: Type.Optional(NodePosition),
  released: Type.Boolean(),
});
export type NodeState = Static<typeof NodeState>;

export const EdgeState = Type.Object({
  edgeId: Ident(),
  sequenceId: Uint32,
  edgeDescription: Type.Optional(Text()),
  released: Type.Boolean(),
  trajectory: Type.Optional(Trajectory),
});
export type EdgeState = Static<typeof EdgeState>;

export const ActionStatus = Type.Union([
  Type.Literal('WAITING'),
  Type.Literal('INITIALIZING'),
  Type.Literal('RUNNING'),
  Type.Literal('PAUSED'),
  Type.Literal('FINISHED'),
  Type.Literal('FAILED'),
]);
export type ActionStatus = Static<typeof ActionStatus>;

export const ActionState = Type.Object({
  actionId: Ident(),
  actionType: Type.Optional(Ident()),
  actionDescription: Type.Optional(Text()),
  actionStatus: ActionStatus,
  resultDescription: Type.Optional(Text(1024)),
});
export type ActionState = Static<typeof ActionState>;

export const BatteryState = Type.Object({
  /** State of charge in percent; binary-only robots report 20 (bad) / 80 (good). */
  batteryCharge: Type.Number({ minimum: 0, maximum: 100 }),
  batteryVoltage: Type.Optional(Type.Number()),
  batteryHealth: Type.Optional(Type.Number({ minimum: 0, maximum: 100 })),
  charging: Type.Boolean(),
  /** Estimated reach in metres. */
  reach: Type.Optional(Type.Number({ minimum: 0 })),
});
export type BatteryState = Static<typeof BatteryState>;

const Reference = Type.Object({ referenceKey: Ident(), referenceValue: Text(1024) });

export const ErrorLevel = Type.Union([Type.Literal('WARNING'), Type.Literal('FATAL')]);
export const Vda5050Error = Type.Object({
  errorType: Ident(),
  errorReferences: Type.Optional(List(Reference, 50)),
  errorDescription: Type.Optional(Text(1024)),
  /** 2.1+ */
  errorHint: Type.Optional(Text(1024)),
  errorLevel: ErrorLevel,
});
export type Vda5050Error = Static<typeof Vda5050Error>;

export const Information = Type.Object({
  infoType: Ident(),
  infoReferences: Type.Optional(List(Reference, 50)),
  infoDescription: Type.Optional(Text(1024)),
  infoLevel: Type.Union([Type.Literal('DEBUG'), Type.Literal('INFO')]),
});

export const EStop = Type.Union([Type.Literal('AUTOACK'), Type.Literal('MANUAL'), Type.Literal('REMOTE'), Type.Literal('NONE')]);
export type EStop = Static<typeof EStop>;
export const SafetyState = Type.Object({ eStop: EStop, fieldViolation: Type.Boolean() });
export type SafetyState = Static<typeof SafetyState>;

export const OperatingMode = Type.Union([
  Type.Literal('AUTOMATIC'),
  Type.Literal('SEMIAUTOMATIC'),
  Type.Literal('MANUAL'),
  Type.Literal('SERVICE'),
  Type.Literal('TEACHIN'),
]);
export type OperatingMode = Static<typeof OperatingMode>;

const Load = Type.Object({
  loadId: Type.Optional(Text()),
  loadType: Type.Optional(Text()),
  loadPosition: Type.Optional(Text()),
  weight: Type.Optional(NonNegative),
});

export const Vda5050State = Type.Object({
  ...headerFields,
  /** 2.1+: maps on the vehicle. */
  maps: Type.Optional(
    List(
      Type.Object({
        mapId: Ident(),
        mapVersion: Ident(),
        mapDescription: Type.Optional(Text()),
        mapStatus: Type.Union([Type.Literal('ENABLED'), Type.Literal('DISABLED')]),
      }),
      100,
    ),
  ),
  zoneSetId: Type.Optional(Ident()),
  /** Empty string when the robot has never had an order. */
  orderId: Text(128),
  orderUpdateId: Uint32,
  lastNodeId: Text(128),
  lastNodeSequenceId: Uint32,
  driving: Type.Boolean(),
  paused: Type.Optional(Type.Boolean()),
  newBaseRequest: Type.Optional(Type.Boolean()),
  distanceSinceLastNode: Type.Optional(NonNegative),
  operatingMode: OperatingMode,
  /** Nodes still to traverse; empty when idle. */
  nodeStates: List(NodeState),
  edgeStates: List(EdgeState),
  agvPosition: Type.Optional(AgvPosition),
  velocity: Type.Optional(Velocity),
  loads: Type.Optional(Type.Array(Load)),
  actionStates: List(ActionState),
  batteryState: BatteryState,
  // The standard sets no limit on errors or information (a robot may report 101 and more); the
  // payload size check of parseVda5050 is what bounds them.
  errors: Type.Array(Vda5050Error),
  information: Type.Optional(Type.Array(Information)),
  safetyState: SafetyState,
});
export type Vda5050State = Static<typeof Vda5050State>;

// ---- visualization ------------------------------------------------------------------------------

export const Vda5050Visualization = Type.Object({
  ...headerFields,
  agvPosition: Type.Optional(AgvPosition),
  velocity: Type.Optional(Velocity),
});
export type Vda5050Visualization = Static<typeof Vda5050Visualization>;

// ---- connection -------------------------------------------------------------------------------

export const ConnectionState = Type.Union([Type.Literal('ONLINE'), Type.Literal('OFFLINE'), Type.Literal('CONNECTIONBROKEN')]);
export type ConnectionState = Static<typeof ConnectionState>;

export const Vda5050Connection = Type.Object({
  ...headerFields,
  connectionState: ConnectionState,
});
export type Vda5050Connection = Static<typeof Vda5050Connection>;

// ---- factsheet ----------------------------------------------------------------------------------

/** A section we pass through without interpreting (protocolLimits, agvGeometry, ...). */
const OpenSection = Type.Object({});

export const ActionScope = Type.Union([Type.Literal('INSTANT'), Type.Literal('NODE'), Type.Literal('EDGE')]);

export const AgvActionSpec = Type.Object({
  actionType: Ident(),
  actionDescription: Type.Optional(Text(1024)),
  actionScopes: Type.Array(ActionScope, { minItems: 1, maxItems: 3 }),
  actionParameters: Type.Optional(
    List(
      Type.Object({
        key: Ident(),
        valueDataType: Type.Union(
          ['BOOL', 'NUMBER', 'INTEGER', 'FLOAT', 'STRING', 'OBJECT', 'ARRAY'].map((t) => Type.Literal(t)),
        ),
        description: Type.Optional(Text(1024)),
        isOptional: Type.Optional(Type.Boolean()),
      }),
      100,
    ),
  ),
  resultDescription: Type.Optional(Text(1024)),
  /** 2.1+ */
  blockingTypes: Type.Optional(Type.Array(BlockingType, { maxItems: 3 })),
});
export type AgvActionSpec = Static<typeof AgvActionSpec>;

export const Vda5050Factsheet = Type.Object({
  ...headerFields,
  typeSpecification: Type.Object({
    seriesName: Ident(),
    seriesDescription: Type.Optional(Text(1024)),
    agvKinematic: Type.Union([Type.Literal('DIFF'), Type.Literal('OMNI'), Type.Literal('THREEWHEEL')]),
    agvClass: Type.Union([Type.Literal('FORKLIFT'), Type.Literal('CONVEYOR'), Type.Literal('TUGGER'), Type.Literal('CARRIER')]),
    maxLoadMass: NonNegative,
    localizationTypes: List(Ident(32), 10),
    navigationTypes: List(Ident(32), 10),
  }),
  physicalParameters: Type.Object({
    speedMin: NonNegative,
    speedMax: NonNegative,
    accelerationMax: NonNegative,
    decelerationMax: NonNegative,
    heightMin: Type.Optional(NonNegative),
    heightMax: NonNegative,
    width: NonNegative,
    length: NonNegative,
    /** 2.1+ */
    angularSpeedMin: Type.Optional(NonNegative),
    angularSpeedMax: Type.Optional(NonNegative),
  }),
  protocolLimits: OpenSection,
  protocolFeatures: Type.Object({
    optionalParameters: List(OpenSection, 200),
    agvActions: List(AgvActionSpec, 200),
  }),
  agvGeometry: OpenSection,
  loadSpecification: OpenSection,
  /** 2.1+ (localizationParameters in 2.0 is also passed through). */
  vehicleConfig: Type.Optional(OpenSection),
});
export type Vda5050Factsheet = Static<typeof Vda5050Factsheet>;

// ---- validation -------------------------------------------------------------------------------

export const VDA5050_SCHEMAS = {
  order: Vda5050Order,
  instantActions: Vda5050InstantActions,
  state: Vda5050State,
  visualization: Vda5050Visualization,
  connection: Vda5050Connection,
  factsheet: Vda5050Factsheet,
} as const;

export type Vda5050Kind = keyof typeof VDA5050_SCHEMAS;
export type Vda5050MessageOf<K extends Vda5050Kind> = Static<(typeof VDA5050_SCHEMAS)[K]>;
export type Vda5050Message = Vda5050MessageOf<Vda5050Kind>;

const validators: { [K in Vda5050Kind]: Validator<Vda5050MessageOf<K>> } = {
  order: compileValidator(Vda5050Order),
  instantActions: compileValidator(Vda5050InstantActions),
  state: compileValidator(Vda5050State),
  visualization: compileValidator(Vda5050Visualization),
  connection: compileValidator(Vda5050Connection),
  factsheet: compileValidator(Vda5050Factsheet),
};

function failure<T>(kind: string, errors: PayloadIssue[]): PayloadResult<T> {
  const message = `vda5050 ${kind}: ${errors.map((e) => `${e.path || '/'}: ${e.message}`).join('; ')}`;
  return { ok: false, errors, message };
}

/**
 * What the JSON schema cannot say about an order (§6.6): edges = nodes − 1, node/edge sequence
 * ids alternate even/odd and increase by one, each edge joins its neighbouring nodes, and
 * nothing released follows something unreleased. Empty when the order is consistent.
 */
export function checkOrderGraph(order: Pick<Vda5050Order, 'nodes' | 'edges'>): PayloadIssue[] {
  const issues: PayloadIssue[] = [];
  const { nodes, edges } = order;
  if (edges.length !== nodes.length - 1) {
    issues.push({ path: '/edges', message: `expected ${nodes.length - 1} edges for ${nodes.length} nodes, got ${edges.length}` });
    return issues;
  }
  const first = nodes[0]!.sequenceId;
  if (first % 2 !== 0) issues.push({ path: '/nodes/0/sequenceId', message: `node sequence ids are even, got ${first}` });
  let horizon = false;
  for (let i = 0; i < nodes.length; i++) {
    const node = nodes[i]!;
    if (node.sequenceId !== first + 2 * i) {
      issues.push({ path: `/nodes/${i}/sequenceId`, message: `expected ${first + 2 * i}, got ${node.sequenceId}` });
    }
    if (horizon && node.released) issues.push({ path: `/nodes/${i}/released`, message: 'released node after the horizon began' });
    if (!node.released) horizon = true;
    const edge = edges[i];
    if (!edge) continue;
    const next = nodes[i + 1]!;
    if (edge.sequenceId !== first + 2 * i + 1) {
      issues.push({ path: `/edges/${i}/sequenceId`, message: `expected ${first + 2 * i + 1}, got ${edge.sequenceId}` });
    }
    if (edge.startNodeId !== node.nodeId || edge.endNodeId !== next.nodeId) {
      issues.push({
        path: `/edges/${i}`,
        message: `edge ${edge.edgeId} joins ${edge.startNodeId}→${edge.endNodeId} but sits between ${node.nodeId} and ${next.nodeId}`,
      });
    }
    if (edge.released && !(node.released && next.released)) {
      issues.push({ path: `/edges/${i}/released`, message: 'an edge can only be released when both its nodes are' });
    }
    if (issues.length >= 5) break;
  }
  return issues;
}

/** Schema check of an already-parsed value, plus the order graph check for orders. */
export function validateVda5050<K extends Vda5050Kind>(
  kind: K,
  value: unknown,
  topicRobot?: RobotAddress,
): PayloadResult<Vda5050MessageOf<K>> {
  const validator = validators[kind] as Validator<Vda5050MessageOf<K>>;
  if (!validator.check(value)) return failure(kind, validator.explain(value));
  const extra: PayloadIssue[] = [];
  if (topicRobot) {
    const header = value as Vda5050Header;
    if (header.manufacturer !== topicRobot.manufacturer || header.serialNumber !== topicRobot.serialNumber) {
      extra.push({
        path: '/serialNumber',
        message: `payload names ${header.manufacturer}/${header.serialNumber} but was sent on the topic of ${topicRobot.manufacturer}/${topicRobot.serialNumber}`,
      });
    }
  }
  if (kind === 'order') extra.push(...checkOrderGraph(value as Vda5050Order));
  return extra.length > 0 ? failure(kind, extra) : { ok: true, value };
}

/**
 * Size check, JSON parse, schema validation (and the order graph check) of a received VDA 5050
 * payload. Pass the robot parsed from the topic to also check the header names that robot.
 */
export function parseVda5050<K extends Vda5050Kind>(
  kind: K,
  payload: Buffer | string,
  topicRobot?: RobotAddress,
): PayloadResult<Vda5050MessageOf<K>> {
  const size = typeof payload === 'string' ? Buffer.byteLength(payload) : payload.length;
  // Orders of a few hundred nodes and factsheets are larger than our own payloads.
  const limit = 4 * MAX_JSON_PAYLOAD_BYTES;
  if (size > limit) return failure(kind, [{ path: '', message: `payload of ${size} bytes exceeds ${limit}` }]);
  let value: unknown;
  try {
    value = JSON.parse(typeof payload === 'string' ? payload : payload.toString('utf8'));
  } catch (err) {
    return failure(kind, [{ path: '', message: `not valid JSON (${(err as Error).message})` }]);
  }
  return validateVda5050(kind, value, topicRobot);
}

/**
 * The version to speak to a robot that reported `reported` (in its state, connection or
 * factsheet): its own, when it is a 2.0.x or 2.1.x; ours otherwise (nothing heard yet). Robots
 * may insist on an exact match (vda-5050-lib refuses a 2.1.0 order as a 2.0.0 client).
 */
export function vda5050VersionFor(reported: string | null | undefined): string {
  return reported && new RegExp(VDA5050_VERSION_PATTERN).test(reported) ? reported : VDA5050_VERSION;
}

/**
 * A header for a message we send; `headerId` is per topic and counted by the caller. `version`
 * is the robot's (see vda5050VersionFor).
 */
export function vda5050Header(robot: RobotAddress, headerId: number, now: Date = new Date(), version: string = VDA5050_VERSION): Vda5050Header {
  return {
    headerId,
    timestamp: now.toISOString(),
    version,
    manufacturer: robot.manufacturer,
    serialNumber: robot.serialNumber,
  };
}
