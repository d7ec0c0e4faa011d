/**
 * The live feed (Server-Sent Events). Events are rows of the `events` table, written in the same
 * transaction as what they announce; an SSE event id is the row's sequence number. A client that
 * reconnects with Last-Event-ID gets exactly the events after that id — replay and live delivery
 * are the same loop ("send what is after my last id"), so nothing is sent twice or skipped.
 */
import type { ServerResponse } from 'node:http';
import type { LiveEvent } from '../store/operational.js';

export interface EventSourceStore {
  eventsAfter(seq: number, limit: number): LiveEvent[];
  eventRange(): { first: number; last: number };
}

const PAGE = 500;
const KEEPALIVE_MS = 15_000;

/** One SSE frame (pure). */
export function formatSse(e: LiveEvent): string {
  return `id: ${e.seq}\nevent: ${e.type}\ndata: ${JSON.stringify(e.data)}\n\n`;
}

interface LiveClient {
  res: ServerResponse;
  last: number;
  busy: boolean;
  again: boolean;
}

export class LiveFeed {
  private readonly clients = new Set<LiveClient>();
  private scheduled = false;
  private readonly keepalive: NodeJS.Timeout;

  constructor(private readonly store: EventSourceStore) {
    this.keepalive = setInterval(() => {
      for (const c of this.clients) c.res.write(': keepalive\n\n');
    }, KEEPALIVE_MS);
    this.keepalive.unref();
  }

  get size(): number {
    return this.clients.size;
  }

  /** Start streaming to `res`. `lastEventId` null = only events from now on. */
  attach(res: ServerResponse, lastEventId: number | null): void {
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache, no-transform',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    });
    res.write('retry: 2000\n\n');
    const range = this.store.eventRange();
    let last = lastEventId ?? range.last;
    if (lastEventId !== null && lastEventId < range.first - 1) {
      // The events after lastEventId were pruned: the client must reload its state over REST.
      res.write(`event: resync\ndata: ${JSON.stringify({ reason: 'events after your Last-Event-ID are no longer kept', first: range.first })}\n\n`);
      last = range.first - 1;
    }
    const client: LiveClient = { res, last, busy: false, again: false };
    this.clients.add(client);
    res.on('close', () => this.clients.delete(client));
    void this.pump(client);
  }

  /** New events were committed: deliver them (coalesced per tick). */
  notify(): void {
    if (this.scheduled || this.clients.size === 0) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      for (const c of this.clients) void this.pump(c);
    });
  }

  private async pump(c: LiveClient): Promise<void> {
    if (c.busy) {
      c.again = true;
      return;
    }
    c.busy = true;
    try {
      do {
        c.again = false;
        for (;;) {
          const events = this.store.eventsAfter(c.last, PAGE);
          if (events.length === 0 || c.res.destroyed) break;
          const ok = c.res.write(events.map(formatSse).join(''));
          c.last = events[events.length - 1]!.seq;
          if (!ok) await new Promise((resolve) => c.res.once('drain', resolve));
          if (events.length < PAGE) break;
        }
      } while (c.again && !c.res.destroyed);
    } finally {
      c.busy = false;
    }
  }

  close(): void {
    clearInterval(this.keepalive);
    for (const c of this.clients) c.res.end();
    this.clients.clear();
  }
}
