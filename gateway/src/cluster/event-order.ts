/**
 * Reading the live feed's events in order when several gateways write them. PostgreSQL hands out
 * `seq` when an event is inserted, but transactions commit in any order: a reader may see seq 12
 * before seq 11 commits. So a reader delivers events only while their seqs follow on without a
 * hole, and waits at a hole — up to `gapWaitMs`, since a rolled-back transaction leaves a hole
 * that never fills. Pure: the follower (postgres/event-follower.ts) keeps the state.
 */
import type { LiveEvent } from '../store/events.js';

export interface EventOrderState {
  /** The last seq delivered. */
  lastSeq: number;
  /** Since when the reader waits at a hole after `lastSeq` (null: not waiting). */
  gapSinceMs: number | null;
}

export interface EventOrderStep {
  state: EventOrderState;
  /** Deliver these, in this order. */
  deliver: LiveEvent[];
  /** True when a hole holds events back: read again soon. */
  waiting: boolean;
}

/** `read`: the events after `state.lastSeq`, oldest first, as the database has them now. */
export function orderEvents(state: EventOrderState, read: readonly LiveEvent[], nowMs: number, gapWaitMs: number): EventOrderStep {
  const deliver: LiveEvent[] = [];
  let lastSeq = state.lastSeq;
  let gapSinceMs = state.gapSinceMs;
  for (const event of read) {
    if (event.seq <= lastSeq) continue;
    if (event.seq !== lastSeq + 1) {
      // A hole: wait for it to fill, or give up on it once it is older than gapWaitMs.
      gapSinceMs ??= nowMs;
      if (nowMs - gapSinceMs < gapWaitMs) return { state: { lastSeq, gapSinceMs }, deliver, waiting: true };
    }
    deliver.push(event);
    lastSeq = event.seq;
    gapSinceMs = null;
  }
  return { state: { lastSeq, gapSinceMs }, deliver, waiting: false };
}
