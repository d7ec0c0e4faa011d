/**
 * The gateway's OPC UA server (node-opcua): the address space of OPCUA.md, fed by the same live
 * events as the API's SSE feed (rows of the `events` table, read after each commit; the database
 * is not polled, except briefly while a hole in the seqs on PostgreSQL holds events back),
 * Alarms & Conditions bound to the gateway's alerts, and methods that go through the same store
 * and role rules as the API. Either store backend (SQLite answers at once, PostgreSQL later):
 * node-opcua reads values synchronously, so they come from the model, which refreshes (awaiting
 * the store) when events commit; methods and logins await the stores. What a value or alarm
 * state should be is decided in model.ts; this file copies it into nodes and turns calls into
 * store operations.
 */
import { X509Certificate } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { hostname, networkInterfaces } from 'node:os';
import { join } from 'node:path';
import {
  AttributeIds,
  DataType,
  MessageSecurityMode,
  NodeId,
  OPCUACertificateManager,
  OPCUAServer,
  SecurityPolicy,
  StatusCodes,
  UserNameIdentityToken,
  UserTokenType,
  makeAccessLevelFlag,
  Variant,
  standardUnits,
  type AddressSpace,
  type ISessionContext,
  type MethodCallInterceptor,
  type Namespace,
  type StatusCode,
  type UAAlarmConditionEx,
  type UAMethod,
  type ServerSession,
  type UAObject,
  type UAObjectType,
  type ConditionSnapshot,
  type LocalizedText,
  type UAVariable,
  type VariantLike,
  type MonitoredItemCreateRequest,
  type Subscription,
} from 'node-opcua';
import type { LoginGuard } from '@checkpoint/broker';
import type { Logger } from 'pino';
import { OUTCOMES, type AlertChange, type Outcome } from '../alerts.js';
import { orderEvents, type EventOrderState } from '../cluster/event-order.js';
import type { GatewayConfig } from '../config.js';
import type { Backend } from '../store/backend.js';
import type { AlertView, AnyOperationalStore, LiveEvent, ScreeningSummary } from '../store/operational.js';
import { roleAtLeast, type Role, type UserStore } from '../store/users.js';
import { FleetCommandError, type FleetView, type RobotView } from './fleet-view.js';
import {
  CHECKPOINT_VARIABLES,
  ROBOT_VARIABLES,
  SiteModel,
  applyScreening,
  checkpointKey,
  checkpointValues,
  conditionState,
  localDay,
  parseAckComment,
  robotValues,
  startOfLocalDay,
  type CheckpointModel,
  type CheckpointVariable,
  type ConditionName,
  type RobotVariable,
  type VariableValue,
} from './model.js';

/** The namespace of everything below `Site` (its index is 2; clients should resolve it by URI). */
export const NAMESPACE_URI = 'urn:checkpoint:gateway';

export type OpcuaConfig = GatewayConfig['opcua'];

export interface OpcuaServerOptions {
  config: OpcuaConfig;
  /** The gateway's data dir: the PKI lives in `<dataDir>/pki` unless `config.pkiDir` says otherwise. */
  dataDir: string;
  /** SQLite or PostgreSQL: every answer is awaited (values are served from the model, refreshed when events commit). */
  store: AnyOperationalStore;
  users: UserStore<Backend>;
  /** Login limits and password checks, shared with the API and the model download. */
  loginGuard: LoginGuard;
  /** The robot fleet, once wired; null = empty Robots folder, task methods BadNotSupported. */
  fleet: FleetView | null;
  log: Logger;
  now: () => number;
  /** An alert changed through OPC UA (an acknowledgement): metrics and the live feed. */
  alertChanged(change: AlertChange): void;
  /**
   * How long a hole in the events' seqs may hold later events back (../cluster/event-order.ts).
   * 0 (default, SQLite: seqs have no holes): events are applied as read. On PostgreSQL,
   * transactions commit out of seq order; 2000 ms, as the live feed's follower.
   */
  eventGapWaitMs?: number;
}

export interface GatewayOpcuaServer {
  readonly port: number;
  /** `opc.tcp://host:port/resourcePath` as the server advertises it. */
  readonly endpointUrl: string;
  /** The PKI folder (`trusted/certs`, `rejected/certs`, `own/certs`, ...). */
  readonly pkiDir: string;
  /**
   * Rows were committed to the events table (called wherever the live feed is notified): the
   * values are refreshed from the store (at most one refresh runs; calls meanwhile queue one more).
   */
  eventsCommitted(): void;
  /**
   * Resolves when no refresh is running or queued (a refresh never rejects). A hole in the seqs
   * (PostgreSQL) may still have a re-read scheduled: wait for values, not for this, then.
   */
  settled(): Promise<void>;
  close(): Promise<void>;
}

type ValueKind = 'Boolean' | 'String' | 'Double' | 'UInt32';

const CHECKPOINT_TYPES: Record<CheckpointVariable, ValueKind> = {
  Online: 'Boolean',
  ScreeningMode: 'String',
  Threshold: 'Double',
  LastTemperature: 'Double',
  PassedToday: 'UInt32',
  SecondaryChecksToday: 'UInt32',
  OpenAlerts: 'UInt32',
  BlackbodyOk: 'Boolean',
  ModelSha256: 'String',
};

const ROBOT_TYPES: Record<RobotVariable, ValueKind> = {
  Online: 'Boolean',
  Battery: 'Double',
  State: 'String',
  LastNode: 'String',
  CurrentTaskId: 'String',
  CurrentTaskType: 'String',
};

const DESCRIPTIONS: Partial<Record<CheckpointVariable, string>> = {
  Threshold: 'screening threshold (absolute mode: skin temperature; relative mode: offset over the baseline)',
  LastTemperature: 'corrected skin temperature of the last person measured',
  PassedToday: 'screenings with decision pass since local midnight',
  SecondaryChecksToday: 'screenings with decision secondary_check since local midnight',
  OpenAlerts: 'alerts of this checkpoint waiting for an acknowledgement',
  BlackbodyOk: 'the reference blackbody is seen and stable',
};

/** The session's gateway user name, or null for anonymous / certificate users. */
function userOf(context: ISessionContext): string | null {
  const token = context.session?.userIdentityToken;
  return token instanceof UserNameIdentityToken && token.userName ? token.userName : null;
}

const str = (v: VariantLike | Variant | undefined): string => {
  const value = (v as Variant | undefined)?.value;
  return typeof value === 'string' ? value : '';
};

/** Queue size of event monitored items that leave it to the server (queue size 0). */
const EVENT_QUEUE_SIZE = 1000;

type MonitoredItemStep2 = (timestamps: unknown, request: MonitoredItemCreateRequest, node: unknown) => unknown;

/**
 * Longest time a subscription may stay silent before it sends a keep-alive. node-opcua grants up
 * to 12000 publishing intervals (100 min at 500 ms), so a client notices a dead server or a lost
 * subscription only after that long; 30 s is the order SCADA clients use themselves (UaExpert:
 * 500 ms x 10 = 5 s) and keeps the idle traffic to one small message per 30 s per subscription.
 */
export const MAX_KEEPALIVE_MS = 30_000;

function keepAliveCap(publishingInterval: number): number {
  return Math.max(1, Math.floor(MAX_KEEPALIVE_MS / Math.max(publishingInterval, 1)));
}

function reviseSubscription(subscription: Subscription): void {
  // Revised before the CreateSubscription response is built (new_subscription is emitted inside
  // session.createSubscription); the lifetime stays at least three keep-alives as node-opcua set it.
  subscription.maxKeepAliveCount = Math.min(subscription.maxKeepAliveCount, keepAliveCap(subscription.publishingInterval));
  const modify = subscription.modify.bind(subscription);
  subscription.modify = (param) => {
    modify(param);
    subscription.maxKeepAliveCount = Math.min(subscription.maxKeepAliveCount, keepAliveCap(subscription.publishingInterval));
  };
  // node-opcua has no option for the default event queue size; its per-item creation step is wrapped on this subscription only.
  const internals = subscription as unknown as { _createMonitoredItemStep2: MonitoredItemStep2 };
  const create = internals._createMonitoredItemStep2.bind(subscription);
  internals._createMonitoredItemStep2 = (timestamps, request, node) => {
    const parameters = request.requestedParameters;
    if (request.itemToMonitor.attributeId === AttributeIds.EventNotifier && parameters.queueSize === 0) parameters.queueSize = EVENT_QUEUE_SIZE;
    return create(timestamps, request, node);
  };
}

const LOCAL_NAMES = { dns: ['localhost'], ip: ['127.0.0.1'] };

/**
 * The server's own certificate, made here rather than by node-opcua (whose subject is
 * "/CN=<name>@<host>/DC=/O=Sterfive/L=Orleans/C=FR" and whose names lack localhost/127.0.0.1):
 * subject CN=Checkpoint gateway@<host>, O=Checkpoint; subjectAltName the application URI, the
 * host name, localhost, 127.0.0.1 and the machine's addresses. An existing certificate is kept
 * (clients trust it); when it lacks the local names, a warning says how to renew it.
 */
async function ensureServerCertificate(cm: OPCUACertificateManager, certificateFile: string, applicationUri: string, log: Logger): Promise<void> {
  if (existsSync(certificateFile)) {
    const san = new X509Certificate(readFileSync(certificateFile)).subjectAltName ?? '';
    const missing = [...LOCAL_NAMES.dns.map((d) => `DNS:${d}`), ...LOCAL_NAMES.ip.map((i) => `IP Address:${i}`)].filter((n) => !san.split(', ').includes(n));
    if (missing.length) {
      log.warn({ certificateFile, missing }, 'OPC UA server certificate lacks local names; to renew it delete own/certs/certificate.pem and restart (same key), then have clients trust the new one');
    }
    return;
  }
  await cm.initialize();
  const addresses = Object.values(networkInterfaces())
    .flat()
    .filter((a) => a !== undefined && !a.internal)
    .map((a) => a!.address);
  await cm.createSelfSignedCertificate({
    applicationUri,
    subject: `/CN=Checkpoint gateway@${hostname().slice(0, 44)}/O=Checkpoint`,
    dns: [...new Set([hostname(), ...LOCAL_NAMES.dns])],
    ip: [...new Set([...LOCAL_NAMES.ip, ...addresses])],
    startDate: new Date(),
    validity: 365 * 10,
    outputFile: certificateFile,
  });
}

interface AcknowledgeInternals {
  _acknowledge_branch(eventId: Buffer | null, comment: LocalizedText, branch: ConditionSnapshot, message: string): StatusCode;
  _raiseAuditConditionAcknowledgeEvent(branch: ConditionSnapshot): void;
}
interface BranchInternals {
  _setAckedState(acked: boolean, eventId: Buffer | null, comment: LocalizedText): StatusCode;
}

/**
 * node-opcua's Acknowledge ends Retain (the alarm leaves alarm lists) even while the alarm is
 * still active; a CannotScreen alert acknowledged while the checkpoint is still offline must stay.
 * The same steps as node-opcua's `_acknowledge_branch`, with Retain kept while active.
 */
function keepRetainOnAcknowledge(alarm: UAAlarmConditionEx): void {
  const internals = alarm as unknown as AcknowledgeInternals;
  internals._acknowledge_branch = (eventId, comment, branch) => {
    const status = (branch as unknown as BranchInternals)._setAckedState(true, eventId, comment);
    if (status.isNotGood()) return status;
    branch.setRetain(branch.getActiveState());
    branch.setComment(comment);
    alarm.raiseNewBranchState(branch);
    internals._raiseAuditConditionAcknowledgeEvent(branch);
    return StatusCodes.Good;
  };
}

export async function startOpcuaServer(o: OpcuaServerOptions): Promise<GatewayOpcuaServer> {
  const { config, store, users, loginGuard, fleet, log, now } = o;
  const pkiDir = config.pkiDir ?? join(o.dataDir, 'pki');
  const applicationUri = `urn:${hostname()}:checkpoint-gateway`;

  // --- security ---------------------------------------------------------------------------------
  const serverCertificateManager = new OPCUACertificateManager({
    rootFolder: pkiDir,
    automaticallyAcceptUnknownCertificate: config.automaticallyAcceptUnknownCertificates,
  });
  await ensureServerCertificate(serverCertificateManager, join(pkiDir, 'own/certs/certificate.pem'), applicationUri, log);
  const securityModes = config.securityModes.map((m) => MessageSecurityMode[m]);
  const securityPolicies: SecurityPolicy[] = config.securityPolicies.map((p) => SecurityPolicy[p]);
  if (config.securityModes.includes('None')) securityPolicies.unshift(SecurityPolicy.None);

  const roleOf = async (name: string): Promise<Role | null> => (await users.list()).find((u) => u.name === name)?.role ?? null;

  const server = new OPCUAServer({
    port: config.port,
    ...(config.host ? { host: config.host } : {}),
    resourcePath: config.resourcePath,
    serverCertificateManager,
    securityModes,
    securityPolicies,
    allowAnonymous: config.allowAnonymous,
    userManager: {
      // The gateway's users and passwords (scrypt), the same as the API's.
      // Through the gateway's login guard: the same per-address limits as the API's login.
      isValidUserAsync(this: ServerSession, userName: string, password: string, callback: (err: Error | null, ok?: boolean) => void) {
        const address = this.channel?.remoteAddress ?? 'opcua-unknown';
        loginGuard.attempt(address, () => users.verify(userName, password)).then(
          (verdict) => {
            if (!verdict.ok) log.warn({ user: userName.slice(0, 64), address, reason: verdict.reason }, 'OPC UA login refused');
            callback(null, verdict.ok);
          },
          (err: Error) => callback(err),
        );
      },
    },
    // The application URI is per machine (it is in the certificate); the model's namespace is NAMESPACE_URI.
    // Local clients dial localhost or 127.0.0.1: the endpoints name them too (when listening on all interfaces).
    ...(config.host ? {} : { alternateHostname: [...LOCAL_NAMES.dns, ...LOCAL_NAMES.ip] }),
    serverInfo: { applicationUri, applicationName: { text: 'Checkpoint gateway', locale: 'en' }, productUri: 'urn:checkpoint:gateway' },
    buildInfo: { productName: 'Checkpoint gateway', manufacturerName: 'Checkpoint', softwareVersion: '0.1.0', buildNumber: '1', buildDate: new Date(0) },
    serverCapabilities: { maxSessions: config.maxSessions },
    maxConnectionsPerEndpoint: config.maxSessions,
    disableDiscovery: false,
  });
  // Event monitored items that ask for queue size 0 (asyncua's default: "the server chooses") get
  // room for a ConditionRefresh burst; node-opcua revises 0 to 1, which keeps only RefreshEnd.
  server.on('create_session', (session: ServerSession) => {
    session.on('new_subscription', (subscription: Subscription) => reviseSubscription(subscription));
  });
  await server.initialize();
  // User tokens: user name and password only (Anonymous too when `allowAnonymous` says so).
  // node-opcua offers Anonymous, UserName and X.509 on every endpoint (its userTokenTypes option
  // is not passed through); an X.509 user token opened a session with no gateway user behind it.
  // A token whose type the endpoint does not offer is refused at ActivateSession
  // (BadIdentityTokenInvalid, findUserTokenByPolicy). The descriptions exist after initialize().
  for (const endpoint of server.endpoints) {
    for (const description of endpoint.endpointDescriptions()) {
      description.userIdentityTokens = (description.userIdentityTokens ?? []).filter((t) => t.tokenType === UserTokenType.UserName || t.tokenType === UserTokenType.Anonymous);
    }
  }
  const addressSpace: AddressSpace = server.engine.addressSpace!;
  // Binds the A&C methods of the standard types (Acknowledge, ConditionRefresh, ...), which clients call by the type's method id.
  addressSpace.installAlarmsAndConditionsService();
  const ns: Namespace = addressSpace.registerNamespace(NAMESPACE_URI);
  const serverObject = addressSpace.rootFolder.objects.server;

  // --- address space ----------------------------------------------------------------------------
  const id = (path: string) => `s=${path}`;
  /**
   * An object in the notifier hierarchy (HasNotifier from its parent; HasEventSource for objects
   * that are the source of conditions), so alarms reach clients subscribed on the Server object.
   * Both are hierarchical references: that one reference is also how a browser finds the object
   * (an Organizes as well would list it twice in a hierarchical browse).
   */
  const addNotifier = (parent: UAObject, path: string, browseName: string, type: 'folder' | 'object' | UAObjectType, description?: string, eventSource = false): UAObject =>
    ns.addObject({
      browseName,
      nodeId: id(path),
      ...(eventSource ? { eventSourceOf: parent } : { notifierOf: parent }),
      eventNotifier: 1,
      ...(type === 'folder' ? { typeDefinition: 'FolderType' } : type === 'object' ? {} : { typeDefinition: type }),
      ...(description ? { description } : {}),
    });

  const site = addNotifier(addressSpace.rootFolder.objects, 'Site', 'Site', 'object', 'The checkpoints and robots of this site');
  site.addReference({ referenceType: 'HasNotifier', nodeId: serverObject, isForward: false });
  const checkpointsFolder = addNotifier(site, 'Site/Checkpoints', 'Checkpoints', 'folder', 'Site/Checkpoints/{site}/{checkpoint}');
  const robotsFolder = addNotifier(site, 'Site/Robots', 'Robots', 'folder', 'Site/Robots/{manufacturer}/{serialNumber}');
  const tasks = addNotifier(site, 'Site/Tasks', 'Tasks', 'object', 'The robot task queue');

  type ValueExtra = { unit?: 'celsius' | 'percent'; range?: [number, number]; description?: string; mandatory?: boolean };
  const addValue = (parent: UAObject | UAObjectType, path: string, name: string, kind: ValueKind, extra: ValueExtra = {}): UAVariable => {
    const common = {
      componentOf: parent,
      ...(extra.mandatory ? { modellingRule: 'Mandatory' as const } : {}),
      browseName: name,
      nodeId: id(`${path}/${name}`),
      dataType: kind,
      // 0 = "exception based": subscriptions get each change as it is set (from live events).
      minimumSamplingInterval: 0,
      // Values are what devices and the gateway report: nobody writes them through OPC UA
      // (node-opcua's default is read and write; a write now answers BadNotWritable).
      accessLevel: 'CurrentRead' as const,
      userAccessLevel: 'CurrentRead' as const,
      ...(extra.description ? { description: extra.description } : {}),
    };
    const variable = extra.unit
      ? ns.addAnalogDataItem({
          ...common,
          engineeringUnits: extra.unit === 'celsius' ? standardUnits.degree_celsius : standardUnits.percent,
          engineeringUnitsRange: { low: extra.range![0], high: extra.range![1] },
        })
      : ns.addVariable(common);
    // node-opcua makes an AnalogItem's EURange writable; the range is ours, not the client's.
    const euRange = variable.getPropertyByName('EURange');
    if (euRange) {
      euRange.accessLevel = makeAccessLevelFlag('CurrentRead');
      euRange.userAccessLevel = makeAccessLevelFlag('CurrentRead');
    }
    variable.setValueFromSource(new Variant({ dataType: DataType.Null }), StatusCodes.BadWaitingForInitialData);
    return variable;
  };

  /** Last value written per node, so that unchanged values produce no notifications. */
  const written = new Map<UAVariable, string>();
  const setValue = (node: UAVariable, kind: ValueKind, v: VariableValue) => {
    const key = JSON.stringify(v);
    if (written.get(node) === key) return;
    written.set(node, key);
    const variant = v.value === null ? new Variant({ dataType: DataType.Null }) : new Variant({ dataType: DataType[kind], value: v.value });
    node.setValueFromSource(variant, StatusCodes[v.quality] as StatusCode, v.sourceTime !== null ? new Date(v.sourceTime) : new Date(now()));
  };

  /** What each checkpoint object has, so SCADA can map checkpoints by type. */
  const checkpointValueExtra = (name: CheckpointVariable): ValueExtra => {
    const range: [number, number] | null = name === 'Threshold' ? [30, 45] : name === 'LastTemperature' ? [20, 45] : null;
    const description = DESCRIPTIONS[name];
    return { ...(range ? { unit: 'celsius', range } : {}), ...(description ? { description } : {}) };
  };
  const checkpointType: UAObjectType = ns.addObjectType({
    browseName: 'CheckpointType',
    nodeId: id('Types/CheckpointType'),
    description: 'An entrance checkpoint (thermal screening); conditions SecondaryCheckRequired and CannotScreen, one instance per alert, have it as source',
  });
  for (const name of CHECKPOINT_VARIABLES) addValue(checkpointType, 'Types/CheckpointType', name, CHECKPOINT_TYPES[name], { ...checkpointValueExtra(name), mandatory: true });

  // Checkpoints: folder per site, object per checkpoint, created when first seen.
  interface CheckpointNodes {
    object: UAObject;
    path: string;
    vars: Record<CheckpointVariable, UAVariable>;
  }
  /**
   * One condition instance per gateway alert (SCADA alarm lists expect one row per alarm): its
   * EventIds stay valid for Acknowledge as long as the alert is not closed; the instance is
   * removed after the event that closes it.
   */
  interface AlertCondition {
    alarm: UAAlarmConditionEx;
    alertId: string;
    name: ConditionName;
    /** Every EventId this instance has sent (hex): any of them acknowledges the alert. */
    eventIds: Set<string>;
    /** The state last raised (JSON), so that unchanged states raise nothing. */
    raised: string | null;
    /** Acknowledged by an OPC UA Acknowledge call (which sets Comment and ClientUserId itself). */
    ackedInOpcua: boolean;
  }
  const siteFolders = new Map<string, UAObject>();
  const checkpointNodes = new Map<string, CheckpointNodes>();
  const alertConditions = new Map<string, AlertCondition>();
  const conditionOfNode = new Map<UAAlarmConditionEx, AlertCondition>();
  const alarmType = addressSpace.findEventType('AlarmConditionType')!;

  function checkpointNodesOf(cp: CheckpointModel): CheckpointNodes {
    const key = checkpointKey(cp.site, cp.checkpoint);
    const existing = checkpointNodes.get(key);
    if (existing) return existing;
    let siteFolder = siteFolders.get(cp.site);
    if (!siteFolder) {
      siteFolder = addNotifier(checkpointsFolder, `Site/Checkpoints/${cp.site}`, cp.site, 'folder');
      siteFolders.set(cp.site, siteFolder);
    }
    const path = `Site/Checkpoints/${cp.site}/${cp.checkpoint}`;
    const obj = addNotifier(siteFolder, path, cp.checkpoint, checkpointType, `Checkpoint ${cp.site}/${cp.checkpoint}`, true);
    const vars = {} as Record<CheckpointVariable, UAVariable>;
    for (const name of CHECKPOINT_VARIABLES) vars[name] = addValue(obj, path, name, CHECKPOINT_TYPES[name], checkpointValueExtra(name));
    const nodes: CheckpointNodes = { object: obj, path, vars };
    checkpointNodes.set(key, nodes);
    return nodes;
  }

  /**
   * Brings the condition instance of an alert to the state the model says, raising one condition
   * event if anything changed; creates it for a new alert and removes it after its closing event.
   * Instances are referenced from their checkpoint by HasCondition only (not a browse child):
   * ConditionRefresh finds them through it, and the checkpoint's event source chain carries their
   * events up to the Server object.
   */
  function applyAlertCondition(nodes: CheckpointNodes, alert: AlertView): void {
    const want = conditionState(alert);
    let c = alertConditions.get(want.alertId);
    if (!c) {
      if (!want.retain) return; // closed before it was ever shown
      const alarm = ns.instantiateAlarmCondition(alarmType, {
        browseName: want.name,
        nodeId: id(`${nodes.path}/Alerts/${want.alertId}`),
        conditionSource: nodes.object,
        conditionOf: nodes.object,
        conditionName: want.name,
        inputNode: want.name === 'SecondaryCheckRequired' ? nodes.vars.OpenAlerts : nodes.vars.Online,
      });
      // SourceName "hq/gate-1" rather than the browse name with its namespace index.
      alarm.setSourceName(`${alert.site}/${alert.checkpoint}`);
      alarm.setEnabledState(true);
      keepRetainOnAcknowledge(alarm);
      c = { alarm, alertId: want.alertId, name: want.name, eventIds: new Set(), raised: null, ackedInOpcua: false };
      alertConditions.set(want.alertId, c);
      conditionOfNode.set(alarm, c);
    }
    const state = JSON.stringify(want);
    if (c.raised === state) return;
    c.raised = state;
    const branch = c.alarm.currentBranch();
    branch.setActiveState(want.active);
    branch.setAckedState(want.acked);
    if (want.ack) {
      // Acknowledged in the API: its user and outcome; through OPC UA the Acknowledge call
      // already put the operator's comment and user on the branch.
      if (!c.ackedInOpcua) {
        branch.setClientUserId(want.ack.by);
        branch.setComment({ text: want.ack.outcome });
      }
    }
    const time = new Date(want.time);
    c.alarm.raiseNewCondition({ message: want.message, severity: want.severity, retain: want.retain, quality: StatusCodes.Good, time });
    c.eventIds.add(branch.getEventId().toString('hex'));
    if (!want.retain) {
      // Closed: the event above told the clients (Retain false); the instance is no longer needed.
      alertConditions.delete(c.alertId);
      conditionOfNode.delete(c.alarm);
      addressSpace.deleteNode(c.alarm);
    }
  }

  function refreshCheckpoint(cp: CheckpointModel): void {
    const nodes = checkpointNodesOf(cp);
    const values = checkpointValues(cp);
    for (const name of CHECKPOINT_VARIABLES) setValue(nodes.vars[name], CHECKPOINT_TYPES[name], values[name]);
    for (const alert of cp.alerts.values()) applyAlertCondition(nodes, alert);
    for (const alert of cp.closed.splice(0)) applyAlertCondition(nodes, alert);
  }

  // Robots: Site/Robots/{manufacturer}/{serialNumber}; a robot that disappears keeps its nodes (Bad quality).
  const robotFolders = new Map<string, UAObject>();
  const robotNodes = new Map<string, Record<RobotVariable, UAVariable>>();
  function robotNodesOf(r: RobotView): Record<RobotVariable, UAVariable> {
    const existing = robotNodes.get(r.id);
    if (existing) return existing;
    const parts = r.id.split('/');
    let parent = robotsFolder;
    for (let i = 0; i < parts.length - 1; i++) {
      const p = `Site/Robots/${parts.slice(0, i + 1).join('/')}`;
      let folder = robotFolders.get(p);
      if (!folder) {
        folder = addNotifier(parent, p, parts[i]!, 'folder');
        robotFolders.set(p, folder);
      }
      parent = folder;
    }
    const path = `Site/Robots/${r.id}`;
    const obj = addNotifier(parent, path, parts[parts.length - 1]!, 'object', `Robot ${r.id}`);
    const vars = {} as Record<RobotVariable, UAVariable>;
    for (const name of ROBOT_VARIABLES) {
      vars[name] = addValue(obj, path, name, ROBOT_TYPES[name], name === 'Battery' ? { unit: 'percent', range: [0, 100] } : {});
    }
    robotNodes.set(r.id, vars);
    return vars;
  }

  const queuedCount = addValue(tasks, 'Site/Tasks', 'QueuedCount', 'UInt32', { description: 'tasks waiting for a robot' });
  const underwayCount = addValue(tasks, 'Site/Tasks', 'UnderwayCount', 'UInt32', { description: 'tasks assigned to or being done by a robot' });
  function refreshFleet(): void {
    if (!fleet) return;
    try {
      for (const r of fleet.robots()) {
        const vars = robotNodesOf(r);
        const values = robotValues(r);
        for (const name of ROBOT_VARIABLES) setValue(vars[name], ROBOT_TYPES[name], values[name]);
      }
      const counts = fleet.taskCounts();
      setValue(queuedCount, 'UInt32', { value: counts.queued, quality: 'Good', sourceTime: null });
      setValue(underwayCount, 'UInt32', { value: counts.underway, quality: 'Good', sourceTime: null });
    } catch (err) {
      log.error({ err: (err as Error).message }, 'OPC UA: reading the fleet failed');
    }
  }
  if (!fleet) {
    for (const v of [queuedCount, underwayCount]) v.setValueFromSource(new Variant({ dataType: DataType.Null }), StatusCodes.BadNotSupported);
  }

  // --- methods ----------------------------------------------------------------------------------
  const audit = async (user: string, method: string, target: string | null, detail: unknown): Promise<void> => {
    await store.audit(now(), user, `opcua.${method}`, target, detail);
  };
  type Output = { statusCode: StatusCode; outputArguments?: Array<{ dataType: DataType; value: unknown }> };
  /** The caller, if they may do this: a gateway user of at least `role` (the API's rule). */
  async function caller(context: ISessionContext, role: Role): Promise<{ user: string } | { status: StatusCode }> {
    const user = userOf(context);
    if (!user) return { status: StatusCodes.BadUserAccessDenied };
    let current: Role | null;
    try {
      current = await roleOf(user);
    } catch (err) {
      log.error({ err: (err as Error).message }, 'OPC UA: reading the users failed');
      return { status: StatusCodes.BadInternalError };
    }
    if (!current || !roleAtLeast(current, role)) return { status: StatusCodes.BadUserAccessDenied };
    return { user };
  }

  async function acknowledgeAlert(alertId: string, outcome: Outcome, note: string | null, user: string, via: string): Promise<StatusCode> {
    let result: Awaited<ReturnType<AnyOperationalStore['acknowledgeAlert']>>;
    try {
      result = await store.acknowledgeAlert(alertId, { by: user, outcome, note }, now());
    } catch (err) {
      log.error({ err: (err as Error).message, via }, 'OPC UA: acknowledging an alert failed');
      return StatusCodes.BadInternalError;
    }
    if (!result.ok) return result.reason === 'not_found' ? StatusCodes.BadNotFound : StatusCodes.BadInvalidState;
    o.alertChanged(result.change);
    try {
      await audit(user, via, alertId, { outcome });
    } catch (err) {
      // The acknowledgement itself is stored: the caller is told it succeeded.
      log.error({ err: (err as Error).message, via }, 'OPC UA: auditing an acknowledgement failed');
    }
    return StatusCodes.Good;
  }

  const ackMethod = ns.addMethod(checkpointsFolder, {
    browseName: 'AcknowledgeAlert',
    nodeId: id('Site/Checkpoints/AcknowledgeAlert'),
    description: 'Acknowledge a gateway alert with the outcome of the secondary check (role guard or above)',
    inputArguments: [
      { name: 'alertId', dataType: DataType.String, description: 'the alert id (ULID), as in the API and the alarm message' },
      { name: 'outcome', dataType: DataType.String, description: OUTCOMES.join(' | ') },
      { name: 'note', dataType: DataType.String, description: 'optional; may be empty' },
    ],
    outputArguments: [],
  });
  ackMethod.bindMethod(async (args: Variant[], context: ISessionContext): Promise<Output> => {
    const who = await caller(context, 'guard');
    if ('status' in who) return { statusCode: who.status };
    const [alertId, outcome, note] = [str(args[0]), str(args[1]), str(args[2])];
    if (!(OUTCOMES as readonly string[]).includes(outcome)) return { statusCode: StatusCodes.BadInvalidArgument };
    if (!/^[0-9A-HJKMNP-TV-Z]{26}$/.test(alertId)) return { statusCode: StatusCodes.BadInvalidArgument };
    return { statusCode: await acknowledgeAlert(alertId, outcome as Outcome, note.trim() || null, who.user, 'AcknowledgeAlert') };
  });

  /** After the fleet did it: a failed audit row is logged; the caller is told the command succeeded. */
  const auditQuietly = (user: string, method: string, target: string | null, detail: unknown) =>
    audit(user, method, target, detail).catch((err: Error) => log.error({ err: err.message, method }, 'OPC UA: auditing a method call failed'));
  const fleetStatus = (err: unknown): StatusCode => {
    if (err instanceof FleetCommandError) {
      return err.kind === 'not_found' ? StatusCodes.BadNotFound : err.kind === 'state' ? StatusCodes.BadInvalidState : StatusCodes.BadInvalidArgument;
    }
    log.error({ err: (err as Error).message }, 'OPC UA: task command failed');
    return StatusCodes.BadInternalError;
  };
  const createTask = ns.addMethod(tasks, {
    browseName: 'CreateTask',
    nodeId: id('Site/Tasks/CreateTask'),
    description: 'Create a robot task (role dispatcher or above)',
    inputArguments: [
      { name: 'type', dataType: DataType.String, description: 'delivery | disinfection | patrol | charge' },
      {
        name: 'target',
        dataType: DataType.String,
        description: 'delivery: "FROM,TO" (two map nodes); disinfection: a zone or map node; patrol: "A,B,C" (map nodes); charge: a charger, or empty (the fleet chooses)',
      },
      { name: 'priority', dataType: DataType.UInt32, description: '0..100, higher is more urgent' },
    ],
    outputArguments: [{ name: 'taskId', dataType: DataType.String }],
  });
  createTask.bindMethod(async (args: Variant[], context: ISessionContext): Promise<Output> => {
    const who = await caller(context, 'dispatcher');
    if ('status' in who) return { statusCode: who.status };
    if (!fleet) return { statusCode: StatusCodes.BadNotSupported };
    const priority = Number((args[2] as Variant | undefined)?.value ?? 50);
    if (!Number.isInteger(priority) || priority < 0 || priority > 100) return { statusCode: StatusCodes.BadOutOfRange };
    try {
      const { taskId } = await fleet.createTask({ type: str(args[0]), target: str(args[1]), priority }, who.user);
      await auditQuietly(who.user, 'CreateTask', taskId, { type: str(args[0]), priority });
      return { statusCode: StatusCodes.Good, outputArguments: [{ dataType: DataType.String, value: taskId }] };
    } catch (err) {
      return { statusCode: fleetStatus(err) };
    }
  });
  const cancelTask = ns.addMethod(tasks, {
    browseName: 'CancelTask',
    nodeId: id('Site/Tasks/CancelTask'),
    description: 'Cancel a robot task (role dispatcher or above)',
    inputArguments: [{ name: 'taskId', dataType: DataType.String }],
    outputArguments: [],
  });
  cancelTask.bindMethod(async (args: Variant[], context: ISessionContext): Promise<Output> => {
    const who = await caller(context, 'dispatcher');
    if ('status' in who) return { statusCode: who.status };
    if (!fleet) return { statusCode: StatusCodes.BadNotSupported };
    try {
      await fleet.cancelTask(str(args[0]), who.user);
      await auditQuietly(who.user, 'CancelTask', str(args[0]), null);
      return { statusCode: StatusCodes.Good };
    } catch (err) {
      return { statusCode: fleetStatus(err) };
    }
  });

  // A&C methods on our conditions (whichever method id the client uses, the type's or the
  // instance's): Acknowledge goes to the gateway alert first and is refused if the gateway refuses;
  // the standard implementation then acknowledges the branch. Disabling or shelving is not offered.
  const intercept: MethodCallInterceptor = async (context, object, method: UAMethod, args) => {
    try {
      return await interceptConditionMethod(context, object, method, args);
    } catch (err) {
      log.error({ err: (err as Error).message, method: method.browseName.name }, 'OPC UA: condition method failed');
      return StatusCodes.BadInternalError;
    }
  };
  /**
   * Acknowledge calls under way. A refresh applies events only when none is: the call awaits the
   * store, and the refresh that the acknowledgement's own event starts must not set AckedState
   * before node-opcua's Acknowledge (which runs right after the interceptor) does it with the
   * operator's comment, or the call would answer BadConditionBranchAlreadyAcked.
   */
  const acksInFlight = new Set<Promise<void>>();
  const acksSettled = async () => {
    while (acksInFlight.size) await Promise.all([...acksInFlight]);
  };
  const interceptConditionMethod = (context: ISessionContext, object: UAObject | UAObjectType | null, method: UAMethod, args: Variant[]): StatusCode | Promise<StatusCode> => {
    const owner = object ? conditionOfNode.get(object as UAAlarmConditionEx) : undefined;
    if (!owner) return StatusCodes.Good;
    const name = method.browseName.name;
    if (name === 'AddComment' || name === 'ConditionRefresh' || name === 'ConditionRefresh2') return StatusCodes.Good;
    if (name !== 'Acknowledge') return StatusCodes.BadNotSupported;
    const work = acknowledgeCondition(context, owner, args);
    // Released after node-opcua's Acknowledge ran (it follows the interceptor within microtasks).
    const pause = () => new Promise<void>((resolve) => setImmediate(resolve));
    const done = work.then(pause, pause);
    acksInFlight.add(done);
    void done.then(() => acksInFlight.delete(done));
    return work;
  };
  async function acknowledgeCondition(context: ISessionContext, owner: AlertCondition, args: Variant[]): Promise<StatusCode> {
    const who = await caller(context, 'guard');
    if ('status' in who) return who.status;
    const branch = owner.alarm.currentBranch();
    const eventId = args[0]?.value as Buffer | null;
    // Any EventId of this alert's condition acknowledges it: an alarm list a few events old is
    // still right about which alert it means.
    if (!Buffer.isBuffer(eventId) || !owner.eventIds.has(eventId.toString('hex'))) return StatusCodes.BadEventIdUnknown;
    if (branch.getAckedState()) return StatusCodes.BadConditionBranchAlreadyAcked;
    const comment = (args[1]?.value as { text?: string | null } | null)?.text ?? '';
    const ack = parseAckComment(comment, owner.name);
    if (!ack) return StatusCodes.BadInvalidArgument;
    const status = await acknowledgeAlert(owner.alertId, ack.outcome, ack.note, who.user, 'Acknowledge');
    // node-opcua's Acknowledge then acknowledges the branch (AckedState, Comment and an event with
    // AckedState true); it knows only the current EventId and sets no ClientUserId.
    if (status === StatusCodes.Good) {
      owner.ackedInOpcua = true;
      branch.setClientUserId(who.user);
      args[0]!.value = branch.getEventId();
    }
    return status;
  }
  addressSpace.addMethodCallInterceptor(intercept);

  // --- state: snapshot at start, then the live events --------------------------------------------
  // node-opcua reads values synchronously: the model is the cache every value comes from; the
  // store is read (awaited) at start and by each refresh.
  const model = new SiteModel(localDay(now()));
  const gapWaitMs = o.eventGapWaitMs ?? 0;
  // The cursor is read before the snapshot: on PostgreSQL an event committed in between is read
  // again by the first refresh (a device or alert event sets a state; a screening the day's
  // counts already hold is not counted twice: countedAtStart).
  let order: EventOrderState = { lastSeq: (await store.eventRange()).last, gapSinceMs: null };
  for (const d of await store.devices()) model.apply({ type: 'device', data: d });
  for (const status of ['open', 'acknowledged'] as const) {
    for (const a of await store.alerts({ status, limit: 100_000 })) model.apply({ type: 'alert', data: { alert: a } });
  }
  for (const cp of model.checkpoints.values()) {
    // The last temperature and settings, without counting (the day's counts come next).
    const [latest] = await store.screenings({ site: cp.site, checkpoint: cp.checkpoint, limit: 1 });
    if (latest) applyScreening(cp, latest, false);
  }
  // The operational store has no count query; the day's screenings are read once, at start.
  const countedAtStart = new Set<string>();
  for (const s of await store.screenings({ fromMs: startOfLocalDay(now()), limit: 10_000_000 })) {
    const { cp } = model.checkpoint(s.site, s.checkpoint);
    if (s.decision === 'pass') cp.passedToday += 1;
    else if (s.decision === 'secondary_check') cp.secondaryChecksToday += 1;
    if (gapWaitMs > 0) countedAtStart.add(s.id);
  }
  // Past this seq no event can be one of the snapshot's.
  const snapshotEnd = countedAtStart.size ? (await store.eventRange()).last : order.lastSeq;
  for (const cp of model.checkpoints.values()) refreshCheckpoint(cp);
  refreshFleet();

  let closed = false;
  /** The refresh running (null: none); `again`: events committed meanwhile, one more refresh follows. */
  let refreshing: Promise<void> | null = null;
  let again = false;
  let gapRecheck: NodeJS.Timeout | null = null;
  const READ_LIMIT = 500;
  async function refresh(): Promise<void> {
    try {
      for (const cp of model.rollDay(localDay(now()))) refreshCheckpoint(cp);
      const changed = new Set<CheckpointModel>();
      for (;;) {
        // Read with no acknowledgement under way: one that started during the read may commit an
        // event this read lacks, and the branch it acknowledges must not go back to an older state.
        let read: LiveEvent[];
        do {
          await acksSettled();
          read = await store.eventsAfter(order.lastSeq, READ_LIMIT);
        } while (acksInFlight.size && !closed);
        if (closed) return;
        const step = orderEvents(order, read, Date.now(), gapWaitMs);
        order = step.state;
        for (const e of step.deliver) {
          const counted = e.type === 'screening' && countedAtStart.has((e.data as ScreeningSummary).id);
          const cp = model.apply(e, !counted);
          if (cp) changed.add(cp);
        }
        if (countedAtStart.size && order.lastSeq >= snapshotEnd) countedAtStart.clear();
        if (step.waiting) {
          // A hole in the seqs (PostgreSQL: a transaction not yet committed): read again soon.
          gapRecheck ??= setTimeout(() => {
            gapRecheck = null;
            eventsCommitted();
          }, 25);
          break;
        }
        if (read.length < READ_LIMIT) break;
      }
      for (const cp of changed) refreshCheckpoint(cp);
    } catch (err) {
      log.error({ err: (err as Error).message }, 'OPC UA: applying live events failed');
    }
  }
  async function refreshWhileAsked(): Promise<void> {
    // One read for a burst of commits (the ingest's group commit, several API calls).
    await new Promise<void>((resolve) => setImmediate(resolve));
    do {
      again = false;
      await refresh();
    } while (again && !closed);
    refreshing = null;
  }
  function eventsCommitted(): void {
    if (closed) return;
    if (refreshing) {
      again = true;
      return;
    }
    refreshing = refreshWhileAsked();
  }
  // The day counters restart at local midnight even when nothing arrives.
  const dayTimer = setInterval(eventsCommitted, 60_000);
  dayTimer.unref();
  let fleetScheduled = false;
  const unsubscribeFleet = fleet?.onChange(() => {
    if (fleetScheduled || closed) return;
    fleetScheduled = true;
    setImmediate(() => {
      fleetScheduled = false;
      if (!closed) refreshFleet();
    });
  });

  await server.start();
  const port = server.endpoints[0]?.port ?? config.port;
  const endpointUrl = server.getEndpointUrl();
  log.info({ port, endpointUrl, securityModes: config.securityModes, pki: pkiDir }, 'OPC UA server listening');

  return {
    port,
    endpointUrl,
    pkiDir,
    eventsCommitted,
    async settled() {
      while (refreshing) await refreshing;
    },
    async close() {
      if (closed) return;
      closed = true;
      clearInterval(dayTimer);
      if (gapRecheck) clearTimeout(gapRecheck);
      unsubscribeFleet?.();
      await refreshing;
      addressSpace.removeMethodCallInterceptor(intercept);
      await server.shutdown(0);
    },
  };
}


/** Exposed for the tests of the address space: the node id of a path below `Site`. */
export function nodeIdOf(path: string, namespaceIndex: number): NodeId {
  return new NodeId(NodeId.NodeIdType.STRING, path, namespaceIndex);
}
