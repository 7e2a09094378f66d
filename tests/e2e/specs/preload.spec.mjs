// preload.spec.mjs - opening /c/<id>: the session and the chat's last
// messages are asked for by the page's HTML (<link rel="preload">, /me in
// web/index.html, the chat's tail added by the server), while the script
// loads; the app's own requests for them take the preloaded answers instead
// of asking again, and the whole chat still arrives after the first paint.
import { test, expect, signUp, seedChat, seededId as idOf } from '../lib/fixtures.mjs';

const N = 300;

test('a chat opened by URL uses the preloaded /me and tail answers, each requested once', async ({ page, server }) => {
  const chatId = await seedChat(page, server, {
    n: N, title: 'Preloaded chat', text: "'Message ' || i || '. Some **markdown** text.'",
  });

  const requests = [];
  page.on('request', (r) => {
    const u = new URL(r.url());
    if (u.pathname.startsWith('/api/')) requests.push(u.pathname + u.search);
  });
  await page.goto(`/c/${chatId}`);
  const latest = page.locator(`[data-testid="message"][data-id="${idOf(N)}"]`);
  await expect(latest).toBeInViewport({ timeout: 15000 });
  await expect(latest.getByTestId('message-text')).toContainText(`Message ${N}.`);
  // The rest of the chat is merged in after the first paint.
  await expect(page.getByTestId('loading-earlier')).toHaveCount(0);
  await page.waitForTimeout(300);

  const tail = `/api/v1/chats/${chatId}?tail=60`;
  expect(requests.filter((r) => r === tail), `requests: ${requests.join(', ')}`).toHaveLength(1);
  expect(requests.filter((r) => r === '/api/v1/me'), `requests: ${requests.join(', ')}`).toHaveLength(1);
  expect(requests.filter((r) => r === `/api/v1/chats/${chatId}`)).toHaveLength(1);
  // Resource Timing: one entry for each, made by the <link>, none by a fetch().
  const entries = await page.evaluate(() => performance.getEntriesByType('resource').map((e) => ({ path: new URL(e.name).pathname + new URL(e.name).search, by: e.initiatorType })));
  expect(entries.filter((e) => e.path === tail)).toEqual([{ path: tail, by: 'link' }]);
  expect(entries.filter((e) => e.path === '/api/v1/me')).toEqual([{ path: '/api/v1/me', by: 'link' }]);
  const html = await (await page.request.get(`/c/${chatId}`)).text();
  expect(html).toContain(`<link rel="preload" href="${tail}" as="fetch" crossorigin>`);
});

test('signed out, a chat URL shows sign-in; after signing in the chat opens', async ({ page, browser, baseURL }) => {
  await signUp(page);
  const created = await page.evaluate(async () => {
    const r = await fetch('/api/v1/chats', {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-requested-with': 'chatopenaii' },
      body: JSON.stringify({ title: 'Mine' }),
    });
    return r.json();
  });
  const ctx = await browser.newContext({ baseURL });
  const other = await ctx.newPage();
  await other.goto(`/c/${created.chat.id}`);
  // Both preloads answered 401: the app shows sign-in, no error.
  await expect(other.getByRole('button', { name: /sign in/i }).first()).toBeVisible();
  await ctx.close();
});
