/**
 * A publisher's PUBACK (QoS 1) or PUBREC (QoS 2) only once the message is stored: the edge agent
 * deletes a screening from its outbox on PUBACK, so a broker killed after acknowledging must still
 * have it for every persistent session that subscribed.
 *
 * aedes 1.2 (lib/handlers/publish.js) writes PUBACK for a QoS 1 PUBLISH first and only then calls
 * broker.publish (retained store, offline enqueue, fan-out), whatever the persistence does. For
 * QoS 2 it stores the incoming packet, publishes, then writes PUBREC once publish has called back.
 * So:
 * - a QoS 1 publish from a client is published from authorizePublish (`publishBeforeAck`), which
 *   aedes runs before its PUBACK, and the publish aedes makes after the PUBACK is skipped;
 * - the publish callback of a client's QoS 1/2 publish waits for `durable()` (every queued message
 *   on disk: the group commit in ordered-persistence.ts). Retained stores are awaited puts inside
 *   publish already. Deliveries to connected subscribers do not wait for the disk.
 */
import type { Aedes, AedesPublishPacket, Client } from 'aedes';

type PublishFn = Aedes['publish'];
type Done = (error?: Error | null) => void;

export interface DurableAcks {
  /** Publishes `packet` now and calls `done` once it is stored; aedes' own publish of it after the PUBACK is then skipped. */
  publishBeforeAck(client: Client, packet: AedesPublishPacket, done: Done): void;
}

export function acknowledgeWhenStored(aedes: Aedes, durable: () => Promise<void>): DurableAcks {
  /** Packets published before their PUBACK; aedes hands the same object to broker.publish afterwards. */
  const published = new WeakSet<object>();
  const publish = aedes.publish.bind(aedes) as (packet: unknown, client: unknown, done: Done) => void;
  (aedes as { publish: PublishFn }).publish = ((packet: AedesPublishPacket, client?: unknown, done?: unknown) => {
    if (typeof client === 'function') {
      done = client;
      client = null;
    }
    const callback = (done as Done | undefined) ?? (() => undefined);
    if (published.delete(packet)) return callback(null);
    if (!client || !(packet.qos > 0)) return publish(packet, client, callback);
    publish(packet, client, (error) => {
      if (error) return callback(error);
      durable().then(
        () => callback(null),
        (failed: Error) => callback(failed),
      );
    });
  }) as PublishFn;
  return {
    publishBeforeAck(client, packet, done) {
      // aedes' typings omit the client argument its own handlers pass.
      (aedes.publish as unknown as (packet: unknown, client: unknown, done: Done) => void)(packet, client, (error) => {
        if (error) return done(error);
        published.add(packet);
        done(null);
      });
    },
  };
}
