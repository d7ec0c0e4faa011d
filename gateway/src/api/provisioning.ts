/**
 * Provisioning routes: checkpoints and their enrollment tokens, device enrollment, revocation,
 * model versions, their download by devices, and staged roll-outs. Engineer role for everything
 * but the two device-facing routes: `POST /api/enroll` (the token is the credential) and the model
 * download (HTTP Basic with the device's broker credentials).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import type { FastifyBaseLogger, FastifyInstance, FastifyReply, RawServerDefault } from 'fastify';
import { ID_PATTERN } from '@checkpoint/protocol';
import { deviceKey } from '../provisioning/tokens.js';
import { KNOWN_MODEL_FAMILIES, MODEL_VERSION_PATTERN, ProvisioningError, type Provisioning } from '../provisioning/service.js';
import type { Rollout } from '../provisioning/rollout.js';
import { createLoginGuard } from '@checkpoint/broker';

type App = FastifyInstance<RawServerDefault, IncomingMessage, ServerResponse, FastifyBaseLogger, TypeBoxTypeProvider>;

const Id = Type.String({ pattern: ID_PATTERN });
const Where = Type.Object({ site: Id, checkpoint: Id }, { additionalProperties: false });
const Sha256 = Type.String({ pattern: '^[0-9a-fA-F]{64}$' });
const ModelName = Type.String({ minLength: 1, maxLength: 64, description: `a known family: ${KNOWN_MODEL_FAMILIES.join(', ')}` });
const Version = Type.String({ pattern: MODEL_VERSION_PATTERN });

export interface ProvisioningRouteDeps {
  provisioning: Provisioning;
  /** Seen checkpoints with the model their last state reported (GET /api/rollouts/:id shows it). */
  currentModels(): Map<string, { name: string; sha256: string } | null>;
  maxModelBytes: number;
  /** Base URL printed in the enroll command line. */
  publicUrl(): string;
  now(): number;
}

function fail(reply: FastifyReply, err: unknown) {
  if (!(err instanceof ProvisioningError)) throw err;
  const names: Record<number, string> = { 400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found', 409: 'Conflict', 410: 'Gone', 429: 'Too Many Requests', 503: 'Service Unavailable' };
  return reply.code(err.statusCode).send({ statusCode: err.statusCode, error: names[err.statusCode] ?? 'Error', message: err.message, ...(err.reason ? { reason: err.reason } : {}) });
}

function basicAuth(header: string | undefined): { username: string; password: string } | null {
  if (!header?.startsWith('Basic ')) return null;
  const text = Buffer.from(header.slice(6).trim(), 'base64').toString('utf8');
  const colon = text.indexOf(':');
  return colon < 0 ? null : { username: text.slice(0, colon), password: text.slice(colon + 1) };
}

export function registerProvisioningRoutes(app: App, deps: ProvisioningRouteDeps): void {
  const p = deps.provisioning;
  // Tokens are 256-bit random, so guessing is hopeless; the limit keeps a misbehaving script from hammering the store.
  // (No password check here, so only the guard's per-address failure count is used.)
  const enrollLimiter = createLoginGuard({ maxFailures: 20, windowMs: 60_000, now: deps.now });

  // --- checkpoints ----------------------------------------------------------------------------
  app.post(
    '/api/checkpoints',
    { config: { role: 'engineer' }, schema: { tags: ['provisioning'], description: 'register a checkpoint (or re-issue its token): a one-time enrollment token, shown once', body: Where } },
    async (request, reply) => {
      try {
        const issued = await p.register(request.body, request.session!.user);
        return reply.code(201).send({
          ...request.body,
          status: issued.device.status,
          token: issued.token,
          expiresAt: issued.expiresAt,
          enroll: `edge-agent enroll --gateway ${deps.publicUrl()} --token ${issued.token}`,
        });
      } catch (err) {
        return fail(reply, err);
      }
    },
  );

  app.get('/api/checkpoints', { config: { role: 'engineer' }, schema: { tags: ['provisioning'], description: 'provisioned checkpoints and the model each one runs' } }, async () => ({
    checkpoints: await p.devices(),
  }));

  app.post(
    '/api/checkpoints/:site/:checkpoint/revoke',
    { config: { role: 'engineer' }, schema: { tags: ['provisioning'], description: 'remove the device\'s broker user; the broker drops its connection', params: Where } },
    async (request, reply) => {
      try {
        return await p.revoke(request.params, request.session!.user);
      } catch (err) {
        return fail(reply, err);
      }
    },
  );

  // --- enrollment (device-facing) -------------------------------------------------------------
  app.post(
    '/api/enroll',
    {
      schema: {
        tags: ['provisioning'],
        security: [],
        description: 'exchange a one-time enrollment token for the device\'s broker credentials, CA certificate and initial config',
        body: Type.Object({ token: Type.String({ minLength: 1, maxLength: 200 }) }, { additionalProperties: false }),
      },
    },
    async (request, reply) => {
      const wait = enrollLimiter.retryAfterMs(request.ip);
      if (wait > 0) return fail(reply.header('retry-after', String(Math.ceil(wait / 1000))), new ProvisioningError(429, `too many refused enrollments from this address; try again in ${Math.ceil(wait / 1000)} s`));
      try {
        const enrollment = await p.enroll(request.body.token, request.ip);
        return reply.header('cache-control', 'no-store').send(enrollment);
      } catch (err) {
        if (err instanceof ProvisioningError && err.statusCode < 500) enrollLimiter.recordFailure(request.ip);
        return fail(reply, err);
      }
    },
  );

  // --- models ---------------------------------------------------------------------------------
  app.register(async (plain) => {
    const scope = plain.withTypeProvider<TypeBoxTypeProvider>();
    scope.addContentTypeParser('application/octet-stream', { parseAs: 'buffer', bodyLimit: deps.maxModelBytes }, (_request, body, done) => done(null, body));
    scope.post(
      '/api/models',
      {
        config: { role: 'engineer' },
        bodyLimit: deps.maxModelBytes,
        schema: {
          tags: ['provisioning'],
          description: 'publish a model version: the file as the body (application/octet-stream), the manifest in the query string; the sha256 is checked',
          querystring: Type.Object({ name: ModelName, version: Version, sha256: Sha256 }, { additionalProperties: false }),
        },
      },
      async (request, reply) => {
        if (!Buffer.isBuffer(request.body)) {
          return fail(reply, new ProvisioningError(400, 'body: send the model file as application/octet-stream'));
        }
        try {
          const model = await p.publishModel({ ...request.query, bytes: request.body, by: request.session!.user });
          return reply.code(201).send(model);
        } catch (err) {
          return fail(reply, err);
        }
      },
    );
  });

  app.get('/api/models', { config: { role: 'engineer' }, schema: { tags: ['provisioning'] } }, async () => ({ models: await p.models() }));

  app.get(
    '/api/models/:name/:version/file',
    {
      schema: {
        tags: ['provisioning'],
        security: [],
        description: 'model download for devices in a roll-out: HTTP Basic with the device\'s broker credentials',
        params: Type.Object({ name: ModelName, version: Version }, { additionalProperties: false }),
      },
    },
    async (request, reply) => {
      try {
        const { bytes } = await p.modelDownload(basicAuth(request.headers.authorization), request.params.name, request.params.version, request.ip);
        return reply.header('content-type', 'application/octet-stream').header('content-length', bytes.length).send(bytes);
      } catch (err) {
        if (err instanceof ProvisioningError && err.statusCode === 401) reply.header('www-authenticate', 'Basic realm="checkpoint-devices"');
        return fail(reply, err);
      }
    },
  );

  // --- roll-outs ------------------------------------------------------------------------------
  const withCurrentModels = (r: Rollout) => {
    const current = deps.currentModels();
    return {
      ...r,
      createdAt: new Date(r.createdMs).toISOString(),
      finishedAt: r.finishedMs === null ? null : new Date(r.finishedMs).toISOString(),
      devices: r.devices.map((d) => {
        const model = current.get(deviceKey(d)) ?? null;
        return { ...d, currentModel: model, onRolloutModel: model ? model.name === r.model.name && model.sha256 === r.model.sha256 : null };
      }),
    };
  };

  app.post(
    '/api/rollouts',
    {
      config: { role: 'engineer' },
      schema: {
        tags: ['provisioning'],
        description: 'roll a published model version out in stages; halts by itself when failures pass failureThreshold',
        body: Type.Object(
          {
            model: ModelName,
            version: Version,
            targets: Type.Array(Type.Union([Where, Type.Object({ site: Id, percent: Type.Number({ exclusiveMinimum: 0, maximum: 100 }) }, { additionalProperties: false })]), { minItems: 1, maxItems: 10_000 }),
            stages: Type.Optional(Type.Array(Type.Number({ exclusiveMinimum: 0, maximum: 100 }), { minItems: 1, maxItems: 20, description: 'cumulative percentages, e.g. [10, 50, 100]' })),
            batchSizes: Type.Optional(Type.Array(Type.Integer({ minimum: 1 }), { minItems: 1, maxItems: 100, description: 'devices per stage, e.g. [1, 5, 20]' })),
            failureThreshold: Type.Optional(Type.Number({ minimum: 0, maximum: 1, description: 'halt when failed / started devices exceeds this; default 0 (first failure halts)' })),
          },
          { additionalProperties: false },
        ),
      },
    },
    async (request, reply) => {
      try {
        return reply.code(201).send(withCurrentModels(await p.startRollout(request.body, request.session!.user)));
      } catch (err) {
        return fail(reply, err);
      }
    },
  );

  app.get('/api/rollouts', { config: { role: 'engineer' }, schema: { tags: ['provisioning'] } }, async () => ({ rollouts: (await p.rollouts()).map(withCurrentModels) }));

  app.get(
    '/api/rollouts/:id',
    { config: { role: 'engineer' }, schema: { tags: ['provisioning'], params: Type.Object({ id: Type.String({ minLength: 1, maxLength: 64 }) }) } },
    async (request, reply) => {
      const r = await p.rollout(request.params.id);
      return r ? withCurrentModels(r) : fail(reply, new ProvisioningError(404, `no roll-out ${request.params.id}`));
    },
  );

  app.post(
    '/api/rollouts/:id/cancel',
    { config: { role: 'engineer' }, schema: { tags: ['provisioning'], params: Type.Object({ id: Type.String({ minLength: 1, maxLength: 64 }) }) } },
    async (request, reply) => {
      try {
        return withCurrentModels(await p.cancelRollout(request.params.id, request.session!.user));
      } catch (err) {
        return fail(reply, err);
      }
    },
  );
}
