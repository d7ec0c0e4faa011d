/**
 * The fleet as the OPC UA server sees it (opcua/fleet-view.ts): robots with a small state
 * vocabulary, task counts, a change hook, and CreateTask/CancelTask on behalf of a user.
 */
import type { FleetService } from './fleet-service.js';
import { FleetRequestError } from './fleet-service.js';
import { unavailableReason, type RobotRecord } from './fleet/index.js';
import { FleetCommandError, type CreateTaskRequest, type FleetView } from './opcua/fleet-view.js';

/** offline | error (e-stop, fatal error, manual mode...) | paused | charging | driving | working | idle */
export function opcuaRobotState(r: RobotRecord, hasTask: boolean): string {
  if (r.connection !== 'ONLINE') return 'offline';
  // Paused is an operator's choice, not a fault; an e-stop or fatal error while paused still shows as error.
  const faulted = r.eStop !== 'NONE' || r.errors.some((e) => e.errorLevel === 'FATAL');
  if (r.paused && !faulted) return 'paused';
  if (unavailableReason(r) !== null) return 'error';
  if (r.charging) return 'charging';
  if (r.driving) return 'driving';
  return hasTask ? 'working' : 'idle';
}

/**
 * OPC UA's CreateTask has one `target`: a zone or node (disinfection), a charger (charge, may be
 * empty), "A,B,C" (patrol) or "FROM,TO" (delivery). Returns the task request for the API's schema.
 */
export function requestFromOpcua(r: CreateTaskRequest, zones: ReadonlyMap<string, unknown>): Record<string, unknown> {
  const parts = r.target
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  const common = { priority: r.priority };
  switch (r.type) {
    case 'disinfection':
      return zones.has(r.target) ? { type: 'disinfection', zone: r.target, ...common } : { type: 'disinfection', node: r.target, ...common };
    case 'charge':
      return r.target ? { type: 'charge', charger: r.target, ...common } : { type: 'charge', ...common };
    case 'patrol':
      return { type: 'patrol', nodes: parts, ...common };
    case 'delivery':
      if (parts.length !== 2) throw new FleetCommandError('invalid', 'a delivery target is "FROM,TO" (two map nodes)');
      return { type: 'delivery', from: parts[0], to: parts[1], what: 'requested over OPC UA', ...common };
    default:
      throw new FleetCommandError('invalid', `unknown task type "${r.type}" (delivery, disinfection, patrol, charge)`);
  }
}

function asCommandError(err: unknown): never {
  if (err instanceof FleetRequestError) {
    throw new FleetCommandError(err.statusCode === 400 ? 'invalid' : err.statusCode === 404 ? 'not_found' : 'state', err.message);
  }
  throw err;
}

export function fleetOpcuaView(fleet: FleetService): FleetView {
  return {
    robots: () =>
      fleet.robotRecords().map(({ record: r, task }) => ({
        id: r.key,
        online: r.connection === 'ONLINE',
        batteryPct: r.batteryCharge,
        state: opcuaRobotState(r, task !== null),
        lastNodeId: r.lastNodeId,
        currentTaskId: task?.id ?? null,
        currentTaskType: task?.type ?? null,
        updatedAt: r.lastSeen,
      })),
    taskCounts: () => fleet.taskCounts(),
    onChange: (listener) => fleet.onChange(listener),
    async createTask(request, by) {
      try {
        return { taskId: (await fleet.submitTask(requestFromOpcua(request, fleet.map.zones), by)).id };
      } catch (err) {
        return asCommandError(err);
      }
    },
    async cancelTask(taskId, by) {
      try {
        await fleet.cancelTask(taskId, by, 'over OPC UA');
      } catch (err) {
        asCommandError(err);
      }
    },
  };
}
