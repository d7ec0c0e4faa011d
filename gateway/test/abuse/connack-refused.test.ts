/**
 * The broker refuses the gateway's CONNACK (unknown user, then the failed-login window): mqtt.js
 * stops reconnecting after a refused CONNACK unless told otherwise. The gateway must keep trying,
 * and become connected and healthy once the broker lets it in — without a restart.
 */
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createBroker, openUserStore, type Broker, type UserStore } from '@checkpoint/broker';
import { checkpointTopics } from '@checkpoint/protocol';
import { makeTempDir, waitFor } from '@checkpoint/test-support';
import { createGateway, type Gateway } from '../../src/index.js';
import { BROKER_PASSWORD, connectEdge, gatewayConfig, makeScreening } from '../helpers/world.js';

let users: UserStore | undefined;
let broker: Broker | undefined;
let gateway: Gateway | undefined;

afterAll(async () => {
  await gateway?.close();
  await broker?.close();
  users?.close();
});

describe('refused CONNACK', () => {
  it('the gateway keeps reconnecting and becomes healthy once the broker accepts it', async () => {
    const dir = makeTempDir('gw-connack');
    users = openUserStore(join(dir, 'users.sqlite'), { mosquittoHashIterations: 0 });
    await users.add({ name: 'edge-gate-1', role: 'edge', site: 'hq', checkpoint: 'gate-1' }, BROKER_PASSWORD);
    broker = await createBroker({
      config: { dataDir: dir, host: '127.0.0.1', mqtt: { port: 0 }, metrics: { port: null }, logLevel: 'silent', sysIntervalS: 0, persistence: 'memory', auth: { maxFailures: 2, failureWindowS: 2 } },
      users,
    });
    const url = `mqtt://127.0.0.1:${broker.ports.mqtt}`;
    let refusals = 0;
    broker.aedes.on('connackSent', (packet) => {
      if (packet.returnCode !== 0) refusals++;
    });
    // The gateway's user does not exist yet: every CONNECT is refused (then the failure window refuses too).
    gateway = await createGateway(gatewayConfig({ dataDir: join(dir, 'gateway'), mqttUrl: url }));
    await waitFor(() => refusals >= 3, { what: 'three refused CONNACKs (mqtt.js stops after the first unless told)', timeoutMs: 15_000 });
    expect(gateway.mqttConnected()).toBe(false);
    expect((await fetch(`${gateway.url}/healthz`)).status).toBe(503);

    await users.add({ name: 'gw', role: 'gateway' }, BROKER_PASSWORD);
    await waitFor(() => gateway!.mqttConnected(), { what: 'gateway connected once its user exists and the window passed', timeoutMs: 20_000 });
    expect((await fetch(`${gateway.url}/healthz`)).status).toBe(200);
    // And it ingests.
    const edge = await connectEdge(url, 'gate-1');
    const s = makeScreening();
    await edge.publishAsync(checkpointTopics.screening(s), JSON.stringify(s), { qos: 1 });
    await edge.endAsync();
    await waitFor(() => gateway!.store.screenings({ limit: 10 }).some((x) => x.id === s.id), { what: 'screening stored' });
  });
});
