// fixtures.mjs - Playwright fixtures: a fake OpenAI upstream per worker, and
// per test a fresh server (real binary, fresh data dir) whose URL is the
// test's baseURL. Each test can set extra server environment with
// test.use({ serverEnv: {...} }) and point the server at another upstream
// with test.use({ upstream: 'scripted' }).
import { test as base, expect } from '@playwright/test';
import AxeBuilder from '@axe-core/playwright';
import { startServer, dbExec } from '../../lib/harness.mjs';
import { startFakeOpenAI } from '../../upstream/fake-openai.mjs';
import { startScriptedUpstream } from './scripted-upstream.mjs';

export { expect };

export const PASSWORD = 'correct horse battery';

export const test = base.extend({
  serverEnv: [{}, { option: true }],
  upstream: ['fake', { option: true }],

  fake: [async ({}, use) => {
    const fake = await startFakeOpenAI();
    await use(fake);
    await fake.close();
  }, { scope: 'worker' }],

  scripted: async ({}, use) => {
    const s = await startScriptedUpstream();
    await use(s);
    await s.close();
  },

  // The base URL the user types in Settings (the provider connection).
  providerURL: async ({ upstream, fake, scripted }, use) => {
    await use(upstream === 'scripted' ? scripted.baseURL : fake.baseURL);
  },

  server: async ({ serverEnv, providerURL }, use, testInfo) => {
    const server = await startServer({
      env: {
        // The server's default connection has a base URL but no key: the
        // user adds their own in Settings.
        CHATOPENAII_PROVIDER_BASE_URL: providerURL,
        CHATOPENAII_PROVIDER_API_KEY: null,
        CHATOPENAII_RETRY_MAX: '0',
        CHATOPENAII_LOG_LEVEL: 'info',
        ...serverEnv,
      },
    });
    await use(server);
    const code = await server.stop('SIGTERM');
    const report = server.sanitizerReport();
    if (report || code !== 0 || testInfo.status !== testInfo.expectedStatus) {
      await testInfo.attach('server-log', { body: server.logs().join('\n'), contentType: 'text/plain' });
    }
    server.removeDataDir();
    if (report) throw new Error(`sanitizer report from the server:\n${report}`);
    if (code !== 0) throw new Error(`server exited with ${code} on SIGTERM`);
  },

  baseURL: async ({ server }, use) => {
    await use(server.url);
  },

  // Every page records dialogs (alert/confirm/prompt) and page errors; a
  // dialog is dismissed so nothing blocks.
  page: async ({ page }, use) => {
    const dialogs = [];
    const pageErrors = [];
    page.on('dialog', (d) => {
      dialogs.push(`${d.type()}: ${d.message()}`);
      void d.dismiss().catch(() => {});
    });
    page.on('pageerror', (e) => pageErrors.push(String(e)));
    page.dialogs = dialogs;
    page.pageErrors = pageErrors;
    await use(page);
    expect(dialogs, 'no alert/confirm/prompt dialogs').toEqual([]);
    expect(pageErrors, 'no uncaught errors in the page').toEqual([]);
  },
});

// ---- flows ------------------------------------------------------------------

let seq = 0;
export function uniqueEmail(tag = 'user') {
  return `${tag}-${Date.now().toString(36)}-${++seq}@example.com`;
}

export async function signUp(page, email = uniqueEmail()) {
  await page.goto('/signup');
  await expect(page.getByRole('heading', { name: 'Create your account' })).toBeVisible();
  await page.getByLabel('Email').fill(email);
  await page.getByLabel('Password', { exact: true }).fill(PASSWORD);
  await page.getByRole('button', { name: 'Create account' }).click();
  await expect(page.getByTestId('chat-page')).toBeVisible();
  return email;
}

// The id of message i (1-based) of a chat made by seedChat.
export const seededId = (i) => `01a25000-0000-7000-8000-${String(i).padStart(12, '0')}`;

// Signs up, makes a chat titled title through the API, and writes n messages
// into its store directly (one branch, user and assistant in turn, the last
// one current). text is an SQL expression of i, the message's number: its
// text. Returns the chat's id.
export async function seedChat(page, server, { n, title, text }) {
  await signUp(page);
  const created = await page.evaluate(async (t) => {
    const r = await fetch('/api/v1/chats', {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-requested-with': 'chatopenaii' },
      body: JSON.stringify({ title: t }),
    });
    return r.json();
  }, title);
  const chatId = created.chat.id;
  dbExec(server.dataDir, `
    WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ${n})
    INSERT INTO messages (id, chat_id, parent_id, role, content, model, status, created_at, updated_at)
    SELECT printf('01a25000-0000-7000-8000-%012d', i), '${chatId}',
           CASE WHEN i = 1 THEN NULL ELSE printf('01a25000-0000-7000-8000-%012d', i - 1) END,
           CASE WHEN i % 2 = 1 THEN 'user' ELSE 'assistant' END,
           json_array(json_object('type', 'text', 'text', ${text})),
           'gpt-4o-mini', 'complete', 1790000000000 + i, 1790000000000 + i FROM n;
    UPDATE chats SET current_leaf_id = '${seededId(n)}' WHERE id = '${chatId}';`);
  return chatId;
}

// Open the sidebar when it is a drawer (phone), no-op otherwise.
export async function openDrawerIfNeeded(page) {
  const toggle = page.getByTestId('chat-page').or(page.getByTestId('settings-page')).getByRole('button', { name: 'Open sidebar' });
  if (await toggle.isVisible()) {
    await toggle.click();
    await expect(page.getByTestId('sidebar')).toBeInViewport();
  }
}

export async function gotoSettings(page) {
  await openDrawerIfNeeded(page);
  await page.getByTestId('sidebar').getByRole('link', { name: 'Settings' }).click();
  await expect(page.getByTestId('settings-page')).toBeVisible();
}

export async function setProviderKey(page, baseURL, key = 'sk-test-e2e1') {
  await gotoSettings(page);
  const section = page.getByTestId('settings-connection');
  await section.getByLabel('Base URL').fill(baseURL);
  await section.getByLabel('API key').fill(key);
  await section.getByTestId('save-connection').click();
  await expect(section.getByTestId('key-masked')).toHaveText(`••••${key.slice(-4)}`);
}

export async function newChat(page) {
  await openDrawerIfNeeded(page);
  await page.getByTestId('new-chat').click();
  await expect(page.getByTestId('chat-title')).toHaveText('New chat');
}

export async function send(page, text) {
  const composer = page.getByTestId('composer');
  await composer.fill(text);
  await page.getByTestId('send').click();
}

export const assistants = (page) => page.locator('[data-testid="message"][data-role="assistant"]');
export const users = (page) => page.locator('[data-testid="message"][data-role="user"]');

// axe-core on the current screen: no serious or critical violations.
export async function expectAccessible(page, what) {
  const results = await new AxeBuilder({ page }).withTags(['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']).analyze();
  const bad = results.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  const summary = bad.map((v) => `${v.impact} ${v.id}: ${v.help}\n    ${v.nodes.slice(0, 5).map((n) => n.target.join(' ')).join('\n    ')}`).join('\n');
  expect(bad, `axe violations on ${what}:\n${summary}`).toEqual([]);
  return results;
}
