/** Column values as node-postgres returns them. */

/** int8 (BIGINT) comes back as a string (it can exceed 2^53); times in ms and counts never will. */
export const num = (value: string | number | null | undefined): number => (value === null || value === undefined ? 0 : Number(value));

/** A nullable int8. */
export const numOrNull = (value: string | number | null | undefined): number | null => (value === null || value === undefined ? null : Number(value));
