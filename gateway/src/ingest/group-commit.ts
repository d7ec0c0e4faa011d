/**
 * Group commit (pure: no sockets, no database; time through an injected timer). Messages that
 * arrive while a batch is being gathered or stored go into the next batch, which is stored in one
 * transaction: a batch closes at `maxMessages`, or `maxWaitMs` after its first message arrived.
 * Each message is acknowledged only after the transaction holding it committed, and
 * acknowledgements go out in arrival order (MQTT 3.1.1 §4.6: PUBACKs in PUBLISH order).
 *
 * A failing batch does not poison its neighbours:
 * - a message that throws inside the batch (its own savepoint rolled back by `storeBatch`) ends
 *   the batch there: the messages before it commit and are acknowledged; it goes to `storeOne`
 *   (the slow path: retries with backoff, set aside when a retry cannot cure it), and the rest
 *   waits behind it, so that order holds;
 * - a batch whose transaction fails as a whole (BEGIN or COMMIT: database locked, disk full) is
 *   stored again message by message through `storeOne`.
 * While the slow path runs, newly arriving messages queue; past `maxMessages` queued the source is
 * paused (`next` is held back), so a store outage fills the broker's queue, not this process.
 */

export interface GroupCommitOptions {
  /** A batch holds at most this many messages. */
  maxMessages: number;
  /** ... and closes at the latest this long after its first message arrived. */
  maxWaitMs: number;
}

export interface BatchResult {
  /** The first `stored` messages of the batch are committed. */
  stored: number;
  /**
   * Why message `stored` failed (its writes were rolled back; the messages after it were not
   * tried). Without an error and with `stored` short of the batch, the rest was not tried (a
   * message that must be stored alone, say) and is gathered into the next batch.
   */
  error?: Error;
}

export interface GroupCommitDeps<M> {
  /**
   * Stores the messages in order in one transaction. Throws (or rejects) when the transaction
   * itself failed (nothing of the batch is stored). A store on a server database answers with a
   * promise: then one batch is in flight at a time, and what arrives meanwhile forms the next
   * one; a synchronous answer (SQLite) is used at once, with no promise in the way.
   */
  storeBatch(messages: readonly M[]): BatchResult | Promise<BatchResult>;
  /**
   * The slow path for one message: true once it is stored (or set aside for good), false when it
   * must not be acknowledged (its connection is gone: the broker delivers it again).
   */
  storeOne(message: M, firstError: Error | null): Promise<boolean>;
  /** Sends the acknowledgement of a committed message. */
  ack(message: M): void;
  /** False for a message that must be neither stored nor acknowledged (its connection is gone). */
  wanted(message: M): boolean;
  setTimer(fn: () => void, ms: number): unknown;
  clearTimer(handle: unknown): void;
  /** The transaction of a whole batch failed: it is being stored one by one. */
  onBatchFailed?(error: Error, size: number): void;
}

interface Entry<M> {
  message: M;
}

export interface GroupCommitter<M> {
  /**
   * Queues a message; `next` is called when the source may hand over the next one (at once,
   * unless the queue is full because the store is failing).
   */
  push(message: M, next: () => void): void;
  /** Stores what is queued now (unless the slow path is running). */
  flush(): void;
  /** Messages queued, not yet committed. */
  readonly queued: number;
  /** The slow path is running (a message is being retried). */
  readonly retrying: boolean;
  /** Resolves once no batch is in flight (at once with a synchronous store). */
  idle(): Promise<void>;
  /** Stops the timer; queued messages are dropped unacknowledged (the broker keeps them). */
  close(): void;
}

export function createGroupCommitter<M>(options: GroupCommitOptions, deps: GroupCommitDeps<M>): GroupCommitter<M> {
  const maxMessages = Math.max(1, Math.trunc(options.maxMessages));
  const queue: Entry<M>[] = [];
  let timer: unknown = null;
  let slow = false;
  let closed = false;
  let heldNext: (() => void) | null = null;
  /** The batch being stored by an asynchronous store (at most one). */
  let inFlight: Promise<void> | null = null;

  const cancelTimer = () => {
    if (timer !== null) deps.clearTimer(timer);
    timer = null;
  };

  const releaseNext = () => {
    if (heldNext && queue.length < maxMessages && !closed) {
      const next = heldNext;
      heldNext = null;
      next();
    }
  };

  /** Arms the wait for the batch now gathering (its first message arrived). */
  const arm = () => {
    if (timer === null && queue.length > 0 && !slow && !closed && !inFlight) {
      timer = deps.setTimer(() => {
        timer = null;
        flush();
      }, Math.max(0, options.maxWaitMs));
    }
  };

  /** Runs `messages` through the slow path, one by one, in order; then resumes batching. */
  const slowPath = (failed: M, firstError: Error | null, thenOneByOne: M[]) => {
    slow = true;
    void (async () => {
      const pending = [failed, ...thenOneByOne];
      let error = firstError;
      for (const message of pending) {
        if (closed) return;
        if (!deps.wanted(message)) continue;
        const stored = await deps.storeOne(message, error);
        error = null;
        if (stored && !closed) deps.ack(message);
      }
      slow = false;
      if (closed) return;
      flush();
      arm();
      releaseNext();
    })().catch(() => {
      // storeOne never throws (it retries); should it, batching resumes rather than stalling.
      slow = false;
    });
  };

  /** The whole batch's transaction failed: store it again one by one. */
  const batchFailed = (batch: M[], err: Error) => {
    deps.onBatchFailed?.(err, batch.length);
    slowPath(batch[0]!, err, batch.slice(1));
  };

  /** Acknowledges what the store committed; false when batching must stop (the slow path took over). */
  const settle = (batch: M[], result: BatchResult): boolean => {
    const stored = Math.max(0, Math.min(batch.length, result.stored));
    // Nothing stored and no reason given would loop for ever: take it as a failure of the first.
    const error = result.error ?? (stored === 0 ? new Error('storeBatch stored nothing of the batch and gave no reason') : undefined);
    for (let i = 0; i < stored; i++) deps.ack(batch[i]!);
    if (stored === batch.length) return true;
    const rest = batch.slice(stored + (error ? 1 : 0)).map((message) => ({ message }));
    queue.unshift(...rest);
    if (error) {
      slowPath(batch[stored]!, error, []);
      return false;
    }
    return true;
  };

  function flush(): void {
    cancelTimer();
    while (!slow && !closed && !inFlight && queue.length > 0) {
      const batch = queue.splice(0, maxMessages).map((e) => e.message).filter((m) => deps.wanted(m));
      if (batch.length === 0) continue;
      let result: BatchResult | Promise<BatchResult>;
      try {
        result = deps.storeBatch(batch);
      } catch (err) {
        batchFailed(batch, err as Error);
        break;
      }
      if (result instanceof Promise) {
        // Resumed when the store answers: acknowledgements in order, then the batch gathered meanwhile.
        inFlight = result.then(
          (answer) => {
            inFlight = null;
            if (closed) return;
            if (settle(batch, answer)) flush();
            else if (!slow) releaseNext();
          },
          (err: unknown) => {
            inFlight = null;
            if (closed) return;
            batchFailed(batch, err instanceof Error ? err : new Error(String(err)));
          },
        );
        break;
      }
      if (!settle(batch, result)) break;
    }
    // While a batch is in flight the source may fill the next one (releaseNext holds it back past maxMessages).
    if (!slow) releaseNext();
  }

  return {
    push(message, next) {
      if (closed) return;
      queue.push({ message });
      if (queue.length >= maxMessages && !slow && !inFlight) flush();
      else arm();
      if (queue.length < maxMessages) next();
      else heldNext = next;
    },
    flush,
    get queued() {
      return queue.length;
    },
    get retrying() {
      return slow;
    },
    idle() {
      return inFlight ?? Promise.resolve();
    },
    close() {
      closed = true;
      cancelTimer();
      queue.length = 0;
      heldNext = null;
    },
  };
}
