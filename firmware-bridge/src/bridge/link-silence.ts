/**
 * How long a serial link has been silent, counted in watchdog ticks rather than wall-clock time.
 *
 * Why not `now - lastReceivedAt`: when this process stalls (a GC pause, a long synchronous task,
 * a loaded box), the robot's frames pile up unread in the port while the clock runs; the first
 * timer after the stall runs before Node reads them, so wall-clock silence would declare a
 * healthy link broken (CONNECTIONBROKEN, and the master re-queues the robot's task). Here a tick
 * adds at most one tick interval of silence however late it runs, so a stall counts as one tick,
 * while a link that is really silent still reaches the timeout after timeout / tick ticks.
 *
 * Pure: the caller passes the clock.
 */
export class LinkSilence {
  private silentMs = 0;
  private lastTickAt: number;
  private lastHeardAt: number;

  constructor(
    private readonly tickMs: number,
    now: number,
    lastReceivedAt: number,
  ) {
    this.lastTickAt = now;
    this.lastHeardAt = lastReceivedAt;
  }

  /** Called on each watchdog tick with the link's last receive time; returns the silence so far (ms). */
  tick(now: number, lastReceivedAt: number): number {
    const elapsedMs = Math.max(0, Math.min(now - this.lastTickAt, this.tickMs));
    this.lastTickAt = now;
    if (lastReceivedAt !== this.lastHeardAt) {
      // Heard since the last tick (or a new link): silence starts at that frame, at most one tick ago.
      this.lastHeardAt = lastReceivedAt;
      this.silentMs = Math.max(0, Math.min(now - lastReceivedAt, this.tickMs));
    } else {
      this.silentMs += elapsedMs;
    }
    return this.silentMs;
  }
}
