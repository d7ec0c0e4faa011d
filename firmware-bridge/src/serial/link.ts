/**
 * One end of a serial link: frames in and out, acknowledgements, retransmission and duplicate
 * detection (PROTOCOL.md, "Reliability"). Transport-agnostic: bytes go out through `write` and
 * come in through `feed`, so the same code runs on the bridge and in the robot simulator.
 *
 * Reliable messages are stop-and-wait: one in flight, retransmitted with the same seq every
 * `retransmitMs` until ACKed (or NACKed, or `maxRetries` is used up). So a repeated reliable seq
 * is a retransmission (ACK again, do not process twice). Unreliable messages (status, heartbeat)
 * older than the last one seen are dropped as out of order.
 */
import { EventEmitter } from 'node:events';
import { encodeFrame, FLAG_ACK_REQUIRED, FLAG_RETRANSMIT, FrameDecoder, type DecoderStats } from './framing.js';
import { decodeMessage, encodeMessage, MessageError, MSG, NACK_REASONS, RELIABLE, type Message } from './messages.js';

export interface LinkStats {
  framesSent: number;
  messagesReceived: number;
  retransmits: number;
  duplicates: number;
  outOfOrder: number;
  undecodable: number;
  nacked: number;
  gaveUp: number;
  decoder: DecoderStats;
}

export interface LinkOptions {
  retransmitMs?: number;
  maxRetries?: number;
  /**
   * Checked for every reliable message before it is acknowledged: a reason refuses it (NACK
   * `rejected` with the reason; not processed, emitted as 'refused'). The bridge refuses a HELLO
   * naming another robot, so an impostor is never acknowledged.
   */
  refuse?: (message: Message) => string | null;
}

export class LinkError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'LinkError';
  }
}

interface Pending {
  message: Message;
  resolve: () => void;
  reject: (err: Error) => void;
  seq?: number;
  tries?: number;
  timer?: NodeJS.Timeout;
}

export interface SerialLinkEvents {
  message: [Message];
  invalid: [Error];
  refused: [Message, string];
}

export class SerialLink extends EventEmitter<SerialLinkEvents> {
  private readonly decoder = new FrameDecoder();
  private seq = 0;
  private readonly queue: Pending[] = [];
  private inFlight: Pending | null = null;
  private lastReliableSeq: number | null = null;
  private lastUnreliableSeq: number | null = null;
  private closed = false;
  private readonly retransmitMs: number;
  private readonly maxRetries: number;
  private readonly refuse: ((message: Message) => string | null) | undefined;
  /** Date.now() of the last good frame. */
  lastReceivedAt = 0;
  readonly stats: LinkStats;

  constructor(
    private readonly write: (bytes: Buffer) => void,
    options: LinkOptions = {},
  ) {
    super();
    this.retransmitMs = options.retransmitMs ?? 250;
    this.maxRetries = options.maxRetries ?? 8;
    this.refuse = options.refuse;
    this.stats = { framesSent: 0, messagesReceived: 0, retransmits: 0, duplicates: 0, outOfOrder: 0, undecodable: 0, nacked: 0, gaveUp: 0, decoder: this.decoder.stats };
  }

  /** Unreliable messages go out at once; reliable ones resolve when acknowledged. */
  send(message: Message): Promise<void> {
    if (this.closed) return Promise.reject(new LinkError('link closed'));
    if (!RELIABLE.has(message.type)) {
      this.writeFrame(message, this.nextSeq(), 0);
      return Promise.resolve();
    }
    return new Promise((resolve, reject) => {
      this.queue.push({ message, resolve, reject });
      this.pump();
    });
  }

  /** Bytes from the wire, in any chunking. */
  feed(chunk: Uint8Array): void {
    for (const frame of this.decoder.push(chunk)) {
      this.lastReceivedAt = Date.now();
      let message: Message;
      try {
        message = decodeMessage(frame.type, frame.payload);
      } catch (err) {
        this.stats.undecodable += 1;
        if (frame.flags & FLAG_ACK_REQUIRED) {
          const unknown = (err as Error).message.startsWith('unknown message type');
          this.writeFrame({ type: 'nack', seq: frame.seq, reason: unknown ? NACK_REASONS.unknownType : NACK_REASONS.malformed, text: (err as Error).message.slice(0, 200) }, this.nextSeq(), 0);
        }
        this.emit('invalid', err instanceof MessageError ? err : new MessageError(String(err)));
        continue;
      }
      this.receive(message, frame.seq, frame.flags);
    }
  }

  private receive(message: Message, seq: number, flags: number) {
    if (message.type === 'ack' || message.type === 'nack') {
      const p = this.inFlight;
      if (!p || p.seq !== message.seq) return; // a late ACK of something already settled
      clearTimeout(p.timer);
      this.inFlight = null;
      if (message.type === 'ack') p.resolve();
      else {
        this.stats.nacked += 1;
        p.reject(new LinkError(`${p.message.type} refused by the other end: ${message.text || `reason ${message.reason}`}`));
      }
      this.pump();
      return;
    }
    const refusal = flags & FLAG_ACK_REQUIRED ? (this.refuse?.(message) ?? null) : null;
    if (refusal !== null) {
      this.writeFrame({ type: 'nack', seq, reason: NACK_REASONS.rejected, text: refusal.slice(0, 200) }, this.nextSeq(), 0);
      this.emit('refused', message, refusal);
      return;
    }
    if (message.type === 'hello') {
      // The other end (re)started: its sequence numbers start over.
      this.lastReliableSeq = null;
      this.lastUnreliableSeq = null;
    }
    if (flags & FLAG_ACK_REQUIRED) {
      this.writeFrame({ type: 'ack', seq }, this.nextSeq(), 0);
      if (this.lastReliableSeq === seq && message.type !== 'hello') {
        this.stats.duplicates += 1;
        return;
      }
      this.lastReliableSeq = seq;
    } else if (this.lastUnreliableSeq !== null) {
      const delta = (seq - this.lastUnreliableSeq) & 0xff;
      if (delta === 0) {
        this.stats.duplicates += 1;
        return;
      }
      if (delta >= 128) {
        this.stats.outOfOrder += 1;
        return;
      }
      this.lastUnreliableSeq = seq;
    } else {
      this.lastUnreliableSeq = seq;
    }
    this.stats.messagesReceived += 1;
    this.emit('message', message);
  }

  private nextSeq(): number {
    const s = this.seq;
    this.seq = (this.seq + 1) & 0xff;
    return s;
  }

  private writeFrame(message: Message, seq: number, flags: number) {
    const { type, payload } = encodeMessage(message);
    this.stats.framesSent += 1;
    try {
      this.write(encodeFrame({ type, seq, flags, payload }));
    } catch {
      // The port went away; retransmission or the link watchdog deals with it.
    }
  }

  private pump() {
    if (this.inFlight || this.closed) return;
    const p = this.queue.shift();
    if (!p) return;
    this.inFlight = p;
    p.seq = this.nextSeq();
    p.tries = 0;
    const attempt = () => {
      if (this.inFlight !== p) return;
      if (p.tries! > this.maxRetries) {
        this.inFlight = null;
        this.stats.gaveUp += 1;
        p.reject(new LinkError(`${p.message.type} not acknowledged after ${this.maxRetries} retransmissions`));
        this.pump();
        return;
      }
      if (p.tries! > 0) this.stats.retransmits += 1;
      this.writeFrame(p.message, p.seq!, FLAG_ACK_REQUIRED | (p.tries! > 0 ? FLAG_RETRANSMIT : 0));
      p.tries! += 1;
      p.timer = setTimeout(attempt, this.retransmitMs);
    };
    attempt();
  }

  /** Drops everything queued (rejecting the senders) and stops timers. */
  close(): void {
    this.closed = true;
    const all = [...(this.inFlight ? [this.inFlight] : []), ...this.queue.splice(0)];
    this.inFlight = null;
    for (const p of all) {
      clearTimeout(p.timer);
      p.reject(new LinkError('link closed'));
    }
  }
}

export { MSG };
