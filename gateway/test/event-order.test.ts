/** Reading events in seq order across writers (src/cluster/event-order.ts), pure. */
import { describe, expect, it } from 'vitest';
import { orderEvents } from '../src/cluster/event-order.js';
import type { LiveEvent } from '../src/store/events.js';

const ev = (...seqs: number[]): LiveEvent[] => seqs.map((seq) => ({ seq, type: 'screening', data: { seq } }));
const seqs = (events: LiveEvent[]) => events.map((e) => e.seq);

describe('orderEvents', () => {
  it('delivers events that follow on, skipping what was delivered', () => {
    const step = orderEvents({ lastSeq: 3, gapSinceMs: null }, ev(2, 3, 4, 5), 1_000, 500);
    expect(seqs(step.deliver)).toEqual([4, 5]);
    expect(step).toMatchObject({ state: { lastSeq: 5, gapSinceMs: null }, waiting: false });
  });

  it('stops at a hole and waits for it to fill', () => {
    const first = orderEvents({ lastSeq: 3, gapSinceMs: null }, ev(4, 6, 7), 1_000, 500);
    expect(seqs(first.deliver)).toEqual([4]);
    expect(first).toMatchObject({ state: { lastSeq: 4, gapSinceMs: 1_000 }, waiting: true });
    // Seq 5 committed meanwhile: all delivered in order, the wait ends.
    const filled = orderEvents(first.state, ev(5, 6, 7), 1_200, 500);
    expect(seqs(filled.deliver)).toEqual([5, 6, 7]);
    expect(filled).toMatchObject({ state: { lastSeq: 7, gapSinceMs: null }, waiting: false });
  });

  it('gives up on a hole older than the wait (a rolled-back transaction), then waits afresh at the next', () => {
    const first = orderEvents({ lastSeq: 4, gapSinceMs: null }, ev(6, 7, 9), 1_000, 500);
    expect(first).toMatchObject({ deliver: [], waiting: true, state: { lastSeq: 4, gapSinceMs: 1_000 } });
    expect(orderEvents(first.state, ev(6, 7, 9), 1_499, 500)).toMatchObject({ deliver: [], waiting: true });
    const skipped = orderEvents(first.state, ev(6, 7, 9), 1_500, 500);
    expect(seqs(skipped.deliver)).toEqual([6, 7]);
    expect(skipped).toMatchObject({ state: { lastSeq: 7, gapSinceMs: 1_500 }, waiting: true });
  });

  it('with nothing new, nothing to deliver and nothing to wait for', () => {
    expect(orderEvents({ lastSeq: 9, gapSinceMs: null }, [], 1_000, 500)).toEqual({ state: { lastSeq: 9, gapSinceMs: null }, deliver: [], waiting: false });
  });
});
