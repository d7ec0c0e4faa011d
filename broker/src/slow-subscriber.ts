/**
 * Keeps one subscriber that does not read from stalling everyone else.
 *
 * aedes writes a delivery and, when the socket's buffer is full, waits for 'drain' before it
 * calls the delivery back (lib/write.js → client.waitForDrain). mqemitter waits for every
 * subscriber of a message before it finishes the publish, the publisher's next packet waits for
 * that, and at `concurrency` such publishes in flight every message in the broker waits. So one
 * viewer that stopped reading held up delivery to the gateway for the whole drain timeout (30 s).
 *
 * Here a full buffer no longer holds the delivery up: the bytes stay queued in that client's own
 * socket buffer, and the client is disconnected when the buffer passes `maxBufferedBytes` or has
 * not drained for `drainTimeoutMs`. What a persistent session had not acknowledged stays in the
 * store and is sent again when it reconnects; a clean session loses only its own backlog.
 */
import type { Client } from 'aedes';
import type { Duplex } from 'node:stream';

export interface SlowSubscriberLimits {
  /** Bytes a client may have waiting in its socket's write buffer. */
  maxBufferedBytes: number;
  /** How long its buffer may stay full without draining; 0 = no time limit. */
  drainTimeoutMs: number;
  /** Called once per client cut off, with the reason. */
  onCutOff(client: Client, reason: string): void;
}

type DrainCallback = (error: Error | null, client?: Client) => void;

/** Replaces aedes's wait for 'drain' on this client (call before the client connects: preConnect). */
export function neverWaitForDrain(client: Client, limits: SlowSubscriberLimits): void {
  const conn = client.conn as Duplex & { writableLength: number };
  let timer: NodeJS.Timeout | null = null;
  const cutOff = (reason: string) => {
    if (timer) clearTimeout(timer);
    timer = null;
    if (conn.destroyed) return;
    limits.onCutOff(client, reason);
    conn.destroy(new Error(reason));
  };
  const onDrain = () => {
    if (timer) clearTimeout(timer);
    timer = null;
  };
  (client as unknown as { waitForDrain(callback: DrainCallback): void }).waitForDrain = (callback) => {
    if (conn.writableLength > limits.maxBufferedBytes) {
      cutOff(`slow subscriber: ${conn.writableLength} bytes not read (limit ${limits.maxBufferedBytes})`);
      setImmediate(callback, new Error('slow subscriber disconnected'), client);
      return;
    }
    if (!timer && limits.drainTimeoutMs > 0) {
      timer = setTimeout(() => cutOff(`slow subscriber: socket not drained for ${limits.drainTimeoutMs} ms`), limits.drainTimeoutMs);
      timer.unref();
      conn.once('drain', onDrain);
    }
    // Delivered as far as this broker is concerned: the next message (for anyone) may go.
    setImmediate(callback, null, client);
  };
  conn.once('close', onDrain);
}
