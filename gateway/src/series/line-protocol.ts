/**
 * InfluxDB line protocol for a batch of points (pure), encoded as the `influx` package's
 * `writePoints` encodes them without a schema (its escaping functions, fields sorted by name,
 * numbers as floats, strings quoted), with the escaped tags and names memoised: tags and names
 * repeat in every point (site, checkpoint, decision, mask; the same dozen field names), and
 * escaping each afresh was most of the client's CPU per point (two regular expressions a call).
 */
import { escape } from 'influx';
import type { SeriesPoint } from './points.js';

/** Bounded: tag values come from devices (checkpoint names); past this many the memo starts over. */
const MEMO_LIMIT = 10_000;

function memoised(escapeOne: (value: string) => string): (value: string) => string {
  const memo = new Map<string, string>();
  return (value) => {
    let escaped = memo.get(value);
    if (escaped === undefined) {
      if (memo.size >= MEMO_LIMIT) memo.clear();
      escaped = escapeOne(value);
      memo.set(value, escaped);
    }
    return escaped;
  };
}

export interface LineProtocolEncoder {
  /** One line per point, `\n` between; throws naming the point when its time is not integer nanoseconds. */
  encode(points: readonly SeriesPoint[]): string;
}

export function createLineProtocolEncoder(): LineProtocolEncoder {
  const tag = memoised(escape.tag);
  const measurement = memoised(escape.measurement);
  const sortedFieldNames = new Map<string, string[]>();
  const fieldNamesOf = (fields: SeriesPoint['fields']): string[] => {
    const keys = Object.keys(fields);
    const signature = keys.join('\u0000');
    let sorted = sortedFieldNames.get(signature);
    if (sorted === undefined) {
      if (sortedFieldNames.size >= MEMO_LIMIT) sortedFieldNames.clear();
      sorted = keys.sort();
      sortedFieldNames.set(signature, sorted);
    }
    return sorted;
  };
  return {
    encode(points) {
      const lines = new Array<string>(points.length);
      for (let i = 0; i < points.length; i++) {
        const p = points[i]!;
        if (typeof p.timeNs !== 'string' || !/^-?\d+$/.test(p.timeNs)) throw new Error(`point ${i} (${String(p.measurement)}): time ${JSON.stringify(String(p.timeNs).slice(0, 40))} is not integer nanoseconds`);
        let line = measurement(p.measurement);
        for (const key in p.tags) line += `,${tag(key)}=${tag(p.tags[key]!)}`;
        const names = fieldNamesOf(p.fields);
        for (let f = 0; f < names.length; f++) {
          const name = names[f]!;
          const value = p.fields[name]!;
          line += `${f === 0 ? ' ' : ','}${tag(name)}=${typeof value === 'string' ? escape.quoted(value) : String(value)}`;
        }
        lines[i] = `${line} ${p.timeNs}`;
      }
      return lines.join('\n');
    },
  };
}
