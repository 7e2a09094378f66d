// long-chat.spec.mjs - a chat of 2,000 messages: it opens at the latest
// message (virtualized: only rows near the viewport are in the DOM), stays
// there while rows are measured, and scrolling up by hand offers "Jump to
// latest", which brings the latest message back.
import { test, expect, seedChat, seededId as idOf } from '../lib/fixtures.mjs';

const N = 2000;

test('a 2,000-message chat opens at the latest message; scrolling up offers Jump to latest', async ({ page, server }) => {
  const text = 'Lorem ipsum dolor sit amet, **consectetur** adipiscing elit; sed do eiusmod `tempor` incididunt. '.repeat(4);
  const chatId = await seedChat(page, server, {
    n: N,
    title: 'Long chat',
    text: `'Message ' || i || '. ' || CASE WHEN i % 7 = 0 THEN '${text}${text}${text}' ELSE '${text}' END`,
  });

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
