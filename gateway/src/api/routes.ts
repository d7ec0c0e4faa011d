/** The API routes, each with its schema and the least role it needs (`config.role`). */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type, type TLiteral, type TUnion } from '@sinclair/typebox';
import type { FastifyBaseLogger, FastifyInstance, RawServerDefault } from 'fastify';
import { Decision, ID_PATTERN, timestampProblem, ULID_PATTERN } from '@checkpoint/protocol';
import { ALERT_STATUSES, OUTCOMES } from '../alerts.js';
import { withSilenceRule } from '../device-liveness.js';
import { INTERVAL_PATTERN, parseInterval } from '../series/store.js';
import type { Session } from '../store/users.js';
import type { ApiDeps } from './server.js';

type App = FastifyInstance<RawServerDefault, IncomingMessage, ServerResponse, FastifyBaseLogger, TypeBoxTypeProvider>;

const Id = Type.String({ pattern: ID_PATTERN });
const Ulid = Type.String({ pattern: ULID_PATTERN });
const IsoTime = Type.String({ pattern: '^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}(:\\d{2}(\\.\\d{1,9})?)?(Z|[+-]\\d{2}:\\d{2})$', description: 'ISO 8601 time' });
const Limit = Type.Integer({ minimum: 1, maximum: 1000, default: 100 });
const Literals = <T extends string>(values: readonly T[]) => Type.Union(values.map((v) => Type.Literal(v))) as unknown as TUnion<Array<TLiteral<T>>>;
const ErrorBody = Type.Object({ statusCode: Type.Integer(), error: Type.String(), message: Type.String() }, { additionalProperties: true });

const MAX_STATS_BUCKETS = 10_000;

/** Thrown for a query time that matches IsoTime but names no instant (`2024-13-45T25:61:61Z`): a 400. */
class BadQueryTime extends Error {
  readonly statusCode = 400;
}

/** ms of an IsoTime query value (seconds optional); a 400 naming the field when it names no instant. */
function queryTimeMs(field: string, text: string): number {
  const withSeconds = /T\d{2}:\d{2}(Z|[+-])/.test(text) ? text.replace(/(T\d{2}:\d{2})/, '$1:00') : text;
  const problem = timestampProblem(withSeconds);
  if (problem) throw new BadQueryTime(`querystring: /${field}: ${problem}`);
  return Date.parse(withSeconds);
}

/** A renewal that would leave less than this before the absolute limit is refused instead. */
const MIN_RENEWAL_MS = 60_000;

/** A token's lifetime: auth.tokenTtlS, cut short by auth.sessionMaxS after signing in. */
export function sessionTokenTtlMs(auth: { tokenTtlS: number; sessionMaxS: number }, signedInMs: number, nowMs: number): number {
  return Math.min(auth.tokenTtlS * 1000, signedInMs + auth.sessionMaxS * 1000 - nowMs);
}

export function registerRoutes(app: App, deps: ApiDeps): void {
  const { store, users, now } = deps;
  const tokenTtlMs = (signedInMs: number, nowMs: number) => sessionTokenTtlMs(deps.config.auth, signedInMs, nowMs);

  // --- auth -----------------------------------------------------------------------------------
  app.post(
    '/api/auth/login',
    {
      schema: {
        tags: ['auth'],
        security: [],
        body: Type.Object({ username: Type.String({ minLength: 1, maxLength: 64 }), password: Type.String({ minLength: 1, maxLength: 1024 }) }, { additionalProperties: false }),
        response: { 200: Type.Object({ token: Type.String(), expiresAt: Type.String(), user: Type.String(), role: Type.String() }), 401: ErrorBody, 429: ErrorBody, 503: ErrorBody },
      },
    },
    async (request, reply) => {
      const address = request.ip;
      const { username, password } = request.body;
      // The guard reserves this attempt against the address's limit before the password check runs.
      const verdict = await deps.loginGuard.attempt(address, () => users.verify(username, password));
      if (!verdict.ok && verdict.reason === 'limited') {
        const waitS = Math.ceil(verdict.retryAfterMs / 1000);
        deps.metrics.logins.inc({ result: 'limited' });
        return reply
          .code(429)
          .header('retry-after', String(waitS))
          .send({ statusCode: 429, error: 'Too Many Requests', message: `too many failed logins from this address; try again in ${waitS} s` });
      }
      if (!verdict.ok && verdict.reason === 'busy') {
        deps.metrics.logins.inc({ result: 'busy' });
        return reply.code(503).header('retry-after', '1').send({ statusCode: 503, error: 'Service Unavailable', message: 'too many logins waiting for a password check; try again in 1 s' });
      }
      if (!verdict.ok) {
        deps.metrics.logins.inc({ result: 'failed' });
        await store.audit(now(), username.slice(0, 64), 'auth.login_failed', null, { address });
        return reply.code(401).send({ statusCode: 401, error: 'Unauthorized', message: 'wrong user name or password' });
      }
      const role = verdict.value;
      deps.metrics.logins.inc({ result: 'ok' });
      const session = await users.createSession(username, tokenTtlMs(now(), now()), now());
      await store.audit(now(), username, 'auth.login', null, { address });
      return { token: session.token, expiresAt: new Date(session.expiresMs).toISOString(), user: username, role };
    },
  );

  app.post('/api/auth/logout', { config: { role: 'guard' }, schema: { tags: ['auth'] } }, async (request, reply) => {
    const header = request.headers.authorization ?? '';
    await users.endSession(header.slice(7).trim());
    await deps.live.revalidate(); // its live streams end now, not at the next check
    return reply.code(204).send();
  });

  // A wall monitor runs for days: before its token expires it trades it for a fresh one (the old
  // token ends, so a renewed session never leaves two valid tokens behind). Only a valid session
  // renews; a changed password or role has already ended it. Renewals never reach past
  // auth.sessionMaxS after the password was entered: then someone must sign in again.
  app.post('/api/auth/renew', { config: { role: 'guard' }, schema: { tags: ['auth'], description: 'a fresh token for the same user, up to auth.sessionMaxS after signing in; the presented token ends' } }, async (request, reply) => {
    const old = (request.headers.authorization ?? '').slice(7).trim();
    const { user, role, signedInMs } = request.session!;
    const ttlMs = tokenTtlMs(signedInMs, now());
    if (ttlMs < MIN_RENEWAL_MS) {
      return reply.code(401).send({ statusCode: 401, error: 'Unauthorized', message: `this session began ${new Date(signedInMs).toISOString()} and cannot be renewed past ${deps.config.auth.sessionMaxS} s: sign in again` });
    }
    const session = await users.createSession(user, ttlMs, now(), signedInMs);
    await users.endSession(old);
    await store.audit(now(), user, 'auth.renew', null, { address: request.ip });
    return { token: session.token, expiresAt: new Date(session.expiresMs).toISOString(), user, role };
  });

  app.get('/api/auth/me', { config: { role: 'guard' }, schema: { tags: ['auth'] } }, async (request) => ({
    user: request.session!.user,
    role: request.session!.role,
    expiresAt: new Date(request.session!.expiresMs).toISOString(),
  }));

  // --- alerts ---------------------------------------------------------------------------------
  app.get(
    '/api/alerts',
    {
      config: { role: 'guard' },
      schema: {
        tags: ['alerts'],
        querystring: Type.Object(
          { status: Type.Optional(Literals(ALERT_STATUSES)), site: Type.Optional(Id), checkpoint: Type.Optional(Id), since: Type.Optional(IsoTime), limit: Limit },
          { additionalProperties: false },
        ),
      },
    },
    async (request) => {
      const q = request.query;
      return {
        alerts: await store.alerts({
          ...(q.status ? { status: q.status } : {}),
          ...(q.site ? { site: q.site } : {}),
          ...(q.checkpoint ? { checkpoint: q.checkpoint } : {}),
          ...(q.since ? { sinceMs: queryTimeMs('since', q.since) } : {}),
          limit: q.limit,
        }),
      };
    },
  );

  app.get('/api/alerts/:id', { config: { role: 'guard' }, schema: { tags: ['alerts'], params: Type.Object({ id: Ulid }) } }, async (request, reply) => {
    const alert = await store.alert(request.params.id);
    return alert ?? reply.code(404).send({ statusCode: 404, error: 'Not Found', message: `no alert ${request.params.id}` });
  });

  app.post(
    '/api/alerts/:id/ack',
    {
      config: { role: 'guard' },
      schema: {
        tags: ['alerts'],
        params: Type.Object({ id: Ulid }),
        body: Type.Object(
          { outcome: Literals(OUTCOMES), note: Type.Optional(Type.String({ maxLength: 1000 })) },
          { additionalProperties: false, description: 'the outcome of the secondary check' },
        ),
      },
    },
    async (request, reply) => {
      const by = request.session!.user;
      const result = await store.acknowledgeAlert(request.params.id, { by, outcome: request.body.outcome, note: request.body.note ?? null }, now());
      if (!result.ok) {
        const code = result.reason === 'not_found' ? 404 : 409;
        return reply.code(code).send({ statusCode: code, error: code === 404 ? 'Not Found' : 'Conflict', message: result.message });
      }
      deps.metrics.alerts.inc({ kind: result.change.alert.kind, action: result.change.action });
      deps.live.notify();
      return await store.alert(request.params.id);
    },
  );

  // --- screenings and statistics --------------------------------------------------------------
  app.get(
    '/api/screenings',
    {
      config: { role: 'guard' },
      schema: {
        tags: ['screenings'],
        querystring: Type.Object(
          {
            site: Type.Optional(Id),
            checkpoint: Type.Optional(Id),
            from: Type.Optional(IsoTime),
            to: Type.Optional(IsoTime),
            decision: Type.Optional(Decision),
            limit: Type.Integer({ minimum: 1, maximum: 10_000, default: 100 }),
          },
          { additionalProperties: false },
        ),
      },
    },
    async (request) => {
      const q = request.query;
      return {
        screenings: await store.screenings({
          ...(q.site ? { site: q.site } : {}),
          ...(q.checkpoint ? { checkpoint: q.checkpoint } : {}),
          ...(q.from ? { fromMs: queryTimeMs('from', q.from) } : {}),
          ...(q.to ? { toMs: queryTimeMs('to', q.to) } : {}),
          ...(q.decision ? { decision: q.decision } : {}),
          limit: q.limit,
        }),
      };
    },
  );

  app.get(
    '/api/stats/checkpoints',
    {
      config: { role: 'guard' },
      schema: {
        tags: ['screenings'],
        description: 'Screenings per decision and temperature percentiles (InfluxQL percentile) per interval and checkpoint, from the time series.',
        querystring: Type.Object(
          {
            from: IsoTime,
            to: Type.Optional(IsoTime),
            interval: Type.String({ pattern: INTERVAL_PATTERN, default: '1h', description: 'bucket width: 30s, 5m, 1h, 1d' }),
            site: Type.Optional(Id),
            checkpoint: Type.Optional(Id),
          },
          { additionalProperties: false },
        ),
      },
    },
    async (request, reply) => {
      const q = request.query;
      const fromMs = queryTimeMs('from', q.from);
      const toMs = q.to ? queryTimeMs('to', q.to) : now();
      const intervalMs = parseInterval(q.interval);
      const bad = (message: string) => reply.code(400).send({ statusCode: 400, error: 'Bad Request', message });
      if (toMs <= fromMs) return bad('querystring: /to: must be after from');
      if (intervalMs < 1000) return bad('querystring: /interval: at least 1s');
      if ((toMs - fromMs) / intervalMs > MAX_STATS_BUCKETS) return bad(`querystring: /interval: more than ${MAX_STATS_BUCKETS} buckets; use a wider interval`);
      const stats = await deps.series.checkpointStats({
        fromMs,
        toMs,
        intervalMs,
        ...(q.site ? { site: q.site } : {}),
        ...(q.checkpoint ? { checkpoint: q.checkpoint } : {}),
      });
      return {
        from: new Date(fromMs).toISOString(),
        to: new Date(toMs).toISOString(),
        interval: q.interval,
        source: deps.series.kind,
        checkpoints: stats.map((s) => ({ ...s, buckets: s.buckets.map(({ startMs, ...rest }) => ({ start: new Date(startMs).toISOString(), ...rest })) })),
      };
    },
  );

  // --- devices and snapshots ------------------------------------------------------------------
  app.get('/api/devices', { config: { role: 'guard' }, schema: { tags: ['devices'] } }, async () => {
    const nowMs = deps.now();
    return { devices: (await store.devices()).map((d) => withSilenceRule(d, nowMs, deps.config.devices.offlineAfterS * 1000)) };
  });

  app.get(
    '/api/snapshots/:screeningId',
    { config: { role: 'guard' }, schema: { tags: ['screenings'], params: Type.Object({ screeningId: Ulid }), description: 'the evidence JPEG of a screening (image/jpeg)' } },
    async (request, reply) => {
      const snap = await store.snapshot(request.params.screeningId);
      if (!snap) return reply.code(404).send({ statusCode: 404, error: 'Not Found', message: `no snapshot for ${request.params.screeningId}` });
      // Face images are health data: who looked at which one is audited.
      await store.audit(now(), request.session!.user, 'snapshot.view', request.params.screeningId, { site: snap.site, checkpoint: snap.checkpoint });
      return reply.header('content-type', 'image/jpeg').header('cache-control', 'private, no-store').send(snap.jpeg);
    },
  );

  // --- live feed ------------------------------------------------------------------------------
  app.get(
    '/api/live',
    {
      config: { role: 'guard', tokenInQuery: true },
      schema: {
        tags: ['live'],
        description: 'Server-Sent Events: alert, screening, device. Reconnect with Last-Event-ID to resume without gaps or duplicates.',
        querystring: Type.Object(
          { access_token: Type.Optional(Type.String()), lastEventId: Type.Optional(Type.Integer({ minimum: 0 })) },
          { additionalProperties: false },
        ),
      },
    },
    async (request, reply) => {
      const header = request.headers['last-event-id'];
      const fromHeader = typeof header === 'string' && /^\d+$/.test(header) ? Number(header) : null;
      const session = request.session!;
      const admission = deps.live.admit(session.user);
      if (!admission.ok) {
        deps.metrics.liveRefused.inc({ reason: admission.status === 429 ? 'user_limit' : 'total_limit' });
        return reply.code(admission.status).header('retry-after', '10').send({ statusCode: admission.status, error: admission.status === 429 ? 'Too Many Requests' : 'Service Unavailable', message: admission.message });
      }
      // The token the auth hook accepted (header, or ?access_token= for EventSource).
      const authorization = request.headers.authorization;
      const token = authorization?.startsWith('Bearer ') ? authorization.slice(7).trim() : (request.query.access_token ?? '');
      reply.hijack();
      const sameSession = (current: Session | null) => current !== null && current.user === session.user && current.role === session.role;
      await deps.live.attach(reply.raw, fromHeader ?? request.query.lastEventId ?? null, {
        user: session.user,
        valid: () => {
          const current = deps.users.session(token, deps.now());
          // SQLite answers at once (the check stays synchronous); PostgreSQL later.
          return current instanceof Promise ? current.then(sameSession) : sameSession(current);
        },
      });
    },
  );

  // --- commands -------------------------------------------------------------------------------
  app.post(
    '/api/checkpoints/:site/:checkpoint/cmd',
    {
      config: { role: 'engineer' },
      schema: {
        tags: ['commands'],
        description: 'Publish a command (protocol `cmd` without id/ts, e.g. {"type":"set-config","config":{"screening":{"thresholdC":37.5}}}) and wait for the agent cmd/ack; 504 on timeout.',
        params: Type.Object({ site: Id, checkpoint: Id }),
        body: Type.Object({ type: Type.String({ minLength: 1, maxLength: 32 }) }, { additionalProperties: true }),
      },
    },
    async (request, reply) => {
      const { site, checkpoint } = request.params;
      const result = await deps.commands.send(site, checkpoint, request.body as Record<string, unknown>);
      if (result.kind === 'invalid') {
        return reply.code(400).send({ statusCode: 400, error: 'Bad Request', message: `body: ${result.issues.map((i) => `${i.path || '/'}: ${i.message}`).join('; ')}`, issues: result.issues });
      }
      await store.audit(now(), request.session!.user, 'command.sent', `${site}/${checkpoint}`, {
        id: result.command.id,
        type: result.command.type,
        result: result.kind === 'ack' ? (result.ack.ok ? 'ok' : 'refused') : 'timeout',
      });
      if (result.kind === 'timeout') {
        return reply.code(504).send({ statusCode: 504, error: 'Gateway Timeout', message: `no cmd/ack from ${site}/${checkpoint} within ${deps.config.commands.timeoutMs} ms`, id: result.command.id });
      }
      return { command: result.command, ack: result.ack };
    },
  );

  // --- administration and operations ----------------------------------------------------------
  app.get(
    '/api/audit',
    {
      config: { role: 'admin' },
      schema: { tags: ['admin'], querystring: Type.Object({ limit: Limit, before: Type.Optional(Type.Integer({ minimum: 1 })) }, { additionalProperties: false }) },
    },
    async (request) => ({ entries: await store.auditLog(request.query.limit, request.query.before) }),
  );

  app.get('/healthz', { schema: { tags: ['operations'], security: [] } }, async (_request, reply) => {
    const h = deps.health();
    return reply.code(h.healthy ? 200 : 503).send(h.body);
  });

  app.get('/metrics', { schema: { tags: ['operations'], security: [], hide: true } }, async (_request, reply) => {
    return reply.header('content-type', deps.metrics.registry.contentType).send(await deps.metrics.registry.metrics());
  });
}
