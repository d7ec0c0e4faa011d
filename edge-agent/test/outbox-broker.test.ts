/**
 * The outbox against a real broker (Mosquitto): the broker goes down in the middle of a replay,
 * the agent is restarted once during the outage, and afterwards a subscriber has received every
 * screening exactly once.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startMosquitto, waitFor, type MosquittoServer } from '@checkpoint/test-support';
import { checkpointFilter, parsePayload } from '@checkpoint/protocol';
import { runAgent, type RunningAgent } from '../src/agent.js';
import { loadAgentConfig } from '../src/config/load.js';
import type { FramePair, FrameSource } from '../src/frames.js';
import { openReplay } from '../src/sources/replay.js';
import { simulateToReplay, type SimTruth } from '../src/sources/sim/index.js';
import { agentEnv, FACES_DIR, haveShared } from './helpers/shared.js';

/** Replays frames [from, to] of a folder, then ends. */
async function replaySlice(dir: string, from: number, to: number): Promise<FrameSource> {
  const replay = await openReplay(dir);
  return {
    geometry: replay.geometry,
    async *frames(signal?: AbortSignal): AsyncIterable<FramePair> {
      for await (const pair of replay.frames(signal)) {
        if (pair.thermal.seq > to) break;
        if (pair.thermal.seq >= from) yield pair;
      }
    },
    close: () => replay.close(),
  };
}

describe.skipIf(!haveShared)('outbox with a real broker outage and an agent restart', () => {
  let work: string;
  let broker: MosquittoServer;
  let truth: SimTruth;
  const scene = () => path.join(work, 'scene');

  beforeAll(async () => {
    work = await mkdtemp(path.join(tmpdir(), 'outbox-broker-'));
    broker = await startMosquitto({ users: { 'edge-gate-1': 'edge-secret', watcher: 'watch-secret' }, persistence: true });
    ({ truth } = await simulateToReplay(scene(), { people: 24, feverRate: 0.25, maskRate: 0.5, seed: 21, facesDir: FACES_DIR }));
  });
  afterAll(async () => {
    await broker?.stop();
    await rm(work, { recursive: true, force: true });
  });

  it('delivers every screening exactly once', async () => {
    const received: string[] = [];
    const invalid: string[] = [];
    // A persistent subscriber: it misses nothing while the broker restarts.
    const sub = await mqtt.connectAsync(broker.url, { username: 'watcher', password: 'watch-secret', clientId: 'watcher', clean: false, reconnectPeriod: 200 });
    await sub.subscribeAsync(checkpointFilter('screening'), { qos: 1 });
    sub.on('message', (_topic, payload) => {
      const p = parsePayload('screening', payload);
      if (p.ok) received.push(p.value.id);
      else invalid.push(p.message);
    });

    const env = { ...agentEnv(path.join(work, 'models')), CHECKPOINT_MQTT_URL: broker.url, CHECKPOINT_MQTT_USERNAME: 'edge-gate-1', CHECKPOINT_MQTT_PASSWORD: 'edge-secret', CHECKPOINT_DATA_DIR: path.join(work, 'agent') };
    const config = await loadAgentConfig(undefined, env, { site: 'hospital-a', checkpoint: 'gate-1', mqtt: { reconnectMs: 200 }, http: { port: 0 }, telemetry: { intervalMs: 1000 } });
    const produced: string[] = [];
    let messages = 0; // screenings plus their snapshots
    const start = async (from: number, to: number): Promise<RunningAgent> =>
      runAgent(config, {
        source: await replaySlice(scene(), from, to),
        onScreening: (r) => {
          produced.push(r.screening.id);
          messages += r.snapshot ? 2 : 1;
        },
      });

    const person = (i: number) => truth.people[i]!.frames;
    // 1. Broker up: the first third of the people.
    let agent = await start(1, person(7)[1] + 3);
    await agent.done;
    await waitFor(() => agent.outboxDepth() === 0, { what: 'outbox drained while the broker is up', timeoutMs: 30_000 });
    const beforeOutage = produced.length;
    const messagesBeforeOutage = messages;
    expect(beforeOutage).toBeGreaterThan(5);

    // 2. Broker down: the second third is decided and queued on disk.
    await broker.stop();
    await waitFor(() => !agent.mqtt.connected, { what: 'agent notices the outage', timeoutMs: 10_000 });
    await agent.stop();
    agent = await start(person(7)[1] + 4, person(15)[1] + 3);
    await agent.done;
    expect(produced.length).toBeGreaterThan(beforeOutage);
    expect(agent.outboxDepth()).toBe(messages - messagesBeforeOutage);

    // 3. The agent restarts during the outage, with the rest of the people.
    await agent.stop();
    agent = await start(person(15)[1] + 4, Number.MAX_SAFE_INTEGER);
    await agent.done;
    expect(agent.outboxDepth()).toBe(messages - messagesBeforeOutage);

    // 4. Broker back: the outbox drains and the subscriber sees everything once.
    await broker.start();
    await waitFor(() => agent.outboxDepth() === 0, { what: 'outbox drained after the outage', timeoutMs: 30_000 });
    await waitFor(() => received.length >= produced.length, { what: `subscriber has ${produced.length} screenings`, timeoutMs: 30_000 });
    await new Promise((r) => setTimeout(r, 500)); // would-be duplicates arrive late
    await agent.stop();
    await sub.endAsync();

    expect(invalid).toEqual([]);
    expect(received.length).toBe(produced.length);
    expect(new Set(received).size).toBe(received.length);
    expect(new Set(received)).toEqual(new Set(produced));
    expect(produced.length).toBeGreaterThanOrEqual(truth.people.length * 0.9);
  }, 240_000);
});
