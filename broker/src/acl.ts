/**
 * Who may publish and subscribe to what: roles, their topic grants, and the two checks the
 * broker runs on every PUBLISH and SUBSCRIBE. Pure functions, no I/O; the same grants are
 * exported to Mosquitto's ACL file (mosquitto.ts), so both brokers enforce one rule set.
 *
 * A grant is an MQTT topic filter. A topic may be published when it matches a publish grant;
 * a subscription filter is allowed only when EVERY topic it could match is covered by one read
 * grant (filter containment), so `+` and `#` can never reach outside a user's subtree.
 */
import { ID_PATTERN, ROBOT_ID_PATTERN, TOPIC_ROOT, VDA5050_INTERFACE, VDA5050_MAJOR, type RobotAddress } from '@checkpoint/protocol';

export const ROLES = ['edge', 'robot', 'bridge', 'gateway', 'viewer'] as const;
export type Role = (typeof ROLES)[number];

/** A user as the ACL sees it: the role and what the role is bound to. */
export type Principal =
  | { name: string; role: 'edge'; site: string; checkpoint: string }
  | { name: string; role: 'robot'; robot: RobotAddress }
  | { name: string; role: 'bridge'; robots: RobotAddress[] }
  | { name: string; role: 'gateway' }
  | { name: string; role: 'viewer' };

export interface Grants {
  /** Filters the user may publish to (topics must match one). */
  publish: string[];
  /** Filters the user may subscribe to / receive from (subscriptions must be contained in one). */
  subscribe: string[];
  /** Publish grants on which the user may also set the retain flag (a subset of `publish`). */
  retain: string[];
}

/** User names: safe in MQTT usernames, Mosquitto's password and ACL files, and log lines. */
export const USER_NAME_PATTERN = '^[A-Za-z0-9_.-]{1,64}$';
const USER_NAME_RE = new RegExp(USER_NAME_PATTERN);
const ID_RE = new RegExp(ID_PATTERN);
const ROBOT_ID_RE = new RegExp(ROBOT_ID_PATTERN);

export function isValidUserName(name: string): boolean {
  return USER_NAME_RE.test(name);
}

/** Broker statistics under $SYS that gateways and viewers may read (nobody may write $SYS). */
export const SYS_STATS_FILTER = '$SYS/broker/#';

const VDA = `${VDA5050_INTERFACE}/${VDA5050_MAJOR}`;
const robotBase = (r: RobotAddress) => `${VDA}/${r.manufacturer}/${r.serialNumber}`;
const robotPublish = (r: RobotAddress) => ['state', 'visualization', 'connection', 'factsheet'].map((c) => `${robotBase(r)}/${c}`);
const robotSubscribe = (r: RobotAddress) => ['order', 'instantActions'].map((c) => `${robotBase(r)}/${c}`);
/** VDA 5050 §6.14/§6.15: `connection` is retained (it is also the last will), and so is the factsheet. */
const robotRetain = (r: RobotAddress) => ['connection', 'factsheet'].map((c) => `${robotBase(r)}/${c}`);

/**
 * Every topic that may hold a retained message, whoever publishes it: an agent's `state` (its
 * last will), a robot's `connection` and `factsheet`, and the broker's own `$SYS` stats. Nothing
 * else is ever retained, so face images (`snapshot/+`) never sit in broker persistence; the
 * broker removes retained messages outside these at start (left by older versions).
 */
export const RETAINABLE_FILTERS = [`${TOPIC_ROOT}/+/+/state`, `${VDA}/+/+/connection`, `${VDA}/+/+/factsheet`, '$SYS/#'] as const;

/**
 * The role table (README "Roles and ACL" mirrors it). Snapshot topics carry face images, which
 * are health data: only the edge that takes them and the gateway that stores them see them.
 */
export function grantsFor(p: Principal): Grants {
  assertBinding(p);
  switch (p.role) {
    case 'edge': {
      const base = `${TOPIC_ROOT}/${p.site}/${p.checkpoint}`;
      return {
        publish: ['state', 'screening', 'telemetry', 'cmd/ack', 'snapshot/+'].map((c) => `${base}/${c}`),
        subscribe: [`${base}/cmd`],
        retain: [`${base}/state`],
      };
    }
    case 'robot':
      return { publish: robotPublish(p.robot), subscribe: robotSubscribe(p.robot), retain: robotRetain(p.robot) };
    case 'bridge':
      return { publish: p.robots.flatMap(robotPublish), subscribe: p.robots.flatMap(robotSubscribe), retain: p.robots.flatMap(robotRetain) };
    case 'gateway':
      return {
        publish: [`${TOPIC_ROOT}/+/+/cmd`, `${VDA}/+/+/order`, `${VDA}/+/+/instantActions`],
        subscribe: [`${TOPIC_ROOT}/#`, `${VDA}/#`, SYS_STATS_FILTER],
        retain: [],
      };
    case 'viewer':
      return {
        publish: [],
        subscribe: [
          ...['state', 'screening', 'telemetry', 'cmd/ack'].map((c) => `${TOPIC_ROOT}/+/+/${c}`),
          ...['state', 'visualization', 'connection', 'factsheet'].map((c) => `${VDA}/+/+/${c}`),
          SYS_STATS_FILTER,
        ],
        retain: [],
      };
  }
}

/**
 * Checks a principal's binding: ids that would not fit a topic level (or would smuggle in `/`,
 * `+`, `#`) must never reach a grant. Throws an error naming the user and field.
 */
export function assertBinding(p: Principal): void {
  const bad = (field: string, value: unknown, pattern: string) => {
    throw new Error(`user ${JSON.stringify(p.name)}: invalid ${field} ${JSON.stringify(value)}: expected ${pattern}`);
  };
  if (!isValidUserName(p.name)) bad('name', p.name, USER_NAME_PATTERN);
  const checkRobot = (r: RobotAddress, field: string) => {
    if (!ROBOT_ID_RE.test(r.manufacturer)) bad(`${field} manufacturer`, r.manufacturer, ROBOT_ID_PATTERN);
    if (!ROBOT_ID_RE.test(r.serialNumber)) bad(`${field} serial number`, r.serialNumber, ROBOT_ID_PATTERN);
  };
  switch (p.role) {
    case 'edge':
      if (!ID_RE.test(p.site)) bad('site', p.site, ID_PATTERN);
      if (!ID_RE.test(p.checkpoint)) bad('checkpoint', p.checkpoint, ID_PATTERN);
      return;
    case 'robot':
      checkRobot(p.robot, 'robot');
      return;
    case 'bridge':
      if (p.robots.length === 0) throw new Error(`user ${JSON.stringify(p.name)}: a bridge needs at least one robot`);
      p.robots.forEach((r) => checkRobot(r, 'robot'));
      return;
    case 'gateway':
    case 'viewer':
      return;
    default:
      throw new Error(`user ${JSON.stringify((p as Principal).name)}: unknown role ${JSON.stringify((p as { role: unknown }).role)}`);
  }
}

/** May `p` publish to `topic`? Deny by default; `$SYS` is never writable. */
export function canPublish(p: Principal, topic: string, grants: Grants = grantsFor(p)): boolean {
  if (!isValidTopicName(topic) || topic.startsWith('$')) return false;
  return grants.publish.some((filter) => topicMatchesFilter(topic, filter));
}

/** May `p` publish to `topic` with the retain flag set? Only `state`, robot `connection` and `factsheet` (RETAINABLE_FILTERS). */
export function canRetain(p: Principal, topic: string, grants: Grants = grantsFor(p)): boolean {
  return canPublish(p, topic, grants) && grants.retain.some((filter) => topicMatchesFilter(topic, filter));
}

/**
 * Client ids no user may claim except one of the named role: the gateway's default id (and ids
 * starting with it), so that a device connecting first cannot hold the gateway's session name.
 * Other ids are bound to users by first claim (user-store.ts).
 */
export const RESERVED_CLIENT_ID_PREFIXES: ReadonlyArray<{ prefix: string; role: Role }> = [{ prefix: 'checkpoint-gateway', role: 'gateway' }];

/** Whether `p` may use `clientId` at all (before claims): false for an id reserved to another role. */
export function mayUseClientId(p: Principal, clientId: string): boolean {
  return RESERVED_CLIENT_ID_PREFIXES.every(({ prefix, role }) => !clientId.startsWith(prefix) || p.role === role);
}

/** May a retained message on `topic` stay in the broker's persistence (any publisher)? */
export function isRetainable(topic: string): boolean {
  return RETAINABLE_FILTERS.some((filter) => topicMatchesFilter(topic, filter));
}

/** May `p` subscribe to `filter`? Only if every topic the filter can match is readable. */
export function canSubscribe(p: Principal, filter: string, grants: Grants = grantsFor(p)): boolean {
  if (!isValidFilter(filter)) return false;
  return grants.subscribe.some((grant) => filterContains(grant, filter));
}

// ---- MQTT topic algebra ------------------------------------------------------------------------

/** A PUBLISH topic: non-empty, no wildcards, no NUL (MQTT 3.1.1 §4.7.3). */
export function isValidTopicName(topic: string): boolean {
  return topic.length > 0 && !topic.includes('+') && !topic.includes('#') && !topic.includes('\u0000');
}

/** A SUBSCRIBE filter: `+` fills a whole level, `#` only as the whole last level. */
export function isValidFilter(filter: string): boolean {
  if (filter.length === 0 || filter.includes('\u0000')) return false;
  const levels = filter.split('/');
  return levels.every((level, i) => {
    if (level === '#') return i === levels.length - 1;
    if (level === '+') return true;
    return !level.includes('+') && !level.includes('#');
  });
}

/** Standard MQTT matching; filters starting with a wildcard do not match `$` topics (§4.7.2). */
export function topicMatchesFilter(topic: string, filter: string): boolean {
  const t = topic.split('/');
  const f = filter.split('/');
  if (topic.startsWith('$') && (f[0] === '+' || f[0] === '#')) return false;
  for (let i = 0; i < f.length; i++) {
    const level = f[i];
    if (level === '#') return true; // also matches the parent level (`a/#` matches `a`)
    if (i >= t.length) return false;
    if (level !== '+' && level !== t[i]) return false;
  }
  return t.length === f.length;
}

/**
 * Whether every topic matched by `inner` is also matched by `outer` (both valid filters).
 * `checkpoint/v1/+/+/cmd` ⊆ `checkpoint/v1/#`; `checkpoint/v1/#` ⊄ `checkpoint/v1/a/b/cmd`.
 */
export function filterContains(outer: string, inner: string): boolean {
  const o = outer.split('/');
  const n = inner.split('/');
  // `#`/`+` at the top of `inner` reaches `$` topics only if `outer` names them literally.
  if (o[0]!.startsWith('$') && (n[0] === '+' || n[0] === '#')) return false;
  if (n[0]!.startsWith('$') && (o[0] === '+' || o[0] === '#')) return false;
  for (let i = 0; i < o.length; i++) {
    const ol = o[i];
    if (ol === '#') return true;
    if (i >= n.length) return false;
    const nl = n[i];
    if (nl === '#') return false; // inner reaches deeper/wider than a non-# outer level
    if (ol === '+') continue; // any single level, including inner's `+`
    if (nl !== ol) return false; // inner `+` is wider than a literal
  }
  return n.length === o.length;
}
