/**
 * The same users and rules on a real Mosquitto: export the store, start mosquitto with the
 * generated password and ACL files, and run the shared allow/deny matrix with real clients.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { makeTempDir, startMosquitto } from '@checkpoint/test-support';
import { appendFileSync } from 'node:fs';
import { exportMosquitto, grantsFor, mosquittoAcl, mosquittoPasswordHash, openUserStore, topicMatchesFilter } from '../src/index.js';
import { addMatrixUsers, PUBLISH_CASES, runDeliveryMatrix, runMatrix, USERS } from './matrix.js';
import mqtt from 'mqtt';

const PROBE = { username: 'probe', password: 'probe-password-1' };

async function mosquittoFromStore() {
  const dir = makeTempDir('checkpoint-broker-mosquitto');
  const store = openUserStore(join(dir, 'users.sqlite')); // default: keeps the Mosquitto hash
  onTestFinished(() => store.close());
  await addMatrixUsers(store);
  const exported = exportMosquitto(store, join(dir, 'export'));
  expect(exported.exported.sort()).toEqual(USERS.map((u) => u.name).sort());
  // Test-only publisher allowed everywhere, to probe what each user can read.
  appendFileSync(exported.passwordFile, `probe:${await mosquittoPasswordHash(PROBE.password, 1000)}\n`);
  const server = await startMosquitto({
    acl: `${readFileSync(exported.aclFile, 'utf8')}\nuser probe\ntopic write #\n`,
    // test-support writes `allow_anonymous true` when it manages no users; ours come after and win.
    extraConfig: `allow_anonymous false\npassword_file ${exported.passwordFile}\nsys_interval 1`,
  });
  onTestFinished(() => server.stop());
  return { server, exported };
}

describe('mosquitto export', () => {
  it('writes one user block per user with the grants as topic read/write lines', () => {
    const acl = mosquittoAcl([{ name: 'edge-a', role: 'edge', site: 'hq', checkpoint: 'gate-1' }]);
    expect(acl).toContain(
      ['user edge-a', 'topic write checkpoint/v1/hq/gate-1/state', 'topic write checkpoint/v1/hq/gate-1/screening',
        'topic write checkpoint/v1/hq/gate-1/telemetry', 'topic write checkpoint/v1/hq/gate-1/cmd/ack',
        'topic write checkpoint/v1/hq/gate-1/snapshot/+', 'topic read checkpoint/v1/hq/gate-1/cmd'].join('\n'),
    );
    // Nothing before the first user block: that part would apply to anonymous clients.
    expect(acl.split('\n').filter((l) => l.startsWith('topic')).length).toBe(6);
    expect(acl.indexOf('topic')).toBeGreaterThan(acl.indexOf('user edge-a'));
  });

  it('a real Mosquitto with the exported files accepts the passwords and enforces the same matrix', async () => {
    const { server } = await mosquittoFromStore();
    const refused = mqtt.connect(server.url, { username: 'edge-a', password: 'wrong-password', reconnectPeriod: 0 });
    const code = await new Promise<number>((resolve) => {
      refused.on('packetreceive', (p) => p.cmd === 'connack' && resolve(p.returnCode ?? -1));
      refused.on('error', () => {});
    });
    refused.end(true);
    expect(code).toBe(5); // mosquitto answers "not authorized" for a bad password

    // Publishing: the same matrix as on our broker (denied publishes acknowledged and dropped).
    const result = await runMatrix(server.url);
    expect(result.publishMismatches).toEqual([]);
    expect(result.publishersStillConnected).toBe(true);
    expect(PUBLISH_CASES.some((c) => !c.allowed)).toBe(true);
    // Subscribing: Mosquitto's acl_file grants every SUBSCRIBE (SUBACK 0/1) and checks read
    // access per message instead, so what must hold is that nobody receives what its grants
    // do not cover, and every allowed subscription gets its messages.
    expect(result.subscribeMismatches.every((m) => !m.allowed && m.code < 0x80)).toBe(true);
    const readable = (user: string, topic: string) => grantsFor(USERS.find((u) => u.name === user)!).subscribe.some((f) => topicMatchesFilter(topic, f));
    const delivery = await runDeliveryMatrix(server.url, PROBE, readable, topicMatchesFilter);
    expect(delivery.leaks).toEqual([]);
    expect(delivery.starved).toEqual([]);
  });
});
