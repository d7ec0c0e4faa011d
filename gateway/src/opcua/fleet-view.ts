/**
 * What the OPC UA server needs of the robot fleet. The fleet wiring (gateway/src/fleet plus its
 * MQTT adapter) implements this; until it does, the gateway passes none and the `Site/Robots`
 * and `Site/Tasks` folders exist but stay empty, and the task methods answer BadNotSupported.
 *
 * Kept small on purpose: a snapshot of robots and task counts, a change hook (no polling), and
 * the two commands operators may give through OPC UA.
 */

/** One robot as SCADA sees it. */
export interface RobotView {
  /** `manufacturer/serialNumber` (VDA 5050); each `/`-separated part is one level under Site/Robots. */
  id: string;
  online: boolean;
  /** 0..100, null until the robot reported it. */
  batteryPct: number | null;
  /** e.g. idle, driving, charging, working, error, offline: the fleet decides the vocabulary. */
  state: string;
  lastNodeId: string | null;
  currentTaskId: string | null;
  currentTaskType: string | null;
  /** When the robot last reported (ms since the epoch): the SourceTimestamp of its values. */
  updatedAt: number;
}

export interface TaskCounts {
  queued: number;
  /** Assigned or underway: a robot has it. */
  underway: number;
}

/** Arguments of the CreateTask method, as the operator typed them. */
export interface CreateTaskRequest {
  /** delivery | disinfection | patrol | charge */
  type: string;
  /** The node, zone or charger the task is about (the fleet maps it onto its task request). */
  target: string;
  /** 0..100, higher is more urgent. */
  priority: number;
}

/**
 * Why a task command was refused. The OPC UA server turns it into a status code
 * (invalid → BadInvalidArgument, not_found → BadNotFound, state → BadInvalidState).
 */
export class FleetCommandError extends Error {
  constructor(
    readonly kind: 'invalid' | 'not_found' | 'state',
    message: string,
  ) {
    super(message);
    this.name = 'FleetCommandError';
  }
}

export interface FleetView {
  robots(): RobotView[];
  taskCounts(): TaskCounts;
  /** Called after robots or tasks changed (coalescing is fine); returns an unsubscribe function. */
  onChange(listener: () => void): () => void;
  /** Creates a task on behalf of `by` (a gateway user); throws FleetCommandError when refused. */
  createTask(request: CreateTaskRequest, by: string): Promise<{ taskId: string }>;
  /** Cancels a task on behalf of `by`; throws FleetCommandError when refused. */
  cancelTask(taskId: string, by: string): Promise<void>;
}
