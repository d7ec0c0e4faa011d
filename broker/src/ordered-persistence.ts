/**
 * Level persistence whose outgoing queue (QoS 1/2 messages for persistent sessions) lives in
 * memory and is written behind, in batches, instead of a chain of LevelDB reads and writes per
 * message.
 *
 * aedes-persistence-level does, per message for a persistent subscriber: a put on enqueue; on
 * delivery a get, then a put, then another put (outgoingUpdate: three thread-pool round trips in
 * a row before the message may be written to the socket); on PUBACK a get, then a batch; and a
 * get for every PUBACK of a clean session too. In the broker bench's CPU profile classic-level's
 * put/get/batch were the largest cost (4.4 s of 11.4 s), and the wrapper that kept enqueues in
 * order made every publish wait for the previous one's put. Here:
 * - writes are visible at once to this process and reach the disk in one batch per tick, each
 *   25-50 ms after it was made (BatchWriter); a message delivered and acknowledged within that
 *   time (a connected subscriber's usual case) is never written or even encoded;
 * - the reads those steps need (which message id a queued message has, which message an id
 *   stands for) are answered from memory (the writes not yet on disk, and a bounded mirror of
 *   what this process wrote); only a miss (queued before a restart, or past the bound) reads the
 *   disk, and a message id nobody stored (every PUBACK of a clean session) reads nothing.
 * Values and keys are exactly aedes-persistence-level's (msgpack), so the rest of it
 * (outgoingStream, data written by earlier versions) is unchanged. close() writes everything.
 *
 * What a hard kill (kill -9, power loss) can lose: QoS 1 messages for offline or slow persistent
 * sessions acknowledged to their publisher in the last 50 ms. aedes already sent PUBACK before
 * storing, so some window existed before (a few ms idle, hundreds of ms under load, when the
 * stores queued behind each other); Mosquitto writes its persistence only every
 * `autosave_interval` (30 min by default) and at shutdown.
 *
 * Order: enqueues take effect in the order aedes makes them (synchronously, in counter order),
 * so a connected persistent subscriber no longer sees one overtake another (before, concurrent
 * stores finished out of order and the overtaken messages were held back until it reconnected;
 * the broker also turns aedes' duplicate check off, see broker.ts).
 */
import Packet from 'aedes-packet';
import AsyncLevelPersistence from 'aedes-persistence-level/asyncPersistence.js';
import msgpack from 'msgpack-lite';
import { Readable } from 'node:stream';

/** The part of a `level` database this uses. */
export interface LevelStore {
  get(key: string, options: { valueEncoding: 'buffer' }): Promise<Buffer | undefined>;
  keys(options: { gte: string; lt: string }): AsyncIterable<string>;
  batch(ops: Array<{ type: 'put'; key: string; value: Buffer } | { type: 'del'; key: string }>, options: { valueEncoding: 'buffer' }): Promise<void>;
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

/**
 * Writes reach the disk in one batch per AGE_MS, each write between AGE_MS and 2 x AGE_MS after
 * it was made: long enough that a message delivered and acknowledged meanwhile (the usual case
 * for a connected subscriber) is never written, short enough to bound what a hard kill loses.
 */
const AGE_MS = 25;

/**
 * Write-behind with group commit. Writes are visible to reads (`lookup`) at once; they wait in
 * two generations (`#young`, made since the last tick; `#old`, made in the tick before), and each
 * tick writes `#old` in one batch. A key created and deleted before it was written costs no write
 * and no encoding at all.
 */
class BatchWriter {
  #young = new Map<string, Entry | null>();
  #old = new Map<string, Entry | null>();
  /** Keys waiting in #young or #old that did not exist before their put: deleting them needs no disk write. */
  #created = new Set<string>();
  /** The batch being written. */
  #writing = new Map<string, Entry | null>();
  #timer: NodeJS.Timeout | undefined;
  #flushing: Promise<void> | undefined;

  constructor(
    private readonly db: LevelStore,
    private readonly onError: (error: Error) => void,
  ) {}

  /** A write not yet on disk for `key`: an entry, null (deleted), or undefined (none). */
  lookup(key: string): Entry | null | undefined {
    // One hash lookup per generation (null, a delete, is an answer too).
    const young = this.#young.get(key);
    if (young !== undefined) return young;
    const old = this.#old.get(key);
    return old !== undefined ? old : this.#writing.get(key);
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
      if (w.created && !waiting && !this.#writing.has(w.key)) this.#created.add(w.key);
      this.#young.set(w.key, w.entry);
    }
    this.#timer ??= setTimeout(() => this.#tick(), AGE_MS);
  }

  /** Resolves when every write made so far is on disk. */
  async flushed(): Promise<void> {
    while (this.#flushing) await this.#flushing;
    if (this.#young.size + this.#old.size === 0) return;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const all = new Map([...this.#old, ...this.#young]);
    this.#young = new Map();
    this.#old = new Map();
    this.#created.clear();
    this.#flush(all);
    await this.flushed();
  }

  #tick(): void {
    this.#timer = undefined;
    if (!this.#flushing && this.#old.size > 0) {
      const batch = this.#old;
      for (const key of batch.keys()) this.#created.delete(key);
      this.#old = new Map();
      this.#flush(batch);
    }
    // A batch still being written: #old waits for the next tick (and keeps taking cancellations).
    if (this.#old.size === 0) {
      this.#old = this.#young;
      this.#young = new Map();
    } else {
      for (const [key, entry] of this.#young) this.#old.set(key, entry);
      this.#young = new Map();
    }
    if (this.#old.size > 0) this.#timer = setTimeout(() => this.#tick(), AGE_MS);
  }

  #flush(batch: Map<string, Entry | null>): void {
    this.#writing = batch;
    const ops = [...batch].map(([key, entry]) => (entry ? { type: 'put' as const, key, value: encoded(entry) } : { type: 'del' as const, key }));
    this.#flushing = this.db.batch(ops, BUFFER).then(
      () => this.#done(),
      (error: Error) => {
        this.onError(error);
        this.#done();
      },
    );
  }

  #done(): void {
    this.#writing = new Map();
    this.#flushing = undefined;
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
  constructor(db: LevelStore, onWriteError: (error: Error) => void) {
    super(db);
    this.#db = db;
    this.#writer = new BatchWriter(db, onWriteError);
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

  #write(writes: Write[]): void {
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
    this.#writer.write(writes);
  }

  override async outgoingEnqueue(sub: { clientId: string }, packet: OutgoingPacket): Promise<void> {
    const stored = new Packet(packet) as OutgoingPacket;
    // brokerId + brokerCounter are unique: this key did not exist.
    this.#write([{ key: outgoingKey(sub.clientId, stored.brokerId, stored.brokerCounter), entry: { packet: stored }, created: true }]);
  }

  override async outgoingEnqueueCombi(subs: Array<{ clientId: string }> | undefined, packet: OutgoingPacket): Promise<unknown> {
    if (!subs || subs.length === 0) return packet;
    const entry = { packet: new Packet(packet) as OutgoingPacket };
    this.#write(subs.map((sub) => ({ key: outgoingKey(sub.clientId, entry.packet.brokerId, entry.packet.brokerCounter), entry, created: true })));
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
