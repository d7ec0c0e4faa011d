/**
 * `npm run sim:fleet` (skeleton, issue #18): simulated checkpoints against a NATS cluster.
 *
 *   npm run sim:fleet -- [--sessions 100] [--processes 2] [--rate 0.1] [--duration 30] [--drain 30] [--bcrypt-cost 6] [--kill-node-at S]
 *                        [--kill-node leader|follower] [--gateways N --postgres [--kill-gateway-at S]] [--telemetry-every 10] [--reconnect-ms 30000]
 *                        [--cmd-subscriptions on|off] [--commands-per-s 1] [--mqtt-consumers r1-memory|r3-memory|r3-file] [--json]
 *
 * Creates one broker user per checkpoint in a throwaway user store, exports them with
 * nats-export, starts a local 3-node cluster (test-support), makes the durable JetStream consumer
 * a gateway replica would use, forks worker processes that open one persistent MQTT session per
 * checkpoint and publish QoS 1 screenings at Poisson times, and reads everything back from the
 * stream. Prints accepted (PUBACKed) / stored (read back) / lost / duplicated, publish→read p50 and
 * p99, the longest ingest gap, and the nodes' CPU and memory; `--kill-node-at S` kills the leader of
 * `$MQTT_msgs` with SIGKILL mid-run. With `--gateways N --postgres` the reading is done by N real
 * gateway processes (ingest.source jetstream, sharing the durable consumer) on one PostgreSQL, the
 * devices publish protocol-valid screenings, and stored/lost/duplicated come from the database
 * (plus the redeliveries the gateways absorbed, from their metrics; publish→stored from `received_ms`);
 * `--kill-gateway-at S` kills one replica with SIGKILL. Devices also send QoS 0 telemetry every
 * `--telemetry-every` s (10, as agents; 0: none) and resend a failed publish until the drain ends,
 * as an agent's outbox does. Each device subscribes to its `cmd` topic with QoS 1 as agents do
 * (`--cmd-subscriptions off`: not), and `--commands-per-s` commands go to random devices through
 * the stream as the gateway sends them; sent/delivered/lost and send→device latency are printed.
 * Not yet: an external cluster. Over 500 sessions needs --force.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { AckPolicy, DeliverPolicy, connect as natsConnect, headers as natsHeaders } from 'nats';
import pg from 'pg';
import {
  RECOMMENDED_MQTT_CONSUMERS,
  freePort,
  logTail,
  makeTempDir,
  removeTempDir,
  spawnServer,
  startNatsCluster,
  startPostgres,
  waitFor,
  type NatsCluster,
  type PostgresServer,
  type ServerProcess,
} from '@checkpoint/test-support';
import { openUserStore } from '../src/user-store.js';
import { exportNats } from '../src/nats-export.js';
import { natsPasswordHash } from '../src/passwords.js';
import { assignDevices, checkFleetOptions, commandReport, DEFAULT_FLEET, fleetReport, simDevice, type CommandReport, type FleetOptions, type FleetReport } from './fleet-core.js';
import type { WorkerCommand, WorkerReport } from './fleet-worker.js';

const here = fileURLToPath(new URL('.', import.meta.url));
/** nats-server `mqtt { consumer_replicas, consumer_memory_storage }` for each `--mqtt-consumers`. */
const MQTT_CONSUMERS: Record<NonNullable<FleetOptions['mqttConsumers']>, { replicas?: number; memoryStorage?: boolean }> = {
  'r1-memory': RECOMMENDED_MQTT_CONSUMERS,
  'r3-memory': { replicas: 3, memoryStorage: true },
  'r3-file': {},
};
const REPO = join(here, '../../');
const STREAM = '$MQTT_msgs';
const SCREENINGS = '$MQTT.msgs.checkpoint.v1.*.*.screening';

export interface FleetRun extends FleetReport {
  nodes: Array<{ name: string; cpuPercent: number; memMiB: number }>;
  /** From the first CONNECT to the last session connected. */
  connectSeconds: number;
  /** The node killed (the $MQTT_msgs leader or not) and when, seconds into the load, if one was. */
  killed?: { node: string; role: 'leader' | 'follower'; atS: number };
  /** Publishes that failed and were sent again (the outbox); failedPublishes: never acknowledged. */
  resent: number;
  failedPublishes: number;
  /**
   * QoS 0 telemetry sent, and through gateways: stored (by the replicas alive at the end) and the
   * devices whose telemetry is in the database. At most once: a kill may drop some.
   */
  telemetry: { published: number; stored?: number; devices?: number };
  /** With cmd subscriptions (the default): commands sent to devices, and what reached them. */
  commands?: CommandReport;
  /** With --gateways: the replicas (the one killed, and when) and their CPU and memory at the end. */
  gateways?: { count: number; absorbed: number; killedAtS?: number; usage: Array<{ name: string; cpuSeconds: number; rssMiB: number }> };
}

/** One gateway replica process on the shared PostgreSQL, reading the shared durable consumer. */
interface Replica {
  name: string;
  proc: ServerProcess;
  base: string;
  metric(line: (l: string) => boolean): Promise<number>;
}

async function startReplica(dir: string, name: string, cluster: NatsCluster, postgres: PostgresServer, password: string, mqttNode: number): Promise<Replica> {
  const port = await freePort();
  const configFile = join(dir, `gateway-${name}.json`);
  writeFileSync(
    configFile,
    JSON.stringify({
      dataDir: join(dir, `gateway-${name}`),
      logLevel: 'warn',
      http: { host: '127.0.0.1', port: 0 },
      opcua: { enabled: false },
      influx: { url: null },
      ingest: { source: 'jetstream' },
      mqtt: { url: cluster.mqttUrls[mqttNode % cluster.mqttUrls.length], username: 'gw', password, clientId: `sim-gateway-${name}`, reconnectMs: 500 },
      nats: { servers: cluster.natsUrls, user: 'gw', password },
      store: { backend: 'postgres', postgres: { url: postgres.url } },
    }),
  );
  // The gateway CLI from source (the test fixture), so the sim needs no build step.
  const proc = spawnServer('node', [join(REPO, 'scripts/run-ts.mjs'), 'gateway/test/fixtures/gateway-process.ts', 'run', '--config', configFile], {
    logFile: join(dir, `gateway-${name}.log`),
    env: { ...process.env, CHECKPOINT_HTTP_PORT: String(port) },
    cwd: REPO,
  });
  const base = `http://127.0.0.1:${port}`;
  await waitFor(async () => (await fetch(`${base}/healthz`).catch(() => null))?.status === 200, { what: `gateway ${name} healthy\n${logTail(proc.logFile)}`, timeoutMs: 90_000 });
  const metric = async (match: (l: string) => boolean) => {
    const text = await (await fetch(`${base}/metrics`)).text();
    const line = text.split('\n').find((l) => !l.startsWith('#') && match(l));
    return line ? Number(line.split(' ').pop()) : 0;
  };
  return { name, proc, base, metric };
}

const storedTelemetry = (l: string) => l.startsWith('checkpoint_gateway_messages_total{') && l.includes('channel="telemetry"') && l.includes('result="stored"');
const duplicateScreenings = (l: string) => l.startsWith('checkpoint_gateway_messages_total{') && l.includes('channel="screening"') && l.includes('result="duplicate"');

async function nodeUsage(cluster: NatsCluster): Promise<FleetRun['nodes']> {
  return Promise.all(
    cluster.nodes
      .filter((n) => n.running)
      .map(async (n) => {
        const varz = (await (await fetch(`${n.monitorUrl}/varz`)).json()) as { cpu: number; mem: number };
        return { name: n.name, cpuPercent: varz.cpu, memMiB: Math.round(varz.mem / 2 ** 20) };
      }),
  );
}

class Worker {
  private readonly child: ChildProcess;
  private readonly waiters = new Map<WorkerReport['type'], (r: WorkerReport) => void>();
  constructor(onAccepted: (ids: Array<[string, number]>) => void, onCommands: (received: Array<[string, number]>) => void) {
    this.child = fork(join(here, '../../scripts/run-ts.mjs'), [join(here, 'fleet-worker.ts')], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    this.child.on('message', (report: WorkerReport) => {
      if (report.type === 'accepted') onAccepted(report.ids);
      else if (report.type === 'commands') onCommands(report.received);
      else this.waiters.get(report.type)?.(report);
    });
  }
  request<T extends WorkerReport['type']>(command: WorkerCommand, answer: T): Promise<Extract<WorkerReport, { type: T }>> {
    return new Promise((resolve, reject) => {
      this.waiters.set(answer, resolve as (r: WorkerReport) => void);
      this.child.once('exit', (code) => reject(new Error(`sim:fleet worker exited with ${code} while waiting for "${answer}"`)));
      this.child.send(command);
    });
  }
  kill(): void {
    this.child.kill('SIGKILL');
  }
}

export async function runFleet(options: FleetOptions, log: (line: string) => void = () => {}): Promise<FleetRun> {
  const dir = makeTempDir('checkpoint-sim-fleet');
  const workers: Worker[] = [];
  let cluster: NatsCluster | undefined;
  let postgres: PostgresServer | undefined;
  let pool: pg.Pool | undefined;
  const replicas: Replica[] = [];
  const viaGateways = (options.gateways ?? 0) > 0;
  try {
    const password = 'sim-fleet-password-1';
    const store = openUserStore(join(dir, 'users.sqlite'), { mosquittoHashIterations: 0, natsBcryptCost: options.bcryptCost, scrypt: { N: 1024, r: 8, p: 1 } });
    const devices = Array.from({ length: options.sessions }, (_, i) => simDevice(i, password));
    for (const d of devices) await store.add({ name: d.name, role: 'edge', site: d.site, checkpoint: d.checkpoint }, password);
    if (viaGateways) await store.add({ name: 'gw', role: 'gateway' }, password);
    const exported = exportNats(store, join(dir, 'auth.conf'));
    store.close();
    // The reader plays the gateway replicas (a test-only user allowed everything; the gateway
    // role's nats-export grants cover only the consumer name checkpoint-gateway).
    const reader = { user: 'sim-reader', pass: 'sim-reader-password-1' };
    const authorization = readFileSync(exported.file, 'utf8').replace(
      '  users = [\n',
      `  users = [\n    { user: ${JSON.stringify(reader.user)}, password: ${JSON.stringify(await natsPasswordHash(reader.pass, 4))}, permissions: { publish: ">", subscribe: ">" } }\n`,
    );
    log(`starting a 3-node NATS cluster with ${exported.exported.length} device users (MQTT QoS 1 subscriptions: ${options.mqttConsumers ?? 'r1-memory'} consumers)`);
    cluster = await startNatsCluster({ authorization, mqttConsumers: MQTT_CONSUMERS[options.mqttConsumers ?? 'r1-memory'] });
    if (viaGateways) {
      postgres = await startPostgres();
      pool = new pg.Pool({ connectionString: postgres.url, max: 2 });
      // The first replica's MQTT connection makes nats-server create $MQTT_msgs, and its consumer
      // exists before the first screening (interest retention); the first also migrates the database.
      for (let i = 0; i < options.gateways!; i++) replicas.push(await startReplica(dir, String.fromCharCode(97 + i), cluster, postgres, password, i));
      log(`${replicas.length} gateway replicas on PostgreSQL, reading the durable consumer checkpoint-gateway`);
    }

    const reads = new Map<string, { firstAt: number; copies: number }>();
    const accepted = new Map<string, number>();
    const groups = assignDevices(options.sessions, options.processes);
    const commandsSent = new Map<string, number>();
    const commandsReceived = new Map<string, { firstAt: number; copies: number }>();
    const onCommands = (received: Array<[string, number]>) =>
      received.forEach(([id, at]) => {
        const r = commandsReceived.get(id);
        if (r) r.copies++;
        else commandsReceived.set(id, { firstAt: at, copies: 1 });
      });
    for (let i = 0; i < groups.length; i++) workers.push(new Worker((ids) => ids.forEach(([id, sentAt]) => accepted.set(id, sentAt)), onCommands));
    const connectStart = Date.now();
    const opened = await Promise.all(
      workers.map((w, i) =>
        w.request(
          { type: 'open', urls: cluster!.mqttUrls, devices: groups[i]!.map((d) => devices[d]!), connectConcurrency: 8, reconnectMs: options.reconnectMs ?? 30_000, subscribeCmd: options.cmdSubscriptions !== false },
          'opened',
        ),
      ),
    );
    const connected = opened.reduce((sum, o) => sum + o.connected, 0);
    const subscribed = opened.reduce((sum, o) => sum + o.subscribed, 0);
    const connectSeconds = (Date.now() - connectStart) / 1000;
    log(`${connected}/${options.sessions} sessions connected in ${connectSeconds} s${options.cmdSubscriptions !== false ? `, ${subscribed} subscribed to their cmd topic (QoS 1)` : ''}`);

    // The consumer exists before the first screening: the stream keeps messages only for
    // consumers that exist when they arrive (interest retention).
    const nc = await natsConnect({ servers: cluster.natsUrls, ...reader });
    const jsm = await nc.jetstreamManager();
    if (!viaGateways) await jsm.consumers.add(STREAM, { durable_name: 'sim-gateway', filter_subject: SCREENINGS, ack_policy: AckPolicy.Explicit, deliver_policy: DeliverPolicy.New });
    let reading = !viaGateways;
    const readLoop = (async () => {
      while (reading) {
        // Looked up again each round: a long-lived iterator stalled after its consumer leader moved.
        const consumer = await nc.jetstream().consumers.get(STREAM, 'sim-gateway');
        for await (const m of await consumer.fetch({ max_messages: 500, expires: 1_000 })) {
          const id = (JSON.parse(m.string()) as { id: string }).id;
          const r = reads.get(id);
          if (r) r.copies++;
          else reads.set(id, { firstAt: Date.now(), copies: 1 });
          m.ack();
        }
      }
    })();

    log(`publishing for ${options.durationS} s at ${options.ratePerCheckpoint}/s per checkpoint`);
    const started = Date.now();
    const fault =
      options.killNodeAtS === undefined
        ? undefined
        : new Promise<{ at: number; node: string; role: 'leader' | 'follower' }>((resolve) =>
            setTimeout(() => {
              // By default the worst node to lose: the leader of the stream every screening is written to.
              void jsm.streams.info(STREAM).then(async (info) => {
                const leader = info.cluster?.leader;
                const victim =
                  (options.killNode === 'follower' ? cluster!.nodes.find((n) => n.name !== leader) : cluster!.nodes.find((n) => n.name === leader)) ?? cluster!.nodes[1]!;
                const at = Date.now();
                log(`kill -9 of node ${victim.name} (${STREAM} leader: ${leader ?? 'unknown'})`);
                await cluster!.kill(victim, 'SIGKILL');
                resolve({ at, node: victim.name, role: victim.name === leader ? 'leader' : 'follower' });
              });
            }, options.killNodeAtS! * 1000),
          );
    let gatewayKilledAt: number | undefined;
    const gatewayFault =
      options.killGatewayAtS === undefined
        ? undefined
        : new Promise<void>((resolve) =>
            setTimeout(() => {
              gatewayKilledAt = Date.now();
              log(`kill -9 of gateway replica ${replicas[0]!.name}`);
              void replicas[0]!.proc.stop({ signal: 'SIGKILL' }).then(() => resolve());
            }, options.killGatewayAtS! * 1000),
          );
    // Commands as the gateway sends them (ingest/jetstream-consumer.ts `publish`): stored into
    // $MQTT_msgs with the QoS 1 header, so a device whose node died gets them once it is back.
    const commandEveryMs = (options.commandsPerS ?? 0) > 0 ? 1000 / options.commandsPerS! : 0;
    let commandCount = 0;
    const commandsInFlight = new Set<Promise<void>>();
    const commandTimer =
      commandEveryMs > 0
        ? setInterval(() => {
            const device = devices[Math.floor(Math.random() * devices.length)]!;
            const id = `cmd-${commandCount++}`;
            const h = natsHeaders();
            h.set('Nmqtt-Pub', '1');
            const sentAt = Date.now();
            const publish = nc
              .jetstream()
              .publish(`$MQTT.msgs.checkpoint.v1.${device.site}.${device.checkpoint}.cmd`, JSON.stringify({ id, t: sentAt }), { headers: h })
              .then(() => void commandsSent.set(id, sentAt))
              // Not stored (an election under way): the gateway reports it failed; not counted as sent.
              .catch(() => undefined)
              .finally(() => commandsInFlight.delete(publish));
            commandsInFlight.add(publish);
          }, commandEveryMs)
        : undefined;
    // A line every 30 s: a 10-minute run shows it is alive, and where it starts to fall behind.
    const progress = setInterval(() => {
      void (async () => {
        const stored = viaGateways ? Number((await pool!.query<{ n: string }>('SELECT count(*) AS n FROM screenings')).rows[0]!.n) : reads.size;
        log(`${Math.round((Date.now() - started) / 1000)} s: accepted ${accepted.size}, stored ${stored}`);
      })().catch(() => undefined);
    }, 30_000);
    const ran = await Promise.all(
      workers.map((w) =>
        w.request(
          {
            type: 'run',
            ratePerCheckpoint: options.ratePerCheckpoint,
            durationS: options.durationS,
            payload: viaGateways ? 'screening' : 'minimal',
            telemetryEveryS: options.telemetryEveryS ?? 0,
            retryForS: options.drainS,
          },
          'ran',
        ),
      ),
    );
    clearInterval(progress);
    clearInterval(commandTimer);
    // A command stored just now is waited for in the drain like the others.
    await Promise.all(commandsInFlight);
    const loadSeconds = (Date.now() - started) / 1000;
    await gatewayFault;
    // The drain ends when everything accepted is read back, or when nothing more was read for
    // drainS: a replica left alone after a kill may take minutes to work off the backlog, and
    // what is still in the stream then is late, not lost.
    let drainUntil = Date.now() + options.drainS * 1000;
    let readBefore = reads.size;
    // Through gateways: what PostgreSQL holds of the accepted ids (received_ms: when a replica stored it).
    const readStored = async () => {
      const ids = [...accepted.keys()].filter((id) => !reads.has(id));
      for (let i = 0; i < ids.length; i += 5000) {
        const rows = (await pool!.query<{ id: string; r: string }>('SELECT id, received_ms AS r FROM screenings WHERE id = ANY($1)', [ids.slice(i, i + 5000)])).rows;
        for (const row of rows) reads.set(row.id, { firstAt: Number(row.r), copies: 1 });
      }
    };
    // Commands for devices that were offline are delivered when they are back: waited for too.
    let commandsBefore = commandsReceived.size;
    for (;;) {
      if (viaGateways) await readStored();
      if (reads.size > readBefore || commandsReceived.size > commandsBefore) drainUntil = Date.now() + options.drainS * 1000;
      readBefore = reads.size;
      commandsBefore = commandsReceived.size;
      const commandsPending = [...commandsSent.keys()].some((id) => !commandsReceived.has(id));
      if (Date.now() >= drainUntil || (!commandsPending && ![...accepted.keys()].some((id) => !reads.has(id)))) break;
      await new Promise((r) => setTimeout(r, viaGateways ? 1000 : 200));
    }
    const nodes = await nodeUsage(cluster);
    reading = false;
    await readLoop;
    await nc.close();
    await Promise.all(workers.map((w) => w.request({ type: 'close' }, 'closed')));

    const report = fleetReport({ sessions: options.sessions, connected, published: ran.reduce((s, r) => s + r.published, 0), accepted, reads, loadSeconds });
    const telemetry: FleetRun['telemetry'] = { published: ran.reduce((s, r) => s + r.telemetry, 0) };
    if (viaGateways) {
      // The surviving replicas' counters (a killed replica's count died with it), and the devices whose last telemetry is stored.
      const alive = replicas.filter((r) => !r.proc.hasExited());
      telemetry.stored = (await Promise.all(alive.map((r) => r.metric(storedTelemetry)))).reduce((a, b) => a + b, 0);
      telemetry.devices = Number((await pool!.query<{ n: string }>('SELECT count(*) AS n FROM devices WHERE telemetry IS NOT NULL')).rows[0]!.n);
    }
    const killed = await fault;
    let gateways: FleetRun['gateways'];
    if (viaGateways) {
      const alive = replicas.filter((r) => !r.proc.hasExited());
      // Each id is stored once (primary key); what came twice is what the replicas found already stored.
      const absorbed = (await Promise.all(alive.map((r) => r.metric(duplicateScreenings)))).reduce((a, b) => a + b, 0);
      const extra = (await pool!.query<{ n: string }>('SELECT count(*) AS n FROM (SELECT id FROM screenings GROUP BY id HAVING count(*) > 1) t')).rows[0]!.n;
      report.duplicated = Number(extra);
      const usage = await Promise.all(
        alive.map(async (r) => ({
          name: r.name,
          cpuSeconds: Math.round(await r.metric((l) => l.startsWith('checkpoint_gateway_process_cpu_seconds_total '))),
          rssMiB: Math.round((await r.metric((l) => l.startsWith('checkpoint_gateway_process_resident_memory_bytes '))) / 2 ** 20),
        })),
      );
      gateways = { count: replicas.length, absorbed, ...(gatewayKilledAt ? { killedAtS: (gatewayKilledAt - started) / 1000 } : {}), usage };
    }
    return {
      ...report,
      resent: ran.reduce((s, r) => s + r.resent, 0),
      failedPublishes: ran.reduce((s, r) => s + r.failedPublishes, 0),
      telemetry,
      ...(options.cmdSubscriptions !== false ? { commands: commandReport(subscribed, commandsSent, commandsReceived) } : {}),
      nodes,
      connectSeconds, ...(killed ? { killed: { node: killed.node, role: killed.role, atS: (killed.at - started) / 1000 } } : {}), ...(gateways ? { gateways } : {}) };
  } finally {
    workers.forEach((w) => w.kill());
    await Promise.all(replicas.map((r) => r.proc.stop({ signal: 'SIGKILL' })));
    await pool?.end();
    await cluster?.stop();
    await postgres?.stop();
    removeTempDir(dir);
  }
}

function formatReport(r: FleetRun): string {
  return [
    `sessions ${r.connected}/${r.sessions} connected in ${r.connectSeconds} s; published ${r.published}, accepted ${r.accepted} (${r.acceptedPerS}/s)`,
    `outbox: ${r.resent} publishes resent, ${r.failedPublishes} never acknowledged; telemetry (QoS 0): ${r.telemetry.published} sent${r.telemetry.stored === undefined ? '' : `, ${r.telemetry.stored} stored by the replicas alive at the end, from ${r.telemetry.devices} devices`}`,
    `stored ${r.stored}, lost ${r.lost}, duplicated ${r.duplicated}; publish→stored p50 ${r.latencyMs.p50} ms, p99 ${r.latencyMs.p99} ms; longest ingest gap ${r.maxReadGapMs} ms`,
    ...(r.gateways
      ? [
          `read by ${r.gateways.count} gateway replicas on PostgreSQL (stored/lost/duplicated from the database); redeliveries absorbed (already stored, not stored again): ${r.gateways.absorbed}` +
            (r.gateways.killedAtS !== undefined ? `; replica a killed (SIGKILL) ${r.gateways.killedAtS} s into the load` : '') +
            `; gateways: ${r.gateways.usage.map((g) => `${g.name} cpu ${g.cpuSeconds} s rss ${g.rssMiB} MiB`).join('; ')}`,
        ]
      : []),
    ...(r.commands
      ? [
          `commands (QoS 1, each session subscribed to its cmd topic: ${r.commands.subscribed}/${r.sessions}): ${r.commands.sent} sent, ${r.commands.delivered} delivered, ${r.commands.lost} lost, ${r.commands.duplicated} duplicated; send→device p50 ${r.commands.latencyMs.p50} ms, p99 ${r.commands.latencyMs.p99} ms`,
        ]
      : []),
    ...(r.killed ? [`node ${r.killed.node} (${r.killed.role === 'leader' ? '$MQTT_msgs leader' : 'not the $MQTT_msgs leader'}) killed (SIGKILL) ${r.killed.atS} s into the load; lost counts acknowledged screenings only (a failed publish is resent, as an outbox does)`] : []),
    `nodes: ${r.nodes.map((n) => `${n.name} cpu ${n.cpuPercent}% mem ${n.memMiB} MiB`).join('; ')}`,
  ].join('\n');
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const { values } = parseArgs({
    options: {
      sessions: { type: 'string' },
      processes: { type: 'string' },
      rate: { type: 'string' },
      duration: { type: 'string' },
      drain: { type: 'string' },
      'bcrypt-cost': { type: 'string' },
      'kill-node-at': { type: 'string' },
      'kill-node': { type: 'string' },
      gateways: { type: 'string' },
      postgres: { type: 'boolean', default: false },
      'kill-gateway-at': { type: 'string' },
      'telemetry-every': { type: 'string' },
      'reconnect-ms': { type: 'string' },
      'cmd-subscriptions': { type: 'string' },
      'commands-per-s': { type: 'string' },
      'mqtt-consumers': { type: 'string' },
      force: { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
    },
  });
  const num = (v: string | undefined, d: number) => (v === undefined ? d : Number(v));
  const onOff = (v: string | undefined, flag: string, d: boolean) => {
    if (v === undefined) return d;
    if (v !== 'on' && v !== 'off') throw new Error(`sim:fleet: ${flag} must be on or off, got ${v}`);
    return v === 'on';
  };
  try {
    const options = checkFleetOptions(
      {
        sessions: num(values.sessions, DEFAULT_FLEET.sessions),
        processes: num(values.processes, DEFAULT_FLEET.processes),
        ratePerCheckpoint: num(values.rate, DEFAULT_FLEET.ratePerCheckpoint),
        durationS: num(values.duration, DEFAULT_FLEET.durationS),
        drainS: num(values.drain, DEFAULT_FLEET.drainS),
        bcryptCost: num(values['bcrypt-cost'], DEFAULT_FLEET.bcryptCost),
        ...(values['kill-node-at'] !== undefined ? { killNodeAtS: Number(values['kill-node-at']) } : {}),
        ...(values['kill-node'] !== undefined ? { killNode: values['kill-node'] as FleetOptions['killNode'] } : {}),
        ...(values.gateways !== undefined ? { gateways: Number(values.gateways) } : {}),
        ...(values.postgres ? { postgres: true } : {}),
        ...(values['kill-gateway-at'] !== undefined ? { killGatewayAtS: Number(values['kill-gateway-at']) } : {}),
        telemetryEveryS: num(values['telemetry-every'], DEFAULT_FLEET.telemetryEveryS!),
        ...(values['reconnect-ms'] !== undefined ? { reconnectMs: Number(values['reconnect-ms']) } : {}),
        cmdSubscriptions: onOff(values['cmd-subscriptions'], '--cmd-subscriptions', DEFAULT_FLEET.cmdSubscriptions!),
        mqttConsumers: (values['mqtt-consumers'] ?? DEFAULT_FLEET.mqttConsumers) as FleetOptions['mqttConsumers'],
        commandsPerS: num(values['commands-per-s'], values['cmd-subscriptions'] === 'off' ? 0 : DEFAULT_FLEET.commandsPerS!),
      },
      values.force,
    );
    const run = await runFleet(options, (line) => process.stderr.write(`sim:fleet: ${line}\n`));
    process.stdout.write(values.json ? `${JSON.stringify(run, null, 2)}\n` : `${formatReport(run)}\n`);
    process.exitCode = run.lost > 0 ? 1 : 0;
  } catch (error) {
    process.stderr.write(`${(error as Error).message}\n`);
    process.exitCode = 2;
  }
}
