/**
 * Whole gateway processes on a shared PostgreSQL, and simulated VDA 5050 robots that record every
 * order they get: the parts of the multi-gateway fleet tests (gateways-fleet-postgres,
 * jetstream-fleet-postgres).
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createSimulatedRobot, type SimulatedRobot } from '@checkpoint/firmware-bridge';
import { freePort, logTail, spawnServer, waitFor, type ServerProcess } from '@checkpoint/test-support';
import { DELIVERY_ACTIONS, MANUFACTURER } from '../fleet-world.js';

const REPO = fileURLToPath(new URL('../../../', import.meta.url));

export interface GatewayProcess {
  name: string;
  url: string;
  proc: ServerProcess;
  logFile: string;
  /** `leader` or `follower` (healthz `store.role`), `unhealthy` otherwise. */
  role(): Promise<string>;
}

/**
 * Starts the gateway CLI (from source) with `config` written to `<dir>/<name>.json`, the API on a
 * free port and logs at info in `<dir>/<name>.log`; resolves once it leads or follows.
 */
export async function startGatewayProcess(dir: string, name: string, config: Record<string, unknown>): Promise<GatewayProcess> {
  const port = await freePort();
  const configFile = join(dir, `${name}.json`);
  writeFileSync(configFile, JSON.stringify(config));
  const logFile = join(dir, `${name}.log`);
  const proc = spawnServer('node', [join(REPO, 'scripts/run-ts.mjs'), 'gateway/test/fixtures/gateway-process.ts', 'run', '--config', configFile], {
    logFile,
    env: { ...process.env, CHECKPOINT_HTTP_PORT: String(port), CHECKPOINT_LOG_LEVEL: 'info' },
    cwd: REPO,
  });
  const url = `http://127.0.0.1:${port}`;
  const role = async () => {
    const res = await fetch(`${url}/healthz`).catch(() => null);
    return res?.status === 200 ? ((await res.json()) as { store: { role: string } }).store.role : 'unhealthy';
  };
  try {
    await waitFor(async () => ['leader', 'follower'].includes(await role()), { what: () => `${name} healthy\n${logTail(logFile)}`, timeoutMs: 60_000 });
  } catch (error) {
    await proc.stop({ signal: 'SIGKILL' });
    throw error;
  }
  return { name, url, proc, logFile, role };
}

/** An order a robot accepted or refused, as it arrived on the wire. */
export interface ReceivedOrder {
  robot: string;
  orderId: string;
  orderUpdateId: number;
  result: string;
  atMs: number;
}

/**
 * A simulated delivery robot of MANUFACTURER on MQTT, driving fast enough (timeScale 3) that a
 * delivery across the map takes 10-15 s; every order it gets is pushed to `received`.
 */
export async function startRecordingRobot(
  o: { serial: string; startNode: string; x: number; y: number; url: string; username: string; password: string },
  received: ReceivedOrder[],
): Promise<SimulatedRobot> {
  const robot = await createSimulatedRobot({
    manufacturer: MANUFACTURER,
    serialNumber: o.serial,
    startNode: o.startNode,
    x: o.x,
    y: o.y,
    speed: 2,
    timeScale: 3,
    batteryPct: 90,
    capabilities: DELIVERY_ACTIONS,
    reportMs: 1000,
    transport: { kind: 'mqtt', url: o.url, username: o.username, password: o.password },
  });
  const accept = robot.model.acceptOrder.bind(robot.model);
  robot.model.acceptOrder = (order) => {
    const outcome = accept(order);
    received.push({ robot: o.serial, orderId: order.orderId, orderUpdateId: order.orderUpdateId, result: outcome.result, atMs: Date.now() });
    return outcome;
  };
  return robot;
}
