// aedes-persistence-level ships no types; we use its async (aedes 1.x) class directly.
declare module 'aedes-persistence-level/asyncPersistence.js' {
  import type { Readable } from 'node:stream';
  export default class AsyncLevelPersistence {
    constructor(db: unknown);
    setup(broker: unknown): Promise<void>;
    outgoingEnqueue(sub: unknown, packet: unknown): Promise<void>;
    outgoingEnqueueCombi(subs: unknown[] | undefined, packet: unknown): Promise<unknown>;
    outgoingUpdate(client: unknown, packet: unknown): Promise<void>;
    outgoingClearMessageId(client: unknown, packet: unknown): Promise<unknown>;
    outgoingStream(client: unknown): Readable;
    destroy(): Promise<void>;
    createRetainedStream(pattern: string): AsyncIterable<{ topic: string }>;
    storeRetained(packet: { cmd: 'publish'; topic: string; payload: Buffer; qos: 0 | 1 | 2; retain: boolean; dup: boolean }): Promise<void>;
  }
}

// aedes-packet and msgpack-lite ship no types either: the parts used by ordered-persistence.ts.
declare module 'aedes-packet' {
  export default class Packet {
    constructor(original: object, broker?: { id: string; counter: number });
  }
}

declare module 'msgpack-lite' {
  const msgpack: { encode(value: unknown): Buffer; decode(buffer: Buffer): unknown };
  export default msgpack;
}
