/**
 * `edge-agent enroll --gateway URL --token T`: exchange a one-time enrollment token for this
 * device's own broker credentials, the broker's CA certificate and an initial config, and write
 * them (mode 0600) where `edge-agent run --config FILE` finds them.
 *
 * The response carries a password, so the gateway must be reached over HTTPS (`--ca FILE` for a
 * private CA); plain http is accepted only for a gateway on this machine (tests, demos).
 */
import { existsSync } from 'node:fs';
import { chmod, mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import path from 'node:path';
import { parseDocument, stringify } from 'yaml';
import { parseConfig } from '@checkpoint/protocol';
import { AgentConfigSchema } from './config/schema.js';

export interface EnrollArgs {
  /** The gateway's base URL, e.g. https://gateway.hq.example:8443 */
  gateway: string;
  token: string;
  /** Where the agent config goes; default `<dataDir>/agent.yaml`. */
  configOut?: string;
  /** The agent's data dir; default $CHECKPOINT_DATA_DIR or .checkpoint-agent. */
  dataDir?: string;
  /** CA certificate (PEM) that signed the gateway's HTTPS certificate. */
  caFile?: string;
  /** Replace the credentials in an existing config file (other settings are kept). */
  force?: boolean;
  timeoutMs?: number;
}

export interface EnrollIo {
  stdout: (line: string) => void;
  stderr: (line: string) => void;
  env: Readonly<Record<string, string | undefined>>;
}

export interface EnrollResponse {
  site: string;
  checkpoint: string;
  mqtt: { url: string; username: string; password: string };
  caCert: string | null;
  config: Record<string, unknown>;
}

class EnrollError extends Error {}

const LOOPBACK = /^(localhost|127(\.\d{1,3}){3}|\[::1\])$/i;

/** The gateway URL, checked: https, or http to this machine only. Pure. */
export function checkGatewayUrl(raw: string): URL {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new EnrollError(`--gateway: not a URL: ${JSON.stringify(raw)} (expected e.g. https://gateway.example:8443)`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new EnrollError(`--gateway: expected an https:// URL, got ${url.protocol}`);
  if (url.protocol === 'http:' && !LOOPBACK.test(url.hostname)) {
    throw new EnrollError(`--gateway: use https:// — the answer carries this device's broker password (plain http is accepted only for a gateway on this machine)`);
  }
  return url;
}

function post(url: URL, body: string, ca: Buffer | undefined, timeoutMs: number): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const options = { method: 'POST', headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }, timeout: timeoutMs, ...(ca ? { ca } : {}) };
    const req = (url.protocol === 'https:' ? httpsRequest : httpRequest)(url, options, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (text += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${Math.round(timeoutMs / 1000)} s`)));
    req.on('error', reject);
    req.end(body);
  });
}

/** Writes `text` so that it never exists with looser permissions than 0600, replacing `file` atomically. */
async function writePrivate(file: string, text: string): Promise<void> {
  const temp = `${file}.${process.pid}.tmp`;
  try {
    await writeFile(temp, text, { mode: 0o600, flag: 'wx' });
    await chmod(temp, 0o600); // whatever the umask
    await rename(temp, file);
  } catch (err) {
    await rm(temp, { force: true });
    throw err;
  }
}

/** The config file text: the gateway's initial config, or the existing file (comments kept) with the new credentials. */
export function enrolledConfigText(existing: string | null, enrolled: EnrollResponse, extra: { dataDir: string; caFile: string | null }): string {
  const values: Array<[string[], unknown]> = [
    [['site'], enrolled.site],
    [['checkpoint'], enrolled.checkpoint],
    [['dataDir'], extra.dataDir],
    [['mqtt', 'url'], enrolled.mqtt.url],
    [['mqtt', 'username'], enrolled.mqtt.username],
    [['mqtt', 'password'], enrolled.mqtt.password],
  ];
  if (extra.caFile) values.push([['mqtt', 'caFile'], extra.caFile]);
  if (existing === null) {
    const doc = parseDocument(stringify(enrolled.config ?? {}));
    for (const [key, value] of values) doc.setIn(key, value);
    if (!extra.caFile) doc.deleteIn(['mqtt', 'caFile']);
    doc.commentBefore = ` edge-agent config written by \`edge-agent enroll\` for ${enrolled.site}/${enrolled.checkpoint}.\n Holds this device's broker password: keep it mode 0600.`;
    return doc.toString();
  }
  const doc = parseDocument(existing);
  if (doc.errors.length > 0) throw new EnrollError(`cannot update the existing config: ${doc.errors[0]!.message}`);
  for (const [key, value] of values) doc.setIn(key, value);
  if (!extra.caFile) doc.deleteIn(['mqtt', 'caFile']);
  return doc.toString();
}

/** Runs the enrollment; resolves to the exit code (0 enrolled, 1 refused or failed, 2 bad arguments). */
export async function runEnroll(args: EnrollArgs, io: EnrollIo): Promise<number> {
  try {
    const url = new URL('/api/enroll', checkGatewayUrl(args.gateway));
    if (!args.token.trim()) throw new EnrollError('--token: empty');
    const dataDir = path.resolve(args.dataDir ?? io.env.CHECKPOINT_DATA_DIR ?? '.checkpoint-agent');
    const configOut = path.resolve(args.configOut ?? path.join(dataDir, 'agent.yaml'));
    const existing = existsSync(configOut) ? await readFile(configOut, 'utf8') : null;
    if (existing !== null && !args.force) {
      throw new EnrollError(`${configOut} exists; the token was not used. Pass --force to put the new credentials into it (its other settings are kept)`);
    }
    let ca: Buffer | undefined;
    if (args.caFile) {
      try {
        ca = await readFile(args.caFile);
      } catch (err) {
        throw new EnrollError(`--ca: cannot read ${args.caFile}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
      }
    }

    let answer: { status: number; text: string };
    try {
      answer = await post(url, JSON.stringify({ token: args.token.trim() }), ca, args.timeoutMs ?? 30_000);
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      const hint = /certificate|self[- ]signed|CERT_|UNABLE_TO/i.test(`${e.code} ${e.message}`) ? ' (is the gateway\'s CA given with --ca FILE?)' : '';
      throw new EnrollError(`cannot reach the gateway at ${url.origin}: ${e.code ?? e.message}${hint}; the token was not used`);
    }
    let body: Record<string, unknown>;
    try {
      body = JSON.parse(answer.text) as Record<string, unknown>;
    } catch {
      throw new EnrollError(`the gateway answered HTTP ${answer.status} with something that is not JSON; is ${url.origin} a Checkpoint gateway?`);
    }
    if (answer.status !== 200) {
      const reason = typeof body.reason === 'string' ? ` (${body.reason})` : '';
      throw new EnrollError(`enrollment refused${reason}: ${String(body.message ?? `HTTP ${answer.status}`)}`);
    }
    const enrolled = body as unknown as EnrollResponse;

    await mkdir(dataDir, { recursive: true, mode: 0o700 });
    await mkdir(path.dirname(configOut), { recursive: true });
    let caFile: string | null = null;
    if (enrolled.caCert) {
      caFile = path.join(dataDir, 'broker-ca.pem');
      await writePrivate(caFile, enrolled.caCert);
    }
    const text = enrolledConfigText(existing, enrolled, { dataDir, caFile });
    // The agent must be able to start with what we write: check it before it replaces anything.
    parseConfig(AgentConfigSchema, parseDocument(text).toJS(), configOut);
    await writePrivate(configOut, text);
    io.stdout(`enrolled ${enrolled.site}/${enrolled.checkpoint} as broker user ${enrolled.mqtt.username} (${enrolled.mqtt.url})`);
    if (caFile) io.stdout(`broker CA certificate: ${caFile} (mode 0600)`);
    io.stdout(`config: ${configOut} (mode 0600; it holds the broker password)`);
    io.stdout(`start the agent: edge-agent run --config ${configOut}`);
    return 0;
  } catch (err) {
    io.stderr(`edge-agent enroll: ${(err as Error).message}`);
    return err instanceof EnrollError && (err.message.startsWith('--') || err.message.includes('exists; the token was not used')) ? 2 : 1;
  }
}
