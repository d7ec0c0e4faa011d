/**
 * The group-commit core (pure): batch boundaries by size and by time, acknowledgement order, and
 * how a failing message or a failing transaction is split off without poisoning its neighbours.
 * No sockets, no database: the store is a list, time is a manual timer.
 */
import { describe, expect, it } from 'vitest';
import { createGroupCommitter, type BatchResult, type GroupCommitDeps } from '../src/ingest/group-commit.js';

interface World {
  deps: GroupCommitDeps<string>;
  /** Each storeBatch call, as the messages it was given. */
  batches: string[][];
  committed: string[];
  acked: string[];
  /** The armed timer (at most one), and when it would fire. */
  timer: { fn: () => void; ms: number } | null;
  fireTimer(): void;
  /** Messages that fail inside a batch (`error`), or whose batch transaction fails (`abort`). */
  failing: Map<string, 'error' | 'abort'>;
  /** What the slow path is asked, in order; it resolves these. */
  slow: Array<{ message: string; firstError: Error | null; resolve(stored: boolean): void }>;
  unwanted: Set<string>;
}

function world(): World {
  const w: World = {
    batches: [],
    committed: [],
    acked: [],
    timer: null,
    fireTimer() {
      const t = w.timer;
      if (!t) throw new Error('no timer armed');
      w.timer = null;
      t.fn();
    },
    failing: new Map(),
    slow: [],
    unwanted: new Set(),
    deps: {
      storeBatch(messages): BatchResult {
        w.batches.push([...messages]);
        if (messages.some((m) => w.failing.get(m) === 'abort')) throw new Error('database is locked');
        const bad = messages.findIndex((m) => w.failing.get(m) === 'error');
        const stored = bad < 0 ? messages.length : bad;
        w.committed.push(...messages.slice(0, stored));
        return bad < 0 ? { stored } : { stored, error: new Error(`cannot store ${messages[bad]}`) };
      },
      storeOne(message, firstError) {
        return new Promise((resolve) => w.slow.push({ message, firstError, resolve }));
      },
      ack: (m) => w.acked.push(m),
      wanted: (m) => !w.unwanted.has(m),
      setTimer(fn, ms) {
        if (w.timer) throw new Error('two timers armed');
        w.timer = { fn, ms };
        return w.timer;
      },
      clearTimer(handle) {
        if (w.timer === handle) w.timer = null;
      },
    },
  };
  return w;
}

const nextCalls = () => {
  const calls: string[] = [];
  return { calls, next: (m: string) => () => calls.push(m) };
};

/** Lets the slow path's promise chain run. */
const settle = () => new Promise((resolve) => setImmediate(resolve));

describe('batch boundaries', () => {
  it('closes a batch at maxMessages at once, without waiting for the timer', () => {
    const w = world();
    const gc = createGroupCommitter({ maxMessages: 3, maxWaitMs: 5 }, w.deps);
    const { calls, next } = nextCalls();
    for (const m of ['a', 'b', 'c', 'd']) gc.push(m, next(m));
    expect(w.batches).toEqual([['a', 'b', 'c']]);
    expect(w.acked).toEqual(['a', 'b', 'c']);
    // The source was never held: each message let the next one through.
    expect(calls).toEqual(['a', 'b', 'c', 'd']);
    expect(gc.queued).toBe(1);
    expect(w.timer?.ms).toBe(5);
  });

  it('closes a batch when the wait after its first message is over, and not before', () => {
    const w = world();
    const gc = createGroupCommitter({ maxMessages: 500, maxWaitMs: 5 }, w.deps);
    gc.push('a', () => undefined);
    gc.push('b', () => undefined);
    expect(w.batches).toEqual([]);
    expect(w.acked).toEqual([]);
    expect(w.timer?.ms).toBe(5);
    w.fireTimer();
    expect(w.batches).toEqual([['a', 'b']]);
    expect(w.acked).toEqual(['a', 'b']);
    // Nothing queued: nothing armed until the next message.
    expect(w.timer).toBeNull();
    gc.push('c', () => undefined);
    expect(w.timer?.ms).toBe(5);
  });

  it('acknowledges nothing before its batch committed, and in arrival order across batches', () => {
    const w = world();
    const gc = createGroupCommitter({ maxMessages: 2, maxWaitMs: 5 }, w.deps);
    const order: string[] = [];
    w.deps.ack = (m) => {
      expect(w.committed).toContain(m);
      order.push(m);
    };
    for (const m of ['1', '2', '3', '4', '5']) gc.push(m, () => undefined);
    w.fireTimer();
    expect(order).toEqual(['1', '2', '3', '4', '5']);
    expect(w.batches).toEqual([['1', '2'], ['3', '4'], ['5']]);
  });

  it('neither stores nor acknowledges messages whose connection is gone', () => {
    const w = world();
    const gc = createGroupCommitter({ maxMessages: 10, maxWaitMs: 5 }, w.deps);
    for (const m of ['old-1', 'old-2', 'new-1']) gc.push(m, () => undefined);
    w.unwanted.add('old-1').add('old-2');
    w.fireTimer();
    expect(w.batches).toEqual([['new-1']]);
    expect(w.acked).toEqual(['new-1']);
  });

  it('stores a batch the store cut short (a message that must go alone) in the next round, same flush', () => {
    const w = world();
    w.deps.storeBatch = (messages) => {
      w.batches.push([...messages]);
      // 'robot' goes alone: a batch stops before it; a batch starting with it holds only it.
      const stored = messages[0] === 'robot' ? 1 : Math.max(1, messages.indexOf('robot') < 0 ? messages.length : messages.indexOf('robot'));
      w.committed.push(...messages.slice(0, stored));
      return { stored };
    };
    const gc = createGroupCommitter({ maxMessages: 10, maxWaitMs: 5 }, w.deps);
    for (const m of ['a', 'b', 'robot', 'c']) gc.push(m, () => undefined);
    w.fireTimer();
    expect(w.batches).toEqual([['a', 'b', 'robot', 'c'], ['robot', 'c'], ['c']]);
    expect(w.acked).toEqual(['a', 'b', 'robot', 'c']);
  });
});

describe('a failing message or batch', () => {
  it('commits the messages before a failing one, retries it alone, then batches the rest behind it', async () => {
    const w = world();
    w.failing.set('bad', 'error');
    const gc = createGroupCommitter({ maxMessages: 10, maxWaitMs: 5 }, w.deps);
    for (const m of ['a', 'b', 'bad', 'c', 'd']) gc.push(m, () => undefined);
    w.fireTimer();
    expect(w.acked).toEqual(['a', 'b']);
    expect(w.slow.map((s) => s.message)).toEqual(['bad']);
    // Its failure inside the batch was its first attempt.
    expect(w.slow[0]!.firstError?.message).toBe('cannot store bad');
    expect(gc.retrying).toBe(true);
    // Later messages wait behind it (order): nothing stored or acknowledged meanwhile.
    gc.push('e', () => undefined);
    expect(w.timer).toBeNull();
    expect(w.batches).toHaveLength(1);
    // Recorded as failed (set aside) by the slow path: acknowledged, then batching resumes.
    w.slow[0]!.resolve(true);
    await settle();
    expect(w.acked).toEqual(['a', 'b', 'bad', 'c', 'd', 'e']);
    expect(w.batches.slice(1)).toEqual([['c', 'd', 'e']]);
    expect(gc.retrying).toBe(false);
  });

  it('stores a batch whose transaction failed one by one, in order, each acknowledged once stored', async () => {
    const w = world();
    w.failing.set('b', 'abort');
    const gc = createGroupCommitter({ maxMessages: 3, maxWaitMs: 5 }, w.deps);
    const failures: number[] = [];
    w.deps.onBatchFailed = (_e, size) => failures.push(size);
    for (const m of ['a', 'b', 'c', 'd']) gc.push(m, () => undefined);
    expect(failures).toEqual([3]);
    expect(w.committed).toEqual([]);
    expect(w.acked).toEqual([]);
    expect(w.slow.map((s) => s.message)).toEqual(['a']);
    expect(w.slow[0]!.firstError?.message).toBe('database is locked');
    w.slow[0]!.resolve(true);
    await settle();
    expect(w.slow.map((s) => s.message)).toEqual(['a', 'b']);
    // The culprit is only tried alone now (no error carried over to it).
    expect(w.slow[1]!.firstError).toBeNull();
    w.slow[1]!.resolve(true);
    await settle();
    w.slow[2]!.resolve(true);
    await settle();
    expect(w.acked).toEqual(['a', 'b', 'c', 'd']);
    // 'd' arrived after the failed batch: batched again.
    expect(w.batches.at(-1)).toEqual(['d']);
  });

  it('does not acknowledge a message the slow path gave back (its connection dropped)', async () => {
    const w = world();
    w.failing.set('a', 'error');
    const gc = createGroupCommitter({ maxMessages: 10, maxWaitMs: 5 }, w.deps);
    gc.push('a', () => undefined);
    gc.push('b', () => undefined);
    w.fireTimer();
    w.unwanted.add('b');
    w.slow[0]!.resolve(false);
    await settle();
    expect(w.acked).toEqual([]);
    expect(w.batches).toHaveLength(1);
  });

  it('pauses the source while the slow path runs and the queue is full, and resumes it after', async () => {
    const w = world();
    w.failing.set('bad', 'error');
    const gc = createGroupCommitter({ maxMessages: 2, maxWaitMs: 5 }, w.deps);
    const { calls, next } = nextCalls();
    gc.push('bad', next('bad'));
    w.fireTimer();
    expect(gc.retrying).toBe(true);
    gc.push('x', next('x'));
    gc.push('y', next('y'));
    // Two queued behind the failing one: 'y' is not let through.
    expect(calls).toEqual(['bad', 'x']);
    w.failing.delete('bad');
    w.slow[0]!.resolve(true);
    await settle();
    expect(calls).toEqual(['bad', 'x', 'y']);
    expect(w.acked).toEqual(['bad', 'x', 'y']);
  });

  it('drops what is queued on close, unacknowledged (the broker keeps it)', () => {
    const w = world();
    const gc = createGroupCommitter({ maxMessages: 10, maxWaitMs: 5 }, w.deps);
    gc.push('a', () => undefined);
    gc.close();
    expect(w.timer).toBeNull();
    gc.push('b', () => undefined);
    gc.flush();
    expect(w.batches).toEqual([]);
    expect(w.acked).toEqual([]);
  });
});

/**
 * A store on a server database (PostgreSQL) answers with a promise: one batch in flight at a
 * time, what arrives meanwhile forms the next batch, acknowledgements only after the answer and in
 * arrival order, and a rejected transaction goes the slow path like a thrown one.
 */
function asyncWorld() {
  const w = world();
  const syncStore = w.deps.storeBatch;
  /** The batches handed to the store, each answered when the test says so. */
  const pending: Array<{ messages: string[]; answer(): void; reject(err: Error): void }> = [];
  w.deps.storeBatch = (messages) =>
    new Promise<BatchResult>((resolve, reject) => {
      pending.push({
        messages: [...messages],
        answer: () => {
          try {
            resolve(syncStore(messages) as BatchResult);
          } catch (err) {
            reject(err as Error);
          }
        },
        reject,
      });
    });
  return { w, pending };
}

describe('an asynchronous store', () => {
  it('keeps one batch in flight, gathers the next meanwhile, and acknowledges in order after each answer', async () => {
    const { w, pending } = asyncWorld();
    const gc = createGroupCommitter({ maxMessages: 3, maxWaitMs: 5 }, w.deps);
    const { calls, next } = nextCalls();
    for (const m of ['a', 'b', 'c']) gc.push(m, next(m));
    expect(pending.map((p) => p.messages)).toEqual([['a', 'b', 'c']]);
    for (const m of ['d', 'e', 'f']) gc.push(m, next(m));
    // Still one batch in flight; no timer armed behind it; the queue is full, so the source is held after 'f'.
    expect(pending).toHaveLength(1);
    expect(w.timer).toBeNull();
    expect(w.acked).toEqual([]);
    expect(calls).toEqual(['a', 'b', 'c', 'd', 'e']);
    pending[0]!.answer();
    await settle();
    expect(w.acked).toEqual(['a', 'b', 'c']);
    // The batch gathered meanwhile went at once; the source resumed.
    expect(pending.map((p) => p.messages)).toEqual([['a', 'b', 'c'], ['d', 'e', 'f']]);
    expect(calls).toEqual(['a', 'b', 'c', 'd', 'e', 'f']);
    gc.push('g', next('g'));
    expect(pending).toHaveLength(2);
    pending[1]!.answer();
    await settle();
    expect(pending.map((p) => p.messages).at(-1)).toEqual(['g']);
    pending[2]!.answer();
    await settle();
    expect(w.acked).toEqual(['a', 'b', 'c', 'd', 'e', 'f', 'g']);
    expect(w.committed).toEqual(w.acked);
    await gc.idle();
  });

  it('commits the messages before one that failed inside the batch, then retries that one alone', async () => {
    const { w, pending } = asyncWorld();
    w.failing.set('bad', 'error');
    const gc = createGroupCommitter({ maxMessages: 10, maxWaitMs: 5 }, w.deps);
    for (const m of ['a', 'bad', 'c']) gc.push(m, () => undefined);
    w.fireTimer();
    pending[0]!.answer();
    await settle();
    expect(w.acked).toEqual(['a']);
    expect(w.slow.map((s) => s.message)).toEqual(['bad']);
    w.slow[0]!.resolve(true);
    await settle();
    expect(pending.map((p) => p.messages).at(-1)).toEqual(['c']);
    pending.at(-1)!.answer();
    await settle();
    expect(w.acked).toEqual(['a', 'bad', 'c']);
  });

  it('stores a batch whose transaction was rejected one by one through the slow path, acknowledging nothing before', async () => {
    const { w, pending } = asyncWorld();
    const gc = createGroupCommitter({ maxMessages: 10, maxWaitMs: 5 }, w.deps);
    const failures: Array<[string, number]> = [];
    w.deps.onBatchFailed = (err, size) => failures.push([err.message, size]);
    for (const m of ['a', 'b']) gc.push(m, () => undefined);
    w.fireTimer();
    gc.push('c', () => undefined);
    pending[0]!.reject(new Error('Connection terminated unexpectedly'));
    await settle();
    expect(failures).toEqual([['Connection terminated unexpectedly', 2]]);
    expect(w.acked).toEqual([]);
    expect(w.slow.map((s) => [s.message, s.firstError?.message ?? null])).toEqual([['a', 'Connection terminated unexpectedly']]);
    w.slow[0]!.resolve(true);
    await settle();
    expect(w.slow.map((s) => [s.message, s.firstError?.message ?? null])).toEqual([
      ['a', 'Connection terminated unexpectedly'],
      ['b', null],
    ]);
    w.slow[1]!.resolve(true);
    await settle();
    // Then 'c', which arrived while the batch was in flight, as a batch of its own.
    expect(pending.map((p) => p.messages).at(-1)).toEqual(['c']);
    pending.at(-1)!.answer();
    await settle();
    expect(w.acked).toEqual(['a', 'b', 'c']);
  });

  it('acknowledges nothing of a batch that commits after close (the broker delivers it again)', async () => {
    const { w, pending } = asyncWorld();
    const gc = createGroupCommitter({ maxMessages: 2, maxWaitMs: 5 }, w.deps);
    gc.push('a', () => undefined);
    gc.push('b', () => undefined);
    const idle = gc.idle();
    gc.close();
    pending[0]!.answer();
    await idle;
    expect(w.committed).toEqual(['a', 'b']);
    expect(w.acked).toEqual([]);
  });
});
