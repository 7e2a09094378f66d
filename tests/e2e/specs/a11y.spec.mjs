// a11y.spec.mjs - axe-core on the screens the main flow does not cover
// (sign-in, sign-up with an error, a finished chat with the chat-settings
// dialog, settings with a saved key). The main flow checks the rest.
import { test, expect, signUp, setProviderKey, newChat, send, assistants, expectAccessible, gotoSettings } from '../lib/fixtures.mjs';

test('auth, chat and settings screens have no serious or critical axe violations', async ({ page, providerURL }) => {
  await page.goto('/');
  await expect(page.getByRole('heading', { name: 'Welcome back' })).toBeVisible();
  await expectAccessible(page, 'sign-in');
  await page.getByLabel('Email').fill('nobody@example.com');
  await page.getByLabel('Password', { exact: true }).fill('wrong password');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await expect(page.getByTestId('auth-error')).toHaveText('Wrong email or password.');
  await expectAccessible(page, 'sign-in with an error');
  await page.getByRole('button', { name: 'Create an account' }).click();
  await expect(page.getByRole('heading', { name: 'Create your account' })).toBeVisible();
  await expectAccessible(page, 'sign-up');

  await signUp(page);
  await setProviderKey(page, providerURL);
  await expectAccessible(page, 'settings with a saved key');
  await newChat(page);
  await send(page, 'Hello there');
  await expect(assistants(page).first()).toHaveAttribute('data-status', 'complete');
  await expectAccessible(page, 'a chat with an answer');
  await page.getByTestId('open-chat-settings').click();
  await expect(page.getByTestId('chat-settings')).toBeVisible();
  await expectAccessible(page, 'the chat-settings dialog');
  await page.getByTestId('chat-settings').getByRole('button', { name: 'Cancel' }).click();

  await page.emulateMedia({ colorScheme: 'dark' });
  await gotoSettings(page);
  await page.getByRole('radio', { name: 'Dark' }).check();
  await expectAccessible(page, 'settings, dark theme');
  await page.getByTestId('chat-row').getByRole('link').click();
  await expect(assistants(page).first()).toBeVisible();
  await expectAccessible(page, 'a chat, dark theme');
});
