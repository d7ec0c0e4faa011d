/**
 * Publishes under way, so that a graceful stop loses none.
 *
 * aedes answers a QoS 1 PUBLISH with PUBACK first and only then stores the message for offline
 * persistent sessions (then hands it to connected subscribers). A broker stopped in that window
 * closed its store under the pending write: the publisher had its PUBACK, the offline subscriber
 * never got the message (seen in the restart test under load: 5 runs in 12 lost one or two of
 * three commands). `drained()` lets close() wait for those writes before the store closes.
 * (PUBACK now waits for the store, durable-acks.ts; this still lets wills and QoS 2 finish.)
 */
import type { Aedes } from 'aedes';

type PublishFn = Aedes['publish'];

export interface PublishTracker {
  /** Resolves when none is pending, or after `timeoutMs` (a stuck store must not block a stop). */
  drained(timeoutMs: number): Promise<void>;
}

export function trackPublishes(aedes: Aedes): PublishTracker {
  // A count, not a promise per publish: this wraps every message on the hot path.
  let pending = 0;
  let whenNone: Array<() => void> = [];
  const publish = aedes.publish.bind(aedes) as (...args: unknown[]) => void;
  // aedes's own handlers call broker.publish on this instance, so wrapping it sees every publish.
  (aedes as { publish: PublishFn }).publish = ((packet: unknown, client?: unknown, done?: unknown) => {
    if (typeof client === 'function') {
      done = client;
      client = null;
    }
    pending++;
    publish(packet, client, (error?: Error) => {
      if (--pending === 0) for (const resolve of whenNone.splice(0)) resolve();
      (done as ((error?: Error) => void) | undefined)?.(error);
    });
  }) as PublishFn;
  return {
    async drained(timeoutMs) {
      // Publishes started while waiting (wills of clients being closed) are waited for too.
      if (pending === 0) return;
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([new Promise<void>((resolve) => whenNone.push(resolve)), new Promise<void>((resolve) => (timer = setTimeout(resolve, timeoutMs)))]);
      clearTimeout(timer);
      whenNone = [];
    },
  };
}
