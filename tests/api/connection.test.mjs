// connection.test.mjs - the provider connection (base URL + API key): the
// server default, saving/updating/deleting, validation, the key never shown
// (only its last four characters) and never stored in clear, the model list
// (provider, cache, fallback), chatting with the server's or the user's key,
// and master key rotation (env key and file key).
//
//   COAI_BIN=build-asan/server/chatopenaii COAI_SUITE=api node --test \
//     --test-concurrency=2 --test-reporter=./tests/lib/reporter.mjs tests/api/connection.test.mjs
//
// Not covered: AAD binding (a ciphertext copied to another user's row must
// not open). Proving it needs to rewrite a row of the SQLite file; Node 20 has
// no sqlite module and the sqlite3 CLI is not a test dependency, so it is left
// out rather than faked.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { startServer, Client, register, login, collectSse, defaultBinary, pgDatabaseFor, onPostgres } from '../lib/harness.mjs';
import { execFileSync } from 'node:child_process';
import { repoRoot } from '../lib/fixtures.mjs';
import { startFakeOpenAI, MODELS } from '../upstream/fake-openai.mjs';

const PASSWORD = 'correct horse battery';
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const SANITIZER = /AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|runtime error:/;
const FALLBACK = 'fb-one, fb-two,fb-three';
const FALLBACK_IDS = ['fb-one', 'fb-two', 'fb-three'];
const SORTED_MODEL_IDS = MODELS.map((m) => m.id).sort();

const hex64 = () => crypto.randomBytes(32).toString('hex');
// A long, distinctive API key (ASCII, no spaces).
const canaryKey = (tag) => `sk-proj-${tag}-${crypto.randomBytes(24).toString('hex')}`;

// ---- helpers ---------------------------------------------------------------------

// A client that keeps every response body it received, to prove a secret
// never appears in any of them.
class RecordingClient extends Client {
  constructor(...args) { super(...args); this.bodies = []; }
  async request(method, p, opts) {
    const res = await super.request(method, p, opts);
    this.bodies.push(`${method} ${p} -> ${res.status} ${res.text}`);
    return res;
  }
}

let userSeq = 0;
async function newUser(url, name = 'user') {
  const c = new RecordingClient(url);
  const email = `${name}${++userSeq}-${process.pid}@example.com`;
  await register(c, email, PASSWORD);
  c.email = email;
  return c;
}

// Stop a server; returns its sanitizer report (null when clean) and exit code.
async function stopServer(server) {
  const code = await server.stop();
  return { code, report: server.sanitizerReport() };
}

function assertCleanStop({ code, report }, what = 'server') {
  assert.equal(report, null, `${what}: sanitizer report:\n${report}`);
  assert.equal(code, 0, `${what}: exit code after SIGTERM`);
}

// Run body with cleanup: servers and fakes registered on `res` are stopped,
// data dirs removed; sanitizer reports fail the test.
async function withCleanup(fn) {
  const res = { servers: [], fakes: [], dirs: [], clients: [] };
  let failure;
  try {
    await fn(res);
  } catch (err) {
    failure = err;
  }
  for (const c of res.clients) c.close();
  const reports = [];
  for (const s of res.servers) {
    if (s.proc.exitCode === null && s.proc.signalCode === null) {
      try {
        const r = await stopServer(s);
        if (r.report) reports.push(r.report);
        else if (r.code !== 0 && !failure) failure = new Error(`server exit code ${r.code}`);
      } catch (err) { failure ??= err; }
    } else if (s.sanitizerReport()) {
      reports.push(s.sanitizerReport());
    }
  }
  for (const f of res.fakes) await f.close();
  for (const d of res.dirs) fs.rmSync(d, { recursive: true, force: true });
  if (failure) {
    if (reports.length) failure.message += `\n--- sanitizer report ---\n${reports.join('\n')}`;
    throw failure;
  }
  assert.deepEqual(reports, [], 'sanitizer reports in server output');
}

// Environment for a server: never the harness's default key unless asked.
async function start(res, { fake, key, env = {}, dataDir } = {}) {
  const server = await startServer({
    dataDir,
    env: {
      CHATOPENAII_TITLES: 'off',
      CHATOPENAII_MODELS: FALLBACK,
      CHATOPENAII_PROVIDER_BASE_URL: fake ? fake.baseURL : null,
      CHATOPENAII_PROVIDER_API_KEY: key ?? null,
      ...env,
    },
  });
  res.servers.push(server);
  if (!res.dirs.includes(server.dataDir)) res.dirs.push(server.dataDir);
  return server;
}

async function fake(res) {
  const f = await startFakeOpenAI();
  res.fakes.push(f);
  return f;
}

function assertError(r, status, code, what = '') {
  assert.equal(r.status, status, `${what}: status (body ${r.text})`);
  assert.ok(r.json?.error, `${what}: error body (got ${r.text})`);
  assert.deepEqual(Object.keys(r.json.error).sort(), ['code', 'message'], `${what}: error keys`);
  assert.equal(r.json.error.code, code, `${what}: code (message ${r.json.error.message})`);
}

async function waitTurn(c, turnId) {
  const events = await collectSse(c, `/api/v1/turns/${turnId}/events`, {
    until: (ev) => ev.event === 'done', timeoutMs: 20000,
  });
  c.bodies?.push(...events.map((e) => e.data));
  const done = events.at(-1);
  assert.equal(done?.event, 'done', `turn ended without done: ${events.map((e) => `${e.event} ${e.data}`).join('\n')}`);
  return JSON.parse(done.data);
}

// Create a chat, send a message, wait for the turn; returns the done payload.
async function chatOnce(c, content = 'Hello there') {
  const ch = await c.post('/api/v1/chats', { title: 'conn test' });
  assert.equal(ch.status, 201, ch.text);
  const m = await c.post(`/api/v1/chats/${ch.json.chat.id}/messages`, { content });
  assert.equal(m.status, 202, `send: ${m.text}`);
  return waitTurn(c, m.json.turn.id);
}

// Authorization headers of the fake's recorded requests to a path.
const authsTo = (f, p) => f.requests.filter((r) => r.path === p).map((r) => r.headers.authorization);

// Every file below dir (recursively), as [relative path, bytes].
function readTree(dir) {
  const out = [];
  for (const ent of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, ent.name);
    if (ent.isDirectory()) out.push(...readTree(p));
    else if (ent.isFile()) out.push([path.relative(dir, p), fs.readFileSync(p)]);
  }
  return out;
}

// Forms of a secret to look for: as is, its distinctive body, hex, base64.
function secretForms(secret) {
  const body = secret.slice(0, -4); // all but the last four (those are shown)
  return [secret, body, Buffer.from(secret).toString('hex'), Buffer.from(secret).toString('base64').slice(0, 40)];
}

function assertNoSecretIn(haystacks, secret, what) {
  for (const form of secretForms(secret)) {
    for (const [name, bytes] of haystacks) {
      const buf = Buffer.isBuffer(bytes) ? bytes : Buffer.from(String(bytes));
      assert.equal(buf.indexOf(form), -1, `${what}: secret (form "${form.slice(0, 24)}...") found in ${name}`);
    }
  }
}

// Run the binary's CLI with the server environment.
function cli(args, { dataDir, env = {} }) {
  const full = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('CHATOPENAII_')));
  Object.assign(full, { CHATOPENAII_DATA_DIR: dataDir, CHATOPENAII_LOG_LEVEL: 'info' });
  const pg = pgDatabaseFor(dataDir);
  if (pg) full.CHATOPENAII_DATABASE_URL = pg;
  for (const [k, v] of Object.entries(env)) {
    if (v === null || v === undefined) delete full[k];
    else full[k] = String(v);
  }
  const r = spawnSync(defaultBinary, args, { cwd: repoRoot, env: full, encoding: 'utf8', timeout: 30000 });
  const out = `${r.stdout}\n${r.stderr}`;
  assert.ok(!SANITIZER.test(out), `sanitizer report from ${args.join(' ')}:\n${out}`);
  return { status: r.status, stdout: r.stdout, stderr: r.stderr, out };
}

// ---- the connection resource ---------------------------------------------------------

test('GET connection with none saved shows the server default', async () => {
  await withCleanup(async (res) => {
    // No server key, default base URL.
    let s = await start(res);
    let c = await newUser(s.url);
    res.clients.push(c);
    let r = await c.get('/api/v1/connection');
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.json, {
      connection: { id: null, base_url: 'https://api.openai.com/v1', has_key: false, key_last4: null, source: 'server' },
    });
    assertCleanStop(await stopServer(s));

    // A server key and base URL: has_key true, the key itself never shown.
    const serverKey = canaryKey('server-default');
    s = await start(res, { env: { CHATOPENAII_PROVIDER_BASE_URL: 'http://127.0.0.1:9/custom/v1/', CHATOPENAII_PROVIDER_API_KEY: serverKey } });
    c = await newUser(s.url);
    res.clients.push(c);
    r = await c.get('/api/v1/connection');
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.json, {
      connection: { id: null, base_url: 'http://127.0.0.1:9/custom/v1', has_key: true, key_last4: null, source: 'server' },
    });
    assertNoSecretIn(c.bodies.map((b, i) => [`response ${i}`, b]), serverKey, 'server key in responses');
    assertNoSecretIn([['server log', s.logs().join('\n')]], serverKey, 'server key in the log');
  });
});

test('PUT/GET/DELETE connection: key required first, last4 only, key kept on update, validation', async () => {
  await withCleanup(async (res) => {
    const f1 = await fake(res);
    const f2 = await fake(res);
    const s = await start(res);
    const c = await newUser(s.url);
    res.clients.push(c);
    const KEY = canaryKey('put-get-delete');

    // Validation order: types, then base_url, then api_key, then the missing key.
    assertError(await c.put('/api/v1/connection', { base_url: 'ftp://x/v1' }), 400, 'invalid_base_url', 'bad url, no key');
    assertError(await c.put('/api/v1/connection', { base_url: 'ftp://x/v1', api_key: 'bad key' }), 400, 'invalid_base_url', 'bad url and key');
    assertError(await c.put('/api/v1/connection', { base_url: 7, api_key: 'bad key' }), 400, 'invalid_request', 'wrong type first');

    // The first save needs a key.
    assertError(await c.put('/api/v1/connection', { base_url: f1.baseURL }), 400, 'invalid_request', 'first PUT without api_key');
    assertError(await c.put('/api/v1/connection', { base_url: f1.baseURL, api_key: null }), 400, 'invalid_request', 'first PUT with null key');
    assert.equal((await c.get('/api/v1/connection')).json.connection.source, 'server', 'nothing saved');

    const put = await c.put('/api/v1/connection', { base_url: `${f1.baseURL}//`, api_key: KEY });
    assert.equal(put.status, 200, put.text);
    const conn = put.json.connection;
    assert.deepEqual(Object.keys(conn).sort(), ['base_url', 'created_at', 'has_key', 'id', 'key_last4', 'source', 'updated_at']);
    assert.match(conn.id, UUID);
    assert.equal(conn.base_url, f1.baseURL, 'trailing slashes dropped');
    assert.equal(conn.has_key, true);
    assert.equal(conn.key_last4, KEY.slice(-4));
    assert.equal(conn.source, 'user');
    assert.ok(Number.isInteger(conn.created_at) && Number.isInteger(conn.updated_at));
    assert.deepEqual((await c.get('/api/v1/connection')).json, { connection: conn }, 'GET shows what PUT saved');

    // The saved key is the one used.
    const m1 = await c.get('/api/v1/models');
    assert.equal(m1.json?.source, 'provider', m1.text);
    assert.deepEqual(authsTo(f1, '/v1/models'), [`Bearer ${KEY}`]);

    // Update without a key: base URL changes, the key stays (and still works).
    const upd = await c.put('/api/v1/connection', { base_url: f2.baseURL });
    assert.equal(upd.status, 200, upd.text);
    assert.equal(upd.json.connection.id, conn.id, 'same connection');
    assert.equal(upd.json.connection.base_url, f2.baseURL);
    assert.equal(upd.json.connection.has_key, true);
    assert.equal(upd.json.connection.key_last4, KEY.slice(-4));
    assert.equal(upd.json.connection.created_at, conn.created_at);
    const m2 = await c.get('/api/v1/models');
    assert.equal(m2.json?.source, 'provider', m2.text);
    assert.deepEqual(authsTo(f2, '/v1/models'), [`Bearer ${KEY}`], 'the kept key goes to the new base URL');
    assert.equal(authsTo(f1, '/v1/models').length, 1, 'the old base URL is not used any more');

    // Invalid input: 400, nothing changes.
    const before = (await c.get('/api/v1/connection')).json;
    const badUrls = ['ftp://example.com/v1', 'http://exa mple.com/v1', 'http://example.com/v1?api-version=1',
      'http://example.com/v1#frag', 'http://', 'https:///v1', 'example.com/v1', 'http://example.com/v1\u0007',
      'http://example.com/\tv1', 'javascript:alert(1)', ''];
    for (const u of badUrls) {
      assertError(await c.put('/api/v1/connection', { base_url: u, api_key: 'sk-valid-key' }), 400, 'invalid_base_url', `base_url ${JSON.stringify(u)}`);
    }
    const badKeys = ['sk with spaces', ' sk-leading', 'sk-trailing ', 'sk-tab\tkey', 'sk-newline\nkey', 'sk-ünicode', 'sk-\u007f', ''];
    for (const k of badKeys) {
      assertError(await c.put('/api/v1/connection', { base_url: f1.baseURL, api_key: k }), 400, 'invalid_api_key', `api_key ${JSON.stringify(k)}`);
    }
    assertError(await c.put('/api/v1/connection', { api_key: 'sk-valid-key' }), 400, 'invalid_request', 'no base_url');
    assertError(await c.put('/api/v1/connection', { base_url: 42, api_key: 'sk-valid-key' }), 400, 'invalid_request', 'base_url a number');
    assertError(await c.put('/api/v1/connection', { base_url: f1.baseURL, api_key: ['sk'] }), 400, 'invalid_request', 'api_key an array');
    assertError(await c.put('/api/v1/connection', { base_url: `http://h/${'a'.repeat(2048)}`, api_key: 'sk-valid-key' }), 400, 'invalid_request', 'base_url too long');
    assertError(await c.put('/api/v1/connection', { base_url: f1.baseURL, api_key: `sk-${'k'.repeat(1024)}` }), 400, 'invalid_request', 'api_key too long');
    assertError(await c.put('/api/v1/connection'), 400, 'invalid_request', 'no body');
    assert.deepEqual((await c.get('/api/v1/connection')).json, before, 'rejected PUTs change nothing');

    // Another user does not see or use it.
    const other = await newUser(s.url, 'other');
    res.clients.push(other);
    assert.equal((await other.get('/api/v1/connection')).json.connection.source, 'server');
    assertError(await other.delete('/api/v1/connection'), 404, 'not_found', 'other user deletes');
    assert.equal((await c.get('/api/v1/connection')).json.connection.id, conn.id);

    // DELETE: 204, back to the server default, then 404; the key is gone for good.
    const del = await c.delete('/api/v1/connection');
    assert.equal(del.status, 204);
    assert.equal(del.text, '');
    const after = (await c.get('/api/v1/connection')).json.connection;
    assert.equal(after.source, 'server');
    assert.equal(after.has_key, false);
    assertError(await c.delete('/api/v1/connection'), 404, 'not_found', 'second DELETE');
    assertError(await c.put('/api/v1/connection', { base_url: f1.baseURL }), 400, 'invalid_request', 'PUT without key after DELETE');
    const m3 = await c.get('/api/v1/models');
    assert.equal(m3.json?.source, 'fallback', `no key after delete: ${m3.text}`);

    // The full key appears in no response and no log line.
    assertNoSecretIn(c.bodies.map((b, i) => [`response ${i}: ${b.slice(0, 60)}`, b]), KEY, 'responses');
    assertNoSecretIn([['server log', s.logs().join('\n')]], KEY, 'server log');
  });
});

test('the API key is encrypted at rest: not in any file of the data dir', async () => {
  await withCleanup(async (res) => {
    const f = await fake(res);
    const s = await start(res);
    const c = await newUser(s.url);
    res.clients.push(c);
    const KEY = canaryKey('AT-REST-CANARY');
    const put = await c.put('/api/v1/connection', { base_url: f.baseURL, api_key: KEY });
    assert.equal(put.status, 200, put.text);
    const done = await chatOnce(c); // the key is decrypted and used
    assert.equal(done.status, 'complete');
    assert.deepEqual(authsTo(f, '/v1/chat/completions'), [`Bearer ${KEY}`]);

    const check = (when) => {
      const files = readTree(s.dataDir);
      const names = files.map(([n]) => n);
      if (onPostgres()) {
        // the database is PostgreSQL's: a full dump of it is read as well
        files.push(['postgres dump', execFileSync('pg_dump', [pgDatabaseFor(s.dataDir)])]);
      } else {
        assert.ok(names.some((n) => n.endsWith('.db')), `${when}: a database file in ${names.join(', ')}`);
      }
      // Positive control: plaintext columns are there, so we read the right bytes.
      assert.ok(files.some(([, b]) => b.indexOf(f.baseURL) >= 0), `${when}: base_url is stored in clear somewhere`);
      assert.ok(files.some(([, b]) => b.indexOf(c.email) >= 0), `${when}: the email is stored somewhere`);
      assertNoSecretIn(files, KEY, `${when}: data dir`);
    };
    check('while running'); // db + -wal + -shm
    assertCleanStop(await stopServer(s));
    check('after stop');
    assertNoSecretIn([['server log', s.logs().join('\n')]], KEY, 'server log');
    assertNoSecretIn(c.bodies.map((b, i) => [`response ${i}`, b]), KEY, 'responses');
  });
});

// ---- models ------------------------------------------------------------------------------

test('models: provider (sorted), then cache; bad key, dead upstream or no key -> fallback', async () => {
  await withCleanup(async (res) => {
    const f = await fake(res);
    const s = await start(res, { fake: f }); // base URL set, but no server key
    const c = await newUser(s.url);
    res.clients.push(c);
    const models = async () => {
      const r = await c.get('/api/v1/models');
      assert.equal(r.status, 200, r.text);
      assert.deepEqual(Object.keys(r.json).sort(), ['data', 'default', 'source']);
      assert.equal(r.json.default, 'gpt-4o-mini');
      for (const m of r.json.data) assert.deepEqual(Object.keys(m), ['id']);
      return { source: r.json.source, ids: r.json.data.map((m) => m.id) };
    };
    const fetches = () => f.requests.filter((r) => r.path === '/v1/models').length;

    // No key anywhere: the configured fallback list, provider not asked.
    assert.deepEqual(await models(), { source: 'fallback', ids: FALLBACK_IDS });
    assert.equal(fetches(), 0);

    const GOOD = canaryKey('models');
    assert.equal((await c.put('/api/v1/connection', { base_url: f.baseURL, api_key: GOOD })).status, 200);
    assert.deepEqual(await models(), { source: 'provider', ids: SORTED_MODEL_IDS });
    assert.equal(fetches(), 1);
    assert.deepEqual(SORTED_MODEL_IDS, ['gpt-4.1', 'gpt-4o', 'gpt-4o-mini']);
    assert.notDeepEqual(MODELS.map((m) => m.id), SORTED_MODEL_IDS, 'the fake lists them unsorted, so sorting is tested');
    assert.deepEqual(await models(), { source: 'cache', ids: SORTED_MODEL_IDS });
    assert.equal(fetches(), 1, 'the cached call does not reach the provider');

    // Invalid key: the fake answers 401; fallback, and the cache of the good key is not used.
    assert.equal((await c.put('/api/v1/connection', { base_url: f.baseURL, api_key: 'sk-bad' })).status, 200);
    assert.deepEqual(await models(), { source: 'fallback', ids: FALLBACK_IDS });
    assert.deepEqual(f.requests.filter((r) => r.path === '/v1/models').at(-1).headers.authorization, 'Bearer sk-bad');
    assert.deepEqual(await models(), { source: 'fallback', ids: FALLBACK_IDS }, 'a failure is not cached as success');
    assert.equal(fetches(), 3);

    // Back to the good key: its cached list.
    assert.equal((await c.put('/api/v1/connection', { base_url: f.baseURL, api_key: GOOD })).status, 200);
    assert.deepEqual(await models(), { source: 'cache', ids: SORTED_MODEL_IDS });

    // Upstream not reachable: fallback, promptly.
    assert.equal((await c.put('/api/v1/connection', { base_url: 'http://127.0.0.1:9/v1' })).status, 200);
    const t0 = Date.now();
    assert.deepEqual(await models(), { source: 'fallback', ids: FALLBACK_IDS });
    assert.ok(Date.now() - t0 < 10000);

    // Connection removed, no server key: fallback again.
    assert.equal((await c.delete('/api/v1/connection')).status, 204);
    assert.deepEqual(await models(), { source: 'fallback', ids: FALLBACK_IDS });
    assertNoSecretIn(c.bodies.map((b, i) => [`response ${i}`, b]), GOOD, 'responses');
  });
});

// ---- chatting with which key ---------------------------------------------------------------

test('no key at all: sending a message is 400 provider_not_configured and stores nothing', async () => {
  await withCleanup(async (res) => {
    const f = await fake(res);
    const s = await start(res, { fake: f });
    const c = await newUser(s.url);
    res.clients.push(c);
    const ch = (await c.post('/api/v1/chats', { title: 'no key' })).json.chat;
    const url = `/api/v1/chats/${ch.id}/messages`;
    assertError(await c.post(url, { content: 'hello?' }), 400, 'provider_not_configured', 'send without a key');
    const got = (await c.get(`/api/v1/chats/${ch.id}`)).json;
    assert.deepEqual(got.messages, [], 'no message stored');
    assert.equal(got.chat.current_leaf_id, null);
    assert.equal(f.requests.length, 0, 'nothing reached the provider');

    // With a saved connection it works; after deleting it, the same 400.
    const KEY = canaryKey('own');
    assert.equal((await c.put('/api/v1/connection', { base_url: f.baseURL, api_key: KEY })).status, 200);
    const done = await chatOnce(c);
    assert.equal(done.status, 'complete');
    assert.equal((await c.delete('/api/v1/connection')).status, 204);
    assertError(await c.post(url, { content: 'again?' }), 400, 'provider_not_configured', 'send after delete');
  });
});

test('server default connection: a user without one can chat; their own key takes precedence', async () => {
  await withCleanup(async (res) => {
    const f = await fake(res);
    const s = await start(res, { fake: f, key: 'sk-server' });
    const c = await newUser(s.url);
    res.clients.push(c);
    const conn = (await c.get('/api/v1/connection')).json.connection;
    assert.equal(conn.source, 'server');
    assert.equal(conn.has_key, true);
    assert.equal(conn.base_url, f.baseURL);

    const done = await chatOnce(c);
    assert.equal(done.status, 'complete', JSON.stringify(done));
    assert.ok(done.message.content.length > 0 && done.message.content[0].text.length > 0, 'an answer streamed');
    assert.deepEqual(authsTo(f, '/v1/chat/completions'), ['Bearer sk-server']);
    assert.ok(!c.bodies.some((b) => b.includes('sk-server')), 'the server key is never shown');

    // A user connection wins over the server default.
    const f2 = await fake(res);
    const KEY = canaryKey('mine');
    assert.equal((await c.put('/api/v1/connection', { base_url: f2.baseURL, api_key: KEY })).status, 200);
    assert.equal((await chatOnce(c)).status, 'complete');
    assert.deepEqual(authsTo(f2, '/v1/chat/completions'), [`Bearer ${KEY}`]);
    assert.equal(authsTo(f, '/v1/chat/completions').length, 1, 'the server default was not used');

    // Another user still uses the server default.
    const other = await newUser(s.url, 'other');
    res.clients.push(other);
    assert.equal((await chatOnce(other)).status, 'complete');
    assert.deepEqual(authsTo(f, '/v1/chat/completions'), ['Bearer sk-server', 'Bearer sk-server']);
  });
});

// ---- master key rotation ---------------------------------------------------------------------

test('rotate-master-key with CHATOPENAII_MASTER_KEY: new key decrypts, old key fails cleanly', async () => {
  await withCleanup(async (res) => {
    const f = await fake(res);
    const OLD = hex64();
    const NEW = hex64();
    const THIRD = hex64();
    const KEY = canaryKey('rotate-env');
    let s = await start(res, { env: { CHATOPENAII_MASTER_KEY: OLD } });
    const dataDir = s.dataDir;
    let c = await newUser(s.url);
    res.clients.push(c);
    const { email } = c;
    const saved = (await c.put('/api/v1/connection', { base_url: f.baseURL, api_key: KEY })).json.connection;
    assert.equal((await chatOnce(c)).status, 'complete', 'baseline turn');
    assertCleanStop(await stopServer(s), 'first server');
    assert.ok(!fs.existsSync(path.join(dataDir, 'master.key')), 'an env master key writes no key file');

    // Refusals first: they must change nothing.
    let r = cli(['admin', 'rotate-master-key', '--new-key', OLD], { dataDir, env: { CHATOPENAII_MASTER_KEY: OLD } });
    assert.equal(r.status, 2, `same key: ${r.out}`);
    assert.match(r.stderr, /equals the current one/);
    r = cli(['admin', 'rotate-master-key', '--new-key', 'not-a-key'], { dataDir, env: { CHATOPENAII_MASTER_KEY: OLD } });
    assert.equal(r.status, 2, `malformed new key: ${r.out}`);
    r = cli(['admin', 'rotate-master-key', '--new-key', NEW], { dataDir, env: { CHATOPENAII_MASTER_KEY: THIRD } });
    assert.equal(r.status, 1, `wrong current key: ${r.out}`);
    assert.match(r.stderr, /sealed with another master key/);
    assert.match(r.stderr, /nothing was changed/);

    r = cli(['admin', 'rotate-master-key', '--new-key', NEW], { dataDir, env: { CHATOPENAII_MASTER_KEY: OLD } });
    assert.equal(r.status, 0, `rotate: ${r.out}`);
    assert.match(r.stdout, /re-encrypted 1 provider key\(s\)/);
    for (const secret of [OLD, NEW, KEY]) assert.ok(!r.out.includes(secret), 'no key material printed');
    assertNoSecretIn(readTree(dataDir), KEY, 'data dir after rotation');

    // Restart with the NEW key: the user's key decrypts and streams.
    f.reset();
    s = await start(res, { dataDir, env: { CHATOPENAII_MASTER_KEY: NEW } });
    c = new RecordingClient(s.url);
    res.clients.push(c);
    await login(c, email, PASSWORD);
    const conn = (await c.get('/api/v1/connection')).json.connection;
    assert.equal(conn.id, saved.id);
    assert.equal(conn.key_last4, KEY.slice(-4));
    const done = await chatOnce(c, 'after rotation');
    assert.equal(done.status, 'complete', JSON.stringify(done));
    assert.deepEqual(authsTo(f, '/v1/chat/completions'), [`Bearer ${KEY}`]);
    assertCleanStop(await stopServer(s), 'server with the new key');

    // Restart with the OLD key: a clean 5xx, no crash, no key material.
    f.reset();
    s = await start(res, { dataDir, env: { CHATOPENAII_MASTER_KEY: OLD } });
    c = new RecordingClient(s.url);
    res.clients.push(c);
    await login(c, email, PASSWORD);
    const ch = (await c.post('/api/v1/chats', { title: 'old key' })).json.chat;
    const send = await c.post(`/api/v1/chats/${ch.id}/messages`, { content: 'will this decrypt?' });
    assert.ok(send.status >= 500 && send.status < 600, `send with the old master key: ${send.status} ${send.text}`);
    assert.ok(send.json?.error?.code, `JSON error body: ${send.text}`);
    // The model list must not crash or leak either (whatever it answers).
    const models = await c.get('/api/v1/models');
    assert.ok(models.json && (models.status === 200 || models.status >= 500), `models with the old master key: ${models.status} ${models.text}`);
    assert.equal(f.requests.length, 0, 'nothing sent upstream with an undecryptable key');
    assert.equal((await c.get('/healthz')).status, 200, 'still serving');
    const got = (await c.get(`/api/v1/chats/${ch.id}`)).json;
    assert.deepEqual(got.messages, [], 'the failed send stored nothing');
    const logs = s.logs().join('\n');
    for (const secret of [OLD, NEW]) {
      assert.ok(!logs.includes(secret), 'no master key in the log');
      assert.ok(!c.bodies.some((b) => b.includes(secret)), 'no master key in responses');
    }
    assertNoSecretIn([['server log', logs], ...c.bodies.map((b, i) => [`response ${i}`, b])], KEY, 'old-key server');
    assertCleanStop(await stopServer(s), 'server with the old key');
    assert.equal(s.proc.exitCode, 0);
  });
});

test('rotate-master-key with the file key: master.key is replaced and the server still works', async () => {
  await withCleanup(async (res) => {
    const f = await fake(res);
    const KEY = canaryKey('rotate-file');
    let s = await start(res);
    const dataDir = s.dataDir;
    const keyFile = path.join(dataDir, 'master.key');
    assert.ok(fs.existsSync(keyFile), 'a master key file was generated');
    const oldText = fs.readFileSync(keyFile, 'utf8');
    assert.match(oldText.trim(), /^[0-9a-f]{64}$/);
    let c = await newUser(s.url);
    res.clients.push(c);
    const { email } = c;
    assert.equal((await c.put('/api/v1/connection', { base_url: f.baseURL, api_key: KEY })).status, 200);
    assert.equal((await chatOnce(c)).status, 'complete', 'baseline turn');
    assertCleanStop(await stopServer(s), 'first server');

    const r = cli(['admin', 'rotate-master-key'], { dataDir });
    assert.equal(r.status, 0, `rotate: ${r.out}`);
    assert.match(r.stdout, /re-encrypted 1 provider key\(s\)/);
    assert.ok(r.stdout.includes(keyFile), `names the key file: ${r.stdout}`);
    const newText = fs.readFileSync(keyFile, 'utf8');
    assert.match(newText.trim(), /^[0-9a-f]{64}$/);
    assert.notEqual(newText.trim(), oldText.trim(), 'the key file holds a new key');
    assert.ok(!r.out.includes(newText.trim()) && !r.out.includes(oldText.trim()), 'no key printed');
    assert.equal(fs.statSync(keyFile).mode & 0o077, 0, 'key file is private (0600)');
    assert.ok(!fs.existsSync(`${keyFile}.new`), 'no temporary file left');

    f.reset();
    s = await start(res, { dataDir });
    c = new RecordingClient(s.url);
    res.clients.push(c);
    await login(c, email, PASSWORD);
    const done = await chatOnce(c, 'after file rotation');
    assert.equal(done.status, 'complete', JSON.stringify(done));
    assert.deepEqual(authsTo(f, '/v1/chat/completions'), [`Bearer ${KEY}`]);
    assertCleanStop(await stopServer(s), 'restarted server');

    // The old key no longer opens the rows.
    f.reset();
    s = await start(res, { dataDir, env: { CHATOPENAII_MASTER_KEY: oldText.trim() } });
    c = new RecordingClient(s.url);
    res.clients.push(c);
    await login(c, email, PASSWORD);
    const ch = (await c.post('/api/v1/chats', {})).json.chat;
    const send = await c.post(`/api/v1/chats/${ch.id}/messages`, { content: 'old file key' });
    assert.ok(send.status >= 500 && send.status < 600, `old key: ${send.status} ${send.text}`);
    assert.equal(f.requests.length, 0);
    assertCleanStop(await stopServer(s), 'server with the old file key');
  });
});
