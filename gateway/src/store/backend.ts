/**
 * What every aggregate store interface is written against. SQLite (embedded, the default) answers
 * at once; a server database (PostgreSQL) answers later: an interface `XStore<B>` returns
 * `Result<T, B>`, so one interface (and one contract test, which awaits every call) covers both.
 * The ingest and alert workflows (store/operational.ts) compose the SQLite ones inside one
 * transaction, so those use `'sync'`.
 */
export type Backend = 'sync' | 'async';
export type Result<T, B extends Backend> = B extends 'sync' ? T : Promise<T>;
