// turn.ts - applying turn events to the message being generated (pure).

import type { ContentPart, Message, TurnEvent } from '../api/types';

/** A message as the UI holds it: the wire message plus render bookkeeping. */
export interface UiMessage extends Message {
  /** Bumped whenever content is replaced rather than appended (markdown starts over). */
  rev: number;
  /** A transient note while generating ("Retrying…", "Reconnecting…"). */
  note?: string | null;
}

export function toUi(m: Message, rev = 0): UiMessage {
  return { ...m, rev };
}

/** The text parts of a message, joined as the server joins them for the provider. */
export function messageText(m: Pick<Message, 'content'>): string {
  let out = '';
  for (const p of m.content) {
    if (p.type === 'text') out = out ? `${out}\n\n${p.text}` : p.text;
  }
  return out;
}

function appendText(parts: ContentPart[], type: 'text' | 'refusal', s: string): ContentPart[] {
  const last = parts[parts.length - 1];
  if (last && last.type === type) {
    const copy = parts.slice();
    copy[copy.length - 1] = { type, text: last.text + s };
    return copy;
  }
  return [...parts, { type, text: s }];
}

/**
 * Apply one event. `fromStart` is true for the first event of a stream opened
 * without Last-Event-ID: the server replays everything from event 1, so the
 * stored (partial) content is replaced rather than appended to.
 */
export function applyTurnEvent(m: UiMessage, ev: TurnEvent, fromStart: boolean): UiMessage {
  let cur = m;
  if (fromStart && ev.type !== 'snapshot' && ev.type !== 'done') {
    cur = { ...cur, content: [], rev: cur.rev + 1 };
  }
  switch (ev.type) {
    case 'delta': {
      let parts = cur.content;
      if (ev.data.content) parts = appendText(parts, 'text', ev.data.content);
      if (ev.data.refusal) parts = appendText(parts, 'refusal', ev.data.refusal);
      if (ev.data.tool_calls) {
        parts = parts.slice();
        for (const d of ev.data.tool_calls) {
          // The index counts tool calls only, in order of appearance.
          let seen = -1;
          let at = -1;
          for (let i = 0; i < parts.length; i++) {
            if (parts[i]!.type === 'tool_call' && ++seen === d.index) {
              at = i;
              break;
            }
          }
          if (at < 0) {
            parts.push({ type: 'tool_call', id: d.id ?? '', name: d.name ?? '', arguments: d.arguments ?? '' });
          } else {
            const p = parts[at] as Extract<ContentPart, { type: 'tool_call' }>;
            parts[at] = { type: 'tool_call', id: d.id ?? p.id, name: p.name + (d.name ?? ''), arguments: p.arguments + (d.arguments ?? '') };
          }
        }
      }
      return { ...cur, content: parts, note: null };
    }
    case 'usage':
      return { ...cur, usage: { prompt_tokens: ev.data.prompt_tokens, completion_tokens: ev.data.completion_tokens } };
    case 'retry':
      return { ...cur, note: `The provider did not answer; retrying (attempt ${ev.data.attempt})…` };
    case 'error':
      return { ...cur, error: ev.data };
    case 'snapshot': {
      const same = messageText(ev.data.message) === messageText(cur);
      return { ...ev.data.message, rev: same ? cur.rev : cur.rev + 1, note: null };
    }
    case 'done': {
      const same = messageText(ev.data.message) === messageText(cur);
      // A turn the server no longer runs but never finished reads as interrupted.
      const status = ev.data.status === 'streaming' ? 'interrupted' : ev.data.status;
      return { ...ev.data.message, status, rev: same ? cur.rev : cur.rev + 1, note: null };
    }
    default:
      return cur;
  }
}
