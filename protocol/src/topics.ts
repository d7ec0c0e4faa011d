/**
 * Topic builders and parsers for the MQTT contract (DESIGN.md, "MQTT contract").
 *
 *   checkpoint/v1/{site}/{checkpoint}/{state|screening|telemetry|cmd|cmd/ack|snapshot/{screeningId}}
 *   uagv/v2/{manufacturer}/{serialNumber}/{order|instantActions|state|visualization|connection|factsheet}
 *
 * Builders throw on invalid ids (a bad id in a topic is a programming or config error);
 * parsers return null for anything that is not a contract topic (it is input, not a bug).
 */

export const TOPIC_ROOT = 'checkpoint/v1';

/** Site and checkpoint ids: lowercase letters, digits and dashes, 1 to 64 characters. */
export const ID_PATTERN = '^[a-z0-9-]{1,64}$';
const ID_RE = new RegExp(ID_PATTERN);

/** ULID: 26 Crockford base32 characters (the screening id and idempotency key). */
export const ULID_PATTERN = '^[0-9A-HJKMNP-TV-Z]{26}$';
const ULID_RE = new RegExp(ULID_PATTERN);

export function isValidId(id: string): boolean {
  return ID_RE.test(id);
}

export function isUlid(id: string): boolean {
  return ULID_RE.test(id);
}

function assertId(kind: string, id: string): void {
  if (!isValidId(id)) {
    throw new Error(`invalid ${kind} id ${JSON.stringify(id)}: expected ${ID_PATTERN}`);
  }
}

export type CheckpointChannel = 'state' | 'screening' | 'telemetry' | 'cmd' | 'cmd/ack' | 'snapshot';

export interface CheckpointAddress {
  site: string;
  checkpoint: string;
}

export interface ParsedCheckpointTopic extends CheckpointAddress {
  channel: CheckpointChannel;
  /** Only for `snapshot`: the screening the JPEG belongs to. */
  screeningId?: string;
}

/** `checkpoint/v1/{site}/{checkpoint}` */
export function checkpointPrefix({ site, checkpoint }: CheckpointAddress): string {
  assertId('site', site);
  assertId('checkpoint', checkpoint);
  return `${TOPIC_ROOT}/${site}/${checkpoint}`;
}

export const checkpointTopics = {
  state: (a: CheckpointAddress) => `${checkpointPrefix(a)}/state`,
  screening: (a: CheckpointAddress) => `${checkpointPrefix(a)}/screening`,
  telemetry: (a: CheckpointAddress) => `${checkpointPrefix(a)}/telemetry`,
  cmd: (a: CheckpointAddress) => `${checkpointPrefix(a)}/cmd`,
  cmdAck: (a: CheckpointAddress) => `${checkpointPrefix(a)}/cmd/ack`,
  snapshot: (a: CheckpointAddress, screeningId: string) => {
    if (!isUlid(screeningId)) throw new Error(`invalid screening id ${JSON.stringify(screeningId)}: expected a ULID`);
    return `${checkpointPrefix(a)}/snapshot/${screeningId}`;
  },
} as const;

/**
 * Subscription filter for one channel across sites/checkpoints; `+` where an id is omitted.
 * e.g. `checkpointFilter('screening')` = `checkpoint/v1/+/+/screening`.
 */
export function checkpointFilter(
  channel: CheckpointChannel,
  where: Partial<CheckpointAddress> = {},
): string {
  const site = where.site ?? '+';
  const checkpoint = where.checkpoint ?? '+';
  if (where.site !== undefined) assertId('site', where.site);
  if (where.checkpoint !== undefined) assertId('checkpoint', where.checkpoint);
  const suffix = channel === 'snapshot' ? 'snapshot/+' : channel;
  return `${TOPIC_ROOT}/${site}/${checkpoint}/${suffix}`;
}

export function parseCheckpointTopic(topic: string): ParsedCheckpointTopic | null {
  const parts = topic.split('/');
  if (parts.length < 5 || parts[0] !== 'checkpoint' || parts[1] !== 'v1') return null;
  const [, , site, checkpoint, ...rest] = parts as [string, string, string, string, ...string[]];
  if (!isValidId(site) || !isValidId(checkpoint)) return null;
  const tail = rest.join('/');
  switch (tail) {
    case 'state':
    case 'screening':
    case 'telemetry':
    case 'cmd':
    case 'cmd/ack':
      return { site, checkpoint, channel: tail };
  }
  if (rest.length === 2 && rest[0] === 'snapshot' && isUlid(rest[1]!)) {
    return { site, checkpoint, channel: 'snapshot', screeningId: rest[1]! };
  }
  return null;
}

// ---------------------------------------------------------------------------------------------
// VDA 5050 (2.x). Manufacturer and serial number are free strings in the standard; we restrict
// them to characters that are safe in topics and ACLs.

export const VDA5050_INTERFACE = 'uagv';
export const VDA5050_MAJOR = 'v2';

export type Vda5050Channel =
  | 'order'
  | 'instantActions'
  | 'state'
  | 'visualization'
  | 'connection'
  | 'factsheet';

export const VDA5050_CHANNELS: readonly Vda5050Channel[] = [
  'order',
  'instantActions',
  'state',
  'visualization',
  'connection',
  'factsheet',
];

export interface RobotAddress {
  manufacturer: string;
  serialNumber: string;
}

export interface ParsedVda5050Topic extends RobotAddress {
  channel: Vda5050Channel;
}

/** Manufacturer / serial number: letters, digits, `_`, `-`, `.`; 1 to 64 characters. */
export const ROBOT_ID_PATTERN = '^[A-Za-z0-9_.-]{1,64}$';
const ROBOT_ID_RE = new RegExp(ROBOT_ID_PATTERN);

export function vda5050Topic(robot: RobotAddress, channel: Vda5050Channel): string {
  for (const [kind, value] of [
    ['manufacturer', robot.manufacturer],
    ['serialNumber', robot.serialNumber],
  ] as const) {
    if (!ROBOT_ID_RE.test(value)) {
      throw new Error(`invalid VDA 5050 ${kind} ${JSON.stringify(value)}: expected ${ROBOT_ID_PATTERN}`);
    }
  }
  return `${VDA5050_INTERFACE}/${VDA5050_MAJOR}/${robot.manufacturer}/${robot.serialNumber}/${channel}`;
}

/** e.g. `vda5050Filter('state')` = `uagv/v2/+/+/state`. */
export function vda5050Filter(channel: Vda5050Channel, robot: Partial<RobotAddress> = {}): string {
  return `${VDA5050_INTERFACE}/${VDA5050_MAJOR}/${robot.manufacturer ?? '+'}/${robot.serialNumber ?? '+'}/${channel}`;
}

export function parseVda5050Topic(topic: string): ParsedVda5050Topic | null {
  const parts = topic.split('/');
  if (parts.length !== 5 || parts[0] !== VDA5050_INTERFACE || parts[1] !== VDA5050_MAJOR) return null;
  const [, , manufacturer, serialNumber, channel] = parts as [string, string, string, string, string];
  if (!ROBOT_ID_RE.test(manufacturer) || !ROBOT_ID_RE.test(serialNumber)) return null;
  if (!(VDA5050_CHANNELS as readonly string[]).includes(channel)) return null;
  return { manufacturer, serialNumber, channel: channel as Vda5050Channel };
}
