/**
 * Server-Sent Events parsing (pure), after the WHATWG "event stream interpretation" rules:
 * lines end in \n, \r\n or \r; a blank line dispatches; `id`, `event`, `data` (joined by \n),
 * `retry`; lines starting with ':' are comments. Fed chunk by chunk, it keeps partial lines.
 */
export interface SseMessage {
  /** The last event id seen so far in the stream (ids persist across events, per the spec). */
  lastEventId: string;
  /** Whether this event carried its own id line. */
  hasId: boolean;
  event: string;
  data: string;
}

export interface SseParser {
  /** Feed decoded text; returns the events completed by it. */
  push(text: string): SseMessage[];
  /** A `retry:` the server asked for, ms (null until sent). */
  readonly retryMs: number | null;
}

export function createSseParser(lastEventId = ''): SseParser {
  let buffer = '';
  let pendingCr = false;
  let id = lastEventId;
  let event = '';
  let data: string[] = [];
  let hasId = false;
  let retryMs: number | null = null;

  function line(l: string, out: SseMessage[]): void {
    if (l === '') {
      if (data.length > 0) out.push({ lastEventId: id, hasId, event: event || 'message', data: data.join('\n') });
      event = '';
      data = [];
      hasId = false;
      return;
    }
    if (l.startsWith(':')) return;
    const colon = l.indexOf(':');
    const field = colon < 0 ? l : l.slice(0, colon);
    let value = colon < 0 ? '' : l.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    switch (field) {
      case 'event':
        event = value;
        break;
      case 'data':
        data.push(value);
        break;
      case 'id':
        if (!value.includes('\0')) {
          id = value;
          hasId = true;
        }
        break;
      case 'retry':
        if (/^\d+$/.test(value)) retryMs = Number(value);
        break;
    }
  }

  return {
    get retryMs() {
      return retryMs;
    },
    push(text: string): SseMessage[] {
      const out: SseMessage[] = [];
      if (pendingCr && text.startsWith('\n')) text = text.slice(1);
      pendingCr = false;
      buffer += text;
      for (;;) {
        const m = /\r\n|\r|\n/.exec(buffer);
        if (!m) break;
        // A trailing \r may be the first half of \r\n split across chunks.
        if (m[0] === '\r' && m.index === buffer.length - 1) pendingCr = true;
        line(buffer.slice(0, m.index), out);
        buffer = buffer.slice(m.index + m[0].length);
      }
      return out;
    },
  };
}
