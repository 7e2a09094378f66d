// errors.spec.mjs - an upstream error is shown inline on the failed message,
// and Retry (the fake's "-once" faults succeed the second time) works.
import { test, expect, signUp, setProviderKey, newChat, send, assistants } from '../lib/fixtures.mjs';

test.describe('upstream 500 once', () => {
  // The server does not retry by itself here (CHATOPENAII_RETRY_MAX=0 in the fixture).
  test.use({ serverEnv: { CHATOPENAII_DEFAULT_MODEL: 'fault:500-once' } });

  test('the error is shown on the failed message and Retry answers', async ({ page, providerURL, fake }) => {
    await signUp(page);
    await setProviderKey(page, providerURL);
    await newChat(page);
    await send(page, 'Please answer this');
    const failed = assistants(page).first();
    await expect(failed).toHaveAttribute('data-status', 'error');
    const error = failed.getByTestId('message-error');
    await expect(error).toBeVisible();
    await expect(error).toHaveAttribute('role', 'alert');
    await expect(error.getByRole('paragraph')).not.toBeEmpty();
    // the composer stays usable after a failure
    await expect(page.getByTestId('send')).toBeVisible();

    await error.getByRole('button', { name: 'Retry' }).click();
    const answer = assistants(page).first();
    await expect(answer).toHaveAttribute('data-status', 'complete');
    await expect(answer.getByTestId('message-error')).toHaveCount(0);
    await expect(answer.getByTestId('message-text')).not.toBeEmpty();
    await expect(answer.getByTestId('branch-pos')).toHaveText('2 / 2');
    // the failed attempt is kept as the first version, still with its error
    await answer.getByRole('button', { name: 'Previous version' }).click();
    await expect(assistants(page).first().getByTestId('message-error')).toBeVisible();
    const calls = fake.chatRequests().filter((b) => b.model === 'fault:500-once');
    expect(calls.length).toBeGreaterThanOrEqual(2);
  });
});

test.describe('upstream error in the middle of the stream', () => {
  test.use({ serverEnv: { CHATOPENAII_DEFAULT_MODEL: 'fault:inline-error' } });

  test('an in-stream error frame fails the message inline', async ({ page, providerURL }) => {
    await signUp(page);
    await setProviderKey(page, providerURL);
    await newChat(page);
    await send(page, 'Stream then fail');
    const failed = assistants(page).first();
    await expect(failed).toHaveAttribute('data-status', 'error');
    await expect(failed.getByTestId('message-error')).toBeVisible();
    await expect(failed.getByTestId('message-error').getByRole('button', { name: 'Retry' })).toBeEnabled();
    // still shown after a reload (the error is stored with the message)
    await page.reload();
    await expect(assistants(page).first().getByTestId('message-error')).toBeVisible();
  });
});

test.describe('a rejected key', () => {
  test('a 401 from the provider is explained on the message', async ({ page, providerURL }) => {
    await signUp(page);
    await setProviderKey(page, providerURL, 'sk-bad');
    await newChat(page);
    await send(page, 'Hello?');
    const failed = assistants(page).first();
    await expect(failed).toHaveAttribute('data-status', 'error');
    await expect(failed.getByTestId('message-error')).toBeVisible();
    await expect(failed.getByTestId('message-error')).toContainText(/key/i);
  });
});
