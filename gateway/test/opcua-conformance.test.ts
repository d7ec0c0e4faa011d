/* eslint-disable @typescript-eslint/no-explicit-any -- JSON bodies of API responses, event fields */
/**
 * Conformance list of issue 20, run with node-opcua-client as the independent client (Python
 * asyncua is not installable here: no PyPI, no Debian package). Each test is one item of the list
 * a SCADA integrator checked: writes refused for every role, user-token policies, per-alert
 * conditions with stable EventIds, AckedState events, ConditionRefresh with the retained
 * conditions, and the address-space items (types, browse, endpoints, certificate, keep-alive).
 */
import { copyFileSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { X509Certificate } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MqttClient } from 'mqtt';
import {
  AttributeIds,
  BrowseDirection,
  ClientMonitoredItem,
  ClientSubscription,
  DataType,
  MessageSecurityMode,
  NodeClass,
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
import { checkpointTopics, type CheckpointState } from '@checkpoint/protocol';
import { makeTempDir, waitFor } from '@checkpoint/test-support';
import { createGateway, type Gateway } from '../src/index.js';
import { NAMESPACE_URI } from '../src/opcua/server.js';
import { API_PASSWORD, ApiClient, connectEdge, gatewayConfig, makeScreening, startTestBroker, type TestBroker } from './helpers/world.js';

const CLIENT_URI = 'urn:checkpoint:conformance-scada';
const ROLES = ['guard', 'dispatcher', 'admin'] as const;
let broker: TestBroker;
let gateway: Gateway;
let dataDir: string;
let edge: MqttClient;
let guardApi: ApiClient;
const clientPki = makeTempDir('opcua-conformance-client');
let cm: OPCUACertificateManager;
let certificateFile: string;
const open: Array<{ client: OPCUAClient; session: ClientSession | null }> = [];
let ns = 0;
const nodeId = (path: string) => `ns=${ns};s=${path}`;
const CP = 'Site/Checkpoints/hq/gate-1';

async function connectClient() {
  const client = OPCUAClient.create({
    applicationName: 'checkpoint-conformance-scada',
    applicationUri: CLIENT_URI,
    clientCertificateManager: cm,
    certificateFile,
    privateKeyFile: cm.privateKey,
    securityMode: MessageSecurityMode.SignAndEncrypt,
    securityPolicy: SecurityPolicy.Basic256Sha256,
    // Dial 127.0.0.1 as the test does; the endpoint list is checked in its own test.
    endpointMustExist: false,
    connectionStrategy: { maxRetry: 0, initialDelay: 100, maxDelay: 200 },
    requestedSessionTimeout: 60_000,
  });
  const entry: { client: OPCUAClient; session: ClientSession | null } = { client, session: null };
  open.push(entry);
  await client.connect(`opc.tcp://127.0.0.1:${gateway.opcua!.port}${gateway.config.opcua.resourcePath}`);
  return entry;
}

async function login(userName: string): Promise<ClientSession> {
  const entry = await connectClient();
  entry.session = await entry.client.createSession({ type: UserTokenType.UserName, userName, password: API_PASSWORD });
  return entry.session;
}

async function publishState(state: Partial<CheckpointState> & { status: 'online' | 'offline' }) {
  const payload: CheckpointState = {
    ts: new Date().toISOString(),
    site: 'hq',
    checkpoint: 'gate-1',
    ...(state.status === 'online'
      ? {
          versions: { agent: '0.1.0' },
          sources: { thermal: { kind: 'simulator', status: 'ok' }, visible: { kind: 'simulator', status: 'ok' } },
          model: { name: 'masked-face-640', sha256: 'c'.repeat(64) },
          calibration: { reference: 'ok', mode: 'absolute', thresholdC: 37.3, homography: true },
        }
      : {}),
    ...state,
  };
  await edge.publishAsync(checkpointTopics.state(payload), JSON.stringify(payload), { qos: 1, retain: true });
}

async function secondaryCheck() {
  const s = makeScreening({ checkpoint: 'gate-1', decision: 'secondary_check' });
  await edge.publishAsync(checkpointTopics.screening(s), JSON.stringify(s), { qos: 1 });
  let alert: { id: string } | undefined;
  await waitFor(
    async () => {
      alert = (await guardApi.get('/api/alerts?checkpoint=gate-1')).body.alerts.find((a: any) => a.screeningId === s.id);
      return alert !== undefined;
    },
    { what: `the alert of screening ${s.id}` },
  );
  return alert!.id;
}

const FIELDS = ['EventId', 'EventType', 'ConditionName', 'SourceName', 'Message', 'ActiveState.Id', 'AckedState.Id', 'Retain', 'ConditionId', 'Comment', 'ClientUserId'] as const;
type EventRecord = Record<'EventId' | 'EventType' | 'ConditionName' | 'SourceName' | 'Message' | 'ActiveState' | 'AckedState' | 'Retain' | 'ConditionId' | 'Comment' | 'ClientUserId', any>;

/**
 * Events on the Server object as asyncua subscribes by default: queue size 0 (the server picks
 * the size), so a server that revises it to 1 keeps only the last event of a burst.
 */
async function serverEvents(session: ClientSession, queueSize = 0) {
  const subscription = ClientSubscription.create(session, { requestedPublishingInterval: 50, requestedMaxKeepAliveCount: 20, publishingEnabled: true });
  const events: EventRecord[] = [];
  const item = ClientMonitoredItem.create(
    subscription,
    { nodeId: 'i=2253', attributeId: AttributeIds.EventNotifier },
    { queueSize, discardOldest: true, filter: constructEventFilter([...FIELDS]) },
    TimestampsToReturn.Both,
  );
  item.on('changed', (fields: Variant[]) => {
    const e = {} as EventRecord;
    FIELDS.forEach((name, i) => (e[name.replace('.Id', '') as keyof EventRecord] = fields[i]!.value));
    events.push(e);
  });
  await new Promise<void>((resolve) => item.once('initialized', () => resolve()));
  await waitFor(() => subscription.subscriptionId !== undefined && subscription.subscriptionId !== 0, { what: 'subscription created' });
  return { events, subscription, item, terminate: () => subscription.terminate() };
}

const ofAlert = (events: EventRecord[], alertId: string) => events.filter((e) => typeof e.Message?.text === 'string' && e.Message.text.includes(alertId));

const acknowledge = (session: ClientSession, conditionId: unknown, eventId: Buffer, comment: string) =>
  session.call({ objectId: conditionId as string, methodId: 'i=9111', inputArguments: [{ dataType: DataType.ByteString, value: eventId }, { dataType: DataType.LocalizedText, value: { text: comment } }] });

beforeAll(async () => {
  cm = new OPCUACertificateManager({ rootFolder: clientPki, automaticallyAcceptUnknownCertificate: false });
  await cm.initialize();
  certificateFile = join(clientPki, 'own/certs/client_certificate.pem');
  await cm.createSelfSignedCertificate({ applicationUri: CLIENT_URI, subject: '/CN=conformance-scada', dns: ['localhost'], startDate: new Date(Date.now() - 86_400_000), validity: 30, outputFile: certificateFile });
  broker = await startTestBroker();
  dataDir = makeTempDir('gw-opcua-conformance');
  mkdirSync(join(dataDir, 'pki/trusted/certs'), { recursive: true });
  copyFileSync(certificateFile, join(dataDir, 'pki/trusted/certs/conformance-scada.pem'));
  gateway = await createGateway(gatewayConfig({ dataDir, mqttUrl: broker.url, opcua: { port: 0 } }));
  for (const role of ROLES) await gateway.users.add({ name: role, role }, API_PASSWORD);
  await cm.trustCertificate(new X509Certificate(readFileSync(join(dataDir, 'pki/own/certs/certificate.pem'))).raw);
  await waitFor(() => gateway.mqttConnected(), { what: 'gateway connected to the broker' });
  edge = await connectEdge(broker.url, 'gate-1');
  guardApi = await ApiClient.login(gateway.url, 'guard');
  const session = await login('guard');
  ns = ((await session.read({ nodeId: 'i=2255', attributeId: AttributeIds.Value })).value.value as string[]).indexOf(NAMESPACE_URI);
  await publishState({ status: 'online' });
  await waitFor(async () => (await session.read({ nodeId: nodeId(`${CP}/Threshold`), attributeId: AttributeIds.Value })).value.value === 37.3, { what: 'gate-1 threshold' });
}, 120_000);

afterAll(async () => {
  for (const { client, session } of open) {
    await session?.close().catch(() => undefined);
    await client.disconnect().catch(() => undefined);
  }
  await edge?.endAsync();
  await gateway?.close();
  await broker?.close();
  await cm?.dispose();
});

/** Every variable below a node, following hierarchical references (as a SCADA tag browser does). */
async function variablesBelow(session: ClientSession, start: string): Promise<string[]> {
  const found: string[] = [];
  const seen = new Set<string>();
  const queue = [start];
  while (queue.length) {
    const id = queue.shift()!;
    const result = await session.browse({ nodeId: id, referenceTypeId: 'HierarchicalReferences', includeSubtypes: true, browseDirection: BrowseDirection.Forward, resultMask: 63 });
    for (const r of result.references ?? []) {
      const child = r.nodeId.toString();
      if (seen.has(child)) continue;
      seen.add(child);
      if (r.nodeClass === NodeClass.Variable) found.push(child);
      if (r.nodeClass === NodeClass.Variable || r.nodeClass === NodeClass.Object) queue.push(child);
    }
  }
  return found;
}

describe('security', () => {
  it('every variable below Site is read-only (AccessLevel and UserAccessLevel CurrentRead) for every role', async () => {
    await secondaryCheck(); // a live condition is part of what is checked
    for (const role of ROLES) {
      const session = await login(role);
      const variables = await variablesBelow(session, nodeId('Site'));
      expect(variables.length).toBeGreaterThan(9);
      const levels = await session.read(variables.flatMap((v) => [{ nodeId: v, attributeId: AttributeIds.AccessLevel }, { nodeId: v, attributeId: AttributeIds.UserAccessLevel }]));
      const writable = variables.filter((_, i) => (levels[2 * i]!.value.value & 2) !== 0 || (levels[2 * i + 1]!.value.value & 2) !== 0);
      expect(writable, `writable for ${role}`).toEqual([]);
    }
  });

  it('a write answers BadNotWritable for every role and changes nothing', async () => {
    for (const role of ROLES) {
      const session = await login(role);
      const status = await session.write({ nodeId: nodeId(`${CP}/Threshold`), attributeId: AttributeIds.Value, value: { value: { dataType: DataType.Double, value: 44.0 } } });
      expect(status, role).toBe(StatusCodes.BadNotWritable);
      expect((await session.read({ nodeId: nodeId(`${CP}/Threshold`), attributeId: AttributeIds.Value })).value.value).toBe(37.3);
    }
  });

  it('every endpoint offers user-name tokens only; a session with an X.509 user certificate is refused', async () => {
    const { client } = await connectClient();
    const endpoints = await client.getEndpoints();
    expect(endpoints.length).toBeGreaterThan(0);
    for (const e of endpoints) expect(e.userIdentityTokens!.map((t) => t.tokenType)).toEqual([UserTokenType.UserName]);
    // An unrelated self-signed certificate with no gateway user behind it.
    const userPki = makeTempDir('opcua-user-cert');
    const userCm = new OPCUACertificateManager({ rootFolder: userPki });
    await userCm.initialize();
    const userCertFile = join(userPki, 'own/certs/user.pem');
    await userCm.createSelfSignedCertificate({ applicationUri: 'urn:someone', subject: '/CN=someone', dns: [], startDate: new Date(Date.now() - 86_400_000), validity: 30, outputFile: userCertFile });
    const certificateData = new X509Certificate(readFileSync(userCertFile)).raw;
    const privateKey = readFileSync(userCm.privateKey, 'utf8');
    const x509 = { type: UserTokenType.Certificate, certificateData, privateKey } as any;
    // The client itself finds no X.509 policy to use...
    await expect(client.createSession(x509)).rejects.toThrow(/X509/);
    // ...and the server refuses one anyway: a client that claims the policy node-opcua used to offer.
    const forging = (await connectClient()).client;
    for (const e of (forging as any)._serverEndpoints) {
      e.userIdentityTokens.push({ policyId: 'certificateX509', tokenType: UserTokenType.Certificate, issuedTokenType: null, issuerEndpointUrl: null, securityPolicyUri: null });
    }
    await expect(forging.createSession(x509)).rejects.toThrow(/BadIdentityTokenInvalid/);
    await userCm.dispose();
  });
});

describe('alarms and conditions', () => {
  const REFRESH_START = 'ns=0;i=2787';
  const REFRESH_END = 'ns=0;i=2788';

  it('one condition instance per alert: its EventId stays valid, and acknowledging sends an event with AckedState true', async () => {
    const guard = await login('guard');
    const alarms = await serverEvents(guard, 100);
    const a1 = await secondaryCheck();
    await waitFor(() => ofAlert(alarms.events, a1).length > 0, { what: `condition event of ${a1}` });
    const first = ofAlert(alarms.events, a1)[0]!;
    expect(first).toMatchObject({ ConditionName: 'SecondaryCheckRequired', ActiveState: true, AckedState: false, Retain: true });
    // A second alert a few seconds later: a condition of its own, the first one's EventId untouched.
    const a2 = await secondaryCheck();
    await waitFor(() => ofAlert(alarms.events, a2).length > 0, { what: `condition event of ${a2}` });
    const second = ofAlert(alarms.events, a2)[0]!;
    expect(second.ConditionId.toString()).not.toBe(first.ConditionId.toString());
    expect(second.Comment?.text ?? null).toBeNull();
    expect(second.ClientUserId ?? '').toBe('');

    const result = await acknowledge(guard, first.ConditionId, first.EventId, 'referred: sent to triage');
    expect(result.statusCode).toBe(StatusCodes.Good);
    await waitFor(() => ofAlert(alarms.events, a1).some((e) => e.AckedState === true), { what: `AckedState true for ${a1}` });
    const acked = ofAlert(alarms.events, a1).find((e) => e.AckedState === true)!;
    expect(acked.ClientUserId).toBe('guard');
    expect(acked.Comment.text).toBe('referred: sent to triage');
    expect((await guardApi.get(`/api/alerts/${a1}`)).body.acknowledgement).toMatchObject({ by: 'guard', outcome: 'referred' });
    // Closed: a last event with Retain false, then the instance is gone.
    await waitFor(() => ofAlert(alarms.events, a1).some((e) => e.Retain === false), { what: `${a1} no longer retained` });
    await waitFor(async () => (await guard.read({ nodeId: first.ConditionId, attributeId: AttributeIds.BrowseName })).statusCode === StatusCodes.BadNodeIdUnknown, { what: `condition of ${a1} removed` });

    // The API acknowledges a2: an event with AckedState true and the API user, no comment of a1's.
    expect((await guardApi.post(`/api/alerts/${a2}/ack`, { outcome: 'cleared' })).status).toBe(200);
    await waitFor(() => ofAlert(alarms.events, a2).some((e) => e.AckedState === true), { what: `AckedState true for ${a2}` });
    const ackedA2 = ofAlert(alarms.events, a2).find((e) => e.AckedState === true)!;
    expect(ackedA2.ClientUserId).toBe('guard');
    expect(ackedA2.Comment.text).toBe('cleared');
    // The next alert's event carries nothing of the previous acknowledgements.
    const a3 = await secondaryCheck();
    await waitFor(() => ofAlert(alarms.events, a3).length > 0, { what: `condition event of ${a3}` });
    const third = ofAlert(alarms.events, a3)[0]!;
    expect(third.Comment?.text ?? null).toBeNull();
    expect(third.ClientUserId ?? '').toBe('');
    expect((await guardApi.post(`/api/alerts/${a3}/ack`, { outcome: 'cleared' })).status).toBe(200);
    await alarms.terminate();
  });

  it('acknowledging with an older EventId of the same alert works', async () => {
    const guard = await login('guard');
    const alarms = await serverEvents(guard, 100);
    await publishState({ status: 'offline' });
    let alertId = '';
    await waitFor(
      () => {
        const e = alarms.events.find((x) => x.ConditionName === 'CannotScreen' && x.ActiveState === true);
        alertId = /alert (\w+)/.exec(e?.Message.text ?? '')?.[1] ?? '';
        return alertId !== '';
      },
      { what: 'CannotScreen active' },
    );
    const older = ofAlert(alarms.events, alertId)[0]!;
    // Back online: the same alert's condition goes inactive with a new EventId.
    await publishState({ status: 'online' });
    await waitFor(() => ofAlert(alarms.events, alertId).some((e) => e.ActiveState === false), { what: 'CannotScreen inactive' });
    const newer = ofAlert(alarms.events, alertId).find((e) => e.ActiveState === false)!;
    expect(Buffer.compare(newer.EventId, older.EventId)).not.toBe(0);
    const result = await acknowledge(guard, older.ConditionId, older.EventId, 'technician called');
    expect(result.statusCode).toBe(StatusCodes.Good);
    await waitFor(() => ofAlert(alarms.events, alertId).some((e) => e.AckedState === true), { what: 'AckedState true' });
    expect((await guardApi.get(`/api/alerts/${alertId}`)).body).toMatchObject({ acknowledgement: { by: 'guard', outcome: 'cleared', note: 'technician called' } });
    // An EventId this condition never sent is still refused.
    const unknown = await acknowledge(guard, older.ConditionId, Buffer.alloc(16, 7), 'cleared');
    expect([StatusCodes.BadEventIdUnknown, StatusCodes.BadNodeIdUnknown, StatusCodes.BadMethodInvalid]).toContain(unknown.statusCode);
    await alarms.terminate();
  });

  it('ConditionRefresh delivers RefreshStart, every retained condition, then RefreshEnd (queue size 0, as asyncua asks)', async () => {
    const guard = await login('guard');
    const a1 = await secondaryCheck();
    const a2 = await secondaryCheck();
    const alarms = await serverEvents(guard, 0);
    // Both conditions exist before the refresh (their own events may or may not have reached this subscription).
    const before = alarms.events.length;
    const refresh = await guard.call({ objectId: 'i=2782', methodId: 'i=3875', inputArguments: [{ dataType: DataType.UInt32, value: alarms.subscription.subscriptionId }] });
    expect(refresh.statusCode).toBe(StatusCodes.Good);
    await waitFor(() => alarms.events.slice(before).some((e) => e.EventType?.toString() === REFRESH_END), { what: 'RefreshEnd' });
    const burst = alarms.events.slice(before);
    const types = burst.map((e) => e.EventType?.toString());
    const start = types.indexOf(REFRESH_START);
    const end = types.indexOf(REFRESH_END);
    expect(start).toBeGreaterThanOrEqual(0);
    expect(end).toBeGreaterThan(start);
    const inside = burst.slice(start + 1, end);
    for (const id of [a1, a2]) {
      const e = ofAlert(inside, id);
      expect(e, `refresh carries ${id}`).toHaveLength(1);
      expect(e[0]).toMatchObject({ Retain: true, ActiveState: true, AckedState: false, ConditionName: 'SecondaryCheckRequired' });
    }
    expect(inside.every((e) => e.Retain === true)).toBe(true);
    for (const id of [a1, a2]) expect((await guardApi.post(`/api/alerts/${id}/ack`, { outcome: 'cleared' })).status).toBe(200);
    await alarms.terminate();
  });
});

describe('address space, endpoints, certificate, keep-alive', () => {
  const hierarchical = async (session: ClientSession, path: string) =>
    (await session.browse({ nodeId: nodeId(path), referenceTypeId: 'HierarchicalReferences', includeSubtypes: true, browseDirection: BrowseDirection.Forward, resultMask: 63 })).references!;

  it('checkpoints are CheckpointType objects and appear once in a hierarchical browse', async () => {
    const session = await login('guard');
    expect((await hierarchical(session, 'Site/Checkpoints/hq')).map((r) => r.browseName.name)).toEqual(['gate-1']);
    const site = (await hierarchical(session, 'Site')).map((r) => r.browseName.name).sort();
    expect(site).toEqual(['Checkpoints', 'Robots', 'Tasks']);
    const gate = (await hierarchical(session, 'Site/Checkpoints/hq'))[0]!;
    expect(gate.typeDefinition.toString()).toBe(nodeId('Types/CheckpointType'));
    const type = await session.read({ nodeId: gate.typeDefinition, attributeId: AttributeIds.BrowseName });
    expect(type.value.value.name).toBe('CheckpointType');
    // The type declares what each checkpoint has.
    const declared = (await session.browse({ nodeId: gate.typeDefinition, referenceTypeId: 'HasComponent', browseDirection: BrowseDirection.Forward, resultMask: 63 })).references!.map((r) => r.browseName.name);
    expect(declared.sort()).toEqual(['BlackbodyOk', 'LastTemperature', 'ModelSha256', 'OpenAlerts', 'Online', 'PassedToday', 'ScreeningMode', 'SecondaryChecksToday', 'Threshold'].sort());
    // ...and its children are each listed once too.
    const children = (await hierarchical(session, CP)).map((r) => r.browseName.name);
    expect(children.length).toBe(new Set(children).size);
  });

  it("CreateTask's target argument says what a delivery needs", async () => {
    const session = await login('dispatcher');
    const input = (await session.browse(nodeId('Site/Tasks/CreateTask'))).references!.find((r) => r.browseName.name === 'InputArguments')!;
    const args = (await session.read({ nodeId: input.nodeId, attributeId: AttributeIds.Value })).value.value as any[];
    const target = args.find((a) => a.name === 'target');
    expect(target.description.text).toContain('delivery: "FROM,TO"');
  });

  it('endpoints are advertised for localhost and 127.0.0.1; the certificate has a proper subject and those names', async () => {
    const { client } = await connectClient();
    const port = gateway.opcua!.port;
    // GetEndpoints answers with the endpoints of the host name the client asked for, if the server has them.
    for (const host of ['localhost', '127.0.0.1']) {
      const urls = (await client.getEndpoints({ endpointUrl: `opc.tcp://${host}:${port}/UA/Checkpoint` })).map((e) => e.endpointUrl);
      expect(urls.length, host).toBeGreaterThan(0);
      expect(urls.every((u) => u === `opc.tcp://${host}:${port}/UA/Checkpoint`), `${host}: ${urls.join(' ')}`).toBe(true);
    }
    const certificate = new X509Certificate(readFileSync(join(dataDir, 'pki/own/certs/certificate.pem')));
    expect(certificate.subject).toMatch(/^CN=Checkpoint gateway@/m);
    expect(certificate.subject).toMatch(/^O=Checkpoint$/m);
    expect(certificate.subject).not.toMatch(/Sterfive|Orleans/);
    const san = certificate.subjectAltName!.split(', ');
    expect(san).toContain('DNS:localhost');
    expect(san).toContain('IP Address:127.0.0.1');
    expect(san.some((n) => n.startsWith('URI:urn:') && n.endsWith(':checkpoint-gateway'))).toBe(true);
  });

  it('revises a huge keep-alive count to at most 30 s of silence', async () => {
    const session = await login('guard');
    // node-opcua-client refuses to ask for a keep-alive longer than its session timeout; asyncua asks anyway.
    (ClientSubscription as any).ignoreNextWarning = true;
    const subscription = ClientSubscription.create(session, { requestedPublishingInterval: 1000, requestedMaxKeepAliveCount: 20_000, requestedLifetimeCount: 60_000, publishingEnabled: true });
    await new Promise<void>((resolve, reject) => {
      subscription.once('started', () => resolve());
      subscription.once('internal_error', reject);
    });
    expect(subscription.publishingInterval).toBe(1000);
    expect(subscription.maxKeepAliveCount).toBe(30);
    expect(subscription.lifetimeCount).toBeGreaterThanOrEqual(3 * subscription.maxKeepAliveCount);
    // A client that asks for less keeps what it asked for.
    const modest = ClientSubscription.create(session, { requestedPublishingInterval: 500, requestedMaxKeepAliveCount: 10, requestedLifetimeCount: 100, publishingEnabled: true });
    await new Promise<void>((resolve) => modest.once('started', () => resolve()));
    expect(modest.maxKeepAliveCount).toBe(10);
    // ModifySubscription is revised the same way.
    (ClientSubscription as any).ignoreNextWarning = true;
    const modified = await modest.modify({ requestedPublishingInterval: 500, requestedMaxKeepAliveCount: 20_000, requestedLifetimeCount: 60_000, maxNotificationsPerPublish: 0, priority: 0 });
    expect(modified.revisedMaxKeepAliveCount).toBe(60);
    await subscription.terminate();
    await modest.terminate();
  });
});
