/**
 * The same users and rules on a NATS cluster (cluster mode, issue #18): an
 * `authorization { users = [...] }` block for nats-server's config, one user per user of the
 * store with its bcrypt hash and the grants our broker enforces (grantsFor in acl.ts) written as
 * NATS subjects. nats-server's MQTT listener maps topic `a/b/c` to subject `a.b.c`, `+` to `*`
 * and `#` to `>`; an MQTT `X/#` also matches `X` itself, so it becomes both `X` and `X.>`.
 *
 * QoS 1 needs one more grant. nats-server 2.9 stores MQTT messages and sessions in JetStream
 * (`$MQTT_msgs`, `$MQTT_sess`, `$MQTT_rmsgs`) through internal clients (no grant needed), but
 * a QoS 1 subscription is a JetStream consumer delivering to `$MQTT.sub.<random id>`, which the
 * server subscribes as the client, under its permissions: without `$MQTT.sub.>` the SUBACK is
 * a failure ("Subscription Violation ... $MQTT.sub..." in the log). test/nats.test.ts shows that
 * an MQTT client cannot use that grant to read other clients' deliveries.
 *
 * Users of role gateway also get the JetStream API grants their replicas' ingest needs
 * (`gatewayJetStreamGrants`): one durable consumer on `$MQTT_msgs`, nothing more.
 */
import { chmodSync, mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { grantsFor, type Principal } from './acl.js';
import type { UserStore } from './user-store.js';

/**
 * NATS subjects equivalent to one MQTT filter or topic. Throws for a level nats-server 2.9
 * cannot carry (`.` in a level, or an empty level): such a grant has no NATS form.
 */
export function mqttFilterToNatsSubjects(filter: string): string[] {
  const levels = filter.split('/');
  for (const level of levels) {
    if (level === '' || level.includes('.') || /\s/.test(level)) {
      throw new Error(`MQTT filter ${JSON.stringify(filter)} has a level NATS 2.9 cannot carry (empty, or with "." or spaces)`);
    }
  }
  const tokens = levels.map((level) => (level === '+' ? '*' : level));
  if (tokens[tokens.length - 1] !== '#') return [tokens.join('.')];
  const parent = tokens.slice(0, -1);
  return parent.length === 0 ? ['>'] : [parent.join('.'), `${parent.join('.')}.>`];
}

/** Where nats-server 2.9 delivers a client's QoS 1 subscriptions (one random subject each). */
export const MQTT_QOS1_DELIVERY_SUBJECTS = '$MQTT.sub.>';

export interface NatsUserPermissions {
  publish: string[];
  subscribe: string[];
}

/** nats-server 2.9's MQTT message stream, which gateway replicas read in cluster mode. */
export const MQTT_MSGS_STREAM = '$MQTT_msgs';
/** The durable consumer the gateway replicas share (gateway config `nats.durable`'s default). */
export const GATEWAY_DURABLE = 'checkpoint-gateway';

/**
 * What a gateway replica needs beyond its topics (gateway/src/ingest/jetstream-consumer.ts):
 * look up the stream, create, look up and pull from its one durable consumer, acknowledge what
 * that consumer delivered, get replies (inbox), and store commands to checkpoints into the stream
 * (publish subject `$MQTT.msgs.` + topic) so devices get them as QoS 1. Nothing else of the JetStream
 * API: no other consumer, no delete, no stream edits.
 */
export function gatewayJetStreamGrants(publishTopics: readonly string[], durable = GATEWAY_DURABLE): NatsUserPermissions {
  const api = '$JS.API';
  return {
    publish: [
      `${api}.STREAM.INFO.${MQTT_MSGS_STREAM}`,
      `${api}.CONSUMER.INFO.${MQTT_MSGS_STREAM}.${durable}`,
      // nats.js on 2.9+: CREATE.<stream>.<name>.<filter>; older servers: DURABLE.CREATE.
      `${api}.CONSUMER.CREATE.${MQTT_MSGS_STREAM}.${durable}.>`,
      `${api}.CONSUMER.DURABLE.CREATE.${MQTT_MSGS_STREAM}.${durable}`,
      `${api}.CONSUMER.MSG.NEXT.${MQTT_MSGS_STREAM}.${durable}`,
      `$JS.ACK.${MQTT_MSGS_STREAM}.${durable}.>`,
      // Commands to checkpoints only: robot orders go over the replica's MQTT connection (a
      // JetStream publish reaches QoS 1 subscribers only; VDA 5050 robots may subscribe with QoS 0).
      ...publishTopics.filter((subject) => subject.startsWith('checkpoint.')).map((subject) => `$MQTT.msgs.${subject}`),
    ],
    subscribe: ['_INBOX.>'],
  };
}

/** A principal's grants as NATS publish/subscribe allow lists. */
export function natsPermissionsFor(user: Principal): NatsUserPermissions {
  const grants = grantsFor(user);
  const unique = (filters: string[]) => [...new Set(filters.flatMap(mqttFilterToNatsSubjects))];
  const publish = unique(grants.publish);
  const subscribe = unique(grants.subscribe);
  const cluster = user.role === 'gateway' ? gatewayJetStreamGrants(publish) : { publish: [], subscribe: [] };
  return {
    publish: [...publish, ...cluster.publish],
    subscribe: subscribe.length > 0 ? [...subscribe, MQTT_QOS1_DELIVERY_SUBJECTS, ...cluster.subscribe] : [],
  };
}

export interface NatsAuthorization {
  /** The config block, ready to include in nats-server.conf. */
  text: string;
  /** Users written to the block. */
  exported: string[];
  /** Users left out, and why (no bcrypt hash; a binding NATS cannot carry). */
  skipped: Array<{ name: string; reason: string }>;
}

/**
 * The `authorization { users = [...] }` block for these users. Pure: `credentials` maps user
 * names to bcrypt hashes; users without one are skipped (and named), as are users whose
 * topics have a level NATS 2.9 cannot carry (a robot serial number with a `.`).
 */
export function natsAuthorization(users: Principal[], credentials: ReadonlyMap<string, string>): NatsAuthorization {
  const q = (value: string) => JSON.stringify(value); // NATS config strings accept JSON escapes
  const list = (subjects: string[]) => `[${subjects.map(q).join(', ')}]`;
  const entries: string[] = [];
  const exported: string[] = [];
  const skipped: NatsAuthorization['skipped'] = [];
  for (const user of [...users].sort((a, b) => a.name.localeCompare(b.name))) {
    const hash = credentials.get(user.name);
    if (hash === undefined) {
      skipped.push({ name: user.name, reason: 'no bcrypt hash (set auth.natsBcryptCost, then "user passwd")' });
      continue;
    }
    let permissions: NatsUserPermissions;
    try {
      permissions = natsPermissionsFor(user);
    } catch (error) {
      skipped.push({ name: user.name, reason: (error as Error).message });
      continue;
    }
    exported.push(user.name);
    entries.push(
      [
        `    # role ${user.role}`,
        `    { user: ${q(user.name)}, password: ${q(hash)}, permissions: {`,
        // An empty allow list would mean "no restriction" to nats-server: deny everything instead.
        `        publish: ${permissions.publish.length > 0 ? `{ allow: ${list(permissions.publish)} }` : '{ deny: [">"] }'}`,
        `        subscribe: ${permissions.subscribe.length > 0 ? `{ allow: ${list(permissions.subscribe)} }` : '{ deny: [">"] }'}`,
        '    } }',
      ].join('\n'),
    );
  }
  const text = [
    '# Generated by checkpoint-broker nats-export from the user store. Do not edit: re-export.',
    '# Include it in every node\'s nats-server.conf. Users not listed cannot connect.',
    'authorization {',
    '  users = [',
    ...entries,
    '  ]',
    '}',
    '',
  ].join('\n');
  return { text, exported, skipped };
}

/** Writes the block for the store's users to `outFile` (mode 0600: it holds password hashes). */
export function exportNats(store: UserStore, outFile: string): NatsAuthorization & { file: string } {
  const credentials = new Map(store.natsCredentials().map((c) => [c.name, c.hash]));
  const result = natsAuthorization(store.list(), credentials);
  const file = resolve(outFile);
  mkdirSync(dirname(file), { recursive: true });
  const tmp = `${file}.tmp-${process.pid}`;
  writeFileSync(tmp, result.text, { mode: 0o600 });
  chmodSync(tmp, 0o600);
  renameSync(tmp, file);
  return { ...result, file };
}
