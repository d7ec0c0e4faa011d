/** Shared by the broker's abuse tests: a broker on free ports with the matrix users, and raw CONNACK codes. */
import { join } from 'node:path';
import { onTestFinished } from 'vitest';
import mqtt from 'mqtt';
import { makeTempDir } from '@checkpoint/test-support';
import { createBroker, openUserStore, type Broker, type BrokerOptions, type UserStore } from '../../src/index.js';
import { addMatrixUsers } from '../matrix.js';

export { PASSWORD, connect } from '../matrix.js';

export const quiet = { logLevel: 'silent' as const, metrics: { port: null }, mqtt: { port: 0 }, host: '127.0.0.1', sysIntervalS: 0 };

export interface TestBroker {
  broker: Broker;
  url: string;
  dir: string;
  store: UserStore;
  /** Stops this broker and starts another on the same data dir and store (sessions and claims survive). */
  restart(): Promise<TestBroker>;
}

export async function startBroker(config: Record<string, unknown> = {}, extra: Partial<BrokerOptions> = {}, existing?: { dir: string; store: UserStore }): Promise<TestBroker> {
  let dir = existing?.dir;
  let store = existing?.store;
  if (!dir || !store) {
    dir = makeTempDir('checkpoint-broker-abuse');
    store = openUserStore(join(dir, 'users.sqlite'), { mosquittoHashIterations: 0, scrypt: { N: 4096, r: 8, p: 1 } });
    await addMatrixUsers(store);
    const owned = store;
    onTestFinished(() => owned.close());
  }
  const broker = await createBroker({ config: { ...quiet, dataDir: dir, ...config }, users: store, ...extra });
  onTestFinished(() => broker.close());
  const self: TestBroker = {
    broker,
    url: `mqtt://127.0.0.1:${broker.ports.mqtt}`,
    dir,
    store,
    async restart() {
      await broker.close();
      return startBroker({ ...config, mqtt: { port: broker.ports.mqtt } }, extra, { dir: dir!, store: store! });
    },
  };
  return self;
}

/** CONNACK return code of a connect attempt (0 = accepted); the client is closed at once. */
export async function connackCode(url: string, options: mqtt.IClientOptions): Promise<number> {
  const client = mqtt.connect(url, { reconnectPeriod: 0, ...options });
  return new Promise((resolve, reject) => {
    client.on('packetreceive', (packet) => {
      if (packet.cmd === 'connack') {
        client.end(true);
        resolve(packet.returnCode ?? -1);
      }
    });
    client.on('error', () => {}); // the refusal also arrives as an error
    client.on('close', () => setTimeout(() => reject(new Error('closed without CONNACK')), 100));
  });
}
