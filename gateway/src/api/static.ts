/**
 * Serves the dashboards (the built single-page app, dashboards/dist) at `/`, with the SPA
 * fallback: a browser asking for a page path (e.g. /guard after a reload) gets index.html.
 * API, docs, health and metrics keep their routes and their JSON 404s. Everything is local:
 * hospital networks are closed, so no CDN.
 *
 * Where the files are: env CHECKPOINT_DASHBOARDS_DIR, else the dashboards package's dist next to
 * this package in the repo. Without an index.html there the gateway serves the API alone.
 */
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import fastifyStatic from '@fastify/static';
import type { FastifyInstance } from 'fastify';

/** Paths that are never the single-page app, even for a browser. */
const NOT_SPA = /^\/(api|docs|healthz|metrics)(\/|\?|$)/;

/** The dashboards folder to serve, or null when there is none (pure but for the file check). */
export function resolveDashboardsDir(env: Readonly<Record<string, string | undefined>> = process.env): { dir: string; present: boolean } {
  // src/api/static.ts and dist/api/static.js are both three levels below the repo root.
  const dir = env.CHECKPOINT_DASHBOARDS_DIR ? resolve(env.CHECKPOINT_DASHBOARDS_DIR) : fileURLToPath(new URL('../../../dashboards/dist/', import.meta.url));
  return { dir, present: existsSync(join(dir, 'index.html')) };
}

/** Registers the dashboards; returns where they come from (null = not built, API only). */
export async function registerDashboards(app: FastifyInstance, log?: { info(o: object, m: string): void; warn(o: object, m: string): void }): Promise<string | null> {
  const { dir, present } = resolveDashboardsDir();
  if (!present) {
    log?.warn({ dir }, 'dashboards not built (npm run build): serving the API only');
    return null;
  }
  await app.register(fastifyStatic, {
    root: dir,
    prefix: '/',
    wildcard: true,
    index: ['index.html'],
    cacheControl: false,
    // Hashed assets never change; index.html must be fetched again to pick up a new build.
    setHeaders(res, path) {
      res.setHeader('cache-control', /[\\/]assets[\\/]/.test(path) ? 'public, max-age=31536000, immutable' : 'no-cache');
      res.setHeader('x-content-type-options', 'nosniff');
    },
  });
  app.setNotFoundHandler((request, reply) => {
    const path = request.url;
    const wantsPage = (request.method === 'GET' || request.method === 'HEAD') && !NOT_SPA.test(path) && (request.headers.accept ?? '').includes('text/html');
    if (wantsPage) return reply.header('cache-control', 'no-cache').sendFile('index.html');
    return reply.code(404).send({ statusCode: 404, error: 'Not Found', message: `Route ${request.method}:${path.split('?')[0]} not found` });
  });
  log?.info({ dir }, 'dashboards served at /');
  return dir;
}
