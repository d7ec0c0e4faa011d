/**
 * A broker process killed with SIGKILL right after a burst of QoS 1 publishes: every message
 * whose PUBACK the publisher got reaches the offline persistent subscriber (the gateway) when the
 * broker is back on the same data dir. The edge agent deletes a screening from its outbox on
 * PUBACK, so one missing here is a lost screening.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { freePort, logTail, makeTempDir, spawnServer, waitFor, type ServerProcess } from '@checkpoint/test-support';
import { openUserStore } from '../src/index.js';
import { connect } from './matrix.js';

const REPO = resolve(import.meta.dirname, '../..');
const PASSWORD = 'crash-test-password-1';
const SCREENING = 'checkpoint/v1/hq/gate-1/screening';
const BURST = 3000;

describe('broker killed with SIGKILL', () => {
  const running: ServerProcess[] = [];
  afterEach(async () => {
    for (const proc of running.splice(0)) await proc.stop({ signal: 'SIGKILL' });
  });

  it('delivers every message whose PUBACK the publisher got to the offline persistent subscriber after a restart', async () => {
    const dir = makeTempDir('checkpoint-broker-crash');
    const dataDir = join(dir, 'data');
    mkdirSync(dataDir);
    const users = openUserStore(join(dataDir, 'users.sqlite'), { mosquittoHashIterations: 0 });
    await users.add({ name: 'edge-a', role: 'edge', site: 'hq', checkpoint: 'gate-1' }, PASSWORD);
    await users.add({ name: 'gateway', role: 'gateway' }, PASSWORD);
    users.close();
    const port = await freePort();
    const configFile = join(dir, 'broker.yaml');
    writeFileSync(configFile, `dataDir: ${JSON.stringify(dataDir)}\nmqtt:\n  port: ${port}\nmetrics:\n  port: null\nsysIntervalS: 0\nlogLevel: warn\n`);
    const logFile = join(dir, 'broker.log');
    const url = `mqtt://127.0.0.1:${port}`;

    const start = async () => {
      const before = readLog(logFile).split('MQTT on').length;
      const proc = spawnServer('node', [join(REPO, 'scripts/run-ts.mjs'), 'broker/test/fixtures/broker-process.ts', 'run', '--config', configFile], { logFile, cwd: REPO });
      running.push(proc);
      await waitFor(() => proc.hasExited() || readLog(logFile).split('MQTT on').length > before, { what: 'broker process listening', timeoutMs: 60_000 });
      if (proc.hasExited()) throw new Error(`broker process exited at start:\n${logTail(logFile)}`);
      return proc;
    };

    let broker = await start();
    // The gateway's persistent session: subscribed, then offline during the burst.
    const gatewayOptions = { username: 'gateway', password: PASSWORD, clientId: 'checkpoint-gateway', clean: false };
    const gateway = await connect(url, gatewayOptions);
    await gateway.subscribeAsync('checkpoint/v1/+/+/screening', { qos: 1 });
    await gateway.endAsync();

    const edge = await connect(url, { username: 'edge-a', password: PASSWORD, clientId: 'gate-1-edge' });
    const acked = new Set<string>();
    const edgeClosed = new Promise<void>((done) => edge.once('close', () => done()));
    // The kill may reset the connection (ECONNRESET): expected here, not a test failure.
    edge.on('error', () => undefined);
    for (let n = 0; n < BURST; n++) {
      const payload = JSON.stringify({ n });
      edge.publish(SCREENING, payload, { qos: 1 }, (error) => {
        if (!error) acked.add(payload);
      });
    }
    // Killed while PUBACKs are still arriving.
    await waitFor(() => acked.size >= BURST / 4, { what: `${BURST / 4} PUBACKs before the kill`, timeoutMs: 60_000, intervalMs: 1 });
    await broker.stop({ signal: 'SIGKILL' });
    // Every PUBACK the dead broker had sent is read before the connection reports its end.
    await edgeClosed;
    edge.end(true);
    const ackedAtKill = new Set(acked);
    expect(ackedAtKill.size).toBeGreaterThanOrEqual(BURST / 4);

    broker = await start();
    const received = new Set<string>();
    const back = await connect(url, gatewayOptions);
    back.on('message', (_topic, payload) => received.add(payload.toString()));
    const missing = () => [...ackedAtKill].filter((payload) => !received.has(payload));
    await waitFor(() => missing().length === 0, {
      what: 'every acknowledged message delivered after the restart',
      timeoutMs: 60_000,
    }).catch((error: Error) => {
      throw new Error(`${error.message}: ${missing().length} of ${ackedAtKill.size} acknowledged (of ${BURST} sent) missing, e.g. ${missing().slice(0, 5).join(', ')}`);
    });
    await back.endAsync();
    expect(missing()).toEqual([]);
  }, 180_000);
});

function readLog(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}
