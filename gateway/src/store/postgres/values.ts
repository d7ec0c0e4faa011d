/** Column values as node-postgres returns them, and how statements reach the database. */
import type { ClientBase, Pool } from 'pg';

/** int8 (BIGINT) comes back as a string (it can exceed 2^53); times in ms and counts never will. */
export const num = (value: string | number | null | undefined): number => (value === null || value === undefined ? 0 : Number(value));

/** A nullable int8. */
export const numOrNull = (value: string | number | null | undefined): number | null => (value === null || value === undefined ? null : Number(value));

/**
 * What a store sends its statements through: the pool (each statement on its own) or one client
 * inside a transaction (a workflow's statements committing together).
 */
export type Queryable = Pick<ClientBase, 'query'>;

/** Runs `work` inside one transaction on a client of `pool`: committed when it resolves, rolled back when it throws. */
export async function inTransaction<T>(pool: Pool, work: (tx: Queryable) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    try {
      const result = await work(client);
      await client.query('COMMIT');
      return result;
    } catch (error) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw error;
    }
  } finally {
    client.release();
  }
}
