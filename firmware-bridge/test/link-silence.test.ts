import { describe, expect, it } from 'vitest';
import { LinkSilence } from '../src/bridge/link-silence.js';

describe('link silence counted in watchdog ticks', () => {
  it('a stall of the process (frames unread, one late tick) counts as one tick, not the whole stall', () => {
    const s = new LinkSilence(250, 0, 0);
    expect(s.tick(250, 200)).toBe(50);
    // 1.5 s with no tick; the robot's frames are still unread in the port.
    expect(s.tick(1750, 200)).toBe(300);
    // Next tick, after Node read them.
    expect(s.tick(2000, 1800)).toBe(200);
  });

  it('a really silent link reaches the timeout after timeout / tick ticks, even when every tick runs late', () => {
    const s = new LinkSilence(250, 0, 0);
    let silent = 0;
    let ticks = 0;
    for (let now = 400; silent <= 1000; now += 400) {
      silent = s.tick(now, 0);
      ticks++;
    }
    expect(ticks).toBe(5);
    expect(silent).toBe(1250);
  });

  it('a new link (its receive time reset on open) starts silent from then', () => {
    const s = new LinkSilence(250, 0, 0);
    for (let now = 250; now <= 1000; now += 250) s.tick(now, 0);
    expect(s.tick(1250, 1200)).toBe(50);
  });
});
