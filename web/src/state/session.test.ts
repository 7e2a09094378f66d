import { afterEach, describe, expect, it, vi } from 'vitest';
import { checkSession, prefetchSession, sessionChecked, user } from './session';

describe('the session check', () => {
  afterEach(() => vi.unstubAllGlobals());

  it('uses the /me request made at boot rather than asking again', async () => {
    const fetch = vi.fn(async () => new Response(JSON.stringify({ user: { id: 'u1', email: 'me@example.com' } }), { status: 200 }));
    vi.stubGlobal('fetch', fetch);
    prefetchSession();
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
