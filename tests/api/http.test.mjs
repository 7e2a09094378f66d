// http.test.mjs - the HTTP layer: health, routing errors, request limits,
// body decoding, path decoding, common headers, static files, the access
// log (and what it must never contain), configuration validation, the
// master key file, graceful shutdown and resilience to reset connections.
// Every test starts its own server (fresh data dir) and checks, after the
// server stops, that it exited cleanly without a sanitizer report.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { startServer, Client, register, login, freePort, defaultBinary, onPostgres } from '../lib/harness.mjs';
import { startFakeOpenAI } from '../upstream/fake-openai.mjs';

const PW = 'correct horse battery';
const REQ_ID = /^[0-9a-f]{16}$/;
const NO_WEB = '/nonexistent/chatopenaii-no-web-dir';

async function withServer(opts, fn) {
  const server = await startServer(opts);
  let failed = null;
  try {
    await fn(server);
  } catch (err) {
    failed = err;
  }
  let code;
  try {
    code = await server.stop();
  } catch (err) {
    failed = failed ?? err;
  }
  const report = server.sanitizerReport();
  try {
    if (failed) throw failed;
    assert.equal(report, null, `sanitizer report in server output:\n${report}`);
    assert.equal(code, 0, `server exit code after SIGTERM; last lines:\n${server.logs().slice(-15).join('\n')}`);
  } finally {
    if (!opts?.dataDir) server.removeDataDir();
  }
}

function assertError(res, status, code) {
  assert.equal(res.status, status, `status (body: ${res.text.slice(0, 300)})`);
  assert.match(res.headers['content-type'] ?? '', /^application\/json/, `error content-type (body: ${res.text.slice(0, 200)})`);
  assert.ok(res.json, `error body is JSON: ${res.text.slice(0, 300)}`);
  assert.deepEqual(Object.keys(res.json), ['error']);
  assert.deepEqual(Object.keys(res.json.error).sort(), ['code', 'message']);
  assert.equal(typeof res.json.error.code, 'string');
  assert.equal(typeof res.json.error.message, 'string');
  if (code !== undefined) assert.equal(res.json.error.code, code, 'error code');
}

function assertCommon(res, what = '') {
  assert.match(String(res.headers['x-request-id']), REQ_ID, `X-Request-Id on ${what} (${res.status})`);
  assert.equal(res.headers['x-content-type-options'], 'nosniff', `nosniff on ${what} (${res.status})`);
}

// A request whose path is sent exactly as given (no URL normalisation).
function raw(url, method, p, { headers = {}, body } = {}) {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const h = { ...headers };
    if (body !== undefined) h['content-length'] = Buffer.byteLength(body);
    const req = http.request({ host: u.hostname, port: u.port, method, path: p, headers: h, agent: false }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const buf = Buffer.concat(chunks);
        const text = buf.toString('utf8');
        let json = null;
        if (/json/.test(res.headers['content-type'] ?? '')) { try { json = JSON.parse(text); } catch { /* not JSON */ } }
        resolve({ status: res.statusCode, headers: res.headers, text, json, body: buf });
      });
      res.on('error', reject);
    });
    req.setTimeout(15000, () => req.destroy(new Error(`${method} ${p}: timeout`)));
    req.on('error', reject);
    req.end(body);
  });
}

const API_HEADERS = { 'x-requested-with': 'chatopenaii', 'content-type': 'application/json' };

// ---- health, routing --------------------------------------------------------

test('/healthz and /readyz answer 200 JSON', async () => {
  await withServer({ env: { CHATOPENAII_WEB_DIR: NO_WEB } }, async ({ url }) => {
    const c = new Client(url);
    const h = await c.get('/healthz');
    assert.equal(h.status, 200);
    assert.match(h.headers['content-type'], /^application\/json/);
    assert.equal(h.json.status, 'ok');
    assert.equal(typeof h.json.uptime_ms, 'number');
    assert.ok(h.json.uptime_ms >= 0);
    assertCommon(h, '/healthz');
    const r = await c.get('/readyz');
    assert.equal(r.status, 200, r.text);
    assert.match(r.headers['content-type'], /^application\/json/);
    assert.equal(r.json.status, 'ready');
    assert.equal(r.json.store, onPostgres() ? 'postgres' : 'sqlite');
    assertCommon(r, '/readyz');
  });
});

test('unknown API paths are 404 JSON; a wrong method on a known path is 405 with Allow', async () => {
  await withServer({ env: { CHATOPENAII_WEB_DIR: NO_WEB } }, async ({ url }) => {
    const c = new Client(url);
    for (const p of ['/api/v1/nope', '/api', '/api/', '/api/v2/me', '/api/v1/me/extra', '/api/v1/chats/x/y/z', '/api/v1/ME']) {
      const res = await c.get(p);
      assertError(res, 404, 'not_found');
      assertCommon(res, p);
      assert.equal(res.headers['cache-control'], 'no-store');
    }
    assertError(await c.post('/api/v1/nope', { a: 1 }), 404, 'not_found');

    const cases = [
      ['DELETE', '/api/v1/me', ['GET']],
      ['GET', '/api/v1/auth/login', ['POST']],
      ['PUT', '/api/v1/chats', ['GET', 'POST']],
      ['POST', '/api/v1/chats/abc', ['GET', 'PATCH', 'DELETE']],
      ['PATCH', '/api/v1/connection', ['GET', 'PUT', 'DELETE']],
      ['GET', '/api/v1/turns/abc/stop', ['POST']],
    ];
    for (const [method, p, allow] of cases) {
      const res = await c.request(method, p, {});
      assertError(res, 405, 'method_not_allowed');
      assertCommon(res, `${method} ${p}`);
      const got = String(res.headers.allow ?? '').split(',').map((s) => s.trim()).filter(Boolean).sort();
      assert.deepEqual(got, [...allow].sort(), `Allow for ${method} ${p}: ${res.headers.allow}`);
    }
  });
});

// ---- limits and body decoding ----------------------------------------------

test('request limits: body over 1 MiB is 413 JSON, headers over 16 KiB are 431 JSON', async () => {
  await withServer({ env: { CHATOPENAII_WEB_DIR: NO_WEB } }, async ({ url }) => {
    const c = new Client(url);
    // Just over the cap, as a valid JSON object so only the size is wrong.
    const pad = 'x'.repeat(1024 * 1024);
    const big = JSON.stringify({ email: 'a@example.com', password: pad });
    assert.ok(Buffer.byteLength(big) > 1024 * 1024);
    const res = await c.request('POST', '/api/v1/auth/login', { body: big, headers: { 'content-type': 'application/json' } });
    assertError(res, 413, 'payload_too_large');
    assertCommon(res, '413');
    // Exactly at the cap is not refused as too large.
    const atCap = Buffer.alloc(1024 * 1024, 0x20);
    atCap.write('{}', 0);
    const ok = await c.request('POST', '/api/v1/auth/login', { body: atCap, headers: { 'content-type': 'application/json' } });
    assert.equal(ok.status, 400, `1 MiB exactly: ${ok.text.slice(0, 200)}`);
    assert.equal(ok.json.error.code, 'invalid_request');

    // Far over the cap (past libevent's hard limit): still refused with 413.
    const huge = Buffer.alloc(5 * 1024 * 1024, 0x61);
    let hugeRes;
    try {
      hugeRes = await raw(url, 'POST', '/api/v1/auth/login', { headers: API_HEADERS, body: huge });
    } catch (err) {
      hugeRes = { status: 0, err };
    }
    assert.ok(hugeRes.status === 413 || hugeRes.err?.code === 'EPIPE' || hugeRes.err?.code === 'ECONNRESET',
      `5 MiB body: got ${hugeRes.status} ${hugeRes.err ?? ''}`);

    const pad20k = 'a'.repeat(20 * 1024);
    for (const p of ['/api/v1/me', '/healthz', '/']) {
      const r = await c.get(p, { headers: { 'x-pad': pad20k } });
      assertError(r, 431, 'headers_too_large');
      assertCommon(r, `431 ${p}`);
    }
    // Many small headers adding up past 16 KiB count too.
    const many = {};
    for (let i = 0; i < 40; i++) many[`x-pad-${i}`] = 'b'.repeat(500);
    assertError(await c.get('/api/v1/me', { headers: many }), 431, 'headers_too_large');
    // A normal request after all that is fine.
    assert.equal((await c.get('/healthz')).status, 200);
  });
});

test('request bodies: 415 for non-JSON types, 400 for invalid JSON, non-objects, bad UTF-8, deep nesting, duplicate keys', async () => {
  await withServer({ env: { CHATOPENAII_WEB_DIR: NO_WEB } }, async ({ url }) => {
    const c = new Client(url);
    const good = JSON.stringify({ email: 'a@example.com', password: PW });
    const post = (body, ct = 'application/json') => c.request('POST', '/api/v1/auth/register', { body, headers: ct ? { 'content-type': ct } : {} });

    for (const ct of ['text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', null]) {
      const res = await post(good, ct);
      assertError(res, 415, 'unsupported_media_type');
      assertCommon(res, `415 ${ct}`);
    }
    // application/json with a charset parameter is accepted.
    const withCharset = await c.request('POST', '/api/v1/auth/login', { body: good, headers: { 'content-type': 'application/json; charset=utf-8' } });
    assertError(withCharset, 401, 'invalid_credentials');

    for (const body of ['{', '{"email":', 'nope', '{"a":1}}', "{'a':1}", '{"a":1,}', '\u0000']) {
      const res = await post(body);
      assertError(res, 400, 'invalid_json');
    }
    for (const body of ['[1,2]', '"string"', '42', 'null', 'true', '[]']) {
      const res = await post(body);
      assertError(res, 400, 'invalid_json');
    }
    // Invalid UTF-8 (0xC3 0x28) inside a JSON string.
    const badUtf8 = Buffer.concat([Buffer.from('{"email":"x'), Buffer.from([0xc3, 0x28]), Buffer.from(`@example.com","password":"${PW}"}`)]);
    const r1 = await c.request('POST', '/api/v1/auth/register', { body: badUtf8, headers: { 'content-type': 'application/json' } });
    assertError(r1, 400, 'invalid_json');
    assert.ok(Buffer.from(r1.text, 'utf8').equals(r1.body), 'error body is valid UTF-8');
    // Lone surrogate escape: also not valid text.
    assertError(await post('{"email":"\\ud800@example.com","password":"correct horse"}'), 400);
    // Deep nesting: refused, not a stack overflow.
    for (const body of ['['.repeat(5000), `${'{"a":'.repeat(5000)}1${'}'.repeat(5000)}`, `${'['.repeat(100000)}${']'.repeat(100000)}`]) {
      assertError(await post(body), 400, 'invalid_json');
    }
    // Duplicate keys.
    const dup = await post(`{"email":"a@example.com","email":"b@example.com","password":"${PW}"}`);
    assertError(dup, 400, 'invalid_json');
    // None of the above created an account, and the server is alive.
    assert.equal((await c.get('/healthz')).status, 200);
    const reg = await register(c, 'a@example.com', PW);
    assert.equal(reg.json.user.is_admin, true, 'nothing was registered by the bad requests');
  });
});

test('paths: percent-encoded invalid UTF-8 is 400; traversal never escapes the web dir', async () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'coai-web-'));
  const web = path.join(root, 'web');
  fs.mkdirSync(path.join(web, 'assets'), { recursive: true });
  fs.writeFileSync(path.join(web, 'index.html'), '<!doctype html><title>app</title><div id=app-root></div>');
  fs.writeFileSync(path.join(web, 'assets', 'app-abc123.js'), 'console.log(1);');
  fs.writeFileSync(path.join(web, '.env'), 'DOTFILE-SECRET-3141');
  fs.writeFileSync(path.join(root, 'secret.txt'), 'OUTSIDE-SECRET-2718');
  try {
    await withServer({ env: { CHATOPENAII_WEB_DIR: web } }, async ({ url }) => {
      for (const p of ['/api/v1/%C3%28', '/%C3%28', '/assets/%FF.js', '/%C0%AF', '/api/v1/me%00', '/a%00b', '/%ED%A0%80']) {
        const res = await raw(url, 'GET', p);
        assertError(res, 400);
        assert.equal(res.json.error.code, 'invalid_path', `${p}: ${res.text}`);
        assertCommon(res, p);
      }
      const attempts = [
        '/../secret.txt', '/../../secret.txt', '/assets/../../secret.txt', '/%2e%2e/secret.txt',
        '/%2E%2E/%2e%2e/secret.txt', '/..%2fsecret.txt', '/%2e%2e%2fsecret.txt', '/assets/..%2f..%2fsecret.txt',
        '/assets/%2e%2e/%2e%2e/secret.txt', '/../../etc/passwd', '/../../../../../../etc/passwd',
        '/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd', '/..%2f..%2f..%2f..%2fetc%2fpasswd', '//etc/passwd',
        '/.env', '/%2eenv', '/assets/../.env', '/web/.env', `/${'%2e%2e/'.repeat(8)}etc/passwd`,
      ];
      const index = fs.readFileSync(path.join(web, 'index.html'), 'utf8');
      for (const p of attempts) {
        const res = await raw(url, 'GET', p);
        assert.ok(!res.text.includes('OUTSIDE-SECRET-2718'), `${p} served a file outside the web dir`);
        assert.ok(!res.text.includes('DOTFILE-SECRET-3141'), `${p} served a dot-file`);
        assert.doesNotMatch(res.text, /root:.*:0:0:/, `${p} served /etc/passwd`);
        assert.ok([200, 400, 404].includes(res.status), `${p}: status ${res.status}`);
        if (res.status === 200) assert.equal(res.text, index, `${p}: a 200 may only be the app's index.html`);
        assertCommon(res, p);
      }
      assert.equal((await raw(url, 'GET', '/healthz')).status, 200);
    });
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
});

test('every response carries X-Request-Id and nosniff; API responses are Cache-Control: no-store', async () => {
  const web = fs.mkdtempSync(path.join(os.tmpdir(), 'coai-web-'));
  fs.writeFileSync(path.join(web, 'index.html'), '<!doctype html><p>hi</p>');
  try {
    await withServer({ env: { CHATOPENAII_WEB_DIR: web } }, async ({ url }) => {
      const c = new Client(url);
      const ids = new Set();
      const api = [
        await c.get('/healthz'),
        await c.get('/readyz'),
        await c.get('/api/v1/me'), // 401
        await c.get('/api/v1/nothing'), // 404
        await c.request('DELETE', '/api/v1/me', {}), // 405
        await c.post('/api/v1/auth/login', {}, { csrf: false }), // 403
        await c.request('POST', '/api/v1/auth/login', { body: 'x', headers: { 'content-type': 'text/plain' } }), // 415
        await c.request('POST', '/api/v1/auth/login', { body: '{', headers: { 'content-type': 'application/json' } }), // 400
        await c.get('/api/v1/me', { headers: { 'x-pad': 'p'.repeat(20000) } }), // 431
        await register(c, 'a@example.com', PW), // 201
        await c.get('/api/v1/me'), // 200
        await c.get('/api/v1/sessions'),
        await c.post('/api/v1/auth/logout', undefined), // 204
      ];
      for (const r of api) {
        assertCommon(r, `API ${r.status}`);
        assert.equal(r.headers['cache-control'], 'no-store', `Cache-Control on API ${r.status}: ${r.headers['cache-control']}`);
        ids.add(r.headers['x-request-id']);
      }
      const stat = [
        await c.get('/'),
        await c.get('/chats/1'),
        await c.get('/missing.png'),
        await c.request('POST', '/', {}),
      ];
      const etag = stat[0].headers.etag;
      stat.push(await c.get('/', { headers: { 'if-none-match': etag } }));
      assert.deepEqual(stat.map((r) => r.status), [200, 200, 404, 405, 304]);
      for (const r of stat) {
        assertCommon(r, `static ${r.status}`);
        ids.add(r.headers['x-request-id']);
      }
      assert.equal(ids.size, api.length + stat.length, 'request ids are unique');
    });
  } finally {
    fs.rmSync(web, { recursive: true, force: true });
  }
});

// ---- static files ----------------------------------------------------------

test('static files: types, caching, ETag/304, client-route fallback, 404s, 405', async () => {
  const web = fs.mkdtempSync(path.join(os.tmpdir(), 'coai-web-'));
  const files = {
    'index.html': '<!doctype html><html><head><script type="module" src="/assets/app-abc123.js"></script></head><body><div id="root"></div></body></html>',
    'assets/app-abc123.js': 'export const answer = 42;\n',
    'assets/style-x1.css': 'body { color: #333; }\n',
    'favicon.svg': '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 1 1"><rect width="1" height="1"/></svg>',
  };
  fs.mkdirSync(path.join(web, 'assets'));
  for (const [p, body] of Object.entries(files)) fs.writeFileSync(path.join(web, p), body);
  try {
    await withServer({ env: { CHATOPENAII_WEB_DIR: web } }, async ({ url, logs }) => {
      assert.ok(!logs().some((l) => l.includes('web app not built')), 'index.html exists: no placeholder warning');
      const c = new Client(url);
      const expect = [
        ['/', 'index.html', /^text\/html\b/, false],
        ['/index.html', 'index.html', /^text\/html\b/, false],
        ['/assets/app-abc123.js', 'assets/app-abc123.js', /^(text|application)\/javascript\b/, true],
        ['/assets/style-x1.css', 'assets/style-x1.css', /^text\/css\b/, true],
        ['/favicon.svg', 'favicon.svg', /^image\/svg\+xml\b/, false],
      ];
      const etags = new Map();
      for (const [p, file, type, immutable] of expect) {
        const res = await c.get(p, { headers: { accept: '*/*' } });
        assert.equal(res.status, 200, `${p}: ${res.text.slice(0, 200)}`);
        assert.equal(res.text, files[file], `${p} body`);
        assert.match(res.headers['content-type'] ?? '', type, `${p} content-type`);
        const cc = res.headers['cache-control'] ?? '';
        if (immutable) {
          assert.match(cc, /\bmax-age=31536000\b/, `${p} cache-control: ${cc}`);
          assert.match(cc, /\bimmutable\b/, `${p} cache-control: ${cc}`);
        } else {
          assert.match(cc, /\bno-cache\b/, `${p} cache-control: ${cc}`);
          assert.doesNotMatch(cc, /immutable|max-age=[1-9]/, `${p} must not be cached long: ${cc}`);
        }
        assert.match(res.headers.etag ?? '', /^(W\/)?"[^"]+"$/, `${p} ETag: ${res.headers.etag}`);
        assertCommon(res, p);
        etags.set(file, res.headers.etag);
      }
      assert.equal(new Set(etags.values()).size, etags.size, 'different files have different ETags');

      // Conditional requests.
      for (const [p, file] of [['/', 'index.html'], ['/assets/app-abc123.js', 'assets/app-abc123.js']]) {
        const nm = await c.get(p, { headers: { 'if-none-match': etags.get(file) } });
        assert.equal(nm.status, 304, `${p} If-None-Match`);
        assert.equal(nm.body.length, 0, '304 has no body');
        assert.equal(nm.headers.etag, etags.get(file));
        const stale = await c.get(p, { headers: { 'if-none-match': '"0000000000000000"' } });
        assert.equal(stale.status, 200);
        assert.equal(stale.text, files[file]);
      }

      // Client-side routes get index.html.
      for (const p of ['/chats/123', '/chats/123/', '/settings', '/chats/01a2-b3?tab=x']) {
        const res = await c.get(p);
        assert.equal(res.status, 200, p);
        assert.equal(res.text, files['index.html'], `${p} serves index.html`);
        assert.match(res.headers['content-type'], /^text\/html\b/);
        assert.match(res.headers['cache-control'] ?? '', /no-cache/, `${p} index must not be cached`);
      }

      // Missing files are 404, not index.html.
      for (const p of ['/assets/nope.js', '/assets/nope', '/foo.png', '/chats/1/image.png', '/assets/app-abc123.js.map']) {
        const res = await c.get(p);
        assertError(res, 404, 'not_found');
        assertCommon(res, p);
        assert.ok(!res.text.includes('id="root"'), `${p} must not fall back to index.html`);
      }

      // Unsafe methods on static paths.
      for (const [m, p] of [['POST', '/'], ['POST', '/assets/app-abc123.js'], ['PUT', '/index.html'], ['DELETE', '/favicon.svg'], ['POST', '/chats/1']]) {
        const res = await c.request(m, p, {});
        assertError(res, 405, 'method_not_allowed');
        assert.match(res.headers.allow ?? '', /\bGET\b/, `${m} ${p} Allow: ${res.headers.allow}`);
        assertCommon(res, `${m} ${p}`);
      }
      // HEAD: headers only.
      const head = await c.request('HEAD', '/assets/app-abc123.js', {});
      assert.equal(head.status, 200);
      assert.equal(head.body.length, 0);
      assert.match(head.headers['content-type'], /javascript/);
    });
  } finally {
    fs.rmSync(web, { recursive: true, force: true });
  }
});

test('without a web dir the placeholder page is served at /', async () => {
  await withServer({ env: { CHATOPENAII_WEB_DIR: NO_WEB } }, async ({ url, logs }) => {
    const c = new Client(url);
    const res = await c.get('/', { headers: { accept: 'text/html' } });
    assert.equal(res.status, 200);
    assert.match(res.headers['content-type'], /^text\/html/);
    assert.match(res.text, /<h1>ChatOpenAII<\/h1>/);
    assert.match(res.text, /\/api\/v1/);
    const route = await c.get('/chats/42');
    assert.equal(route.status, 200);
    assert.equal(route.text, res.text);
    assertError(await c.get('/assets/app.js'), 404, 'not_found');
    const warn = logs('stderr').map((l) => { try { return JSON.parse(l); } catch { return null; } })
      .find((o) => o && o.msg === 'web app not built; serving a placeholder page');
    assert.ok(warn, 'a warning says the web app is not built');
    assert.equal(warn.level, 'warn');
    assert.equal(warn.dir, NO_WEB);
  });
});

// ---- access log --------------------------------------------------------------

test('access log: one JSON object per line, request lines match responses; no password, API key or token leaks', async () => {
  const fake = await startFakeOpenAI();
  const SECRET_PW = 'pw-Zq8#unique-in-logs-9971';
  const WRONG_PW = 'wrong-pw-Qx7-unique-5532';
  const KEY = 'sk-proj-LOGLEAK0123456789abcdefWXYZ';
  let stderrLines = [];
  let stdoutLines = [];
  const responses = [];
  try {
    const server = await startServer({ env: { CHATOPENAII_WEB_DIR: NO_WEB } });
    let failed = null;
    let token;
    try {
      const c = new Client(server.url);
      const track = async (p) => { const r = await p; responses.push(r); return r; };
      await track(register(c, 'logs@example.com', SECRET_PW));
      token = c.cookies.get('coai_session');
      await track(c.post('/api/v1/auth/login', { email: 'logs@example.com', password: WRONG_PW }));
      await track(login(new Client(server.url), 'logs@example.com', SECRET_PW));
      const put = await track(c.put('/api/v1/connection', { base_url: fake.baseURL, api_key: KEY }));
      assert.equal(put.status, 200, put.text);
      assert.equal(put.json.connection.key_last4, 'WXYZ');
      assert.ok(!put.text.includes(KEY), 'PUT /connection echoed the key');
      const got = await track(c.get('/api/v1/connection'));
      assert.ok(!got.text.includes(KEY), 'GET /connection shows the key');
      const models = await track(c.get('/api/v1/models'));
      assert.equal(models.status, 200, models.text);
      assert.equal(models.json.source, 'provider', models.text);
      assert.ok(fake.requests.some((r) => r.headers.authorization === `Bearer ${KEY}`), 'the key reached the provider');
      await track(c.post('/api/v1/me/password', { current_password: WRONG_PW, new_password: 'new-pw-Unique-8812' }));
      await track(c.get('/api/v1/nope?api_key=query-secret'));
      await track(c.get('/chats/1'));
      await track(c.request('DELETE', '/api/v1/me', {}));
    } catch (err) {
      failed = err;
    }
    const code = await server.stop();
    const report = server.sanitizerReport();
    stderrLines = server.logs('stderr');
    stdoutLines = server.logs('stdout');
    server.removeDataDir();
    if (failed) throw failed;
    assert.equal(report, null, report);
    assert.equal(code, 0);

    // One JSON object per line.
    const entries = stderrLines.map((l, i) => {
      let o;
      try { o = JSON.parse(l); } catch { assert.fail(`stderr line ${i + 1} is not JSON: ${l}`); }
      assert.equal(typeof o, 'object');
      assert.ok(o && !Array.isArray(o), `line ${i + 1} is not an object: ${l}`);
      assert.equal(typeof o.msg, 'string', `line ${i + 1} has no msg`);
      assert.equal(typeof o.level, 'string');
      assert.ok(!Number.isNaN(Date.parse(o.ts)), `line ${i + 1} ts: ${o.ts}`);
      return o;
    });
    for (const l of stdoutLines) assert.doesNotThrow(() => JSON.parse(l), `stdout line is not JSON: ${l}`);

    const requests = entries.filter((o) => o.msg === 'request');
    for (const r of responses) {
      const id = r.headers['x-request-id'];
      assert.match(String(id), REQ_ID);
      const hits = requests.filter((o) => o.request_id === id);
      assert.equal(hits.length, 1, `exactly one access-log line for request ${id} (${r.status})`);
      const e = hits[0];
      assert.equal(e.status, r.status, `logged status for ${id}`);
      assert.equal(typeof e.duration_us, 'number');
      assert.ok(Number.isInteger(e.duration_us) && e.duration_us >= 0);
      assert.match(e.method, /^(GET|POST|PUT|DELETE|PATCH|HEAD)$/);
      assert.match(e.path, /^\//);
    }
    const byStatus = (s) => requests.find((o) => o.request_id === responses.find((r) => r.status === s)?.headers['x-request-id']);
    assert.deepEqual([byStatus(201).method, byStatus(201).path], ['POST', '/api/v1/auth/register']);
    assert.deepEqual([byStatus(405).method, byStatus(405).path], ['DELETE', '/api/v1/me']);
    const put = requests.find((o) => o.method === 'PUT');
    assert.equal(put.path, '/api/v1/connection');

    const all = [...stderrLines, ...stdoutLines].join('\n');
    for (const [what, secret] of [
      ['the registration password', SECRET_PW], ['a wrong login password', WRONG_PW],
      ['a new password', 'new-pw-Unique-8812'], ['the provider API key', KEY],
      ['the middle of the API key', 'LOGLEAK0123456789'], ['the session token', token],
      ['a query-string secret', 'query-secret'],
    ]) {
      assert.ok(secret, what);
      assert.ok(!all.includes(secret), `the log contains ${what}`);
    }
  } finally {
    await fake.close();
  }
});

// ---- configuration ---------------------------------------------------------

function runServeExpectingFailure(env, { timeoutMs = 8000 } = {}) {
  return new Promise((resolve) => {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'coai-cfg-'));
    const fullEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('CHATOPENAII_')));
    Object.assign(fullEnv, { CHATOPENAII_DATA_DIR: dataDir, CHATOPENAII_WEB_DIR: NO_WEB }, env);
    const started = Date.now();
    const p = spawn(defaultBinary, ['serve'], { env: fullEnv, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    let stdout = '';
    p.stderr.on('data', (d) => { stderr += d; });
    p.stdout.on('data', (d) => { stdout += d; });
    let timedOut = false;
    const timer = setTimeout(() => { timedOut = true; p.kill('SIGKILL'); }, timeoutMs);
    p.on('close', (code, signal) => {
      clearTimeout(timer);
      fs.rmSync(dataDir, { recursive: true, force: true });
      resolve({ code, signal, stderr, stdout, timedOut, ms: Date.now() - started });
    });
  });
}

test('configuration: each invalid variable makes serve exit non-zero quickly, naming the variable', async () => {
  const port = await freePort();
  const cases = [
    ['CHATOPENAII_LISTEN', 'nonsense'],
    ['CHATOPENAII_LISTEN', '127.0.0.1:99999'],
    ['CHATOPENAII_WORKERS', '0'],
    ['CHATOPENAII_WORKERS', 'many'],
    ['CHATOPENAII_REGISTRATION', 'maybe'],
    ['CHATOPENAII_LOG_LEVEL', 'loud'],
    ['CHATOPENAII_PROVIDER_BASE_URL', 'ftp://x'],
    ['CHATOPENAII_MASTER_KEY', 'short'],
    ['CHATOPENAII_SESSION_TTL', '5'],
    ['CHATOPENAII_COOKIE_SECURE', 'perhaps'],
  ];
  const results = await Promise.all(cases.map(([k, v]) => runServeExpectingFailure({
    CHATOPENAII_LISTEN: `127.0.0.1:${port}`, [k]: v,
  })));
  cases.forEach(([k, v], i) => {
    const r = results[i];
    assert.equal(r.timedOut, false, `${k}=${v}: server did not exit (it started?); stderr:\n${r.stderr}`);
    assert.equal(r.signal, null, `${k}=${v}: killed by ${r.signal}; stderr:\n${r.stderr}`);
    assert.notEqual(r.code, 0, `${k}=${v}: exit code 0`);
    assert.ok(r.stderr.includes(k), `${k}=${v}: stderr does not name ${k}:\n${r.stderr}`);
    assert.ok(r.ms < 5000, `${k}=${v}: took ${r.ms} ms to fail`);
    assert.doesNotMatch(r.stderr, /AddressSanitizer|LeakSanitizer|runtime error:/, `${k}=${v}:\n${r.stderr}`);
    assert.doesNotMatch(r.stderr, /"msg":"listening"/, `${k}=${v}: server started listening`);
  });
});

// ---- master key --------------------------------------------------------------

test('master key: generated as <data>/master.key (0600) with a warning, reused on restart; saved key still works', async () => {
  const fake = await startFakeOpenAI();
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'coai-mk-'));
  const KEY = 'sk-restart-test-key-7788abcd';
  const keyFile = path.join(dataDir, 'master.key');
  try {
    let firstKey;
    await withServer({ dataDir, env: { CHATOPENAII_WEB_DIR: NO_WEB } }, async (server) => {
      assert.ok(fs.existsSync(keyFile), 'master.key created in the data dir');
      const st = fs.statSync(keyFile);
      assert.equal(st.mode & 0o777, 0o600, `master.key mode ${(st.mode & 0o777).toString(8)}`);
      firstKey = fs.readFileSync(keyFile);
      assert.ok(firstKey.length >= 32);
      const warn = server.logs('stderr').map((l) => { try { return JSON.parse(l); } catch { return null; } })
        .find((o) => o && o.level === 'warn' && /master key/i.test(o.msg));
      assert.ok(warn, `a warning about the generated master key; logs:\n${server.logs().join('\n')}`);
      assert.ok(!server.logs().join('\n').includes(firstKey.toString('utf8').trim()), 'the master key itself is logged');

      const c = new Client(server.url);
      await register(c, 'mk@example.com', PW);
      const put = await c.put('/api/v1/connection', { base_url: fake.baseURL, api_key: KEY });
      assert.equal(put.status, 200, put.text);
      const m = await c.get('/api/v1/models');
      assert.equal(m.status, 200, m.text);
      assert.equal(m.json.source, 'provider');
    });
    // The key is not stored in clear in the database.
    for (const f of fs.readdirSync(dataDir)) {
      const buf = fs.readFileSync(path.join(dataDir, f));
      assert.ok(!buf.includes(KEY), `${f} contains the provider key in clear`);
    }

    fake.reset();
    await withServer({ dataDir, env: { CHATOPENAII_WEB_DIR: NO_WEB } }, async (server) => {
      assert.ok(fs.readFileSync(keyFile).equals(firstKey), 'master.key unchanged by a restart');
      assert.equal(fs.statSync(keyFile).mode & 0o777, 0o600);
      assert.ok(!server.logs().some((l) => /generated a new master key/i.test(l)), 'no new key generated on restart');
      const c = new Client(server.url);
      await login(c, 'mk@example.com', PW);
      const conn = await c.get('/api/v1/connection');
      assert.equal(conn.status, 200, conn.text);
      assert.equal(conn.json.connection.source, 'user');
      assert.equal(conn.json.connection.has_key, true);
      assert.equal(conn.json.connection.key_last4, 'abcd');
      assert.equal(conn.json.connection.base_url, fake.baseURL);
      const m = await c.get('/api/v1/models');
      assert.equal(m.status, 200, `models after restart: ${m.text}`);
      assert.equal(m.json.source, 'provider', m.text);
      assert.deepEqual(m.json.data.map((x) => x.id).sort(), ['gpt-4.1', 'gpt-4o', 'gpt-4o-mini']);
      const seen = fake.requests.filter((r) => r.path === '/v1/models');
      assert.ok(seen.length >= 1, 'the fake provider was asked for models');
      assert.equal(seen[0].headers.authorization, `Bearer ${KEY}`, 'the decrypted key is sent after restart');
    });
  } finally {
    await fake.close();
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
});

// ---- process lifecycle -------------------------------------------------------

test('graceful shutdown: SIGTERM exits 0 and logs "stopped"', async () => {
  const server = await startServer({ env: { CHATOPENAII_WEB_DIR: NO_WEB } });
  try {
    const c = new Client(server.url);
    await register(c, 'bye@example.com', PW);
    const t0 = Date.now();
    const code = await server.stop('SIGTERM');
    assert.equal(code, 0, `exit code; logs:\n${server.logs().slice(-10).join('\n')}`);
    assert.ok(Date.now() - t0 < 5000, 'an idle server stops promptly');
    const msgs = server.logs('stderr').map((l) => { try { return JSON.parse(l).msg; } catch { return null; } });
    const iShut = msgs.indexOf('shutting down');
    const iStop = msgs.lastIndexOf('stopped');
    assert.ok(iShut >= 0, '"shutting down" logged');
    assert.ok(iStop > iShut, '"stopped" logged after "shutting down"');
    assert.equal(server.sanitizerReport(), null, server.sanitizerReport());
  } finally {
    server.removeDataDir();
  }
});

test('SIGPIPE: clients that reset right after sending a request do not kill the server', async () => {
  const web = fs.mkdtempSync(path.join(os.tmpdir(), 'coai-web-'));
  fs.mkdirSync(path.join(web, 'assets'));
  fs.writeFileSync(path.join(web, 'index.html'), '<!doctype html><p>x</p>');
  fs.writeFileSync(path.join(web, 'assets', 'big-1.js'), Buffer.alloc(4 * 1024 * 1024, 0x2f));
  try {
    await withServer({ env: { CHATOPENAII_WEB_DIR: web } }, async ({ url, port, proc }) => {
      // evhttp notices a reset on the read side before it writes again, so
      // the resets below rarely reach a write; check the disposition too.
      const status = `/proc/${proc.pid}/status`;
      if (fs.existsSync(status)) {
        const ign = /^SigIgn:\s*([0-9a-f]+)$/m.exec(fs.readFileSync(status, 'utf8'));
        assert.ok(ign, 'SigIgn in /proc status');
        const bit = 1n << BigInt(os.constants.signals.SIGPIPE - 1);
        assert.ok((BigInt(`0x${ign[1]}`) & bit) !== 0n, `SIGPIPE is not ignored by the server (SigIgn ${ign[1]})`);
      }
      const c = new Client(url);
      await register(c, 'pipe@example.com', PW);
      const cookie = `coai_session=${c.cookies.get('coai_session')}`;
      const requests = [
        'GET /assets/big-1.js HTTP/1.1\r\nHost: x\r\n\r\n',
        `GET /api/v1/sessions HTTP/1.1\r\nHost: x\r\nCookie: ${cookie}\r\n\r\n`,
        `POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nX-Requested-With: chatopenaii\r\nContent-Type: application/json\r\nContent-Length: 55\r\n\r\n{"email":"pipe@example.com","password":"wrong password"}`,
        'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n',
      ];
      const once = (req, waitForData) => new Promise((resolve) => {
        const s = net.connect(port, '127.0.0.1');
        s.on('error', () => resolve());
        s.on('close', () => resolve());
        s.on('connect', () => {
          s.write(req);
          if (waitForData) s.once('data', () => s.resetAndDestroy());
          else setImmediate(() => s.resetAndDestroy());
        });
      });
      for (let round = 0; round < 10; round++) {
        await Promise.all(requests.flatMap((r) => [once(r, false), once(r, true)]));
      }
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(proc.exitCode, null, `server exited: ${proc.exitCode} ${proc.signalCode}`);
      assert.equal(proc.signalCode, null);
      const h = await c.get('/healthz');
      assert.equal(h.status, 200);
      const big = await c.get('/assets/big-1.js');
      assert.equal(big.status, 200);
      assert.equal(big.body.length, 4 * 1024 * 1024);
      assert.equal((await c.get('/api/v1/me')).status, 200);
    });
  } finally {
    fs.rmSync(web, { recursive: true, force: true });
  }
});
