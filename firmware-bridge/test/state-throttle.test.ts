import { describe, expect, it } from 'vitest';
import { StateThrottle } from '../src/bridge/state-throttle.js';

/** A throttle on a fake clock and fake timers. */
function setup(minIntervalMs = 100) {
  let now = 0;
  const timers: Array<{ at: number; fn: () => void }> = [];
  const published: number[] = [];
  const throttle = new StateThrottle<{ x: number }>({
    minIntervalMs,
    key: (s) => JSON.stringify(s),
    publish: (s) => published.push(s.x),
    now: () => now,
    setTimer: (fn, ms) => {
      const t = { at: now + ms, fn };
      timers.push(t);
      return t;
    },
    clearTimer: (t) => timers.splice(timers.indexOf(t as (typeof timers)[number]), 1),
  });
  const advance = (ms: number) => {
    now += ms;
    for (const t of timers.filter((t) => t.at <= now)) {
      timers.splice(timers.indexOf(t), 1);
      t.fn();
    }
  };
  return { throttle, published, advance, timers };
}

describe('state throttle (latest wins, at most one per interval)', () => {
  it('publishes a change at once, coalesces a burst into one trailing publish of the latest', () => {
    const { throttle, published, advance } = setup();
    throttle.offer({ x: 1 });
    for (let x = 2; x <= 1000; x++) throttle.offer({ x });
    expect(published).toEqual([1]);
    advance(100);
    expect(published).toEqual([1, 1000]);
    expect(throttle.stats).toEqual({ published: 2, coalesced: 998 });
  });

  it('skips repeats of the published state unless forced, and forces within the rate', () => {
    const { throttle, published, advance } = setup();
    throttle.offer({ x: 1 });
    advance(500);
    throttle.offer({ x: 1 });
    expect(published).toEqual([1]);
    throttle.offer({ x: 1 }, true);
    expect(published).toEqual([1, 1]);
    throttle.offer({ x: 1 }, true);
    expect(published).toEqual([1, 1]); // within 100 ms: kept for later
    advance(100);
    expect(published).toEqual([1, 1, 1]);
  });

  it('publishes nothing when a burst ends where it started, and nothing after stop()', () => {
    const { throttle, published, advance, timers } = setup();
    throttle.offer({ x: 1 });
    throttle.offer({ x: 2 });
    throttle.offer({ x: 1 });
    advance(100);
    expect(published).toEqual([1]);
    throttle.offer({ x: 3 });
    throttle.offer({ x: 4 });
    throttle.stop();
    expect(timers).toHaveLength(0);
    advance(1000);
    expect(published).toEqual([1, 3]);
  });
});
