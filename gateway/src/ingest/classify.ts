/**
 * What an MQTT message is (pure): topic + payload → a validated item, something to ignore, or an
 * invalid message with a short, stable cause for metrics and logs. Causes never contain payload
 * values (a bad payload may hold a temperature).
 */
import {
  NOT_AN_INSTANT,
  parseCheckpointTopic,
  parsePayload,
  parseVda5050,
  parseVda5050Topic,
  validatePayload,
  validateVda5050,
  type RobotAddress,
  type CheckpointState,
  type CommandAck,
  type PayloadIssue,
  type Screening,
  type Telemetry,
} from '@checkpoint/protocol';

/** Snapshots above this are refused (the agent's are ~30 KB; the broker's packet limit is 256 KB). */
export const MAX_SNAPSHOT_BYTES = 2 * 1024 * 1024;

export interface Where {
  site: string;
  checkpoint: string;
}

/**
 * A timestamp that matched the pattern but named no instant (leap second, month 13): the message
 * is kept with the gateway's receive time in its place, and flagged with what was there.
 */
export interface ReplacedTimestamp {
  /** JSON pointer of the field (`/ts`, `/timestamp`). */
  path: string;
  original: string;
  problem: string;
}

/** Present (non-empty) when timestamps were replaced by the receive time. */
type Fixed = { replacedTs?: ReplacedTimestamp[] };

export type Classified =
  | ({ kind: 'screening'; where: Where; screening: Screening } & Fixed)
  | ({ kind: 'state'; where: Where; state: CheckpointState } & Fixed)
  | ({ kind: 'telemetry'; where: Where; telemetry: Telemetry } & Fixed)
  | { kind: 'snapshot'; where: Where; screeningId: string; jpeg: Buffer }
  | ({ kind: 'cmd/ack'; where: Where; ack: CommandAck } & Fixed)
  /**
   * A valid VDA 5050 message from a robot (the fleet parses it again: it is self-contained);
   * `payload` is what to hand it (the original, or a copy with replaced timestamps).
   */
  | ({ kind: 'robot'; robot: RobotAddress; channel: RobotChannel; payload: Buffer } & Fixed)
  | { kind: 'ignored'; why: string }
  | Invalid;

export interface Invalid {
  kind: 'invalid';
  /**
   * Metric label: the topic pattern with ids as `+` (`checkpoint/v1/+/+/snapshot/+`), `other` for
   * topics outside the contract: bounded, whatever ids devices send.
   */
  topicLabel: string;
  /** What to log once per: the topic without snapshot ids (bounded by the devices). */
  logKey: string;
  cause: InvalidCause;
  /** Field paths and messages without values, for the log. */
  detail: string;
}

export type InvalidCause = 'unknown_topic' | 'too_large' | 'not_json' | 'schema' | 'topic_mismatch' | 'not_jpeg' | 'empty';

/** `topic` of a contract channel (checkpoint or robot), or 'other'. */
function invalid(topic: string, cause: InvalidCause, detail: string): Invalid {
  const parts = topic.split('/');
  if (topic === 'other') return { kind: 'invalid', topicLabel: 'other', logKey: 'other', cause, detail };
  if (parts[0] === 'checkpoint') {
    const snapshot = parts[4] === 'snapshot';
    const topicLabel = ['checkpoint', 'v1', '+', '+', ...(snapshot ? ['snapshot', '+'] : parts.slice(4, 6))].join('/');
    return { kind: 'invalid', topicLabel, logKey: snapshot ? parts.slice(0, 5).join('/') : topic, cause, detail };
  }
  return { kind: 'invalid', topicLabel: ['uagv', 'v2', '+', '+', ...parts.slice(4)].join('/'), logKey: topic, cause, detail };
}

/** Protocol messages may quote a value ("got 38.2"); keep paths and the rule only. */
function describeIssues(issues: PayloadIssue[]): string {
  return issues.map((i) => `${i.path || '/'}: ${i.message.replace(/,? got .*$/s, '')}`).join('; ');
}

function causeOf(issues: PayloadIssue[]): InvalidCause {
  const first = issues[0];
  if (issues.length === 1 && first && first.path === '') {
    if (first.message.startsWith('payload of')) return 'too_large';
    if (first.message.startsWith('not valid JSON')) return 'not_json';
  }
  return 'schema';
}

/**
 * When every issue is a timestamp that names no instant, the message with those fields set to
 * `receivedMs` (re-validated by `validate`), else null. Only timestamps: anything else wrong
 * keeps the message invalid.
 */
function replaceTimestamps<T>(
  issues: PayloadIssue[],
  payload: Buffer,
  receivedMs: number,
  validate: (value: unknown) => { ok: true; value: T } | { ok: false },
): { value: T; replaced: ReplacedTimestamp[] } | null {
  if (issues.length === 0 || !issues.every((i) => i.code === NOT_AN_INSTANT && /^(\/[A-Za-z0-9_]+)+$/.test(i.path))) return null;
  const value = JSON.parse(payload.toString('utf8')) as Record<string, unknown>;
  const replaced: ReplacedTimestamp[] = [];
  for (const issue of issues) {
    const keys = issue.path.slice(1).split('/');
    let parent: Record<string, unknown> = value;
    for (const key of keys.slice(0, -1)) parent = parent[key] as Record<string, unknown>;
    const last = keys[keys.length - 1]!;
    replaced.push({ path: issue.path, original: String(parent[last]).slice(0, 40), problem: issue.message });
    parent[last] = new Date(receivedMs).toISOString();
  }
  const again = validate(value);
  return again.ok ? { value: again.value, replaced } : null;
}

/** What robots publish to the master control (VDA 5050 §6.1); order and instantActions are ours. */
export const ROBOT_CHANNELS = ['state', 'connection', 'factsheet', 'visualization'] as const;
export type RobotChannel = (typeof ROBOT_CHANNELS)[number];

function classifyRobotMessage(topic: string, payload: Buffer, receivedMs: number): Classified | null {
  const parsed = parseVda5050Topic(topic);
  if (!parsed) return null;
  const channel = parsed.channel as RobotChannel;
  if (!ROBOT_CHANNELS.includes(channel)) return { kind: 'ignored', why: `our own ${parsed.channel}` };
  if (payload.length === 0) return { kind: 'ignored', why: 'retained message cleared' };
  const robot = { manufacturer: parsed.manufacturer, serialNumber: parsed.serialNumber };
  const result = parseVda5050(channel, payload, robot);
  if (result.ok) return { kind: 'robot', robot, channel, payload };
  const fixed = replaceTimestamps(result.errors, payload, receivedMs, (v) => validateVda5050(channel, v, robot));
  if (fixed) return { kind: 'robot', robot, channel, payload: Buffer.from(JSON.stringify(fixed.value)), replacedTs: fixed.replaced };
  const mismatch = result.errors.length === 1 && result.errors[0]!.path === '/serialNumber' && result.errors[0]!.message.startsWith('payload names');
  return invalid(topic, mismatch ? 'topic_mismatch' : causeOf(result.errors), describeIssues(result.errors));
}

/** `receivedMs` stands in for timestamps that name no instant (flagged in `replacedTs`). */
export function classifyMessage(topic: string, payload: Buffer, receivedMs: number): Classified {
  const parsed = parseCheckpointTopic(topic);
  if (!parsed) {
    if (topic.startsWith('$SYS/')) return { kind: 'ignored', why: 'broker stats' };
    const robot = classifyRobotMessage(topic, payload, receivedMs);
    if (robot) return robot;
    return { ...invalid('other', 'unknown_topic', `topic outside the contract: ${topic.slice(0, 200)}`), logKey: topic.slice(0, 200) };
  }
  const where = { site: parsed.site, checkpoint: parsed.checkpoint };
  if (parsed.channel === 'cmd') return { kind: 'ignored', why: 'our own command' };
  if (parsed.channel === 'snapshot') {
    if (payload.length === 0) return invalid(topic, 'empty', 'empty snapshot');
    if (payload.length > MAX_SNAPSHOT_BYTES) return invalid(topic, 'too_large', `snapshot of ${payload.length} bytes exceeds ${MAX_SNAPSHOT_BYTES}`);
    // JPEG: SOI marker FF D8 FF.
    if (payload[0] !== 0xff || payload[1] !== 0xd8 || payload[2] !== 0xff) return invalid(topic, 'not_jpeg', 'snapshot is not a JPEG (no FF D8 FF start marker)');
    return { kind: 'snapshot', where, screeningId: parsed.screeningId!, jpeg: payload };
  }
  if (payload.length === 0 && parsed.channel === 'state') return { kind: 'ignored', why: 'retained state cleared' };
  const channel = parsed.channel;
  const result = parsePayload(channel, payload);
  let value: Screening | CheckpointState | Telemetry | CommandAck;
  let fixed: Fixed = {};
  if (result.ok) value = result.value;
  else {
    const replaced = replaceTimestamps(result.errors, payload, receivedMs, (v) => validatePayload(channel, v));
    if (!replaced) return invalid(topic, causeOf(result.errors), describeIssues(result.errors));
    value = replaced.value;
    fixed = { replacedTs: replaced.replaced };
  }
  if ('site' in value && (value.site !== where.site || value.checkpoint !== where.checkpoint)) {
    return invalid(topic, 'topic_mismatch', `payload names ${value.site}/${value.checkpoint}, topic ${where.site}/${where.checkpoint}`);
  }
  switch (parsed.channel) {
    case 'screening':
      return { kind: 'screening', where, screening: value as Screening, ...fixed };
    case 'state':
      return { kind: 'state', where, state: value as CheckpointState, ...fixed };
    case 'telemetry':
      return { kind: 'telemetry', where, telemetry: value as Telemetry, ...fixed };
    case 'cmd/ack':
      return { kind: 'cmd/ack', where, ack: value as CommandAck, ...fixed };
  }
}
