/**
 * Moves outbox messages to the broker in order with QoS 1, a bounded number in flight, and
 * deletes each one on PUBACK. mqtt.js keeps unacknowledged QoS 1 packets of a persistent session
 * and resends them itself after a reconnect; a publish it fails instead ("Connection closed",
 * seen from a NATS cluster during a leader election) is sent again by this sender, first thing
 * on the next connection. After a restart everything still in the outbox is published again.
 * So a message may reach the broker twice (receivers are idempotent by id), never zero times.
 */
import type { MqttClient } from 'mqtt';
import type { OutboxStore } from './store.js';

export interface OutboxSenderOptions {
  maxInFlight: number;
  /** When a publish failed while still connected, pump again after this long (default 1 s). */
  retryDelayMs?: number;
}

export class OutboxSender {
  private lastSent = 0;
  private inFlight = 0;
  private stopped = false;
  private idleWaiters: Array<() => void> = [];
  /** Seqs whose publish failed, to send again before newer messages (ascending). */
  private retry: number[] = [];
  private retryTimer: NodeJS.Timeout | undefined;
  /** Publishes failed and queued again, since start. */
  retried = 0;

  constructor(
    private readonly store: OutboxStore,
    private readonly client: MqttClient,
    private readonly options: OutboxSenderOptions = { maxInFlight: 16 },
    private readonly onError: (err: Error) => void = () => {},
  ) {
    client.on('connect', () => this.pump());
  }

  /** Call after enqueueing; sends what the in-flight window allows. */
  pump(): void {
    if (this.stopped || !this.client.connected) return;
    let room = this.options.maxInFlight - this.inFlight;
    while (room > 0 && this.retry.length > 0) {
      const message = this.store.get(this.retry.shift()!);
      if (!message) continue; // dropped by the caps meanwhile
      this.send(message);
      room--;
    }
    if (room <= 0) return;
    for (const message of this.store.peek(this.lastSent, room)) {
      this.lastSent = message.seq;
      this.send(message);
    }
  }

  private send(message: { seq: number; topic: string; payload: Buffer; qos: 0 | 1 | 2 }): void {
    this.inFlight++;
    this.client.publish(message.topic, message.payload, { qos: message.qos }, (err) => {
      this.inFlight--;
      if (err) {
        this.onError(err);
        if (this.stopped) return; // the row stays for the next start
        this.retried++;
        const at = this.retry.findIndex((seq) => seq > message.seq);
        this.retry.splice(at === -1 ? this.retry.length : at, 0, message.seq);
        // Usually the connection is gone and 'connect' pumps; if not, try again shortly.
        this.retryTimer ??= setTimeout(() => {
          this.retryTimer = undefined;
          this.pump();
        }, this.options.retryDelayMs ?? 1_000);
        return;
      }
      this.store.acknowledge(message.seq);
      this.pump();
      if (this.inFlight === 0) this.notifyIdle();
    });
  }

  get pending(): number {
    return this.store.count();
  }

  /** Resolves when everything in the outbox has been acknowledged. */
  async drained(): Promise<void> {
    if (this.store.count() === 0) return;
    await new Promise<void>((resolve) => {
      this.idleWaiters.push(resolve);
    });
    return this.drained();
  }

  private notifyIdle(): void {
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const w of waiters) w();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    this.notifyIdle();
  }
}
