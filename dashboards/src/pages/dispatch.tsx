/**
 * The dispatch board (hospital logistics): the site map with robots on it, the task queue and
 * history, and a form to create tasks with pickers for map nodes. Tasks a rule created show
 * their alert. Without a fleet on the gateway (404) it says so plainly.
 */
import { useEffect, useLayoutEffect, useMemo, useRef, useState } from 'preact/hooks';
import { useApp } from '../app.js';
import { useI18n } from '../i18n/index.js';
import { placeLabels, type Box, type LabelRequest } from '../map-layout.js';
import { RobotErrors } from '../components/robot-errors.js';
import { graphOf, taskEta } from '../eta.js';
import { robotSerial, taskHistory } from '../task-history.js';
import { formatElapsed, loadSoundSetting, policyOf, SOUND_SETTINGS, waitingSince, type SoundSetting } from './guard.js';
import { Chime } from '../chime.js';
import { overdueTasks, parseRemindAfter, REMIND_AFTER_MIN, reminderDue, reminderState } from '../reminder.js';
import {
  ACTIVE_STATUSES,
  placeName,
  fleetApi,
  FleetUnavailableError,
  TASK_TYPES,
  unwrapRobot,
  unwrapTask,
  upsertById,
  type MapNode,
  type Robot,
  type SiteMap,
  type Task,
  type TaskRequest,
  type TaskType,
} from '../fleet.js';

type Load = { state: 'loading' } | { state: 'unavailable' } | { state: 'error'; message: string } | { state: 'ready' };

/** A task waiting this long for a confirmation is highlighted (and announced). */
const LONG_WAIT_MS = 3 * 60_000;
/** The board's own sound setting and reminder threshold (a dispatcher may also run the guard screen). */
const SOUND_KEY = 'checkpoint.dispatch.sound';
const REMIND_KEY = 'checkpoint.dispatch.remindAfterMin';

function remember(key: string, value: string): void {
  try {
    localStorage.setItem(key, value);
  } catch {
    // not remembered
  }
}
function recall(key: string): string | null {
  try {
    return localStorage.getItem(key);
  } catch {
    return null;
  }
}

export type RobotState = 'offline' | 'error' | 'paused' | 'waiting' | 'driving' | 'charging' | 'idle';

/** What a robot is doing, for its colour and its words (pure). */
export function robotState(r: Robot, task: Task | undefined): RobotState {
  if (r.connection !== 'ONLINE') return 'offline';
  if (r.errors.length > 0) return 'error';
  if (r.paused) return 'paused';
  if (task?.waitingFor) return 'waiting';
  if (r.driving) return 'driving';
  if (r.charging) return 'charging';
  return 'idle';
}

export function DispatchPage() {
  const { api, live } = useApp();
  const { t, locale, number } = useI18n();
  const fleet = useMemo(() => fleetApi(api), [api]);
  const [load, setLoad] = useState<Load>({ state: 'loading' });
  const [map, setMap] = useState<SiteMap | null>(null);
  const [robots, setRobots] = useState<Robot[]>([]);
  const [tasks, setTasks] = useState<Task[]>([]);
  const [actionError, setActionError] = useState<string | null>(null);
  const [confirmCancel, setConfirmCancel] = useState<string | null>(null);
  const [now, setNow] = useState(Date.now());
  const graph = useMemo(() => (map ? graphOf(map) : null), [map]);
  const [sound, setSound] = useState<SoundSetting>(() => loadSoundSetting(SOUND_KEY));
  const [remindAfterMin, setRemindAfterMin] = useState(() => parseRemindAfter(recall(REMIND_KEY)));
  const chime = useMemo(() => {
    const c = new Chime();
    c.muted = loadSoundSetting(SOUND_KEY) === 'off';
    return c;
  }, []);
  const [needsGesture, setNeedsGesture] = useState(false);
  const lastSound = useRef<number | null>(null);
  const announced = useRef<ReadonlySet<string>>(new Set());

  // Confirmations waiting too long: checked every second (the ticker re-renders), like the guard screen's sound.
  const { policy, intervalMs } = policyOf(sound);
  const waiting = tasks.filter((x) => ACTIVE_STATUSES.includes(x.status) && x.waitingFor).map((x) => ({ id: x.id, sinceMs: waitingSince(x) }));
  const overdue = overdueTasks(waiting, now, remindAfterMin * 60_000);
  useEffect(() => {
    if (load.state !== 'ready') return;
    const due = reminderDue({ policy, intervalMs, nowMs: now, lastSoundMs: lastSound.current, overdue, announced: announced.current });
    announced.current = due.announced;
    if (due.sound) {
      lastSound.current = now;
      // The AudioContext is made at the first chime; until the page is touched it stays suspended and the board offers a button.
      chime.play(due.sound);
      setNeedsGesture(chime.needsGesture);
    }
  });
  useEffect(() => () => chime.close(), []);

  const reload = async () => {
    try {
      const [m, r, ts] = await Promise.all([fleet.map(), fleet.robots(), fleet.tasks()]);
      setMap(m);
      setRobots(r);
      setTasks(ts);
      setLoad({ state: 'ready' });
    } catch (err) {
      setLoad(err instanceof FleetUnavailableError ? { state: 'unavailable' } : { state: 'error', message: (err as Error).message });
    }
  };

  useEffect(() => {
    void reload();
    const offs = [
      live.on('robot', (e) => setRobots((rs) => upsertById(rs, unwrapRobot(e.data)))),
      live.on('task', (e) => setTasks((ts) => upsertById(ts, unwrapTask(e.data)))),
      live.on('resync', () => void reload()),
      live.on('open', (e) => {
        if ((e.data as { resumed: boolean }).resumed === false) void reload();
      }),
    ];
    const ticker = setInterval(() => setNow(Date.now()), 1000);
    return () => {
      offs.forEach((off) => off());
      clearInterval(ticker);
    };
  }, [fleet]);

  const act = async (p: Promise<Task>): Promise<boolean> => {
    setActionError(null);
    try {
      const task = await p;
      setTasks((ts) => upsertById(ts, task));
      return true;
    } catch (err) {
      setActionError((err as Error).message);
      return false;
    }
  };

  const actOnRobot = async (p: Promise<Robot>): Promise<void> => {
    setActionError(null);
    try {
      const robot = await p;
      // The answer shows the robot when the request arrived; a live update heard since (e.g. the
      // robot reporting itself paused) is newer and must not be overwritten by it.
      const heardSince = (current: Robot | undefined) => Date.parse(current?.lastSeen ?? '') > Date.parse(robot.lastSeen ?? '');
      setRobots((rs) => (heardSince(rs.find((r) => r.id === robot.id)) ? rs : upsertById(rs, robot)));
    } catch (err) {
      setActionError((err as Error).message);
    }
  };

  if (load.state === 'loading') return <p>{t('common.loading')}</p>;
  if (load.state === 'unavailable')
    return (
      <section class="notice" role="status" data-fleet="unavailable">
        <h1>{t('dispatch.unavailable')}</h1>
        <p>{t('dispatch.unavailableHint')}</p>
      </section>
    );
  if (load.state === 'error')
    return (
      <p class="error" role="alert">
        {t('common.loadError', { message: load.message })}
      </p>
    );

  const active = tasks
    .filter((x) => ACTIVE_STATUSES.includes(x.status))
    // Waiting for a person first (someone has to act), then by priority.
    .sort((a, b) => Number(Boolean(b.waitingFor)) - Number(Boolean(a.waitingFor)) || b.priority - a.priority);
  const done = tasks
    .filter((x) => !ACTIVE_STATUSES.includes(x.status))
    .sort((a, b) => Date.parse(b.history.at(-1)?.at ?? '0') - Date.parse(a.history.at(-1)?.at ?? '0'))
    .slice(0, 50);
  const taskOf = (r: Robot) => active.find((x) => x.robotId === r.id);
  const robotName = (id: string | null | undefined) => (id ? (robots.find((r) => r.id === id)?.serialNumber ?? robotSerial(id)) : '');
  const place = (id: unknown) => (typeof id === 'string' ? placeName(map?.nodes.find((n) => n.id === id) ?? map?.zones.find((z) => z.id === id), locale, id) : '');

  return (
    <div class="dispatch">
      <h1>{t('dispatch.title')}</h1>
      {actionError && (
        <p class="error" role="alert">
          {t('dispatch.refused', { message: actionError })}
        </p>
      )}
      <div class="dispatch-top">
        <section aria-label={t('dispatch.map')}>{map && <MapView map={map} robots={robots} tasks={active} />}</section>
        <section aria-labelledby="robots-h">
          <h2 id="robots-h">{t('dispatch.robots')}</h2>
          {robots.length === 0 ? (
            <p>{t('dispatch.noRobots')}</p>
          ) : (
            <table>
              <thead>
                <tr>
                  <th scope="col">{t('dispatch.robot')}</th>
                  <th scope="col">{t('dispatch.connection')}</th>
                  <th scope="col">{t('dispatch.battery')}</th>
                  <th scope="col">{t('dispatch.state')}</th>
                  <th scope="col">{t('dispatch.at')}</th>
                </tr>
              </thead>
              <tbody>
                {robots.map((r) => {
                  const task = taskOf(r);
                  const st = robotState(r, task);
                  return (
                    <tr key={r.id} data-robot={r.id} data-state={st}>
                      <th scope="row">
                        <span class={`robot-dot robot-${st}`} aria-hidden="true" /> {r.serialNumber}
                        {r.connection === 'ONLINE' && <PauseButton robot={r} onToggle={(paused) => actOnRobot(fleet.setPaused(r, paused))} />}
                      </th>
                      <td>{t(`connection.${r.connection}`)}</td>
                      <td>
                        {r.battery === null ? '—' : `${Math.round(r.battery)} %`}
                        {r.charging ? ` · ${t('dispatch.charging')}` : ''}
                      </td>
                      <td class={`robot-state-${st}`}>
                        {st === 'error' ? (
                          <>
                            {t('robotState.error')}: <RobotErrors errors={r.errors} />
                          </>
                        ) : st === 'waiting' && task?.waitingFor ? (
                          t(`robotState.waiting_${task.waitingFor}`)
                        ) : (
                          t(`robotState.${st}`)
                        )}
                      </td>
                      <td>{r.lastNodeId ? place(r.lastNodeId) : '—'}</td>
                    </tr>
                  );
                })}
              </tbody>
            </table>
          )}
        </section>
      </div>
      <div class="dispatch-grid">
        <section aria-labelledby="queue-h">
          <h2 id="queue-h">{t('dispatch.queue')}</h2>
          <div class="reminder" data-reminder={reminderState(overdue.length, policy)} data-overdue={overdue.length}>
            <label>
              <span>{t('dispatch.remindAfter')}</span>
              <select
                value={String(remindAfterMin)}
                onChange={(e) => {
                  const n = parseRemindAfter(e.currentTarget.value);
                  remember(REMIND_KEY, String(n));
                  setRemindAfterMin(n);
                }}
              >
                {REMIND_AFTER_MIN.map((n) => (
                  <option key={n} value={String(n)}>
                    {t('dispatch.minutes', { n })}
                  </option>
                ))}
              </select>
            </label>
            <label>
              <span>{t('guard.sound')}</span>
              <select
                value={sound}
                onChange={(e) => {
                  const v = e.currentTarget.value as SoundSetting;
                  remember(SOUND_KEY, v);
                  chime.setMuted(v === 'off');
                  setSound(v);
                }}
              >
                {SOUND_SETTINGS.map((s) => (
                  <option key={s} value={s}>
                    {s === 'once' ? t('dispatch.soundOnce') : t(`sound.${s}`)}
                  </option>
                ))}
              </select>
            </label>
            {needsGesture && sound !== 'off' && (
              <button type="button" class="secondary" onClick={() => void chime.unlock().then(() => setNeedsGesture(chime.needsGesture))}>
                {t('guard.enableSound')}
              </button>
            )}
            {overdue.length > 0 && (
              <p class="reminder-note" role="status">
                {t('dispatch.overdue', { n: overdue.length, min: remindAfterMin })}
                {policy === 'off' && <> · {t('dispatch.reminderSilenced')}</>}
              </p>
            )}
          </div>
          {active.length === 0 ? <p>{t('dispatch.noTasks')}</p> : taskList(active)}
        </section>
        <section aria-labelledby="new-h">
          <h2 id="new-h">{t('dispatch.newTask')}</h2>
          {map && <NewTaskForm map={map} onCreate={(r) => act(fleet.create(r))} />}
        </section>
        <section aria-labelledby="history-h">
          <h2 id="history-h">{t('dispatch.history')}</h2>
          {done.length === 0 ? <p>{t('dispatch.noTasks')}</p> : taskList(done)}
        </section>
      </div>
    </div>
  );

  function describeRequest(task: Task): string {
    const r = task.request;
    switch (task.type) {
      case 'delivery':
        return `${place(r.from)} → ${place(r.to)}${typeof r.what === 'string' ? ` · ${r.what}` : ''}`;
      case 'disinfection':
        return place(r.zone ?? r.node);
      case 'patrol':
        return Array.isArray(r.nodes) ? r.nodes.map(place).join(' → ') : '';
      case 'charge':
        return typeof r.charger === 'string' ? place(r.charger) : t('dispatch.anyCharger');
    }
  }

  // A render helper, not a component: called inline so its buttons keep focus across updates.
  function taskList(list: Task[]) {
    const { time } = { time: (iso: string) => new Date(iso).toLocaleTimeString(locale, { hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false }) };
    return (
      <ul class="tasks">
        {list.map((task) => {
          const isActive = ACTIVE_STATUSES.includes(task.status);
          const started = Date.parse(task.createdAt ?? task.history[0]?.at ?? new Date(now).toISOString());
          const waitedMs = task.waitingFor ? now - waitingSince(task) : 0;
          const long = waitedMs >= LONG_WAIT_MS;
          const last = task.history.at(-1);
          const robot = task.robotId ? robots.find((r) => r.id === task.robotId) : undefined;
          const eta = isActive && map && graph ? taskEta(map, robot, task, graph) : null;
          const events = taskHistory(task);
          return (
            <li
              key={task.id}
              data-task={task.id}
              data-overdue={overdue.includes(task.id) ? 'yes' : undefined}
              data-status={task.status}
              class={task.waitingFor ? `task-waiting${long ? ' task-waiting-long' : ''}` : undefined}
              role={long ? 'alert' : undefined}
            >
              <strong>{t(`task.${task.type}`)}</strong> · {t(`status.${task.status}`)}
              {task.robotId && <> · {robotName(task.robotId)}</>}
              <div class="task-detail">{describeRequest(task)}</div>
              {task.alertId && <div class="task-alert">{t('dispatch.fromRule')}</div>}
              {task.waitingFor && (
                <div class="task-wait">
                  {t(`dispatch.waiting_${task.waitingFor}`)} · <strong>{t('guard.waitingFor', { time: formatElapsed(t, waitedMs) })}</strong>
                </div>
              )}
              <div class="task-times">
                {isActive ? (
                  <>
                    {t('dispatch.since', { time: time(new Date(started).toISOString()), elapsed: formatElapsed(t, now - started) })}
                    {task.progress && task.progress.nodesTotal > 0 && <> · {t('dispatch.progress', { done: task.progress.nodesDone, total: task.progress.nodesTotal })}</>}
                  </>
                ) : (
                  last && (
                    <>
                      {t(`status.${last.status}`)} {time(last.at)} · {t('dispatch.took', { elapsed: formatElapsed(t, Date.parse(last.at) - started) })}
                    </>
                  )
                )}
              </div>
              {eta && (
                <div
                  class="task-eta"
                  data-eta-s={Math.round(eta.remainingS)}
                  data-eta-m={Math.round(eta.remainingM)}
                  title={eta.speedFrom === 'default' ? t('dispatch.etaDefaultSpeed') : undefined}
                >
                  {t('dispatch.eta', {
                    place: place(eta.lastStop),
                    time: time(new Date(now + eta.remainingS * 1000).toISOString()),
                    left: formatElapsed(t, eta.remainingS * 1000),
                    metres: number(eta.remainingM),
                    speed: number(eta.speed, 1),
                  })}
                  {eta.speedFrom === 'default' && ` · ${t('dispatch.etaDefaultSpeed')}`}
                </div>
              )}
              {events.length > 0 && (
                <details class="task-history">
                  <summary>{t('dispatch.timeline', { n: events.length })}</summary>
                  <ol>
                    {events.map((e, i) => (
                      <li key={i} data-history={e.kind}>
                        <time dateTime={e.at}>{time(e.at)}</time> {t(`history.${e.kind}`, e.params)}
                        {e.original && (
                          <span class="original">
                            {' '}
                            {t('history.original')} <q lang="en">{e.original}</q>
                          </span>
                        )}
                      </li>
                    ))}
                  </ol>
                </details>
              )}
              <div class="task-actions">
                {task.waitingFor === 'area_clear' && (
                  <button type="button" onClick={() => void act(fleet.confirm(task.id, 'area_clear'))}>
                    {t('dispatch.confirmAreaClear')}
                  </button>
                )}
                {task.waitingFor === 'received' && (
                  <button type="button" onClick={() => void act(fleet.confirm(task.id, 'received'))}>
                    {t('dispatch.confirmReceived')}
                  </button>
                )}
                {isActive &&
                  (confirmCancel === task.id ? (
                    <span class="confirm-cancel" role="group" aria-label={t('dispatch.cancelQuestion')}>
                      <span>{t('dispatch.cancelQuestion')}</span>
                      <button
                        type="button"
                        class="danger"
                        onClick={() => {
                          setConfirmCancel(null);
                          void act(fleet.cancel(task.id));
                        }}
                      >
                        {t('dispatch.cancelYes')}
                      </button>
                      <button type="button" class="secondary" onClick={() => setConfirmCancel(null)}>
                        {t('dispatch.cancelNo')}
                      </button>
                    </span>
                  ) : (
                    <button type="button" class="secondary" onClick={() => setConfirmCancel(task.id)}>
                      {t('dispatch.cancel')}
                    </button>
                  ))}
              </div>
            </li>
          );
        })}
      </ul>
    );
  }
}

/** Measures how many map units one CSS pixel is, so labels keep a readable size at any width. */
function useUnitsPerPixel(ref: { current: SVGSVGElement | null }, viewWidth: number): number | null {
  const [upp, setUpp] = useState<number | null>(null);
  useLayoutEffect(() => {
    const el = ref.current;
    if (!el) return;
    const update = () => {
      const w = el.getBoundingClientRect().width;
      if (w > 0) setUpp(viewWidth / w);
    };
    update();
    const ro = new ResizeObserver(update);
    ro.observe(el);
    return () => ro.disconnect();
  }, [viewWidth]);
  return upp;
}

const LABEL_PX = 13;
const ROBOT_LABEL_PX = 13;

function MapView({ map, robots, tasks }: { map: SiteMap; robots: Robot[]; tasks: Task[] }) {
  const { t, locale } = useI18n();
  const floors = [...new Set(map.nodes.map((n) => n.floor))].sort((a, b) => a - b);
  const [floor, setFloor] = useState(floors[0] ?? 0);
  const svgRef = useRef<SVGSVGElement>(null);
  const nodes = map.nodes.filter((n) => n.floor === floor);
  const byId = new Map(map.nodes.map((n) => [n.id, n]));
  const xs = nodes.map((n) => n.x);
  const ys = nodes.map((n) => n.y);
  const extent = nodes.length ? Math.max(Math.max(...xs) - Math.min(...xs), Math.max(...ys) - Math.min(...ys), 1) : 1;
  const pad = extent * 0.14;
  const minX = (nodes.length ? Math.min(...xs) : 0) - pad;
  const minY = (nodes.length ? Math.min(...ys) : 0) - pad * 0.6;
  const w = (nodes.length ? Math.max(...xs) : 0) - minX + pad;
  const h = (nodes.length ? Math.max(...ys) : 0) - minY + pad * 0.6;
  const upp = useUnitsPerPixel(svgRef, w) ?? w / 800;
  if (nodes.length === 0) return null;
  // Map y grows up (metres), SVG y grows down.
  const sy = (y: number) => minY + h - (y - minY);
  const r = 6 * upp;
  const size = 22 * upp;

  const robotsHere = robots
    .map((rb) => {
      const node = rb.lastNodeId ? byId.get(rb.lastNodeId) : undefined;
      const at = typeof rb.x === 'number' && typeof rb.y === 'number' ? { x: rb.x, y: rb.y, floor: rb.floor ?? node?.floor } : node;
      return at && at.floor === floor ? { robot: rb, x: at.x, y: sy(at.y), state: robotState(rb, tasks.find((x) => x.robotId === rb.id)) } : null;
    })
    .filter((x): x is NonNullable<typeof x> => x !== null);

  // Markers are obstacles; robot labels first (they matter most), then node names.
  const obstacles: Box[] = [
    ...nodes.map((n) => ({ x: n.x - r, y: sy(n.y) - r, w: 2 * r, h: 2 * r })),
    ...robotsHere.map((p) => ({ x: p.x - size / 2, y: p.y - size / 2, w: size, h: size })),
  ];
  const requests: LabelRequest[] = [
    ...robotsHere.map((p) => ({
      id: `robot:${p.robot.id}`,
      x: p.x,
      y: p.y,
      text: `${p.robot.serialNumber}${p.robot.battery === null ? '' : ` ${Math.round(p.robot.battery)}%`}`,
      fontSize: ROBOT_LABEL_PX * upp,
      gap: size / 2 + 2 * upp,
      bold: true,
    })),
    ...nodes.map((n) => ({ id: `node:${n.id}`, x: n.x, y: sy(n.y), text: placeName(n, locale), fontSize: LABEL_PX * upp, gap: r + 3 * upp })),
  ];
  const placed = new Map(placeLabels(requests, obstacles).map((p) => [p.id, p]));
  const label = (id: string, text: string, fontSize: number, cls: string) => {
    const p = placed.get(id)!;
    return (
      <text class={cls} x={p.textX} y={p.textY} font-size={fontSize} text-anchor={p.anchor} data-label={id}>
        {text}
      </text>
    );
  };

  return (
    <figure class="map">
      {floors.length > 1 && (
        <label>
          {t('dispatch.floor')}{' '}
          <select value={floor} onChange={(e) => setFloor(Number(e.currentTarget.value))}>
            {floors.map((f) => (
              <option key={f} value={f}>
                {f}
              </option>
            ))}
          </select>
        </label>
      )}
      <svg ref={svgRef} viewBox={`${minX} ${minY} ${w} ${h}`} role="img" aria-label={t('dispatch.map')}>
        {map.edges.map((e) => {
          const a = byId.get(e.from);
          const b = byId.get(e.to);
          if (!a || !b || a.floor !== floor || b.floor !== floor) return null;
          return <line key={`${e.from}-${e.to}`} x1={a.x} y1={sy(a.y)} x2={b.x} y2={sy(b.y)} class="edge" stroke-width={3 * upp} />;
        })}
        {nodes.map((n: MapNode) => (
          <g key={n.id} class={`node node-${n.kind}`} data-node={n.id}>
            <circle cx={n.x} cy={sy(n.y)} r={r} />
            {label(`node:${n.id}`, placeName(n, locale), LABEL_PX * upp, 'node-label')}
          </g>
        ))}
        {robotsHere.map((p) => (
          <g key={p.robot.id} class={`robot robot-${p.state}`} data-robot-on-map={p.robot.id} data-state={p.state}>
            <rect x={p.x - size / 2} y={p.y - size / 2} width={size} height={size} rx={size / 5} />
            {label(`robot:${p.robot.id}`, `${p.robot.serialNumber}${p.robot.battery === null ? '' : ` ${Math.round(p.robot.battery)}%`}`, ROBOT_LABEL_PX * upp, 'robot-label')}
          </g>
        ))}
      </svg>
      <figcaption>
        <ul class="legend robot-legend">
          {(['idle', 'driving', 'waiting', 'charging', 'paused', 'error', 'offline'] as const).map((st) => (
            <li key={st}>
              <span class={`robot-dot robot-${st}`} aria-hidden="true" /> {t(`robotState.${st}`)}
            </li>
          ))}
        </ul>
      </figcaption>
    </figure>
  );
}

/** Pause (startPause) or resume (stopPause) a robot; the label follows the robot's reported `paused`. */
function PauseButton({ robot, onToggle }: { robot: Robot; onToggle: (paused: boolean) => Promise<void> }) {
  const { t } = useI18n();
  const [busy, setBusy] = useState(false);
  const paused = robot.paused === true;
  return (
    <button
      type="button"
      class="robot-pause"
      data-robot-pause={robot.id}
      disabled={busy}
      aria-label={t(paused ? 'dispatch.resumeRobot' : 'dispatch.pauseRobot', { robot: robot.serialNumber })}
      onClick={async () => {
        setBusy(true);
        await onToggle(!paused);
        setBusy(false);
      }}
    >
      {t(paused ? 'dispatch.resume' : 'dispatch.pause')}
    </button>
  );
}

function NewTaskForm({ map, onCreate }: { map: SiteMap; onCreate: (r: TaskRequest) => Promise<boolean> }) {
  const { t, locale } = useI18n();
  const [type, setType] = useState<TaskType>('delivery');
  const [from, setFrom] = useState('');
  const [to, setTo] = useState('');
  const [what, setWhat] = useState('');
  const [target, setTarget] = useState('');
  const [patrol, setPatrol] = useState<string[]>([]);
  const [priority, setPriority] = useState(50);
  const [busy, setBusy] = useState(false);
  const [created, setCreated] = useState(false);
  const name = (n: MapNode) => placeName(n, locale);
  const nodes = [...map.nodes].sort((a, b) => name(a).localeCompare(name(b), locale));
  const chargers = nodes.filter((n) => n.kind === 'charger');

  // A render helper (not a component), so a select keeps focus while the form re-renders.
  const nodePicker = (label: string, value: string, onChange: (v: string) => void, options: MapNode[] = nodes, optional = false) => (
    <label>
      <span>{label}</span>
      <select value={value} required={!optional} onChange={(e) => onChange(e.currentTarget.value)}>
        <option value="">{optional ? t('dispatch.any') : t('dispatch.choose')}</option>
        {options.map((n) => (
          <option key={n.id} value={n.id}>
            {name(n)}
          </option>
        ))}
      </select>
    </label>
  );

  const reset = () => {
    setFrom('');
    setTo('');
    setWhat('');
    setTarget('');
    setPatrol([]);
    setPriority(50);
  };

  const submit = async (e: Event) => {
    e.preventDefault();
    const request: TaskRequest =
      type === 'delivery'
        ? { type, from, to, what, priority }
        : type === 'disinfection'
          ? map.zones.some((z) => z.id === target)
            ? { type, zone: target, priority }
            : { type, node: target, priority }
          : type === 'patrol'
            ? { type, nodes: patrol, priority }
            : { type, ...(target ? { charger: target } : {}), priority };
    setBusy(true);
    setCreated(false);
    // Cleared once the gateway took it, so pressing again does not make a duplicate.
    if (await onCreate(request)) {
      reset();
      setCreated(true);
    }
    setBusy(false);
  };

  return (
    <form class="new-task" onSubmit={(e) => void submit(e)}>
      <label>
        <span>{t('dispatch.type')}</span>
        <select value={type} onChange={(e) => setType(e.currentTarget.value as TaskType)}>
          {TASK_TYPES.map((x) => (
            <option key={x} value={x}>
              {t(`task.${x}`)}
            </option>
          ))}
        </select>
      </label>
      {type === 'delivery' && (
        <>
          {nodePicker(t('dispatch.from'), from, setFrom)}
          {nodePicker(t('dispatch.to'), to, setTo)}
          <label>
            <span>{t('dispatch.what')}</span>
            <input required maxLength={200} value={what} onInput={(e) => setWhat(e.currentTarget.value)} />
          </label>
        </>
      )}
      {type === 'disinfection' && (
        <label>
          <span>{t('dispatch.zoneOrNode')}</span>
          <select value={target} required onChange={(e) => setTarget(e.currentTarget.value)}>
            <option value="">{t('dispatch.choose')}</option>
            {map.zones.map((z) => (
              <option key={z.id} value={z.id}>
                {t('dispatch.zone')}: {placeName(z, locale)}
              </option>
            ))}
            {nodes.map((n) => (
              <option key={n.id} value={n.id}>
                {name(n)}
              </option>
            ))}
          </select>
        </label>
      )}
      {type === 'patrol' && (
        <fieldset>
          <legend>{t('dispatch.patrolNodes')}</legend>
          {nodes.map((n) => (
            <label key={n.id} class="check">
              <input
                type="checkbox"
                checked={patrol.includes(n.id)}
                onChange={(e) => setPatrol(e.currentTarget.checked ? [...patrol, n.id] : patrol.filter((x) => x !== n.id))}
              />
              {name(n)}
            </label>
          ))}
        </fieldset>
      )}
      {type === 'charge' && nodePicker(t('dispatch.charger'), target, setTarget, chargers, true)}
      <label>
        <span>{t('dispatch.priority')}</span>
        <input type="number" min={0} max={100} value={priority} onInput={(e) => setPriority(Number(e.currentTarget.value))} />
      </label>
      <button type="submit" disabled={busy || (type === 'patrol' && patrol.length === 0)}>
        {t('dispatch.create')}
      </button>
      <span role="status" class="form-status">
        {created ? t('dispatch.created') : ''}
      </span>
    </form>
  );
}
