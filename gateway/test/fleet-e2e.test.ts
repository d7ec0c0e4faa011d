/* eslint-disable @typescript-eslint/no-explicit-any -- JSON bodies of API responses, checked by the tests that read them */
/**
 * The robot fleet end to end: our broker (auth + ACL), the gateway with a site map, two native
 * simulated robots on MQTT and one serial robot behind the firmware-bridge on a socat pty. Tasks
 * go in through the API and come out as robot movements, task histories, robot_state rows in the
 * SQLite series store and live-feed events. Robots run 5–10× faster than real time.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import mqtt, { type MqttClient } from 'mqtt';
import { checkpointTopics, vda5050Header, vda5050Topic } from '@checkpoint/protocol';
import { waitFor } from '@checkpoint/test-support';
import { ApiClient, BROKER_PASSWORD, makeScreening, openSse } from './helpers/world.js';
import { DELIVERY_ACTIONS, MANUFACTURER, metricValue, rawState, startFleetWorld, UV_ACTIONS, type FleetWorld } from './fleet-world.js';

const DEL_S = `${MANUFACTURER}/DEL-S`; // serial, through the bridge
const DEL_N = `${MANUFACTURER}/DEL-N`; // native MQTT
const UV_N = `${MANUFACTURER}/UV-N`; // native MQTT, disinfection

let world: FleetWorld;
let dispatcher: ApiClient;
let guard: ApiClient;
let admin: ApiClient;
let sse: ReturnType<typeof openSse>;

const task = async (id: string) => (await dispatcher.get(`/api/tasks/${id}`)).body.task;
const robot = async (id: string) => ((await dispatcher.get('/api/robots')).body.robots as any[]).find((r) => r.id === id);
const statuses = (t: any) => (t.history as any[]).map((h) => h.status).filter((s: string, i: number, a: string[]) => i === 0 || a[i - 1] !== s);
const robotStateRows = (robotSerial: string) =>
  world
    .sql<{ fields: string; ts_ms: number }>(`SELECT fields, ts_ms FROM series_points WHERE measurement = 'robot_state' AND json_extract(tags, '$.serialNumber') = ? ORDER BY ts_ms`, robotSerial)
    .map((r) => ({ ...(JSON.parse(r.fields) as Record<string, any>), ts: r.ts_ms }));

const FINISHED = new Set(['completed', 'failed', 'cancelled']);
const describeRobot = (r: any) =>
  r
    ? `${r.id}: ${r.connection}, at ${r.lastNodeId}${r.driving ? ', driving' : ''}${r.charging ? ', charging' : ''}${r.paused ? ', paused' : ''}, battery ${r.battery} %, ` +
      `${r.available ? 'available' : `unavailable (${r.unavailableReason})`}, task ${r.taskId ?? 'none'}, errors ${JSON.stringify(r.errors.map((e: any) => `${e.errorType}: ${e.errorDescription ?? ''}`))}`
    : 'unknown to the gateway';
const describeTask = (t: any) => `${t.id} ${t.type} on ${t.robotId ?? '-'}: ${t.status}${t.waitingFor ? ` waiting for ${t.waitingFor}` : ''}, history: ${JSON.stringify(t.history.map((h: any) => `${h.at.slice(11, 23)} ${h.status}: ${h.reason}`))}`;
/** Waits on a task; on a timeout the message carries its whole history and what its robot was doing. */
async function waitForTask(id: string, what: string, check: (t: any) => boolean, timeoutMs: number): Promise<void> {
  try {
    await waitFor(async () => check(await task(id)), { what, timeoutMs });
  } catch (err) {
    const t = await task(id);
    throw new Error(`${(err as Error).message}; task ${describeTask(t)}; robot ${describeRobot(t.robotId ? await robot(t.robotId) : null)}`);
  }
}

async function login(): Promise<void> {
  dispatcher = await ApiClient.login(world.gateway.url, 'dispatcher');
  guard = await ApiClient.login(world.gateway.url, 'guard');
  admin = await ApiClient.login(world.gateway.url, 'admin');
}

async function robotsReady(ids: string[]): Promise<void> {
  await waitFor(
    async () => {
      const robots = (await dispatcher.get('/api/robots')).body.robots as any[];
      return ids.every((id) => robots.some((r) => r.id === id && r.connection === 'ONLINE' && r.available && r.capabilities.length > 0 && !r.driving));
    },
    { what: `robots ${ids.join(', ')} online and idle`, timeoutMs: 20_000 },
  );
}

beforeAll(async () => {
  world = await startFleetWorld(
    [
      // As fast as DEL-N on paper (the dispatcher plans with factsheet speeds), but slower in real time, so it is still underway when unplugged.
      { serialNumber: 'DEL-S', transport: 'serial', startNode: 'P1', x: 0, y: 0, speed: 2, timeScale: 2.5, capabilities: DELIVERY_ACTIONS },
      { serialNumber: 'DEL-N', transport: 'mqtt', startNode: 'P2', x: 0, y: 10, speed: 2, timeScale: 10, capabilities: DELIVERY_ACTIONS },
      { serialNumber: 'UV-N', transport: 'mqtt', startNode: 'P3', x: 0, y: 20, speed: 2, timeScale: 10, capabilities: UV_ACTIONS },
    ],
    // A short grace for a broken link (default 30 s), so the unplugged robot's task moves on quickly.
    { extraRobotUsers: ['FAKE-1'], fleet: { linkLossGraceS: 2 } },
  );
  await login();
  sse = openSse(`${world.gateway.url}/api/live`, { authorization: `Bearer ${dispatcher.token}` });
  await robotsReady([DEL_S, DEL_N, UV_N]);
});

afterAll(async () => {
  sse?.close();
  await world?.close();
});

describe('the fleet through the API', () => {
  it('shows the map and the robots (dispatcher and above)', async () => {
    const map = await dispatcher.get('/api/map');
    expect(map.status).toBe(200);
    expect(map.body.nodes).toContainEqual({ id: 'PH', name: 'Pharmacy', x: 20, y: 0, floor: 0, kind: 'pharmacy' });
    expect(map.body.edges).toHaveLength(10); // undirected, once each
    expect(map.body.edges).toContainEqual({ from: 'P1', to: 'H', length: Math.hypot(10, 10) });
    expect(map.body.zones).toContainEqual({ id: 'gate-2-area', nodes: ['G2', 'G2b'], checkpoint: 'gate-2' });

    const robots = (await dispatcher.get('/api/robots')).body.robots as any[];
    expect(robots.map((r) => r.id)).toEqual([DEL_N, DEL_S, UV_N]);
    const uv = robots.find((r) => r.id === UV_N);
    expect(uv).toMatchObject({ manufacturer: MANUFACTURER, serialNumber: 'UV-N', connection: 'ONLINE', charging: false, lastNodeId: 'P3', driving: false, errors: [] });
    expect(uv.battery).toBeGreaterThan(80);
    expect(uv.capabilities).toEqual(expect.arrayContaining(['disinfect', 'waitForTrigger']));

    expect((await guard.get('/api/robots')).status).toBe(403);
    expect((await guard.post('/api/tasks', { type: 'charge' })).status).toBe(403);
    expect((await new ApiClient(world.gateway.url).get('/api/map')).status).toBe(401);
  });

  it('runs a delivery (with the recipient confirmation) and a disinfection (after the area-clear confirmation) to completion', async () => {
    const d = await dispatcher.post('/api/tasks', { type: 'delivery', from: 'PH', to: 'W2', what: 'insulin', recipient: 'ward 2 nurse' });
    expect(d.status).toBe(201);
    expect(d.body.task).toMatchObject({ type: 'delivery', request: { type: 'delivery', from: 'PH', to: 'W2', what: 'insulin' }, priority: 50 });
    const u = await dispatcher.post('/api/tasks', { type: 'disinfection', zone: 'gate-2-area', durationS: 10 });
    expect(u.status).toBe(201);
    const deliveryId = d.body.task.id as string;
    const uvId = u.body.task.id as string;

    // A confirmation before the robot waits for it is refused (409), and so is the wrong kind.
    expect((await dispatcher.post(`/api/tasks/${uvId}/confirm`, { kind: 'area_clear' })).status).toBe(409);
    expect((await dispatcher.post(`/api/tasks/${uvId}/confirm`, { kind: 'received' })).status).toBe(409);
    expect((await dispatcher.post(`/api/tasks/${uvId}/confirm`, { kind: 'bogus' })).status).toBe(400);

    await waitFor(async () => (await task(deliveryId)).waitingFor === 'received' && (await task(uvId)).waitingFor === 'area_clear', {
      what: 'delivery waiting for the recipient, disinfection for the area',
      timeoutMs: 30_000,
    });
    const waitingDelivery = await task(deliveryId);
    const deliveryRobot = waitingDelivery.robotId as string;
    expect([DEL_S, DEL_N]).toContain(deliveryRobot);
    expect((await robot(deliveryRobot)).lastNodeId).toBe('W2');
    expect((await robot(deliveryRobot)).taskId).toBe(deliveryId);
    const waitingUv = await task(uvId);
    expect(waitingUv.robotId).toBe(UV_N);
    expect(waitingUv.status).toBe('underway');
    // UV lamps stay off until the area is confirmed clear: only the wait (the first action) runs.
    expect(Object.values(waitingUv.progress.actions)).toEqual(['RUNNING', 'WAITING', 'WAITING']);

    const c1 = await dispatcher.post(`/api/tasks/${deliveryId}/confirm`, { kind: 'received' });
    expect(c1.status).toBe(200);
    expect(c1.body.task.waitingFor).toBeNull();
    expect((await dispatcher.post(`/api/tasks/${uvId}/confirm`, { kind: 'area_clear' })).status).toBe(200);
    await waitFor(async () => (await task(deliveryId)).status === 'completed' && (await task(uvId)).status === 'completed', { what: 'both completed', timeoutMs: 30_000 });

    const delivery = await task(deliveryId);
    expect(statuses(delivery)).toEqual(['queued', 'assigned', 'underway', 'completed']);
    expect(delivery.history.map((h: any) => h.reason)).toEqual(
      expect.arrayContaining([expect.stringMatching(/^requested by dispatcher/), expect.stringMatching(/waiting at W2 for recipient/), 'recipient confirmed by dispatcher']),
    );
    expect(delivery.confirmations).toEqual([expect.objectContaining({ kind: 'received', by: 'dispatcher' })]);
    const uv = await task(uvId);
    expect(statuses(uv)).toEqual(['queued', 'assigned', 'underway', 'completed']);
    expect(uv.request).toEqual({ type: 'disinfection', zone: 'gate-2-area', durationS: 10 });
    expect(uv.targetNodes).toEqual(['G2', 'G2b']);
    expect(Object.values(uv.progress.actions).every((s) => s === 'FINISHED')).toBe(true);

    // The list, filtered by status.
    const completed = (await dispatcher.get('/api/tasks?status=completed')).body.tasks as any[];
    expect(completed.map((t) => t.id)).toEqual(expect.arrayContaining([deliveryId, uvId]));
    expect(((await dispatcher.get('/api/tasks?status=queued')).body.tasks as any[]).map((t) => t.id)).not.toContain(deliveryId);

    // Time series: robot_state rows of the UV robot carry the task while it works, then none.
    await waitFor(() => world.gateway.spoolDepth() === 0, { what: 'spool drained' });
    const rows = robotStateRows('UV-N');
    const during = rows.filter((r) => r.taskId === uvId);
    expect(during.length).toBeGreaterThan(2);
    expect(new Set(during.map((r) => r.lastNodeId))).toEqual(new Set(['P3', 'H', 'PH', 'G2', 'G2b']));
    expect(during.some((r) => r.driving === 1)).toBe(true);
    expect(during.every((r) => typeof r.batteryPct === 'number' && r.batteryPct > 0 && r.batteryPct <= 100)).toBe(true);
    const last = rows.at(-1)!;
    expect(last.ts).toBeGreaterThanOrEqual(during.at(-1)!.ts);

    // Live feed: task and robot events.
    await sse.waitFor((events) => events.some((e) => e.event === 'task' && e.data.task.id === uvId && e.data.task.status === 'completed'), 'task completed on the live feed');
    expect(sse.events.some((e) => e.event === 'robot' && e.data.robot.id === UV_N && e.data.robot.taskId === uvId)).toBe(true);
    expect(sse.events.some((e) => e.event === 'task' && e.data.task.id === deliveryId && e.data.task.waitingFor === 'received')).toBe(true);

    // Audit: who created and confirmed.
    const audit = (await admin.get('/api/audit?limit=200')).body.entries as any[];
    expect(audit).toContainEqual(expect.objectContaining({ actor: 'dispatcher', action: 'task.create', target: deliveryId }));
    expect(audit).toContainEqual(expect.objectContaining({ actor: 'dispatcher', action: 'task.confirm', target: uvId, detail: { kind: 'area_clear' } }));
  });

  it('re-queues the task of a serial robot unplugged mid-task (CONNECTIONBROKEN) once the grace period ends, and another robot finishes it', async () => {
    await robotsReady([DEL_S, DEL_N]);
    // Two deliveries for the two delivery robots; the serial one is unplugged once its task is underway.
    const a = (await dispatcher.post('/api/tasks', { type: 'delivery', from: 'PH', to: 'W1', what: 'blood samples', confirmRecipient: false })).body.task;
    const b = (await dispatcher.post('/api/tasks', { type: 'delivery', from: 'W2', to: 'PH', what: 'empty crates', confirmRecipient: false })).body.task;
    const onSerial = await waitFor(
      async () => {
        for (const id of [a.id, b.id]) {
          const t = await task(id);
          if (t.robotId === DEL_S && t.status === 'underway') return t;
        }
        return null;
      },
      { what: 'one task underway on the serial robot', timeoutMs: 20_000 },
    );
    await world.ptys.get('DEL-S')!.close(); // the cable is pulled

    await waitFor(async () => (await robot(DEL_S)).connection === 'CONNECTIONBROKEN', { what: 'serial robot CONNECTIONBROKEN', timeoutMs: 10_000 });
    const requeued = await waitFor(
      async () => {
        const t = await task(onSerial.id);
        return t.history.some((h: any) => h.status === 'queued' && h.reason.includes(`robot ${DEL_S} is CONNECTIONBROKEN (no link for 2 s) mid-task`)) ? t : null;
      },
      { what: 're-queued with the reason', timeoutMs: 10_000 },
    );
    expect(requeued.history.find((h: any) => h.status === 'queued' && h.reason.includes('CONNECTIONBROKEN')).reason).toMatch(/re-queued \(attempt 1 of 3 used\)/);
    // It kept the task for the grace period first, and the history says so.
    const graceNote = requeued.history.find((h: any) => h.reason === `robot ${DEL_S} lost its link (CONNECTIONBROKEN); it keeps the task up to 2 s`);
    expect(graceNote).toMatchObject({ status: 'underway' });
    const requeuedAt = requeued.history.find((h: any) => h.status === 'queued' && h.reason.includes('CONNECTIONBROKEN')).at;
    expect(Date.parse(requeuedAt) - Date.parse(graceNote.at)).toBeGreaterThanOrEqual(2000);
    await waitFor(async () => (await task(a.id)).status === 'completed' && (await task(b.id)).status === 'completed', { what: 'both deliveries completed', timeoutMs: 40_000 });
    const done = await task(onSerial.id);
    expect(done.robotId).toBe(DEL_N);
    expect(done.attempts).toBe(2);
    expect(statuses(done)).toEqual(['queued', 'assigned', 'underway', 'queued', 'assigned', 'underway', 'completed']);
    const robots = (await dispatcher.get('/api/robots')).body.robots as any[];
    expect(robots.find((r) => r.id === DEL_S)).toMatchObject({ connection: 'CONNECTIONBROKEN', available: false });
  });

  it('sends a robot whose battery runs low to charge', async () => {
    await robotsReady([DEL_N]);
    world.robots.get('DEL-N')!.inject({ kind: 'battery', pct: 12 });
    const charge = await waitFor(
      async () => ((await dispatcher.get('/api/tasks')).body.tasks as any[]).find((t) => t.type === 'charge' && t.robotId === DEL_N),
      { what: 'a charge task for the low robot', timeoutMs: 10_000 },
    );
    expect(charge.history[1].reason).toMatch(/battery 12 % below 20 %/);
    expect(charge.requestedBy).toBe('dispatcher');
    await waitFor(async () => (await task(charge.id)).status === 'completed', { what: 'charge task completed', timeoutMs: 20_000 });
    const r = await waitFor(async () => {
      const x = await robot(DEL_N);
      return x.charging ? x : null;
    }, { what: 'robot charging', timeoutMs: 10_000 });
    expect(['CH1', 'CH2']).toContain(r.lastNodeId);
    // Charging robots below the resume level get no work.
    const t = (await dispatcher.post('/api/tasks', { type: 'delivery', from: 'PH', to: 'W1', what: 'gauze', robot: DEL_N, confirmRecipient: false })).body.task;
    await waitFor(async () => (await task(t.id)).history.some((h: any) => h.reason.startsWith('not assigned')), { what: 'not assigned (why)', timeoutMs: 5000 });
    expect((await dispatcher.post(`/api/tasks/${t.id}/cancel`, { reason: 'test over' })).body.task.status).toBe('cancelled');
    await waitFor(() => world.gateway.spoolDepth() === 0, { what: 'spool drained' });
    expect(robotStateRows('DEL-N').some((row) => row.charging === 1 && row.batteryPct < 20)).toBe(true);
  });

  it('turns an alert acknowledged as referred into a disinfection task that waits for the area-clear confirmation', async () => {
    await robotsReady([UV_N]);
    const edge = await mqtt.connectAsync(world.url, { username: 'edge-gate-2', password: BROKER_PASSWORD, clientId: 'edge-gate-2-fleet' });
    const screening = makeScreening({ checkpoint: 'gate-2', decision: 'secondary_check' });
    await edge.publishAsync(checkpointTopics.screening(screening), JSON.stringify(screening), { qos: 1 });
    await edge.endAsync();
    const alert = await waitFor(async () => ((await guard.get('/api/alerts?checkpoint=gate-2&status=open')).body.alerts as any[])[0], { what: 'alert at gate-2' });
    const ack = await guard.post(`/api/alerts/${alert.id}/ack`, { outcome: 'referred' });
    expect(ack.status).toBe(200);

    // The task exists as soon as the acknowledgement returns (same transaction).
    const created = ((await dispatcher.get('/api/tasks')).body.tasks as any[]).find((t) => t.alertId === alert.id);
    expect(created).toMatchObject({ type: 'disinfection', priority: 90, request: { type: 'disinfection', zone: 'gate-2-area', durationS: 10 } });
    expect(created.history[0].reason).toBe(`created by rule disinfect-after-referral for alert ${alert.id}`);
    expect(created.requestedBy).toBe('guard');

    await waitFor(async () => (await task(created.id)).waitingFor === 'area_clear', { what: 'waiting for area clear', timeoutMs: 30_000 });
    expect((await task(created.id)).robotId).toBe(UV_N);
    // It keeps waiting: no confirmation, no UV. Not a fixed sleep: two state reports of the robot
    // after it started waiting (it reports at least every 2 s) show what it does meanwhile.
    const seenWaiting = (await robot(UV_N)).lastSeen;
    await waitFor(async () => (await robot(UV_N)).lastSeen !== seenWaiting, { what: 'a state report while waiting', timeoutMs: 10_000 });
    const seenAgain = (await robot(UV_N)).lastSeen;
    await waitFor(async () => (await robot(UV_N)).lastSeen !== seenAgain, { what: 'a second state report while waiting', timeoutMs: 10_000 });
    const waiting = await task(created.id);
    expect(waiting.status).toBe('underway');
    expect(Object.entries(waiting.progress.actions).filter(([, s]) => s === 'FINISHED')).toHaveLength(0);

    expect((await dispatcher.post(`/api/tasks/${created.id}/confirm`, { kind: 'area_clear' })).status).toBe(200);
    await waitFor(async () => (await task(created.id)).status === 'completed', { what: 'rule task completed', timeoutMs: 30_000 });
    const done = await task(created.id);
    expect(done.history.map((h: any) => h.reason)).toContain('area-clear confirmed by dispatcher');
    const audit = (await admin.get('/api/audit?limit=300')).body.entries as any[];
    expect(audit).toContainEqual(expect.objectContaining({ actor: 'system', action: 'task.create', target: created.id, detail: expect.objectContaining({ alert: alert.id }) }));
  });

  it('refuses bad task requests with the field named: unknown nodes and zones 400, unknown task 404, finished task 409', async () => {
    const unknownNode = await dispatcher.post('/api/tasks', { type: 'delivery', from: 'PH', to: 'W9', what: 'x' });
    expect(unknownNode.status).toBe(400);
    expect(unknownNode.body.message).toBe('body: /to: unknown node "W9"');
    const unknownZone = await dispatcher.post('/api/tasks', { type: 'disinfection', zone: 'gate-9-area' });
    expect(unknownZone.status).toBe(400);
    expect(unknownZone.body.message).toContain('/zone: unknown zone "gate-9-area"');
    const patrol = await dispatcher.post('/api/tasks', { type: 'patrol', nodes: ['P1', 'nowhere'] });
    expect(patrol.body.message).toContain('/nodes/1: unknown node "nowhere"');
    const missing = await dispatcher.post('/api/tasks', { type: 'delivery', from: 'PH' });
    expect(missing.status).toBe(400);
    expect(missing.body.message).toMatch(/^body: .*\/to/);
    const badType = await dispatcher.post('/api/tasks', { type: 'teleport' });
    expect(badType.status).toBe(400);
    expect(badType.body.message).toContain('/type');
    const notACharger = await dispatcher.post('/api/tasks', { type: 'charge', charger: 'PH' });
    expect(notACharger.body.message).toContain('/charger: node "PH" is a pharmacy, not a charger');
    expect((await dispatcher.post('/api/tasks/01JUNKJUNKJUNKJUNKJUNKJUNK/cancel')).status).toBe(404);
    const completed = ((await dispatcher.get('/api/tasks?status=completed')).body.tasks as any[])[0];
    const again = await dispatcher.post(`/api/tasks/${completed.id}/cancel`);
    expect(again.status).toBe(409);
    expect(again.body.message).toMatch(/cannot go from completed to cancelled/);
    expect((await dispatcher.get('/api/tasks?status=lost')).status).toBe(400);
  });

  it('counts invalid VDA 5050 payloads by topic and cause, and ignores duplicate and out-of-order state messages', async () => {
    const fake = { manufacturer: MANUFACTURER, serialNumber: 'FAKE-1' };
    const client: MqttClient = await mqtt.connectAsync(world.url, { username: 'robot-fake-1', password: BROKER_PASSWORD, clientId: 'fake-1' });
    const stateTopic = vda5050Topic(fake, 'state');
    const t0 = Date.now();
    await client.publishAsync(vda5050Topic(fake, 'connection'), JSON.stringify({ ...vda5050Header(fake, 0, new Date(t0)), connectionState: 'ONLINE' }), { qos: 1 });
    await client.publishAsync(stateTopic, '{"headerId": 1, "timest', { qos: 1 });
    await client.publishAsync(stateTopic, JSON.stringify({ ...rawState(fake, 2, new Date(t0)), batteryState: { batteryCharge: 'full' } }), { qos: 1 });
    await client.publishAsync(stateTopic, JSON.stringify(rawState({ manufacturer: MANUFACTURER, serialNumber: 'DEL-N' }, 3, new Date(t0))), { qos: 1 });
    // Valid, then the same again (QoS 1 redelivery), then an older one (out of order).
    const fresh = rawState(fake, 10, new Date(t0 + 1000), { lastNodeId: 'W2', batteryState: { batteryCharge: 77, charging: false } });
    await client.publishAsync(stateTopic, JSON.stringify(fresh), { qos: 1 });
    await client.publishAsync(stateTopic, JSON.stringify(fresh), { qos: 1 });
    await client.publishAsync(stateTopic, JSON.stringify(rawState(fake, 9, new Date(t0 + 500), { lastNodeId: 'P1', batteryState: { batteryCharge: 99, charging: false } })), { qos: 1 });
    await client.endAsync();

    const url = world.gateway.url;
    await waitFor(async () => (await metricValue(url, 'checkpoint_gateway_fleet_messages_total', 'result="stale"')) >= 1, { what: 'stale message counted' });
    expect(await metricValue(url, 'checkpoint_gateway_invalid_payloads_total', `topic="uagv/v2/+/+/state",cause="not_json"`)).toBe(1);
    expect(await metricValue(url, 'checkpoint_gateway_invalid_payloads_total', `topic="uagv/v2/+/+/state",cause="schema"`)).toBe(1);
    expect(await metricValue(url, 'checkpoint_gateway_invalid_payloads_total', `topic="uagv/v2/+/+/state",cause="topic_mismatch"`)).toBe(1);
    expect(await metricValue(url, 'checkpoint_gateway_fleet_messages_total', 'result="duplicate"')).toBeGreaterThanOrEqual(1);
    const r = await robot(`${MANUFACTURER}/FAKE-1`);
    expect(r).toMatchObject({ connection: 'ONLINE', lastNodeId: 'W2', battery: 77, available: false, unavailableReason: 'operating mode MANUAL' });
    // The impostor state named DEL-N: DEL-N is untouched.
    expect((await robot(DEL_N)).lastNodeId).not.toBe('W1');
    // Everything else still works.
    expect((await dispatcher.get('/api/robots')).status).toBe(200);
    expect(world.gateway.mqttConnected()).toBe(true);
  });

  it('keeps tasks across a gateway restart: finished ones stay, one in progress is re-queued (the operator sees why), its old order cancelled, and it completes', async () => {
    // The known start: UV-N (the only robot that disinfects) idle, and nothing left over from earlier scenarios.
    await robotsReady([UV_N]);
    const leftovers = ((await dispatcher.get('/api/tasks?limit=1000')).body.tasks as any[]).filter((x) => !FINISHED.has(x.status));
    expect(leftovers.map(describeTask), 'unfinished tasks left by earlier scenarios').toEqual([]);
    const uvAtStart = await robot(UV_N);
    expect(uvAtStart, describeRobot(uvAtStart)).toMatchObject({ connection: 'ONLINE', available: true, charging: false, paused: false });
    expect(uvAtStart.taskId, describeRobot(uvAtStart)).toBeUndefined();
    const t = (await dispatcher.post('/api/tasks', { type: 'disinfection', node: 'W1', durationS: 5 })).body.task;
    const ghost = (await dispatcher.post('/api/tasks', { type: 'charge', robot: `${MANUFACTURER}/GHOST-1` })).body.task;
    await waitForTask(t.id, 'waiting at W1 for area clear', (x) => x.waitingFor === 'area_clear', 60_000);
    const before = ((await dispatcher.get('/api/tasks?status=completed')).body.tasks as any[]).map((x) => x.id);

    sse.close();
    await world.gateway.close();
    await world.startGateway();
    await login();

    const after = await task(t.id);
    expect(after.history.map((h: any) => h.reason)).toContain('gateway restarted; re-queued');
    expect(((await dispatcher.get('/api/tasks?status=completed')).body.tasks as any[]).map((x) => x.id)).toEqual(before);
    expect((await task(ghost.id)).status).toBe('queued');
    // The robot still stood in its old order's waitForTrigger: that order is cancelled and the task sent again.
    await waitForTask(t.id, 'waiting again, second order', (x) => x.waitingFor === 'area_clear' && x.attempts === 2, 60_000);
    expect((await dispatcher.post(`/api/tasks/${t.id}/confirm`, { kind: 'area_clear' })).status).toBe(200);
    await waitForTask(t.id, 'completed after the restart', (x) => x.status === 'completed', 60_000);
    expect(statuses(await task(t.id))).toEqual(['queued', 'assigned', 'underway', 'queued', 'assigned', 'underway', 'completed']);
    expect((await dispatcher.post(`/api/tasks/${ghost.id}/cancel`)).status).toBe(200);
    // A gateway restart, three robot round trips and logins on a loaded 2-core box: more than the default 60 s in all.
  }, 240_000);
});
