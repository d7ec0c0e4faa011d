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
 *
 * What wakes the streams: on SQLite, `notify()` after this process committed events (it is the
 * only writer). On PostgreSQL several gateways write one database, so the feed is driven by the
 * database's event follower (store/postgres/event-follower.ts): `deliver(events)` hands it the
 * events in seq order, each once, and no stream is sent past the last delivered seq (an event
 * whose transaction commits late, behind a hole in the seqs, is not skipped). Then every gateway
 * on one database serves the same feed.
 */
import type { ServerResponse } from 'node:http';
import type { LiveEvent } from '../store/operational.js';

/** Where the events are read: SQLite answers at once, PostgreSQL later (both are awaited). */
export interface EventSourceStore {
  eventsAfter(seq: number, limit: number): LiveEvent[] | Promise<LiveEvent[]>;
  eventRange(): { first: number; last: number } | Promise<{ first: number; last: number }>;
}

/**
 * What drives the feed. `notify` (SQLite): `notify()` after events committed. `follower`
 * (PostgreSQL): only `deliver(events)`, starting after `fromSeq` — the seq the follower starts
 * after (`followPostgresEvents({ fromSeq, onEvents: (e) => live.deliver(e) })`).
 */
export type LiveSource = { kind: 'notify' } | { kind: 'follower'; fromSeq: number };

const PAGE = 500;
const KEEPALIVE_MS = 15_000;
/** Bytes handed to one connection per write; the next waits for 'drain'. */
const CHUNK_BYTES = 64 * 1024;
/** Delivered events kept in memory (follower): a stream that is caught up reads them, not the database. */
const RECENT_EVENTS = 2 * PAGE;

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
  valid(): boolean | Promise<boolean>;
}

export type Admission = { ok: true } | { ok: false; status: 429 | 503; message: string };

/** One SSE frame (pure). */
export function formatSse(e: LiveEvent): string {
  return `id: ${e.seq}\nevent: ${e.type}\ndata: ${JSON.stringify(e.data)}\n\n`;
}

/** The events after `seq` among `recent` (seq order), at most `limit` (pure). */
export function recentAfter(recent: readonly LiveEvent[], seq: number, limit: number): LiveEvent[] {
  let lo = 0;
  let hi = recent.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (recent[mid]!.seq <= seq) lo = mid + 1;
    else hi = mid;
  }
  return recent.slice(lo, lo + limit);
}

interface LiveClient {
  res: ServerResponse;
  owner: LiveOwner;
  last: number;
  /** A read (or the start) is under way: a wake-up only asks for another round. */
  busy: boolean;
  again: boolean;
}

const isPromise = <T>(value: T | Promise<T>): value is Promise<T> => value instanceof Promise;

export class LiveFeed {
  private readonly clients = new Set<LiveClient>();
  private scheduled = false;
  private readonly keepalive: NodeJS.Timeout;
  private readonly sessionCheck: NodeJS.Timeout;
  /** Follower: the last seq delivered (no stream goes past it); null when driven by notify(). */
  private delivered: number | null;
  /** Follower: the latest delivered events, and the seq after which they are complete. */
  private recent: LiveEvent[] = [];
  private recentAfterSeq: number;
  constructor(
    private readonly store: EventSourceStore,
    private readonly limits: LiveLimits = DEFAULT_LIVE_LIMITS,
    /** A stream we closed: its session ended, or it stalled (metrics). */
    private readonly onClosed: (reason: 'session' | 'stalled') => void = () => undefined,
    source: LiveSource = { kind: 'notify' },
  ) {
    if (source.kind === 'follower' && !(Number.isSafeInteger(source.fromSeq) && source.fromSeq >= 0)) {
      throw new Error(`live feed: follower fromSeq must be a seq (an integer >= 0), got ${source.fromSeq}`);
    }
    this.delivered = source.kind === 'follower' ? source.fromSeq : null;
    this.recentAfterSeq = this.delivered ?? 0;
    this.keepalive = setInterval(() => {
      // Not to a connection that has not taken what it has: that would grow its buffer.
      for (const c of this.clients) if (c.res.writableLength === 0) c.res.write(': keepalive\n\n');
    }, KEEPALIVE_MS);
    this.keepalive.unref();
    // A check still answering (a slow database) is not joined by another.
    let checking = false;
    this.sessionCheck = setInterval(() => {
      if (checking) return;
      checking = true;
      void this.revalidate().finally(() => (checking = false));
    }, limits.sessionCheckMs);
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

  /**
   * Ends the streams whose session is over (also called right after a logout). A synchronous
   * check (SQLite) ends them before this returns; the promise settles once every check did.
   * A check that fails (database unreachable) keeps the stream until the next one.
   */
  revalidate(): Promise<void> {
    const end = (c: LiveClient) => {
      if (!this.clients.has(c)) return;
      this.onClosed('session');
      this.clients.delete(c);
      c.res.end(`event: end\ndata: ${JSON.stringify({ reason: 'session ended (logged out or expired); log in again' })}\n\n`);
    };
    const pending: Promise<void>[] = [];
    for (const c of this.clients) {
      let valid: boolean | Promise<boolean>;
      try {
        valid = c.owner.valid();
      } catch {
        continue;
      }
      if (isPromise(valid)) {
        pending.push(valid.then((ok) => (ok ? undefined : end(c)), () => undefined));
      } else if (!valid) {
        end(c);
      }
    }
    return Promise.all(pending).then(() => undefined);
  }

  get size(): number {
    return this.clients.size;
  }

  /**
   * Start streaming to `res`. `lastEventId` null = only events from now on. Counts against the
   * limits at once; the promise settles when the stream has started (or was closed because the
   * events could not be read: the client resumes with Last-Event-ID).
   */
  attach(res: ServerResponse, lastEventId: number | null, owner: LiveOwner): Promise<void> {
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache, no-transform',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    });
    res.write('retry: 2000\n\n');
    // Busy until its start is known: a wake-up meanwhile only asks for a round after it.
    const client: LiveClient = { res, owner, last: 0, busy: true, again: false };
    this.clients.add(client);
    res.on('close', () => this.clients.delete(client));
    const start = (range: { first: number; last: number }): Promise<void> => {
      // Following the database: "now" is what was delivered, not a seq behind a hole.
      let last = lastEventId ?? this.delivered ?? range.last;
      if (lastEventId !== null && lastEventId < range.first - 1) {
        // The events after lastEventId were pruned: the client must reload its state over REST.
        res.write(`event: resync\ndata: ${JSON.stringify({ reason: 'events after your Last-Event-ID are no longer kept', first: range.first })}\n\n`);
        last = range.first - 1;
      }
      client.last = last;
      client.busy = false;
      return this.pump(client);
    };
    let range: ReturnType<EventSourceStore['eventRange']>;
    try {
      range = this.store.eventRange();
    } catch {
      this.fail(client);
      return Promise.resolve();
    }
    // SQLite: started before this returns, as before.
    return isPromise(range) ? range.then(start, () => this.fail(client)) : start(range);
  }

  /** New events were committed by this process (SQLite): deliver them (coalesced per tick). */
  notify(): void {
    // Following the database, the follower says when: a local commit may sit behind a hole.
    if (this.delivered !== null) return;
    this.wake();
  }

  /**
   * The database follower's events (seq order, each once): streams may now go up to the last.
   * Only for a feed built with `{ kind: 'follower' }`.
   */
  deliver(events: readonly LiveEvent[]): void {
    if (this.delivered === null) throw new Error('live feed: deliver() needs a feed built with { kind: "follower" }; this one is driven by notify()');
    for (const e of events) {
      if (e.seq <= this.delivered) continue; // never twice, never backwards
      this.recent.push(e);
      this.delivered = e.seq;
    }
    const excess = this.recent.length - RECENT_EVENTS;
    if (excess > 0) this.recentAfterSeq = this.recent.splice(0, excess).at(-1)!.seq;
    this.wake();
  }

  private wake(): void {
    if (this.scheduled || this.clients.size === 0) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      for (const c of this.clients) void this.pump(c);
    });
  }

  /** The next page after `seq` (SQLite answers at once: no await then). */
  private page(seq: number): LiveEvent[] | Promise<LiveEvent[]> {
    if (this.delivered === null) return this.store.eventsAfter(seq, PAGE);
    const delivered = this.delivered;
    if (seq >= this.recentAfterSeq) return recentAfter(this.recent, seq, PAGE);
    // Far behind (a resume): from the database, never past what the follower delivered.
    return Promise.resolve(this.store.eventsAfter(seq, PAGE)).then((events) => events.filter((e) => e.seq <= delivered));
  }

  /** The events could not be read: close the stream (the client resumes with Last-Event-ID, losing nothing). */
  private fail(c: LiveClient): void {
    this.clients.delete(c);
    c.res.destroy();
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
          const answer = this.page(c.last);
          const events = isPromise(answer) ? await answer : answer;
          if (!this.clients.has(c) || c.res.destroyed) break;
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
    } catch {
      this.fail(c);
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
