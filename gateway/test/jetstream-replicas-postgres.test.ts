/**
 * Gateway replicas (issue #18): a 3-node NATS cluster (users and permissions from
 * `checkpoint-broker nats-export`), ONE PostgreSQL, TWO gateway processes with
 * `ingest.source: jetstream` sharing the durable consumer on `$MQTT_msgs`. Devices (mqtt.js,
 * per-device credentials, every node listed) publish QoS 1 screenings throughout, resending what
 * was not acknowledged (the agent's outbox). One gateway replica is killed with SIGKILL, later the
 * NATS node leading `$MQTT_msgs`: every acknowledged screening is in PostgreSQL exactly once,
 * redeliveries are absorbed, and the longest ingest gap (read from `received_ms`) is printed and
 * bounded.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import mqtt, { type MqttClient } from 'mqtt';
import { connect as natsConnect, type NatsConnection } from 'nats';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exportNats, openUserStore } from '@checkpoint/broker';
import { checkpointTopics } from '@checkpoint/protocol';
import {
  freePort,
  logTail,
  makeTempDir,
  spawnServer,
  startNatsCluster,
  startPostgres,
  waitFor,
  type NatsCluster,
  type PostgresServer,
  type ServerProcess,
} from '@checkpoint/test-support';
import { MQTT_STREAM } from '../src/ingest/jetstream-consumer.js';
import { createPostgresUserStore } from '../src/store/postgres/users.js';
import { API_PASSWORD, ApiClient, makeScreening } from './helpers/world.js';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const PASSWORD = 'nats-replicas-password-1';
const OPERATOR_PASSWORD = 'nats-replicas-operator-1';
const DEVICES = ['gate-1', 'gate-2', 'gate-3'] as const;
/** A device on the node that will crash, which does not come back: offline from silence only. */
const WATCHED = { site: 'hq', checkpoint: 'gate-9' } as const;
const OFFLINE_AFTER_S = 5;
/** Publishes in flight per device (the agent's outbox keeps a few unacknowledged). */
const WINDOW = 4;
/** Pause between a device's publishes: ~3 × 4 / 20 ms ≈ 600/s at most, well under what the box takes. */
const PACE_MS = 20;
const log = (line: string) => console.log(`[jetstream-replicas] ${line}`);

let cluster: NatsCluster;
let postgres: PostgresServer;
let pool: pg.Pool;
let admin: NatsConnection;
let dir: string;
const gateways: ServerProcess[] = [];

beforeAll(async () => {
  dir = makeTempDir('gw-js-replicas');
  const users = openUserStore(join(dir, 'users.sqlite'), { scrypt: { N: 1024, r: 8, p: 1 }, mosquittoHashIterations: 0, natsBcryptCost: 4 });
  await users.add({ name: 'gw', role: 'gateway' }, PASSWORD);
  for (const cp of [...DEVICES, WATCHED.checkpoint]) await users.add({ name: `edge-${cp}`, role: 'edge', site: 'hq', checkpoint: cp }, PASSWORD);
  const exported = exportNats(users, join(dir, 'auth.conf'));
  users.close();
  // A test-only operator (plain password) to find and move the stream leader.
  const authorization = readFileSync(exported.file, 'utf8').replace(
    '  users = [\n',
    `  users = [\n    { user: "operator", password: ${JSON.stringify(OPERATOR_PASSWORD)}, permissions: { publish: ">", subscribe: ">" } }\n`,
  );
  [cluster, postgres] = await Promise.all([startNatsCluster({ authorization }), startPostgres()]);
  pool = new pg.Pool({ connectionString: postgres.url, max: 2 });
  admin = await natsConnect({ servers: cluster.natsUrls, user: 'operator', pass: OPERATOR_PASSWORD });
}, 120_000);

afterAll(async () => {
  await Promise.all(gateways.map((g) => g.stop({ signal: 'SIGKILL' })));
  await admin?.close();
  await pool?.end();
  await cluster?.stop();
  await postgres?.stop();
});

/** A gateway process on the shared database, reading the shared durable consumer. */
async function startReplica(name: string, mqttNode: number) {
  const port = await freePort();
  const configFile = join(dir, `${name}.json`);
  writeFileSync(
    configFile,
    JSON.stringify({
      dataDir: join(dir, name),
      logLevel: 'silent',
      http: { host: '127.0.0.1', port: 0 },
      opcua: { enabled: false },
      influx: { url: null },
      ingest: { source: 'jetstream' },
      mqtt: { url: cluster.mqttUrls[mqttNode], username: 'gw', password: PASSWORD, clientId: `gw-replica-${name}`, reconnectMs: 200 },
      nats: { servers: cluster.natsUrls, user: 'gw', password: PASSWORD, fetchBatch: 100 },
      store: { backend: 'postgres', postgres: { url: postgres.url } },
      devices: { offlineAfterS: OFFLINE_AFTER_S },
    }),
  );
  const logFile = join(dir, `${name}.log`);
  const proc = spawnServer('node', [join(REPO, 'scripts/run-ts.mjs'), 'gateway/test/fixtures/gateway-process.ts', 'run', '--config', configFile], {
    logFile,
    env: { ...process.env, CHECKPOINT_HTTP_PORT: String(port), CHECKPOINT_LOG_LEVEL: 'info' },
    cwd: REPO,
  });
  gateways.push(proc);
  const base = `http://127.0.0.1:${port}`;
  await waitFor(async () => (await fetch(`${base}/healthz`).catch(() => null))?.status === 200, { what: `${name} healthy\n${logTail(logFile)}`, timeoutMs: 60_000 });
  /** Screenings this replica stored, or found already stored (a redelivery absorbed). */
  const screenings = async (result: 'stored' | 'duplicate') => {
    const text = await (await fetch(`${base}/metrics`)).text();
    const line = text.split('\n').find((l) => l.startsWith('checkpoint_gateway_messages_total{') && l.includes('channel="screening"') && l.includes(`result="${result}"`));
    return line ? Number(line.split(' ').pop()) : 0;
  };
  return { name, base, proc, logFile, screenings };
}

/** A device on the cluster: every node listed, starting at `node`; mqtt.js moves on when its node dies. */
function connectDevice(cp: string, node: number): Promise<MqttClient> {
  const servers = cluster.nodes.map((_, i) => cluster.nodes[(node + i) % cluster.nodes.length]!).map((n) => ({ host: n.host, port: n.mqttPort }));
  const client = mqtt.connect({ servers, protocol: 'mqtt', username: `edge-${cp}`, password: PASSWORD, clientId: `edge-hq-${cp}`, reconnectPeriod: 200, connectTimeout: 5000 });
  client.on('error', () => undefined); // reconnects by itself
  return new Promise((resolve) => client.once('connect', () => resolve(client)));
}

const count = async (sql: string, params: unknown[] = []) => Number((await pool.query<{ n: string }>(sql, params)).rows[0]!.n);

describe('two gateway replicas on one PostgreSQL reading one durable JetStream consumer', () => {
  it('loses no acknowledged screening through a SIGKILL of a replica and of the node leading $MQTT_msgs', async () => {
    // The first replica makes the first MQTT connection (nats-server then creates $MQTT_msgs) and
    // the durable consumer before any device publishes (interest retention).
    const a = await startReplica('a', 0);
    await createPostgresUserStore(pool).add({ name: 'guard', role: 'guard' }, API_PASSWORD);
    const b = await startReplica('b', 1);
    const guard = await ApiClient.login(b.base, 'guard');
    const watchedStatus = async () =>
      ((await guard.get('/api/devices')).body.devices as Array<{ checkpoint: string; status: string }>).find((d) => d.checkpoint === WATCHED.checkpoint)?.status;
    const jsm = await admin.jetstreamManager({ checkAPI: false });
    await waitFor(async () => ((await jsm.consumers.info(MQTT_STREAM, 'checkpoint-gateway').catch(() => null))?.num_waiting ?? 0) >= 2, {
      what: 'both replicas pulling from the durable consumer',
      timeoutMs: 30_000,
    });

    const devices = await Promise.all(DEVICES.map((cp, i) => connectDevice(cp, i)));
    const acked = new Map<string, number>(); // id → when its PUBACK came
    let stop = false;
    let resent = 0;
    let trackId = 0;
    const publishing = Promise.all(
      devices.flatMap((device, d) =>
        Array.from({ length: WINDOW }, async () => {
          while (!stop) {
            const s = makeScreening({ site: 'hq', checkpoint: DEVICES[d], trackId: trackId++ });
            for (;;) {
              try {
                await device.publishAsync(checkpointTopics.screening(s), JSON.stringify(s), { qos: 1 });
                acked.set(s.id, Date.now());
                break;
              } catch {
                resent++; // "connection closed" during an election: the outbox sends it again
                await new Promise((resolve) => setTimeout(resolve, 200));
              }
            }
            await new Promise((resolve) => setTimeout(resolve, PACE_MS));
          }
        }),
      ),
    );
    const stored = () => count('SELECT count(*) AS n FROM screenings');
    try {
      await waitFor(async () => acked.size >= 300 && (await stored()) >= 200, { what: '300 screenings acknowledged, 200 stored', timeoutMs: 60_000 });
      // Both replicas took part before the kill (one consumer, shared).
      const [aStored, bStored] = [await a.screenings('stored'), await b.screenings('stored')];
      expect(aStored).toBeGreaterThan(0);
      expect(bStored).toBeGreaterThan(0);
      const aDuplicatesBefore = await a.screenings('duplicate');
      const gatewayKilledAt = Date.now();
      await a.proc.stop({ signal: 'SIGKILL' });
      const ackedAtGatewayKill = acked.size;
      await waitFor(async () => acked.size >= ackedAtGatewayKill + 300 && (await count('SELECT count(*) AS n FROM screenings WHERE received_ms > $1', [gatewayKilledAt])) >= 200, {
        what: () => `300 more acknowledged and 200 stored by b after a was killed\n${logTail(b.logFile)}`,
        timeoutMs: 60_000,
      });

      const leader = (await jsm.streams.info(MQTT_STREAM)).cluster?.leader;
      const node = cluster.nodes.find((n) => n.name === leader);
      if (!node) throw new Error(`no node leads ${MQTT_STREAM} (leader ${leader})`);
      // A device on that node only, with its last will, sending telemetry every second until the crash.
      const state = (status: 'online' | 'offline') => JSON.stringify({ status, ts: new Date().toISOString(), ...WATCHED });
      const stateTopic = checkpointTopics.state(WATCHED);
      const watched = mqtt.connect({
        host: node.host,
        port: node.mqttPort,
        username: `edge-${WATCHED.checkpoint}`,
        password: PASSWORD,
        clientId: `edge-hq-${WATCHED.checkpoint}`,
        reconnectPeriod: 0,
        will: { topic: stateTopic, payload: Buffer.from(state('offline')), qos: 1, retain: true },
      });
      watched.on('error', () => undefined);
      await new Promise((resolve) => watched.once('connect', resolve));
      await watched.publishAsync(stateTopic, state('online'), { qos: 1, retain: true });
      const telemetry = () =>
        JSON.stringify({ ts: new Date().toISOString(), ...WATCHED, fps: 8.7, stages: { decode: 4.1 }, cpuTempC: 61.2, ambientC: 21.5, blackbody: { setC: 35, measuredC: 34.6, status: 'ok' }, queueDepth: 0, rssMb: 200 });
      const beat = setInterval(() => watched.publish(checkpointTopics.telemetry(WATCHED), telemetry(), { qos: 0 }), 1000);
      try {
        await waitFor(async () => (await watchedStatus()) === 'online', { what: `${WATCHED.checkpoint} online in b's /api/devices`, timeoutMs: 30_000 });
      } finally {
        clearInterval(beat);
      }
      const nodeKilledAt = Date.now();
      await cluster.kill(node, 'SIGKILL');
      watched.end(true);
      const ackedAtNodeKill = acked.size;
      await waitFor(async () => acked.size >= ackedAtNodeKill + 300 && (await count('SELECT count(*) AS n FROM screenings WHERE received_ms > $1', [nodeKilledAt])) >= 200, {
        what: () => `300 more acknowledged and 200 stored after ${node.name} was killed (${acked.size - ackedAtNodeKill} acked)\n${logTail(b.logFile)}`,
        timeoutMs: 60_000,
      });
      // No last will from a crashed node: the silence rule reports the device offline.
      await waitFor(async () => (await watchedStatus()) === 'offline', { what: `${WATCHED.checkpoint} offline in b's /api/devices`, timeoutMs: 30_000 });
      const offlineAfterMs = Date.now() - nodeKilledAt;
      const storedStatus = (await pool.query<{ status: string }>('SELECT status FROM devices WHERE checkpoint = $1', [WATCHED.checkpoint])).rows[0]?.status;
      log(`${WATCHED.checkpoint} (on ${node.name}, not reconnecting) reported offline ${(offlineAfterMs / 1000).toFixed(1)} s after the crash (devices.offlineAfterS ${OFFLINE_AFTER_S}); its stored state: ${storedStatus} (${storedStatus === 'online' ? 'no last will' : 'last will arrived'})`);
      stop = true;
      await publishing;
      const publishEndedAt = Date.now();
      await Promise.all(devices.map((d) => d.endAsync()));

      const ids = [...acked.keys()];
      let missing = ids.length;
      await waitFor(async () => (missing = ids.length - (await count('SELECT count(*) AS n FROM screenings WHERE id = ANY($1)', [ids]))) === 0, {
        what: () => `every acknowledged screening stored (${missing} of ${ids.length} missing)\n${logTail(b.logFile)}`,
        timeoutMs: 60_000,
      });
      // Exactly once each: the primary key makes twice impossible, the query shows it.
      const twice = await pool.query<{ id: string; n: string }>('SELECT id, count(*) AS n FROM screenings GROUP BY id HAVING count(*) > 1');
      expect(twice.rows).toEqual([]);
      expect(await stored()).toBe(ids.length); // nothing stored that was never acknowledged... or resent: a resend keeps its id
      const received = (await pool.query<{ r: string }>('SELECT received_ms AS r FROM screenings ORDER BY received_ms')).rows.map((r) => Number(r.r));
      // The longest pause in storing while devices were publishing, from the first kill on.
      let longestGap = 0;
      let gapEnd = 0;
      for (let i = 1; i < received.length; i++) {
        const from = Math.max(received[i - 1]!, gatewayKilledAt);
        if (received[i]! > gatewayKilledAt && from < publishEndedAt && received[i]! - from > longestGap) {
          longestGap = received[i]! - from;
          gapEnd = received[i]!;
        }
      }
      const absorbed = (await b.screenings('duplicate')) + aDuplicatesBefore;
      const gapAfter = gapEnd >= nodeKilledAt ? `${node.name} (${MQTT_STREAM} leader) kill` : 'replica kill';
      log(
        `${ids.length} screenings acknowledged from ${DEVICES.length} devices (${WINDOW} in flight each), all stored once in PostgreSQL (before the kills a stored ${aStored}, b ${bStored}); ` +
          `SIGKILL of replica a, then of ${node.name} leading ${MQTT_STREAM}: 0 lost, ${absorbed} redeliveries absorbed (b's count, a's before its kill), ` +
          `${resent} publishes resent; longest ingest gap ${(longestGap / 1000).toFixed(1)} s (after the ${gapAfter}); ` +
          `publishing ${((publishEndedAt - gatewayKilledAt) / 1000).toFixed(1)} s from the first kill`,
      );
      expect(longestGap).toBeLessThan(15_000);
      expect(acked.size).toBe(ids.length);
    } finally {
      stop = true;
      await publishing.catch(() => undefined);
    }
  }, 240_000);
});
