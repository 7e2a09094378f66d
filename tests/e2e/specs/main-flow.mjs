// main-flow.mjs - the main flow, shared by the desktop and the phone spec:
// sign up, set the key, chat (stream, stop, regenerate, edit + branches,
// reload mid-stream), rename and delete the chat, sign out.
import {
  expect, signUp, setProviderKey, newChat, send, assistants, users, openDrawerIfNeeded, expectAccessible,
} from '../lib/fixtures.mjs';

// The answer model: "slow:<ms>:<count>" drips w0 w1 ... w<count-1>.
export const SLOW_COUNT = 120;
export const SLOW_MODEL = `slow:30:${SLOW_COUNT}`;
const LAST_WORD = `w${SLOW_COUNT - 1}`;

export async function mainFlow(page, { providerURL, a11y = false }) {
  // ---- sign up: without a key the composer says why it cannot send
  await signUp(page);
  await expect(page.getByTestId('composer-reason')).toContainText('Add your provider API key');
  await expect(page.getByTestId('composer')).toBeDisabled();
  if (a11y) await expectAccessible(page, 'the new-chat screen without a key');

  // ---- set the key in Settings
  await setProviderKey(page, providerURL);
  if (a11y) await expectAccessible(page, 'settings');

  // ---- new chat, streamed answer
  await newChat(page);
  await expect(page.getByTestId('composer-reason')).toHaveCount(0);
  await send(page, 'Tell me a long story please');
  await expect(page).toHaveURL(/\/c\/[0-9a-zA-Z_-]+$/);
  const chatUrl = page.url();
  await expect(users(page)).toHaveCount(1);
  await expect(users(page).first().getByTestId('message-text')).toHaveText('Tell me a long story please');
  const first = assistants(page).first();
  await expect(first).toHaveAttribute('data-status', 'streaming');
  await expect(first.getByTestId('message-text')).toContainText('w3');
  if (a11y) await expectAccessible(page, 'a chat while an answer streams');

  // ---- stop
  await page.getByTestId('stop').click();
  await expect(first).toHaveAttribute('data-status', 'stopped');
  await expect(first.getByTestId('message-details')).toContainText('stopped');
  await expect(page.getByTestId('send')).toBeVisible();
  const stoppedText = await first.getByTestId('message-text').innerText();
  expect(stoppedText).not.toContain(LAST_WORD);
  await page.waitForTimeout(300);
  expect(await first.getByTestId('message-text').innerText(), 'nothing arrives after stop').toBe(stoppedText);

  // ---- regenerate: a second version of the answer, streamed to the end
  await first.getByRole('button', { name: 'Regenerate answer' }).click();
  await expect(assistants(page)).toHaveCount(1);
  const answer = assistants(page).first();
  await expect(answer.getByTestId('branch-pos')).toHaveText('2 / 2');
  await expect(answer).toHaveAttribute('data-status', 'complete', { timeout: 20_000 });
  await expect(answer.getByTestId('message-text')).toContainText(LAST_WORD);
  // back to the stopped version and forth again
  await answer.getByRole('button', { name: 'Previous version' }).click();
  await expect(answer.getByTestId('branch-pos')).toHaveText('1 / 2');
  await expect(assistants(page).first()).toHaveAttribute('data-status', 'stopped');
  await assistants(page).first().getByRole('button', { name: 'Next version' }).click();
  await expect(assistants(page).first().getByTestId('branch-pos')).toHaveText('2 / 2');
  await expect(assistants(page).first()).toHaveAttribute('data-status', 'complete');

  // ---- edit the user message twice: three versions, then switch between them
  const editTo = async (text) => {
    const u = users(page).first();
    await u.hover();
    await u.getByRole('button', { name: 'Edit message' }).click();
    const box = u.getByRole('textbox', { name: 'Edit message' });
    await box.fill(text);
    await u.getByRole('button', { name: 'Send', exact: true }).click();
    await expect(users(page).first().getByTestId('message-text')).toHaveText(text);
    await expect(assistants(page).first()).toHaveAttribute('data-status', 'complete', { timeout: 20_000 });
  };
  await editTo('Tell me a short story instead');
  await expect(users(page).first().getByTestId('branch-pos')).toHaveText('2 / 2');
  await editTo('Tell me a poem');
  const user = users(page).first();
  await expect(user.getByTestId('branch-pos')).toHaveText('3 / 3');
  await user.getByRole('button', { name: 'Previous version' }).click();
  await expect(user.getByTestId('branch-pos')).toHaveText('2 / 3');
  await expect(user.getByTestId('message-text')).toHaveText('Tell me a short story instead');
  await user.getByRole('button', { name: 'Previous version' }).click();
  await expect(user.getByTestId('branch-pos')).toHaveText('1 / 3');
  await expect(user.getByTestId('message-text')).toHaveText('Tell me a long story please');
  // the first user version still has its two answers, the regenerated one current
  await expect(assistants(page).first().getByTestId('branch-pos')).toHaveText('2 / 2');
  await user.getByRole('button', { name: 'Next version' }).click();
  await expect(user.getByTestId('branch-pos')).toHaveText('2 / 3');
  await expect(assistants(page).first().getByTestId('branch-nav')).toHaveCount(0);
  // the chosen branch survives a reload
  await page.reload();
  await expect(users(page).first().getByTestId('branch-pos')).toHaveText('2 / 3');
  await expect(users(page).first().getByTestId('message-text')).toHaveText('Tell me a short story instead');

  // ---- reload mid-stream: the answer resumes and finishes
  await send(page, 'And another one');
  await expect(users(page)).toHaveCount(2);
  const live = assistants(page).nth(1);
  await expect(live).toHaveAttribute('data-status', 'streaming');
  await expect(live.getByTestId('message-text')).toContainText('w5');
  await page.reload();
  const resumed = assistants(page).nth(1);
  await expect(users(page).nth(1).getByTestId('message-text')).toHaveText('And another one');
  await expect(resumed).toHaveAttribute('data-status', 'streaming');
  await expect(resumed).toHaveAttribute('data-status', 'complete', { timeout: 20_000 });
  const full = await resumed.getByTestId('message-text').innerText();
  expect(full).toContain('w0 w1 w2');
  expect(full).toContain(LAST_WORD);
  expect(full.match(/\bw10\b/g), 'no chunk repeated after the resume').toHaveLength(1);

  // ---- rename the chat (the title came from the fake: the first 4 words of a user message)
  await openDrawerIfNeeded(page);
  const row = page.getByTestId('chat-row');
  await expect(row).toHaveCount(1);
  await expect(row.getByRole('link')).toHaveText(/^Tell me a (long|short)$/);
  await row.hover();
  await row.getByRole('button', { name: /^Rename/ }).click();
  await page.getByTestId('rename-input').fill('My renamed chat');
  await page.getByTestId('rename-input').press('Enter');
  await expect(row.getByRole('link')).toHaveText('My renamed chat');
  await expect(page.getByTestId('chat-title')).toHaveText('My renamed chat');
  await page.reload();
  await expect(page.getByTestId('chat-title')).toHaveText('My renamed chat');

  // ---- delete it
  await openDrawerIfNeeded(page);
  await row.hover();
  await row.getByRole('button', { name: 'Delete “My renamed chat”' }).click();
  const dialog = page.getByTestId('confirm-dialog');
  await expect(dialog).toBeVisible();
  if (a11y) await expectAccessible(page, 'the delete confirmation');
  await dialog.getByRole('button', { name: 'Delete', exact: true }).click();
  await expect(page.getByTestId('chat-row')).toHaveCount(0);
  await expect(page).not.toHaveURL(chatUrl);
  await page.goto(chatUrl);
  await expect(page.getByText('This chat does not exist')).toBeVisible();

  // ---- sign out
  await openDrawerIfNeeded(page);
  await page.getByTestId('sign-out').click();
  await expect(page.getByRole('heading', { name: 'Welcome back' })).toBeVisible();
  await page.reload();
  await expect(page.getByRole('heading', { name: 'Welcome back' })).toBeVisible();
  if (a11y) await expectAccessible(page, 'sign-in');
}
