/**
 * The agent's MQTT connection: one broker (`mqtt.url`, the single-site default) or every node of
 * a cluster (`mqtt.urls`, cluster mode, docs/scale.md). mqtt.js tries the listed servers in turn
 * on each reconnect; each agent starts at a random node and waits a random period around
 * `reconnectMs`, in cluster mode doubled after each failed attempt up to `reconnectMaxMs`, so that when a node
 * dies its thousands of clients neither come back at the same instant nor all onto the same
 * survivor, nor keep the survivors busy with attempts they cannot serve yet. Seen in
 * `sim:fleet` with 10,000 sessions on nats-server 2.9.10: after a kill -9 of one node, 3,333
 * clients retrying every 1-1.5 s kept both survivors' JetStream API timing out (session loads
 * waited 15-30 s) and no stream regained a leader in 200 s: no publish was accepted anywhere.
 */
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { jitteredPeriod, reconnectDelay, serverList } from '@checkpoint/protocol';

export interface BrokerConnectionSettings {
  url: string;
  urls?: string[];
  /** Mean first wait; unset: 2 s with one broker, CLUSTER_RECONNECT_MS in cluster mode. */
  reconnectMs?: number;
  /** The longest mean wait between attempts, however many failed (unset: see reconnectCap). */
  reconnectMaxMs?: number;
}

/**
 * The mean first reconnect wait in cluster mode unless configured. With 10,000 agents on three
 * nodes, the 3,333 clients of a killed node coming back within 1-3 s (a 2 s mean) stalled ingest
 * for 80-90 s; spread over a 15 s mean, 22 s; over a 30 s mean, 3.8 s (`sim:fleet`,
 * docs/scale.md). The agents of the dead node deliver from their outbox up to ~45 s later; the
 * other 6,667 checkpoints do not stop.
 */
export const CLUSTER_RECONNECT_MS = 30_000;
export const SINGLE_BROKER_RECONNECT_MS = 2000;

/** The mean first reconnect wait: as configured, else by mode. */
export function reconnectMean(m: BrokerConnectionSettings): number {
  return m.reconnectMs ?? (brokerUrls(m).length > 1 ? CLUSTER_RECONNECT_MS : SINGLE_BROKER_RECONNECT_MS);
}

/** The backoff cap: as configured, else none with one broker (every wait around the mean, as before cluster mode) and 30 s (or the mean, if longer) in cluster mode, as measured with sim:fleet. */
export function reconnectCap(m: BrokerConnectionSettings): number {
  return m.reconnectMaxMs ?? (brokerUrls(m).length > 1 ? Math.max(30_000, reconnectMean(m)) : reconnectMean(m));
}

/** The broker URLs to use, in the order given: `urls` when set (cluster mode), else `url`. */
export function brokerUrls(m: BrokerConnectionSettings): string[] {
  return m.urls && m.urls.length > 0 ? m.urls : [m.url];
}

/**
 * Connects with `options` (client id, session, credentials, will, TLS files) to the configured
 * broker(s). A single URL is connected exactly as before cluster mode existed; a list becomes
 * mqtt.js `servers`, rotated to a random first node. Either way each outage waits a freshly
 * drawn jittered period between attempts.
 */
export function connectBroker(m: BrokerConnectionSettings, options: IClientOptions, random: () => number = Math.random): MqttClient {
  const urls = brokerUrls(m);
  const meanMs = reconnectMean(m);
  const reconnectPeriod = jitteredPeriod(meanMs, random);
  const client =
    urls.length === 1
      ? mqtt.connect(urls[0]!, { ...options, reconnectPeriod })
      : connectServers(serverList(urls, Math.floor(random() * urls.length)), { ...options, reconnectPeriod });
  // mqtt.js reads reconnectPeriod when a connection closes (its own 'close' listener, also after
  // each failed attempt): draw the next wait just before it does. A period of 0 (tests, tools) stays 0.
  const maxMs = reconnectCap(m);
  let failures = 0;
  client.on('connect', () => (failures = 0));
  client.prependListener('close', () => {
    if (client.options.reconnectPeriod) client.options.reconnectPeriod = reconnectDelay(failures++, meanMs, maxMs, random);
  });
  return client;
}

function connectServers(servers: NonNullable<IClientOptions['servers']>, options: IClientOptions): MqttClient {
  // mqtt.js wants a top-level protocol too (it refuses client certificates without one).
  return mqtt.connect({ ...options, servers, protocol: servers[0]!.protocol });
}

/** The broker a connected client is talking to, as `host:port` (for logs; no credentials). */
export function connectedBroker(client: MqttClient): string {
  const socket = client.stream as unknown as { remoteAddress?: string; remotePort?: number; socket?: { remoteAddress?: string; remotePort?: number } };
  const s = socket.remotePort !== undefined ? socket : socket.socket;
  return s?.remotePort !== undefined ? `${s.remoteAddress}:${s.remotePort}` : `${client.options.host}:${client.options.port}`;
}
