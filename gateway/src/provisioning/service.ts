/**
 * Provisioning: the I/O shell around tokens.ts and rollout.ts.
 *  - Engineers register a checkpoint and get a one-time enrollment token.
 *  - A device exchanges the token for its own broker user (role edge, bound to its checkpoint,
 *    generated password) in the broker's user store, the CA certificate and an initial config.
 *  - Revoking removes the broker user; the broker drops the live connection (broker/src/revocation.ts).
 *  - Engineers publish model versions (sha256-checked) and roll them out in stages with
 *    `update-model` commands; devices download from the gateway with their broker credentials.
 * Every step is in the audit log. Tokens and passwords are never logged.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync } from 'node:fs';
import { readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { LoginGuard, UserStore as BrokerUserStore } from '@checkpoint/broker';
import { MODELS } from '@checkpoint/models';
import type { CommandAck } from '@checkpoint/protocol';
import type { CommandResult } from '../commands.js';
import type { Db } from '../store/db.js';
import {
  advance,
  cancel,
  counts,
  devicesToSend,
  markProgress,
  markResult,
  markSent,
  mayDownload,
  planRollout,
  resolveTargets,
  RolloutPlanError,
  type DeviceOutcome,
  type Rollout,
  type StagesSpec,
  type Target,
} from './rollout.js';
import { createProvisioningStore, type ModelVersion, type ProvisionedDevice } from './store.js';
import { brokerUserName, deviceKey, hashToken, judgeToken, newDevicePassword, newEnrollmentToken, type DeviceRef, type TokenRefusal } from './tokens.js';

/** The broker's user store, as far as provisioning uses it (`openUserStore` from @checkpoint/broker). */
export type DeviceCredentialStore = Pick<BrokerUserStore, 'add' | 'get' | 'remove' | 'verify'>;

export class ProvisioningError extends Error {
  constructor(
    readonly statusCode: number,
    message: string,
    readonly reason?: string,
  ) {
    super(message);
  }
}

export interface ProvisioningSettings {
  /** Broker URL written into enrolled devices' config. */
  deviceMqttUrl: string;
  /** PEM text devices get to trust the broker, or null. */
  caCert: string | null;
  tokenTtlMs: number;
  modelsDir: string;
  updateTimeoutMs: number;
  /** Base URL devices reach the gateway at (model downloads). */
  publicUrl: () => string;
}

export interface ProvisioningDeps {
  db: Db;
  /** null: enrollment and revocation answer 503 (no broker user store configured). */
  credentials: DeviceCredentialStore | null;
  /** Login limits and password checks (the gateway's one guard): the model download's Basic auth goes through it. */
  loginGuard: LoginGuard;
  /** Sends a command and resolves with its final ack (a CommandDispatcher with the update timeout). */
  sendCommand(site: string, checkpoint: string, body: Record<string, unknown>): Promise<CommandResult>;
  audit(atMs: number, actor: string, action: string, target: string | null, detail?: unknown): void;
  /** Checkpoints that reported state (the devices table), for percentage targets. */
  seenDevices(): Array<DeviceRef & { model: { name: string; sha256: string } | null }>;
  settings: ProvisioningSettings;
  log: Logger;
  now(): number;
  newId(): string;
  /** Fault injection for tests only: the bytes of a model download as they leave the gateway. */
  tamperDownload?: (device: DeviceRef, bytes: Buffer) => Buffer;
}

export interface Enrollment extends DeviceRef {
  mqtt: { url: string; username: string; password: string };
  caCert: string | null;
  /** An initial edge-agent config (edge-agent writes it with mode 0600). */
  config: { site: string; checkpoint: string; mqtt: { url: string; username: string; password: string } };
}

export interface RolloutRequest {
  model: string;
  version: string;
  targets: Target[];
  stages?: number[];
  batchSizes?: number[];
  failureThreshold?: number;
}

export const KNOWN_MODEL_FAMILIES: readonly string[] = MODELS.map((m) => m.name);
export const MODEL_VERSION_PATTERN = '^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$';

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

export type Provisioning = ReturnType<typeof createProvisioning>;

export function createProvisioning(deps: ProvisioningDeps) {
  const { settings, log, now } = deps;
  const store = createProvisioningStore(deps.db);
  mkdirSync(settings.modelsDir, { recursive: true });
  /** Command id -> rollout id, for progress acks. */
  const inFlight = new Map<string, string>();
  let closed = false;

  function credentials(): DeviceCredentialStore {
    if (!deps.credentials) {
      throw new ProvisioningError(503, 'provisioning is off: set provisioning.brokerUsersFile to the broker\'s users.sqlite (or run the broker embedded)');
    }
    return deps.credentials;
  }

  // --- checkpoints and enrollment ---------------------------------------------------------------
  function register(d: DeviceRef, by: string): { token: string; expiresAt: string; device: ProvisionedDevice } {
    credentials();
    const { token, hash } = newEnrollmentToken();
    const t = now();
    const expiresMs = t + settings.tokenTtlMs;
    store.issueToken(d, hash, by, t, expiresMs);
    deps.audit(t, by, 'device.token_issued', deviceKey(d), { expiresAt: new Date(expiresMs).toISOString() });
    return { token, expiresAt: new Date(expiresMs).toISOString(), device: store.device(d)! };
  }

  async function enroll(token: string, address: string): Promise<Enrollment> {
    const users = credentials();
    const hash = hashToken(token);
    const row = store.token(hash);
    const refuse = (reason: TokenRefusal, message: string): never => {
      deps.audit(now(), row ? `device:${deviceKey(row)}` : 'anonymous', 'device.enroll_refused', row ? deviceKey(row) : null, { reason, address });
      throw new ProvisioningError(reason === 'unknown' ? 401 : 410, message, reason);
    };
    const judged = judgeToken(row, now());
    if (!judged.ok) return refuse(judged.reason, judged.message);
    if (!store.useToken(hash, now())) {
      // Somebody else used it between our read and now.
      const again = judgeToken(store.token(hash), now());
      return refuse(again.ok ? 'used' : again.reason, again.ok ? 'enrollment token was used concurrently' : again.message);
    }
    const d: DeviceRef = { site: row!.site, checkpoint: row!.checkpoint };
    const username = brokerUserName(d);
    const password = newDevicePassword();
    try {
      // A re-enrolled device gets a new password; the broker drops the old connection.
      users.remove(username);
      await users.add({ name: username, role: 'edge', site: d.site, checkpoint: d.checkpoint }, password);
    } catch (err) {
      store.unuseToken(hash);
      log.error({ err: (err as Error).message, device: deviceKey(d) }, 'cannot create the broker user of an enrolling device');
      throw new ProvisioningError(503, `cannot create the broker user: ${(err as Error).message}; the token still works`);
    }
    store.markEnrolled(d, username, now());
    deps.audit(now(), `device:${deviceKey(d)}`, 'device.enrolled', deviceKey(d), { brokerUser: username, address });
    log.info({ device: deviceKey(d), brokerUser: username }, 'device enrolled');
    const mqtt = { url: settings.deviceMqttUrl, username, password };
    return { ...d, mqtt, caCert: settings.caCert, config: { ...d, mqtt } };
  }

  function revoke(d: DeviceRef, by: string): { device: ProvisionedDevice | null; brokerUserRemoved: string | null } {
    const users = credentials();
    const device = store.device(d);
    const username = device?.brokerUser ?? brokerUserName(d);
    const existing = users.get(username);
    // Only ever remove an edge user bound to this very checkpoint.
    const removable = existing && existing.role === 'edge' && existing.site === d.site && existing.checkpoint === d.checkpoint;
    if (!device && !removable) throw new ProvisioningError(404, `no provisioned device ${deviceKey(d)} and no broker user ${username} bound to it`);
    if (removable) users.remove(username);
    if (device) store.markRevoked(d, now());
    deps.audit(now(), by, 'device.revoked', deviceKey(d), { brokerUser: removable ? username : null });
    log.warn({ device: deviceKey(d), brokerUser: removable ? username : null, by }, 'device revoked');
    return { device: store.device(d), brokerUserRemoved: removable ? username : null };
  }

  function devices() {
    const seen = new Map(deps.seenDevices().map((s) => [deviceKey(s), s]));
    const versions = store.models();
    const versionOf = (m: { name: string; sha256: string } | null) => (m ? versions.filter((v) => v.name === m.name && v.sha256 === m.sha256).map((v) => v.version) : []);
    const provisioned = store.devices();
    const keys = new Set(provisioned.map(deviceKey));
    return [
      ...provisioned.map((p) => ({ ...p, model: seen.get(deviceKey(p))?.model ?? null, modelVersions: versionOf(seen.get(deviceKey(p))?.model ?? null) })),
      // Checkpoints that report state without having been provisioned here (users made with checkpoint-broker).
      ...[...seen.values()]
        .filter((s) => !keys.has(deviceKey(s)))
        .map((s) => ({ site: s.site, checkpoint: s.checkpoint, status: 'unmanaged' as const, model: s.model, modelVersions: versionOf(s.model) })),
    ];
  }

  // --- models -----------------------------------------------------------------------------------
  async function publishModel(input: { name: string; version: string; sha256: string; bytes: Buffer; by: string }): Promise<ModelVersion> {
    if (!KNOWN_MODEL_FAMILIES.includes(input.name)) {
      throw new ProvisioningError(400, `name: unknown model family ${JSON.stringify(input.name)}; expected one of ${KNOWN_MODEL_FAMILIES.join(', ')}`);
    }
    if (!new RegExp(MODEL_VERSION_PATTERN).test(input.version)) throw new ProvisioningError(400, `version: expected ${MODEL_VERSION_PATTERN}`);
    if (input.bytes.length === 0) throw new ProvisioningError(400, 'body: empty; send the model file as the request body (application/octet-stream)');
    const actual = sha256(input.bytes);
    if (actual !== input.sha256.toLowerCase()) {
      throw new ProvisioningError(400, `sha256: the uploaded bytes (${input.bytes.length}) have sha256 ${actual}, not the declared ${input.sha256}; nothing was stored`);
    }
    if (store.model(input.name, input.version)) throw new ProvisioningError(409, `model ${input.name} ${input.version} is already published; versions are immutable`);
    const file = join(input.name, `${input.version}.onnx`);
    const target = join(settings.modelsDir, file);
    mkdirSync(join(settings.modelsDir, input.name), { recursive: true });
    const temp = `${target}.${process.pid}.partial`;
    try {
      await writeFile(temp, input.bytes, { mode: 0o644, flush: true });
      await rename(temp, target);
    } catch (err) {
      await rm(temp, { force: true });
      throw err;
    }
    const model: ModelVersion = { name: input.name, version: input.version, sha256: actual, sizeBytes: input.bytes.length, file, publishedBy: input.by, publishedMs: now() };
    store.addModel(model);
    deps.audit(now(), input.by, 'model.published', `${input.name}/${input.version}`, { sha256: actual, sizeBytes: input.bytes.length });
    return model;
  }

  /**
   * A device's download: HTTP Basic with its broker credentials, checked against the broker's user
   * store, and only while a roll-out of this version has sent it the command.
   */
  async function modelDownload(
    auth: { username: string; password: string } | null,
    name: string,
    version: string,
    address: string,
  ): Promise<{ bytes: Buffer; model: ModelVersion; device: DeviceRef }> {
    const users = credentials();
    if (!auth) throw new ProvisioningError(401, 'send the device\'s broker credentials (HTTP Basic)');
    const verdict = await deps.loginGuard.attempt(address, () => users.verify(auth.username, auth.password));
    if (!verdict.ok && verdict.reason === 'limited') {
      throw new ProvisioningError(429, `too many failed logins from this address; try again in ${Math.ceil(verdict.retryAfterMs / 1000)} s`);
    }
    if (!verdict.ok && verdict.reason === 'busy') throw new ProvisioningError(503, 'too many logins waiting for a password check; try again in 1 s');
    if (!verdict.ok) throw new ProvisioningError(401, 'wrong broker user name or password');
    const principal = verdict.value;
    if (principal.role !== 'edge') throw new ProvisioningError(403, `broker user ${principal.name} is not an edge device`);
    const device = { site: principal.site, checkpoint: principal.checkpoint };
    const model = store.model(name, version);
    if (!model) throw new ProvisioningError(404, `no model ${name} ${version}`);
    const allowed = store.rollouts({ limit: 1000 }).some((r) => r.model.name === name && r.model.version === version && mayDownload(r, device));
    if (!allowed) throw new ProvisioningError(403, `${deviceKey(device)} is not in a roll-out of ${name} ${version} waiting for this download`);
    const bytes = await readFile(join(settings.modelsDir, model.file));
    // Bit rot on the gateway's disk must not reach devices as a "valid" file: check before serving.
    if (sha256(bytes) !== model.sha256) {
      log.error({ model: `${name}/${version}`, file: model.file }, 'stored model file does not match its sha256; not served');
      throw new ProvisioningError(500, `stored file of ${name} ${version} is corrupt; publish it again under a new version`);
    }
    deps.audit(now(), `device:${deviceKey(device)}`, 'model.downloaded', `${name}/${version}`, null);
    return { bytes: deps.tamperDownload ? deps.tamperDownload(device, bytes) : bytes, model, device };
  }

  // --- roll-outs --------------------------------------------------------------------------------
  function knownDevices(): DeviceRef[] {
    const revoked = new Set(store.devices().filter((d) => d.status === 'revoked').map(deviceKey));
    const all = new Map<string, DeviceRef>();
    for (const d of store.devices()) if (d.status === 'enrolled') all.set(deviceKey(d), d);
    for (const d of deps.seenDevices()) if (!revoked.has(deviceKey(d))) all.set(deviceKey(d), { site: d.site, checkpoint: d.checkpoint });
    return [...all.values()];
  }

  function startRollout(req: RolloutRequest, by: string): Rollout {
    const model = store.model(req.model, req.version);
    if (!model) throw new ProvisioningError(404, `model ${req.model} ${req.version} is not published (POST /api/models first)`);
    let rollout: Rollout;
    try {
      const devicesList = resolveTargets(req.targets, knownDevices());
      const stages: StagesSpec = { ...(req.stages ? { stages: req.stages } : {}), ...(req.batchSizes ? { batchSizes: req.batchSizes } : {}) };
      rollout = planRollout({
        id: deps.newId(),
        model: { name: model.name, version: model.version, sha256: model.sha256, sizeBytes: model.sizeBytes },
        devices: devicesList,
        stages,
        failureThreshold: req.failureThreshold ?? 0,
        createdBy: by,
        nowMs: now(),
      });
    } catch (err) {
      if (err instanceof RolloutPlanError) throw new ProvisioningError(400, err.message);
      throw err;
    }
    store.saveRollout(rollout, now());
    deps.audit(now(), by, 'rollout.started', rollout.id, { model: `${model.name}/${model.version}`, devices: rollout.devices.length, stageEnds: rollout.stageEnds, failureThreshold: rollout.failureThreshold });
    pump(rollout.id);
    return store.rollout(rollout.id)!;
  }

  function save(before: Rollout, after: Rollout): void {
    if (after === before) return;
    store.saveRollout(after, now());
    if (after.status !== before.status) {
      deps.audit(now(), 'system', `rollout.${after.status}`, after.id, { reason: after.reason, counts: counts(after) });
      log[after.status === 'halted' ? 'warn' : 'info']({ rollout: after.id, status: after.status, reason: after.reason }, 'roll-out finished');
    } else if (after.stage !== before.stage) {
      deps.audit(now(), 'system', 'rollout.stage', after.id, { stage: after.stage + 1, of: after.stageEnds.length });
    }
  }

  function pump(id: string): void {
    if (closed) return;
    let r = store.rollout(id);
    if (!r) return;
    for (const d of devicesToSend(r)) {
      const commandId = deps.newId();
      const next = markSent(r, d, commandId, now());
      save(r, next);
      r = next;
      inFlight.set(commandId, id);
      void sendUpdate(id, d, commandId);
    }
  }

  async function sendUpdate(id: string, d: DeviceRef, commandId: string): Promise<void> {
    const r = store.rollout(id)!;
    const { name, version, sha256: sha, sizeBytes } = r.model;
    const url = `${settings.publicUrl()}/api/models/${encodeURIComponent(name)}/${encodeURIComponent(version)}/file`;
    let outcome: DeviceOutcome;
    try {
      const result = await deps.sendCommand(d.site, d.checkpoint, { id: commandId, type: 'update-model', model: { name, version, url, sha256: sha, sizeBytes } });
      outcome =
        result.kind === 'ack'
          ? result.ack.ok
            ? { ok: true, detail: (result.ack.detail as Record<string, unknown> | undefined) ?? null }
            : { ok: false, error: result.ack.error ?? 'failed without a reason' }
          : result.kind === 'timeout'
            ? { ok: false, error: `no final ack within ${Math.round(settings.updateTimeoutMs / 1000)} s` }
            : { ok: false, error: result.message };
    } catch (err) {
      outcome = { ok: false, error: `command not sent: ${(err as Error).message}` };
    }
    inFlight.delete(commandId);
    if (closed) return;
    const before = store.rollout(id)!;
    const after = markResult(before, d, commandId, outcome, now());
    save(before, after);
    deps.audit(now(), `device:${deviceKey(d)}`, outcome.ok ? 'rollout.device_updated' : 'rollout.device_failed', id, outcome.ok ? outcome.detail : { error: outcome.error.slice(0, 500) });
    if (after.status === 'running') pump(id);
  }

  /** Every cmd/ack the gateway receives: progress of roll-out commands is recorded. */
  function onAck(where: DeviceRef, ack: CommandAck): void {
    const id = inFlight.get(ack.id);
    if (!id || ack.done || ack.progress === undefined) return;
    const before = store.rollout(id);
    if (!before) return;
    save(before, markProgress(before, where, ack.id, ack.progress));
  }

  function cancelRollout(id: string, by: string): Rollout {
    const r = store.rollout(id);
    if (!r) throw new ProvisioningError(404, `no roll-out ${id}`);
    if (r.status !== 'running') throw new ProvisioningError(409, `roll-out ${id} is ${r.status}, not running`);
    const after = cancel(r, by, now());
    save(r, after);
    return after;
  }

  /** After a restart: commands in flight were lost with the old process; send them again. */
  function resume(): void {
    for (const r of store.rollouts({ status: 'running', limit: 1000 })) {
      const reset = structuredClone(r);
      for (const d of reset.devices) if (d.status === 'sent' || d.status === 'updating') Object.assign(d, { status: 'pending', commandId: null, progress: null });
      save(r, advance(reset, now()));
      log.info({ rollout: r.id }, 'resuming roll-out');
      pump(r.id);
    }
  }

  return {
    register,
    enroll,
    revoke,
    devices,
    publishModel,
    models: () => store.models(),
    modelDownload,
    startRollout,
    rollout: (id: string) => store.rollout(id),
    rollouts: (limit = 100) => store.rollouts({ limit }),
    cancelRollout,
    onAck,
    resume,
    close() {
      closed = true;
    },
  };
}

/** Reads the CA certificate devices get; a missing or non-PEM file fails the start, by name. */
export function readCaCert(file: string | undefined): string | null {
  if (!file) return null;
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new Error(`cannot read provisioning.caFile ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  if (!text.includes('-----BEGIN CERTIFICATE-----')) throw new Error(`provisioning.caFile ${file} is not a PEM certificate`);
  return text;
}
