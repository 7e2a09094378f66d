// hostile.spec.mjs - model output with <script>, event handlers and
// javascript: links renders as inert content: nothing runs, no dialog opens.
import { test, expect, signUp, setProviderKey, newChat, send, assistants } from '../lib/fixtures.mjs';

test.use({ upstream: 'scripted' });

const HOSTILE = [
  '# Totally normal answer',
  '',
  '<script>window.__pwned = "script"; alert("script")</script>',
  '',
  '<img src="x" onerror="window.__pwned = \'img\'; alert(\'img\')">',
  '',
  '<svg onload="window.__pwned = \'svg\'"><circle r="5"/></svg>',
  '',
  '<iframe src="javascript:window.top.__pwned = \'iframe\'"></iframe>',
  '',
  '<details open ontoggle="window.__pwned = \'toggle\'"><summary>s</summary>x</details>',
  '',
  'A [markdown link](javascript:window.__pwned=\'mdlink\') and a <a href="javascript:window.__pwned=\'a\'">raw link</a>.',
  '',
  '![picture](x" onerror="window.__pwned=\'mdimg\')',
  '',
  '<form action="javascript:window.__pwned=\'form\'"><button>go</button></form>',
  '',
  '[data](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==) and [vb](vbscript:msgbox(1)) and [safe](https://example.com/ok)',
  '',
  '```html',
  '<script>window.__pwned = "code"</script>',
  '```',
].join('\n');

async function expectInert(page, msg) {
  const body = msg.getByTestId('message-text');
  await expect(body.getByRole('heading', { name: 'Totally normal answer' })).toBeVisible();
  // raw HTML is shown as text
  await expect(body).toContainText('<script>window.__pwned = "script"');
  await expect(body).toContainText('onerror=');
  // no active elements were created
  for (const sel of ['script', 'img', 'svg', 'iframe', 'form', 'object', 'embed', 'details[ontoggle]']) {
    await expect(body.locator(sel), `no <${sel}> in the message`).toHaveCount(0);
  }
  const onAttrs = await body.evaluate((el) => [...el.querySelectorAll('*')]
    .flatMap((n) => [...n.attributes].filter((a) => /^on/i.test(a.name)).map((a) => `${n.tagName}.${a.name}`)));
  expect(onAttrs, 'no event-handler attributes').toEqual([]);
  const hrefs = await body.locator('a[href]').evaluateAll((as) => as.map((a) => a.getAttribute('href')));
  expect(hrefs).toContain('https://example.com/ok');
  for (const h of hrefs) expect(h, 'only http(s)/mailto links').toMatch(/^(https?:|mailto:)/i);
  const safe = body.locator('a[href="https://example.com/ok"]');
  await expect(safe).toHaveAttribute('target', '_blank');
  await expect(safe).toHaveAttribute('rel', /noopener/);
  // clicking the neutralised javascript: link text does nothing
  await body.getByText('markdown link', { exact: false }).first().click();
  await page.waitForTimeout(300);
  expect(await page.evaluate(() => window.__pwned), 'window.__pwned never set').toBeUndefined();
  expect(page.dialogs, 'no dialog fired').toEqual([]);
}

// Once as deployed (the server's Content-Security-Policy also blocks inline
// handlers), once with the CSP bypassed so the sanitizer alone is tested.
for (const bypassCSP of [false, true]) {
  test.describe(bypassCSP ? 'without the CSP' : 'with the CSP', () => {
    test.use({ bypassCSP });

    test('hostile markdown renders with nothing executed', async ({ page, providerURL, scripted }) => {
      scripted.setAnswer(HOSTILE);
      await signUp(page);
      await setProviderKey(page, providerURL);
      await newChat(page);
      await send(page, 'Say something nasty');
      const msg = assistants(page).first();
      await expect(msg).toHaveAttribute('data-status', 'complete');
      await expectInert(page, msg);
      // rendered again from the stored message, not the stream
      await page.reload();
      await expect(assistants(page).first()).toHaveAttribute('data-status', 'complete');
      await expectInert(page, assistants(page).first());
    });
  });
}
