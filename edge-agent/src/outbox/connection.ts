/**
 * The agent's MQTT connection: one broker (`mqtt.url`, the single-site default) or every node of
 * a cluster (`mqtt.urls`, cluster mode, docs/scale.md). mqtt.js tries the listed servers in turn
 * on each reconnect; each agent starts at a random node and waits a random period around
 * `reconnectMs`, so that when a node dies its thousands of clients neither come back at the
 * same instant nor all onto the same survivor.
 */
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';

export interface BrokerConnectionSettings {
  url: string;
  urls?: string[];
  reconnectMs: number;
}

/** The broker URLs to use, in the order given: `urls` when set (cluster mode), else `url`. */
export function brokerUrls(m: BrokerConnectionSettings): string[] {
  return m.urls && m.urls.length > 0 ? m.urls : [m.url];
}

/** mqtt.js `servers` entries for URLs, starting at `start` and wrapping around. */
export function serverList(urls: string[], start: number): NonNullable<IClientOptions['servers']> {
  const servers = urls.map((raw) => {
    const u = new URL(raw);
    const protocol = u.protocol.replace(/:$/, '') as 'mqtt' | 'mqtts' | 'ws' | 'wss';
    const port = u.port ? Number(u.port) : protocol === 'mqtts' ? 8883 : protocol === 'ws' ? 80 : protocol === 'wss' ? 443 : 1883;
    return { host: u.hostname, port, protocol };
  });
  const offset = ((start % servers.length) + servers.length) % servers.length;
  return [...servers.slice(offset), ...servers.slice(0, offset)];
}

/** A reconnect period drawn uniformly from [base/2, 3·base/2): the mean stays `base`. */
export function jitteredPeriod(baseMs: number, random: () => number = Math.random): number {
  return Math.max(1, Math.round(baseMs * (0.5 + random())));
}

/**
 * Connects with `options` (client id, session, credentials, will, TLS files) to the configured
 * broker(s). A single URL is connected exactly as before cluster mode existed; a list becomes
 * mqtt.js `servers`, rotated to a random first node. Either way each outage waits a freshly
 * drawn jittered period between attempts.
 */
export function connectBroker(m: BrokerConnectionSettings, options: IClientOptions, random: () => number = Math.random): MqttClient {
  const urls = brokerUrls(m);
  const reconnectPeriod = jitteredPeriod(m.reconnectMs, random);
  const client =
    urls.length === 1
      ? mqtt.connect(urls[0]!, { ...options, reconnectPeriod })
      : connectServers(serverList(urls, Math.floor(random() * urls.length)), { ...options, reconnectPeriod });
  // mqtt.js reads reconnectPeriod when a connection closes (its own 'close' listener): draw the
  // next outage's period just before it does. A period of 0 (tests, tools) stays 0.
  client.prependListener('close', () => {
    if (client.options.reconnectPeriod) client.options.reconnectPeriod = jitteredPeriod(m.reconnectMs, random);
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
