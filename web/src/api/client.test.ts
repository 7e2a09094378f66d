import { afterEach, describe, expect, it, vi } from 'vitest';
import { api, ApiError, followTurn, setUnauthorizedHandler } from './client';
import type { TurnEvent } from './types';

function sseResponse(chunks: string[]): Response {
  const enc = new TextEncoder();
  const body = new ReadableStream<Uint8Array>({
    start(c) {
      for (const ch of chunks) c.enqueue(enc.encode(ch));
      c.close();
    },
  });
  return new Response(body, { status: 200, headers: { 'Content-Type': 'text/event-stream' } });
}

describe('api client', () => {
  afterEach(() => vi.unstubAllGlobals());

  it('sends the CSRF header on unsafe requests, never on GET; same-origin credentials', async () => {
    const calls: [string, RequestInit][] = [];
    vi.stubGlobal('fetch', vi.fn(async (url: string, init: RequestInit) => {
      calls.push([url, init]);
      return new Response(JSON.stringify({ chat: { id: 'c1' } }), { status: 200 });
    }));
    await api.chat('c1');
    await api.updateChat('c1', { title: 'x' });
    const [getUrl, getInit] = calls[0]!;
    expect(getUrl).toBe('/api/v1/chats/c1');
    expect((getInit.headers as Record<string, string>)['X-Requested-With']).toBeUndefined();
    expect(getInit.credentials).toBe('same-origin');
    const [, patchInit] = calls[1]!;
    expect(patchInit.method).toBe('PATCH');
    expect((patchInit.headers as Record<string, string>)['X-Requested-With']).toBe('chatopenaii');
    expect(patchInit.body).toBe('{"title":"x"}');
  });

  it('turns error JSON into ApiError, and reports 401 as an ended session', async () => {
    const on401 = vi.fn();
    setUnauthorizedHandler(on401);
    vi.stubGlobal('fetch', vi.fn(async () => new Response(JSON.stringify({ error: { code: 'not_found', message: 'no such chat' } }), { status: 404 })));
    const e = await api.chat('x').catch((x: unknown) => x);
    expect(e).toBeInstanceOf(ApiError);
    expect((e as ApiError).code).toBe('not_found');
    expect((e as ApiError).message).toBe('no such chat');
    vi.stubGlobal('fetch', vi.fn(async () => new Response(JSON.stringify({ error: { code: 'unauthorized', message: 'sign in' } }), { status: 401 })));
    await api.chats().catch(() => {});
    expect(on401).toHaveBeenCalledTimes(1);
    // A wrong password is an answer, not an expired session.
    await api.login('a@b.c', 'x').catch(() => {});
    expect(on401).toHaveBeenCalledTimes(1);
  });

  it('a network failure is an ApiError with status 0', async () => {
    vi.stubGlobal('fetch', vi.fn(async () => Promise.reject(new TypeError('Failed to fetch'))));
    const e = (await api.me().catch((x: unknown) => x)) as ApiError;
    expect(e.status).toBe(0);
    expect(e.isNetwork).toBe(true);
  });

  it('followTurn reconnects after a drop and resumes with Last-Event-ID', async () => {
    const seen: { url: string; lei: string | undefined }[] = [];
    let n = 0;
    vi.stubGlobal('fetch', vi.fn(async (url: string, init: RequestInit) => {
      seen.push({ url, lei: (init.headers as Record<string, string>)['Last-Event-ID'] });
      n++;
      if (n === 1) return sseResponse(['id: 1\nevent: delta\ndata: {"content":"He"}\n\n', ': ping\n\nid: 2\nevent: del', 'ta\ndata: {"content":"l"}\n\n']);
      return sseResponse(['id: 3\r\nevent: delta\r\ndata: {"content":"lo"}\r\n\r\n', 'id: 4\nevent: done\ndata: {"status":"complete","message":{}}\n\n']);
    }));
    const events: TurnEvent[] = [];
    const states: string[] = [];
    await new Promise<void>((done) => {
      followTurn('t1', {
        onEvent: (e) => {
          events.push(e);
          if (e.type === 'done') done();
        },
        onConnection: (s) => states.push(s),
      });
    });
    expect(events.map((e) => [e.type, e.id])).toEqual([
      ['delta', 1],
      ['delta', 2],
      ['delta', 3],
      ['done', 4],
    ]);
    expect(seen[0]!.lei).toBeUndefined();
    expect(seen[1]!.lei).toBe('2');
    expect(seen[1]!.url).toBe('/api/v1/turns/t1/events');
    expect(states).toContain('reconnecting');
  });

  it('followTurn gives up on 404', async () => {
    vi.stubGlobal('fetch', vi.fn(async () => new Response(JSON.stringify({ error: { code: 'not_found', message: 'no such turn' } }), { status: 404 })));
    const err = await new Promise<ApiError>((resolve) => followTurn('t2', { onEvent: () => {}, onFail: resolve }));
    expect(err.status).toBe(404);
  });
});
