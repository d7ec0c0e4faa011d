/**
 * Fleet latency: from a task request (POST /api/tasks) — and from an alert acknowledgement
 * (POST /api/alerts/:id/ack, turned into a disinfection task by a rule) — to the order reaching
 * the robots' side of the broker, with 20 simulated VDA 5050 robots on MQTT.
 *
 * Everything runs in this process on one machine: our broker (aedes, auth + ACL), the gateway
 * (SQLite), 20 simulated robots and the measuring clients. "Received" is when a second gateway-
 * role MQTT client subscribed to uagv/v2/+/+/order gets the order: the broker fans the same
 * PUBLISH out to the robot and to it. After each measurement the task is cancelled so that free
 * robots remain (a queued task's wait for a robot is not dispatch latency).
 *
 *   npm run bench:fleet-latency -w @checkpoint/gateway [-- tasks=200 acks=100]
 */
import mqtt from 'mqtt';
import { checkpointTopics } from '@checkpoint/protocol';
import { waitFor } from '@checkpoint/test-support';
import { ApiClient, BROKER_PASSWORD, makeScreening } from '../test/helpers/world.js';
import { startFleetWorld, type RobotSpec } from '../test/fleet-world.js';

const [TASKS = 200, ACKS = 100] = process.argv.slice(2).map((a) => Number(a.split('=').pop()));
const ROBOTS = 20;
const COLS = 8;
const ROWS = 6;
const SPACING = 8;

/** An 8 x 6 corridor grid (8 m), chargers on the bottom row, parking on the top row, gate 2 at the right. */
function gridMap() {
  const id = (x: number, y: number) => `n${x}-${y}`;
  const nodes: Array<Record<string, unknown>> = [];
  const edges: Array<Record<string, unknown>> = [];
  for (let x = 0; x < COLS; x++) {
    for (let y = 0; y < ROWS; y++) {
      const kind = y === 0 && x % 2 === 0 ? 'charger' : y === ROWS - 1 ? 'parking' : x === COLS - 1 && y === 2 ? 'gate' : 'corridor';
      nodes.push({ id: id(x, y), x: x * SPACING, y: y * SPACING, kind });
      if (x > 0) edges.push({ from: id(x - 1, y), to: id(x, y) });
      if (y > 0) edges.push({ from: id(x, y - 1), to: id(x, y) });
    }
  }
  return { id, map: { nodes, edges, zones: [{ id: 'gate-2-area', nodes: [id(COLS - 1, 2), id(COLS - 1, 3)], checkpoint: 'gate-2' }] } };
}

const percentile = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
const summary = (ms: number[]) => {
  const s = [...ms].sort((a, b) => a - b);
  return `n=${s.length}  p50 ${percentile(s, 50).toFixed(1)} ms  p99 ${percentile(s, 99).toFixed(1)} ms  max ${s.at(-1)!.toFixed(1)} ms`;
};

const { id, map } = gridMap();
let seed = 7;
const rand = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
const specs: RobotSpec[] = [...Array(ROBOTS).keys()].map((i) => {
  const x = i % COLS;
  const y = 1 + Math.floor(i / COLS);
  return { serialNumber: `R${i}`, transport: 'mqtt', startNode: id(x, y), x: x * SPACING, y: y * SPACING, speed: 1, timeScale: 20, capabilities: ['pick', 'drop', 'waitForTrigger', 'disinfect', 'startCharging', 'stopCharging'] };
});
process.stdout.write(`starting broker, gateway and ${ROBOTS} simulated robots...\n`);
const world = await startFleetWorld(specs, {
  fleet: {
    map,
    rules: [{ id: 'disinfect-after-referral', when: { alertAcknowledged: { outcome: 'referred' } }, then: { type: 'disinfection', target: 'checkpoint-zone', durationS: 30 } }],
    policy: { parkIdleRobots: false },
    tickMs: 1000,
  },
});
const url = world.gateway.url;
const dispatcher = await ApiClient.login(url, 'dispatcher');
const guard = await ApiClient.login(url, 'guard');
await waitFor(async () => ((await dispatcher.get('/api/robots')).body.robots as Array<{ available: boolean; capabilities: string[] }>).filter((r) => r.available && r.capabilities.length).length === ROBOTS, {
  what: `${ROBOTS} robots online`,
  timeoutMs: 30_000,
});

// Orders as the robots get them, by orderId (`<taskId>-<attempt>`).
const monitor = await mqtt.connectAsync(world.url, { username: 'gw', password: BROKER_PASSWORD, clientId: 'bench-order-monitor' });
await monitor.subscribeAsync('uagv/v2/+/+/order', { qos: 1 });
const orders = new Map<string, number>();
monitor.on('message', (_topic, payload) => {
  const at = performance.now();
  const orderId = (JSON.parse(payload.toString()) as { orderId: string }).orderId;
  if (!orders.has(orderId)) orders.set(orderId, at);
});
const orderOf = (taskId: string) =>
  waitFor(() => orders.get(`${taskId}-1`), { what: `order of task ${taskId}`, timeoutMs: 10_000, intervalMs: 1 }).catch(async (err: Error) => {
    const t = (await dispatcher.get(`/api/tasks/${taskId}`)).body.task;
    const r = world.gateway.fleet!.robotRecords().find((x) => x.record.key === t.robotId)?.record;
    process.stderr.write(`${JSON.stringify(t.history)}\n${JSON.stringify({ ...r, cursors: undefined })}\n`);
    throw err;
  });
const robotsFree = () =>
  waitFor(async () => ((await dispatcher.get('/api/robots')).body.robots as Array<{ available: boolean; driving: boolean; taskId?: string }>).filter((r) => r.available && !r.taskId).length >= ROBOTS / 2, {
    what: 'half the robots free',
    timeoutMs: 30_000,
  });
/** After a cancel: the robot stops at its next node; wait until it stands still, so the next measurement starts from free robots. */
const stopped = (taskId: string, robotId: string) =>
  waitFor(
    () => {
      const r = world.gateway.fleet!.robotRecords().find((x) => x.record.key === robotId)!.record;
      return r.nodeStates.length === 0 && r.actionStates.every((a) => a.actionStatus === 'FINISHED' || a.actionStatus === 'FAILED');
    },
    { what: `robot ${robotId} stopped after cancelling ${taskId}`, timeoutMs: 5_000, intervalMs: 2 },
  ).catch((err: Error) => process.stderr.write(`${err.message} (going on)\n`));
const nodeIds = (map.nodes as Array<{ id: string; kind: string }>).filter((n) => n.kind === 'corridor').map((n) => n.id);
const pick = () => nodeIds[Math.floor(rand() * nodeIds.length)]!;

// --- task requests ------------------------------------------------------------------------------
const requestMs: number[] = [];
for (let i = 0; i < TASKS; i++) {
  if (i % 10 === 0) await robotsFree();
  const t0 = performance.now();
  const res = await dispatcher.post('/api/tasks', { type: 'delivery', from: pick(), to: pick(), what: `sample ${i}`, confirmRecipient: false });
  if (res.status !== 201) throw new Error(`POST /api/tasks: ${res.status} ${JSON.stringify(res.body)}`);
  const received = await orderOf(res.body.task.id);
  requestMs.push(received - t0);
  const cancelled = (await dispatcher.post(`/api/tasks/${res.body.task.id}/cancel`)).body.task;
  await stopped(cancelled.id, cancelled.history.find((h: { robotId?: string }) => h.robotId).robotId);
}

// --- alert acknowledgements -> rule -> disinfection task ------------------------------------------
const edge = await mqtt.connectAsync(world.url, { username: 'edge-gate-2', password: BROKER_PASSWORD, clientId: 'bench-edge-gate-2' });
const ackMs: number[] = [];
for (let i = 0; i < ACKS; i++) {
  if (i % 10 === 0) await robotsFree();
  const screening = makeScreening({ checkpoint: 'gate-2', decision: 'secondary_check' });
  await edge.publishAsync(checkpointTopics.screening(screening), JSON.stringify(screening), { qos: 1 });
  const alert = await waitFor(async () => ((await guard.get('/api/alerts?checkpoint=gate-2&status=open&limit=1')).body.alerts as Array<{ id: string; screeningId: string }>).find((a) => a.screeningId === screening.id), {
    what: 'alert',
    intervalMs: 5,
  });
  const t0 = performance.now();
  const ack = await guard.post(`/api/alerts/${alert.id}/ack`, { outcome: 'referred' });
  if (ack.status !== 200) throw new Error(`ack: ${ack.status}`);
  const taskId = ((await dispatcher.get('/api/tasks?limit=5')).body.tasks as Array<{ id: string; alertId?: string }>).find((t) => t.alertId === alert.id)!.id;
  const received = await orderOf(taskId);
  ackMs.push(received - t0);
  const cancelled = (await dispatcher.post(`/api/tasks/${taskId}/cancel`)).body.task;
  await stopped(taskId, cancelled.history.find((h: { robotId?: string }) => h.robotId).robotId);
}

process.stdout.write(
  `\nfleet latency with ${ROBOTS} simulated robots (broker, gateway, robots in one process; ${process.platform}, ${(await import('node:os')).cpus().length} cores)\n` +
    `  task request -> order at the robot:          ${summary(requestMs)}\n` +
    `  alert acknowledgement -> order at the robot: ${summary(ackMs)}\n`,
);

await edge.endAsync();
await monitor.endAsync();
await world.close();
process.exit(0);
