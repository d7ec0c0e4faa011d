/**
 * Level persistence whose outgoing queue (QoS 1/2 messages for persistent sessions) lives in
 * memory and is written in batches, instead of a chain of LevelDB reads and writes per message.
 *
 * aedes-persistence-level does, per message for a persistent subscriber: a put on enqueue; on
 * delivery a get, then a put, then another put (outgoingUpdate: three thread-pool round trips in
 * a row before the message may be written to the socket); on PUBACK a get, then a batch; and a
 * get for every PUBACK of a clean session too. In the broker bench's CPU profile classic-level's
 * put/get/batch were the largest cost (4.4 s of 11.4 s), and the wrapper that kept enqueues in
 * order made every publish wait for the previous one's put. Here (BatchWriter):
 * - a newly queued message (the write a publisher's PUBACK depends on) goes into the next group
 *   commit: one LevelDB batch for all of the same moment; `durable()` resolves once it is written
 *   (in LevelDB's log, as a put was), and durable-acks.ts holds the PUBACK until then;
 * - the later writes (message id on delivery, delete after the subscriber's PUBACK) only save a
 *   redelivery after a crash: written behind, each 25-50 ms after it was made, in one batch per
 *   tick; a message id assigned and cleared within that time is never written;
 * - all writes are visible at once to this process, and the reads those steps need (which message
 *   id a queued message has, which message an id stands for) are answered from memory (the writes
 *   not yet on disk, and a bounded mirror of what this process wrote); only a miss (queued before
 *   a restart, or past the bound) reads the disk, and a message id nobody stored (every PUBACK of
 *   a clean session) reads nothing.
 * Values and keys are exactly aedes-persistence-level's (msgpack), so the rest of it
 * (outgoingStream, data written by earlier versions) is unchanged. close() writes everything.
 *
 * What a hard kill (kill -9) can lose: nothing a publisher got a PUBACK for; it can redeliver
 * what a subscriber acknowledged in the last 50 ms. Power loss: what LevelDB had not fsynced.
 *
 * Order: enqueues take effect in the order aedes makes them (synchronously, in counter order),
 * so a connected persistent subscriber no longer sees one overtake another (before, concurrent
 * stores finished out of order and the overtaken messages were held back until it reconnected;
 * the broker also turns aedes' duplicate check off, see broker.ts). Batches are written one at a
 * time, in the order their writes were made.
 */
import Packet from 'aedes-packet';
import AsyncLevelPersistence from 'aedes-persistence-level/asyncPersistence.js';
import msgpack from 'msgpack-lite';
import { Readable } from 'node:stream';

/** The part of a `level` database this uses. */
export interface LevelStore {
  get(key: string, options: { valueEncoding: 'buffer' }): Promise<Buffer | undefined>;
  keys(options: { gte: string; lt: string }): AsyncIterable<string>;
  /** A chained batch: cheaper than an array of operations, which abstract-level clones and checks op by op (2-3 µs per write measured). */
  batch(): {
    put(key: string, value: Buffer, options: { valueEncoding: 'buffer' }): unknown;
    del(key: string): unknown;
    write(): Promise<void>;
  };
}

interface OutgoingPacket {
  payload?: unknown;
  brokerId: string;
  brokerCounter: number;
  messageId?: number;
}

const BUFFER = { valueEncoding: 'buffer' } as const;
/**
 * Outgoing entries kept in memory: enough for every session's in-flight window, bounded in bytes
 * too since a snapshot (a face image) is ~30 KB. Past the bound, entries are read from disk.
 */
const MIRROR_LIMIT = 20_000;
const MIRROR_LIMIT_BYTES = 16 * 1024 * 1024;
/** What an entry costs in memory, roughly: its payload plus the packet's other fields and the key. */
const entryBytes = (entry: Entry) => (Buffer.isBuffer(entry.packet.payload) ? entry.packet.payload.length : 0) + 256;

// Keys exactly as aedes-persistence-level 9 writes them.
const padId = (id: number | undefined) => String(id).padStart(16, '0');
const outgoingByClientKey = (clientId: string) => `outgoing:${encodeURIComponent(clientId)}:`;
const outgoingKey = (clientId: string, brokerId: string, brokerCounter: number) => `${outgoingByClientKey(clientId)}${brokerId}:${padId(brokerCounter)}`;
const ID_PREFIX = 'outgoing-id:';
const ID_PREFIX_END = 'outgoing-id;';
const outgoingByIdKey = (clientId: string, messageId: number | undefined) => `${ID_PREFIX}${encodeURIComponent(clientId)}:${padId(messageId)}`;

/** A stored outgoing packet: encoded (msgpack, as aedes-persistence-level stores it) only when written. */
interface Entry {
  packet: OutgoingPacket;
  encoded?: Buffer;
}
const encoded = (entry: Entry) => (entry.encoded ??= msgpack.encode(entry.packet));

type Write = { key: string; entry: Entry | null; created?: boolean };

/** When a batch of writes that something waits on (a publisher's PUBACK) goes to disk. */
export interface CommitOptions {
  /** A batch closes this long after its first write at the latest (while publishes keep coming or another batch is being written). */
  maxDelayMs: number;
  /** A batch closes at once when it holds this many writes. */
  maxOps: number;
}
export const DEFAULT_COMMIT: CommitOptions = { maxDelayMs: 2, maxOps: 1000 };

/**
 * Writes that only save work (updates and deletes after a delivery: at worst a redelivery after
 * a crash) reach the disk between AGE_MS and 2 x AGE_MS after they were made: long enough that a
 * message delivered and acknowledged meanwhile costs one delete only, short enough to bound the
 * redeliveries a hard kill causes.
 */
const AGE_MS = 25;

/** Writes going to disk in one LevelDB batch; `committed` settles once it is written. */
interface Batch {
  writes: Map<string, Entry | null>;
  committed: Promise<void>;
  resolve(): void;
  reject(error: Error): void;
}

function newBatch(): Batch {
  let resolve!: () => void;
  let reject!: (error: Error) => void;
  const committed = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  committed.catch(() => undefined); // a failed batch is reported by onError; waiting on it is optional
  return { writes: new Map(), committed, resolve, reject };
}

const noop = () => undefined;

/**
 * Group commit plus write-behind, one LevelDB batch written at a time, in the order the writes
 * were made. Every write is visible to reads (`lookup`) at once.
 * - Durable writes (`writeDurable`: a new queued message) join the open batch, which closes at
 *   the end of the first event-loop turn that brought it no write (no more publishes arriving)
 *   when the disk is idle, else when the batch being written is done; at the latest after
 *   `maxDelayMs`, or at once at `maxOps` writes. The returned promise resolves once that batch is
 *   written (as a `put` was before: in LevelDB's log, not fsynced).
 * - Other writes (`write`) wait in two generations (`#young`, made since the last tick; `#old`,
 *   made in the tick before) and each tick writes `#old`. A key that a write-behind created and
 *   deleted before it was written costs no write at all; a durable put is never cancelled.
 */
class BatchWriter {
  #young = new Map<string, Entry | null>();
  #old = new Map<string, Entry | null>();
  /** Keys waiting in #young or #old that did not exist before their put: deleting them needs no disk write. */
  #created = new Set<string>();
  #tickTimer: NodeJS.Timeout | undefined;
  /** Durable writes gathering for the next batch. */
  #open: Batch | undefined;
  #openTimer: NodeJS.Timeout | undefined;
  #openImmediate: NodeJS.Immediate | undefined;
  /** Whether the open batch gained a write since the last end-of-turn check. */
  #grew = false;
  /** Closed batches, oldest first, then the one being written. */
  #queue: Batch[] = [];
  #writing: Batch | undefined;
  /** Settles when the last durable write made so far is on disk. */
  #lastDurable: Promise<void> = Promise.resolve();

  constructor(
    private readonly db: LevelStore,
    private readonly onError: (error: Error) => void,
    private readonly commit: CommitOptions,
  ) {}

  /** A write not yet on disk for `key`: an entry, null (deleted), or undefined (none). */
  lookup(key: string): Entry | null | undefined {
    // Newest first; one hash lookup per place (null, a delete, is an answer too).
    const young = this.#young.get(key);
    if (young !== undefined) return young;
    const old = this.#old.get(key);
    if (old !== undefined) return old;
    const open = this.#open?.writes.get(key);
    if (open !== undefined) return open;
    for (let i = this.#queue.length - 1; i >= 0; i--) {
      const queued = this.#queue[i]!.writes.get(key);
      if (queued !== undefined) return queued;
    }
    return this.#writing?.writes.get(key);
  }

  /** Writes whose loss in a crash would lose a message: on disk when the promise resolves. */
  writeDurable(writes: Write[]): Promise<void> {
    const batch = (this.#open ??= newBatch());
    for (const w of writes) batch.writes.set(w.key, w.entry);
    this.#lastDurable = batch.committed;
    this.#grew = true;
    if (batch.writes.size >= this.commit.maxOps) {
      this.#closeOpen();
    } else if (!this.#openTimer) {
      this.#openTimer = setTimeout(() => this.#closeOpen(), this.commit.maxDelayMs);
      this.#openImmediate = setImmediate(this.#closeWhenQuiet);
    }
    return batch.committed;
  }

  /**
   * At the end of each event-loop turn: a batch that gained no write in it (no more publishes
   * arriving) goes to an idle disk at once; one still growing waits a turn more, up to maxDelayMs.
   */
  #closeWhenQuiet = () => {
    this.#openImmediate = undefined;
    if (!this.#open) return;
    if (this.#grew) {
      this.#grew = false;
      this.#openImmediate = setImmediate(this.#closeWhenQuiet);
    } else if (!this.#writing) {
      this.#closeOpen();
    }
  };

  /** Settles when every durable write made so far is on disk (rejects if its batch failed). */
  durable(): Promise<void> {
    return this.#lastDurable;
  }

  write(writes: Write[]): void {
    for (const w of writes) {
      const waiting = this.#young.has(w.key) || this.#old.has(w.key);
      this.#old.delete(w.key);
      if (w.entry === null && this.#created.has(w.key)) {
        this.#young.delete(w.key);
        this.#created.delete(w.key);
        continue;
      }
      if (w.created && !waiting && this.lookup(w.key) === undefined) this.#created.add(w.key);
      this.#young.set(w.key, w.entry);
    }
    this.#tickTimer ??= setTimeout(() => this.#tick(), AGE_MS);
  }

  /** Resolves when every write made so far is on disk. */
  async flushed(): Promise<void> {
    clearTimeout(this.#tickTimer);
    this.#tickTimer = undefined;
    this.#closeOpen();
    if (this.#young.size + this.#old.size > 0) {
      const all = new Map([...this.#old, ...this.#young]);
      this.#young = new Map();
      this.#old = new Map();
      this.#created.clear();
      this.#enqueue(Object.assign(newBatch(), { writes: all }));
    }
    const last = this.#queue.at(-1) ?? this.#writing;
    if (last) await last.committed.catch(noop);
  }

  #closeOpen(): void {
    clearTimeout(this.#openTimer);
    this.#openTimer = undefined;
    if (this.#openImmediate) clearImmediate(this.#openImmediate);
    this.#openImmediate = undefined;
    const batch = this.#open;
    if (!batch) return;
    this.#open = undefined;
    this.#enqueue(batch);
  }

  #tick(): void {
    this.#tickTimer = undefined;
    if (this.#old.size > 0) {
      // Durable writes made before these go first.
      this.#closeOpen();
      const batch = this.#old;
      for (const key of batch.keys()) this.#created.delete(key);
      this.#enqueue(Object.assign(newBatch(), { writes: batch }));
    }
    this.#old = this.#young;
    this.#young = new Map();
    if (this.#old.size > 0) this.#tickTimer = setTimeout(() => this.#tick(), AGE_MS);
  }

  #enqueue(batch: Batch): void {
    this.#queue.push(batch);
    this.#next();
  }

  #next(): void {
    if (this.#writing) return;
    const batch = this.#queue.shift();
    if (!batch) {
      // The disk is idle: durable writes waiting for it go now.
      if (this.#open) this.#closeOpen();
      return;
    }
    this.#writing = batch;
    const chained = this.db.batch();
    for (const [key, entry] of batch.writes) {
      if (entry) chained.put(key, encoded(entry), BUFFER);
      else chained.del(key);
    }
    chained.write().then(
      () => this.#done(batch),
      (error: Error) => {
        this.onError(error);
        this.#done(batch, error);
      },
    );
  }

  #done(batch: Batch, error?: Error): void {
    this.#writing = undefined;
    if (error) batch.reject(error);
    else batch.resolve();
    if (this.#lastDurable === batch.committed) this.#lastDurable = Promise.resolve();
    this.#next();
  }
}

export class OrderedLevelPersistence extends AsyncLevelPersistence {
  readonly #db: LevelStore;
  readonly #writer: BatchWriter;
  /** Outgoing entries this process wrote and has not deleted, bounded. */
  readonly #mirror = new Map<string, Entry>();
  #mirrorBytes = 0;
  /**
   * Message-id keys that may be on disk without being in the mirror (found at start, or written
   * past the mirror's bound). Any other message id has no entry, so a PUBACK (of a clean session
   * above all, which never stores one) is answered without reading the disk.
   */
  readonly #unmirroredIdKeys = new Set<string>();

  /** `onWriteError`: a batch could not be written (its messages survive only in memory). */
  constructor(db: LevelStore, onWriteError: (error: Error) => void, commit: CommitOptions = DEFAULT_COMMIT) {
    super(db);
    this.#db = db;
    this.#writer = new BatchWriter(db, onWriteError, commit);
  }

  /**
   * Settles once every message queued so far (for a persistent session) is on disk: a publisher's
   * PUBACK waits for this (see durable-acks.ts). Rejects if the batch holding the last one failed.
   */
  durable(): Promise<void> {
    return this.#writer.durable();
  }

  override async setup(broker: unknown): Promise<void> {
    await super.setup(broker);
    for await (const key of this.#db.keys({ gte: ID_PREFIX, lt: ID_PREFIX_END })) this.#unmirroredIdKeys.add(key);
  }

  /** Whether `key` has no entry anywhere (queued, mirrored or on disk) — so far as is known without reading. */
  #known(key: string): boolean {
    return this.#writer.lookup(key) !== undefined || this.#mirror.has(key) || this.#unmirroredIdKeys.has(key) || !key.startsWith(ID_PREFIX);
  }

  async #read(key: string): Promise<Entry | undefined> {
    const pending = this.#writer.lookup(key);
    if (pending !== undefined) return pending ?? undefined;
    const mirrored = this.#mirror.get(key);
    if (mirrored) return mirrored;
    if (key.startsWith(ID_PREFIX) && !this.#unmirroredIdKeys.has(key)) return undefined;
    const stored = await this.#db.get(key, BUFFER);
    return stored && { packet: msgpack.decode(stored) as OutgoingPacket, encoded: stored };
  }

  /** `durable`: the writes go into the next group commit (new queued messages); else write-behind. */
  #write(writes: Write[], durable = false): void {
    for (const w of writes) {
      const previous = this.#mirror.get(w.key);
      if (previous) {
        this.#mirror.delete(w.key);
        this.#mirrorBytes -= entryBytes(previous);
      }
      if (w.entry === null) {
        this.#unmirroredIdKeys.delete(w.key);
      } else if (this.#mirror.size < MIRROR_LIMIT && this.#mirrorBytes + entryBytes(w.entry) <= MIRROR_LIMIT_BYTES) {
        this.#mirror.set(w.key, w.entry);
        this.#mirrorBytes += entryBytes(w.entry);
      } else if (w.key.startsWith(ID_PREFIX)) {
        this.#unmirroredIdKeys.add(w.key);
      }
    }
    if (durable) void this.#writer.writeDurable(writes);
    else this.#writer.write(writes);
  }

  override async outgoingEnqueue(sub: { clientId: string }, packet: OutgoingPacket): Promise<void> {
    const stored = new Packet(packet) as OutgoingPacket;
    this.#write([{ key: outgoingKey(sub.clientId, stored.brokerId, stored.brokerCounter), entry: { packet: stored } }], true);
  }

  override async outgoingEnqueueCombi(subs: Array<{ clientId: string }> | undefined, packet: OutgoingPacket): Promise<unknown> {
    if (!subs || subs.length === 0) return packet;
    const entry = { packet: new Packet(packet) as OutgoingPacket };
    this.#write(
      subs.map((sub) => ({ key: outgoingKey(sub.clientId, entry.packet.brokerId, entry.packet.brokerCounter), entry })),
      true,
    );
    return undefined;
  }

  override async outgoingUpdate(client: { id: string }, packet: OutgoingPacket): Promise<void> {
    if (!packet.brokerId) {
      const known = await this.#read(outgoingByIdKey(client.id, packet.messageId));
      if (!known) throw new Error('no such packet');
      packet.brokerId = known.packet.brokerId;
      packet.brokerCounter = known.packet.brokerCounter;
    }
    const prekey = outgoingKey(client.id, packet.brokerId, packet.brokerCounter);
    const queued = await this.#read(prekey);
    if (!queued) throw new Error('no such packet');
    const previousId = queued.packet.messageId;
    const idKey = outgoingByIdKey(client.id, packet.messageId);
    // A copy of what is stored now (aedes changes the packet later, e.g. its dup flag).
    const entry = { packet: { ...packet } };
    // One atomic batch where aedes-persistence-level wrote three times in a row.
    this.#write([
      ...(previousId !== undefined && previousId > 0 ? [{ key: outgoingByIdKey(client.id, previousId), entry: null }] : []),
      { key: idKey, entry, created: !this.#known(idKey) },
      { key: prekey, entry },
    ]);
  }

  override async outgoingClearMessageId(client: { id: string }, packet: { messageId?: number }): Promise<unknown> {
    const key = outgoingByIdKey(client.id, packet.messageId);
    const stored = await this.#read(key);
    if (!stored) return undefined;
    const acked = stored.packet;
    this.#write([
      { key, entry: null },
      { key: outgoingKey(client.id, acked.brokerId, acked.brokerCounter), entry: null },
    ]);
    return acked;
  }

  /** A session's stored queue, read once the writes queued before it are on disk. */
  override outgoingStream(client: { id: string }): Readable {
    const writer = this.#writer;
    const read = (c: { id: string }) => super.outgoingStream(c);
    return Readable.from(
      (async function* () {
        await writer.flushed();
        yield* read(client);
      })(),
    );
  }

  override async destroy(): Promise<void> {
    await this.#writer.flushed();
    await super.destroy();
  }
}
