/**
 * Broker addresses as MQTT clients take them. In cluster mode a client lists every node's MQTT
 * listener (edge agents' and gateways' `mqtt.urls`); mqtt.js tries its `servers` in turn on each
 * reconnect, after a jittered wait that grows with failed attempts (agents, and `sim:fleet`'s
 * simulated ones).
 */

/** One entry of mqtt.js's `servers` option. */
export interface MqttServer {
  host: string;
  port: number;
  protocol: 'mqtt' | 'mqtts' | 'ws' | 'wss';
}

/** mqtt.js `servers` entries for URLs, starting at `start` and wrapping around. */
export function serverList(urls: readonly string[], start: number): MqttServer[] {
  const servers = urls.map((raw) => {
    const u = new URL(raw);
    const protocol = u.protocol.replace(/:$/, '') as MqttServer['protocol'];
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
 * The wait before the next attempt after `failures` failed attempts in a row (0: the connection
 * just dropped): `baseMs` doubled per failure, capped at `maxMs`, then jittered as above.
 */
export function reconnectDelay(failures: number, baseMs: number, maxMs: number, random: () => number = Math.random): number {
  return jitteredPeriod(Math.min(baseMs * 2 ** Math.min(failures, 30), Math.max(maxMs, baseMs)), random);
}
