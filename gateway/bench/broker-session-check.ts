// Diagnostic for the broker owner (not a test): a QoS 1 subscriber with a persistent session
// (clean: false) on our broker with level persistence does not get every message while connected;
// the missing ones arrive only when it reconnects. Memory persistence, clean sessions, plain aedes
// and Mosquitto deliver all 500.  Run: node scripts/run-ts.mjs gateway/bench/broker-session-check.ts
import { join } from 'node:path';
import mqtt from 'mqtt';
import { createBroker, openUserStore } from '@checkpoint/broker';
import { makeTempDir } from '@checkpoint/test-support';
import { checkpointTopics } from '@checkpoint/protocol';
import { makeScreening, BROKER_PASSWORD } from '../test/helpers/world.js';

for (const persistence of ['memory', 'level'] as const) {
  const dir = makeTempDir('exp4');
  const users = openUserStore(join(dir, 'users.sqlite'), { mosquittoHashIterations: 0 });
  await users.add({ name: 'gw', role: 'gateway' }, BROKER_PASSWORD);
  await users.add({ name: 'e', role: 'edge', site: 'hq', checkpoint: 'gate-1' }, BROKER_PASSWORD);
  const broker = await createBroker({ config: { dataDir: dir, host: '127.0.0.1', mqtt: { port: 0 }, metrics: { port: null }, logLevel: 'silent', persistence }, users });
  const url = `mqtt://127.0.0.1:${broker.ports.mqtt}`;
  for (const clean of [true, false]) {
    const got = new Set<string>();
    const sub = mqtt.connect(url, { username: 'gw', password: BROKER_PASSWORD, clientId: `exp-sub-${clean}`, clean, protocolVersion: 4 });
    sub.handleMessage = (packet, cb) => { if (packet.cmd === 'publish' && packet.topic.endsWith('screening')) got.add(JSON.parse(packet.payload.toString()).id); cb(); };
    await new Promise((r) => sub.once('connect', r));
    await sub.subscribeAsync('checkpoint/v1/#', { qos: 1 });
    const edge = await mqtt.connectAsync(url, { username: 'e', password: BROKER_PASSWORD, clientId: `exp-pub-${clean}` });
    const list = Array.from({ length: 500 }, (_, i) => makeScreening({ trackId: i }));
    let next = 0;
    await Promise.all(Array.from({ length: 64 }, async () => { while (next < list.length) { const s = list[next++]!; await edge.publishAsync(checkpointTopics.screening(s), JSON.stringify(s), { qos: 1 }); } }));
    await new Promise((r) => setTimeout(r, 2000));
    process.stdout.write(`our broker, persistence ${persistence}, clean ${clean}: received ${got.size} of 500\n`);
    await edge.endAsync(); await sub.endAsync();
    if (!clean) {
      const again = mqtt.connect(url, { username: 'gw', password: BROKER_PASSWORD, clientId: `exp-sub-${clean}`, clean, protocolVersion: 4 });
      again.handleMessage = (packet, cb) => { if (packet.cmd === 'publish' && packet.topic.endsWith('screening')) got.add(JSON.parse(packet.payload.toString()).id); cb(); };
      await new Promise((r) => setTimeout(r, 2000));
      process.stdout.write(`  after reconnecting the same session ${got.size}\n`);
      await again.endAsync();
    }
  }
  await broker.close(); users.close();
}
