/**
 * The same users and rules on a NATS cluster: export the store with nats-export, start a real
 * 3-node nats-server cluster (JetStream + MQTT) with the block, and run the shared allow/deny
 * matrix with real mqtt.js clients, publishers and subscribers on different nodes.
 */
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { PassThrough, Readable } from 'node:stream';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { describe, expect, it, onTestFinished } from 'vitest';
import { makeTempDir, startNatsCluster } from '@checkpoint/test-support';
import { grantsFor, openUserStore, topicMatchesFilter } from '../src/index.js';
import { main } from '../src/cli.js';
import { AckPolicy, DeliverPolicy, connect as natsConnect } from 'nats';
import { exportNats, GATEWAY_DURABLE, MQTT_MSGS_STREAM, mqttFilterToNatsSubjects, natsAuthorization, natsPermissionsFor } from '../src/nats-export.js';
import { natsPasswordHash } from '../src/passwords.js';
import { addMatrixUsers, connect, PASSWORD, PUBLISH_CASES, publishAsync, runDeliveryMatrix, runMatrix, subackCode, USERS } from './matrix.js';

const PROBE = { username: 'probe', password: 'probe-password-1' };
const FAST_SCRYPT = { N: 1024, r: 8, p: 1 };

describe('nats-export (pure parts)', () => {
  it('maps MQTT filters to NATS subjects, `#` to both the parent and its children', () => {
    expect(mqttFilterToNatsSubjects('checkpoint/v1/hq/gate-1/cmd')).toEqual(['checkpoint.v1.hq.gate-1.cmd']);
    expect(mqttFilterToNatsSubjects('checkpoint/v1/+/+/screening')).toEqual(['checkpoint.v1.*.*.screening']);
    expect(mqttFilterToNatsSubjects('checkpoint/v1/#')).toEqual(['checkpoint.v1', 'checkpoint.v1.>']);
    expect(mqttFilterToNatsSubjects('#')).toEqual(['>']);
    expect(() => mqttFilterToNatsSubjects('uagv/v2/acme/R.1/state')).toThrow(/level NATS 2.9 cannot carry/);
    expect(() => mqttFilterToNatsSubjects('a//b')).toThrow(/"a\/\/b"/);
  });

  it('gives an edge publish rights on its own subtree and subscribe rights on its cmd only', () => {
    expect(natsPermissionsFor({ name: 'e', role: 'edge', site: 'hq', checkpoint: 'gate-1' })).toEqual({
      publish: ['state', 'screening', 'telemetry', 'cmd.ack', 'snapshot.*'].map((c) => `checkpoint.v1.hq.gate-1.${c}`),
      subscribe: ['checkpoint.v1.hq.gate-1.cmd', '$MQTT.sub.>'],
    });
  });

  it('gives the gateway role the JetStream grants of its one ingest consumer, and nothing of the API to others', () => {
    const gateway = natsPermissionsFor({ name: 'g', role: 'gateway' });
    expect(gateway.publish).toEqual(
      expect.arrayContaining([
        '$JS.API.STREAM.INFO.$MQTT_msgs',
        '$JS.API.CONSUMER.INFO.$MQTT_msgs.checkpoint-gateway',
        '$JS.API.CONSUMER.CREATE.$MQTT_msgs.checkpoint-gateway.>',
        '$JS.API.CONSUMER.MSG.NEXT.$MQTT_msgs.checkpoint-gateway',
        '$JS.ACK.$MQTT_msgs.checkpoint-gateway.>',
        '$MQTT.msgs.checkpoint.v1.*.*.cmd',
      ]),
    );
    expect(gateway.publish.filter((p) => p.startsWith('$MQTT.msgs.'))).toEqual(['$MQTT.msgs.checkpoint.v1.*.*.cmd']);
    expect(gateway.publish.some((p) => /DELETE|STREAM\.(CREATE|UPDATE|PURGE)|\$JS\.API\.>/.test(p))).toBe(false);
    expect(gateway.subscribe).toContain('_INBOX.>');
    for (const user of [{ name: 'e', role: 'edge', site: 'hq', checkpoint: 'gate-1' }, { name: 'v', role: 'viewer' }] as const) {
      const p = natsPermissionsFor(user);
      expect([...p.publish, ...p.subscribe].filter((s) => s.startsWith('$JS') || s.startsWith('_INBOX') || s.startsWith('$MQTT.msgs'))).toEqual([]);
    }
  });

  it('skips, and names, users without a bcrypt hash or with a binding NATS cannot carry', () => {
    const result = natsAuthorization(
      [
        { name: 'viewer', role: 'viewer' },
        { name: 'dotted', role: 'robot', robot: { manufacturer: 'acme', serialNumber: 'R.1' } },
        { name: 'nohash', role: 'gateway' },
      ],
      new Map([['viewer', '$2b$04$abc'], ['dotted', '$2b$04$def']]),
    );
    expect(result.exported).toEqual(['viewer']);
    expect(result.skipped.map((s) => s.name)).toEqual(['dotted', 'nohash']);
    expect(result.skipped[0]!.reason).toMatch(/cannot carry/);
    expect(result.skipped[1]!.reason).toMatch(/no bcrypt hash/);
    // A viewer publishes nothing: an explicit deny, because an empty allow list means "anything".
    expect(result.text).toContain('publish: { deny: [">"] }');
    expect(result.text).toMatch(/^authorization \{\n {2}users = \[/m);
  });

  it('keeps no bcrypt copy unless configured, and none for passwords longer than bcrypt reads', async () => {
    const dir = makeTempDir('checkpoint-broker-nats-store');
    const plain = openUserStore(join(dir, 'plain.sqlite'), { scrypt: FAST_SCRYPT, mosquittoHashIterations: 0 });
    onTestFinished(() => plain.close());
    await plain.add({ name: 'viewer', role: 'viewer' }, PASSWORD);
    expect(plain.natsCredentials()).toEqual([]);

    const kept = openUserStore(join(dir, 'kept.sqlite'), { scrypt: FAST_SCRYPT, mosquittoHashIterations: 0, natsBcryptCost: 4 });
    onTestFinished(() => kept.close());
    await kept.add({ name: 'viewer', role: 'viewer' }, PASSWORD);
    await kept.add({ name: 'long', role: 'viewer' }, 'x'.repeat(73));
    expect(kept.natsCredentials().map((c) => c.name)).toEqual(['viewer']);
    expect(kept.natsCredentials()[0]!.hash).toMatch(/^\$2b\$04\$/);
    await kept.setPassword('viewer', 'another-password-2');
    expect(kept.natsCredentials()[0]!.hash).not.toBe((await natsPasswordHash(PASSWORD, 4))!);
  });
});

describe('checkpoint-broker nats-export', () => {
  it('writes the block for users with a bcrypt copy and names (exit 1) those without', async () => {
    const dir = makeTempDir('checkpoint-broker-nats-cli');
    const run = async (args: string[], stdinText = '') => {
      let out = '';
      let err = '';
      const stdout = new PassThrough().on('data', (d) => (out += d));
      const stderr = new PassThrough().on('data', (d) => (err += d));
      const code = await main(args, { stdin: Readable.from([stdinText]), stdout, stderr, env: { CHECKPOINT_DATA_DIR: join(dir, 'data') } });
      return { code, out, err };
    };
    // Added before the bcrypt copy was turned on: no NATS hash yet.
    expect((await run(['user', 'add', 'old-viewer', '--role', 'viewer'])).code).toBe(0);
    const config = join(dir, 'broker.yaml');
    writeFileSync(config, 'auth:\n  natsBcryptCost: 4\n');
    expect((await run(['user', 'add', 'gate-1', '--role', 'edge', '--site', 'hq', '--checkpoint', 'gate-1', '--password-stdin', '-c', config], 'gate-1-password\n')).code).toBe(0);
    const outFile = join(dir, 'nats', 'auth.conf');
    const result = await run(['nats-export', '--out', outFile, '-c', config]);
    expect(result.code).toBe(1);
    expect(result.out).toContain(`wrote ${outFile} (1 users)`);
    expect(result.err).toMatch(/not exported: old-viewer \(no bcrypt hash/);
    const text = readFileSync(outFile, 'utf8');
    expect(text).toContain('{ user: "gate-1", password: "$2b$04$');
    expect(text).not.toContain('old-viewer');
    expect(text).not.toContain('gate-1-password');
    expect(result.out + result.err).not.toContain('$2b$');

    expect((await run(['user', 'passwd', 'old-viewer', '-c', config])).code).toBe(0);
    expect((await run(['nats-export', '--out', outFile, '-c', config])).code).toBe(0);
    expect(readFileSync(outFile, 'utf8')).toContain('{ user: "old-viewer"');
  });
});

describe('nats-export against a real 3-node NATS cluster', () => {
  it('accepts the passwords and enforces the same matrix as our broker', async () => {
    const dir = makeTempDir('checkpoint-broker-nats');
    const store = openUserStore(join(dir, 'users.sqlite'), { scrypt: FAST_SCRYPT, mosquittoHashIterations: 0, natsBcryptCost: 4 });
    onTestFinished(() => store.close());
    await addMatrixUsers(store);
    const exported = exportNats(store, join(dir, 'export', 'checkpoint-nats-auth.conf'));
    expect(exported.exported.sort()).toEqual(USERS.map((u) => u.name).sort());
    expect(exported.skipped).toEqual([]);
    expect(statSync(exported.file).mode & 0o777).toBe(0o600);

    // Test-only publisher allowed everywhere, to probe what each user can read.
    const probeHash = (await natsPasswordHash(PROBE.password, 4))!;
    const authorization = readFileSync(exported.file, 'utf8').replace(
      '  users = [\n',
      `  users = [\n    { user: "probe", password: ${JSON.stringify(probeHash)}, permissions: { publish: ">", subscribe: ">" } }\n`,
    );
    const cluster = await startNatsCluster({ authorization });
    onTestFinished(() => cluster.stop());
    const [first, second] = cluster.nodes;

    const refused = mqtt.connect(first!.mqttUrl, { username: 'edge-a', password: 'wrong-password', reconnectPeriod: 0 });
    const code = await new Promise<number>((resolve) => {
      refused.on('packetreceive', (p) => p.cmd === 'connack' && resolve(p.returnCode ?? -1));
      refused.on('error', () => {});
    });
    refused.end(true);
    expect(code).toBe(5); // not authorized

    // Publishing: denied QoS 1 publishes are acknowledged and dropped, the client stays connected.
    const result = await runMatrix(first!.mqttUrl);
    expect(result.publishMismatches).toEqual([]);
    expect(result.publishersStillConnected).toBe(true);
    expect(PUBLISH_CASES.some((c) => !c.allowed)).toBe(true);
    // Subscribing: nats-server refuses a filter outside the grants in the SUBACK (0x80).
    expect(result.subscribeMismatches).toEqual([]);

    // Delivery across nodes: subscribers on node 2, QoS 1, so the MQTT internals ($MQTT.sub.*
    // delivery subjects, JetStream) work with permissions that list only topic subjects.
    const readable = (user: string, topic: string) => grantsFor(USERS.find((u) => u.name === user)!).subscribe.some((f) => topicMatchesFilter(topic, f));
    const delivery = await runDeliveryMatrix(second!.mqttUrl, PROBE, readable, topicMatchesFilter);
    expect(delivery.leaks).toEqual([]);
    // nats-server publishes no `$SYS/broker/...` stats over MQTT (our broker does): those
    // subscriptions are granted and stay silent. Every other allowed subscription got its probes.
    expect(delivery.starved.map((c) => `${c.user} ${c.topic}`).sort()).toEqual(['gateway $SYS/broker/#', 'viewer $SYS/broker/#']);

    // The `$MQTT.sub.>` grant QoS 1 needs must not let a client read other clients' deliveries
    // through MQTT topics that map onto those subjects.
    const snoop = await connect(second!.mqttUrl, { username: 'edge-b', password: PASSWORD, clientId: 'nats-snoop' });
    onTestFinished(() => snoop.endAsync(true));
    const snooped: string[] = [];
    snoop.on('message', (topic) => snooped.push(topic));
    const snoopFilters = ['$MQTT/sub/#', '$MQTT/sub/+', '$MQTT/#', '#'];
    const snoopCodes = [
      ...(await Promise.all(snoopFilters.map((f) => subackCode(snoop, f)))),
      // QoS 0 too: no JetStream consumer there, just interest in the subject.
      ...(await Promise.all(snoopFilters.map(async (f) => ((await snoop.subscribeAsync(f, { qos: 0 }).catch(() => [{ qos: 128 }]))[0]?.qos ?? -1)))),
    ];
    expect(snoopCodes).toEqual(snoopCodes.map(() => 0x80)); // every one refused (QoS 0 and 1)
    const victim = await connect(second!.mqttUrl, { username: 'gateway', password: PASSWORD, clientId: 'nats-victim' });
    onTestFinished(() => victim.endAsync(true));
    const victimGot = new Promise<void>((resolve) => victim.on('message', () => resolve()));
    expect(await subackCode(victim, 'checkpoint/v1/+/+/screening')).toBe(1);
    const edgeA = await connect(first!.mqttUrl, { username: 'edge-a', password: PASSWORD, clientId: 'nats-edge-a-pub' });
    await publishAsync(edgeA, 'checkpoint/v1/hq/gate-1/screening', 'secret-screening');
    await edgeA.endAsync();
    await victimGot;
    await publishAsync(snoop, 'checkpoint/v1/hq/gate-2/state', 'flush'); // one round trip after the delivery
    expect(snooped).toEqual([]);

    // A persistent QoS 1 session of an edge gets a command published on another node while it
    // was away: the stored path ($MQTT_msgs consumer) works under the edge's permissions too.
    const edge = await connect(second!.mqttUrl, { username: 'edge-a', password: PASSWORD, clientId: 'nats-edge-a', clean: false });
    expect(await subackCode(edge, 'checkpoint/v1/hq/gate-1/cmd')).toBe(1);
    await edge.endAsync();
    const gateway = await connect(first!.mqttUrl, { username: 'gateway', password: PASSWORD, clientId: 'nats-gateway' });
    await publishAsync(gateway, 'checkpoint/v1/hq/gate-1/cmd', 'while-away');
    await gateway.endAsync();
    const back = mqtt.connect(second!.mqttUrl, { username: 'edge-a', password: PASSWORD, clientId: 'nats-edge-a', clean: false, reconnectPeriod: 0 });
    onTestFinished(() => back.endAsync(true));
    const got = await new Promise<string>((resolve, reject) => {
      back.on('message', (_topic, payload) => resolve(payload.toString()));
      back.on('error', reject);
    });
    expect(got).toBe('while-away');

    // Cluster mode ingest: the gateway role may create, look up and pull from its durable
    // consumer on $MQTT_msgs and ack what it got; an edge may do none of it (nor inject into the stream).
    const gatewayNats = await natsConnect({ servers: cluster.natsUrls, user: 'gateway', pass: PASSWORD });
    onTestFinished(() => gatewayNats.close());
    const gatewayJsm = await gatewayNats.jetstreamManager({ checkAPI: false });
    expect((await gatewayJsm.streams.info(MQTT_MSGS_STREAM)).config.subjects).toEqual(['$MQTT.msgs.>']);
    await gatewayJsm.consumers.add(MQTT_MSGS_STREAM, { durable_name: GATEWAY_DURABLE, filter_subject: '$MQTT.msgs.checkpoint.v1.>', ack_policy: AckPolicy.Explicit, deliver_policy: DeliverPolicy.New });
    const edgePub = await connect(first!.mqttUrl, { username: 'edge-a', password: PASSWORD, clientId: 'nats-edge-a-js' });
    await publishAsync(edgePub, 'checkpoint/v1/hq/gate-1/screening', 'for-the-consumer');
    await edgePub.endAsync();
    const pulled: string[] = [];
    const ingest = await gatewayNats.jetstream().consumers.get(MQTT_MSGS_STREAM, GATEWAY_DURABLE);
    for await (const m of await ingest.fetch({ max_messages: 1, expires: 5_000 })) {
      pulled.push(`${m.subject} ${m.string()}`);
      expect(await m.ackAck()).toBe(true);
    }
    expect(pulled).toEqual(['$MQTT.msgs.checkpoint.v1.hq.gate-1.screening for-the-consumer']);
    // Commands go into the stream under the gateway's publish grants only.
    expect((await gatewayNats.jetstream().publish('$MQTT.msgs.checkpoint.v1.hq.gate-1.cmd', 'cmd')).stream).toBe(MQTT_MSGS_STREAM);
    await expect(gatewayNats.jetstream().publish('$MQTT.msgs.checkpoint.v1.hq.gate-1.screening', 'forged', { timeout: 2_000 })).rejects.toThrow();

    const edgeNats = await natsConnect({ servers: cluster.natsUrls, user: 'edge-a', pass: PASSWORD });
    onTestFinished(() => edgeNats.close());
    const edgeJsm = await edgeNats.jetstreamManager({ checkAPI: false });
    await expect(edgeJsm.consumers.info(MQTT_MSGS_STREAM, GATEWAY_DURABLE)).rejects.toThrow();
    await expect(edgeJsm.streams.info(MQTT_MSGS_STREAM)).rejects.toThrow();
    await expect(edgeNats.jetstream().publish('$MQTT.msgs.checkpoint.v1.hq.gate-1.cmd', 'injected', { timeout: 2_000 })).rejects.toThrow();
    await expect(edgeNats.request(`$JS.API.CONSUMER.MSG.NEXT.${MQTT_MSGS_STREAM}.${GATEWAY_DURABLE}`, JSON.stringify({ batch: 1, expires: 1_000_000_000 }), { timeout: 2_000 })).rejects.toThrow();
  }, 180_000);
});
