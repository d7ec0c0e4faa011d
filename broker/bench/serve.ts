/**
 * Our broker in its own process for the benchmark (as Mosquitto is): prints its port, stops on SIGTERM.
 * `serve.ts DATA_DIR [memory]`: `memory` keeps sessions and queues in memory only (the reference row).
 */
import { createBroker } from '../src/index.js';

const dataDir = process.argv[2];
if (!dataDir) throw new Error('usage: serve.ts DATA_DIR [memory]');
const persistence = process.argv[3] === 'memory' ? 'memory' : 'level';
const broker = await createBroker({ config: { dataDir, persistence, host: '127.0.0.1', mqtt: { port: 0 }, metrics: { port: null }, logLevel: 'warn' } });
process.stdout.write(`PORT ${broker.ports.mqtt}\n`);
process.once('SIGTERM', () => void broker.close().then(() => process.exit(0)));
