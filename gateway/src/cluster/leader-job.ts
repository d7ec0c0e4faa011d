/**
 * A job that must run on one gateway only (alert escalation, retention, fleet dispatch), run every
 * `intervalMs` while this gateway leads and stopped the moment it ceases. Runs never overlap; a
 * run under way when leadership ends finishes its transaction (its effects are still exactly once:
 * the workflows' transactions and locks see to that), but no new one starts.
 */
import type { Leadership } from './postgres-leadership.js';

export interface LeaderJob {
  /** Stops the job; resolves once a run under way has finished (so what it uses may be closed then). */
  stop(): Promise<void>;
}

export function runWhileLeading(leadership: Pick<Leadership, 'isLeader' | 'onChange'>, intervalMs: number, run: () => Promise<void>, onError: (error: Error) => void): LeaderJob {
  let timer: NodeJS.Timeout | null = null;
  let running: Promise<void> | null = null;
  const tick = async () => {
    if (running || !leadership.isLeader()) return;
    running = (async () => {
      try {
        await run();
      } catch (error) {
        onError(error as Error);
      }
    })();
    await running;
    running = null;
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
    async stop() {
      unsubscribe();
      halt();
      await running;
    },
  };
}
