/**
 * Timestamps that match the wire pattern but name no instant (`2024-13-45T25:61:61Z`, the leap
 * second `2024-12-31T23:59:60Z`, which POSIX time and `Date` cannot hold) are refused by the
 * schemas' `format: 'date-time'` with the reason (pure; registered with TypeBox in validators.ts).
 */

const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?(Z|[+-](\d{2}):(\d{2}))$/;

const daysInMonth = (year: number, month: number): number =>
  month === 2 ? (year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0) ? 29 : 28) : [4, 6, 9, 11].includes(month) ? 30 : 31;

/** Why `text` is not a real instant (RFC 3339, UTC or offset), or null when it is one. */
export function timestampProblem(text: string): string | null {
  const m = RFC3339.exec(text);
  if (!m) return 'not an RFC 3339 timestamp (YYYY-MM-DDThh:mm:ss[.fff]Z)';
  const [year, month, day, hour, minute, second] = m.slice(1, 7).map(Number) as [number, number, number, number, number, number];
  if (month < 1 || month > 12) return `month ${m[2]} does not exist`;
  if (day < 1 || day > daysInMonth(year, month)) return `day ${m[3]} does not exist in ${m[1]}-${m[2]}`;
  if (hour > 23) return `hour ${m[4]} does not exist`;
  if (minute > 59) return `minute ${m[5]} does not exist`;
  if (second === 60) return 'second 60 (a leap second) has no POSIX instant';
  if (second > 59) return `second ${m[6]} does not exist`;
  if (m[9] !== undefined && (Number(m[9]) > 23 || Number(m[10]) > 59)) return `offset ${m[8]} does not exist`;
  if (!Number.isFinite(Date.parse(text))) return 'outside the range of representable instants';
  return null;
}

export const isRealInstant = (text: string): boolean => timestampProblem(text) === null;

/** The PayloadIssue code of a timestamp that names no instant: receivers may substitute their receive time. */
export const NOT_AN_INSTANT = 'not_an_instant';
