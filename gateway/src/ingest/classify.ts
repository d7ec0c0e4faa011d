/**
 * What an MQTT message is (pure): topic + payload → a validated item, something to ignore, or an
 * invalid message with a short, stable cause for metrics and logs. Causes never contain payload
 * values (a bad payload may hold a temperature).
 */
import {
  parseCheckpointTopic,
  parsePayload,
  parseVda5050,
  parseVda5050Topic,
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

export type Classified =
  | { kind: 'screening'; where: Where; screening: Screening }
  | { kind: 'state'; where: Where; state: CheckpointState }
  | { kind: 'telemetry'; where: Where; telemetry: Telemetry }
  | { kind: 'snapshot'; where: Where; screeningId: string; jpeg: Buffer }
  | { kind: 'cmd/ack'; where: Where; ack: CommandAck }
  /** A valid VDA 5050 message from a robot (the fleet parses it again: it is self-contained). */
  | { kind: 'robot'; robot: RobotAddress; channel: RobotChannel }
  | { kind: 'ignored'; why: string }
  | Invalid;

export interface Invalid {
  kind: 'invalid';
  /** Metric label: the topic for contract topics, `other` for topics outside the contract (unbounded). */
  topicLabel: string;
  cause: InvalidCause;
  /** Field paths and messages without values, for the log. */
  detail: string;
}

export type InvalidCause = 'unknown_topic' | 'too_large' | 'not_json' | 'schema' | 'topic_mismatch' | 'not_jpeg' | 'empty';

function invalid(topicLabel: string, cause: InvalidCause, detail: string): Invalid {
  return { kind: 'invalid', topicLabel, cause, detail };
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

/** What robots publish to the master control (VDA 5050 §6.1); order and instantActions are ours. */
export const ROBOT_CHANNELS = ['state', 'connection', 'factsheet', 'visualization'] as const;
export type RobotChannel = (typeof ROBOT_CHANNELS)[number];

function classifyRobotMessage(topic: string, payload: Buffer): Classified | null {
  const parsed = parseVda5050Topic(topic);
  if (!parsed) return null;
  const channel = parsed.channel as RobotChannel;
  if (!ROBOT_CHANNELS.includes(channel)) return { kind: 'ignored', why: `our own ${parsed.channel}` };
  if (payload.length === 0) return { kind: 'ignored', why: 'retained message cleared' };
  const robot = { manufacturer: parsed.manufacturer, serialNumber: parsed.serialNumber };
  const result = parseVda5050(channel, payload, robot);
  if (result.ok) return { kind: 'robot', robot, channel };
  const mismatch = result.errors.length === 1 && result.errors[0]!.path === '/serialNumber' && result.errors[0]!.message.startsWith('payload names');
  return invalid(topic, mismatch ? 'topic_mismatch' : causeOf(result.errors), describeIssues(result.errors));
}

export function classifyMessage(topic: string, payload: Buffer): Classified {
  const parsed = parseCheckpointTopic(topic);
  if (!parsed) {
    if (topic.startsWith('$SYS/')) return { kind: 'ignored', why: 'broker stats' };
    const robot = classifyRobotMessage(topic, payload);
    if (robot) return robot;
    return invalid('other', 'unknown_topic', `topic outside the contract: ${topic.slice(0, 200)}`);
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
  const result = parsePayload(parsed.channel, payload);
  if (!result.ok) return invalid(topic, causeOf(result.errors), describeIssues(result.errors));
  const value = result.value;
  if ('site' in value && (value.site !== where.site || value.checkpoint !== where.checkpoint)) {
    return invalid(topic, 'topic_mismatch', `payload names ${value.site}/${value.checkpoint}, topic ${where.site}/${where.checkpoint}`);
  }
  switch (parsed.channel) {
    case 'screening':
      return { kind: 'screening', where, screening: value as Screening };
    case 'state':
      return { kind: 'state', where, state: value as CheckpointState };
    case 'telemetry':
      return { kind: 'telemetry', where, telemetry: value as Telemetry };
    case 'cmd/ack':
      return { kind: 'cmd/ack', where, ack: value as CommandAck };
  }
}
