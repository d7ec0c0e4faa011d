/**
 * `edge-agent doctor`: checks a box before it goes live and says what to fix. The probes (I/O)
 * gather facts; `evaluate` (pure) turns facts into verdicts, so the judgement is tested without
 * the hardware. Nothing here prints temperatures of people or images: only the box's own state.
 */
import { constants as fsConstants } from 'node:fs';
import { access, readFile, stat, statfs } from 'node:fs/promises';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import mqtt from 'mqtt';
import { defaultModelsDir, getManifest, verifyModel, type ModelStatus } from '@checkpoint/models';
import { redactUrl } from '@checkpoint/protocol';
import type { AgentConfig } from './config/schema.js';
import { EDGE_PROFILES } from './config/profiles.js';
import { openSource } from './sources/open.js';
import { readCpuTemperature } from './telemetry/cpu-temperature.js';

export type Verdict = 'ok' | 'warn' | 'fail' | 'skip';

export interface Check {
  name: string;
  verdict: Verdict;
  detail: string;
  /** What to do about a warn or fail. */
  fix?: string;
}

export interface SerialPortFact {
  path: string;
  /** null = exists and readable/writable by this user; else the errno (ENOENT, EACCES, ...). */
  error: string | null;
}

export interface DoctorFacts {
  serialPorts: SerialPortFact[];
  /** First frame from the configured source: ms it took, or the error; null when not tried. */
  camera: { ms: number } | { error: string } | null;
  model: ModelStatus | { error: string };
  /** true/false from systemd-timesyncd/chrony via timedatectl; null when it cannot be told. */
  clockSynchronised: boolean | null;
  disk: { freeBytes: number; totalBytes: number } | { error: string };
  /** Writes to the data dir's block device since boot, when the device is known. */
  writes: { device: string; bytesPerDay: number; uptimeS: number } | null;
  broker: { ms: number } | { error: string };
  cpuTemperatureC: number | null;
}

export interface DoctorLimits {
  minFreeBytes: number;
  warnFreeBytes: number;
  /** SD cards and eMMC wear out: ~500 P/E cycles x 32 GB over 5 years ≈ 8.8 GB/day (estimate). */
  sdWriteBudgetBytesPerDay: number;
  warnCpuC: number;
  failCpuC: number;
}

export const DEFAULT_LIMITS: DoctorLimits = {
  minFreeBytes: 256 * 2 ** 20,
  warnFreeBytes: 2 * 2 ** 30,
  sdWriteBudgetBytesPerDay: 8 * 2 ** 30,
  warnCpuC: 70,
  // Raspberry Pi firmware throttles at 80-85 °C; a box that sits there drops frames.
  failCpuC: 80,
};

const gib = (b: number) => `${(b / 2 ** 30).toFixed(1)} GiB`;

/** Serial ports the config uses (the thermal board today; robots are the firmware bridge's). */
export function configuredSerialPorts(config: AgentConfig): string[] {
  return config.source.thermal.kind === 'gy-mcu90640' ? [config.source.thermal.path] : [];
}

/** Pure: the verdicts for these facts. */
export function evaluate(config: AgentConfig, facts: DoctorFacts, limits: DoctorLimits = DEFAULT_LIMITS): Check[] {
  const checks: Check[] = [];
  const profile = config.profile ? EDGE_PROFILES[config.profile] : null;
  checks.push({
    name: 'profile',
    verdict: 'ok',
    detail: profile
      ? `${config.profile}: ${config.model.name}, ${config.model.threads ?? 'all'} threads, ${config.model.framesInFlight ?? 3} frames in flight`
      : `none (model ${config.model.name}, ${config.model.threads ?? 'all'} threads)`,
  });

  for (const port of facts.serialPorts) {
    if (port.error === null) checks.push({ name: `serial ${port.path}`, verdict: 'ok', detail: 'exists, readable and writable' });
    else if (port.error === 'ENOENT')
      checks.push({
        name: `serial ${port.path}`,
        verdict: 'fail',
        detail: `serial port ${port.path} does not exist`,
        fix: 'plug in the thermal camera board, check `ls /dev/serial/by-id/`, and set source.thermal.path to the port it shows',
      });
    else if (port.error === 'EACCES' || port.error === 'EPERM')
      checks.push({
        name: `serial ${port.path}`,
        verdict: 'fail',
        detail: `serial port ${port.path} exists but this user may not open it (${port.error})`,
        fix: 'add the service user to the dialout group (the package does this for checkpoint-agent): `usermod -aG dialout checkpoint-agent`',
      });
    else checks.push({ name: `serial ${port.path}`, verdict: 'fail', detail: `serial port ${port.path}: ${port.error}`, fix: 'check the cable and the port name' });
  }

  if (facts.camera === null) checks.push({ name: 'camera', verdict: 'skip', detail: 'not tried (a serial port it needs is missing)' });
  else if ('error' in facts.camera)
    checks.push({ name: 'camera', verdict: 'fail', detail: `no frame from ${config.source.thermal.kind}: ${facts.camera.error}`, fix: 'check the source: section of the config, the cable and the camera power' });
  else checks.push({ name: 'camera', verdict: 'ok', detail: `${config.source.thermal.kind} answered with a frame in ${Math.round(facts.camera.ms)} ms` });

  const m = facts.model;
  if ('error' in m) checks.push({ name: 'model', verdict: 'fail', detail: `model ${config.model.name}: ${m.error}`, fix: 'check model.name in the config (`checkpoint-models list`)' });
  else if (m.state === 'ok') checks.push({ name: 'model', verdict: 'ok', detail: `${m.name} verified (sha256 ${m.expectedSha256.slice(0, 12)}…) at ${m.path}` });
  else if (m.state === 'missing')
    checks.push({
      name: 'model',
      verdict: 'fail',
      detail: `model ${m.name} is not installed (no ${m.path})`,
      fix: `checkpoint-models fetch ${m.name} --dest ${path.dirname(m.path)}   (offline: add --mirror DIR)`,
    });
  else
    checks.push({
      name: 'model',
      verdict: 'fail',
      detail: `model ${m.name} is NOT verified: ${m.path} has sha256 ${m.actualSha256?.slice(0, 12)}…, the manifest says ${m.expectedSha256.slice(0, 12)}…`,
      fix: `delete ${m.path} and run checkpoint-models fetch ${m.name} --dest ${path.dirname(m.path)}`,
    });

  checks.push(
    facts.clockSynchronised === true
      ? { name: 'clock', verdict: 'ok', detail: 'synchronised (NTP)' }
      : facts.clockSynchronised === false
        ? { name: 'clock', verdict: 'fail', detail: 'not synchronised: screening times and TLS certificates depend on it', fix: 'enable NTP (`timedatectl set-ntp true`) and make the site NTP server reachable' }
        : { name: 'clock', verdict: 'warn', detail: 'cannot tell whether the clock is synchronised (no timedatectl)', fix: 'run an NTP client (systemd-timesyncd or chrony)' },
  );

  const d = facts.disk;
  if ('error' in d) checks.push({ name: 'disk', verdict: 'fail', detail: `data dir ${config.dataDir}: ${d.error}`, fix: 'create the data dir or fix dataDir / CHECKPOINT_DATA_DIR' });
  else if (d.freeBytes < limits.minFreeBytes)
    checks.push({ name: 'disk', verdict: 'fail', detail: `${gib(d.freeBytes)} free of ${gib(d.totalBytes)} under ${config.dataDir}`, fix: 'free space: the outbox must be able to hold hours of results while the broker is away' });
  else if (d.freeBytes < limits.warnFreeBytes)
    checks.push({ name: 'disk', verdict: 'warn', detail: `${gib(d.freeBytes)} free of ${gib(d.totalBytes)} under ${config.dataDir}`, fix: 'free some space' });
  else checks.push({ name: 'disk', verdict: 'ok', detail: `${gib(d.freeBytes)} free of ${gib(d.totalBytes)} under ${config.dataDir}` });

  if (facts.writes === null) checks.push({ name: 'write budget', verdict: 'skip', detail: 'block device of the data dir not found' });
  else {
    const w = facts.writes;
    const flash = /^(mmcblk|nvme)/.test(w.device) || w.device.startsWith('mmc');
    const perDay = `${gib(w.bytesPerDay)}/day written to ${w.device} since boot (${(w.uptimeS / 3600).toFixed(1)} h)`;
    if (/^mmcblk/.test(w.device) && w.bytesPerDay > limits.sdWriteBudgetBytesPerDay)
      checks.push({
        name: 'write budget',
        verdict: 'warn',
        detail: `${perDay}: above the SD-card budget of ${gib(limits.sdWriteBudgetBytesPerDay)}/day`,
        fix: `keep snapshots.policy at non-pass (now ${config.snapshots.policy}), move logs to RAM (Storage=volatile in journald.conf) or the data dir to a USB SSD`,
      });
    else checks.push({ name: 'write budget', verdict: 'ok', detail: `${perDay}${flash ? '' : ' (not an SD card)'}` });
  }

  const b = facts.broker;
  if ('error' in b)
    checks.push({ name: 'broker', verdict: 'fail', detail: `${redactUrl(config.mqtt.url)}: ${b.error}`, fix: 'check mqtt.url, the credentials from `edge-agent enroll`, the CA file and the firewall' });
  else checks.push({ name: 'broker', verdict: 'ok', detail: `${redactUrl(config.mqtt.url)} accepted this box's credentials in ${Math.round(b.ms)} ms` });

  const t = facts.cpuTemperatureC;
  if (t === null) checks.push({ name: 'cpu temperature', verdict: 'skip', detail: 'no thermal zone readable' });
  else if (t >= limits.failCpuC) checks.push({ name: 'cpu temperature', verdict: 'fail', detail: `${t} °C: the CPU throttles`, fix: 'add a heatsink or fan, or move the box out of the sun' });
  else if (t >= limits.warnCpuC) checks.push({ name: 'cpu temperature', verdict: 'warn', detail: `${t} °C, close to throttling`, fix: 'improve cooling before summer' });
  else checks.push({ name: 'cpu temperature', verdict: 'ok', detail: `${t} °C` });
  return checks;
}

/** Pure: the report's lines and whether the box may go live (no fail). */
export function formatReport(checks: Check[]): { lines: string[]; ready: boolean } {
  const mark: Record<Verdict, string> = { ok: 'ok  ', warn: 'WARN', fail: 'FAIL', skip: 'skip' };
  const lines = checks.flatMap((c) => [`${mark[c.verdict]}  ${c.name}: ${c.detail}`, ...(c.fix && c.verdict !== 'ok' ? [`      fix: ${c.fix}`] : [])]);
  const fails = checks.filter((c) => c.verdict === 'fail').length;
  const warns = checks.filter((c) => c.verdict === 'warn').length;
  lines.push(fails > 0 ? `NOT READY: ${fails} to fix${warns ? `, ${warns} to look at` : ''}` : `ready${warns ? ` (${warns} to look at)` : ''}`);
  return { lines, ready: fails === 0 };
}

// --- probes (I/O) --------------------------------------------------------------------------------

const withTimeout = <T>(p: Promise<T>, ms: number, what: string): Promise<T> =>
  Promise.race([p, new Promise<T>((_, reject) => setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms).unref())]);

async function probeSerial(p: string): Promise<SerialPortFact> {
  try {
    await access(p, fsConstants.R_OK | fsConstants.W_OK);
    return { path: p, error: null };
  } catch (err) {
    return { path: p, error: (err as NodeJS.ErrnoException).code ?? (err as Error).message };
  }
}

async function probeCamera(config: AgentConfig, timeoutMs: number): Promise<{ ms: number } | { error: string }> {
  const started = performance.now();
  const abort = new AbortController();
  try {
    const source = await withTimeout(openSource(config), timeoutMs, 'opening the source');
    // The simulator's `truth` fails with its frames (e.g. no face crops); the frames report it.
    (source as { truth?: Promise<unknown> }).truth?.catch(() => undefined);
    try {
      const first = withTimeout(
        (async () => {
          for await (const _ of source.frames(abort.signal)) return;
          throw new Error('the source ended without a frame');
        })(),
        timeoutMs,
        'first frame',
      );
      await first;
      return { ms: performance.now() - started };
    } finally {
      abort.abort();
      await source.close().catch(() => undefined);
    }
  } catch (err) {
    return { error: (err as Error).message };
  }
}

async function probeModel(config: AgentConfig, env: Readonly<Record<string, string | undefined>>): Promise<ModelStatus | { error: string }> {
  try {
    getManifest(config.model.name);
    return await verifyModel(config.model.name, config.model.dir ?? defaultModelsDir(env));
  } catch (err) {
    return { error: (err as Error).message };
  }
}

const exec = promisify(execFile);

async function probeClock(): Promise<boolean | null> {
  try {
    const { stdout } = await exec('timedatectl', ['show', '-p', 'NTPSynchronized', '--value'], { timeout: 5000 });
    if (stdout.trim() === 'yes') return true;
    if (stdout.trim() === 'no') return false;
  } catch {
    // no timedatectl or no systemd as PID 1: try timesyncd's flag file
  }
  try {
    await access('/run/systemd/timesync/synchronized');
    return true;
  } catch {
    return null;
  }
}

async function probeDisk(dir: string): Promise<DoctorFacts['disk']> {
  try {
    const s = await statfs(dir);
    return { freeBytes: s.bavail * s.bsize, totalBytes: s.blocks * s.bsize };
  } catch (err) {
    return { error: (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'does not exist' : (err as Error).message };
  }
}

/** Sectors written since boot on the data dir's disk (/sys/dev/block/M:m/stat, field 7), per day of uptime. */
async function probeWrites(dir: string): Promise<DoctorFacts['writes']> {
  try {
    const dev = (await stat(dir)).dev;
    const major = Math.floor(dev / 256) & 0xfff;
    const minor = (dev & 0xff) | ((dev >> 12) & 0xfff00);
    const sysDir = `/sys/dev/block/${major}:${minor}`;
    // A partition's stat counts its own writes; its parent names the device (mmcblk0 for mmcblk0p2).
    const fields = (await readFile(`${sysDir}/stat`, 'utf8')).trim().split(/\s+/).map(Number);
    const uevent = await readFile(`${sysDir}/uevent`, 'utf8');
    const device = /DEVNAME=(\S+)/.exec(uevent)?.[1] ?? `${major}:${minor}`;
    const uptimeS = Number((await readFile('/proc/uptime', 'utf8')).split(' ')[0]);
    const bytes = (fields[6] ?? 0) * 512;
    return { device, bytesPerDay: uptimeS > 0 ? (bytes * 86_400) / uptimeS : 0, uptimeS };
  } catch {
    return null;
  }
}

async function probeBroker(config: AgentConfig, timeoutMs: number): Promise<DoctorFacts['broker']> {
  const started = performance.now();
  const read = async (f: string | undefined) => (f ? readFile(f) : undefined);
  let client: mqtt.MqttClient | undefined;
  try {
    const [ca, cert, key] = await Promise.all([read(config.mqtt.caFile), read(config.mqtt.certFile), read(config.mqtt.keyFile)]);
    client = mqtt.connect(config.mqtt.url, {
      // Not the agent's client id: a doctor run must not take over the live agent's session.
      clientId: `doctor-${config.site}-${config.checkpoint}-${process.pid}`,
      clean: true,
      reconnectPeriod: 0,
      connectTimeout: timeoutMs,
      ...(config.mqtt.username !== undefined ? { username: config.mqtt.username } : {}),
      ...(config.mqtt.password !== undefined ? { password: config.mqtt.password } : {}),
      ...(ca ? { ca } : {}),
      ...(cert ? { cert } : {}),
      ...(key ? { key } : {}),
    });
    const c = client;
    await withTimeout(
      new Promise<void>((resolve, reject) => {
        c.once('connect', () => resolve());
        c.once('error', (err) => reject(err));
        c.once('close', () => reject(new Error('connection closed')));
      }),
      timeoutMs,
      'broker',
    );
    return { ms: performance.now() - started };
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    return { error: e.code === 'ECONNREFUSED' ? 'connection refused (is the broker running, is the port right?)' : e.message };
  } finally {
    client?.end(true);
  }
}

export interface DoctorOptions {
  env: Readonly<Record<string, string | undefined>>;
  timeoutMs?: number;
  limits?: DoctorLimits;
}

/** Gathers the facts for `config` (in parallel where independent). */
export async function gatherFacts(config: AgentConfig, options: DoctorOptions): Promise<DoctorFacts> {
  const timeoutMs = options.timeoutMs ?? 10_000;
  const serialPorts = await Promise.all(configuredSerialPorts(config).map(probeSerial));
  const serialMissing = serialPorts.some((p) => p.error !== null);
  const [camera, model, clockSynchronised, disk, writes, broker, cpuTemperatureC] = await Promise.all([
    serialMissing ? Promise.resolve(null) : probeCamera(config, timeoutMs),
    probeModel(config, options.env),
    probeClock(),
    probeDisk(config.dataDir),
    probeWrites(config.dataDir),
    probeBroker(config, timeoutMs),
    readCpuTemperature().catch(() => null),
  ]);
  return { serialPorts, camera, model, clockSynchronised, disk, writes, broker, cpuTemperatureC };
}

/** Runs every check; resolves to the exit code (0 ready, 1 something to fix). */
export async function runDoctor(config: AgentConfig, options: DoctorOptions & { stdout: (line: string) => void; json?: boolean }): Promise<number> {
  const checks = evaluate(config, await gatherFacts(config, options), options.limits);
  const { lines, ready } = formatReport(checks);
  if (options.json) options.stdout(JSON.stringify({ ready, checks }));
  else for (const line of lines) options.stdout(line);
  return ready ? 0 : 1;
}
