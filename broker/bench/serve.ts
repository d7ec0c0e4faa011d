/** Our broker in its own process for the benchmark (as Mosquitto is): prints its port, stops on SIGTERM. */
import { createBroker } from '../src/index.js';

const dataDir = process.argv[2];
if (!dataDir) throw new Error('usage: serve.ts DATA_DIR');
const broker = await createBroker({ config: { dataDir, host: '127.0.0.1', mqtt: { port: 0 }, metrics: { port: null }, logLevel: 'warn' } });
process.stdout.write(`PORT ${broker.ports.mqtt}\n`);
process.once('SIGTERM', () => void broker.close().then(() => process.exit(0)));
