import { afterEach, describe, expect, it, vi } from 'vitest';
import { closeChat, chatError, chatLoading, openChat, openChatById, openEarlyChat, refreshOpenChat, stopGenerating, switchBranch, OpenChat } from './chat';
import { early } from './early';
import { api } from '../api/client';

/** What boot.ts and main.tsx do for a page opened on /c/<id>. */
function prefetchChat(id: string): void {
  early.chat = { id, p: api.chatEarly(id) };
  openEarlyChat();
}
import { toasts } from './ui';
import type { Chat, Message } from '../api/types';

const chat: Chat = {
  id: 'c1',
  title: 'T',
  model: null,
  system_prompt: null,
  params: {},
  folder_id: null,
  workspace_id: null,
  current_leaf_id: 'a1',
  created_at: 1,
  updated_at: 1,
};
function msg(id: string, parent: string | null, role: Message['role'], text: string, status: Message['status'] = 'complete', at = 1): Message {
  return { id, chat_id: 'c1', parent_id: parent, role, content: text ? [{ type: 'text', text }] : [], model: null, status, error: null, usage: null, created_at: at, updated_at: at };
}
function json(status: number, body: unknown): Response {
  return new Response(JSON.stringify(body), { status });
}

describe('the open chat', () => {
  afterEach(() => {
    closeChat();
    vi.unstubAllGlobals();
    toasts.value = [];
  });

  it('a streaming message whose turn is gone (404) is reloaded as stored', async () => {
    const stored = msg('a1', 'u1', 'assistant', 'final text', 'interrupted');
    const fetch = vi.fn(async (url: string) => {
      if (url.endsWith('/turns/a1/events')) return json(404, { error: { code: 'not_found', message: 'no such turn' } });
      return json(200, { chat, messages: [msg('u1', null, 'user', 'hi'), stored] });
    });
    vi.stubGlobal('fetch', fetch);
    const c = new OpenChat(chat, [msg('u1', null, 'user', 'hi'), msg('a1', 'u1', 'assistant', 'par', 'streaming')]);
    expect(c.generating.value).toBe(false);
    c.followStreaming();
    expect(c.generating.value).toBe(true);
    for (let i = 0; i < 50 && c.message('a1')!.value.status === 'streaming'; i++) await new Promise((ok) => setTimeout(ok, 10));
    expect(c.message('a1')!.value.status).toBe('interrupted');
    expect(c.message('a1')!.value.content).toEqual([{ type: 'text', text: 'final text' }]);
    expect(c.message('a1')!.value.rev).toBe(1);
    expect(c.generating.value).toBe(false);
    c.close();
  });

  it('stopGenerating stops every live message on the branch, and reports failures', async () => {
    const calls: string[] = [];
    vi.stubGlobal('fetch', vi.fn(async (url: string, init: RequestInit = {}) => {
      calls.push(`${init.method ?? 'GET'} ${url}`);
      if (url.endsWith('/events')) return new Response(new ReadableStream({ start() {} }), { status: 200 }); // never ends
      return json(500, { error: { code: 'internal', message: 'stop failed' } });
    }));
    const c = new OpenChat(chat, [msg('u1', null, 'user', 'hi'), msg('a1', 'u1', 'assistant', '', 'streaming')]);
    c.followStreaming();
    await stopGenerating(c);
    expect(calls).toContain('POST /api/v1/turns/a1/stop');
    expect(toasts.value.map((t) => t.text)).toEqual(['stop failed']);
    c.close();
  });

  it('switchBranch goes back to the previous leaf when the server refuses', async () => {
    vi.stubGlobal('fetch', vi.fn(async () => json(409, { error: { code: 'conflict', message: 'busy' } })));
    const c = new OpenChat({ ...chat, current_leaf_id: 'a2' }, [msg('u1', null, 'user', 'hi'), msg('a1', 'u1', 'assistant', 'one', 'complete', 2), msg('a2', 'u1', 'assistant', 'two', 'complete', 3)]);
    expect(c.leafId.value).toBe('a2');
    expect(c.siblings('a2')).toMatchObject({ index: 1, count: 2, prev: 'a1' });
    await switchBranch(c, 'a1');
    expect(c.leafId.value).toBe('a2');
    expect(toasts.value.map((t) => t.text)).toEqual(['busy']);
  });

  it('refreshOpenChat picks up messages another tab sent, and changed ones', async () => {
    let messages = [msg('u1', null, 'user', 'hi'), msg('a1', 'u1', 'assistant', 'hello')];
    let current = 'a1';
    vi.stubGlobal('fetch', vi.fn(async () => json(200, { chat: { ...chat, current_leaf_id: current }, messages })));
    await openChatById('c1');
    const c = openChat.value!;
    expect(c.path.value).toEqual(['u1', 'a1']);
    messages = [msg('u1', null, 'user', 'hi'), msg('a1', 'u1', 'assistant', 'hello, edited', 'complete', 5), msg('u2', 'a1', 'user', 'from the other tab', 'complete', 6), msg('a2', 'u2', 'assistant', 'answer', 'complete', 7)];
    current = 'a2';
    await refreshOpenChat();
    expect(c.path.value).toEqual(['u1', 'a1', 'u2', 'a2']);
    expect(c.message('a1')!.value.content).toEqual([{ type: 'text', text: 'hello, edited' }]);
    expect(c.message('a1')!.value.rev).toBe(1);
    // opening the same chat again keeps it
    await openChatById('c1');
    expect(openChat.value).toBe(c);
  });

  it('a chat that fails to load sets the error; a newer open wins over an older one', async () => {
    vi.stubGlobal('fetch', vi.fn(async (url: string) => {
      if (url.endsWith('/c-slow')) {
        await new Promise((ok) => setTimeout(ok, 30));
        return json(200, { chat: { ...chat, id: 'c-slow' }, messages: [] });
      }
      return json(503, { error: { code: 'unavailable', message: 'try later' } });
    }));
    const slow = openChatById('c-slow');
    await openChatById('c-bad');
    await slow;
    expect(openChat.value).toBeNull();
  });

  it('a chat prefetched at boot opens as soon as it arrives; opening it meanwhile joins that request', async () => {
    let release!: () => void;
    const gate = new Promise<void>((ok) => (release = ok));
    const fetch = vi.fn(async () => {
      await gate;
      return json(200, { chat, messages: [msg('u1', null, 'user', 'hi'), msg('a1', 'u1', 'assistant', 'hello')] });
    });
    vi.stubGlobal('fetch', fetch);
    prefetchChat('c1');
    expect(chatLoading.value).toBe(true);
    const joined = openChatById('c1');
    expect(fetch).toHaveBeenCalledTimes(1);
    release();
    await joined;
    expect(openChat.value?.id).toBe('c1');
    expect(openChat.value?.path.value).toEqual(['u1', 'a1']);
    expect(chatLoading.value).toBe(false);
    expect(fetch).toHaveBeenCalledTimes(1);
  });

  it('a prefetch answered 401 (signed out) shows no error, and opening the chat later asks again', async () => {
    let signedIn = false;
    const fetch = vi.fn(async () =>
      signedIn ? json(200, { chat, messages: [msg('u1', null, 'user', 'hi')] }) : json(401, { error: { code: 'unauthorized', message: 'sign in' } }),
    );
    vi.stubGlobal('fetch', fetch);
    prefetchChat('c1');
    for (let i = 0; i < 20 && chatLoading.value; i++) await new Promise((ok) => setTimeout(ok, 5));
    expect(chatLoading.value).toBe(false);
    expect(chatError.value).toBeNull();
    expect(openChat.value).toBeNull();
    signedIn = true;
    await openChatById('c1');
    expect(fetch).toHaveBeenCalledTimes(2);
    expect(openChat.value?.path.value).toEqual(['u1']);
  });

  it('a prefetch that fails otherwise (404) is reported like any open', async () => {
    vi.stubGlobal('fetch', vi.fn(async () => json(404, { error: { code: 'not_found', message: 'no such chat' } })));
    prefetchChat('gone');
    await openChatById('gone');
    expect(chatError.value?.status).toBe(404);
  });

  it('messages get their signal when first asked for, and a stored streaming one is still followed', () => {
    vi.stubGlobal('fetch', vi.fn(async () => new Response(new ReadableStream({ start() {} }), { status: 200 })));
    const msgs = [msg('u1', null, 'user', 'hi'), msg('a1', 'u1', 'assistant', 'hel', 'streaming')];
    const c = new OpenChat(chat, msgs);
    expect(c.size).toBe(2);
    const a1 = c.message('a1')!;
    expect(a1.value).toEqual({ ...msgs[1], rev: 0 });
    expect(c.message('a1')).toBe(a1); // the same signal every time
    expect(c.message('nope')).toBeUndefined();
    const c2 = new OpenChat(chat, msgs);
    c2.followStreaming();
    expect(c2.generating.value).toBe(true);
    expect(c2.live.value.has('a1')).toBe(true);
    c2.close();
  });
});
