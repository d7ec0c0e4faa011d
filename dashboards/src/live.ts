/**
 * The gateway's live feed (GET /api/live, Server-Sent Events) over fetch + ReadableStream, so the
 * token goes in the Authorization header rather than the URL (EventSource cannot send headers).
 * It resumes with Last-Event-ID after any break — network, gateway restart — with exponential
 * backoff and jitter, so nothing is missed and nothing arrives twice (the gateway replays exactly
 * the events after that id). A `resync` event means the gap is older than the gateway keeps:
 * listeners reload their state over REST.
 */
import { createSseParser } from './sse.js';

export type LiveStatus = 'connecting' | 'live' | 'reconnecting' | 'unauthorized';

export interface LiveEventOf {
  type: string;
  id: number | null;
  data: unknown;
}

type Listener = (e: LiveEventOf) => void;

export interface LiveOptions {
  url?: string;
  /** Read at every (re)connect, so a renewed session is used. */
  token: () => string;
  minDelayMs?: number;
  maxDelayMs?: number;
  onStatus?: (status: LiveStatus) => void;
  onUnauthorized?: (token: string) => void;
}

/** Delay before reconnect attempt `n` (0-based): doubling, capped, with ±25 % jitter (pure but for the random). */
export function backoffMs(attempt: number, minMs: number, maxMs: number, random = Math.random): number {
  const base = Math.min(maxMs, minMs * 2 ** Math.min(attempt, 20));
  return Math.round(base * (0.75 + random() * 0.5));
}

export class LiveConnection {
  private readonly listeners = new Map<string, Set<Listener>>();
  private lastId: string | null = null;
  private abort: AbortController | null = null;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private attempt = 0;
  private stopped = false;
  status: LiveStatus = 'connecting';

  constructor(private readonly options: LiveOptions) {}

  /** Subscribe to one event type (`alert`, `screening`, `device`, `robot`, `task`, `resync`, `open`). */
  on(type: string, listener: Listener): () => void {
    let set = this.listeners.get(type);
    if (!set) this.listeners.set(type, (set = new Set()));
    set.add(listener);
    return () => set.delete(listener);
  }

  start(): void {
    this.stopped = false;
    void this.connect();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.abort?.abort();
  }

  private setStatus(status: LiveStatus): void {
    this.status = status;
    this.options.onStatus?.(status);
  }

  private emit(type: string, id: number | null, data: unknown): void {
    for (const l of this.listeners.get(type) ?? []) {
      try {
        l({ type, id, data });
      } catch (err) {
        console.error(`live listener for ${type} failed`, err);
      }
    }
  }

  private async connect(): Promise<void> {
    if (this.stopped) return;
    const abort = (this.abort = new AbortController());
    const token = this.options.token();
    try {
      const res = await fetch(this.options.url ?? '/api/live', {
        headers: {
          authorization: `Bearer ${token}`,
          accept: 'text/event-stream',
          ...(this.lastId !== null ? { 'last-event-id': this.lastId } : {}),
        },
        cache: 'no-store',
        signal: abort.signal,
      });
      if (res.status === 401) {
        this.setStatus('unauthorized');
        this.options.onUnauthorized?.(token);
        return;
      }
      if (!res.ok || !res.body) throw new Error(`live feed: HTTP ${res.status}`);
      this.attempt = 0;
      this.setStatus('live');
      // Listeners reload their REST state on `open` (first connect) so nothing falls between.
      this.emit('open', null, { resumed: this.lastId !== null });
      const parser = createSseParser(this.lastId ?? '');
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        for (const m of parser.push(value)) {
          if (m.hasId) this.lastId = m.lastEventId;
          let data: unknown = m.data;
          try {
            data = JSON.parse(m.data);
          } catch {
            // keep the text
          }
          this.emit(m.event, m.hasId ? Number(m.lastEventId) : null, data);
        }
      }
      throw new Error('live feed ended');
    } catch (err) {
      if (this.stopped) return;
      if ((err as Error).name !== 'AbortError') console.warn('live feed interrupted; reconnecting', (err as Error).message);
      this.setStatus('reconnecting');
      const delay = backoffMs(this.attempt++, this.options.minDelayMs ?? 500, this.options.maxDelayMs ?? 15_000);
      this.timer = setTimeout(() => void this.connect(), delay);
    }
  }
}
