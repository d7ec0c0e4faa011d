// aedes-persistence-level ships no types; we use its async (aedes 1.x) class directly.
declare module 'aedes-persistence-level/asyncPersistence.js' {
  export default class AsyncLevelPersistence {
    constructor(db: unknown);
    outgoingEnqueueCombi(subs: unknown[], packet: unknown): Promise<unknown>;
    destroy(): Promise<void>;
    createRetainedStream(pattern: string): AsyncIterable<{ topic: string }>;
    storeRetained(packet: { cmd: 'publish'; topic: string; payload: Buffer; qos: 0 | 1 | 2; retain: boolean; dup: boolean }): Promise<void>;
  }
}
