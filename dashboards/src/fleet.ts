/**
 * The fleet API as the dispatch board uses it — all of it in this one module, so that it is easy
 * to adjust to the gateway's fleet routes. A 404 on /api/map means the gateway runs without a
 * fleet: the board says so instead of failing.
 *
 *   GET  /api/map                  {nodes:[{id,name?,x,y,floor,kind}], edges:[{from,to,length}], zones:[{id,name?,nodes}]}
 *   GET  /api/robots               {robots:[{id,manufacturer,serialNumber,connection,battery,charging,lastNodeId,driving,errors,taskId?}]}
 *   GET  /api/tasks?status=        {tasks:[{id,type,status,priority,robotId?,request,waitingFor?,alertId?,history:[{at,status,reason?}]}]}
 *   POST /api/tasks                body = a task request
 *   POST /api/tasks/:id/cancel
 *   POST /api/tasks/:id/confirm    {kind:'area_clear'|'received'}
 *   live events `robot` and `task`
 * The gateway wraps single items (`{task}`, `{robot}`) in answers and live events; `unwrap*`
 * accept both forms.
 */
import { ApiError, type Api } from './api.js';

export interface MapNode {
  id: string;
  name?: string;
  /** The name in other languages, by tag (the map file's `names`). */
  names?: Record<string, string>;
  x: number;
  y: number;
  floor: number;
  kind: string;
}
export interface SiteMap {
  nodes: MapNode[];
  /** Both ways unless `oneWay`; an edge's own speed limit (m/s) and extra time (s) when the map sets them. */
  edges: Array<{ from: string; to: string; length: number; oneWay?: boolean; maxSpeed?: number; extraTimeS?: number }>;
  zones: Array<{ id: string; name?: string; names?: Record<string, string>; nodes: string[]; checkpoint?: string }>;
}

/** A place's name in the page's language, else its default name, else its id. */
export function placeName(place: { id: string; name?: string; names?: Record<string, string> } | undefined, locale: string, fallback = ''): string {
  if (!place) return fallback;
  return place.names?.[locale] ?? place.name ?? place.id;
}

export type Connection = 'ONLINE' | 'OFFLINE' | 'CONNECTIONBROKEN';
export interface Robot {
  id: string;
  manufacturer: string;
  serialNumber: string;
  connection: Connection;
  /** Percent, 0..100. */
  battery: number | null;
  charging: boolean;
  lastNodeId: string | null;
  driving: boolean;
  errors: Array<{ errorType?: string; errorLevel?: string; errorDescription?: string } | string>;
  taskId?: string | null;
  /** Beyond the contract, when the gateway knows it: position in map metres and floor. */
  x?: number | null;
  y?: number | null;
  floor?: number | null;
  unavailableReason?: string | null;
  /** The robot reports it is paused (startPause); absent from gateways before pause/resume. */
  paused?: boolean;
  /** When the gateway last heard from the robot (ISO 8601): orders views of the same robot. */
  lastSeen?: string;
  /** m/s from the robot's factsheet (physicalParameters.speedMax), null until it sent one. */
  maxSpeed?: number | null;
}

export const TASK_TYPES = ['delivery', 'disinfection', 'patrol', 'charge'] as const;
export type TaskType = (typeof TASK_TYPES)[number];
export const TASK_STATUSES = ['queued', 'assigned', 'underway', 'completed', 'failed', 'cancelled'] as const;
export type TaskStatus = (typeof TASK_STATUSES)[number];
export const ACTIVE_STATUSES: readonly TaskStatus[] = ['queued', 'assigned', 'underway'];
export type Confirmation = 'area_clear' | 'received';

/** What the dispatcher asks for (the gateway validates it and names a wrong field). */
export type TaskRequest =
  | { type: 'delivery'; from: string; to: string; what: string; recipient?: string; priority?: number }
  | { type: 'disinfection'; zone?: string; node?: string; priority?: number }
  | { type: 'patrol'; nodes: string[]; priority?: number }
  | { type: 'charge'; charger?: string; priority?: number };

export interface Task {
  id: string;
  type: TaskType;
  status: TaskStatus;
  priority: number;
  robotId?: string | null;
  request: Record<string, unknown>;
  waitingFor?: Confirmation | null;
  alertId?: string | null;
  history: Array<{ at: string; status: TaskStatus; reason?: string; robotId?: string }>;
  /** Beyond the contract (the gateway sends them). */
  createdAt?: string;
  updatedAt?: string;
  progress?: { nodesDone: number; nodesTotal: number; lastNodeId: string | null } | null;
  targetNodes?: string[];
  requestedBy?: string | null;
  confirmations?: Array<{ kind: Confirmation; by: string; at: string }>;
}

export class FleetUnavailableError extends Error {
  constructor() {
    super('the gateway has no fleet API');
    this.name = 'FleetUnavailableError';
  }
}

async function orUnavailable<T>(p: Promise<T>): Promise<T> {
  try {
    return await p;
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) throw new FleetUnavailableError();
    throw err;
  }
}

export const unwrapTask = (v: unknown): Task => (v && typeof v === 'object' && 'task' in v ? (v as { task: Task }).task : (v as Task));
export const unwrapRobot = (v: unknown): Robot => (v && typeof v === 'object' && 'robot' in v ? (v as { robot: Robot }).robot : (v as Robot));

export const fleetApi = (api: Api) => ({
  map: () => orUnavailable(api.get<SiteMap>('/api/map')),
  robots: async () => (await orUnavailable(api.get<{ robots: Robot[] }>('/api/robots'))).robots,
  tasks: async (status?: TaskStatus) => (await orUnavailable(api.get<{ tasks: Task[] }>(`/api/tasks${status ? `?status=${status}` : ''}`))).tasks,
  create: async (request: TaskRequest) => unwrapTask(await api.post('/api/tasks', request)),
  cancel: async (id: string) => unwrapTask(await api.post(`/api/tasks/${encodeURIComponent(id)}/cancel`, {})),
  setPaused: async (robot: Pick<Robot, 'manufacturer' | 'serialNumber'>, paused: boolean) =>
    unwrapRobot(await api.post(`/api/robots/${encodeURIComponent(robot.manufacturer)}/${encodeURIComponent(robot.serialNumber)}/${paused ? 'pause' : 'resume'}`, {})),
  confirm: async (id: string, kind: Confirmation) => unwrapTask(await api.post(`/api/tasks/${encodeURIComponent(id)}/confirm`, { kind })),
});

/** Replace-or-add by id, keeping the list's order stable (pure). */
export function upsertById<T extends { id: string }>(list: readonly T[], item: T): T[] {
  const i = list.findIndex((x) => x.id === item.id);
  if (i < 0) return [...list, item];
  const next = list.slice();
  next[i] = item;
  return next;
}
