/**
 * The live feed (src/api/live.ts) over a store that answers later, as PostgreSQL does: events
 * arrive in seq order, each once, with at most one read per stream at a time however often it
 * is woken; driven by the database follower (`deliver`), no stream goes past the last delivered
 * seq, a caught-up stream is served from memory and a far-behind one from the store; a session
 * check that answers later ends the stream; a read that fails closes it. Real HTTP streams.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { waitFor } from '@checkpoint/test-support';
import { LiveFeed, recentAfter, type EventSourceStore, type LiveOwner } from '../src/api/live.js';
import type { LiveEvent } from '../src/store/operational.js';
import { openSse } from './helpers/world.js';

const limits = { maxClients: 10, maxClientsPerUser: 10, stallTimeoutMs: 30_000, sessionCheckMs: 60_000 };
const event = (seq: number): LiveEvent => ({ seq, type: 'device', data: { n: seq } });
const later = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** A store whose answers come a little later, counting reads and how many overlap. */
function asyncStore(events: LiveEvent[], delayMs = 2) {
  const stats = { reads: 0, inFlight: 0, maxInFlight: 0 };
  const store: EventSourceStore = {
    async eventsAfter(seq, limit) {
      stats.reads++;
      stats.inFlight++;
      stats.maxInFlight = Math.max(stats.maxInFlight, stats.inFlight);
      try {
        await later(delayMs);
        return events.filter((e) => e.seq > seq).slice(0, limit);
      } finally {
        stats.inFlight--;
      }
    },
    async eventRange() {
      await later(delayMs);
      return { first: events[0]?.seq ?? 1, last: events.at(-1)?.seq ?? 0 };
    },
  };
  return { store, stats };
}

const servers: Server[] = [];
const feeds: LiveFeed[] = [];
afterEach(async () => {
  for (const feed of feeds.splice(0)) feed.close();
  await Promise.all(servers.splice(0).map((s) => new Promise((resolve) => s.close(resolve))));
});

/** An HTTP server whose every request becomes a stream of `feed` (Last-Event-ID honoured). */
async function serve(feed: LiveFeed, owner: LiveOwner = { user: 'guard', valid: () => true }): Promise<string> {
  feeds.push(feed);
  const server = createServer((req, res) => {
    const header = req.headers['last-event-id'];
    void feed.attach(res, typeof header === 'string' ? Number(header) : null, owner);
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
}

const seqs = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

describe('the live feed over a store that answers later', () => {
  it('woken often while events are appended: every event once, in order, one read at a time', async () => {
    const events: LiveEvent[] = [];
    const { store, stats } = asyncStore(events);
    const feed = new LiveFeed(store, limits);
    const url = await serve(feed);
    const sse = openSse(url, { 'last-event-id': '0' });
    await waitFor(() => feed.size === 1, { what: 'stream attached' });
    // A first burst longer than a page (500), then small ones, each woken several times.
    let seq = 0;
    for (const burst of [1200, ...Array.from({ length: 30 }, () => 7)]) {
      for (let i = 0; i < burst; i++) events.push(event(++seq));
      feed.notify();
      await later(0);
      feed.notify();
      feed.notify();
    }
    await sse.waitFor((e) => e.length >= seq, `${seq} events`);
    expect(sse.events.map((e) => e.id)).toEqual(seqs(1, seq));
    expect(stats.maxInFlight).toBe(1);
    sse.close();
  });

  it('starts a stream without Last-Event-ID at the newest event', async () => {
    const events = seqs(1, 5).map(event);
    const feed = new LiveFeed(asyncStore(events).store, limits);
    const sse = openSse(await serve(feed));
    await waitFor(() => feed.size === 1, { what: 'stream attached' });
    events.push(event(6));
    feed.notify();
    await sse.waitFor((e) => e.length >= 1, 'the new event');
    expect(sse.events.map((e) => e.id)).toEqual([6]);
    sse.close();
  });
});

describe('the live feed driven by the database follower', () => {
  it('never goes past the last delivered seq; duplicates and local notify() change nothing; caught-up streams read memory', async () => {
    // The database already holds 1..10 (7..10 perhaps behind a hole the follower waits on).
    const events = seqs(1, 10).map(event);
    const { store, stats } = asyncStore(events);
    const feed = new LiveFeed(store, limits, undefined, { kind: 'follower', fromSeq: 0 });
    feed.deliver(seqs(1, 3).map(event));
    const sse = openSse(await serve(feed), { 'last-event-id': '0' });
    await sse.waitFor((e) => e.length >= 3, 'events 1..3');
    feed.notify();
    feed.deliver(seqs(2, 6).map(event));
    await sse.waitFor((e) => e.length >= 6, 'events up to 6');
    feed.notify();
    expect(sse.events.map((e) => e.id)).toEqual(seqs(1, 6));
    feed.deliver([event(5), ...seqs(7, 10).map(event)]);
    await sse.waitFor((e) => e.length >= 10, 'events up to 10');
    expect(sse.events.map((e) => e.id)).toEqual(seqs(1, 10));
    expect(stats.reads).toBe(0);
    sse.close();
  });

  it('a stream far behind reads the store, up to the last delivered seq, then follows', async () => {
    const events = seqs(1, 1300).map(event);
    const { store, stats } = asyncStore(events);
    const feed = new LiveFeed(store, limits, undefined, { kind: 'follower', fromSeq: 0 });
    feed.deliver(seqs(1, 1200).map(event)); // more than is kept in memory
    const sse = openSse(await serve(feed), { 'last-event-id': '0' });
    await sse.waitFor((e) => e.length >= 1200, '1200 events');
    // 1201..1300 would have come in the same page and write as 1001..1200.
    expect(sse.events.map((e) => e.id)).toEqual(seqs(1, 1200));
    expect(stats.reads).toBeGreaterThan(0);
    feed.deliver(seqs(1201, 1300).map(event));
    await sse.waitFor((e) => e.length >= 1300, '1300 events');
    expect(sse.events.map((e) => e.id)).toEqual(seqs(1, 1300));
    expect(stats.maxInFlight).toBe(1);
    sse.close();
  });

  it('a stream resuming from before where the follower started reads the store only up to that seq', async () => {
    // The gateway started following at 100; 101..300 are in the database but not yet delivered.
    const events = seqs(1, 300).map(event);
    const feed = new LiveFeed(asyncStore(events).store, limits, undefined, { kind: 'follower', fromSeq: 100 });
    const sse = openSse(await serve(feed), { 'last-event-id': '40' });
    await sse.waitFor((e) => e.length >= 60, 'events 41..100');
    expect(sse.events.map((e) => e.id)).toEqual(seqs(41, 100)); // 101..300 were in the same page
    feed.deliver(seqs(101, 300).map(event));
    await sse.waitFor((e) => e.length >= 260, 'events up to 300');
    expect(sse.events.map((e) => e.id)).toEqual(seqs(41, 300));
    sse.close();
  });

  it('a stream without Last-Event-ID starts at the last delivered seq, not the newest in the store', async () => {
    const events = seqs(1, 8).map(event);
    const feed = new LiveFeed(asyncStore(events).store, limits, undefined, { kind: 'follower', fromSeq: 0 });
    feed.deliver(seqs(1, 4).map(event));
    const sse = openSse(await serve(feed));
    await waitFor(() => feed.size === 1, { what: 'stream attached' });
    feed.deliver(seqs(5, 8).map(event));
    await sse.waitFor((e) => e.length >= 4, 'events 5..8');
    expect(sse.events.map((e) => e.id)).toEqual(seqs(5, 8));
    sse.close();
  });

  it('refuses deliver() on a notify-driven feed and a bad fromSeq, naming what is wrong', () => {
    const feed = new LiveFeed(asyncStore([]).store, limits);
    feeds.push(feed);
    expect(() => feed.deliver([event(1)])).toThrow(/deliver\(\) needs a feed built with \{ kind: "follower" \}/);
    expect(() => new LiveFeed(asyncStore([]).store, limits, undefined, { kind: 'follower', fromSeq: -1 })).toThrow(/fromSeq must be a seq/);
  });

  it('recentAfter finds the events after a seq among kept ones with holes', () => {
    const kept = [1, 2, 4, 7, 8].map(event);
    expect(recentAfter(kept, 0, 10).map((e) => e.seq)).toEqual([1, 2, 4, 7, 8]);
    expect(recentAfter(kept, 3, 10).map((e) => e.seq)).toEqual([4, 7, 8]);
    expect(recentAfter(kept, 4, 1).map((e) => e.seq)).toEqual([7]);
    expect(recentAfter(kept, 8, 10)).toEqual([]);
  });
});

describe('sessions and failures', () => {
  it('a session check that answers later ends the stream when the session is over', async () => {
    let loggedIn = true;
    const feed = new LiveFeed(asyncStore([]).store, limits);
    const sse = openSse(await serve(feed, { user: 'guard', valid: async () => (await later(2), loggedIn) }));
    await waitFor(() => feed.size === 1, { what: 'stream attached' });
    await feed.revalidate();
    expect(feed.size).toBe(1);
    loggedIn = false;
    await feed.revalidate();
    expect(feed.size).toBe(0);
    await sse.waitFor((e) => e.some((x) => x.event === 'end'), 'end event');
    await sse.done;
  });

  it('a read that fails closes the stream (the client resumes with Last-Event-ID)', async () => {
    const store: EventSourceStore = {
      eventsAfter: () => Promise.reject(new Error('connection terminated')),
      eventRange: async () => ({ first: 1, last: 3 }),
    };
    const feed = new LiveFeed(store, limits);
    const sse = openSse(await serve(feed), { 'last-event-id': '0' });
    await expect(sse.done).rejects.toThrow();
    expect(feed.size).toBe(0);
  });
});
