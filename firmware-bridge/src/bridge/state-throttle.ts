/**
 * VDA 5050 state publishing for a serial robot: on change, at most one per `minIntervalMs`, the
 * latest state winning. An MCU that floods STATUS (94,000 in 10 s were once republished one for
 * one as QoS 1 messages) costs at most 1000 / minIntervalMs publishes a second, and the master
 * control still gets the newest state within `minIntervalMs` of a change.
 *
 * Pure apart from the timer functions it is handed (tests pass fakes; the bridge passes Node's).
 */
export interface StateThrottleOptions<S> {
  minIntervalMs: number;
  /** Sends a state (the bridge adds the header and publishes). */
  publish(state: S): void;
  /** A stable text form of a state, to tell a change from a repeat (timestamps excluded). */
  key(state: S): string;
  now?: () => number;
  setTimer?: (fn: () => void, ms: number) => unknown;
  clearTimer?: (timer: unknown) => void;
}

export interface StateThrottleStats {
  published: number;
  /** Offers not published: unchanged, or replaced by a later one before their turn. */
  coalesced: number;
}

export class StateThrottle<S> {
  readonly stats: StateThrottleStats = { published: 0, coalesced: 0 };
  private lastKey: string | null = null;
  private lastAt = -Infinity;
  private pending: S | null = null;
  private pendingForced = false;
  private timer: unknown = null;
  private readonly now: () => number;
  private readonly setTimer: (fn: () => void, ms: number) => unknown;
  private readonly clearTimer: (timer: unknown) => void;

  constructor(private readonly o: StateThrottleOptions<S>) {
    this.now = o.now ?? Date.now;
    this.setTimer = o.setTimer ?? ((fn, ms) => setTimeout(fn, ms));
    this.clearTimer = o.clearTimer ?? ((t) => clearTimeout(t as NodeJS.Timeout));
  }

  /**
   * A new state. Sent now if it changed and the interval has passed; else kept (replacing any
   * kept one) and sent when the interval is up. `force`: send even if unchanged (the periodic
   * state VDA 5050 asks for, a stateRequest), still within the rate.
   */
  offer(state: S, force = false): void {
    const key = this.o.key(state);
    if (!force && key === this.lastKey && this.pending === null) {
      this.stats.coalesced += 1;
      return;
    }
    if (this.pending !== null) this.stats.coalesced += 1;
    this.pending = state;
    this.pendingForced = this.pendingForced || force;
    const wait = this.lastAt + this.o.minIntervalMs - this.now();
    if (wait <= 0) this.flush();
    else this.timer ??= this.setTimer(() => {
      this.timer = null;
      this.flush();
    }, wait);
  }

  private flush(): void {
    const state = this.pending;
    const forced = this.pendingForced;
    this.pending = null;
    this.pendingForced = false;
    if (state === null) return;
    const key = this.o.key(state);
    if (!forced && key === this.lastKey) {
      this.stats.coalesced += 1;
      return;
    }
    this.lastKey = key;
    this.lastAt = this.now();
    this.stats.published += 1;
    this.o.publish(state);
  }

  /** Drops a kept state and its timer (on close). */
  stop(): void {
    if (this.timer !== null) this.clearTimer(this.timer);
    this.timer = null;
    this.pending = null;
  }
}
