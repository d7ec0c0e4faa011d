/**
 * A job that must run on one gateway only (alert escalation, retention, fleet dispatch), run every
 * `intervalMs` while this gateway leads and stopped the moment it ceases. Runs never overlap; a
 * run under way when leadership ends finishes its transaction (its effects are still exactly once:
 * the workflows' transactions and locks see to that), but no new one starts.
 */
import type { Leadership } from './postgres-leadership.js';

export interface LeaderJob {
  stop(): void;
}

export function runWhileLeading(leadership: Pick<Leadership, 'isLeader' | 'onChange'>, intervalMs: number, run: () => Promise<void>, onError: (error: Error) => void): LeaderJob {
  let timer: NodeJS.Timeout | null = null;
  let running = false;
  const tick = async () => {
    if (running || !leadership.isLeader()) return;
    running = true;
    try {
      await run();
    } catch (error) {
      onError(error as Error);
    } finally {
      running = false;
    }
  };
  const start = () => {
    timer ??= setInterval(() => void tick(), intervalMs);
    void tick();
  };
  const halt = () => {
    if (timer) clearInterval(timer);
    timer = null;
  };
  const unsubscribe = leadership.onChange((leading) => (leading ? start() : halt()));
  if (leadership.isLeader()) start();
  return {
    stop() {
      unsubscribe();
      halt();
    },
  };
}
