/**
 * The dispatch board (hospital logistics): the site map with robots on it, the task queue and
 * history, and a form to create tasks with pickers for map nodes. Tasks a rule created show
 * their alert. Without a fleet on the gateway (404) it says so plainly.
 */
import { useEffect, useMemo, useState } from 'preact/hooks';
import { useApp } from '../app.js';
import { useI18n } from '../i18n/index.js';
import {
  ACTIVE_STATUSES,
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

export function DispatchPage() {
  const { api, live } = useApp();
  const { t } = useI18n();
  const fleet = useMemo(() => fleetApi(api), [api]);
  const [load, setLoad] = useState<Load>({ state: 'loading' });
  const [map, setMap] = useState<SiteMap | null>(null);
  const [robots, setRobots] = useState<Robot[]>([]);
  const [tasks, setTasks] = useState<Task[]>([]);
  const [actionError, setActionError] = useState<string | null>(null);

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
    return () => offs.forEach((off) => off());
  }, [fleet]);

  const act = async (p: Promise<Task>) => {
    setActionError(null);
    try {
      const task = await p;
      setTasks((ts) => upsertById(ts, task));
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

  const active = tasks.filter((x) => ACTIVE_STATUSES.includes(x.status)).sort((a, b) => b.priority - a.priority);
  const done = tasks
    .filter((x) => !ACTIVE_STATUSES.includes(x.status))
    .sort((a, b) => Date.parse(b.history.at(-1)?.at ?? '0') - Date.parse(a.history.at(-1)?.at ?? '0'))
    .slice(0, 50);

  return (
    <div class="dispatch">
      <h1>{t('dispatch.title')}</h1>
      {actionError && (
        <p class="error" role="alert">
          {actionError}
        </p>
      )}
      <div class="dispatch-grid">
        <section aria-label={t('dispatch.map')}>{map && <MapView map={map} robots={robots} />}</section>
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
                {robots.map((r) => (
                  <tr key={r.id} data-robot={r.id}>
                    <th scope="row">{r.serialNumber}</th>
                    <td>{t(`connection.${r.connection}`)}</td>
                    <td>
                      {r.battery === null ? '—' : `${Math.round(r.battery)} %`}
                      {r.charging ? ` · ${t('dispatch.charging')}` : ''}
                    </td>
                    <td>
                      {r.errors.length > 0 ? t('dispatch.errors', { n: r.errors.length }) : r.driving ? t('dispatch.driving') : t('dispatch.idle')}
                    </td>
                    <td>{r.lastNodeId ? nodeLabel(map, r.lastNodeId) : '—'}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
        </section>
        <section aria-labelledby="queue-h">
          <h2 id="queue-h">{t('dispatch.queue')}</h2>
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

  // A render helper, not a component: called inline so its buttons keep focus across updates.
  function taskList(list: Task[]) {
    const m = map;
    const onAct = act;
    return (
      <ul class="tasks">
        {list.map((task) => (
          <li key={task.id} data-task={task.id} data-status={task.status}>
            <strong>{t(`task.${task.type}`)}</strong> · {t(`status.${task.status}`)} · {t('dispatch.priority')} {task.priority}
            {task.robotId && <> · {robots.find((r) => r.id === task.robotId)?.serialNumber ?? task.robotId}</>}
            <div class="task-detail">{describeRequest(task, m)}</div>
            {task.alertId && <div class="task-alert">{t('dispatch.fromAlert', { id: task.alertId })}</div>}
            {task.history.length > 0 && (
              <div class="task-history">
                {task.history.slice(-3).map((h, i) => (
                  <span key={i}>
                    {t(`status.${h.status}`)}
                    {h.reason ? ` (${h.reason})` : ''}{' '}
                  </span>
                ))}
              </div>
            )}
            <div class="task-actions">
              {task.waitingFor === 'area_clear' && (
                <button type="button" onClick={() => void onAct(fleet.confirm(task.id, 'area_clear'))}>
                  {t('dispatch.confirmAreaClear')}
                </button>
              )}
              {task.waitingFor === 'received' && (
                <button type="button" onClick={() => void onAct(fleet.confirm(task.id, 'received'))}>
                  {t('dispatch.confirmReceived')}
                </button>
              )}
              {ACTIVE_STATUSES.includes(task.status) && (
                <button type="button" class="secondary" onClick={() => void onAct(fleet.cancel(task.id))}>
                  {t('dispatch.cancel')}
                </button>
              )}
            </div>
          </li>
        ))}
      </ul>
    );
  }
}

function nodeLabel(map: SiteMap | null, id: string): string {
  return map?.nodes.find((n) => n.id === id)?.name ?? id;
}

function describeRequest(task: Task, map: SiteMap | null): string {
  const r = task.request;
  const n = (v: unknown) => (typeof v === 'string' ? nodeLabel(map, v) : '');
  switch (task.type) {
    case 'delivery':
      return `${n(r.from)} → ${n(r.to)}${typeof r.what === 'string' ? ` · ${r.what}` : ''}`;
    case 'disinfection':
      return n(r.zone ?? r.node);
    case 'patrol':
      return Array.isArray(r.nodes) ? r.nodes.map(n).join(' → ') : '';
    case 'charge':
      return n(r.charger);
  }
}

function MapView({ map, robots }: { map: SiteMap; robots: Robot[] }) {
  const { t } = useI18n();
  const floors = [...new Set(map.nodes.map((n) => n.floor))].sort((a, b) => a - b);
  const [floor, setFloor] = useState(floors[0] ?? 0);
  const nodes = map.nodes.filter((n) => n.floor === floor);
  const byId = new Map(map.nodes.map((n) => [n.id, n]));
  if (nodes.length === 0) return null;
  const xs = nodes.map((n) => n.x);
  const ys = nodes.map((n) => n.y);
  const unit = Math.max(Math.max(...xs) - Math.min(...xs), Math.max(...ys) - Math.min(...ys), 1) / 60;
  // Room around the nodes for the labels above them and the robot markers (with their labels) below.
  const pad = unit * 7;
  const minX = Math.min(...xs) - pad;
  const minY = Math.min(...ys) - pad;
  const w = Math.max(...xs) - minX + pad;
  const h = Math.max(...ys) - minY + pad;
  // Map y grows up (metres), SVG y grows down.
  const sy = (y: number) => minY + h - (y - minY);
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
      <svg viewBox={`${minX} ${minY} ${w} ${h}`} role="img" aria-label={t('dispatch.map')}>
        {map.edges.map((e) => {
          const a = byId.get(e.from);
          const b = byId.get(e.to);
          if (!a || !b || a.floor !== floor || b.floor !== floor) return null;
          return <line key={`${e.from}-${e.to}`} x1={a.x} y1={sy(a.y)} x2={b.x} y2={sy(b.y)} class="edge" stroke-width={unit * 0.4} />;
        })}
        {nodes.map((n: MapNode) => (
          <g key={n.id} class={`node node-${n.kind}`}>
            <circle cx={n.x} cy={sy(n.y)} r={unit * 1.2} />
            <text x={n.x} y={sy(n.y) - unit * 2} font-size={unit * 1.6} text-anchor="middle">
              {n.name ?? n.id}
            </text>
          </g>
        ))}
        {robots.map((r) => {
          const node = r.lastNodeId ? byId.get(r.lastNodeId) : undefined;
          const at = typeof r.x === 'number' && typeof r.y === 'number' ? { x: r.x, y: r.y, floor: r.floor ?? node?.floor } : node;
          if (!at || at.floor !== floor) return null;
          return (
            <g key={r.id} class={`robot robot-${r.connection.toLowerCase()}`} data-robot-on-map={r.id}>
              <rect x={at.x - unit * 1.8} y={sy(at.y) - unit * 1.8} width={unit * 3.6} height={unit * 3.6} rx={unit * 0.6} />
              <text x={at.x} y={sy(at.y) + unit * 4.2} font-size={unit * 1.8} text-anchor="middle">
                {r.serialNumber} {r.battery === null ? '' : `${Math.round(r.battery)}%`}
              </text>
            </g>
          );
        })}
      </svg>
    </figure>
  );
}

function NewTaskForm({ map, onCreate }: { map: SiteMap; onCreate: (r: TaskRequest) => Promise<void> }) {
  const { t } = useI18n();
  const [type, setType] = useState<TaskType>('delivery');
  const [from, setFrom] = useState('');
  const [to, setTo] = useState('');
  const [what, setWhat] = useState('');
  const [target, setTarget] = useState('');
  const [patrol, setPatrol] = useState<string[]>([]);
  const [priority, setPriority] = useState(50);
  const nodes = [...map.nodes].sort((a, b) => (a.name ?? a.id).localeCompare(b.name ?? b.id));
  const chargers = nodes.filter((n) => n.kind === 'charger');

  // A render helper (not a component), so a select keeps focus while the form re-renders.
  const nodePicker = (label: string, value: string, onChange: (v: string) => void, options: MapNode[] = nodes, optional = false) => (
    <label>
      <span>{label}</span>
      <select value={value} required={!optional} onChange={(e) => onChange(e.currentTarget.value)}>
        <option value="">{optional ? t('dispatch.any') : t('dispatch.choose')}</option>
        {options.map((n) => (
          <option key={n.id} value={n.id}>
            {n.name ?? n.id}
          </option>
        ))}
      </select>
    </label>
  );

  const submit = (e: Event) => {
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
    void onCreate(request);
  };

  return (
    <form class="new-task" onSubmit={submit}>
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
                {t('dispatch.zone')}: {z.name ?? z.id}
              </option>
            ))}
            {nodes.map((n) => (
              <option key={n.id} value={n.id}>
                {n.name ?? n.id}
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
              {n.name ?? n.id}
            </label>
          ))}
        </fieldset>
      )}
      {type === 'charge' && nodePicker(t('dispatch.charger'), target, setTarget, chargers, true)}
      <label>
        <span>{t('dispatch.priority')}</span>
        <input type="number" min={0} max={100} value={priority} onInput={(e) => setPriority(Number(e.currentTarget.value))} />
      </label>
      <button type="submit" disabled={type === 'patrol' && patrol.length === 0}>
        {t('dispatch.create')}
      </button>
    </form>
  );
}
