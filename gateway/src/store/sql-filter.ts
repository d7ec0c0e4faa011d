/**
 * A WHERE clause from optional filters (SQLite `?` placeholders): each condition applies only
 * when its value is given, so list queries do not repeat the same if-push ladder.
 */
export function whereGiven(conditions: ReadonlyArray<readonly [clause: string, value: string | number | null | undefined]>): { where: string; args: Array<string | number> } {
  const given = conditions.filter((c): c is readonly [string, string | number] => c[1] !== undefined && c[1] !== null && c[1] !== '');
  return { where: given.length ? `WHERE ${given.map(([clause]) => clause).join(' AND ')}` : '', args: given.map(([, value]) => value) };
}
