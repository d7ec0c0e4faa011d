/** Prometheus metrics on the gateway's own registry (several gateways may live in one process: tests, demo). */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { parseCheckpointTopic, parseVda5050Topic } from '@checkpoint/protocol';

/**
 * A topic as a metric label: its contract pattern (`checkpoint/v1/+/+/snapshot/+`,
 * `uagv/v2/+/+/state`), never the topic itself, whose ids (snapshot ULIDs, devices, robots)
 * would make one time series per message; `other` outside the contract.
 */
export function topicPattern(topic: string): string {
  if (topic === 'other') return 'other';
  // Already a pattern (the ingest classifier labels its own): keep it.
  if (/^(checkpoint\/v1|uagv\/v2)\/\+\/\+\/[A-Za-z]+(\/\+)?$/.test(topic)) return topic;
  const checkpoint = parseCheckpointTopic(topic);
  if (checkpoint) return `checkpoint/v1/+/+/${checkpoint.channel === 'snapshot' ? 'snapshot/+' : checkpoint.channel}`;
  const robot = parseVda5050Topic(topic);
  if (robot && /^[A-Za-z]{1,32}$/.test(robot.channel)) return `uagv/v2/+/+/${robot.channel}`;
  return 'other';
}

export function createGatewayMetrics(probes: {
  /** On PostgreSQL these read the database: prom-client awaits an async collect(). */
  spoolDepth(): number | Promise<number>;
  rejected(): number | Promise<number>;
  sseClients(): number;
  mqttConnected(): boolean;
  /** 1 while this gateway leads the once-only jobs (always 1 on SQLite: it is the only one). */
  leader?(): boolean;
}) {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'checkpoint_gateway_' });
  const registers = [registry];
  return {
    registry,
    messages: new Counter({
      name: 'checkpoint_gateway_messages_total',
      help: 'MQTT messages handled, by channel and result (stored, duplicate, invalid, ignored)',
      labelNames: ['channel', 'result'],
      registers,
    }),
    invalid: topicPatternLabels(
      new Counter({
        name: 'checkpoint_gateway_invalid_payloads_total',
        help: 'messages dropped as invalid, by topic pattern (other = outside the contract) and cause',
        labelNames: ['topic', 'cause'],
        registers,
      }),
    ),
    replacedTimestamps: new Counter({
      name: 'checkpoint_gateway_replaced_timestamps_total',
      help: 'messages stored with the receive time because their timestamp named no instant (leap second, month 13), by channel',
      labelNames: ['channel'],
      registers,
    }),
    ingestRetries: new Counter({
      name: 'checkpoint_gateway_ingest_retries_total',
      help: 'store attempts of a message that failed (e.g. database busy) and were retried before its PUBACK',
      registers,
    }),
    ingestFailed: new Counter({
      name: 'checkpoint_gateway_ingest_failed_total',
      help: 'messages that failed every store attempt for a reason retrying cannot cure, kept in ingest_failed and acknowledged',
      registers,
    }),
    ingestSeconds: new Histogram({
      name: 'checkpoint_gateway_ingest_seconds',
      help: 'validation and durable storage of one message (before its PUBACK)',
      buckets: [0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1],
      registers,
    }),
    ingestBatchSize: new Histogram({
      name: 'checkpoint_gateway_ingest_batch_messages',
      help: 'messages committed together in one transaction (group commit, ingest.batchMaxMessages)',
      buckets: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000],
      registers,
    }),
    seriesPoints: new Counter({ name: 'checkpoint_gateway_series_points_written_total', help: 'points accepted by the series store', labelNames: ['measurement'], registers }),
    seriesErrors: new Counter({ name: 'checkpoint_gateway_series_write_errors_total', help: 'failed series writes (retried from the spool)', labelNames: ['reason'], registers }),
    seriesLag: new Histogram({
      name: 'checkpoint_gateway_series_lag_seconds',
      help: 'from a point entering the spool to the series store accepting it',
      buckets: [0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 60, 600],
      registers,
    }),
    spoolDepth: new Gauge({ name: 'checkpoint_gateway_spool_depth', help: 'points waiting for the series store', registers, async collect() { this.set(await probes.spoolDepth()); } }),
    rejected: new Gauge({ name: 'checkpoint_gateway_series_rejected_points', help: 'points the series store refused (kept in series_rejected)', registers, async collect() { this.set(await probes.rejected()); } }),
    leader: new Gauge({ name: 'checkpoint_gateway_leader', help: '1 while this gateway runs the once-only jobs (alert escalation, retention, series writer), 0 while another one does', registers, collect() { this.set(probes.leader?.() === false ? 0 : 1); } }),
    alerts: new Counter({ name: 'checkpoint_gateway_alert_changes_total', help: 'alert lifecycle changes', labelNames: ['kind', 'action'], registers }),
    sse: new Gauge({ name: 'checkpoint_gateway_live_clients', help: 'connected live-feed (SSE) clients', registers, collect() { this.set(probes.sseClients()); } }),
    liveRefused: new Counter({ name: 'checkpoint_gateway_live_refused_total', help: 'live-feed connections refused, by reason (user_limit, total_limit)', labelNames: ['reason'], registers }),
    liveClosed: new Counter({ name: 'checkpoint_gateway_live_closed_total', help: 'live-feed streams the gateway ended, by reason (session over, stalled reader)', labelNames: ['reason'], registers }),
    mqttConnected: new Gauge({ name: 'checkpoint_gateway_mqtt_connected', help: '1 when connected to the broker', registers, collect() { this.set(probes.mqttConnected() ? 1 : 0); } }),
    logins: new Counter({ name: 'checkpoint_gateway_logins_total', help: 'API logins by result', labelNames: ['result'], registers }),
  };
}

/** The counter with its `topic` label reduced to topicPattern(topic) on every increment. */
function topicPatternLabels<L extends string>(counter: Counter<'topic' | L>) {
  return {
    inc(labels: Record<'topic' | L, string>, value?: number) {
      counter.inc({ ...labels, topic: topicPattern(labels.topic) }, value);
    },
    get: () => counter.get(),
  };
}

export type GatewayMetrics = ReturnType<typeof createGatewayMetrics>;
