/**
 * The pure parts of the fleet simulation (`npm run sim:fleet`): options, how devices are spread
 * over worker processes, when each device publishes, and the report from what was acknowledged
 * and what was read back from the cluster.
 */
export interface FleetOptions {
  /** Simulated checkpoints, one persistent MQTT session and one broker user each. */
  sessions: number;
  /** Worker processes the sessions are spread over. */
  processes: number;
  /** Mean screenings per second per checkpoint (a realistic day: 0.1; peaks: 1). */
  ratePerCheckpoint: number;
  /** How long the load runs, after every session is connected. */
  durationS: number;
  /** How long to wait, with nothing more read back, before counting what is missing as lost. */
  drainS: number;
  /** bcrypt cost of the generated users (nats-server checks it on every CONNECT). */
  bcryptCost: number;
  /** `kill -9` a node this many seconds into the load (undefined: no fault). */
  killNodeAtS?: number;
  /** Which node: the `$MQTT_msgs` leader (default, the worst case) or one that is not. */
  killNode?: 'leader' | 'follower';
  /**
   * Read through this many real gateway processes (ingest.source jetstream) on one PostgreSQL
   * instead of the sim's own consumer; stored/lost/duplicated then come from the database and the
   * gateways' metrics (needs `postgres`).
   */
  gateways?: number;
  /** Start a PostgreSQL for the gateways (the only store `gateways` can share). */
  postgres?: boolean;
  /** `kill -9` one gateway replica this many seconds into the load (needs `gateways` >= 2). */
  killGatewayAtS?: number;
  /** QoS 0 telemetry from each checkpoint every this many seconds, as agents send it (0: none). */
  telemetryEveryS?: number;
  /** The devices' mean first reconnect wait, as the agent's `mqtt.reconnectMs` (30000 in cluster mode). */
  reconnectMs?: number;
  /**
   * Each device subscribes to its `cmd` topic with QoS 1 on every connect, as agents do (on
   * nats-server 2.9: one JetStream consumer per session). Default true.
   */
  cmdSubscriptions?: boolean;
  /**
   * The consumer nats-server makes for each QoS 1 subscription: `r1-memory` (default; nats-server
   * `mqtt { consumer_replicas: 1, consumer_memory_storage: true }`), `r3-memory`, or `r3-file`
   * (2.9's default with R3 streams: a raft group on disk per session, which stalled the cluster at
   * ~8,600 sessions here).
   */
  mqttConsumers?: 'r1-memory' | 'r3-memory' | 'r3-file';
  /** Commands per second to random devices during the load, sent as the gateway sends them (into `$MQTT_msgs`); needs cmdSubscriptions. */
  commandsPerS?: number;
}

export const DEFAULT_FLEET: FleetOptions = { sessions: 100, processes: 2, ratePerCheckpoint: 0.1, durationS: 30, drainS: 30, bcryptCost: 6, telemetryEveryS: 10, cmdSubscriptions: true, commandsPerS: 1, mqttConsumers: 'r1-memory' };

/** Past this many sessions a run takes minutes and most of a 2-core machine: `--force` says it is meant (10,000 ran here). */
export const MAX_SESSIONS_WITHOUT_FORCE = 500;

export function checkFleetOptions(o: FleetOptions, force = false): FleetOptions {
  const bad = (what: string) => {
    throw new Error(`sim:fleet: ${what}`);
  };
  if (!Number.isInteger(o.sessions) || o.sessions < 1) bad(`--sessions must be a positive integer, got ${o.sessions}`);
  if (o.sessions > MAX_SESSIONS_WITHOUT_FORCE && !force) bad(`--sessions ${o.sessions} is over ${MAX_SESSIONS_WITHOUT_FORCE}; add --force on a machine sized for it`);
  if (!Number.isInteger(o.processes) || o.processes < 1 || o.processes > o.sessions) bad(`--processes must be an integer from 1 to --sessions, got ${o.processes}`);
  if (!(o.ratePerCheckpoint > 0 && o.ratePerCheckpoint <= 100)) bad(`--rate must be in (0, 100] screenings/s per checkpoint, got ${o.ratePerCheckpoint}`);
  if (!(o.durationS > 0)) bad(`--duration must be positive seconds, got ${o.durationS}`);
  if (!(o.drainS >= 0)) bad(`--drain must be zero or positive seconds, got ${o.drainS}`);
  if (o.killNodeAtS !== undefined && !(o.killNodeAtS >= 0 && o.killNodeAtS < o.durationS)) bad(`--kill-node-at must be within the run (0 to --duration), got ${o.killNodeAtS}`);
  if (o.killNode !== undefined && !['leader', 'follower'].includes(o.killNode)) bad(`--kill-node must be leader or follower, got ${String(o.killNode)}`);
  if (o.killNode !== undefined && o.killNodeAtS === undefined) bad('--kill-node needs --kill-node-at');
  if (o.gateways !== undefined) {
    if (!Number.isInteger(o.gateways) || o.gateways < 1 || o.gateways > 8) bad(`--gateways must be an integer from 1 to 8, got ${o.gateways}`);
    if (!o.postgres) bad('--gateways needs --postgres: replicas share one PostgreSQL');
  }
  if (o.postgres && o.gateways === undefined) bad('--postgres is for the gateway replicas: add --gateways N');
  if (o.killGatewayAtS !== undefined) {
    if ((o.gateways ?? 0) < 2) bad('--kill-gateway-at needs --gateways 2 or more (one must survive)');
    if (!(o.killGatewayAtS >= 0 && o.killGatewayAtS < o.durationS)) bad(`--kill-gateway-at must be within the run (0 to --duration), got ${o.killGatewayAtS}`);
  }
  if (o.telemetryEveryS !== undefined && !(o.telemetryEveryS === 0 || (o.telemetryEveryS >= 1 && o.telemetryEveryS <= 600))) bad(`--telemetry-every must be 0 (none) or 1 to 600 seconds, got ${o.telemetryEveryS}`);
  if (o.reconnectMs !== undefined && !(Number.isInteger(o.reconnectMs) && o.reconnectMs >= 100 && o.reconnectMs <= 60_000)) bad(`--reconnect-ms must be an integer from 100 to 60000, got ${o.reconnectMs}`);
  if (o.mqttConsumers !== undefined && !['r1-memory', 'r3-memory', 'r3-file'].includes(o.mqttConsumers)) bad(`--mqtt-consumers must be r1-memory, r3-memory or r3-file, got ${String(o.mqttConsumers)}`);
  if (o.commandsPerS !== undefined && !(o.commandsPerS >= 0 && o.commandsPerS <= 1000)) bad(`--commands-per-s must be from 0 to 1000, got ${o.commandsPerS}`);
  if ((o.commandsPerS ?? 0) > 0 && o.cmdSubscriptions === false) bad('--commands-per-s needs the devices subscribed to cmd (--cmd-subscriptions on)');
  if (!Number.isInteger(o.bcryptCost) || o.bcryptCost < 4 || o.bcryptCost > 14) bad(`--bcrypt-cost must be an integer from 4 to 14, got ${o.bcryptCost}`);
  return o;
}

export interface SimDevice {
  name: string;
  password: string;
  site: string;
  checkpoint: string;
}

/** Device i: user `sim-cp-<i>` at site `sim`, checkpoint `cp-<i>`. */
export function simDevice(i: number, password: string): SimDevice {
  return { name: `sim-cp-${i}`, password, site: 'sim', checkpoint: `cp-${i}` };
}

const CROCKFORD = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';

/** A ULID (the protocol's screening id): 48-bit time, 80 random bits, Crockford base32. */
export function simUlid(timeMs: number, random: () => number): string {
  let time = '';
  for (let t = timeMs, i = 0; i < 10; i++, t = Math.floor(t / 32)) time = CROCKFORD[t % 32]! + time;
  let rest = '';
  for (let i = 0; i < 16; i++) rest += CROCKFORD[Math.floor(random() * 32) % 32]!;
  return time + rest;
}

/** A protocol-valid screening (what an agent sends) for the gateways to store. */
export function simScreening(device: SimDevice, id: string, atMs: number) {
  return {
    id,
    ts: new Date(atMs).toISOString(),
    site: device.site,
    checkpoint: device.checkpoint,
    trackId: 1,
    temperatureC: 36.6,
    method: 'canthus',
    blackbody: { setC: 35, measuredC: 34.8, offsetC: 0.2 },
    ambientC: 22,
    mask: 'mask',
    maskScore: 0.9,
    faceScore: 0.95,
    decision: 'pass',
    reasons: [],
    thresholdC: 37.3,
    mode: 'absolute',
    frames: 5,
    latencyMs: 400,
    model: { name: 'sim', sha256: 'a'.repeat(64) },
    snapshot: false,
  };
}

/** Protocol-valid telemetry, as an agent sends it every `telemetry.intervalMs` (10 s by default). */
export function simTelemetry(device: SimDevice, atMs: number) {
  return {
    ts: new Date(atMs).toISOString(),
    site: device.site,
    checkpoint: device.checkpoint,
    fps: 9,
    stages: { decode: 3, detect: 41, thermal: 2 },
    cpuTempC: 55,
    ambientC: 22,
    blackbody: { setC: 35, measuredC: 34.8, status: 'ok' },
    queueDepth: 0,
  };
}

/** Splits device indexes 0..sessions-1 round-robin over `processes` workers. */
export function assignDevices(sessions: number, processes: number): number[][] {
  const groups: number[][] = Array.from({ length: processes }, () => []);
  for (let i = 0; i < sessions; i++) groups[i % processes]!.push(i);
  return groups;
}

/** Poisson arrivals: the wait before a device's next screening, for a uniform `u` in (0, 1]. */
export function nextArrivalMs(ratePerS: number, u: number): number {
  return (Math.log(1 / Math.max(u, Number.MIN_VALUE)) / ratePerS) * 1000;
}

export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/** Commands sent to devices and what reached them (QoS 1: kept in an offline device's session). */
export interface CommandReport {
  /** Sessions whose `cmd` subscription was granted on their first connect. */
  subscribed: number;
  sent: number;
  /** Distinct commands that reached their device. */
  delivered: number;
  /** Sent but never received by the end of the drain. */
  lost: number;
  /** Extra copies received (QoS 1 redeliveries). */
  duplicated: number;
  /** Send → received by the device, ms. */
  latencyMs: { p50: number; p99: number };
}

/** The command report from what was sent (id → send time) and received (id → [first receive time, copies]). */
export function commandReport(subscribed: number, sent: ReadonlyMap<string, number>, received: ReadonlyMap<string, { firstAt: number; copies: number }>): CommandReport {
  const latencies: number[] = [];
  let duplicated = 0;
  for (const [id, sentAt] of sent) {
    const r = received.get(id);
    if (!r) continue;
    latencies.push(r.firstAt - sentAt);
    duplicated += r.copies - 1;
  }
  latencies.sort((a, b) => a - b);
  return {
    subscribed,
    sent: sent.size,
    delivered: latencies.length,
    lost: sent.size - latencies.length,
    duplicated,
    latencyMs: { p50: percentile(latencies, 50), p99: percentile(latencies, 99) },
  };
}

export interface FleetReport {
  sessions: number;
  connected: number;
  /** Screenings published (QoS 1). */
  published: number;
  /** Acknowledged by the cluster (PUBACK). */
  accepted: number;
  /** Distinct accepted screenings read back from the cluster's stream. */
  stored: number;
  /** Accepted but never read back. */
  lost: number;
  /** Extra copies read back (same id more than once). */
  duplicated: number;
  /** Publish → read back, ms. */
  latencyMs: { p50: number; p99: number };
  acceptedPerS: number;
  /** Longest time between two consecutive first reads: how long ingest stalled at worst. */
  maxReadGapMs: number;
}

/**
 * The report from what workers saw acknowledged (`accepted`: id → send time) and what the
 * reader got (`reads`: id → first read time and copies).
 */
export function fleetReport(input: {
  sessions: number;
  connected: number;
  published: number;
  accepted: ReadonlyMap<string, number>;
  reads: ReadonlyMap<string, { firstAt: number; copies: number }>;
  loadSeconds: number;
}): FleetReport {
  const latencies: number[] = [];
  let lost = 0;
  for (const [id, sentAt] of input.accepted) {
    const read = input.reads.get(id);
    if (read) latencies.push(read.firstAt - sentAt);
    else lost++;
  }
  latencies.sort((a, b) => a - b);
  const duplicated = [...input.reads.values()].reduce((sum, r) => sum + r.copies - 1, 0);
  const readTimes = [...input.reads.values()].map((r) => r.firstAt).sort((a, b) => a - b);
  const maxReadGapMs = readTimes.slice(1).reduce((max, t, i) => Math.max(max, t - readTimes[i]!), 0);
  return {
    sessions: input.sessions,
    connected: input.connected,
    published: input.published,
    accepted: input.accepted.size,
    stored: latencies.length,
    lost,
    duplicated,
    latencyMs: { p50: percentile(latencies, 50), p99: percentile(latencies, 99) },
    acceptedPerS: Math.round(input.accepted.size / Math.max(input.loadSeconds, 1e-9)),
    maxReadGapMs,
  };
}
