/* eslint-disable @typescript-eslint/no-explicit-any -- JSON bodies of API responses and the library's untyped internals, checked by the tests that read them */
/**
 * VDA 5050 against an implementation we did not write (issue 19): two AGVs built on the
 * third-party `vda-5050-lib` (Siemens; its AgvController with its own VirtualAgvAdapter, on its
 * own MQTT 4 client) and one serial robot behind our firmware-bridge, on one map, against a real
 * gateway and our broker (auth + ACL, per-robot credentials). Scenarios: delivery with recipient
 * confirmation, disinfection with area-clear, cancel mid-edge and re-dispatch, pause and resume,
 * low battery → charge → back to work, a crash (last will), a network blip, a gateway restart.
 * A subscriber on `uagv/v2/#` records every message on the wire; the whole capture is validated
 * against the official VDA 5050 2.0.0 JSON schemas at the end.
 *
 * What an integrator configures on the library (not deviations): the broker, the topic prefix
 * (`uagv`), VDA 5050 2.0.0, the robots' start positions on our map (mapId floor-0), a state
 * every 2 s, and a vendor action `disinfect` for the UV robot.
 *
 * Shims for the library's own deviations from the specification, each applied in one place below:
 *   SHIM-FACTSHEET  VirtualAgvAdapter.attach() sets an empty factsheet ({}); on factsheetRequest
 *                   the library would publish it, which fails the official schema (and ours). A
 *                   real integrator must supply one, so the adapter subclass sets a complete one.
 *   SHIM-DEVIATION  The library reads nodePosition.allowedDeviationXy (lower-case y); the spec and
 *                   the official schema name it allowedDeviationXY. Without the shim the robot
 *                   ignores the deviation we send after a cancel mid-edge (§6.6.3.1) and refuses
 *                   the next order. The shim copies allowedDeviationXY to the library's spelling.
 *   SHIM-INSTANT-ACTIONS  The library reads an instantActions message's array from
 *                   `instantActions` (the 1.1 name) and rejects 2.0's `actions` as invalid; the
 *                   shim renames the field on the way in (the wire keeps the standard name).
 *   SHIM-RECONNECT  After an automatic reconnect (network blip) the library publishes its state
 *                   but not `connection: ONLINE` (only on start); the retained last will
 *                   (CONNECTIONBROKEN) stays the robot's connection state for good. The shim
 *                   publishes ONLINE (retained) when the library reports it is online again.
 *
 * Found by this suite and fixed in the master: pick/drop now carry a load type the robot
 * declares in its factsheet (loadSpecification.loadSets) — the library's AGV accepts only EPAL.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import mqtt, { type MqttClient } from 'mqtt';
import { AgvController, VirtualAgvAdapter, ActionStatus, Topic, ConnectionState, type AgvId, type VirtualActionDefinition, type VirtualAgvAdapterOptions } from 'vda-5050-lib';
import { waitFor } from '@checkpoint/test-support';
import { ApiClient, BROKER_PASSWORD } from './helpers/world.js';
import { DELIVERY_ACTIONS, FLEET_MAP, MANUFACTURER, metricValue, robotUserName, startFleetWorld, type FleetWorld } from './fleet-world.js';
import { checkOfficial } from './fleet-wire-schemas.js';

const MAKER = 'siemens-virtual';
const TP1: AgvId = { manufacturer: MAKER, serialNumber: 'TP-1' }; // delivery
const TP2: AgvId = { manufacturer: MAKER, serialNumber: 'TP-2' }; // UV disinfection
const TP1_ID = `${MAKER}/TP-1`;
const TP2_ID = `${MAKER}/TP-2`;
const SER_ID = `${MANUFACTURER}/SER-1`;
const TIME_LAPSE = 3;
const SPEED = 2;

const node = (id: string) => FLEET_MAP.nodes.find((n) => n.id === id)!;

// ---- the third-party AGV --------------------------------------------------------------------------

interface TestAdapterOptions extends VirtualAgvAdapterOptions {
  actionTypes: string[];
}

/** The library's VirtualAgvAdapter as an integrator would configure it, with the shims named above. */
class ThirdPartyAdapter extends VirtualAgvAdapter {
  attach(context: Parameters<VirtualAgvAdapter['attach']>[0]): void {
    super.attach(context);
    // SHIM-FACTSHEET: the library left an empty factsheet; set a complete one.
    this.controller.updateFactsheet(factsheetOf(this.controller.agvId, (this.options as unknown as TestAdapterOptions).actionTypes, this.actionDefinitions) as any);
  }

  isNodeWithinDeviationRange(n: Parameters<VirtualAgvAdapter['isNodeWithinDeviationRange']>[0]) {
    // SHIM-DEVIATION: the spec's allowedDeviationXY, in the library's spelling.
    const p = n.nodePosition as (typeof n.nodePosition & { allowedDeviationXY?: number }) | undefined;
    if (p?.allowedDeviationXY !== undefined && p.allowedDeviationXy === undefined) return super.isNodeWithinDeviationRange({ ...n, nodePosition: { ...p, allowedDeviationXy: p.allowedDeviationXY } });
    return super.isNodeWithinDeviationRange(n);
  }

  /** The library's actions, plus the UV robot's vendor action `disinfect` (node action, `durationS` seconds of UV). */
  protected get actionDefinitions(): VirtualActionDefinition[] {
    const disinfect: VirtualActionDefinition = {
      actionType: 'disinfect',
      actionScopes: 'node',
      actionParameterConstraints: { durationS: (v) => typeof v === 'number' && v > 0 },
      transitions: {
        ON_INIT: { next: ActionStatus.Running },
        ON_CANCEL: {},
        [ActionStatus.Running]: { durationTime: ['durationS', 10], next: ActionStatus.Finished },
        [ActionStatus.Finished]: { resultDescription: () => 'area disinfected' },
        [ActionStatus.Failed]: { errorDescription: () => 'UV lamps failed' },
      },
    };
    return [...super.actionDefinitions, disinfect];
  }

  /** Test hook standing in for a battery running down (the virtual battery drains by distance only). */
  drainBatteryTo(pct: number): void {
    const battery = (this as any)._vehicleState.batteryState;
    battery.batteryCharge = pct;
    battery.reach = this.getBatteryReach(pct);
    this.controller.updateBatteryState(battery, true);
  }

  get position(): { x: number; y: number; lastNodeId: string } {
    return { ...(this as any)._vehicleState.position };
  }
}

const SCOPES = { instant: 'INSTANT', node: 'NODE', edge: 'EDGE' } as const;

/** A factsheet with what the official 2.0.0 schema requires, the actions the adapter really has, and the load set it accepts (EPAL). */
function factsheetOf(agv: AgvId, actionTypes: string[], definitions: VirtualActionDefinition[]) {
  const scopesOf = (type: string) => {
    const def = definitions.find((d) => d.actionType === type);
    const scopes = def ? [def.actionScopes].flat() : ['instant'];
    return scopes.map((s) => SCOPES[s as keyof typeof SCOPES]);
  };
  return {
    typeSpecification: { seriesName: `virtual-${agv.serialNumber}`, agvKinematic: 'DIFF', agvClass: 'CARRIER', maxLoadMass: 50, localizationTypes: ['NATURAL'], navigationTypes: ['AUTONOMOUS'] },
    physicalParameters: { speedMin: 0, speedMax: SPEED, accelerationMax: 1, decelerationMax: 1, heightMin: 0.3, heightMax: 1.2, width: 0.6, length: 0.9 },
    protocolLimits: { maxStringLens: {}, maxArrayLens: {}, timing: { minOrderInterval: 0.1, minStateInterval: 0.1 } },
    protocolFeatures: {
      optionalParameters: [],
      agvActions: [...actionTypes, 'cancelOrder', 'stateRequest', 'factsheetRequest'].map((actionType) => ({ actionType, actionScopes: scopesOf(actionType) })),
    },
    agvGeometry: {},
    loadSpecification: { loadSets: [{ setName: 'EPAL', loadType: 'EPAL' }] },
  };
}

/** The library's AgvController with SHIM-INSTANT-ACTIONS and SHIM-RECONNECT. */
class ThirdPartyController extends AgvController {
  constructor(...args: ConstructorParameters<typeof AgvController>) {
    super(...args);
    // SHIM-INSTANT-ACTIONS: the library reads instant actions from `instantActions` (the 1.1 name); 2.0 calls the array `actions`.
    const dispatch = (this as any)._dispatchMessage.bind(this) as (topic: string, payload: Buffer) => void;
    (this as any)._dispatchMessage = (topic: string, payload: Buffer) => {
      if (!topic.endsWith('/instantActions')) return dispatch(topic, payload);
      const { actions, ...rest } = JSON.parse(payload.toString());
      dispatch(topic, Buffer.from(JSON.stringify({ ...rest, instantActions: actions })));
    };
  }

  registerConnectionStateChange(callback: Parameters<AgvController['registerConnectionStateChange']>[0]): void {
    super.registerConnectionStateChange((state, previous) => {
      if (state === 'online' && previous !== 'online' && this.isStarted) {
        // SHIM-RECONNECT: say ONLINE again (retained, replacing the last will) before the library's own state.
        this.publish(Topic.Connection, { connectionState: ConnectionState.Online }, { retainMessage: true }).then(
          () => callback(state, previous),
          () => callback(state, previous),
        );
        return;
      }
      callback(state, previous);
    });
  }
}

interface ThirdPartyAgv {
  controller: ThirdPartyController;
  adapter: ThirdPartyAdapter;
  /** Crash: the TCP connection drops without DISCONNECT and the robot's software stops (the broker sends the last will). */
  crash(): Promise<void>;
  /** Network blip: the connection drops; the library reconnects by itself a second later. */
  blip(): void;
  stop(): Promise<void>;
}

async function startThirdPartyAgv(
  world: FleetWorld,
  agv: AgvId,
  at: { x: number; y: number; lastNodeId: string },
  actionTypes: string[],
  extra: Partial<VirtualAgvAdapterOptions> = {},
): Promise<ThirdPartyAgv> {
  const controller = new ThirdPartyController(
    agv,
    // Per-robot credentials (the broker's ACL lets the user publish only as this robot).
    { interfaceName: 'uagv', vdaVersion: '2.0.0', transport: { brokerUrl: world.url, username: robotUserName(agv), password: BROKER_PASSWORD, reconnectPeriod: 1000 } },
    // A state every 2 s besides every change (the library's default is 30 s): a restarted gateway hears sooner.
    { agvAdapterType: ThirdPartyAdapter as any, publishStateInterval: 2000, publishVisualizationInterval: 250 },
    { initialPosition: { mapId: 'floor-0', theta: 0, ...at }, vehicleSpeed: SPEED, timeLapse: TIME_LAPSE, fullBatteryChargeTime: 0.02, actionTypes, ...extra } as TestAdapterOptions,
  );
  await controller.start();
  const adapter = (controller as any)._agvAdapter as ThirdPartyAdapter;
  const client = () => (controller as any)._mqtt as MqttClient;
  return {
    controller,
    adapter,
    async crash() {
      const c = client();
      c.options.reconnectPeriod = 0;
      await new Promise<void>((resolve) => c.end(true, {}, () => resolve()));
      // The robot's software is gone too: stop the adapter's and the controller's timers (stop() would say OFFLINE).
      await (controller as any)._detachAdapter();
    },
    blip() {
      client().stream.destroy();
    },
    async stop() {
      await controller.stop();
    },
  };
}

// ---- the world -------------------------------------------------------------------------------------

let world: FleetWorld;
let dispatcher: ApiClient;
let tp1: ThirdPartyAgv;
let tp2: ThirdPartyAgv;
let capture: MqttClient;
const wire: Array<{ topic: string; payload: string; at: number }> = [];

const task = async (id: string) => (await dispatcher.get(`/api/tasks/${id}`)).body.task;
const robot = async (id: string) => ((await dispatcher.get('/api/robots')).body.robots as any[]).find((r) => r.id === id);
const submit = async (body: Record<string, unknown>) => {
  const res = await dispatcher.post('/api/tasks', body);
  expect(res.status, JSON.stringify(res.body)).toBe(201);
  return res.body.task.id as string;
};
const until = (what: string, check: () => Promise<boolean>, timeoutMs = 60_000) => waitFor(check, { what, timeoutMs });
/** On a timeout, the task's history says what happened instead. */
const withHistory = (id: string, wait: Promise<void>) =>
  wait.catch(async (err: Error) => {
    const t = await task(id);
    const r = t.robotId ? await robot(t.robotId) : null;
    throw new Error(`${err.message}; task ${t.status}, history: ${JSON.stringify(t.history.map((h: any) => `${h.at.slice(11, 23)} ${h.status}: ${h.reason}`))}; robot ${describeRobot(r)}`);
  });
const status = (id: string, s: string, timeoutMs = 60_000) => withHistory(id, until(`task ${id} ${s}`, async () => (await task(id)).status === s, timeoutMs));
const waitingFor = (id: string, kind: string) => withHistory(id, until(`task ${id} waiting for ${kind}`, async () => (await task(id)).waitingFor === kind));
/** Wire messages on a robot's topic of one kind, parsed. */
const sent = (agv: AgvId | string, kind: string) => {
  const prefix = typeof agv === 'string' ? `uagv/v2/${agv}/` : `uagv/v2/${agv.manufacturer}/${agv.serialNumber}/`;
  return wire.filter((m) => m.topic === `${prefix}${kind}`).map((m) => JSON.parse(m.payload));
};
const ordersOf = (agv: AgvId | string, orderIdPrefix: string) => sent(agv, 'order').filter((o) => String(o.orderId).startsWith(orderIdPrefix));
const instantTypes = (agv: AgvId | string) => sent(agv, 'instantActions').flatMap((m) => m.actions.map((a: any) => a.actionType));
const FINISHED = new Set(['completed', 'failed', 'cancelled']);
const NODE_IDS = new Set(FLEET_MAP.nodes.map((n) => n.id));
/** What a robot is doing, for a failure message. */
const describeRobot = (r: any) =>
  r
    ? `${r.id}: ${r.connection}, at ${r.lastNodeId}${r.driving ? ', driving' : ''}${r.charging ? ', charging' : ''}${r.paused ? ', paused' : ''}, battery ${r.battery} %, ` +
      `${r.available ? 'available' : `unavailable (${r.unavailableReason})`}, task ${r.taskId ?? 'none'}, errors ${JSON.stringify(r.errors.map((e: any) => `${e.errorType}: ${e.errorDescription ?? ''}`))}`
    : 'unknown to the gateway';
/** Unfinished tasks, each with its last history entries. */
const openTasks = async () => ((await dispatcher.get('/api/tasks?limit=1000')).body.tasks as any[]).filter((t) => !FINISHED.has(t.status));
const describeTask = (t: any) => `${t.id} ${t.type} on ${t.robotId ?? '-'}: ${t.status}${t.waitingFor ? ` waiting for ${t.waitingFor}` : ''}, last: ${JSON.stringify(t.history.slice(-3).map((h: any) => `${h.at.slice(11, 23)} ${h.status}: ${h.reason}`))}`;
/**
 * The known state a scenario starts from: the robots online, available, standing still on a map
 * node, not charging, not paused, with no task, and no unfinished task left by an earlier scenario
 * (parking moves between scenarios are waited out). On a timeout the message says what each robot
 * and every unfinished task was doing.
 */
const settled = async (...ids: string[]) => {
  const ok = (r: any) => r?.connection === 'ONLINE' && r.available && !r.driving && !r.charging && !r.paused && !r.taskId && NODE_IDS.has(r.lastNodeId);
  try {
    await until(`${ids.join(', ')} idle (online, available, on a node, not charging or paused, no task) and no unfinished task`, async () => {
      const robots = (await dispatcher.get('/api/robots')).body.robots as any[];
      return ids.every((id) => ok(robots.find((r) => r.id === id))) && (await openTasks()).length === 0;
    });
  } catch (err) {
    const robots = (await dispatcher.get('/api/robots')).body.robots as any[];
    const tasks = await openTasks();
    throw new Error(`${(err as Error).message}\nrobots:\n  ${robots.map(describeRobot).join('\n  ')}\nunfinished tasks:\n  ${tasks.map(describeTask).join('\n  ') || 'none'}`);
  }
};

beforeAll(async () => {
  world = await startFleetWorld(
    [{ serialNumber: 'SER-1', transport: 'serial', startNode: 'P2', x: 0, y: 10, speed: 2, timeScale: 4, capabilities: DELIVERY_ACTIONS }],
    // A broken link keeps the task 10 s (default 30): the blip below stays inside it, the crash does not.
    { otherMakersRobots: [TP1, TP2], fleet: { linkLossGraceS: 10 } },
  );
  // The wire capture: the gateway's broker identity may read every VDA 5050 topic.
  capture = mqtt.connect(world.url, { username: 'gw', password: BROKER_PASSWORD, clientId: `wire-capture-${process.pid}`, reconnectPeriod: 200 });
  capture.on('message', (topic, payload) => wire.push({ topic, payload: payload.toString(), at: Date.now() }));
  await new Promise<void>((resolve, reject) => {
    capture.once('connect', () => capture.subscribe('uagv/v2/#', { qos: 1 }, (err) => (err ? reject(err) : resolve())));
    capture.once('error', reject);
  });
  dispatcher = await ApiClient.login(world.gateway.url, 'dispatcher');
  tp1 = await startThirdPartyAgv(world, TP1, { x: 0, y: 0, lastNodeId: 'P1' }, ['pick', 'drop', 'startPause', 'stopPause', 'startCharging', 'stopCharging']);
  // TP-2 charges slower (full in ~48 s at this time lapse), so that it is still charging when it has enough to go back to work.
  tp2 = await startThirdPartyAgv(world, TP2, { x: 0, y: 20, lastNodeId: 'P3' }, ['disinfect', 'startPause', 'stopPause', 'startCharging', 'stopCharging'], { fullBatteryChargeTime: 0.04 });
  await until('TP-1, TP-2 and SER-1 online with factsheets', async () => {
    const robots = (await dispatcher.get('/api/robots')).body.robots as any[];
    return [TP1_ID, TP2_ID, SER_ID].every((id) => robots.some((r) => r.id === id && r.connection === 'ONLINE' && r.available && r.capabilities.length > 0));
  });
}, 120_000);

afterAll(async () => {
  capture?.end(true);
  await tp1?.stop().catch(() => undefined);
  await tp2?.stop().catch(() => undefined);
  await world?.close();
});

// Each scenario drives robots across the map (a few real seconds per edge at a 3× time lapse) on a loaded 2-core box.
describe('third-party AGVs (vda-5050-lib) and a serial robot on one map', { timeout: 240_000 }, () => {
  it('asked the library AGVs for their factsheets (they publish one only on request) and speaks their version, 2.0.0', async () => {
    // The capture is a subscriber of its own: it may hear the factsheets a little after the gateway did.
    await until('both factsheets in the capture', async () => sent(TP1, 'factsheet').length > 0 && sent(TP2, 'factsheet').length > 0);
    for (const agv of [TP1, TP2]) {
      expect(instantTypes(agv)).toContain('factsheetRequest');
      for (const m of [...sent(agv, 'instantActions'), ...sent(agv, 'order')]) expect(m.version).toBe('2.0.0');
    }
    const tp1View = await robot(TP1_ID);
    expect(tp1View.capabilities).toEqual(expect.arrayContaining(['pick', 'drop', 'startPause', 'stopPause']));
    expect(tp1View.capabilities).not.toContain('waitForTrigger');
  });

  it('delivers with the recipient confirmation held in the master (TP-1) and on the robot (SER-1), at the same time', async () => {
    await settled(TP1_ID, TP2_ID, SER_ID);
    const d1 = await submit({ type: 'delivery', from: 'PH', to: 'W2', what: 'insulin', recipient: 'ward 2 nurse', robot: TP1_ID });
    const d2 = await submit({ type: 'delivery', from: 'PH', to: 'W1', what: 'gauze', robot: SER_ID });
    await waitingFor(d1, 'received');
    await waitingFor(d2, 'received');
    expect((await robot(TP1_ID)).lastNodeId).toBe('W2');
    // The library AGV got standard actions only: pick with §6.8.1 parameters and the load type it declares; the drop waits in the master.
    const [first] = ordersOf(TP1, d1);
    const actions = first.nodes.flatMap((n: any) => n.actions);
    expect(actions.map((a: any) => a.actionType)).toEqual(['pick']);
    expect(Object.fromEntries(actions[0].actionParameters.map((p: any) => [p.key, p.value]))).toMatchObject({ stationType: 'floor', loadType: 'EPAL' });
    expect((tp1.adapter as any)._vehicleState.currentLoad).toBeDefined();

    expect((await dispatcher.post(`/api/tasks/${d1}/confirm`, { kind: 'received' })).status).toBe(200);
    expect((await dispatcher.post(`/api/tasks/${d2}/confirm`, { kind: 'received' })).status).toBe(200);
    await status(d1, 'completed');
    await status(d2, 'completed');
    expect(ordersOf(TP1, d1).flatMap((o) => o.nodes.flatMap((n: any) => n.actions.map((a: any) => a.actionType)))).toEqual(['pick', 'drop']);
    expect((tp1.adapter as any)._vehicleState.currentLoad).toBeUndefined();
    expect((await task(d1)).attempts).toBe(1);
  });

  it('disinfects with area-clear (TP-2): no UV before the confirmation', async () => {
    await settled(TP1_ID, TP2_ID, SER_ID);
    const id = await submit({ type: 'disinfection', zone: 'gate-2-area', durationS: 6, robot: TP2_ID });
    await waitingFor(id, 'area_clear');
    expect(['G2', 'G2b']).toContain((await robot(TP2_ID)).lastNodeId);
    expect(ordersOf(TP2, id).flatMap((o) => o.nodes.flatMap((n: any) => n.actions.map((a: any) => a.actionType)))).not.toContain('disinfect');
    expect((await dispatcher.post(`/api/tasks/${id}/confirm`, { kind: 'area_clear' })).status).toBe(200);
    await status(id, 'completed');
    const uv = ordersOf(TP2, id).flatMap((o) => o.nodes.flatMap((n: any) => n.actions.filter((a: any) => a.actionType === 'disinfect')));
    expect(uv).toHaveLength(2);
    expect(uv[0].actionParameters).toEqual([{ key: 'durationS', value: 6 }]);
  });

  it('cancels TP-1 mid-edge and re-dispatches it from where it stopped (allowedDeviationXY)', async () => {
    await settled(TP1_ID, TP2_ID, SER_ID);
    const first = await submit({ type: 'delivery', from: 'G2b', to: 'W1', what: 'samples', confirmRecipient: false, robot: TP1_ID });
    // Mid-edge: more than a metre from every node.
    await until('TP-1 between two nodes', async () => {
      const p = tp1.adapter.position;
      return (await task(first)).status === 'underway' && FLEET_MAP.nodes.every((n) => Math.hypot(n.x - p.x, n.y - p.y) > 1);
    });
    expect((await dispatcher.post(`/api/tasks/${first}/cancel`, { reason: 'wrong ward' })).status).toBe(200);
    await until('cancelOrder to TP-1 on the wire', async () => instantTypes(TP1).includes('cancelOrder'));
    await until('TP-1 stopped', async () => !(await robot(TP1_ID)).driving && !tp1.controller.hasActiveOrder);
    const stoppedAt = tp1.adapter.position;
    expect(Math.hypot(node(stoppedAt.lastNodeId).x - stoppedAt.x, node(stoppedAt.lastNodeId).y - stoppedAt.y)).toBeGreaterThan(0.5);

    const next = await submit({ type: 'delivery', from: 'PH', to: 'W1', what: 'samples', confirmRecipient: false, robot: TP1_ID });
    await status(next, 'completed');
    const [order] = ordersOf(TP1, next);
    expect(order.nodes[0].nodeId).toBe(stoppedAt.lastNodeId);
    expect(order.nodes[0].nodePosition.allowedDeviationXY).toBeGreaterThan(0.5);
    expect((await task(next)).attempts).toBe(1);
  });

  it('pauses and resumes TP-1 through the API; a paused robot takes no new work', async () => {
    await settled(TP1_ID, TP2_ID, SER_ID);
    const id = await submit({ type: 'delivery', from: 'PH', to: 'W2', what: 'blood samples', confirmRecipient: false, robot: TP1_ID });
    await until('TP-1 driving for the delivery', async () => (await task(id)).status === 'underway' && (await robot(TP1_ID)).driving);
    const guard = await ApiClient.login(world.gateway.url, 'guard');
    expect((await guard.post(`/api/robots/${MAKER}/TP-1/pause`)).status).toBe(403);
    const paused = await dispatcher.post(`/api/robots/${MAKER}/TP-1/pause`);
    expect(paused.status).toBe(202);
    expect(paused.body.robot.id).toBe(TP1_ID);
    await until('TP-1 paused', async () => (await robot(TP1_ID)).paused === true);
    const view = await robot(TP1_ID);
    expect(view).toMatchObject({ available: false, unavailableReason: 'paused', driving: false, taskId: id });
    const at = tp1.adapter.position;
    const statesBefore = sent(TP1, 'state').length;
    await until('three more states from the paused TP-1', async () => sent(TP1, 'state').length >= statesBefore + 3);
    expect(tp1.adapter.position).toEqual(at);
    expect((await task(id)).status).toBe('underway');
    expect((await dispatcher.post(`/api/robots/${MAKER}/NOPE/pause`)).body).toMatchObject({ statusCode: 404, message: `no robot ${MAKER}/NOPE` });
    // New work for the paused robot waits (not even queued behind its current task) while its states keep coming.
    const later = await submit({ type: 'delivery', from: 'PH', to: 'W1', what: 'gauze', confirmRecipient: false, robot: TP1_ID });
    const statesNow = sent(TP1, 'state').length;
    await until('two more states from the paused TP-1', async () => sent(TP1, 'state').length >= statesNow + 2);
    expect(await task(later)).toMatchObject({ status: 'queued' });

    expect((await dispatcher.post(`/api/robots/${MAKER}/TP-1/resume`)).status).toBe(202);
    await status(id, 'completed');
    await status(later, 'completed');
    expect((await robot(TP1_ID)).paused).toBe(false);
    expect((await task(id)).attempts).toBe(1);
    expect(instantTypes(TP1).filter((t: string) => t === 'startPause' || t === 'stopPause')).toEqual(['startPause', 'stopPause']);
  });

  it('sends TP-2 to charge on low battery (one charge task), and back to work with stopCharging', async () => {
    await settled(TP1_ID, TP2_ID, SER_ID);
    const tasksBefore = ((await dispatcher.get('/api/tasks?limit=1000')).body.tasks as any[]).map((t) => t.id);
    tp2.adapter.drainBatteryTo(12);
    let chargeId = '';
    await until('a charge task for TP-2', async () => {
      const found = ((await dispatcher.get('/api/tasks?limit=1000')).body.tasks as any[]).find((t) => t.type === 'charge' && t.robotId === TP2_ID && !tasksBefore.includes(t.id));
      chargeId = found?.id ?? '';
      return chargeId !== '';
    });
    await status(chargeId, 'completed');
    await until('TP-2 charging', async () => (await robot(TP2_ID)).charging === true);
    const work = await submit({ type: 'disinfection', node: 'W1', durationS: 3, robot: TP2_ID });
    await waitingFor(work, 'area_clear');
    expect((await dispatcher.post(`/api/tasks/${work}/confirm`, { kind: 'area_clear' })).status).toBe(200);
    await status(work, 'completed');
    expect(instantTypes(TP2)).toContain('stopCharging');
    expect((await task(work)).history.map((h: any) => h.reason)).toContain(`robot ${TP2_ID} is charging: stopCharging sent`);
    const charges = ((await dispatcher.get('/api/tasks?limit=1000')).body.tasks as any[]).filter((t) => t.type === 'charge' && t.robotId === TP2_ID && !tasksBefore.includes(t.id));
    expect(charges.map((t) => t.id)).toEqual([chargeId]);
  });

  it('re-queues the task of a crashed TP-1 (its last will), and finishes it after the robot restarts', async () => {
    await settled(TP1_ID, TP2_ID, SER_ID);
    const id = await submit({ type: 'delivery', from: 'PH', to: 'W2', what: 'insulin', confirmRecipient: false, robot: TP1_ID });
    await until('TP-1 driving for the delivery', async () => (await task(id)).status === 'underway' && (await robot(TP1_ID)).driving);
    const crashedAt = tp1.adapter.position;
    const crashMs = Date.now();
    await tp1.crash();
    await until('TP-1 CONNECTIONBROKEN', async () => (await robot(TP1_ID)).connection === 'CONNECTIONBROKEN');
    // No pause for a robot that is not there.
    expect((await dispatcher.post(`/api/robots/${MAKER}/TP-1/pause`)).body).toMatchObject({ statusCode: 409, message: `robot ${TP1_ID} is CONNECTIONBROKEN: cannot send startPause` });
    await withHistory(id, until('the task re-queued', async () => (await task(id)).history.some((h: any) => String(h.reason).startsWith(`robot ${TP1_ID} is CONNECTIONBROKEN (no link for 10 s) mid-task; re-queued`))));
    const will = sent(TP1, 'connection').at(-1);
    expect(will.connectionState).toBe('CONNECTIONBROKEN');
    // The will was made at connect, long before the crash; the master judged it by its arrival.
    expect(Date.parse(will.timestamp)).toBeLessThan(crashMs - 10_000);

    // The robot restarts where it stopped (it knows its position), with a fresh controller.
    tp1 = await startThirdPartyAgv(world, TP1, crashedAt, ['pick', 'drop', 'startPause', 'stopPause', 'startCharging', 'stopCharging']);
    await status(id, 'completed', 90_000);
    expect((await task(id)).attempts).toBe(2);
  });

  it('rides out a network blip of TP-2 mid-task: same order, one attempt', async () => {
    await settled(TP1_ID, TP2_ID, SER_ID);
    const id = await submit({ type: 'disinfection', node: 'G2', durationS: 3, robot: TP2_ID });
    await until('TP-2 driving for the disinfection', async () => (await task(id)).status === 'underway' && (await robot(TP2_ID)).driving);
    const connections = sent(TP2, 'connection').length;
    tp2.blip();
    await until('the last will and ONLINE again on the wire', async () => {
      const after = sent(TP2, 'connection').slice(connections).map((m) => m.connectionState);
      return after.includes('CONNECTIONBROKEN') && after.at(-1) === 'ONLINE';
    });
    await waitingFor(id, 'area_clear');
    expect((await dispatcher.post(`/api/tasks/${id}/confirm`, { kind: 'area_clear' })).status).toBe(200);
    await status(id, 'completed');
    expect((await robot(TP2_ID)).connection).toBe('ONLINE');
    const done = await task(id);
    expect(done.attempts).toBe(1);
    const reasons = done.history.map((h: any) => String(h.reason));
    expect(reasons).toContain(`robot ${TP2_ID} lost its link (CONNECTIONBROKEN); it keeps the task up to 10 s`);
    expect(reasons.some((r: string) => r.startsWith(`robot ${TP2_ID} back ONLINE after `))).toBe(true);
  });

  it('survives a gateway restart with SER-1 waiting for its recipient and the library AGVs idle', async () => {
    await settled(TP1_ID, TP2_ID, SER_ID);
    const id = await submit({ type: 'delivery', from: 'PH', to: 'W2', what: 'insulin', robot: SER_ID });
    await waitingFor(id, 'received');
    await world.gateway.close();
    await world.startGateway();
    dispatcher = await ApiClient.login(world.gateway.url, 'dispatcher');
    expect((await task(id)).history.map((h: any) => h.reason)).toContain('gateway restarted; re-queued');
    await until('waiting again after the restart', async () => (await task(id)).waitingFor === 'received' && (await task(id)).attempts === 2);
    expect((await dispatcher.post(`/api/tasks/${id}/confirm`, { kind: 'received' })).status).toBe(200);
    await status(id, 'completed');
    // The library AGVs are known again from their retained connection and factsheet and their fresh states.
    await settled(TP1_ID, TP2_ID, SER_ID);
    const d = await submit({ type: 'delivery', from: 'PH', to: 'W1', what: 'gauze', confirmRecipient: false, robot: TP1_ID });
    await status(d, 'completed');
  });

  it('validated every message on the wire against the official VDA 5050 2.0.0 schemas', async () => {
    const byKind: Record<string, number> = {};
    for (const m of wire) {
      checkOfficial(m.topic, m.payload);
      const kind = m.topic.split('/').at(-1)!;
      byKind[kind] = (byKind[kind] ?? 0) + 1;
    }
    console.log(`wire capture: ${wire.length} messages validated against the official schemas`, byKind);
    for (const kind of ['order', 'instantActions', 'state', 'connection', 'factsheet', 'visualization']) expect(byKind[kind], kind).toBeGreaterThan(0);
    // And the gateway dropped none of the robots' messages.
    expect(await metricValue(world.gateway.url, 'checkpoint_gateway_fleet_messages_total', 'result="rejected"')).toBe(0);
  });
});
