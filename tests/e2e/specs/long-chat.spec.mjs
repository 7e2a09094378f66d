// long-chat.spec.mjs - a chat of 2,000 messages: it opens at the latest
// message (virtualized: only rows near the viewport are in the DOM), stays
// there while rows are measured, and scrolling up by hand offers "Jump to
// latest", which brings the latest message back.
import { test, expect, signUp } from '../lib/fixtures.mjs';
import { dbExec } from '../../lib/harness.mjs';

const N = 2000;
const idOf = (i) => `01a25000-0000-7000-8000-${String(i).padStart(12, '0')}`;

test('a 2,000-message chat opens at the latest message; scrolling up offers Jump to latest', async ({ page, server }) => {
  await signUp(page);
  const created = await page.evaluate(async () => {
    const r = await fetch('/api/v1/chats', {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-requested-with': 'chatopenaii' },
      body: JSON.stringify({ title: 'Long chat' }),
    });
    return r.json();
  });
  const chatId = created.chat.id;
  const text = 'Lorem ipsum dolor sit amet, **consectetur** adipiscing elit; sed do eiusmod `tempor` incididunt. '.repeat(4);
  dbExec(server.dataDir, `
    WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ${N})
    INSERT INTO messages (id, chat_id, parent_id, role, content, model, status, created_at, updated_at)
    SELECT printf('01a25000-0000-7000-8000-%012d', i), '${chatId}',
           CASE WHEN i = 1 THEN NULL ELSE printf('01a25000-0000-7000-8000-%012d', i - 1) END,
           CASE WHEN i % 2 = 1 THEN 'user' ELSE 'assistant' END,
           json_array(json_object('type', 'text', 'text', 'Message ' || i || '. ' ||
             CASE WHEN i % 7 = 0 THEN '${text}${text}${text}' ELSE '${text}' END)),
           'gpt-4o-mini', 'complete', 1790000000000 + i, 1790000000000 + i FROM n;
    UPDATE chats SET current_leaf_id = '${idOf(N)}' WHERE id = '${chatId}';`);

  await page.goto(`/c/${chatId}`);
  const latest = page.locator(`[data-testid="message"][data-id="${idOf(N)}"]`);
  await expect(latest).toBeInViewport({ timeout: 15000 });
  // Rows get measured after the first render; the list must stay at the bottom.
  await page.waitForTimeout(500);
  await expect(latest).toBeInViewport();
  await expect(page.getByTestId('jump-latest')).toHaveCount(0);
  const rows = await page.locator('[data-testid="message"]').count();
  expect(rows, 'virtualized: only rows near the viewport are rendered').toBeLessThan(100);

  // Scroll up by hand: the list stays where the person put it.
  const list = page.getByTestId('message-list');
  await list.hover();
  for (let i = 0; i < 10; i++) await page.mouse.wheel(0, -1500);
  await expect(page.getByTestId('jump-latest')).toBeVisible();
  await expect(latest).not.toBeInViewport();
  await page.waitForTimeout(300);
  await expect(latest).not.toBeInViewport();

  await page.getByTestId('jump-latest').click();
  await expect(latest).toBeInViewport();
  await expect(page.getByTestId('jump-latest')).toHaveCount(0);
});
