// aedes-persistence-level ships no types; we use its async (aedes 1.x) class directly.
declare module 'aedes-persistence-level/asyncPersistence.js' {
  export default class AsyncLevelPersistence {
    constructor(db: unknown);
    outgoingEnqueueCombi(subs: unknown[], packet: unknown): Promise<unknown>;
    destroy(): Promise<void>;
  }
}
