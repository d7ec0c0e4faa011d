/**
 * The OPC UA server on the PostgreSQL store (test-support startPostgres): startOpcuaServer over
 * the PG operational store and the PG user store, as the composition root wires it. A screening
 * committed before the start is in the day's counts; a secondary check ingested through the store
 * shows after eventsCommitted(); AcknowledgeAlert and the condition's Acknowledge acknowledge the
 * alerts in the database (audited, by the session's user); a wrong password opens no session.
 */
import { copyFileSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { X509Certificate } from 'node:crypto';
import pg from 'pg';
import pino from 'pino';
import { monotonicFactory } from 'ulid';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  AttributeIds,
  ClientMonitoredItem,
  ClientSubscription,
  DataType,
  MessageSecurityMode,
  OPCUAClient,
  SecurityPolicy,
  StatusCodes,
  TimestampsToReturn,
  UserTokenType,
  constructEventFilter,
  type ClientSession,
  type Variant,
} from 'node-opcua-client';
import { OPCUACertificateManager } from 'node-opcua';
import type { CheckpointState } from '@checkpoint/protocol';
import { createLoginGuard } from '@checkpoint/broker';
import { makeTempDir, startPostgres, waitFor, type PostgresServer } from '@checkpoint/test-support';
import type { AlertChange } from '../src/alerts.js';
import { resolveGatewayConfig } from '../src/config.js';
import { NAMESPACE_URI, startOpcuaServer, type GatewayOpcuaServer } from '../src/opcua/server.js';
import { createPostgresEventStore } from '../src/store/postgres/events.js';
import { migratePostgres } from '../src/store/postgres/migrations.js';
import { createPostgresOperationalStore, type AsyncOperationalStore } from '../src/store/postgres/operational.js';
import { createPostgresUserStore } from '../src/store/postgres/users.js';
import { API_PASSWORD, gatewayConfig, makeScreening } from './helpers/world.js';

const CLIENT_URI = 'urn:checkpoint:test-scada-pg';
let postgres: PostgresServer;
let pool: pg.Pool;
let store: AsyncOperationalStore;
/** How often the server read the events (its refreshes). */
let eventReads = 0;
let server: GatewayOpcuaServer;
const alertChanges: AlertChange[] = [];
const clientPki = makeTempDir('opcua-pg-client-pki');
let clientCertificateManager: OPCUACertificateManager;
let clientCertificateFile: string;
const open: Array<{ client: OPCUAClient; session: ClientSession | null }> = [];
let ns = 0;

async function connect(user: { userName: string; password: string }): Promise<ClientSession> {
  const client = OPCUAClient.create({
    applicationName: 'checkpoint-test-scada-pg',
    applicationUri: CLIENT_URI,
    clientCertificateManager,
    certificateFile: clientCertificateFile,
    privateKeyFile: clientCertificateManager.privateKey,
    securityMode: MessageSecurityMode.SignAndEncrypt,
    securityPolicy: SecurityPolicy.Basic256Sha256,
    endpointMustExist: false,
    connectionStrategy: { maxRetry: 0, initialDelay: 100, maxDelay: 200 },
    requestedSessionTimeout: 60_000,
  });
  const entry: { client: OPCUAClient; session: ClientSession | null } = { client, session: null };
  open.push(entry);
  await client.connect(`opc.tcp://127.0.0.1:${server.port}/UA/Checkpoint`);
  entry.session = await client.createSession({ type: UserTokenType.UserName, ...user });
  return entry.session;
}

const nodeId = (path: string) => `ns=${ns};s=${path}`;
const read = async (session: ClientSession, path: string): Promise<unknown> => (await session.read({ nodeId: nodeId(path), attributeId: AttributeIds.Value })).value.value;

function state(status: 'online' | 'offline'): CheckpointState {
  return {
    ts: new Date().toISOString(),
    site: 'hq',
    checkpoint: 'gate-1',
    status,
    versions: { agent: '0.1.0' },
    sources: { thermal: { kind: 'simulator', status: 'ok' }, visible: { kind: 'simulator', status: 'ok' } },
    model: { name: 'masked-face-640', sha256: 'b'.repeat(64) },
    calibration: { reference: 'ok', mode: 'absolute', thresholdC: 37.5, homography: true },
  };
}

/** Ingests through the PG store and tells the server, as the gateway's ingest does after a commit. */
async function ingest(s: ReturnType<typeof makeScreening>): Promise<void> {
  const outcome = await store.ingestScreening(s, Date.now());
  expect(outcome.stored).toBe(true);
  server.eventsCommitted();
}

const EVENT_FIELDS = ['EventId', 'ConditionName', 'Message', 'ActiveState.Id', 'AckedState.Id', 'Retain'] as const;
type AlarmEvent = { EventId: Buffer; ConditionName: string; Message: { text: string }; ActiveState: boolean; AckedState: boolean; Retain: boolean };

async function alarmEvents(session: ClientSession) {
  const subscription = ClientSubscription.create(session, { requestedPublishingInterval: 50, requestedMaxKeepAliveCount: 20, publishingEnabled: true });
  const events: AlarmEvent[] = [];
  const item = ClientMonitoredItem.create(
    subscription,
    { nodeId: 'i=2253', attributeId: AttributeIds.EventNotifier },
    { queueSize: 100, discardOldest: true, filter: constructEventFilter([...EVENT_FIELDS]) },
    TimestampsToReturn.Both,
  );
  item.on('changed', (fields: Variant[]) => {
    const e: Record<string, unknown> = {};
    EVENT_FIELDS.forEach((name, i) => (e[name.replace('.Id', '')] = fields[i]!.value));
    if (e.ConditionName) events.push(e as AlarmEvent);
  });
  await new Promise<void>((resolve) => item.once('initialized', () => resolve()));
  return { events, terminate: () => subscription.terminate() };
}

beforeAll(async () => {
  clientCertificateManager = new OPCUACertificateManager({ rootFolder: clientPki, automaticallyAcceptUnknownCertificate: false });
  await clientCertificateManager.initialize();
  clientCertificateFile = join(clientPki, 'own/certs/client_certificate.pem');
  await clientCertificateManager.createSelfSignedCertificate({
    applicationUri: CLIENT_URI,
    subject: '/CN=checkpoint-test-scada-pg',
    dns: ['localhost'],
    startDate: new Date(Date.now() - 86_400_000),
    validity: 30,
    outputFile: clientCertificateFile,
  });

  postgres = await startPostgres();
  pool = new pg.Pool({ host: postgres.socketDir, port: postgres.port, user: postgres.user, database: postgres.database, max: 4 });
  await migratePostgres(pool);
  const newId = monotonicFactory();
  store = createPostgresOperationalStore(pool, { escalateAfterMs: 600_000, invalidStormCount: 10, invalidStormWindowMs: 60_000 }, () => newId());
  const users = createPostgresUserStore(pool);
  await users.add({ name: 'guard', role: 'guard' }, API_PASSWORD);

  // Committed before the server starts: read by its snapshot.
  expect((await store.ingestState(state('online'), Date.now())).stored).toBe(true);
  expect((await store.ingestScreening(makeScreening({ decision: 'pass' }), Date.now())).stored).toBe(true);

  const dataDir = makeTempDir('gw-opcua-pg');
  mkdirSync(join(dataDir, 'pki/trusted/certs'), { recursive: true });
  copyFileSync(clientCertificateFile, join(dataDir, 'pki/trusted/certs/test-scada.pem'));
  const config = resolveGatewayConfig(gatewayConfig({ dataDir, mqttUrl: 'mqtt://127.0.0.1:1', opcua: { enabled: true, port: 0, resourcePath: '/UA/Checkpoint' } }));
  server = await startOpcuaServer({
    config: config.opcua,
    dataDir,
    store: {
      ...store,
      eventsAfter: (seq, limit) => {
        eventReads += 1;
        return store.eventsAfter(seq, limit);
      },
    },
    users,
    loginGuard: createLoginGuard({ maxFailures: 5, windowMs: 60_000, now: Date.now }),
    fleet: null,
    log: pino({ level: 'silent' }),
    now: Date.now,
    // Long enough that the hole test's held transaction is never given up on, even on a busy machine.
    eventGapWaitMs: 10_000,
    alertChanged(change) {
      alertChanges.push(change);
      server.eventsCommitted();
    },
  });
  await clientCertificateManager.trustCertificate(new X509Certificate(readFileSync(join(server.pkiDir, 'own/certs/certificate.pem'))).raw);
  const session = await connect({ userName: 'guard', password: API_PASSWORD });
  ns = ((await session.read({ nodeId: 'i=2255', attributeId: AttributeIds.Value })).value.value as string[]).indexOf(NAMESPACE_URI);
}, 120_000);

afterAll(async () => {
  for (const { client, session } of open) {
    await session?.close().catch(() => undefined);
    await client.disconnect().catch(() => undefined);
  }
  await server?.close();
  await pool?.end();
  await postgres?.stop();
  await clientCertificateManager?.dispose();
});

describe('OPC UA on PostgreSQL', () => {
  it('serves the snapshot read at start, then what is ingested after eventsCommitted()', async () => {
    const guard = await connect({ userName: 'guard', password: API_PASSWORD });
    expect(ns).toBe(2);
    expect(await read(guard, 'Site/Checkpoints/hq/gate-1/Online')).toBe(true);
    expect(await read(guard, 'Site/Checkpoints/hq/gate-1/PassedToday')).toBe(1);
    expect(await read(guard, 'Site/Checkpoints/hq/gate-1/OpenAlerts')).toBe(0);

    await ingest(makeScreening({ decision: 'pass' }));
    await ingest(makeScreening({ decision: 'secondary_check' }));
    await server.settled();
    expect(await read(guard, 'Site/Checkpoints/hq/gate-1/PassedToday')).toBe(2);
    expect(await read(guard, 'Site/Checkpoints/hq/gate-1/SecondaryChecksToday')).toBe(1);
    expect(await read(guard, 'Site/Checkpoints/hq/gate-1/LastTemperature')).toBeCloseTo(38.1, 5);
    expect(await read(guard, 'Site/Checkpoints/hq/gate-1/OpenAlerts')).toBe(1);
  });

  it('AcknowledgeAlert acknowledges the alert in PostgreSQL, audited with the session user', async () => {
    const guard = await connect({ userName: 'guard', password: API_PASSWORD });
    const s = makeScreening({ decision: 'secondary_check' });
    await ingest(s);
    await server.settled();
    const alert = (await store.alerts({ status: 'open', limit: 100 })).find((a) => a.screeningId === s.id);
    expect(alert).toBeDefined();
    const call = (note: string) =>
      guard.call({
        objectId: nodeId('Site/Checkpoints'),
        methodId: nodeId('Site/Checkpoints/AcknowledgeAlert'),
        inputArguments: [
          { dataType: DataType.String, value: alert!.id },
          { dataType: DataType.String, value: 'cleared' },
          { dataType: DataType.String, value: note },
        ],
      });
    const result = await call('checked again');
    expect(result.statusCode).toBe(StatusCodes.Good);
    const stored = await store.alert(alert!.id);
    expect(stored?.status).not.toBe('open');
    expect(stored?.acknowledgement).toMatchObject({ by: 'guard', outcome: 'cleared', note: 'checked again' });
    expect(alertChanges.some((c) => c.alert.id === alert!.id)).toBe(true);
    const audit = await store.auditLog(100);
    expect(audit.find((e) => e.action === 'opcua.AcknowledgeAlert' && e.target === alert!.id)).toMatchObject({ actor: 'guard' });
    // Twice: the store refuses (no longer open).
    expect((await call('')).statusCode).toBe(StatusCodes.BadInvalidState);
    // An unknown alert: not found.
    const unknown = await guard.call({
      objectId: nodeId('Site/Checkpoints'),
      methodId: nodeId('Site/Checkpoints/AcknowledgeAlert'),
      inputArguments: [
        { dataType: DataType.String, value: '01ARZ3NDEKTSV4RRFFQ69G5FAV' },
        { dataType: DataType.String, value: 'cleared' },
        { dataType: DataType.String, value: '' },
      ],
    });
    expect(unknown.statusCode).toBe(StatusCodes.BadNotFound);
  });

  it("the condition's Acknowledge acknowledges the alert in PostgreSQL; the condition ends acknowledged", async () => {
    const guard = await connect({ userName: 'guard', password: API_PASSWORD });
    const alarms = await alarmEvents(guard);
    const s = makeScreening({ decision: 'secondary_check' });
    await ingest(s);
    const alert = (await store.alerts({ status: 'open', limit: 100 })).find((a) => a.screeningId === s.id)!;
    await waitFor(() => alarms.events.some((e) => e.Message.text.includes(alert.id) && e.ActiveState === true), { what: 'the alert condition raised' });
    const raised = alarms.events.filter((e) => e.Message.text.includes(alert.id)).at(-1)!;
    const result = await guard.call({
      objectId: nodeId(`Site/Checkpoints/hq/gate-1/Alerts/${alert.id}`),
      methodId: 'i=9111',
      inputArguments: [
        { dataType: DataType.ByteString, value: raised.EventId },
        { dataType: DataType.LocalizedText, value: { text: 'referred: sent to triage' } },
      ],
    });
    expect(result.statusCode).toBe(StatusCodes.Good);
    expect((await store.alert(alert.id))?.acknowledgement).toMatchObject({ by: 'guard', outcome: 'referred', note: 'sent to triage' });
    expect((await store.auditLog(100)).find((e) => e.action === 'opcua.Acknowledge' && e.target === alert.id)).toMatchObject({ actor: 'guard' });
    await waitFor(() => alarms.events.some((e) => e.Message.text.includes(alert.id) && e.AckedState === true && e.Retain === false), { what: 'condition acknowledged and over' });
    await alarms.terminate();
  });

  it('waits at a hole in the seqs: an event committed after a later one is still applied, in seq order', async () => {
    const guard = await connect({ userName: 'guard', password: API_PASSWORD });
    const passed = async () => (await read(guard, 'Site/Checkpoints/hq/gate-1/PassedToday')) as number;
    const before = await passed();
    const summary = (temperatureC: number) => {
      const s = makeScreening({ decision: 'pass', temperatureC });
      return { id: s.id, ts: s.ts, site: s.site, checkpoint: s.checkpoint, decision: s.decision, reasons: s.reasons, mask: s.mask, temperatureC, thresholdC: s.thresholdC, mode: s.mode, snapshot: false };
    };
    // The first event's transaction takes its seq and stays open while a later one commits.
    const held = await pool.connect();
    try {
      await held.query('BEGIN');
      await createPostgresEventStore(held).append('screening', summary(36.1), Date.now());
      await createPostgresEventStore(pool).append('screening', summary(36.2), Date.now());
      server.eventsCommitted();
      await server.settled();
      expect(await passed()).toBe(before);
      await held.query('COMMIT');
    } finally {
      held.release();
    }
    server.eventsCommitted();
    await waitFor(async () => (await passed()) === before + 2, { what: 'both screenings counted' });
    // The newest screening's temperature.
    expect(await read(guard, 'Site/Checkpoints/hq/gate-1/LastTemperature')).toBeCloseTo(36.2, 5);
  });

  it('coalesces refreshes: one read for a burst of commits, one more for commits during a read', async () => {
    await server.settled();
    let before = eventReads;
    for (let i = 0; i < 10; i++) server.eventsCommitted();
    await server.settled();
    expect(eventReads - before).toBe(1);

    before = eventReads;
    server.eventsCommitted();
    await waitFor(() => eventReads > before, { what: 'a refresh reading', intervalMs: 1 });
    for (let i = 0; i < 5; i++) server.eventsCommitted();
    await server.settled();
    expect(eventReads - before).toBe(2);
  });

  it('refuses a wrong password', async () => {
    await expect(connect({ userName: 'guard', password: 'not-the-password' })).rejects.toThrow();
    await expect(connect({ userName: 'nobody', password: API_PASSWORD })).rejects.toThrow();
  });
});
