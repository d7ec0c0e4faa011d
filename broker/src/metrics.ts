/**
 * Broker counters, exposed two ways: Prometheus (own Registry, so an embedding process keeps its
 * own metrics apart) and Mosquitto-style `$SYS/broker/...` topics published periodically.
 */
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';

export type DeniedOperation = 'publish' | 'subscribe' | 'connect' | 'retain';

export interface BrokerMetrics {
  registry: Registry;
  clientsConnected: Gauge;
  messagesReceived: Counter;
  messagesSent: Counter;
  bytesReceived: Counter;
  bytesSent: Counter;
  denied: Counter<'operation'>;
  rejectedPackets: Counter<'reason'>;
  slowSubscribers: Counter;
  /** Current totals, for $SYS and tests. */
  snapshot(): Promise<BrokerStats>;
}

export interface BrokerStats {
  clientsConnected: number;
  messagesReceived: number;
  messagesSent: number;
  bytesReceived: number;
  bytesSent: number;
  denied: Record<DeniedOperation, number>;
}

export function createBrokerMetrics(options: { processMetrics?: boolean } = {}): BrokerMetrics {
  const registry = new Registry();
  if (options.processMetrics) collectDefaultMetrics({ register: registry, prefix: 'checkpoint_broker_' });
  const registers = [registry];
  const clientsConnected = new Gauge({ name: 'checkpoint_broker_clients_connected', help: 'Authenticated clients connected now', registers });
  const messagesReceived = new Counter({ name: 'checkpoint_broker_messages_received_total', help: 'PUBLISH packets accepted from clients', registers });
  const messagesSent = new Counter({ name: 'checkpoint_broker_messages_sent_total', help: 'PUBLISH packets delivered to clients', registers });
  const bytesReceived = new Counter({ name: 'checkpoint_broker_bytes_received_total', help: 'Bytes read from client connections', registers });
  const bytesSent = new Counter({ name: 'checkpoint_broker_bytes_sent_total', help: 'Bytes written to client connections', registers });
  const denied = new Counter({
    name: 'checkpoint_broker_denied_total',
    help: 'Operations refused by authentication, rate limiting, the ACL or the retain policy',
    labelNames: ['operation'] as const,
    registers,
  });
  const rejectedPackets = new Counter({
    name: 'checkpoint_broker_rejected_packets_total',
    help: 'Connections closed for an oversized or malformed packet',
    labelNames: ['reason'] as const,
    registers,
  });
  const slowSubscribers = new Counter({
    name: 'checkpoint_broker_slow_subscribers_total',
    help: 'Clients disconnected because they did not read what was sent to them',
    registers,
  });
  for (const operation of ['publish', 'subscribe', 'connect', 'retain'] as const) denied.inc({ operation }, 0);

  const value = async (metric: Counter | Gauge, labels?: Record<string, string>): Promise<number> => {
    const data = await metric.get();
    const match = data.values.find((v) => !labels || Object.entries(labels).every(([k, l]) => v.labels[k] === l));
    return match?.value ?? 0;
  };

  return {
    registry,
    clientsConnected,
    messagesReceived,
    messagesSent,
    bytesReceived,
    bytesSent,
    denied,
    rejectedPackets,
    slowSubscribers,
    async snapshot() {
      return {
        clientsConnected: await value(clientsConnected),
        messagesReceived: await value(messagesReceived),
        messagesSent: await value(messagesSent),
        bytesReceived: await value(bytesReceived),
        bytesSent: await value(bytesSent),
        denied: {
          publish: await value(denied, { operation: 'publish' }),
          subscribe: await value(denied, { operation: 'subscribe' }),
          connect: await value(denied, { operation: 'connect' }),
          retain: await value(denied, { operation: 'retain' }),
        },
      };
    },
  };
}

/** `$SYS/broker/...` topics and values, named like Mosquitto's where one exists. */
export function sysTopics(stats: BrokerStats, version: string): Array<[topic: string, value: string]> {
  return [
    ['$SYS/broker/version', `checkpoint-broker (aedes ${version})`],
    ['$SYS/broker/clients/connected', String(stats.clientsConnected)],
    ['$SYS/broker/messages/received', String(stats.messagesReceived)],
    ['$SYS/broker/messages/sent', String(stats.messagesSent)],
    ['$SYS/broker/bytes/received', String(stats.bytesReceived)],
    ['$SYS/broker/bytes/sent', String(stats.bytesSent)],
    ['$SYS/broker/denied/publish', String(stats.denied.publish)],
    ['$SYS/broker/denied/subscribe', String(stats.denied.subscribe)],
    ['$SYS/broker/denied/connect', String(stats.denied.connect)],
    ['$SYS/broker/denied/retain', String(stats.denied.retain)],
  ];
}
