/**
 * Following the live feed's events in the database, whichever gateway wrote them: LISTEN on a
 * dedicated connection wakes the follower when a transaction with events commits; it also reads
 * every `pollMs` (a notification sent while it was reconnecting is lost), and often while a hole
 * in the seqs holds events back (../../cluster/event-order.ts). Events go to `onEvents` in seq
 * order, each once.
 */
import pg from 'pg';
import { orderEvents, type EventOrderState } from '../../cluster/event-order.js';
import type { EventStore, LiveEvent } from '../events.js';
import { EVENTS_CHANNEL } from './events.js';

export interface EventFollowerOptions {
  /** The dedicated listening connection's settings. */
  connection: pg.ClientConfig;
  /** Where events are read (a pool's store). */
  events: EventStore<'async'>;
  /** Deliver events after this seq. */
  fromSeq: number;
  onEvents(events: LiveEvent[]): void;
  /** How long a hole may hold later events back (default 2000 ms). */
  gapWaitMs?: number;
  /** Reads without a notification this often (default 1000 ms), and reconnects after as long. */
  pollMs?: number;
  log?: (message: string) => void;
}

export interface EventFollower {
  lastSeq(): number;
  /** True while a hole in the seqs holds later events back. */
  waiting(): boolean;
  stop(): Promise<void>;
}

const READ_LIMIT = 500;
const GAP_RECHECK_MS = 25;

export function followPostgresEvents(options: EventFollowerOptions): EventFollower {
  const gapWaitMs = options.gapWaitMs ?? 2000;
  const pollMs = options.pollMs ?? 1000;
  const log = options.log ?? (() => undefined);
  let state: EventOrderState = { lastSeq: options.fromSeq, gapSinceMs: null };
  let stopped = false;
  let reading = false;
  let readAgain = false;
  let client: pg.Client | null = null;
  let recheck: NodeJS.Timeout | null = null;
  const poll = setInterval(() => void read(), pollMs);

  async function read(): Promise<void> {
    if (stopped) return;
    if (reading) {
      readAgain = true;
      return;
    }
    reading = true;
    try {
      do {
        readAgain = false;
        const step = orderEvents(state, await options.events.after(state.lastSeq, READ_LIMIT), Date.now(), gapWaitMs);
        state = step.state;
        if (step.deliver.length && !stopped) options.onEvents(step.deliver);
        if (step.waiting && !recheck) {
          recheck = setTimeout(() => {
            recheck = null;
            void read();
          }, GAP_RECHECK_MS);
        }
        // A full page: there may be more right away.
        if (step.deliver.length === READ_LIMIT) readAgain = true;
      } while (readAgain && !stopped);
    } catch (error) {
      log(`event follower: read failed (${(error as Error).message})`);
    } finally {
      reading = false;
    }
  }

  function listen(): void {
    if (stopped) return;
    const c = new pg.Client({ ...options.connection, keepAlive: true });
    client = c;
    let lost = false;
    const reconnect = (why: string) => {
      if (lost || stopped) return;
      lost = true;
      log(`event follower: connection lost (${why})`);
      void c.end().catch(() => undefined);
      setTimeout(listen, pollMs);
    };
    c.on('error', (error) => reconnect(error.message));
    c.on('end', () => reconnect('ended'));
    c.on('notification', () => void read());
    c.connect()
      .then(() => c.query(`LISTEN ${EVENTS_CHANNEL}`))
      // Whatever committed while not listening.
      .then(() => read())
      .catch((error: Error) => reconnect(error.message));
  }

  listen();

  return {
    lastSeq: () => state.lastSeq,
    waiting: () => state.gapSinceMs !== null,
    async stop() {
      stopped = true;
      clearInterval(poll);
      if (recheck) clearTimeout(recheck);
      await client?.end().catch(() => undefined);
    },
  };
}
