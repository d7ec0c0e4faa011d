#!/usr/bin/env node
// `npm start`: the whole system on one machine with embedded defaults, for a first look.
// The broker runs in-process (aedes), edge agents screen simulated people, and every decision
// is printed. State lives in .checkpoint-demo/ (or CHECKPOINT_DATA_DIR). This is the only place
// that creates users with a known password, and it says so.
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import pino from 'pino';

const root = path.dirname(path.dirname(new URL(import.meta.url).pathname));
for (const ws of ['broker', 'gateway', 'edge-agent', 'firmware-bridge']) {
  if (!existsSync(path.join(root, ws, 'dist', 'index.js'))) {
    console.error(`${ws} is not built: run \`npm run build\` first (the quick start does: npm ci && npm run build && npm start)`);
    process.exit(1);
  }
}
const { createBroker } = await import('@checkpoint/broker');
const { runAgent, loadAgentConfig } = await import('@checkpoint/edge-agent');
const { createGateway, demoFleet } = await import('@checkpoint/gateway');
const { createSimulatedRobot } = await import('@checkpoint/firmware-bridge');

const dataDir = path.resolve(process.env.CHECKPOINT_DATA_DIR ?? path.join(root, '.checkpoint-demo'));
const mqttPort = Number(process.env.CHECKPOINT_MQTT_PORT ?? 1883);
const httpPort = Number(process.env.CHECKPOINT_HTTP_PORT ?? 8080);
// OPC UA for SCADA/BMS clients; 0 = any free port (several demos, or tests, on one machine).
const opcuaPort = Number(process.env.CHECKPOINT_OPCUA_PORT ?? 4840);
const DEMO_PASSWORD = 'checkpoint-demo';
const logLevel = process.env.CHECKPOINT_LOG_LEVEL ?? 'warn';
const log = pino({ name: 'demo', level: logLevel }, pino.destination(2));
await mkdir(dataDir, { recursive: true });

// Device credentials are random per demo folder and kept there (0600), like a provisioned box.
const secretsFile = path.join(dataDir, 'device-secrets.json');
const secrets = existsSync(secretsFile) ? JSON.parse(await readFile(secretsFile, 'utf8')) : {};
const CHECKPOINTS = [
  { site: 'hospital-a', checkpoint: 'gate-1', seed: 1 },
  { site: 'hospital-a', checkpoint: 'gate-2', seed: 2 },
];
for (const c of CHECKPOINTS) secrets[`edge-${c.checkpoint}`] ??= randomBytes(18).toString('base64url');
secrets.gateway ??= randomBytes(18).toString('base64url');
for (const r of demoFleet.robots) secrets[`robot-${r.serialNumber}`] ??= randomBytes(18).toString('base64url');
await writeFile(secretsFile, JSON.stringify(secrets, null, 2), { mode: 0o600 });

const broker = await createBroker({
  config: { dataDir: path.join(dataDir, 'broker'), host: '127.0.0.1', mqtt: { port: mqttPort }, metrics: { port: null }, logLevel },
  logger: log.child({ component: 'broker' }),
});
for (const c of CHECKPOINTS) {
  const name = `edge-${c.checkpoint}`;
  if (!broker.users.get(name)) await broker.users.add({ name, role: 'edge', site: c.site, checkpoint: c.checkpoint }, secrets[name]);
  else await broker.users.setPassword(name, secrets[name]);
}
if (!broker.users.get('gateway')) await broker.users.add({ name: 'gateway', role: 'gateway' }, secrets.gateway);
else await broker.users.setPassword('gateway', secrets.gateway);
for (const r of demoFleet.robots) {
  const name = `robot-${r.serialNumber}`;
  const robot = { manufacturer: r.manufacturer, serialNumber: r.serialNumber };
  if (!broker.users.get(name)) await broker.users.add({ name, role: 'robot', robot }, secrets[name]);
  else await broker.users.setPassword(name, secrets[name]);
}
const mqttUrl = `mqtt://127.0.0.1:${broker.ports.mqtt}`;
console.log(`broker: ${mqttUrl} (aedes, per-device credentials, topic ACLs)`);

// The gateway keeps alerts, devices and series in SQLite unless CHECKPOINT_INFLUX_URL is set.
const gateway = await createGateway(
  {
    dataDir: path.join(dataDir, 'gateway'),
    mqtt: { url: mqttUrl, username: 'gateway', password: secrets.gateway },
    http: { host: '127.0.0.1', port: httpPort },
    // A demo hospital floor with two checkpoints, wards, chargers and a UV disinfection rule.
    fleet: { map: demoFleet.map, rules: demoFleet.rules },
    opcua: { port: opcuaPort },
    ...(process.env.CHECKPOINT_INFLUX_URL ? { influx: { url: process.env.CHECKPOINT_INFLUX_URL } } : {}),
    logLevel,
  },
  // The broker runs in this process: the gateway enrols and revokes devices in its user store directly.
  { logger: log.child({ component: 'gateway' }), brokerUsers: broker.users },
);
for (const role of ['guard', 'dispatcher', 'engineer', 'admin']) {
  await gateway.users.add({ name: role, role }, DEMO_PASSWORD);
}
console.log(`gateway: ${gateway.url} (dashboards; API docs at ${gateway.url}/docs)${gateway.opcua ? `; OPC UA ${gateway.opcua.endpointUrl}` : ''}`);

const robots = [];
for (const r of demoFleet.robots) {
  const { startNode, x, y, speed, batteryPct, capabilities, ...id } = r;
  robots.push(
    await createSimulatedRobot({
      ...id,
      startNode,
      x,
      y,
      speed,
      batteryPct,
      capabilities,
      transport: { kind: 'mqtt', url: mqttUrl, username: `robot-${r.serialNumber}`, password: secrets[`robot-${r.serialNumber}`] },
    }),
  );
}
console.log(`robots: ${demoFleet.robots.map((r) => r.serialNumber).join(', ')} (simulated, VDA 5050 over MQTT)`);
console.log(`  demo users guard, dispatcher, engineer, admin — password "${DEMO_PASSWORD}" (demo only)`);

// Each demo agent is configured here, per checkpoint: the environment's per-machine overrides
// (data dir, broker URL and credentials, HTTP port) are the demo's own and must not reach the
// agents, or both would share one outbox and publish each other's screenings.
const PER_AGENT_ENV = ['CHECKPOINT_DATA_DIR', 'CHECKPOINT_MQTT_URL', 'CHECKPOINT_MQTT_USERNAME', 'CHECKPOINT_MQTT_PASSWORD', 'CHECKPOINT_HTTP_PORT'];
const agentEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !PER_AGENT_ENV.includes(k)));
const agents = [];
for (const c of CHECKPOINTS) {
  const config = await loadAgentConfig(undefined, agentEnv, {
    site: c.site,
    checkpoint: c.checkpoint,
    dataDir: path.join(dataDir, `agent-${c.checkpoint}`),
    mqtt: { url: mqttUrl, username: `edge-${c.checkpoint}`, password: secrets[`edge-${c.checkpoint}`] },
    source: { thermal: { kind: 'sim', realtime: true, seed: c.seed, feverRate: 0.1, maskRate: 0.5 } },
    http: { port: 0 },
    logLevel,
  });
  const agent = await runAgent(config, {
    logger: log.child({ component: 'edge-agent', checkpoint: c.checkpoint }),
    onScreening: ({ screening: s }) => {
      const t = s.temperatureC === null ? '  --  ' : `${s.temperatureC.toFixed(1)} °C`;
      const what = s.decision === 'secondary_check' ? 'SECONDARY CHECK REQUIRED' : s.decision === 'invalid' ? 'cannot screen' : 'pass';
      console.log(`${s.ts.slice(11, 19)}  ${s.checkpoint}  ${t}  ${s.mask.padEnd(7)}  ${what}${s.reasons.length ? ` (${s.reasons.join(', ')})` : ''}`);
    },
  });
  agents.push(agent);
  console.log(`edge-agent ${c.site}/${c.checkpoint}: simulated cameras, health on http://127.0.0.1:${agent.httpPort}/healthz`);
}
console.log('screening simulated people; Ctrl-C to stop\n');

let stopping = false;
async function stop() {
  if (stopping) return;
  stopping = true;
  console.log('\nstopping...');
  await Promise.all(agents.map((a) => a.stop()));
  await Promise.all(robots.map((r) => r.close()));
  await gateway.close();
  await broker.close();
  process.exit(0);
}
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
