// sse.mjs - a small incremental Server-Sent Events parser (WHATWG rules).
//
// Feed it bytes or strings in chunks of any size; it handles UTF-8 sequences
// and CRLF pairs split across chunks, a leading BOM, comments, multi-line
// data and field names without a value. Events are {id, event, data, retry}:
// `id` is the event's own id field (undefined when it had none; the running
// Last-Event-ID is `parser.lastEventId`), `event` defaults to "message".

export class SseParser {
  constructor() {
    this.decoder = new TextDecoder('utf-8');
    this.buf = '';
    this.first = true;     // strip a BOM at the very start of the stream
    this.skipLF = false;   // last chunk ended in CR: a leading LF belongs to it
    this.lastEventId = '';
    this.comments = 0;     // count of ":" lines seen (heartbeats)
    this.reset();
  }

  reset() {
    this.data = [];
    this.type = '';
    this.id = undefined;
    this.retry = undefined;
  }

  // Returns the events completed by this chunk.
  feed(chunk) {
    let text = typeof chunk === 'string' ? chunk : this.decoder.decode(chunk, { stream: true });
    if (this.first && text.length) {
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
      this.first = false;
    }
    if (this.skipLF && text.length) {
      if (text[0] === '\n') text = text.slice(1);
      this.skipLF = false;
    }
    this.buf += text;
    const events = [];
    let start = 0;
    for (let i = 0; i < this.buf.length; i++) {
      const c = this.buf[i];
      if (c !== '\n' && c !== '\r') continue;
      const line = this.buf.slice(start, i);
      if (c === '\r') {
        if (i + 1 < this.buf.length) {
          if (this.buf[i + 1] === '\n') i++;
        } else {
          this.skipLF = true;
        }
      }
      start = i + 1;
      const ev = this.line(line);
      if (ev) events.push(ev);
    }
    this.buf = this.buf.slice(start);
    return events;
  }

  // End of stream: per the spec an unterminated last event is discarded.
  end() {
    this.feed(this.decoder.decode());
    this.buf = '';
    this.reset();
    return [];
  }

  line(line) {
    if (line === '') return this.dispatch();
    if (line[0] === ':') {
      this.comments++;
      return null;
    }
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value[0] === ' ') value = value.slice(1);
    switch (field) {
      case 'data': this.data.push(value); break;
      case 'event': this.type = value; break;
      case 'id':
        if (!value.includes('\0')) { this.id = value; this.lastEventId = value; }
        break;
      case 'retry':
        if (/^[0-9]+$/.test(value)) this.retry = Number(value);
        break;
      default: break; // unknown fields are ignored
    }
    return null;
  }

  dispatch() {
    const hasData = this.data.length > 0;
    const ev = { id: this.id, event: this.type || 'message', data: this.data.join('\n') };
    if (this.retry !== undefined) ev.retry = this.retry;
    this.reset();
    return hasData ? ev : null;
  }
}

// Parse a complete stream (string or Buffer) into events.
export function parseSse(input) {
  const p = new SseParser();
  const events = p.feed(input);
  p.end();
  return events;
}
