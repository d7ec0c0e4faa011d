/**
 * The pure parts of the JetStream ingest (ingest/jetstream-consumer.ts): subject ↔ topic mapping,
 * store-then-settle of a batch, and the fetch loop against a fake pull source.
 */
import { describe, expect, it } from 'vitest';
import { mergeConfig } from '@checkpoint/protocol';
import { envOverrides, resolveGatewayConfig } from '../src/config.js';
import type { IngestMessage } from '../src/ingest/consumer.js';
import type { BatchResult } from '../src/ingest/group-commit.js';
import {
  runFetchLoop,
  storeAndSettle,
  streamSubjectOfTopic,
  topicOfStreamSubject,
  topicOfSubject,
  robotClientId,
  ROBOT_SESSION,
  type FetchedMessage,
  type PullRound,
  type SettleOptions,
} from '../src/ingest/jetstream-consumer.js';

describe('config', () => {
  it('defaults to MQTT ingest; the nats section has the documented defaults and takes the environment', () => {
    const defaults = resolveGatewayConfig({});
    expect(defaults.ingest.source).toBe('mqtt');
    expect(defaults.nats).toEqual({ servers: ['nats://127.0.0.1:4222'], durable: 'checkpoint-gateway', fetchBatch: 500, fetchExpiresMs: 1000, ackWaitS: 10 });
    const fromEnv = resolveGatewayConfig(mergeConfig({ ingest: { source: 'jetstream' } }, envOverrides({ CHECKPOINT_NATS_SERVERS: 'nats://a:4222, nats://b:4222', CHECKPOINT_NATS_PASSWORD: 's3cret' })));
    expect(fromEnv.ingest.source).toBe('jetstream');
    expect(fromEnv.nats.servers).toEqual(['nats://a:4222', 'nats://b:4222']);
    expect(fromEnv.nats.password).toBe('s3cret');
    expect(() => resolveGatewayConfig({ ingest: { source: 'kafka' } })).toThrow(/ingest\/source/);
    expect(() => resolveGatewayConfig({ nats: { servers: ['mqtt://x:1883'] } })).toThrow(/nats\/servers/);
    expect(() => resolveGatewayConfig({ nats: { durable: 'a.b' } })).toThrow(/nats\/durable/);
  });

  it('takes every node\'s MQTT listener for the robot connection (mqtt.urls), from the file or the environment', () => {
    expect(resolveGatewayConfig({}).mqtt.urls).toBeUndefined();
    const fromEnv = resolveGatewayConfig(envOverrides({ CHECKPOINT_MQTT_URLS: 'mqtt://n1:1883, mqtts://n2:8883,' }));
    expect(fromEnv.mqtt.urls).toEqual(['mqtt://n1:1883', 'mqtts://n2:8883']);
    // One URL per entry: a comma-joined string or a path would be one broken address.
    expect(() => resolveGatewayConfig({ mqtt: { urls: ['mqtt://n1:1883,mqtt://n2:1883'] } })).toThrow(/mqtt\/urls\/0/);
    expect(() => resolveGatewayConfig({ mqtt: { urls: ['nats://n1:4222'] } })).toThrow(/mqtt\/urls\/0/);
    expect(() => resolveGatewayConfig({ mqtt: { urls: [] } })).toThrow(/mqtt\/urls/);
  });

  it('gives each process its own robot connection id: replicas often share mqtt.clientId', () => {
    const id = robotClientId('checkpoint-gateway');
    expect(id).toMatch(new RegExp(`^checkpoint-gateway-robots-.+-${process.pid}$`));
    const long = robotClientId('x'.repeat(128));
    expect(long).toHaveLength(128);
    expect(long.endsWith(`-${process.pid}`)).toBe(true);
    expect(ROBOT_SESSION).toEqual({ clean: true, qos: 0 });
  });
});

describe('subject ↔ topic', () => {
  it('maps stream subjects back to MQTT topics and topics to stream subjects', () => {
    expect(topicOfStreamSubject('$MQTT.msgs.checkpoint.v1.s.c.screening')).toBe('checkpoint/v1/s/c/screening');
    expect(topicOfStreamSubject('$MQTT.msgs.checkpoint.v1.hq.gate-1.snapshot.01ABC')).toBe('checkpoint/v1/hq/gate-1/snapshot/01ABC');
    expect(topicOfStreamSubject('checkpoint.v1.s.c.screening')).toBeUndefined();
    expect(topicOfStreamSubject('$MQTT.msgs.')).toBeUndefined();
    expect(topicOfSubject('checkpoint.v1.s.c.telemetry')).toBe('checkpoint/v1/s/c/telemetry');
    expect(topicOfSubject('a..b')).toBeUndefined();
    expect(streamSubjectOfTopic('checkpoint/v1/s/c/cmd')).toBe('$MQTT.msgs.checkpoint.v1.s.c.cmd');
    expect(topicOfStreamSubject(streamSubjectOfTopic('uagv/v2/acme/R1/order'))).toBe('uagv/v2/acme/R1/order');
    for (const bad of ['checkpoint/v1/s.x/c/cmd', 'checkpoint//c/cmd', 'checkpoint/v1/+/c/cmd', 'checkpoint/v1/#', '$SYS/x', 'a/b c']) {
      expect(() => streamSubjectOfTopic(bad), bad).toThrow(/cannot be published through NATS/);
    }
  });
});

type Settled = { acked: string[]; naked: Array<[string, number]> };

function fetched(ids: string[], settled: Settled, deliveries = 1): FetchedMessage[] {
  return ids.map((id) => ({
    topic: 'checkpoint/v1/s/c/screening',
    payload: Buffer.from(id),
    deliveries,
    ack: () => settled.acked.push(id),
    nak: (delayMs) => settled.naked.push([id, delayMs]),
  }));
}

const options = (over: Partial<SettleOptions> = {}): SettleOptions => ({
  retryMinMs: 20,
  retryMaxMs: 1000,
  maxAttemptsUnlessTransient: 5,
  isTransient: (e) => e.message.includes('busy'),
  setAside: () => undefined,
  ...over,
});

/** A sink whose answers are scripted per call; records what each call got. */
function scriptedSink(answers: Array<BatchResult | Error>, asPromise = false) {
  const calls: string[][] = [];
  return {
    calls,
    storeBatch(messages: readonly IngestMessage[]) {
      calls.push(messages.map((m) => m.payload.toString()));
      const answer = answers.shift() ?? { stored: messages.length };
      if (answer instanceof Error) {
        if (asPromise) return Promise.reject(answer);
        throw answer;
      }
      return asPromise ? Promise.resolve(answer) : answer;
    },
  };
}

describe('storeAndSettle', () => {
  it('acks a committed batch, synchronous or promised', async () => {
    for (const asPromise of [false, true]) {
      const settled: Settled = { acked: [], naked: [] };
      const outcome = await storeAndSettle(fetched(['a', 'b', 'c'], settled), scriptedSink([], asPromise), options());
      expect(outcome).toEqual({ stored: 3, setAside: 0, retried: 0 });
      expect(settled).toEqual({ acked: ['a', 'b', 'c'], naked: [] });
    }
  });

  it('naks the message the store failed on (with backoff by delivery), acks those before it, stores those after it', async () => {
    const settled: Settled = { acked: [], naked: [] };
    const sink = scriptedSink([{ stored: 1, error: new Error('database busy') }]);
    const batch = fetched(['a', 'b', 'c', 'd'], settled);
    batch[1]!.deliveries = 3;
    const outcome = await storeAndSettle(batch, sink, options());
    expect(sink.calls).toEqual([['a', 'b', 'c', 'd'], ['c', 'd']]);
    expect(settled.acked).toEqual(['a', 'c', 'd']);
    expect(settled.naked).toEqual([['b', 80]]);
    expect(outcome).toMatchObject({ stored: 3, retried: 1 });
    expect(outcome.error?.message).toBe('database busy');
  });

  it('naks the whole batch when its transaction fails, and never acks what was not committed', async () => {
    for (const asPromise of [false, true]) {
      const settled: Settled = { acked: [], naked: [] };
      const outcome = await storeAndSettle(fetched(['a', 'b'], settled, 20), scriptedSink([new Error('SQLITE_BUSY: busy')], asPromise), options());
      expect(settled).toEqual({ acked: [], naked: [['a', 1000], ['b', 1000]] });
      expect(outcome).toMatchObject({ stored: 0, retried: 2 });
    }
  });

  it('stores the rest in a new call when the store took only part (a message stored alone)', async () => {
    const settled: Settled = { acked: [], naked: [] };
    const sink = scriptedSink([{ stored: 2 }, { stored: 1 }, { stored: 1 }]);
    await storeAndSettle(fetched(['a', 'b', 'c', 'd'], settled), sink, options());
    expect(sink.calls).toEqual([['a', 'b', 'c', 'd'], ['c', 'd'], ['d']]);
    expect(settled.acked).toEqual(['a', 'b', 'c', 'd']);
  });

  it('does not spin when the store takes nothing and says nothing', async () => {
    const settled: Settled = { acked: [], naked: [] };
    const outcome = await storeAndSettle(fetched(['a', 'b'], settled), scriptedSink([{ stored: 0 }]), options());
    expect(settled.naked.map(([id]) => id)).toEqual(['a', 'b']);
    expect(outcome.error?.message).toMatch(/took none/);
  });

  it('sets aside (and acks) a message that failed every delivery for a reason retrying does not cure; a busy store is retried forever', async () => {
    const aside: string[] = [];
    const settled: Settled = { acked: [], naked: [] };
    const o = options({ setAside: (m) => aside.push(m.payload.toString()) });
    await storeAndSettle(fetched(['poison'], settled, 5), scriptedSink([{ stored: 0, error: new Error('CHECK constraint failed') }]), o);
    await storeAndSettle(fetched(['busy'], settled, 50), scriptedSink([{ stored: 0, error: new Error('database busy') }]), o);
    await storeAndSettle(fetched(['young'], settled, 4), scriptedSink([{ stored: 0, error: new Error('CHECK constraint failed') }]), o);
    expect(aside).toEqual(['poison']);
    expect(settled.acked).toEqual(['poison']);
    expect(settled.naked.map(([id]) => id)).toEqual(['busy', 'young']);
  });
});

/** A pull round fed by hand: `push` a message, `end` it, or `fail` it. */
function fakeRound() {
  const queue: FetchedMessage[] = [];
  let ended = false;
  let failure: Error | null = null;
  let wake: (() => void) | null = null;
  const poke = () => {
    wake?.();
    wake = null;
  };
  const round: PullRound & { push(m: FetchedMessage): void; end(): void; fail(e: Error): void; stopped: boolean } = {
    stopped: false,
    push: (m) => {
      queue.push(m);
      poke();
    },
    end: () => {
      ended = true;
      poke();
    },
    fail: (e) => {
      failure = e;
      poke();
    },
    stop() {
      round.stopped = true;
      ended = true;
      poke();
    },
    async *[Symbol.asyncIterator]() {
      for (;;) {
        if (queue.length > 0) yield queue.shift()!;
        else if (failure) throw failure;
        else if (ended) return;
        else await new Promise<void>((resolve) => (wake = resolve));
      }
    },
  };
  return round;
}

const until = async (check: () => boolean) => {
  for (let i = 0; i < 400 && !check(); i++) await new Promise((resolve) => setTimeout(resolve, 5));
  expect(check()).toBe(true);
};

describe('runFetchLoop', () => {
  function setup(roundTimeoutMs = 10_000) {
    const rounds: ReturnType<typeof fakeRound>[] = [];
    const batches: string[][] = [];
    const errors: string[] = [];
    const settled: Settled = { acked: [], naked: [] };
    let flushes = 0;
    let failPulls = 0;
    const loop = runFetchLoop({
      async pull() {
        if (failPulls > 0) {
          failPulls--;
          throw new Error('consumer not found');
        }
        const r = fakeRound();
        rounds.push(r);
        return r;
      },
      async handle(batch) {
        batches.push(batch.map((m) => m.payload.toString()));
        for (const m of batch) m.ack();
      },
      async flush() {
        flushes++;
      },
      roundTimeoutMs,
      maxMessages: 3,
      maxWaitMs: 5,
      errorBackoffMinMs: 1,
      errorBackoffMaxMs: 4,
      onError: (e) => errors.push(e.message),
      onPulled: () => undefined,
      sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
    });
    return { rounds, batches, errors, settled, loop, flushes: () => flushes, failNextPulls: (n: number) => (failPulls = n) };
  }
  const msg = (id: string, settled: Settled) => fetched([id], settled)[0]!;

  it('gathers what arrives into batches (full at maxMessages, else after maxWaitMs), flushing acks after each', async () => {
    const t = setup();
    await until(() => t.rounds.length === 1);
    for (const id of ['a', 'b', 'c', 'd']) t.rounds[0]!.push(msg(id, t.settled));
    await until(() => t.batches.length === 2);
    expect(t.batches).toEqual([['a', 'b', 'c'], ['d']]);
    t.rounds[0]!.end();
    await until(() => t.rounds.length === 2);
    expect(t.flushes()).toBe(2);
    t.loop.stop();
    await t.loop.done;
  });

  it('stores what arrived before a round failed, then pulls again after a fresh lookup (and after failed lookups)', async () => {
    const t = setup();
    await until(() => t.rounds.length === 1);
    t.rounds[0]!.push(msg('a', t.settled));
    t.failNextPulls(2);
    t.rounds[0]!.fail(new Error('leader moved'));
    await until(() => t.rounds.length === 2);
    expect(t.batches).toEqual([['a']]);
    expect(t.errors).toEqual(['leader moved', 'consumer not found', 'consumer not found']);
    t.rounds[1]!.push(msg('b', t.settled));
    await until(() => t.batches.length === 2);
    t.loop.stop();
    await t.loop.done;
  });

  it('stops a round that never ends and starts over (a pull lost with a killed node)', async () => {
    const t = setup(50);
    await until(() => t.rounds.length === 2);
    expect(t.rounds[0]!.stopped).toBe(true);
    expect(t.errors[0]).toMatch(/did not end within 50 ms/);
    t.loop.stop();
    await t.loop.done;
  });

  it('on stop, hands back what is gathered but not stored (nak without delay)', async () => {
    const t = setup();
    await until(() => t.rounds.length === 1);
    const settled: Settled = { acked: [], naked: [] };
    t.rounds[0]!.push(msg('x', settled));
    t.loop.stop();
    await t.loop.done;
    expect(settled).toEqual({ acked: [], naked: [['x', 0]] });
    expect(t.batches).toEqual([]);
  });
});
