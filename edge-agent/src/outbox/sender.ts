/**
 * Moves outbox messages to the broker in order with QoS 1, a bounded number in flight, and
 * deletes each one on PUBACK. mqtt.js keeps unacknowledged QoS 1 packets and resends them
 * itself after a reconnect, so a message is published at most once per process; after a
 * restart everything still in the outbox is published again.
 */
import type { MqttClient } from 'mqtt';
import type { OutboxStore } from './store.js';

export interface OutboxSenderOptions {
  maxInFlight: number;
}

export class OutboxSender {
  private lastSent = 0;
  private inFlight = 0;
  private stopped = false;
  private idleWaiters: Array<() => void> = [];

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
    const room = this.options.maxInFlight - this.inFlight;
    if (room <= 0) return;
    for (const message of this.store.peek(this.lastSent, room)) {
      this.lastSent = message.seq;
      this.inFlight++;
      this.client.publish(message.topic, message.payload, { qos: message.qos }, (err) => {
        this.inFlight--;
        if (err) {
          // Only a client that is being closed fails a QoS 1 publish; the row stays for next start.
          this.onError(err);
          return;
        }
        this.store.acknowledge(message.seq);
        this.pump();
        if (this.inFlight === 0) this.notifyIdle();
      });
    }
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
    this.notifyIdle();
  }
}
