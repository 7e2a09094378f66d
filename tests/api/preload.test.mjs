// preload.test.mjs - index.html served for a chat's route carries a preload of
// the chat's last messages (server/src/http/static.c), the request the web
// app makes first (web/src/boot.ts): the URL, the attributes a fetch() with
// credentials "same-origin" can reuse, an ETag of its own, and nothing added
// for any other path or a malformed id.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startServer } from '../lib/harness.mjs';

const INDEX = '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>app</title>' +
  '<script type="module" src="/assets/app-abc123.js"></script></head><body><div id="app"></div></body></html>';
const LINK = /<link rel="preload" href="([^"]*)" as="fetch" crossorigin>/g;

test('index.html for /c/<id> preloads GET /api/v1/chats/<id>?tail=60; other pages are unchanged', async () => {
  const web = fs.mkdtempSync(path.join(os.tmpdir(), 'coai-web-'));
  fs.mkdirSync(path.join(web, 'assets'));
  fs.writeFileSync(path.join(web, 'index.html'), INDEX);
  fs.writeFileSync(path.join(web, 'assets', 'app-abc123.js'), 'export {};\n');
  const server = await startServer({ env: { CHATOPENAII_WEB_DIR: web } });
  let failed = null;
  try {
    const get = async (p, headers = {}) => {
      const r = await fetch(server.url + p, { headers });
      return { status: r.status, text: await r.text(), headers: r.headers };
    };
    const id = '01a25000-0000-7000-8000-000000002000';
    for (const p of [`/c/${id}`, `/c/${id}/`, '/c/Ab_9-z']) {
      const res = await get(p);
      const want = p.split('/')[2];
      assert.equal(res.status, 200, p);
      assert.match(res.headers.get('content-type'), /^text\/html\b/);
      assert.match(res.headers.get('cache-control'), /no-cache/);
      const links = [...res.text.matchAll(LINK)].map((m) => m[1]);
      assert.deepEqual(links, [`/api/v1/chats/${want}?tail=60`], `${p}: one preload of the chat's tail`);
      // The same page otherwise, the link first in <head> (before the script it races).
      assert.equal(res.text.replace(LINK, ''), INDEX, `${p}: index.html plus the link`);
      assert.ok(res.text.indexOf('<link rel="preload"') < res.text.indexOf('<script'), 'the preload comes before the script');
      // Revalidation: an ETag of these bytes, 304 when it matches.
      const etag = res.headers.get('etag');
      assert.match(etag, /^"[0-9a-f]{16}"$/);
      const again = await get(p, { 'if-none-match': etag });
      assert.equal(again.status, 304, `${p} If-None-Match`);
      assert.equal(again.text, '');
    }
    const a = (await get(`/c/${id}`)).headers.get('etag');
    const b = (await get('/c/Ab_9-z')).headers.get('etag');
    const plain = (await get('/')).headers.get('etag');
    assert.notEqual(a, b, 'each chat page has its own ETag');
    assert.notEqual(a, plain, 'and none is the plain index.html\'s');
    assert.equal((await get(`/c/${id}`, { 'if-none-match': plain })).status, 200, 'the plain page\'s ETag does not validate a chat page');

    // No preload anywhere else, nor for ids the client router would not take.
    for (const p of ['/', '/index.html', '/settings', '/c', '/c/', `/c/${id}/x`, `/c/${'a'.repeat(65)}`, '/c/a%22b', '/c/a%3Cb', '/x/c/abc', '/chats/abc']) {
      const res = await get(p);
      if (res.status !== 200) continue;
      assert.equal(res.text, INDEX, `${p}: index.html as it is`);
    }
    assert.equal((await get('/c/a.b')).status, 404, 'a path with a dot is a missing file, not a chat');
    // HEAD: headers only.
    const head = await fetch(`${server.url}/c/${id}`, { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal((await head.text()).length, 0);
  } catch (err) {
    failed = err;
  }
  let code;
  try {
    code = await server.stop();
  } finally {
    fs.rmSync(web, { recursive: true, force: true });
    server.removeDataDir();
  }
  if (failed) throw failed;
  assert.equal(server.sanitizerReport(), null, 'sanitizer report in server output');
  assert.equal(code, 0, 'clean exit');
});
