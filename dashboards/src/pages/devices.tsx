/**
 * Devices (engineers): every edge agent with online state, last seen, versions, model and its
 * sha256, fps, queue depth and CPU temperature (sampled here from /api/devices while the page is
 * open), median stage times and memory, blackbody state with its last reading, calibration;
 * robots when the gateway has a fleet; and commands to an agent (threshold, ping, reference
 * check) with the agent's ack.
 */
import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import { ApiError } from '../api.js';
import { useApp } from '../app.js';
import { Lines } from '../components/charts.js';
import { RobotErrors } from '../components/robot-errors.js';
import { fleetApi, type Robot } from '../fleet.js';
import { useI18n } from '../i18n/index.js';
import { checkpointKey, upsertDevice, type Device } from '../model.js';

const POLL_MS = 5000;
const KEEP_SAMPLES = 120;

interface Sample {
  ts: string;
  fps: number;
  queueDepth: number;
  cpuTempC: number | null;
}

export function DevicesPage() {
  const { api, live } = useApp();
  const { t } = useI18n();
  const [devices, setDevices] = useState<Device[]>([]);
  const [robots, setRobots] = useState<Robot[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const samples = useRef(new Map<string, Sample[]>());

  const record = (ds: Device[]) => {
    for (const d of ds) {
      if (!d.telemetry) continue;
      const key = checkpointKey(d);
      const list = samples.current.get(key) ?? [];
      if (list.at(-1)?.ts !== d.telemetry.ts) list.push(d.telemetry);
      samples.current.set(key, list.slice(-KEEP_SAMPLES));
    }
  };

  useEffect(() => {
    let stopped = false;
    const poll = async () => {
      try {
        const { devices: ds } = await api.get<{ devices: Device[] }>('/api/devices');
        if (stopped) return;
        record(ds);
        setDevices(ds);
        setError(null);
      } catch (err) {
        setError((err as Error).message);
      }
      fleetApi(api)
        .robots()
        .then((r) => !stopped && setRobots(r))
        .catch(() => !stopped && setRobots(null));
    };
    void poll();
    const timer = setInterval(() => void poll(), POLL_MS);
    const off = live.on('device', (e) => {
      if (e.data) setDevices((ds) => upsertDevice(ds, e.data as Device));
    });
    return () => {
      stopped = true;
      clearInterval(timer);
      off();
    };
  }, [api]);

  return (
    <div class="devices">
      <h1>{t('devices.title')}</h1>
      {error && (
        <p class="error" role="alert">
          {t('common.loadError', { message: error })}
        </p>
      )}
      {devices.length === 0 ? <p>{t('devices.none')}</p> : devices.map((d) => <DeviceCard key={checkpointKey(d)} device={d} samples={samples.current.get(checkpointKey(d)) ?? []} />)}
      {devices.length > 0 && <CommandForm devices={devices} />}
      <Provisioning />
      <Rollouts devices={devices} />
      {robots && robots.length > 0 && (
        <section aria-labelledby="robots-dev-h">
          <h2 id="robots-dev-h">{t('dispatch.robots')}</h2>
          <ul class="robot-list">
            {robots.map((r) => (
              <li key={r.id}>
                {r.manufacturer} {r.serialNumber} · {t(`connection.${r.connection}`)} · {r.battery === null ? '—' : `${Math.round(r.battery)} %`}
                {r.errors.length > 0 && (
                  <span class="robot-state-error">
                    {' · '}
                    {t('robotState.error')}: <RobotErrors errors={r.errors} />
                  </span>
                )}
              </li>
            ))}
          </ul>
        </section>
      )}
    </div>
  );
}

/** Telemetry older than this (or from an agent not online) is shown as stale, not as the present. */
export const STALE_MS = 60_000;

function DeviceCard({ device: d, samples }: { device: Device; samples: Sample[] }) {
  const { t, dateTime, number, time } = useI18n();
  const headingId = `dev-${d.site}-${d.checkpoint}`;
  const labels = samples.map((s) => time(s.ts).slice(0, 5));
  const bb = d.telemetry?.blackbody ?? null;
  const stages = Object.entries(d.telemetry?.stages ?? {});
  const stale = d.telemetry !== null && (d.status !== 'online' || Date.now() - Date.parse(d.telemetry.ts) > STALE_MS);
  const reference = bb?.status ?? d.calibration?.reference ?? null;
  return (
    <section class={`device device-${d.status}`} aria-labelledby={headingId} data-device={checkpointKey(d)}>
      <h2 id={headingId}>
        {d.site} / {d.checkpoint} <span class={`pill pill-${d.status}`}>{t(`deviceStatus.${d.status}`)}</span>
      </h2>
      {stale && (
        <p class="stale-note" data-stale="yes">
          {t('devices.stale', { time: dateTime(d.telemetry!.ts) })}
        </p>
      )}
      <dl class={`device-facts${stale ? ' facts-stale' : ''}`}>
        <div>
          <dt>{t('devices.lastSeen')}</dt>
          <dd>{dateTime(d.lastSeen)}</dd>
        </div>
        <div>
          <dt>{t('devices.versions')}</dt>
          <dd>{d.versions ? Object.entries(d.versions).map(([k, v]) => `${k} ${v}`).join(', ') : '—'}</dd>
        </div>
        <div>
          <dt>{t('devices.model')}</dt>
          <dd>
            {d.model ? (
              <>
                {d.model.name}{' '}
                <code class="sha" title={d.model.sha256}>
                  sha256 {d.model.sha256.slice(0, 12)}…
                </code>
              </>
            ) : (
              '—'
            )}
          </dd>
        </div>
        <div>
          <dt>{t('devices.fps')}</dt>
          <dd>{d.telemetry ? number(d.telemetry.fps, 1) : '—'}</dd>
        </div>
        <div>
          <dt>{t('devices.queue')}</dt>
          <dd>{d.telemetry ? number(d.telemetry.queueDepth) : '—'}</dd>
        </div>
        <div>
          <dt>{t('devices.cpuTemp')}</dt>
          <dd>{d.telemetry?.cpuTempC != null ? `${number(d.telemetry.cpuTempC, 1)} °C` : '—'}</dd>
        </div>
        <div>
          <dt>{t('devices.stages')}</dt>
          <dd class="stage-times">{stages.length ? stages.map(([k, ms]) => `${k} ${number(ms, 1)}`).join(' · ') + ' ms' : '—'}</dd>
        </div>
        <div>
          <dt>{t('devices.memory')}</dt>
          <dd>{d.telemetry?.rssMb != null ? `${number(d.telemetry.rssMb, 0)} MB` : '—'}</dd>
        </div>
        <div>
          <dt>{t('devices.blackbody')}</dt>
          <dd data-reference={reference ?? 'none'}>
            {reference ? t(`reference.${reference}`) : '—'}
            {bb && bb.measuredC !== null && (
              <span class="bb-reading">
                {' · '}
                {/* A reading is only current while the reference is seen; otherwise it is the last one. */}
                {reference === 'ok' || reference === 'unstable'
                  ? t('devices.blackbodyReading', { measured: number(bb.measuredC, 2), set: number(bb.setC, 1) })
                  : t('devices.blackbodyLastReading', { measured: number(bb.measuredC, 2), set: number(bb.setC, 1) })}
              </span>
            )}
          </dd>
        </div>
        <div>
          <dt>{t('devices.mode')}</dt>
          <dd>{d.calibration ? `${t(`mode.${d.calibration.mode}`)} · ${t('guard.threshold', { t: number(d.calibration.thresholdC, 1) })}` : '—'}</dd>
        </div>
        <div>
          <dt>{t('devices.cameras')}</dt>
          <dd>
            {d.sources
              ? [
                  `${t('devices.thermal')}: ${t(`source.${d.sources.thermal.status}`)}`,
                  d.sources.visible ? `${t('devices.visible')}: ${t(`source.${d.sources.visible.status}`)}` : null,
                ]
                  .filter(Boolean)
                  .join(' · ')
              : '—'}
          </dd>
        </div>
      </dl>
      {samples.length > 1 && (
        <div class="telemetry-charts">
          {/* One unit per chart: frames per second, CPU temperature, messages waiting. */}
          <Lines label={t('devices.chartFps', { checkpoint: d.checkpoint })} labels={labels} min={0} digits={0} unit="fps" series={[{ name: t('devices.fps'), className: 's-fps', values: samples.map((s) => s.fps) }]} />
          <Lines label={t('devices.chartCpu', { checkpoint: d.checkpoint })} labels={labels} digits={0} unit="°C" series={[{ name: t('devices.cpuTemp'), className: 's-cpu', values: samples.map((s) => s.cpuTempC) }]} />
          <Lines label={t('devices.chartQueue', { checkpoint: d.checkpoint })} labels={labels} min={0} digits={0} unit={t('devices.msgs')} series={[{ name: t('devices.queue'), className: 's-queue', values: samples.map((s) => s.queueDepth) }]} />
        </div>
      )}
    </section>
  );
}

type CommandKind = 'threshold' | 'ping' | 'check-reference';
type Result = { kind: 'ok'; id: string; detail?: Record<string, unknown> } | { kind: 'refused'; id: string; error: string } | { kind: 'timeout' } | { kind: 'error'; message: string };

function CommandForm({ devices }: { devices: Device[] }) {
  const { api } = useApp();
  const { t } = useI18n();
  const [target, setTarget] = useState(checkpointKey(devices[0]!));
  const [kind, setKind] = useState<CommandKind>('threshold');
  const current = devices.find((d) => checkpointKey(d) === target);
  const [threshold, setThreshold] = useState(String(current?.calibration?.thresholdC ?? 37.3));
  const [checkS, setCheckS] = useState('5');
  const [busy, setBusy] = useState(false);
  const [result, setResult] = useState<Result | null>(null);
  const body = useMemo(() => {
    if (kind === 'threshold') return { type: 'set-config', config: { screening: { thresholdC: Math.round(Number(threshold) * 10) / 10 } } };
    if (kind === 'ping') return { type: 'ping' };
    return { type: 'calibrate', action: 'check-reference', params: { durationS: Number(checkS) } };
  }, [kind, threshold, checkS]);

  const send = async (e: Event) => {
    e.preventDefault();
    const [site, checkpoint] = target.split('/') as [string, string];
    setBusy(true);
    setResult(null);
    try {
      const r = await api.post<{ command: { id: string }; ack: { ok: boolean; error?: string; detail?: Record<string, unknown> } }>(`/api/checkpoints/${site}/${checkpoint}/cmd`, body);
      setResult(r.ack.ok ? { kind: 'ok', id: r.command.id, ...(r.ack.detail ? { detail: r.ack.detail } : {}) } : { kind: 'refused', id: r.command.id, error: r.ack.error ?? '' });
    } catch (err) {
      setResult(err instanceof ApiError && err.status === 504 ? { kind: 'timeout' } : { kind: 'error', message: (err as Error).message });
    } finally {
      setBusy(false);
    }
  };

  return (
    <section aria-labelledby="cmd-h" class="command">
      <h2 id="cmd-h">{t('devices.command')}</h2>
      <form onSubmit={(e) => void send(e)}>
        <div class="field">
          <label htmlFor="cmd-target">{t('devices.target')}</label>
          <select id="cmd-target" value={target} onChange={(e) => setTarget(e.currentTarget.value)}>
            {devices.map((d) => (
              <option key={checkpointKey(d)} value={checkpointKey(d)}>
                {d.site} / {d.checkpoint}
              </option>
            ))}
          </select>
        </div>
        <div class="field">
          <label htmlFor="cmd-type">{t('devices.commandType')}</label>
          <select id="cmd-type" value={kind} onChange={(e) => setKind(e.currentTarget.value as CommandKind)}>
            <option value="threshold">{t('devices.cmd.threshold')}</option>
            <option value="ping">{t('devices.cmd.ping')}</option>
            <option value="check-reference">{t('devices.cmd.checkReference')}</option>
          </select>
        </div>
        {kind === 'threshold' && (
          <label>
            <span>{t('devices.thresholdC')}</span>
            <input type="number" min={30} max={45} step={0.1} required value={threshold} onInput={(e) => setThreshold(e.currentTarget.value)} />
          </label>
        )}
        {kind === 'check-reference' && (
          <label>
            <span>{t('devices.checkSeconds')}</span>
            <input type="number" min={1} max={8} step={1} required value={checkS} onInput={(e) => setCheckS(e.currentTarget.value)} />
          </label>
        )}
        <button type="submit" disabled={busy}>
          {busy ? t('devices.sending') : t('devices.send')}
        </button>
      </form>
      <div role="status" aria-live="polite" class="ack-result" data-ack={result?.kind ?? 'none'}>
        {result?.kind === 'ok' && (result.detail && typeof result.detail.verdict === 'string' ? <CheckResult detail={result.detail} /> : t('devices.ackOk', { id: result.id }))}
        {result?.kind === 'refused' && t('devices.ackRefused', { id: result.id, error: result.error })}
        {result?.kind === 'timeout' && t('devices.ackTimeout')}
        {result?.kind === 'error' && t('common.loadError', { message: result.message })}
      </div>
    </section>
  );
}

/** The agent's blackbody check, in words: verdict, reading against the set point, noise and drift. */
function CheckResult({ detail: d }: { detail: Record<string, unknown> }) {
  const { t, number } = useI18n();
  const n = (v: unknown, digits: number) => (typeof v === 'number' ? number(v, digits) : '—');
  const verdict = d.verdict as 'stable' | 'unstable' | 'too-short';
  return (
    <span data-verdict={verdict}>
      {t(`check.${verdict}`)}{' '}
      {t('check.detail', { mean: n(d.meanC, 2), set: n(d.setC, 1), offset: n(d.offsetC, 2), noise: n(d.noiseC, 3), drift: n(d.driftOverWindowC, 3), frames: n(d.frames, 0), s: n(d.durationS, 1) })}
      {d.quick === true && ` ${t('check.quick')}`}
      {Array.isArray(d.problems) && d.problems.length > 0 && <span class="check-problems"> {(d.problems as string[]).join(' ')}</span>}
    </span>
  );
}

interface Provisioned {
  site: string;
  checkpoint: string;
  status: 'registered' | 'enrolled' | 'revoked' | 'unmanaged';
  enrolledMs?: number | null;
  revokedMs?: number | null;
}

/** Enrolment and revocation (the gateway's provisioning API; engineer role). */
function Provisioning() {
  const { api } = useApp();
  const { t } = useI18n();
  const [list, setList] = useState<Provisioned[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [site, setSite] = useState('');
  const [checkpoint, setCheckpoint] = useState('');
  const [issued, setIssued] = useState<{ token: string; enroll: string; expiresAt: string; site: string; checkpoint: string } | null>(null);
  const [confirmRevoke, setConfirmRevoke] = useState<string | null>(null);

  const reload = async () => {
    try {
      setList((await api.get<{ checkpoints: Provisioned[] }>('/api/checkpoints')).checkpoints);
    } catch (err) {
      setError((err as Error).message);
    }
  };
  useEffect(() => {
    void reload();
    const timer = setInterval(() => void reload(), POLL_MS);
    return () => clearInterval(timer);
  }, [api]);

  const enrol = async (e: Event) => {
    e.preventDefault();
    setError(null);
    try {
      const r = await api.post<{ token: string; enroll: string; expiresAt: string; site: string; checkpoint: string }>('/api/checkpoints', { site: site.trim(), checkpoint: checkpoint.trim() });
      setIssued(r);
      setSite('');
      setCheckpoint('');
      void reload();
    } catch (err) {
      setError((err as Error).message);
    }
  };
  const revoke = async (p: Provisioned) => {
    setConfirmRevoke(null);
    setError(null);
    try {
      await api.post(`/api/checkpoints/${encodeURIComponent(p.site)}/${encodeURIComponent(p.checkpoint)}/revoke`);
      void reload();
    } catch (err) {
      setError((err as Error).message);
    }
  };

  return (
    <section aria-labelledby="prov-h" class="provisioning">
      <h2 id="prov-h">{t('prov.title')}</h2>
      <form class="enrol" onSubmit={(e) => void enrol(e)}>
        <label>
          <span>{t('prov.siteId')}</span>
          <input required pattern="[a-z0-9-]{1,64}" value={site} onInput={(e) => setSite(e.currentTarget.value)} />
        </label>
        <label>
          <span>{t('prov.checkpointId')}</span>
          <input required pattern="[a-z0-9-]{1,64}" value={checkpoint} onInput={(e) => setCheckpoint(e.currentTarget.value)} />
        </label>
        <button type="submit">{t('prov.enrol')}</button>
      </form>
      {issued && (
        <div class="issued" role="status" data-issued={`${issued.site}/${issued.checkpoint}`}>
          <p>{t('prov.issued', { checkpoint: `${issued.site}/${issued.checkpoint}`, expires: new Date(issued.expiresAt).toLocaleString() })}</p>
          <code class="enroll-command">{issued.enroll}</code>
        </div>
      )}
      {error && (
        <p class="error" role="alert">
          {t('dispatch.refused', { message: error })}
        </p>
      )}
      {list && list.length > 0 && (
        <table>
          <thead>
            <tr>
              <th scope="col">{t('prov.checkpoint')}</th>
              <th scope="col">{t('prov.status')}</th>
              <th scope="col">
                <span class="visually-hidden">{t('prov.actions')}</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {list.map((p) => {
              const key = `${p.site}/${p.checkpoint}`;
              return (
                <tr key={key} data-provisioned={key} data-status={p.status}>
                  <th scope="row">{key}</th>
                  <td>{t(`prov.status.${p.status}`)}</td>
                  <td>
                    {p.status !== 'revoked' &&
                      (confirmRevoke === key ? (
                        <span class="confirm-cancel" role="group" aria-label={t('prov.revokeQuestion', { checkpoint: key })}>
                          <span>{t('prov.revokeQuestion', { checkpoint: key })}</span>
                          <button type="button" class="danger" onClick={() => void revoke(p)}>
                            {t('prov.revokeYes')}
                          </button>
                          <button type="button" class="secondary" onClick={() => setConfirmRevoke(null)}>
                            {t('dispatch.cancelNo')}
                          </button>
                        </span>
                      ) : (
                        <button type="button" class="secondary" onClick={() => setConfirmRevoke(key)}>
                          {t('prov.revoke')}
                        </button>
                      ))}
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
      )}
    </section>
  );
}

interface ModelVersionRow {
  name: string;
  version: string;
  sha256: string;
}
type RolloutStatus = 'running' | 'completed' | 'halted' | 'cancelled';
type DeviceUpdateStatus = 'pending' | 'sent' | 'updating' | 'succeeded' | 'failed' | 'skipped';
interface RolloutRow {
  id: string;
  model: { name: string; version: string; sha256: string };
  status: RolloutStatus;
  createdAt: string;
  finishedAt: string | null;
  reason: string | null;
  devices: Array<{ site: string; checkpoint: string; status: DeviceUpdateStatus; progress: number | null; error: string | null; onRolloutModel: boolean | null }>;
}

/** The model families the gateway knows are those the agents run (the gateway names the others when it refuses). */
const MODEL_VERSION = '[A-Za-z0-9][A-Za-z0-9._\\-]{0,31}';

/** Publish a model version: the file is hashed here and the gateway checks the hash before storing it. */
function PublishModel({ families, onPublished }: { families: string[]; onPublished: () => void }) {
  const { api } = useApp();
  const { t } = useI18n();
  const [file, setFile] = useState<File | null>(null);
  const [name, setName] = useState(families[0] ?? '');
  const [version, setVersion] = useState('');
  const [busy, setBusy] = useState(false);
  const [done, setDone] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  const fileInput = useRef<HTMLInputElement>(null);

  const publish = async (e: Event) => {
    e.preventDefault();
    if (!file) return;
    setBusy(true);
    setDone(null);
    setError(null);
    try {
      const bytes = new Uint8Array(await file.arrayBuffer());
      const { sha256 } = await import('@noble/hashes/sha2');
      const { bytesToHex } = await import('@noble/hashes/utils');
      const hash = bytesToHex(sha256(bytes));
      const query = new URLSearchParams({ name: name.trim(), version: version.trim(), sha256: hash });
      await api.post(`/api/models?${query}`, bytes);
      setDone(t('rollout.published', { name: name.trim(), version: version.trim(), sha: hash.slice(0, 12) }));
      setVersion('');
      setFile(null);
      if (fileInput.current) fileInput.current.value = '';
      onPublished();
    } catch (err) {
      setError((err as Error).message);
    } finally {
      setBusy(false);
    }
  };

  return (
    <form class="new-task publish-model" onSubmit={(e) => void publish(e)} aria-labelledby="publish-h">
      <h3 id="publish-h">{t('rollout.publishTitle')}</h3>
      <label>
        <span>{t('rollout.file')}</span>
        <input ref={fileInput} type="file" accept=".onnx,application/octet-stream" required onChange={(e) => setFile(e.currentTarget.files?.[0] ?? null)} />
      </label>
      <label>
        <span>{t('rollout.family')}</span>
        <input required list="model-families" value={name} onInput={(e) => setName(e.currentTarget.value)} />
        <datalist id="model-families">
          {families.map((f) => (
            <option key={f} value={f} />
          ))}
        </datalist>
      </label>
      <label>
        <span>{t('rollout.version')}</span>
        <input required pattern={MODEL_VERSION} value={version} onInput={(e) => setVersion(e.currentTarget.value)} />
      </label>
      <button type="submit" disabled={busy || !file}>
        {busy ? t('rollout.publishing') : t('rollout.publish')}
      </button>
      <span role="status" class="form-status">
        {done ?? ''}
      </span>
      {error && (
        <p class="error" role="alert">
          {t('dispatch.refused', { message: error })}
        </p>
      )}
    </form>
  );
}

/** Model roll-outs: publish a version, start one to chosen checkpoints (the gateway stages it), each device's progress, stop one. */
function Rollouts({ devices }: { devices: Device[] }) {
  const { api } = useApp();
  const { t, dateTime, number } = useI18n();
  const [models, setModels] = useState<ModelVersionRow[]>([]);
  const [rollouts, setRollouts] = useState<RolloutRow[]>([]);
  const [choice, setChoice] = useState('');
  const [targets, setTargets] = useState<string[]>([]);
  const [error, setError] = useState<string | null>(null);
  const [started, setStarted] = useState(false);
  const [confirmStop, setConfirmStop] = useState<string | null>(null);

  const reload = async () => {
    try {
      const [m, r] = await Promise.all([api.get<{ models: ModelVersionRow[] }>('/api/models'), api.get<{ rollouts: RolloutRow[] }>('/api/rollouts')]);
      setModels(m.models);
      setRollouts(r.rollouts);
    } catch (err) {
      setError((err as Error).message);
    }
  };
  useEffect(() => {
    void reload();
    // Progress comes from the agents' acks; a running roll-out is watched closely.
    const timer = setInterval(() => void reload(), 1000);
    return () => clearInterval(timer);
  }, [api]);

  const start = async (e: Event) => {
    e.preventDefault();
    const [name, version] = choice.split('@') as [string, string];
    setError(null);
    setStarted(false);
    try {
      await api.post('/api/rollouts', { model: name, version, targets: targets.map((k) => ({ site: k.split('/')[0], checkpoint: k.split('/')[1] })) });
      setTargets([]);
      setChoice('');
      setStarted(true);
      void reload();
    } catch (err) {
      setError((err as Error).message);
    }
  };
  const stop = async (id: string) => {
    setConfirmStop(null);
    setError(null);
    try {
      await api.post(`/api/rollouts/${encodeURIComponent(id)}/cancel`);
      void reload();
    } catch (err) {
      setError((err as Error).message);
    }
  };
  const families = [...new Set(devices.map((d) => d.model?.name).filter((n): n is string => Boolean(n)))].sort();

  return (
    <section aria-labelledby="rollout-h" class="rollouts">
      <h2 id="rollout-h">{t('rollout.title')}</h2>
      <PublishModel families={families} onPublished={() => void reload()} />
      {models.length === 0 ? (
        <p>{t('rollout.noModels')}</p>
      ) : (
        <form class="new-task" onSubmit={(e) => void start(e)} aria-labelledby="start-rollout-h">
          <h3 id="start-rollout-h">{t('rollout.startTitle')}</h3>
          <label>
            <span>{t('rollout.model')}</span>
            <select required value={choice} onChange={(e) => setChoice(e.currentTarget.value)}>
              <option value="">{t('dispatch.choose')}</option>
              {models.map((m) => (
                <option key={`${m.name}@${m.version}`} value={`${m.name}@${m.version}`}>
                  {m.name} {m.version} (sha256 {m.sha256.slice(0, 8)}…)
                </option>
              ))}
            </select>
          </label>
          <fieldset>
            <legend>{t('rollout.targets')}</legend>
            {devices.map((d) => (
              <label key={checkpointKey(d)} class="check">
                <input
                  type="checkbox"
                  checked={targets.includes(checkpointKey(d))}
                  onChange={(e) => setTargets(e.currentTarget.checked ? [...targets, checkpointKey(d)] : targets.filter((x) => x !== checkpointKey(d)))}
                />
                {checkpointKey(d)}
              </label>
            ))}
          </fieldset>
          <button type="submit" disabled={targets.length === 0 || !choice}>
            {t('rollout.start')}
          </button>
          <span role="status" class="form-status">
            {started ? t('rollout.started') : ''}
          </span>
        </form>
      )}
      {error && (
        <p class="error" role="alert">
          {t('dispatch.refused', { message: error })}
        </p>
      )}
      <ul class="tasks">
        {rollouts.slice(0, 10).map((r) => (
          <li key={r.id} data-rollout={r.id} data-status={r.status}>
            <strong>
              {r.model.name} {r.model.version}
            </strong>{' '}
            · <span class={`rollout-${r.status}`}>{t(`rollout.status.${r.status}`)}</span> · {dateTime(r.createdAt)}
            {r.finishedAt && <> – {dateTime(r.finishedAt)}</>}
            {r.reason && (
              <span class="original">
                {' '}
                · {t('history.original')} <q lang="en">{r.reason}</q>
              </span>
            )}
            <ul class="rollout-devices">
              {r.devices.map((d) => (
                <li key={`${d.site}/${d.checkpoint}`} data-rollout-device={`${d.site}/${d.checkpoint}`} data-status={d.status}>
                  {d.site}/{d.checkpoint}: {t(`rollout.device.${d.status}`)}{' '}
                  {d.progress !== null && (
                    <>
                      <progress max={1} value={d.progress} aria-label={t('rollout.progress', { checkpoint: d.checkpoint })} /> {number(Math.round(d.progress * 100))} %
                    </>
                  )}
                  {d.onRolloutModel === true && <> · {t('rollout.runsIt')}</>}
                  {d.error && (
                    <span class="original">
                      {' '}
                      {t('rollout.agentSays')} <q lang="en">{d.error}</q>
                    </span>
                  )}
                </li>
              ))}
            </ul>
            {r.status === 'running' &&
              (confirmStop === r.id ? (
                <span class="confirm-cancel" role="group" aria-label={t('rollout.cancelQuestion')}>
                  <span>{t('rollout.cancelQuestion')}</span>
                  <button type="button" class="danger" onClick={() => void stop(r.id)}>
                    {t('rollout.cancelYes')}
                  </button>
                  <button type="button" class="secondary" onClick={() => setConfirmStop(null)}>
                    {t('dispatch.cancelNo')}
                  </button>
                </span>
              ) : (
                <button type="button" class="secondary" onClick={() => setConfirmStop(r.id)}>
                  {t('rollout.cancel')}
                </button>
              ))}
          </li>
        ))}
      </ul>
    </section>
  );
}
