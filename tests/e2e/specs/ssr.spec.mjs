// ssr.spec.mjs - opening /c/<id> signed in: the server puts the chat's last
// messages into the page (server/src/http/ssr.c), shown by the browser with
// no script at all; with the app, the same messages are painted from that
// HTML and then replaced by the app's own list (web/src/lib/ssr.ts), at the
// bottom, with no duplicate left.
import { test, expect, seedChat, seededId as idOf } from '../lib/fixtures.mjs';

const N = 40;

const chatWithMessages = (page, server) => seedChat(page, server, {
  n: N,
  title: 'Rendered chat',
  text: "'Message ' || i || '. Some **markdown** text <script>window.__pwned = 1</script> and more words to wrap a line or two.'",
});

test('without any script, the page shows the chat\'s last messages at the bottom of the view', async ({ page, server, browser, baseURL }) => {
  const chatId = await chatWithMessages(page, server);
  const ctx = await browser.newContext({ baseURL, javaScriptEnabled: false, viewport: { width: 1280, height: 800 } });
  try {
    await ctx.addCookies(await page.context().cookies());
    const p = await ctx.newPage();
    await p.goto(`/c/${chatId}`);
    const latest = p.locator(`#ssr [data-testid="message"][data-id="${idOf(N)}"]`);
    await expect(latest).toBeInViewport();
    await expect(latest.getByTestId('message-text')).toContainText(`Message ${N}. Some markdown text <script>`);
    await expect(latest.locator('strong')).toHaveText('markdown');
    await expect(p.locator('#ssr [data-testid="message"]')).toHaveCount(10);
    await expect(p.locator('#ssr script')).toHaveCount(0);
  } finally {
    await ctx.close();
  }
});

test('the app replaces the server-rendered messages: same chat, at the bottom, no duplicates', async ({ page, server }) => {
  const chatId = await chatWithMessages(page, server);
  await page.addInitScript((last) => {
    window.__ssr = { atDcl: false, hiddenAt: null };
    document.addEventListener('DOMContentLoaded', () => {
      window.__ssr.atDcl = !!document.querySelector(`#ssr [data-id="${last}"]`);
    });
  }, idOf(N));
  await page.goto(`/c/${chatId}`);
  const latest = page.locator(`[data-testid="message"][data-id="${idOf(N)}"]`);
  // The app's row, inside the app, at the bottom of its list.
  await expect(page.locator(`#app [data-testid="message"][data-id="${idOf(N)}"]`)).toBeInViewport({ timeout: 15000 });
  expect(await page.evaluate(() => window.__ssr.atDcl), 'the HTML held the rendered chat').toBe(true);
  await expect(page.locator('#ssr')).toHaveCount(0);
  await expect(latest).toHaveCount(1);
  const ids = await page.locator('[data-testid="message"]').evaluateAll((els) => els.map((e) => e.dataset.id));
  expect(new Set(ids).size, `ids: ${ids.join(', ')}`).toBe(ids.length);
  // nothing is left of the block
  await expect(page.locator('.ssr:visible')).toHaveCount(0);
  await expect(page.locator('.ssr')).toHaveCount(0, { timeout: 5000 });
  const atBottom = await page.getByTestId('message-list').evaluate((el) => el.scrollHeight - el.scrollTop - el.clientHeight < 48);
  expect(atBottom).toBe(true);
  expect(await page.evaluate(() => window.__pwned)).toBeUndefined();
});

test('signing out leaves no rendered chat behind; another session gets none', async ({ page, server, browser, baseURL }) => {
  const chatId = await chatWithMessages(page, server);
  await page.goto(`/c/${chatId}`);
  await expect(page.locator(`#app [data-id="${idOf(N)}"]`)).toBeInViewport({ timeout: 15000 });
  // a signed-out browser on the same URL: the plain page
  const ctx = await browser.newContext({ baseURL });
  try {
    const p = await ctx.newPage();
    const res = await p.goto(`/c/${chatId}`);
    expect(await res.text()).not.toContain('id="ssr"');
    await expect(p.locator('.ssr')).toHaveCount(0);
  } finally {
    await ctx.close();
  }
  await page.evaluate(() => fetch('/api/v1/auth/logout', { method: 'POST', headers: { 'x-requested-with': 'chatopenaii' } }));
  await page.reload();
  await expect(page.locator('.ssr')).toHaveCount(0);
  await expect(page.locator(`[data-id="${idOf(N)}"]`)).toHaveCount(0);
});
