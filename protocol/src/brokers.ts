/**
 * Broker addresses as MQTT clients take them. In cluster mode a client lists every node's MQTT
 * listener (edge agents' and gateways' `mqtt.urls`); mqtt.js tries its `servers` in turn on each
 * reconnect.
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
