/**
 * The live feed (Server-Sent Events). Events are rows of the `events` table, written in the same
 * transaction as what they announce; an SSE event id is the row's sequence number. A client that
 * reconnects with Last-Event-ID gets exactly the events after that id — replay and live delivery
 * are the same loop ("send what is after my last id"), so nothing is sent twice or skipped.
 *
 * Bounded: connections per user and in total are capped (429 / 503 before the stream starts);
 * at most one chunk (~64 KB) is handed to a connection until it drains, and one that does not
 * drain within `stallTimeoutMs` is closed (it resumes with Last-Event-ID, losing nothing). A
 * stream ends (`event: end`) when its session does: logout, expiry, user removed or changed.
 */
import type { ServerResponse } from 'node:http';
import type { LiveEvent } from '../store/operational.js';

export interface EventSourceStore {
  eventsAfter(seq: number, limit: number): LiveEvent[];
  eventRange(): { first: number; last: number };
}

const PAGE = 500;
const KEEPALIVE_MS = 15_000;
/** Bytes handed to one connection per write; the next waits for 'drain'. */
const CHUNK_BYTES = 64 * 1024;

export interface LiveLimits {
  maxClients: number;
  maxClientsPerUser: number;
  /** A connection that does not take what was written within this is closed. */
  stallTimeoutMs: number;
  /** How often streams are checked against their sessions (logout ends them at once). */
  sessionCheckMs: number;
}

export const DEFAULT_LIVE_LIMITS: LiveLimits = { maxClients: 200, maxClientsPerUser: 10, stallTimeoutMs: 30_000, sessionCheckMs: 5000 };

/** Who holds a stream: checked again while it runs. */
export interface LiveOwner {
  user: string;
  /** False once the session is over (logged out, expired, user removed or changed). */
  valid(): boolean;
}

export type Admission = { ok: true } | { ok: false; status: 429 | 503; message: string };

/** One SSE frame (pure). */
export function formatSse(e: LiveEvent): string {
  return `id: ${e.seq}\nevent: ${e.type}\ndata: ${JSON.stringify(e.data)}\n\n`;
}

interface LiveClient {
  res: ServerResponse;
  owner: LiveOwner;
  last: number;
  busy: boolean;
  again: boolean;
}

export class LiveFeed {
  private readonly clients = new Set<LiveClient>();
  private scheduled = false;
  private readonly keepalive: NodeJS.Timeout;
  private readonly sessionCheck: NodeJS.Timeout;
  constructor(
    private readonly store: EventSourceStore,
    private readonly limits: LiveLimits = DEFAULT_LIVE_LIMITS,
    /** A stream we closed: its session ended, or it stalled (metrics). */
    private readonly onClosed: (reason: 'session' | 'stalled') => void = () => undefined,
  ) {
    this.keepalive = setInterval(() => {
      // Not to a connection that has not taken what it has: that would grow its buffer.
      for (const c of this.clients) if (c.res.writableLength === 0) c.res.write(': keepalive\n\n');
    }, KEEPALIVE_MS);
    this.keepalive.unref();
    this.sessionCheck = setInterval(() => this.revalidate(), limits.sessionCheckMs);
    this.sessionCheck.unref();
  }

  /** May `user` open one more stream? */
  admit(user: string): Admission {
    if (this.clients.size >= this.limits.maxClients) {
      return { ok: false, status: 503, message: `the live feed is full (${this.limits.maxClients} connections); try again later` };
    }
    let mine = 0;
    for (const c of this.clients) if (c.owner.user === user) mine++;
    if (mine >= this.limits.maxClientsPerUser) {
      return { ok: false, status: 429, message: `user ${user} already has ${mine} live-feed connections (at most ${this.limits.maxClientsPerUser}); close one first` };
    }
    return { ok: true };
  }

  /** Ends the streams whose session is over (also called right after a logout). */
  revalidate(): void {
    for (const c of this.clients) {
      if (c.owner.valid()) continue;
      this.onClosed('session');
      this.clients.delete(c);
      c.res.end(`event: end\ndata: ${JSON.stringify({ reason: 'session ended (logged out or expired); log in again' })}\n\n`);
    }
  }

  get size(): number {
    return this.clients.size;
  }

  /** Start streaming to `res`. `lastEventId` null = only events from now on. */
  attach(res: ServerResponse, lastEventId: number | null, owner: LiveOwner): void {
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
    const client: LiveClient = { res, owner, last, busy: false, again: false };
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
          if (!this.clients.has(c) || c.res.destroyed) break;
          const events = this.store.eventsAfter(c.last, PAGE);
          if (events.length === 0) break;
          // At most one chunk per write (a page of large events could be megabytes per connection).
          let chunk = '';
          let sent = 0;
          for (const e of events) {
            chunk += formatSse(e);
            sent++;
            if (chunk.length >= CHUNK_BYTES) break;
          }
          const ok = c.res.write(chunk);
          c.last = events[sent - 1]!.seq;
          if (!ok && !(await this.drained(c))) break;
          if (events.length < PAGE && sent === events.length) break;
        }
      } while (c.again && !c.res.destroyed);
    } finally {
      c.busy = false;
    }
  }

  /** Waits for 'drain'; a connection that stays stalled is closed (false). */
  private drained(c: LiveClient): Promise<boolean> {
    return new Promise((resolve) => {
      const done = (ok: boolean) => {
        clearTimeout(timer);
        c.res.off('drain', onDrain);
        c.res.off('close', onClose);
        resolve(ok);
      };
      const onDrain = () => done(true);
      const onClose = () => done(false);
      const timer = setTimeout(() => {
        this.onClosed('stalled');
        this.clients.delete(c);
        c.res.destroy();
        done(false);
      }, this.limits.stallTimeoutMs);
      c.res.once('drain', onDrain);
      c.res.once('close', onClose);
    });
  }

  close(): void {
    clearInterval(this.keepalive);
    clearInterval(this.sessionCheck);
    for (const c of this.clients) c.res.end();
    this.clients.clear();
  }
}
