/**
 * Level persistence that finishes offline enqueues in the order they were started.
 *
 * aedes stores a QoS 1 message for persistent sessions (outgoingEnqueueCombi) before it hands
 * the message to subscribers, and each subscriber drops any message whose broker counter is not
 * above the last one it saw (its duplicate check). With an asynchronous store, concurrent
 * publishes can finish storing out of order; the overtaken ones were then held back from a
 * connected persistent subscriber until it reconnected (about 4 % at 64 publishes in flight).
 * Chaining the enqueues keeps delivery order close to counter order (the broker also turns that
 * duplicate check off, see broker.ts, since retained stores and QoS 0 can still overtake).
 */
import AsyncLevelPersistence from 'aedes-persistence-level/asyncPersistence.js';

export class OrderedLevelPersistence extends AsyncLevelPersistence {
  #tail: Promise<unknown> = Promise.resolve();

  override outgoingEnqueueCombi(subs: unknown[], packet: unknown): Promise<unknown> {
    const run = this.#tail.then(() => super.outgoingEnqueueCombi(subs, packet));
    this.#tail = run.catch(() => undefined);
    return run;
  }
}
