// ssr.test.mjs - the chat's first screen rendered by the server into the page
// of /c/<id> (server/src/http/ssr.c, static.c): present for the signed-in
// owner (private, not stored, Vary: Cookie), the plain page byte for byte for
// anyone else (no cookie, a revoked session, another user, an unknown chat),
// and hostile markdown rendered inert.
//
//   COAI_BIN=build-asan/server/chatopenaii COAI_SUITE=api node --test \
//     --test-reporter=./tests/lib/reporter.mjs tests/api/ssr.test.mjs

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startServer, Client, register, collectSse, dbExec } from '../lib/harness.mjs';
import { startFakeOpenAI } from '../upstream/fake-openai.mjs';

const PASSWORD = 'correct horse battery';
const INDEX = '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>app</title>' +
  '<script type="module" src="/assets/app-abc123.js"></script></head><body><div id="app"></div></body></html>';
const LINK = /<link rel="preload" href="([^"]*)" as="fetch" crossorigin>/g;
const BLOCK = /<div id="ssr" class="ssr"[\s\S]*<\/main><\/div><\/div>/;

const HOSTILE = [
  '<script>alert("s")</script>',
  'x <img src=x onerror=alert("i")> y',
  '[js](javascript:alert("j")) [data](data:text/html;base64,PHNjcmlwdD4=) [rel](/settings)',
  '![pic](https://e.example/p.png "t") ![bad](javascript:alert("b"))',
  '[t](https://e.example/a "x\\" onmouseover=\\"alert(1)") [u](<https://e.example/"onclick="alert(1)>)',
  '```js" onload="alert(1)\nconst a = "<b>";\n```',
  '**bold** and a [good](https://ok.example/) link',
].join('\n\n');

async function withServer(fn, env = {}) {
  const web = fs.mkdtempSync(path.join(os.tmpdir(), 'coai-web-'));
  fs.mkdirSync(path.join(web, 'assets'));
  fs.writeFileSync(path.join(web, 'index.html'), INDEX);
  fs.writeFileSync(path.join(web, 'assets', 'app-abc123.js'), 'export {};\n');
  const fake = await startFakeOpenAI();
  let server;
  try {
    server = await startServer({ upstream: fake, env: { CHATOPENAII_TITLES: 'off', CHATOPENAII_WEB_DIR: web, ...env } });
  } catch (err) {
    await fake.close();
    throw err;
  }
  const clients = [];
  const newClient = () => { const c = new Client(server.url); clients.push(c); return c; };
  let failure;
  try {
    await fn({ newClient, server });
  } catch (err) {
    failure = err;
  }
  for (const c of clients) c.close();
  let code;
  try {
    code = await server.stop();
  } catch (err) {
    failure ??= err;
  }
  await fake.close();
  const report = server.sanitizerReport();
  server.removeDataDir();
  fs.rmSync(web, { recursive: true, force: true });
  if (failure) {
    if (report) failure.message += `\n--- sanitizer report ---\n${report}`;
    throw failure;
  }
  assert.equal(report, null, `sanitizer report in server output:\n${report}`);
  assert.equal(code, 0, 'clean exit');
}

let seq = 0;
async function newUser(newClient) {
  const c = newClient();
  await register(c, `ssr${++seq}-${process.pid}@example.com`, PASSWORD);
  return c;
}

async function turn(c, p, body) {
  const res = await c.post(p, body);
  assert.equal(res.status, 202, `POST ${p}: ${res.text}`);
  await collectSse(c, `/api/v1/turns/${res.json.turn.id}/events`, { until: (ev) => ev.event === 'done', timeoutMs: 20000 });
  return res.json;
}

// The page of /c/<id>, as a navigation asks for it.
const page = (c, id, headers = {}) => c.get(`/c/${id}`, { headers: { accept: 'text/html', ...headers } });
const plainFor = (id) => INDEX.replace('<head>', `<head><link rel="preload" href="/api/v1/chats/${id}?tail=60" as="fetch" crossorigin>`);

test('the owner gets the last messages rendered; everyone else the plain page, byte for byte', async () => {
  await withServer(async ({ newClient, server }) => {
    const owner = await newUser(newClient);
    const { chat } = (await owner.post('/api/v1/chats', { title: 'T <i>x</i>' })).json;
    const base = `/api/v1/chats/${chat.id}`;
    const t1 = await turn(owner, `${base}/messages`, { content: 'first question <b>' });
    const t2 = await turn(owner, `${base}/messages`, { content: 'second question' });
    dbExec(server.dataDir, `UPDATE messages SET content = '${JSON.stringify([{ type: 'text', text: HOSTILE }]).replaceAll("'", "''")}' WHERE id = '${t2.assistant_message.id}'`);

    const res = await page(owner, chat.id);
    assert.equal(res.status, 200);
    assert.match(res.headers['content-type'], /^text\/html\b/);
    assert.equal(res.headers['cache-control'], 'private, no-store', 'a personal page is not stored');
    assert.match(res.headers.vary ?? '', /\bCookie\b/i);
    assert.equal(res.headers.etag, undefined, 'no ETag on a personal page');
    const html = res.text;
    const m = html.match(BLOCK);
    assert.ok(m, `the block is in the page:\n${html.slice(0, 600)}`);
    // The plain page around it: the preload, the block right after <body>.
    assert.equal(html.replace(BLOCK, ''), plainFor(chat.id));
    assert.ok(html.indexOf('<div id="ssr"') === html.indexOf('<body>') + 6);
    const block = m[0];
    assert.match(block, new RegExp(`data-chat="${chat.id}"`));
    assert.match(block, /<h1 class="chat-title">T &lt;i&gt;x&lt;\/i&gt;<\/h1>/);
    // the visible branch, oldest first, in the list's markup
    const ids = [...block.matchAll(/<article class="msg [^"]*" data-testid="message"[^>]* data-id="([^"]+)"/g)].map((x) => x[1]);
    assert.deepEqual(ids, [t1.user_message.id, t1.assistant_message.id, t2.user_message.id, t2.assistant_message.id]);
    assert.match(block, /<div class="bubble" data-testid="message-text">first question &lt;b&gt;<\/div>/);
    // hostile markdown, inert
    assert.doesNotMatch(block, /<script/i);
    assert.doesNotMatch(block, /<img/i);
    for (const tag of block.match(/<[^>]*>/g)) {
      const names = tag.replace(/"[^"]*"/g, '""');
      assert.doesNotMatch(names, /\son[a-z]+\s*=/i, `no event handler attribute: ${tag}`);
      const href = tag.match(/href="([^"]*)"/);
      if (href) assert.match(href[1], /^(https?:|mailto:)/, `link target: ${tag}`);
    }
    assert.match(block, /&lt;script&gt;alert\(&quot;s&quot;\)&lt;\/script&gt;/);
    assert.match(block, /&lt;img src=x onerror=alert\(&quot;i&quot;\)&gt;/);
    assert.doesNotMatch(block, /javascript:|data:text/);
    assert.match(block, /<a href="https:\/\/e\.example\/p\.png" class="md-image-link"[^>]*>Image: pic<\/a>/);
    assert.match(block, /<a href="https:\/\/ok\.example\/" target="_blank" rel="noopener noreferrer">good<\/a>/);
    assert.match(block, /<code class="language-js" data-lang="js">const a = &quot;&lt;b&gt;&quot;;/);
    assert.doesNotMatch(block, /title=/);

    // Everyone else: the plain page, the same bytes and headers as without a cookie.
    const anon = newClient();
    const ref = await page(anon, chat.id);
    assert.equal(ref.text, plainFor(chat.id));
    assert.equal(ref.headers['cache-control'], 'no-cache');
    const other = await newUser(newClient);
    const unknown = '01a25000-0000-7000-8000-00000000beef';
    for (const [who, c, id] of [['another user', other, chat.id], ['an unknown chat', owner, unknown],
      ['a malformed id', owner, 'not_an_id']]) {
      const r = await page(c, id);
      assert.equal(r.status, 200, who);
      assert.equal(r.text, plainFor(id), `${who}: the plain page`);
      assert.equal(r.headers['cache-control'], 'no-cache', who);
      assert.equal(r.headers['set-cookie'], undefined, `${who}: no cookie set`);
    }
    const byOther = await page(other, chat.id);
    const anonRef = await page(anon, chat.id);
    assert.equal(byOther.headers.etag, anonRef.headers.etag, 'another user: the same ETag as no cookie');

    // A revoked session (signed out), a made-up and an over-long cookie.
    const token = owner.cookies.get('coai_session');
    assert.ok(token);
    const stale = newClient();
    stale.cookies.set('coai_session', token);
    assert.ok((await page(stale, chat.id)).text.match(BLOCK), 'the copy of the cookie works before sign-out');
    const out = await owner.post('/api/v1/auth/logout', {});
    assert.ok(out.status >= 200 && out.status < 300, `logout: ${out.status}`);
    for (const v of [token, 'x'.repeat(43), 'y'.repeat(300)]) {
      stale.cookies.set('coai_session', v);
      const r = await page(stale, chat.id);
      assert.equal(r.text, plainFor(chat.id), 'a revoked or unknown session: the plain page');
    }
    // Other routes: never the block.
    stale.cookies.set('coai_session', token);
    assert.equal((await newClient().get('/')).text, INDEX);
  });
});

test('an expired session gets the plain page', async () => {
  await withServer(async ({ newClient, server }) => {
    const owner = await newUser(newClient);
    const { chat } = (await owner.post('/api/v1/chats', {})).json;
    await turn(owner, `/api/v1/chats/${chat.id}/messages`, { content: 'hello' });
    assert.ok((await page(owner, chat.id)).text.match(BLOCK));
    dbExec(server.dataDir, 'UPDATE sessions SET expires_at = 1');
    const r = await page(owner, chat.id);
    assert.equal(r.text, plainFor(chat.id));
    assert.equal(r.headers['cache-control'], 'no-cache');
  });
});

test('rendered pages are limited per client address (CHATOPENAII_RATE_API a minute), then the plain page', async () => {
  await withServer(async ({ newClient }) => {
    const owner = await newUser(newClient);
    const { chat } = (await owner.post('/api/v1/chats', { title: 'limited' })).json;
    await turn(owner, `/api/v1/chats/${chat.id}/messages`, { content: 'a question' });
    const kinds = [];
    for (let i = 0; i < 9; i++) {
      const res = await page(owner, chat.id);
      assert.equal(res.status, 200);
      kinds.push(res.headers['cache-control'] === 'private, no-store' ? 'rendered' : 'plain');
    }
    // each rendered page cost a worker a session lookup and a store read
    assert.deepEqual(kinds, [...Array(8).fill('rendered'), 'plain']);
    const last = await page(owner, chat.id);
    assert.equal(last.text, plainFor(chat.id), 'the plain page, byte for byte');
  }, { CHATOPENAII_RATE_API: '8' });
});
