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
