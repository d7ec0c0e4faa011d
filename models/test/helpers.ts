/** Test helpers: the local model mirror, temp folders, and an HTTP server that serves the mirror. */
import { existsSync, statSync } from 'node:fs';
import fs from 'node:fs/promises';
import { createServer } from 'node:http';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

function isFolder(p: string): boolean {
  return existsSync(p) && statSync(p).isDirectory();
}

/**
 * The folder holding the four upstream model files: $CHECKPOINT_MODELS_MIRROR when it names a
 * folder, else ../shared/models next to the repo. Undefined when neither exists.
 */
export const MIRROR: string | undefined = (() => {
  const fromEnv = process.env.CHECKPOINT_MODELS_MIRROR;
  if (fromEnv && isFolder(path.resolve(fromEnv))) return path.resolve(fromEnv);
  const shared = fileURLToPath(new URL('../../../shared/models/', import.meta.url));
  return isFolder(shared) ? shared : undefined;
})();

if (!MIRROR) {
  console.warn('models tests skipped: no model mirror (set CHECKPOINT_MODELS_MIRROR or provide ../shared/models)');
}

export function mirror(): string {
  if (!MIRROR) throw new Error('no model mirror');
  return MIRROR;
}

const made: string[] = [];

export async function tempDir(prefix = 'checkpoint-models-test'): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), `${prefix}-`));
  made.push(dir);
  return dir;
}

export async function removeTempDirs(): Promise<void> {
  await Promise.all(made.splice(0).map((d) => fs.rm(d, { recursive: true, force: true })));
}

/**
 * Serves files of `folder` at /<mode>/<file>. Modes: ok (whole file with Content-Length),
 * drop (announces the full length, sends half, then destroys the socket), short (chunked, sends
 * half and ends cleanly: a complete-looking response), stall (sends half, then nothing).
 * Unknown files answer 404.
 */
export async function startMirrorServer(folder: string): Promise<{ url: string; server: Server; close: () => Promise<void> }> {
  const server = createServer((req, res) => {
    void (async () => {
      const [, mode, file] = decodeURIComponent(req.url ?? '').split('/');
      let bytes: Buffer;
      try {
        bytes = await fs.readFile(path.join(folder, path.basename(file ?? '')));
      } catch {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
        return;
      }
      const half = bytes.subarray(0, Math.floor(bytes.length / 2));
      switch (mode) {
        case 'ok':
          res.writeHead(200, { 'content-length': bytes.length }).end(bytes);
          break;
        case 'drop':
          res.writeHead(200, { 'content-length': bytes.length });
          res.write(half, () => res.socket?.destroy());
          break;
        case 'short':
          res.writeHead(200);
          res.end(half);
          break;
        case 'stall':
          res.writeHead(200, { 'content-length': bytes.length });
          res.write(half);
          break;
        default:
          res.writeHead(404).end();
      }
    })();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    server,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** A loopback port nobody listens on (bound and released a moment ago). */
export async function closedPort(): Promise<number> {
  const { server, close } = await startMirrorServer(os.tmpdir());
  const { port } = server.address() as AddressInfo;
  await close();
  return port;
}
