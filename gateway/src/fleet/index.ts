/** The fleet core (VDA 5050 master control, tasks, dispatch, rules): pure, no I/O. See fleet.ts. */
export { createFleet, TaskNotFoundError, RobotNotFoundError, RobotStateError, type Fleet, type FleetEffects, type FleetOptions, type OutboundMessage, type RobotSample } from './fleet.js';
export { loadSiteMap, SiteMapError, SiteMapSchema, NODE_KINDS, type SiteMap, type SiteMapConfig, type MapNode, type MapEdge, type Zone, type Path, type NodeKind } from './map.js';
export { applyRobotMessage, emptyRobot, isIdle, robotKey, unavailableReason, type RobotKey, type RobotRecord, type RegistryMessage, type ApplyOutcome } from './registry.js';
export {
  TaskRequestSchema,
  TaskRequestError,
  TaskStateError,
  parseTaskRequest,
  newTask,
  transition,
  requeueOrFail,
  confirm,
  TERMINAL,
  type Task,
  type TaskRequest,
  type TaskStatus,
  type TaskType,
  type ConfirmationKind,
  type HistoryEntry,
  type TaskProgress,
  type RunningOrder,
} from './tasks.js';
export {
  buildOrder,
  buildMoveOrder,
  nextPatrolUpdate,
  orderMessage,
  cancelOrderMessage,
  triggerMessage,
  orderProgress,
  taskExtent,
  RouteError,
  REQUIRED_ACTIONS,
  TRIGGER_ACTION,
  DISINFECT_ACTION,
  type OrderPlan,
  type OrderVerdict,
} from './orders.js';
export { assignTasks, DEFAULT_POLICY, type DispatchPolicy, type DispatchInput, type DispatchPlan, type RobotCandidate, type TaskCandidate, type Assignment } from './dispatch.js';
export { RuleSchema, loadRules, evaluateRules, type Rule, type AlertAcknowledged, type RuleMatch } from './rules.js';
