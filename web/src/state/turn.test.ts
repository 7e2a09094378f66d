import { describe, expect, it } from 'vitest';
import type { Message } from '../api/types';
import { applyTurnEvent, messageText, toUi } from './turn';

const base: Message = {
  id: 'm1',
  chat_id: 'c1',
  parent_id: 'u1',
  role: 'assistant',
  content: [{ type: 'text', text: 'stored part' }],
  model: 'gpt-4o',
  status: 'streaming',
  error: null,
  usage: null,
  created_at: 1,
  updated_at: 1,
};

describe('turn events', () => {
  it('a stream replayed from the start replaces the stored partial content', () => {
    let m = toUi(base);
    m = applyTurnEvent(m, { type: 'delta', id: 1, data: { content: 'Hel' } }, true);
    m = applyTurnEvent(m, { type: 'delta', id: 2, data: { content: 'lo' } }, false);
    expect(messageText(m)).toBe('Hello');
    expect(m.rev).toBe(1);
  });

  it('resumed streams append', () => {
    let m = toUi({ ...base, content: [{ type: 'text', text: 'Hel' }] });
    m = applyTurnEvent(m, { type: 'delta', id: 3, data: { content: 'lo' } }, false);
    expect(messageText(m)).toBe('Hello');
    expect(m.rev).toBe(0);
  });

  it('collects refusals and tool calls by index', () => {
    let m = toUi({ ...base, content: [] });
    m = applyTurnEvent(m, { type: 'delta', id: 1, data: { refusal: 'I cannot' } }, false);
    m = applyTurnEvent(m, { type: 'delta', id: 2, data: { refusal: ' help.' } }, false);
    m = applyTurnEvent(m, { type: 'delta', id: 3, data: { tool_calls: [{ index: 0, id: 't1', name: 'get_', arguments: '{"a"' }] } }, false);
    m = applyTurnEvent(m, { type: 'delta', id: 4, data: { tool_calls: [{ index: 0, name: 'weather', arguments: ':1}' }, { index: 1, id: 't2', name: 'x' }] } }, false);
    expect(m.content).toEqual([
      { type: 'refusal', text: 'I cannot help.' },
      { type: 'tool_call', id: 't1', name: 'get_weather', arguments: '{"a":1}' },
      { type: 'tool_call', id: 't2', name: 'x', arguments: '' },
    ]);
  });

  it('usage, retry note, error, and done (authoritative final message)', () => {
    let m = toUi({ ...base, content: [] });
    m = applyTurnEvent(m, { type: 'retry', id: 1, data: { attempt: 1, delay_ms: 500 } }, false);
    expect(m.note).toMatch(/retrying/);
    m = applyTurnEvent(m, { type: 'delta', id: 2, data: { content: 'Hi' } }, false);
    expect(m.note).toBeNull();
    m = applyTurnEvent(m, { type: 'usage', id: 3, data: { prompt_tokens: 5, completion_tokens: 2 } }, false);
    expect(m.usage).toEqual({ prompt_tokens: 5, completion_tokens: 2 });
    const final = { ...base, content: [{ type: 'text' as const, text: 'Hi' }], status: 'complete' as const, usage: { prompt_tokens: 5, completion_tokens: 2 } };
    const done = applyTurnEvent(m, { type: 'done', id: 4, data: { status: 'complete', message: final } }, false);
    expect(done.status).toBe('complete');
    expect(done.rev).toBe(m.rev); // same text: no re-render from scratch
    const err = applyTurnEvent(m, { type: 'error', id: 4, data: { code: 'provider_error', message: 'boom' } }, false);
    expect(err.error?.message).toBe('boom');
  });

  it('a snapshot replaces the content', () => {
    const m = applyTurnEvent(toUi(base), { type: 'snapshot', id: 50, data: { message: { ...base, content: [{ type: 'text', text: 'all so far' }] } } }, true);
    expect(messageText(m)).toBe('all so far');
    expect(m.rev).toBe(1);
  });
});

describe('done without a running turn', () => {
  it('a message the server still calls streaming but no longer runs is interrupted', () => {
    const m = applyTurnEvent(toUi(base), { type: 'done', id: null, data: { status: 'streaming', message: base } }, true);
    expect(m.status).toBe('interrupted');
  });
});
