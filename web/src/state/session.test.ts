import { afterEach, describe, expect, it, vi } from 'vitest';
import { checkSession, sessionChecked, user } from './session';
import { early } from './early';
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
