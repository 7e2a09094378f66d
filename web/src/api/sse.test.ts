import { describe, expect, it } from 'vitest';
import { createSseParser, type SseEvent } from './sse';

// A tiny deterministic PRNG so failures reproduce.
function rng(seed: number) {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

/** Parse a byte stream split at the given points, decoding as the reader does. */
function parseBytes(bytes: Uint8Array, cuts: number[]): SseEvent[] {
  const p = createSseParser();
  const dec = new TextDecoder('utf-8');
  const out: SseEvent[] = [];
  let prev = 0;
  for (const c of [...cuts, bytes.length]) {
    out.push(...p.push(dec.decode(bytes.subarray(prev, c), { stream: true })));
    prev = c;
  }
  out.push(...p.push(dec.decode()));
  out.push(...p.end());
  return out;
}

function randomCuts(n: number, r: () => number, density: number): number[] {
  const cuts: number[] = [];
  for (let i = 1; i < n; i++) if (r() < density) cuts.push(i);
  return cuts;
}

const STREAM = [
  ': ping\r\n\r\n',
  'id: 1\r\nevent: delta\r\ndata: {"content":"Hé"}\r\n\r\n',
  'id: 2\nevent: delta\ndata: {"content":"llo 🌍 wörld — ✓"}\n\n',
  'id: 3\revent: delta\rdata: {"content":"日本語のテキスト"}\r\r',
  ': ping\n\n',
  'id: 4\r\nevent: usage\r\ndata: {"prompt_tokens":3,"completion_tokens":9}\r\n\r\n',
  'id: 5\nevent: done\ndata: {"status":"complete"}\ndata: second line\n\n',
].join('');

const EXPECTED = [
  { event: 'delta', data: '{"content":"Hé"}', id: '1', retry: null },
  { event: 'delta', data: '{"content":"llo 🌍 wörld — ✓"}', id: '2', retry: null },
  { event: 'delta', data: '{"content":"日本語のテキスト"}', id: '3', retry: null },
  { event: 'usage', data: '{"prompt_tokens":3,"completion_tokens":9}', id: '4', retry: null },
  { event: 'done', data: '{"status":"complete"}\nsecond line', id: '5', retry: null },
];

describe('SSE parser', () => {
  const bytes = new TextEncoder().encode(STREAM);

  it('parses a whole stream', () => {
    expect(parseBytes(bytes, [])).toEqual(EXPECTED);
  });

  it('gives the same events for every single split point (inside CRLF and multi-byte characters)', () => {
    for (let i = 1; i < bytes.length; i++) expect(parseBytes(bytes, [i])).toEqual(EXPECTED);
  });

  it('gives the same events for random chunk boundaries', () => {
    const r = rng(42);
    for (let round = 0; round < 500; round++) {
      const cuts = randomCuts(bytes.length, r, [0.02, 0.1, 0.5, 1][round % 4]!);
      expect(parseBytes(bytes, cuts)).toEqual(EXPECTED);
    }
  });

  it('splits inside a CRLF are one line ending, not two', () => {
    const p = createSseParser();
    const out = [...p.push('data: a\r'), ...p.push('\ndata: b\r'), ...p.push('\n\r'), ...p.push('\n')];
    expect(out).toEqual([{ event: 'message', data: 'a\nb', id: null, retry: null }]);
  });

  it('handles fields per spec: no space after colon, comments, unknown fields, retry, BOM', () => {
    const p = createSseParser();
    const out = p.push('\ufeffdata:x\nfoo: bar\n: comment\nretry: 1500\nid\nevent:e\n\n');
    expect(out).toEqual([{ event: 'e', data: 'x', id: '', retry: 1500 }]);
  });

  it('drops an event that has no data and one cut off without its blank line', () => {
    const p = createSseParser();
    expect(p.push('event: nothing\n\n')).toEqual([]);
    expect(p.push('data: partial')).toEqual([]);
    expect(p.end()).toEqual([]);
  });

  it('keeps the last event id across events (resume point)', () => {
    const p = createSseParser();
    p.push('id: 7\ndata: a\n\ndata: b\n\n');
    expect(p.lastEventId).toBe('7');
  });

  it('handles a long line delivered one character at a time', () => {
    const long = 'x'.repeat(20000);
    const p = createSseParser();
    const out: SseEvent[] = [];
    const s = `id: 9\ndata: ${long}\n\n`;
    for (const ch of s) out.push(...p.push(ch));
    expect(out).toEqual([{ event: 'message', data: long, id: '9', retry: null }]);
  });
});
