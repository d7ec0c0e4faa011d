/** Column values as node-postgres returns them, and how statements reach the database. */
import pg, { type ClientBase } from 'pg';

/** int8 (BIGINT) comes back as a string (it can exceed 2^53); times in ms and counts never will. */
export const num = (value: string | number | null | undefined): number => (value === null || value === undefined ? 0 : Number(value));

/** A nullable int8. */
export const numOrNull = (value: string | number | null | undefined): number | null => (value === null || value === undefined ? null : Number(value));

/**
 * What a store sends its statements through: the pool (each statement on its own) or one client
 * inside a transaction (a workflow's statements committing together).
 */
export type Queryable = Pick<ClientBase, 'query'>;

/**
 * Runs `work` inside one transaction: on a pool, BEGIN … COMMIT on one of its clients; on a client
 * already inside a transaction (a workflow's), a savepoint, so that `work` commits with it or
 * alone rolls back. Rolled back when `work` throws.
 */
export async function inTransaction<T>(db: Queryable, work: (tx: Queryable) => Promise<T>): Promise<T> {
  if (!(db instanceof pg.Pool)) {
    await db.query('SAVEPOINT nested');
    try {
      const result = await work(db);
      await db.query('RELEASE SAVEPOINT nested');
      return result;
    } catch (error) {
      await db.query('ROLLBACK TO SAVEPOINT nested').catch(() => undefined);
      throw error;
    }
  }
  const client = await db.connect();
  let broken: Error | undefined;
  try {
    await client.query('BEGIN');
    try {
      const result = await work(client);
      // COMMIT of a transaction a failed statement aborted answers ROLLBACK, without an error.
      const commit = await client.query('COMMIT');
      if (commit.command !== 'COMMIT') throw new Error(`transaction rolled back (${commit.command} on COMMIT)`);
      return result;
    } catch (error) {
      await client.query('ROLLBACK').catch((rollbackError: Error) => {
        // A client that cannot roll back (connection lost) is not given back to the pool.
        broken = rollbackError;
      });
      throw error;
    }
  } finally {
    client.release(broken);
  }
}
