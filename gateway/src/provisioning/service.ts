/**
 * Provisioning: the I/O shell around tokens.ts and rollout.ts.
 *  - Engineers register a checkpoint and get a one-time enrollment token.
 *  - A device exchanges the token for its own broker user (role edge, bound to its checkpoint,
 *    generated password) in the broker's user store, the CA certificate and an initial config.
 *  - Revoking removes the broker user; the broker drops the live connection (broker/src/revocation.ts).
 *  - Engineers publish model versions (sha256-checked) and roll them out in stages with
 *    `update-model` commands; devices download from the gateway with their broker credentials.
 * Every step is in the audit log. Tokens and passwords are never logged.
 *
 * Several gateways on one PostgreSQL share all of it (store/postgres/provisioning.ts): a token
 * issued by one enrolls through another, a model published on one downloads from any. Roll-out
 * commands are sent by one gateway only (`drives()`: the leader); a roll-out started on another is
 * picked up by the leader's `drive()` within a second. Every step of a roll-out is one locked
 * read-modify-write of its state (`updateRollout`), so a final ack recorded by whichever gateway
 * received it, a cancel on another and the leader's next send never overwrite each other.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Logger } from 'pino';
import type { LoginGuard, UserStore as BrokerUserStore } from '@checkpoint/broker';
import { MODELS } from '@checkpoint/models';
import type { CommandAck } from '@checkpoint/protocol';
import type { CommandResult } from '../commands.js';
import type { Backend } from '../store/backend.js';
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
import { modelFileName, type ModelVersion, type ProvisionedDevice, type ProvisioningStore, type RolloutChange } from './store.js';
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
  updateTimeoutMs: number;
  /** Base URL devices reach the gateway at (model downloads). */
  publicUrl: () => string;
}

export interface ProvisioningDeps {
  /** SQLite (provisioning/store.ts) or PostgreSQL (store/postgres/provisioning.ts). */
  store: ProvisioningStore<Backend>;
  /** Whether this gateway sends roll-out commands: always alone, the leader when several share a database. Default: yes. */
  drives?: () => boolean;
  /** null: enrollment and revocation answer 503 (no broker user store configured). */
  credentials: DeviceCredentialStore | null;
  /** Login limits and password checks (the gateway's one guard): the model download's Basic auth goes through it. */
  loginGuard: LoginGuard;
  /** Sends a command and resolves with its final ack (a CommandDispatcher with the update timeout). */
  sendCommand(site: string, checkpoint: string, body: Record<string, unknown>): Promise<CommandResult>;
  audit(atMs: number, actor: string, action: string, target: string | null, detail?: unknown): void | Promise<void>;
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
  const { settings, log, now, store } = deps;
  const drives = deps.drives ?? (() => true);
  /** Command id -> rollout id, for the commands this gateway sent and still waits for. */
  const inFlight = new Map<string, string>();
  let closed = false;

  function credentials(): DeviceCredentialStore {
    if (!deps.credentials) {
      throw new ProvisioningError(503, 'provisioning is off: set provisioning.brokerUsersFile to the broker\'s users.sqlite (or run the broker embedded)');
    }
    return deps.credentials;
  }

  // --- checkpoints and enrollment ---------------------------------------------------------------
  async function register(d: DeviceRef, by: string): Promise<{ token: string; expiresAt: string; device: ProvisionedDevice }> {
    credentials();
    const { token, hash } = newEnrollmentToken();
    const t = now();
    const expiresMs = t + settings.tokenTtlMs;
    await store.issueToken(d, hash, by, t, expiresMs);
    await deps.audit(t, by, 'device.token_issued', deviceKey(d), { expiresAt: new Date(expiresMs).toISOString() });
    return { token, expiresAt: new Date(expiresMs).toISOString(), device: (await store.device(d))! };
  }

  async function enroll(token: string, address: string): Promise<Enrollment> {
    const users = credentials();
    const hash = hashToken(token);
    const row = await store.token(hash);
    const refuse = async (reason: TokenRefusal, message: string): Promise<never> => {
      await deps.audit(now(), row ? `device:${deviceKey(row)}` : 'anonymous', 'device.enroll_refused', row ? deviceKey(row) : null, { reason, address });
      throw new ProvisioningError(reason === 'unknown' ? 401 : 410, message, reason);
    };
    const judged = judgeToken(row, now());
    if (!judged.ok) return refuse(judged.reason, judged.message);
    if (!(await store.useToken(hash, now()))) {
      // Somebody else used it between our read and now.
      const again = judgeToken(await store.token(hash), now());
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
      await store.unuseToken(hash);
      log.error({ err: (err as Error).message, device: deviceKey(d) }, 'cannot create the broker user of an enrolling device');
      throw new ProvisioningError(503, `cannot create the broker user: ${(err as Error).message}; the token still works`);
    }
    await store.markEnrolled(d, username, now());
    await deps.audit(now(), `device:${deviceKey(d)}`, 'device.enrolled', deviceKey(d), { brokerUser: username, address });
    log.info({ device: deviceKey(d), brokerUser: username }, 'device enrolled');
    const mqtt = { url: settings.deviceMqttUrl, username, password };
    return { ...d, mqtt, caCert: settings.caCert, config: { ...d, mqtt } };
  }

  async function revoke(d: DeviceRef, by: string): Promise<{ device: ProvisionedDevice | null; brokerUserRemoved: string | null }> {
    const users = credentials();
    const device = await store.device(d);
    const username = device?.brokerUser ?? brokerUserName(d);
    const existing = users.get(username);
    // Only ever remove an edge user bound to this very checkpoint.
    const removable = existing && existing.role === 'edge' && existing.site === d.site && existing.checkpoint === d.checkpoint;
    if (!device && !removable) throw new ProvisioningError(404, `no provisioned device ${deviceKey(d)} and no broker user ${username} bound to it`);
    if (removable) users.remove(username);
    if (device) await store.markRevoked(d, now());
    await deps.audit(now(), by, 'device.revoked', deviceKey(d), { brokerUser: removable ? username : null });
    log.warn({ device: deviceKey(d), brokerUser: removable ? username : null, by }, 'device revoked');
    return { device: await store.device(d), brokerUserRemoved: removable ? username : null };
  }

  async function devices() {
    const seen = new Map(deps.seenDevices().map((s) => [deviceKey(s), s]));
    const versions = await store.models();
    const versionOf = (m: { name: string; sha256: string } | null) => (m ? versions.filter((v) => v.name === m.name && v.sha256 === m.sha256).map((v) => v.version) : []);
    const provisioned = await store.devices();
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
    const exists = () => new ProvisioningError(409, `model ${input.name} ${input.version} is already published; versions are immutable`);
    if (await store.model(input.name, input.version)) throw exists();
    const model: ModelVersion = {
      name: input.name,
      version: input.version,
      sha256: actual,
      sizeBytes: input.bytes.length,
      file: modelFileName(input.name, input.version),
      publishedBy: input.by,
      publishedMs: now(),
    };
    // Another gateway (or request) may have published the same version meanwhile: the store keeps the first.
    if (!(await store.addModel(model, input.bytes))) throw exists();
    await deps.audit(now(), input.by, 'model.published', `${input.name}/${input.version}`, { sha256: actual, sizeBytes: input.bytes.length });
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
    const model = await store.model(name, version);
    if (!model) throw new ProvisioningError(404, `no model ${name} ${version}`);
    const allowed = (await store.rollouts({ limit: 1000 })).some((r) => r.model.name === name && r.model.version === version && mayDownload(r, device));
    if (!allowed) throw new ProvisioningError(403, `${deviceKey(device)} is not in a roll-out of ${name} ${version} waiting for this download`);
    const bytes = await store.modelBytes(model);
    // Bit rot in storage must not reach devices as a "valid" file: check before serving.
    if (sha256(bytes) !== model.sha256) {
      log.error({ model: `${name}/${version}`, file: model.file }, 'stored model file does not match its sha256; not served');
      throw new ProvisioningError(500, `stored file of ${name} ${version} is corrupt; publish it again under a new version`);
    }
    await deps.audit(now(), `device:${deviceKey(device)}`, 'model.downloaded', `${name}/${version}`, null);
    return { bytes: deps.tamperDownload ? deps.tamperDownload(device, bytes) : bytes, model, device };
  }

  // --- roll-outs --------------------------------------------------------------------------------
  async function knownDevices(): Promise<DeviceRef[]> {
    const provisioned = await store.devices();
    const revoked = new Set(provisioned.filter((d) => d.status === 'revoked').map(deviceKey));
    const all = new Map<string, DeviceRef>();
    for (const d of provisioned) if (d.status === 'enrolled') all.set(deviceKey(d), d);
    for (const d of deps.seenDevices()) if (!revoked.has(deviceKey(d))) all.set(deviceKey(d), { site: d.site, checkpoint: d.checkpoint });
    return [...all.values()];
  }

  async function startRollout(req: RolloutRequest, by: string): Promise<Rollout> {
    const model = await store.model(req.model, req.version);
    if (!model) throw new ProvisioningError(404, `model ${req.model} ${req.version} is not published (POST /api/models first)`);
    let rollout: Rollout;
    try {
      const devicesList = resolveTargets(req.targets, await knownDevices());
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
    await store.createRollout(rollout, now());
    await deps.audit(now(), by, 'rollout.started', rollout.id, { model: `${model.name}/${model.version}`, devices: rollout.devices.length, stageEnds: rollout.stageEnds, failureThreshold: rollout.failureThreshold });
    await pump(rollout.id);
    return (await store.rollout(rollout.id))!;
  }

  /** One step of a roll-out's state machine, stored atomically; a finished roll-out or stage goes to the audit log (once, by whoever made the step). */
  async function change(id: string, step: (r: Rollout) => Rollout): Promise<RolloutChange | null> {
    const changed = await store.updateRollout(id, step, now());
    if (!changed || changed.after === changed.before) return changed;
    const { before, after } = changed;
    if (after.status !== before.status) {
      await deps.audit(now(), 'system', `rollout.${after.status}`, after.id, { reason: after.reason, counts: counts(after) });
      log[after.status === 'halted' ? 'warn' : 'info']({ rollout: after.id, status: after.status, reason: after.reason }, 'roll-out finished');
    } else if (after.stage !== before.stage) {
      await deps.audit(now(), 'system', 'rollout.stage', after.id, { stage: after.stage + 1, of: after.stageEnds.length });
    }
    return changed;
  }

  /** Sends the command to every device of the current stage not sent yet (on the gateway that drives roll-outs). */
  async function pump(id: string): Promise<void> {
    if (closed || !drives()) return;
    const r = await store.rollout(id);
    if (!r) return;
    for (const d of devicesToSend(r)) {
      const commandId = deps.newId();
      const sent = await change(id, (current) => markSent(current, d, commandId, now()));
      // Cancelled meanwhile, or sent by a pump running at the same time: not sent again.
      if (!sent || sent.after === sent.before) continue;
      inFlight.set(commandId, id);
      void sendUpdate(r, d, commandId);
    }
  }

  /** A device's final ack (or the timeout) as a roll-out outcome. */
  const ackOutcome = (ack: CommandAck): DeviceOutcome =>
    ack.ok ? { ok: true, detail: (ack.detail as Record<string, unknown> | undefined) ?? null } : { ok: false, error: ack.error ?? 'failed without a reason' };
  const outcomeOf = (result: CommandResult): DeviceOutcome =>
    result.kind === 'ack'
      ? ackOutcome(result.ack)
      : result.kind === 'timeout'
        ? { ok: false, error: `no final ack within ${Math.round(settings.updateTimeoutMs / 1000)} s` }
        : { ok: false, error: result.message };

  async function sendUpdate(r: Rollout, d: DeviceRef, commandId: string): Promise<void> {
    const { name, version, sha256: sha, sizeBytes } = r.model;
    const url = `${settings.publicUrl()}/api/models/${encodeURIComponent(name)}/${encodeURIComponent(version)}/file`;
    let outcome: DeviceOutcome;
    try {
      outcome = outcomeOf(await deps.sendCommand(d.site, d.checkpoint, { id: commandId, type: 'update-model', model: { name, version, url, sha256: sha, sizeBytes } }));
    } catch (err) {
      outcome = { ok: false, error: `command not sent: ${(err as Error).message}` };
    }
    inFlight.delete(commandId);
    if (closed) return;
    try {
      await recordResult(r.id, d, commandId, outcome);
      await pump(r.id);
    } catch (err) {
      // The outcome is not lost for good: a final ack seen by any gateway records it, else the leader's deadline does.
      log.error({ rollout: r.id, device: deviceKey(d), err: (err as Error).message }, 'cannot record a roll-out result');
    }
  }

  /** Records a device's outcome once, whoever records it first (the sender, or a gateway that got the ack). */
  async function recordResult(id: string, d: DeviceRef, commandId: string, outcome: DeviceOutcome): Promise<void> {
    const changed = await change(id, (current) => markResult(current, d, commandId, outcome, now()));
    if (!changed || changed.after === changed.before) return;
    await deps.audit(now(), `device:${deviceKey(d)}`, outcome.ok ? 'rollout.device_updated' : 'rollout.device_failed', id, outcome.ok ? outcome.detail : { error: outcome.error.slice(0, 500) });
  }

  /** The running roll-out waiting for command `commandId`, if any (acks of commands another gateway sent). */
  async function rolloutWaitingFor(commandId: string): Promise<string | undefined> {
    const local = inFlight.get(commandId);
    if (local) return local;
    const running = await store.rollouts({ status: 'running', limit: 1000 });
    return running.find((r) => r.devices.some((d) => d.commandId === commandId && (d.status === 'sent' || d.status === 'updating')))?.id;
  }

  /**
   * Every cmd/ack the gateway receives: progress and results of roll-out commands are recorded,
   * also of commands another gateway sent (in cluster mode an ack reaches one replica only).
   */
  async function onAck(where: DeviceRef, ack: CommandAck): Promise<void> {
    if (closed) return;
    const id = await rolloutWaitingFor(ack.id);
    if (!id) return;
    if (ack.progress !== undefined && ack.done !== true) {
      await change(id, (current) => markProgress(current, where, ack.id, ack.progress!));
      return;
    }
    await recordResult(id, where, ack.id, ackOutcome(ack));
    await pump(id);
  }

  async function cancelRollout(id: string, by: string): Promise<Rollout> {
    const changed = await change(id, (r) => cancel(r, by, now()));
    if (!changed) throw new ProvisioningError(404, `no roll-out ${id}`);
    if (changed.before.status !== 'running') throw new ProvisioningError(409, `roll-out ${id} is ${changed.before.status}, not running`);
    return changed.after;
  }

  /** After a restart of a gateway alone: commands in flight were lost with the old process; send them again. */
  async function resume(): Promise<void> {
    for (const r of await store.rollouts({ status: 'running', limit: 1000 })) {
      await change(r.id, (current) => {
        const reset = structuredClone(current);
        for (const d of reset.devices) if (d.status === 'sent' || d.status === 'updating') Object.assign(d, { status: 'pending', commandId: null, progress: null });
        return advance(reset, now());
      });
      log.info({ rollout: r.id }, 'resuming roll-out');
      await pump(r.id);
    }
  }

  /**
   * The leader's periodic step when several gateways share a database: sends what roll-outs started
   * elsewhere (or advanced by an ack elsewhere) are waiting for, and ends the wait for commands sent
   * by a gateway that stopped leading: without a final ack by the update timeout, as the sender would
   * have, they count as failed.
   */
  async function drive(): Promise<void> {
    if (closed || !drives()) return;
    for (const r of await store.rollouts({ status: 'running', limit: 1000 })) {
      for (const d of r.devices) {
        const orphaned = (d.status === 'sent' || d.status === 'updating') && d.commandId && !inFlight.has(d.commandId) && (d.sentMs ?? 0) + settings.updateTimeoutMs <= now();
        if (orphaned) await recordResult(r.id, d, d.commandId!, { ok: false, error: `no final ack within ${Math.round(settings.updateTimeoutMs / 1000)} s (sent by a gateway that stopped leading)` });
      }
      await pump(r.id);
    }
  }

  return {
    register,
    enroll,
    revoke,
    devices,
    publishModel,
    models: async () => store.models(),
    modelDownload,
    startRollout,
    rollout: async (id: string) => store.rollout(id),
    rollouts: async (limit = 100) => store.rollouts({ limit }),
    cancelRollout,
    onAck,
    resume,
    drive,
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
