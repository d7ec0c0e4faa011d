/**
 * The HTTP API: fastify with TypeBox schemas beside each route (they drive validation, typing
 * and the OpenAPI document at /docs). Request validation uses the protocol's validator, so a
 * 400 names the field (`body: /outcome: expected "cleared" or ...`), like every other boundary.
 */
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { TSchema } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import { compileValidator } from '@checkpoint/protocol';
import type { CommandDispatcher } from '../commands.js';
import type { GatewayConfig } from '../config.js';
import type { GatewayMetrics } from '../metrics.js';
import type { SeriesStore } from '../series/store.js';
import type { Backend } from '../store/backend.js';
import type { AnyOperationalStore } from '../store/operational.js';
import type { LoginGuard } from '@checkpoint/broker';
import { roleAtLeast, type Role, type Session, type UserStore } from '../store/users.js';
import type { LiveFeed } from './live.js';
import { registerRoutes } from './routes.js';
import { registerFleetRoutes } from './fleet.js';
import type { FleetService } from '../fleet-service.js';
import { registerDashboards } from './static.js';

export interface HealthReport {
  healthy: boolean;
  body: Record<string, unknown>;
}

export interface ApiDeps {
  config: GatewayConfig;
  /** Either backend's (SQLite answers at once, PostgreSQL later): every answer is awaited. */
  store: AnyOperationalStore;
  users: UserStore<Backend>;
  /** Login limits and password checks, shared with OPC UA and the model download. */
  loginGuard: LoginGuard;
  series: SeriesStore;
  metrics: GatewayMetrics;
  live: LiveFeed;
  commands: CommandDispatcher;
  /** The robot fleet; null when no site map is configured (its routes are then absent). */
  fleet?: FleetService | null;
  health(): HealthReport;
  log: Logger;
  now(): number;
}

declare module 'fastify' {
  interface FastifyRequest {
    session: Session | null;
  }
  interface FastifyContextConfig {
    /** Least role a route needs; absent = public. */
    role?: Role;
    /** The route also accepts `?access_token=` (EventSource cannot send headers). */
    tokenInQuery?: boolean;
  }
}

/** Fastify schema compiler on the protocol's TypeBox validator (paths in every message). */
function validatorCompiler({ schema, httpPart }: { schema: TSchema; httpPart?: string }) {
  const validator = compileValidator(schema);
  return (data: unknown) => {
    // Query strings and params are text: convert "50" to 50 where the schema wants a number.
    const value = httpPart === 'body' ? data : Value.Convert(schema, Value.Default(schema, data));
    if (validator.check(value)) return { value };
    const issues = validator.explain(value);
    const error = Object.assign(new Error(`${httpPart ?? 'request'}: ${issues.map((i) => `${i.path || '/'}: ${i.message}`).join('; ')}`), {
      statusCode: 400,
      issues,
    });
    return { error };
  };
}

function bearerToken(request: FastifyRequest): string | null {
  const header = request.headers.authorization;
  if (header?.startsWith('Bearer ')) return header.slice(7).trim();
  if (request.routeOptions.config.tokenInQuery) {
    const q = (request.query as Record<string, unknown> | undefined)?.access_token;
    if (typeof q === 'string') return q;
  }
  return null;
}

/**
 * Worth a retry, not a 500: another process holds SQLite's write lock longer than busy_timeout,
 * or PostgreSQL cannot be reached or is shutting down, out of connections, or ended a
 * transaction to break a conflict (SQLSTATE classes 08, 53, 57P, 40001 and 40P01).
 */
export function databaseBusyReason(error: { code?: unknown; message?: string }): string | null {
  const code = typeof error.code === 'string' ? error.code : '';
  if (code === 'SQLITE_BUSY' || code === 'SQLITE_LOCKED') return 'the database is busy (locked by another process); try again';
  if (['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENOTFOUND', 'EPIPE'].includes(code) || /^(08|53)/.test(code) || code.startsWith('57P')) {
    return 'the database cannot be reached; try again';
  }
  if (code === '40001' || code === '40P01') return 'the database ended a conflicting transaction; try again';
  // pg's pool and client say these without a code.
  if (/^(timeout exceeded when trying to connect|Connection terminated)/.test(error.message ?? '')) return 'the database cannot be reached; try again';
  return null;
}

export async function createApi(deps: ApiDeps): Promise<FastifyInstance> {
  const app = Fastify({
    // No request log: query strings may carry ?access_token= (live feed). Our own logs never include URLs.
    logger: false,
    bodyLimit: 64 * 1024,
    trustProxy: false,
  }).withTypeProvider<TypeBoxTypeProvider>();
  app.setValidatorCompiler(validatorCompiler);
  app.decorateRequest('session', null);

  app.setErrorHandler((error: Error & { statusCode?: number; issues?: unknown; validation?: unknown; code?: string }, request, reply) => {
    const busy = databaseBusyReason(error);
    if (busy) {
      if (!String(error.code).startsWith('SQLITE_')) deps.log.warn({ err: error.message, code: error.code, route: request.routeOptions.url }, 'database unavailable');
      return reply.code(503).header('retry-after', '1').send({ statusCode: 503, error: 'Service Unavailable', message: busy });
    }
    const status = error.statusCode ?? 500;
    if (status >= 500) deps.log.error({ err: error.message, route: request.routeOptions.url }, 'request failed');
    void reply.code(status).send({
      statusCode: status,
      error: status === 400 ? 'Bad Request' : status >= 500 ? 'Internal Server Error' : 'Error',
      message: status >= 500 ? 'internal error' : error.message,
      ...(error.issues ? { issues: error.issues } : {}),
    });
  });

  // A stop must not wait out a keep-alive timeout (72 s): close() ends idle connections only, so a
  // connection whose request was under way then (a device downloading a model) is ended after its response.
  let closing = false;
  app.addHook('preClose', async () => {
    closing = true;
  });
  app.addHook('onResponse', async (request) => {
    if (closing) request.raw.socket?.end();
  });

  // Authentication and roles, per route config.
  app.addHook('onRequest', async (request: FastifyRequest, reply: FastifyReply) => {
    const role = request.routeOptions.config.role;
    if (!role) return;
    const token = bearerToken(request);
    const session = token ? await deps.users.session(token, deps.now()) : null;
    if (!session) {
      return reply.code(401).header('www-authenticate', 'Bearer').send({ statusCode: 401, error: 'Unauthorized', message: 'log in first (POST /api/auth/login) and send Authorization: Bearer <token>' });
    }
    if (!roleAtLeast(session.role, role)) {
      return reply.code(403).send({ statusCode: 403, error: 'Forbidden', message: `this needs role ${role} or above; you are ${session.role}` });
    }
    request.session = session;
  });

  await app.register(swagger, {
    openapi: {
      info: { title: 'Checkpoint gateway API', version: '0.1.0', description: 'Alerts, screenings, statistics, devices, live feed and commands of one Checkpoint site.' },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
      security: [{ bearer: [] }],
    },
  });
  await app.register(swaggerUi, { routePrefix: '/docs' });

  registerRoutes(app, deps);
  if (deps.fleet) registerFleetRoutes(app, deps.fleet);
  await registerDashboards(app, deps.log);
  return app;
}
