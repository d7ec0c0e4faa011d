// Real servers for tests: influxd, mosquitto and a NATS cluster on free loopback ports with temporary data dirs.
// See README.md for usage with vitest.
export { freePort, makeTempDir, removeTempDir, waitFor, findExecutable, onProcessExit } from './helpers.js';
export type { WaitForOptions } from './helpers.js';
export { spawnServer, launchServer, logTail, ServerStartError } from './process.js';
export type { ServerProcess, StopOptions, ExitStatus, LaunchOptions } from './process.js';
export { startInfluxd, influxdConfig } from './influxd.js';
export type { InfluxdOptions, InfluxdServer } from './influxd.js';
export { startMosquitto, mosquittoConfig, answersMqttConnect } from './mosquitto.js';
export type { MosquittoOptions, MosquittoServer } from './mosquitto.js';
export { openPtyPair } from './pty.js';
export type { PtyPair } from './pty.js';
export { startNatsCluster, natsNodeConfig, RECOMMENDED_MQTT_CONSUMERS } from './nats.js';
export type { NatsClusterOptions, NatsCluster, NatsNode, NatsNodeConfigSettings } from './nats.js';
export { startPostgres } from './postgres.js';
export type { PostgresOptions, PostgresServer } from './postgres.js';
