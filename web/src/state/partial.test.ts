// A long chat opened from its tail (GET ?tail=N), completed after the first paint.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { closeChat, completeChat, openChat, openEarlyChat, refreshOpenChat, switchBranch, OpenChat } from './chat';
import { early } from './early';
import { api } from '../api/client';
import type { Chat, Message } from '../api/types';

const chat: Chat = {
  id: 'c1', title: 'T', model: null, system_prompt: null, params: {}, folder_id: null, workspace_id: null,
  current_leaf_id: 'a3', created_at: 1, updated_at: 1,
};
function msg(id: string, parent: string | null, role: Message['role'], at: number, status: Message['status'] = 'complete'): Message {
  return { id, chat_id: 'c1', parent_id: parent, role, content: [{ type: 'text', text: id }], model: null, status, error: null, usage: null, created_at: at, updated_at: at };
}
function json(status: number, body: unknown): Response {
  return new Response(JSON.stringify(body), { status });
}
// u1 a1 u2 a2 u3 a3, with a2b a sibling of a2 (older version) and a2x below it
const ALL = [msg('u1', null, 'user', 1), msg('a1', 'u1', 'assistant', 2), msg('u2', 'a1', 'user', 3), msg('a2b', 'u2', 'assistant', 4), msg('a2x', 'a2b', 'user', 5), msg('a2', 'u2', 'assistant', 6), msg('u3', 'a2', 'user', 7), msg('a3', 'u3', 'assistant', 8)];
// ?tail=3: a2 u3 a3 and a2's sibling a2b
const TAIL = ALL.filter((m) => ['a2b', 'a2', 'u3', 'a3'].includes(m.id));
const tick = (ms = 0) => new Promise((ok) => setTimeout(ok, ms));

describe('a partial chat', () => {
  afterEach(() => {
    closeChat();
    vi.unstubAllGlobals();
  });

  it('paints from the tail, then fetches the whole chat after the first paint and merges it', async () => {
    const urls: string[] = [];
    vi.stubGlobal('fetch', vi.fn(async (url: string) => {
      urls.push(url);
      if (url.endsWith('?tail=60')) return json(200, { chat, messages: TAIL, partial: true, message_count: ALL.length });
      return json(200, { chat, messages: ALL });
    }));
    early.chat = { id: 'c1', p: api.chatTail('c1', 60) };
    openEarlyChat();
    for (let i = 0; i < 20 && !openChat.value; i++) await tick();
    const c = openChat.value!;
    expect(urls).toEqual(['/api/v1/chats/c1?tail=60']);
    expect(c.partial.value).toBe(true);
    expect(c.path.value).toEqual(['a2', 'u3', 'a3']);
    expect(c.siblings('a2')).toMatchObject({ index: 1, count: 2, prev: 'a2b' });
    for (let i = 0; i < 50 && c.partial.value; i++) await tick(5);
    expect(urls).toEqual(['/api/v1/chats/c1?tail=60', '/api/v1/chats/c1']);
    expect(c.partial.value).toBe(false);
    expect(c.path.value).toEqual(['u1', 'a1', 'u2', 'a2', 'u3', 'a3']);
    expect(c.size).toBe(ALL.length);
    expect(c.message('u1')!.value.content).toEqual([{ type: 'text', text: 'u1' }]);
  });

  it('keeps the messages it has (they may be newer) and adds only the missing ones', () => {
    const c = new OpenChat(chat, TAIL, true);
    const a3 = c.message('a3')!;
    a3.value = { ...a3.value, content: [{ type: 'text', text: 'updated since' }] };
    c.add(msg('u4', 'a3', 'user', 9));
    c.merge(ALL);
    expect(c.message('a3')!.value.content).toEqual([{ type: 'text', text: 'updated since' }]);
    expect(c.size).toBe(ALL.length + 1);
    expect(c.path.value).toEqual(['u1', 'a1', 'u2', 'a2', 'u3', 'a3']);
    c.merge(ALL); // again: nothing changes
    expect(c.size).toBe(ALL.length + 1);
  });

  it('without a current leaf: the newest message of the tail, then the default leaf once whole', () => {
    const none = { ...chat, current_leaf_id: null };
    const c = new OpenChat(none, TAIL, true);
    expect(c.leafId.value).toBe('a3');
    expect(c.path.value).toEqual(['a2', 'u3', 'a3']);
    c.merge(ALL);
    expect(c.path.value).toEqual(['u1', 'a1', 'u2', 'a2', 'u3', 'a3']);
    const empty = new OpenChat(none, [], true);
    expect(empty.leafId.value).toBeNull();
    empty.merge(ALL);
    expect(empty.leafId.value).toBe('a3');
  });

  it('a branch switched to while partial shows its newest leaf once the chat is whole', async () => {
    vi.stubGlobal('fetch', vi.fn(async () => json(200, { chat: { ...chat, current_leaf_id: 'a2x' } })));
    const c = new OpenChat(chat, TAIL, true);
    await switchBranch(c, 'a2b'); // a2x, below a2b, is not loaded yet
    expect(c.leafId.value).toBe('a2b');
    c.merge(ALL);
    expect(c.leafId.value).toBe('a2x');
    expect(c.path.value).toEqual(['u1', 'a1', 'u2', 'a2b', 'a2x']);
  });

  it('completeChat tries again after a failure, and gives up on 404 or a closed chat', async () => {
    let fail = 1;
    const fetch = vi.fn(async () => (fail-- > 0 ? json(503, { error: { code: 'unavailable', message: 'later' } }) : json(200, { chat, messages: ALL })));
    vi.stubGlobal('fetch', fetch);
    const c = new OpenChat(chat, TAIL, true);
    await completeChat(c, [0, 1]);
    expect(fetch).toHaveBeenCalledTimes(2);
    expect(c.partial.value).toBe(false);

    const gone = vi.fn(async () => json(404, { error: { code: 'not_found', message: 'no such chat' } }));
    vi.stubGlobal('fetch', gone);
    const d = new OpenChat(chat, TAIL, true);
    await completeChat(d, [0, 1, 1]);
    expect(gone).toHaveBeenCalledTimes(1);
    expect(d.partial.value).toBe(true);
    const e = new OpenChat(chat, TAIL, true);
    e.close();
    await completeChat(e);
    expect(gone).toHaveBeenCalledTimes(1);
  });

  it('refreshOpenChat of a partial chat merges everything in at once', async () => {
    let whole = false;
    vi.stubGlobal('fetch', vi.fn(async (url: string) => {
      if (url.endsWith('?tail=60')) return json(200, { chat, messages: TAIL, partial: true, message_count: ALL.length });
      if (!whole) return new Promise<Response>(() => {}); // the completing request hangs
      return json(200, { chat, messages: ALL });
    }));
    early.chat = { id: 'c1', p: api.chatTail('c1', 60) };
    openEarlyChat();
    for (let i = 0; i < 20 && !openChat.value; i++) await tick();
    const c = openChat.value!;
    expect(c.partial.value).toBe(true);
    whole = true;
    await refreshOpenChat();
    expect(c.partial.value).toBe(false);
    expect(c.path.value).toEqual(['u1', 'a1', 'u2', 'a2', 'u3', 'a3']);
  });
});
