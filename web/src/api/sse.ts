// sse.ts - a pure, incremental parser for text/event-stream (the WHATWG
// "event stream interpretation"): text chunks in, events out. Chunks may split
// anywhere, including between the CR and LF of a CRLF. Bytes are decoded by
// the caller (TextDecoder in stream mode, so multi-byte characters split
// across network reads arrive whole).

export interface SseEvent {
  /** "message" when the stream named none. */
  event: string;
  data: string;
  /** The last id seen on the stream so far (ids persist across events), or null. */
  id: string | null;
  /** A "retry:" hint in ms, when this event carried one. */
  retry: number | null;
}

export interface SseParser {
  /** Feed decoded text; returns the events completed by it. */
  push(chunk: string): SseEvent[];
  /** The stream ended: a final event without its blank line is discarded, per spec. */
  end(): SseEvent[];
  /** The last event id (persists across events, as EventSource's lastEventId). */
  readonly lastEventId: string | null;
}

export function createSseParser(): SseParser {
  let buf = '';
  let skipLf = false; // the previous chunk ended in CR: a leading LF belongs to it
  let bomChecked = false;
  let event = '';
  let data: string[] = [];
  let hasData = false;
  let lastId: string | null = null;
  let retry: number | null = null;

  function line(l: string, out: SseEvent[]): void {
    if (l === '') {
      if (hasData) {
        out.push({ event: event || 'message', data: data.join('\n'), id: lastId, retry });
      }
      event = '';
      data = [];
      hasData = false;
      retry = null;
      return;
    }
    if (l.charCodeAt(0) === 58 /* : */) return; // comment, e.g. ": ping"
    const colon = l.indexOf(':');
    let field: string;
    let value: string;
    if (colon < 0) {
      field = l;
      value = '';
    } else {
      field = l.slice(0, colon);
      value = l.charCodeAt(colon + 1) === 32 ? l.slice(colon + 2) : l.slice(colon + 1);
    }
    switch (field) {
      case 'event':
        event = value;
        break;
      case 'data':
        data.push(value);
        hasData = true;
        break;
      case 'id':
        if (!value.includes('\0')) lastId = value;
        break;
      case 'retry':
        if (/^\d+$/.test(value)) retry = Number(value);
        break;
      default:
        break; // unknown fields are ignored
    }
  }

  return {
    push(chunk: string): SseEvent[] {
      const out: SseEvent[] = [];
      if (!bomChecked && chunk.length > 0) {
        bomChecked = true;
        if (chunk.charCodeAt(0) === 0xfeff) chunk = chunk.slice(1);
      }
      if (skipLf && chunk.length > 0) {
        if (chunk.charCodeAt(0) === 10) chunk = chunk.slice(1);
        skipLf = false;
      }
      const from = buf.length; // buf holds no line break: scan only the new text
      buf += chunk;
      let start = 0;
      for (let i = from; i < buf.length; i++) {
        const c = buf.charCodeAt(i);
        if (c !== 10 && c !== 13) continue;
        line(buf.slice(start, i), out);
        if (c === 13) {
          if (i + 1 < buf.length) {
            if (buf.charCodeAt(i + 1) === 10) i++;
          } else {
            skipLf = true;
          }
        }
        start = i + 1;
      }
      buf = buf.slice(start);
      return out;
    },
    end(): SseEvent[] {
      buf = '';
      event = '';
      data = [];
      hasData = false;
      return [];
    },
    get lastEventId() {
      return lastId;
    },
  };
}
