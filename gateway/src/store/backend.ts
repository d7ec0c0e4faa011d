/**
 * What every aggregate store interface is written against. SQLite (embedded, the default) answers
 * at once; a server database (PostgreSQL) answers later: an interface `XStore<B>` returns
 * `Result<T, B>`, so one interface (and one contract test, which awaits every call) covers both.
 * The ingest and alert workflows (store/operational.ts) compose the SQLite ones inside one
 * transaction, so those use `'sync'`.
 */
export type Backend = 'sync' | 'async';
export type Result<T, B extends Backend> = B extends 'sync' ? T : Promise<T>;

/**
 * A workflow written once for both backends: a generator that hands each store answer it needs
 * (a value from SQLite, a promise from PostgreSQL) to its runner and resumes with the value —
 * `const alert = yield* answer(alerts.get(id))`, or `yield spool.enqueue(…)` when the answer is not
 * needed (cheaper: no helper generator). `runSync` runs it inside a SQLite transaction
 * (nothing is awaited, so the transaction stays synchronous), `runAsync` on a PostgreSQL one.
 */
export type Workflow<T> = Generator<unknown, T, unknown>;

export function* answer<T>(result: T | Promise<T>): Generator<unknown, T, unknown> {
  return (yield result) as T;
}

export function runSync<T>(workflow: Workflow<T>): T {
  let step = workflow.next();
  while (!step.done) step = workflow.next(step.value);
  return step.value;
}

export async function runAsync<T>(workflow: Workflow<T>): Promise<T> {
  let step = workflow.next();
  while (!step.done) step = workflow.next(await step.value);
  return step.value;
}
