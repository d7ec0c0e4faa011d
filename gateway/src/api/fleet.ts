/**
 * Robot fleet routes: robots, tasks, the site map. Role `dispatcher` and above (issue 6); the
 * live feed (`robot` and `task` events) is on /api/live. The JSON shapes are fleet-service.ts's
 * views (the dashboards' contract), not the core's records.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import type { FastifyBaseLogger, FastifyInstance, FastifyReply, RawServerDefault } from 'fastify';
import { FleetRequestError, mapView, type FleetService, type TaskView } from '../fleet-service.js';
import { TaskRequestSchema } from '../fleet/index.js';

type App = FastifyInstance<RawServerDefault, IncomingMessage, ServerResponse, FastifyBaseLogger, TypeBoxTypeProvider>;

const TaskId = Type.String({ pattern: '^[A-Za-z0-9_-]{1,64}$' });
const TaskStatus = Type.Union(['queued', 'assigned', 'underway', 'completed', 'failed', 'cancelled'].map((s) => Type.Literal(s)));
const ERRORS = { 400: 'Bad Request', 404: 'Not Found', 409: 'Conflict', 503: 'Service Unavailable' } as const;

function refused(reply: FastifyReply, err: unknown) {
  if (!(err instanceof FleetRequestError)) throw err;
  // 503: another gateway leads the fleet (or none does, during a hand-over); worth retrying.
  if (err.retryAfterS !== undefined) void reply.header('retry-after', String(err.retryAfterS));
  return reply.code(err.statusCode).send({ statusCode: err.statusCode, error: ERRORS[err.statusCode], message: err.message });
}

export function registerFleetRoutes(app: App, fleet: FleetService): void {
  const role = { role: 'dispatcher' as const };
  const tags = ['fleet'];

  app.get('/api/map', { config: role, schema: { tags, description: 'The site map: nodes (x, y in metres, floor, kind), undirected edges with lengths, zones.' } }, async () =>
    mapView(fleet.map),
  );

  app.get('/api/robots', { config: role, schema: { tags, description: 'Every robot the master control knows, with its connection, battery, position and current task.' } }, async () => ({
    robots: await fleet.robots(),
  }));

  app.get(
    '/api/tasks',
    {
      config: role,
      schema: {
        tags,
        description: 'Tasks, newest first, each with its history.',
        querystring: Type.Object({ status: Type.Optional(TaskStatus), limit: Type.Integer({ minimum: 1, maximum: 1000, default: 200 }) }, { additionalProperties: false }),
      },
    },
    async (request) => ({
      tasks: await fleet.tasks({ ...(request.query.status ? { status: request.query.status as never } : {}), limit: request.query.limit }),
    }),
  );

  app.get('/api/tasks/:id', { config: role, schema: { tags, params: Type.Object({ id: TaskId }) } }, async (request, reply) => {
    const task = await fleet.task(request.params.id);
    return task ? { task } : reply.code(404).send({ statusCode: 404, error: 'Not Found', message: `no task ${request.params.id}` });
  });

  app.post(
    '/api/tasks',
    {
      config: role,
      schema: {
        tags,
        description: 'Create a task (delivery, disinfection, patrol, charge). Unknown nodes or zones: 400 naming the field.',
        body: TaskRequestSchema,
      },
    },
    async (request, reply) => {
      try {
        const task = await fleet.submitTask(request.body, request.session!.user);
        return reply.code(201).send({ task: await fleet.task(task.id) });
      } catch (err) {
        return refused(reply, err);
      }
    },
  );

  app.post(
    '/api/tasks/:id/cancel',
    {
      config: role,
      schema: { tags, description: 'Cancel a task; a robot working on it gets a cancelOrder. Optional body {reason}. 503 (with Retry-After) on a gateway that does not lead the fleet.', params: Type.Object({ id: TaskId }) },
    },
    async (request, reply) => {
      const body = request.body as { reason?: unknown } | undefined;
      if (body !== undefined && body !== null && (typeof body !== 'object' || (body.reason !== undefined && (typeof body.reason !== 'string' || body.reason.length > 500)))) {
        return reply.code(400).send({ statusCode: 400, error: 'Bad Request', message: 'body: /reason: expected a string of at most 500 characters' });
      }
      try {
        await fleet.cancelTask(request.params.id, request.session!.user, typeof body?.reason === 'string' ? body.reason : undefined);
        return { task: await fleet.task(request.params.id) };
      } catch (err) {
        return refused(reply, err);
      }
    },
  );

  app.post(
    '/api/tasks/:id/confirm',
    {
      config: role,
      schema: {
        tags,
        description: 'Confirm what the robot waits for: the area is clear (disinfection) or the recipient received the goods (delivery). 409 when it is not waiting for that.',
        params: Type.Object({ id: TaskId }),
        body: Type.Object({ kind: Type.Union([Type.Literal('area_clear'), Type.Literal('received')]) }, { additionalProperties: false }),
      },
    },
    async (request, reply) => {
      try {
        await fleet.confirmTask(request.params.id, request.body.kind, request.session!.user);
        return { task: await fleet.task(request.params.id) };
      } catch (err) {
        return refused(reply, err);
      }
    },
  );

  // --- pause and resume (VDA 5050 instant actions startPause / stopPause) -----------------------
  const RobotParams = Type.Object({ manufacturer: Type.String({ minLength: 1, maxLength: 200 }), serialNumber: Type.String({ minLength: 1, maxLength: 200 }) });
  for (const [verb, paused] of [['pause', true], ['resume', false]] as const) {
    app.post(
      `/api/robots/:manufacturer/:serialNumber/${verb}`,
      {
        config: role,
        schema: {
          tags,
          description: `Send ${paused ? 'startPause' : 'stopPause'} to the robot. Its \`paused\` follows from its next state (on /api/robots and the live feed). 404 unknown robot, 409 robot not ONLINE or not declaring the action.`,
          params: RobotParams,
        },
      },
      async (request, reply) => {
        try {
          const robot = await fleet.setPaused(`${request.params.manufacturer}/${request.params.serialNumber}`, paused, request.session!.user);
          return reply.code(202).send({ robot });
        } catch (err) {
          return refused(reply, err);
        }
      },
    );
  }

  // --- the guard's view: robots waiting at a checkpoint for "area is clear" -------------------
  // The guard stands at that gate, so the guard confirms; they see only these tasks, not the fleet.
  const gateTasks = async () =>
    (await fleet.tasks({ limit: 1000 }))
      .filter((t) => t.waitingFor === 'area_clear')
      .map((t) => ({ ...t, checkpoints: taskCheckpoints(fleet, t) }))
      .filter((t) => t.checkpoints.length > 0);

  app.get(
    '/api/gate-tasks',
    { config: { role: 'guard' as const }, schema: { tags, description: 'Tasks whose robot waits at a checkpoint zone for "area is clear", with the checkpoints (for the guard screen).' } },
    async () => ({ tasks: await gateTasks() }),
  );

  app.post(
    '/api/gate-tasks/:id/area-clear',
    {
      config: { role: 'guard' as const },
      schema: { tags, description: 'The guard confirms the area at their checkpoint is clear. 404 unless the task waits for that at a checkpoint zone.', params: Type.Object({ id: TaskId }) },
    },
    async (request, reply) => {
      if (!(await gateTasks()).some((t) => t.id === request.params.id)) {
        return reply.code(404).send({ statusCode: 404, error: 'Not Found', message: `task ${request.params.id} is not waiting for "area is clear" at a checkpoint` });
      }
      try {
        await fleet.confirmTask(request.params.id, 'area_clear', request.session!.user);
        return { task: await fleet.task(request.params.id) };
      } catch (err) {
        return refused(reply, err);
      }
    },
  );
}

/** The checkpoints whose map zone a task works in (its zone, or a zone holding one of its target nodes). */
export function taskCheckpoints(fleet: Pick<FleetService, 'map'>, t: Pick<TaskView, 'request' | 'targetNodes'>): string[] {
  const out = new Set<string>();
  const zoneId = (t.request as { zone?: unknown }).zone;
  for (const z of fleet.map.zones.values()) {
    if (!z.checkpoint) continue;
    if (z.id === zoneId || (t.targetNodes ?? []).some((n) => z.nodes.includes(n))) out.add(z.checkpoint);
  }
  return [...out].sort();
}
