/**
 * Keeps one subscriber that does not read from stalling everyone else.
 *
 * aedes hands a message to every matching subscription through mqemitter and finishes the
 * publish only when every subscriber's write has been called back; a write into a full socket is
 * called back on 'drain' (lib/write.js → client.waitForDrain). So one viewer that stopped
 * reading held each publish for the drain timeout (30 s); the publisher's next packets waited
 * behind it, and at `concurrency` such publishes every message in the broker waited, delivery to
 * the gateway included.
 *
 * Two changes, one per side:
 * - Fan-out (`fanOutWithoutWaiting`): a subscription's handler reports back to mqemitter at once,
 *   so a publish no longer waits for any subscriber's socket. Nothing is lost by not waiting: a
 *   QoS 1 message for a persistent session is in the persistence's queue before the fan-out
 *   (aedes's publish order; on disk before the publisher's PUBACK, see durable-acks.ts).
 * - Each client (`limitBufferedBytes`): its own writes still wait for its socket to drain (so a
 *   client's acks and the replay of its stored queue after a reconnect keep their backpressure),
 *   but a client with more than `maxBufferedBytes` waiting to be read is disconnected at once,
 *   and one that has not drained for the drain timeout is disconnected by aedes as before. A
 *   persistent session gets what it had not acknowledged when it reconnects.
 */
import type { Aedes, Client } from 'aedes';
import type { Duplex } from 'node:stream';

type Handler = (packet: unknown, callback: () => void) => void;
type DrainCallback = (error: Error | null, client?: Client) => void;

/** Subscriptions' deliveries no longer hold the publish up (call once, right after createBroker). */
export function fanOutWithoutWaiting(aedes: Aedes): void {
  const wrapped = new WeakMap<Handler, Handler>();
  const broker = aedes as unknown as {
    subscribe(topic: string, func: Handler, done: () => void): void;
    unsubscribe(topic: string, func: Handler, done?: () => void): void;
  };
  const subscribe = broker.subscribe.bind(aedes);
  const unsubscribe = broker.unsubscribe.bind(aedes);
  broker.subscribe = (topic, func, done) => {
    let handler = wrapped.get(func);
    if (!handler) {
      handler = (packet, callback) => {
        func(packet, noop);
        callback();
      };
      wrapped.set(func, handler);
    }
    subscribe(topic, handler, done);
  };
  // aedes unsubscribes with the function it subscribed; mqemitter needs the one it was given.
  broker.unsubscribe = (topic, func, done) => unsubscribe(topic, wrapped.get(func) ?? func, done);
}

/** Cuts a client off when more than `maxBufferedBytes` wait in its socket (call in preConnect). */
export function limitBufferedBytes(client: Client, maxBufferedBytes: number, onCutOff: (client: Client, reason: string) => void): void {
  const conn = client.conn as Duplex & { writableLength: number };
  const target = client as unknown as { waitForDrain(callback: DrainCallback): void };
  const waitForDrain = target.waitForDrain.bind(client);
  target.waitForDrain = (callback) => {
    if (conn.writableLength > maxBufferedBytes && !conn.destroyed) {
      const reason = `slow subscriber: ${conn.writableLength} bytes not read (limit ${maxBufferedBytes})`;
      onCutOff(client, reason);
      conn.destroy(new Error(reason));
      setImmediate(callback, new Error(reason), client);
      return;
    }
    waitForDrain(callback);
  };
}

function noop(): void {}
