import { afterEach, describe, expect, it, vi } from 'vitest';
import { checkSession, sessionChecked, user } from './session';
import { CHAT_WAIT_MS, early } from './early';
import { api } from '../api/client';

describe('the session check', () => {
  afterEach(() => vi.unstubAllGlobals());

  it('uses the /me request made at boot rather than asking again', async () => {
    const fetch = vi.fn(async () => new Response(JSON.stringify({ user: { id: 'u1', email: 'me@example.com' } }), { status: 200 }));
    vi.stubGlobal('fetch', fetch);
    early.me = api.me(); // what boot.ts does
    expect(fetch).toHaveBeenCalledTimes(1);
    await checkSession();
    expect(fetch).toHaveBeenCalledTimes(1);
    expect(user.value?.email).toBe('me@example.com');
    expect(sessionChecked.value).toBe(true);
    // Later checks ask the server.
    await checkSession();
    expect(fetch).toHaveBeenCalledTimes(2);
  });
});

describe('the session check at boot on a chat URL', () => {
  afterEach(() => {
    vi.unstubAllGlobals();
    vi.useRealTimers();
    early.chatSettled = null;
  });

  it('signs in once the early chat has answered, so that both render together', async () => {
    // Fake timers: on a loaded machine five real 0 ms timeouts could take
    // longer than CHAT_WAIT_MS; here the wait cannot run out meanwhile.
    vi.useFakeTimers();
    vi.stubGlobal('fetch', vi.fn(async () => new Response(JSON.stringify({ user: { id: 'u1', email: 'a@example.com' } }), { status: 200 })));
    user.value = null;
    let answer!: () => void;
    early.me = api.me();
    early.chatSettled = new Promise<void>((ok) => (answer = ok));
    const done = checkSession();
    for (let i = 0; i < 5; i++) await vi.advanceTimersByTimeAsync(0);
    expect(user.value, 'still waiting for the chat').toBeNull();
    answer();
    await done;
    expect(user.peek()?.email).toBe('a@example.com');
  });

  it('does not wait for a slow chat longer than CHAT_WAIT_MS', async () => {
    vi.stubGlobal('fetch', vi.fn(async () => new Response(JSON.stringify({ user: { id: 'u1', email: 'b@example.com' } }), { status: 200 })));
    user.value = null;
    early.me = api.me();
    early.chatSettled = new Promise<void>(() => {}); // never answers
    const t0 = Date.now();
    await checkSession();
    expect(user.peek()?.email).toBe('b@example.com');
    expect(Date.now() - t0).toBeGreaterThanOrEqual(CHAT_WAIT_MS - 20);
    expect(Date.now() - t0).toBeLessThan(CHAT_WAIT_MS + 2000);
  });
});
