// matrix.test.mjs - a route-table-driven hardening test (issue #5). Every
// route printed by `chatopenaii routes` must be in MATRIX below (the test
// fails when a route is added without an entry, or an entry is stale), and
// every route is then called:
//
//   - authorization: as anonymous (401), as another non-admin user (never
//     2xx on the owner's resources: 404 for owner-scoped {id} routes, 403 on
//     /admin routes, collection routes never list the owner's data), then
//     as the owner (or the admin for /admin routes): 2xx with a valid body.
//     After the other user's attempts the owner's data is unchanged (chat,
//     messages, token, session, connection, pool key, prices, limits);
//   - hostile bodies on every route that takes one (POST/PUT/PATCH): invalid
//     JSON, 10,000-deep nesting, invalid UTF-8, non-object JSON, duplicate
//     keys, every documented field (docs/openapi.yaml) with wrong types,
//     unknown extra fields, a 2 MiB body (413), a wrong content type;
//   - hostile path parameters on every route that has one (encoded
//     traversal, NUL, invalid percent-encoding and UTF-8, a 4,000-byte id,
//     an encoded CRLF ...), and a malformed query string on every route;
//   - raw sockets: a header value with a bare CR or bare LF, a header line
//     without a colon: 400 or a closed connection, never an injected header.
//
// Every answer: never 5xx; errors have the one shape
// {"error":{"code":string,"message":string}}; the body is valid UTF-8; the
// server answers /healthz after each batch; at the end it stops cleanly
// (exit 0 after SIGTERM) without a sanitizer report.
//
//   COAI_BIN=$PWD/build-asan/server/chatopenaii node --test tests/api/matrix.test.mjs

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { startServer, Client, collectSse, defaultBinary } from '../lib/harness.mjs';
import { repoRoot } from '../lib/fixtures.mjs';
import { startFakeOpenAI } from '../upstream/fake-openai.mjs';
import { shortReport } from './turn-helpers.mjs';

const PW = 'correct horse battery';
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const OWNER_TITLE = 'owner-title-7d1e';
const OWNER_TEXT = 'owner-secret-message-4b2c';
const OWNER_PROMPT = 'owner-secret-prompt-9a3f';
const OWNER_TOKEN = 'owner-token-5e6f';
const OWNER_KEY = 'owner-pool-key-0c1d';
const OWNER_PRICE_MODEL = 'matrix-model-owner';
const OTHER_MARK = 'other-was-here-8e8e';
const utf8 = new TextDecoder('utf-8', { fatal: true });
let seq = 0;
const email = (p) => `${p}${++seq}-${process.pid}@example.com`;

// ---- the route table ---------------------------------------------------------------

const ROUTES = execFileSync(defaultBinary, ['routes'], { encoding: 'utf8' })
  .trim().split('\n').map((l) => l.trim()).filter(Boolean)
  .map((l) => {
    const m = /^(GET|PUT|POST|PATCH|DELETE) (\/\S*)$/.exec(l);
    if (!m) throw new Error(`\`routes\` printed ${JSON.stringify(l)}`);
    return { method: m[1], pattern: m[2], key: l };
  });
const hasBody = (method) => method === 'POST' || method === 'PUT' || method === 'PATCH';
const params = (pattern) => [...pattern.matchAll(/\{(\w+)\}/g)].map((m) => m[1]);

// ---- request bodies from docs/openapi.yaml -------------------------------------------
// Read line by line (the layout openapi.test.mjs enforces): path keys at 2
// spaces, methods at 4, requestBody at 6 with its schema $ref below it;
// schema properties at 8 spaces under components/schemas, their type at 10.

function specBodies() {
  const lines = fs.readFileSync(path.join(repoRoot, 'docs/openapi.yaml'), 'utf8').split('\n');
  const ops = new Map(); // "METHOD /path" -> {schema, ok: [2xx codes]}
  let p = null;
  let op = null;
  let inBody = false;
  let inResponses = false;
  let inPaths = false;
  for (const l of lines) {
    if (/^\S/.test(l)) { inPaths = /^paths:/.test(l); p = null; op = null; continue; }
    if (!inPaths) continue;
    let m;
    if ((m = /^ {2}(\/\S+):\s*$/.exec(l))) { p = m[1]; op = null; continue; }
    if (p && (m = /^ {4}(get|put|post|patch|delete):\s*$/.exec(l))) {
      op = { schema: null, ok: [] };
      ops.set(`${m[1].toUpperCase()} ${p}`, op);
      inBody = false;
      inResponses = false;
      continue;
    }
    if (!op) continue;
    if (/^ {6}\S/.test(l)) {
      inBody = /^ {6}requestBody:/.test(l);
      inResponses = /^ {6}responses:/.test(l);
      continue;
    }
    if (inBody && (m = /\$ref: '#\/components\/schemas\/(\w+)'/.exec(l))) op.schema = m[1];
    if (inResponses && (m = /^ {8}'(2\d\d)':/.exec(l))) op.ok.push(Number(m[1]));
  }
  // components/schemas: properties and a coarse type of each.
  const schemas = new Map();
  const start = lines.findIndex((l) => /^ {2}schemas:\s*$/.test(l));
  let name = null;
  let inProps = false;
  let field = null;
  for (const l of lines.slice(start + 1)) {
    if (/^ {0,2}\S/.test(l)) break;
    let m;
    if ((m = /^ {4}(\w+):\s*$/.exec(l))) { name = m[1]; schemas.set(name, {}); inProps = false; field = null; continue; }
    if (/^ {6}\S/.test(l)) { inProps = /^ {6}properties:/.test(l); field = null; continue; }
    if (!inProps) continue;
    if ((m = /^ {8}(\w+):\s*$/.exec(l))) { field = m[1]; schemas.get(name)[field] = { type: null, ref: null, items: null }; continue; }
    if (!field) continue;
    const f = schemas.get(name)[field];
    if ((m = /^ {10}type: \[?(\w+)/.exec(l))) f.type = m[1];
    else if ((m = /^ {10,12}(?:- )?\$ref: '#\/components\/schemas\/(\w+)'/.exec(l)) && !f.ref) f.ref = m[1];
    else if ((m = /^ {12}type: (\w+)/.exec(l)) && f.type === 'array') f.items = m[1];
  }
  const fieldsOf = (schema) => Object.entries(schemas.get(schema) ?? {}).map(([k, f]) => {
    let type = f.type;
    if (!type && f.ref === 'MessageContent') type = 'content';
    else if (!type && f.ref) type = 'object';
    return { name: k, type, items: f.items };
  });
  return { ops, fieldsOf };
}
const SPEC = specBodies();

// Values of the wrong type for a documented field type.
function wrongValues(f) {
  switch (f.type) {
    case 'string': return [12345, true, {}, ['x']];
    case 'integer': return ['12', 1.5, true, {}, [1]];
    case 'number': return ['1', true, {}, [1]];
    case 'boolean': return ['true', 1, {}, []];
    case 'array': return [{}, 'x', 1, ...(f.items === 'string' ? [[1], [{}], [null]] : [])];
    case 'object': return [[], 'x', 1, true];
    case 'content': return [1, true, {}, [1], [{ type: 'text', text: 5 }], [{ type: 5, text: 'x' }]];
    default: throw new Error(`no wrong values for type ${f.type} of ${f.name}`);
  }
}

// ---- HTTP ------------------------------------------------------------------------------

let server;
let fake;
let requests = 0;

// One request on a fresh connection; the path is sent exactly as given (no
// URL normalization, so %2e%2e and friends reach the server). Resolves
// {status, headers, text, json, buf}; status 0 with `error` when the
// connection failed or closed without an answer.
function send(method, p, { cookie, json, body, headers = {}, csrf = true, timeoutMs = 20000 } = {}) {
  requests++;
  const h = { accept: 'application/json', host: `127.0.0.1:${server.port}` };
  let payload = body;
  if (json !== undefined) payload = JSON.stringify(json);
  if (typeof payload === 'string') payload = Buffer.from(payload, 'utf8');
  if (payload !== undefined) {
    h['content-type'] = 'application/json';
    h['content-length'] = payload.length;
  }
  if (cookie) h.cookie = cookie;
  if (csrf && method !== 'GET' && method !== 'HEAD') {
    h['x-requested-with'] = 'chatopenaii';
    h.origin = server.url;
  }
  Object.assign(h, headers);
  for (const k of Object.keys(h)) if (h[k] === null) delete h[k];
  return new Promise((resolve) => {
    const req = http.request({ host: '127.0.0.1', port: server.port, method, path: p, headers: h, agent: false });
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`${method} ${p.slice(0, 200)}: no answer within ${timeoutMs} ms`)));
    req.once('response', (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('error', (error) => resolve({ status: 0, error, text: '', headers: {} }));
      res.on('end', () => {
        const buf = Buffer.concat(chunks);
        const text = buf.toString('utf8');
        let parsed = null;
        if (/\bjson\b/i.test(res.headers['content-type'] ?? '') && text !== '') {
          try { parsed = JSON.parse(text); } catch { parsed = null; }
        }
        resolve({ status: res.statusCode, headers: res.headers, text, json: parsed, buf });
      });
    });
    req.once('error', (error) => resolve({ status: 0, error, text: '', headers: {} }));
    req.end(payload);
  });
}

const what = (method, p, extra = '') => `${method} ${p.length > 120 ? `${p.slice(0, 120)}...(${p.length} chars)` : p}${extra ? ` [${extra}]` : ''}`;

// Every answer: a status, never 5xx, valid UTF-8, and (for errors) the one
// error shape.
function assertSane(res, label) {
  assert.ok(res.status > 0, `${label}: no answer (${res.error?.message})`);
  assert.ok(res.status < 500, `${label}: HTTP ${res.status} (server error): ${res.text.slice(0, 400)}`);
  assert.doesNotThrow(() => utf8.decode(res.buf), `${label}: body is not valid UTF-8`);
  if (res.status >= 400) assertErrorShape(res, label);
}

function assertErrorShape(res, label) {
  assert.match(res.headers['content-type'] ?? '', /^application\/json/, `${label}: error content type (HTTP ${res.status})`);
  assert.ok(res.json && typeof res.json === 'object' && !Array.isArray(res.json), `${label}: JSON error body (got ${res.text.slice(0, 300)})`);
  assert.deepEqual(Object.keys(res.json), ['error'], `${label}: only "error" at top level: ${res.text.slice(0, 300)}`);
  assert.deepEqual(Object.keys(res.json.error).sort(), ['code', 'message'], `${label}: error keys: ${res.text.slice(0, 300)}`);
  assert.equal(typeof res.json.error.code, 'string', `${label}: error.code`);
  assert.ok(res.json.error.code.length > 0, `${label}: empty error.code`);
  assert.equal(typeof res.json.error.message, 'string', `${label}: error.message`);
  assert.ok(res.json.error.message.length > 0, `${label}: empty error.message`);
}

function assertError(res, status, code, label) {
  assertSane(res, label);
  assert.equal(res.status, status, `${label}: want ${status} ${code}, got HTTP ${res.status}: ${res.text.slice(0, 300)}`);
  if (code) assert.equal(res.json.error.code, code, `${label}: error code: ${res.text.slice(0, 300)}`);
}

function assert4xx(res, label) {
  assertSane(res, label);
  assert.ok(res.status >= 400 && res.status < 500, `${label}: want 4xx, got HTTP ${res.status}: ${res.text.slice(0, 300)}`);
}

// Collect assertion failures of a batch instead of stopping at the first, so
// one run lists every misbehaving request; fail at the end with all of them.
function collector() {
  const problems = [];
  const soft = async (fn) => {
    try {
      await fn();
    } catch (e) {
      if (!(e instanceof assert.AssertionError)) throw e;
      problems.push(e.message.split('\n').filter((x) => x.trim()).slice(0, 4).join(' | '));
    }
  };
  soft.done = (label) => assert.ok(problems.length === 0, `${label}: ${problems.length} problem(s):\n${problems.join('\n')}`);
  return soft;
}

async function assertAlive(label) {
  const h = await send('GET', '/healthz');
  assert.equal(h.status, 200, `server not healthy after ${label}: ${h.status} ${h.error?.message ?? ''}\n${server.logs().slice(-10).join('\n')}`);
}

// ---- users and their resources ---------------------------------------------------------

function sessionCookie(res) {
  for (const sc of res.headers['set-cookie'] ?? []) {
    const m = /^coai_session=([^;]*)/.exec(sc);
    if (m && m[1]) return `coai_session=${m[1]}`;
  }
  return null;
}

async function registerUser(prefix) {
  const u = { email: email(prefix), password: PW };
  const r = await send('POST', '/api/v1/auth/register', { json: { email: u.email, password: u.password } });
  assert.equal(r.status, 201, `register ${u.email}: ${r.text}`);
  u.cookie = sessionCookie(r);
  assert.ok(u.cookie, `register sets the session cookie: ${JSON.stringify(r.headers['set-cookie'])}`);
  u.id = r.json.user.id;
  u.isAdmin = r.json.user.is_admin;
  return u;
}

// A second session of the user (for logout and session revocation).
async function spareCookie(u) {
  const r = await send('POST', '/api/v1/auth/login', { json: { email: u.email, password: u.password } });
  assert.equal(r.status, 200, `login ${u.email}: ${r.text}`);
  const c = sessionCookie(r);
  assert.ok(c);
  return c;
}

function sseClient(u) {
  const c = new Client(server.url);
  const [k, v] = u.cookie.split('=');
  c.cookies.set(k, v);
  return c;
}

// Follow a turn to its "done" event.
async function waitTurn(u, turnId) {
  const c = sseClient(u);
  try {
    const events = await collectSse(c, `/api/v1/turns/${turnId}/events`, { until: (ev) => ev.event === 'done', timeoutMs: 20000 });
    assert.equal(events.at(-1)?.event, 'done', `turn ${turnId} ends with done`);
    requests++;
    return JSON.parse(events.at(-1).data);
  } finally {
    c.close();
  }
}

// After a 202 that started a turn: wait for it, so the chat has no running turn.
async function settle(u, res) {
  if (res.status === 202 && res.json?.turn?.id) await waitTurn(u, res.json.turn.id);
}

const ctx = {}; // users, ids and snapshots, filled in before()

const U = () => ctx.users;

// ---- MATRIX ------------------------------------------------------------------------------
// One entry per route, keyed "METHOD /pattern". scope:
//   public  no sign-in needed (anonymous and everyone get `ok`)
//   self    the caller's own data (another user gets `otherOk`, never the owner's)
//   owned   an {id} of the owner's (another user: 404 not_found)
//   admin   administrators only (another user and the owner: 403 forbidden)
//   pricesRead  the price table: readable by every signed-in user
// body(u)     a valid request body for user u (owner, admin or other)
// prepare(u)  for the success call: {ids, query, cookie} overriding the defaults
//             (destructive routes get resources of their own)
// check(res, prep)  assertions on the successful answer
// sse         the route streams (sent with Accept: text/event-stream)
const MATRIX = {
  'GET /api/v1/config': {
    scope: 'public', ok: 200,
    check: (r) => assert.equal(typeof r.json, 'object'),
  },
  'POST /api/v1/auth/register': {
    scope: 'public', ok: 201,
    body: () => ({ email: email('reg'), password: PW }),
    check: (r) => { assert.match(r.json.user.id, UUID); assert.equal(r.json.user.is_admin, false); assert.ok(sessionCookie(r)); },
  },
  'POST /api/v1/auth/login': {
    scope: 'public', ok: 200,
    body: (u) => ({ email: (u ?? ctx.throwaway).email, password: (u ?? ctx.throwaway).password }),
    check: (r, prep) => { assert.equal(r.json.user.email, prep.user.email); assert.ok(sessionCookie(r)); },
  },
  'POST /api/v1/auth/logout': {
    scope: 'self', ok: 204, otherOk: 204, spare: true,
    check: async (r, prep) => assertError(await send('GET', '/api/v1/me', { cookie: prep.cookie }), 401, 'unauthorized', 'signed-out cookie'),
  },
  'GET /api/v1/me': {
    scope: 'self', ok: 200, otherOk: 200,
    check: (r) => { assert.equal(r.json.user.id, U().owner.id); assert.equal(r.json.user.email, U().owner.email); assert.equal(r.json.user.is_admin, false); },
  },
  'POST /api/v1/me/password': {
    scope: 'self', ok: 204, otherOk: 204,
    body: (u) => ({ current_password: u.password, new_password: u.password }),
    check: async () => { await spareCookie(U().owner); },
  },
  'GET /api/v1/sessions': {
    scope: 'self', ok: 200, otherOk: 200,
    check: (r) => assert.ok(r.json.data.some((s) => s.id === ctx.ids.session && s.current), `own session listed: ${r.text}`),
  },
  'DELETE /api/v1/sessions/{id}': {
    scope: 'owned', ok: 204,
    prepare: async () => {
      const cookie = await spareCookie(U().owner);
      const l = await send('GET', '/api/v1/sessions', { cookie });
      const s = l.json.data.find((x) => x.current);
      assert.ok(s && s.id !== ctx.ids.session);
      return { ids: { id: s.id }, spareCookie: cookie };
    },
    check: async (r, prep) => assertError(await send('GET', '/api/v1/me', { cookie: prep.spareCookie }), 401, 'unauthorized', 'revoked session'),
  },
  'GET /api/v1/connection': {
    scope: 'self', ok: 200, otherOk: 200,
    check: (r) => assert.equal(r.json.connection.source, 'user'),
  },
  'PUT /api/v1/connection': {
    scope: 'self', ok: 200, otherOk: 200,
    body: () => ({ base_url: fake.baseURL, api_key: 'sk-test-owner' }),
    check: (r) => assert.equal(r.json.connection.base_url, fake.baseURL),
  },
  'DELETE /api/v1/connection': {
    // the other user saved one just before (PUT): 204
    scope: 'self', ok: 204, otherOk: 204,
    check: async () => {
      assert.notEqual((await send('GET', '/api/v1/connection', { cookie: U().owner.cookie })).json.connection.source, 'user');
      // put it back for the rest of the file
      assert.equal((await send('PUT', '/api/v1/connection', { cookie: U().owner.cookie, json: { base_url: fake.baseURL, api_key: 'sk-test-owner' } })).status, 200);
    },
  },
  'GET /api/v1/models': {
    scope: 'self', ok: 200, otherOk: 200,
    check: (r) => assert.ok(Array.isArray(r.json.data) && r.json.data.length > 0, r.text),
  },
  'GET /api/v1/chats': {
    scope: 'self', ok: 200, otherOk: 200,
    check: (r) => assert.ok(r.json.data.some((c) => c.id === ctx.ids.chat), r.text),
  },
  'POST /api/v1/chats': {
    scope: 'self', ok: 201, otherOk: 201,
    body: () => ({ title: 'created-by-matrix', params: { temperature: 0.5 } }),
    check: (r) => { assert.match(r.json.chat.id, UUID); assert.equal(r.json.chat.title, 'created-by-matrix'); },
  },
  'GET /api/v1/chats/{id}': {
    scope: 'owned', ok: 200,
    check: (r) => { assert.equal(r.json.chat.id, ctx.ids.chat); assert.ok(r.json.messages.length >= 2); },
  },
  'PATCH /api/v1/chats/{id}': {
    scope: 'owned', ok: 200,
    body: () => ({ title: `${OTHER_MARK}-renamed` }),
    ownerBody: () => ({ title: 'owner renamed' }),
    check: (r) => assert.equal(r.json.chat.title, 'owner renamed'),
  },
  'DELETE /api/v1/chats/{id}': {
    scope: 'owned', ok: 204,
    prepare: async () => {
      const r = await send('POST', '/api/v1/chats', { cookie: U().owner.cookie, json: { title: 'to delete' } });
      assert.equal(r.status, 201);
      return { ids: { id: r.json.chat.id } };
    },
    check: async (r, prep) => assertError(await send('GET', `/api/v1/chats/${prep.ids.id}`, { cookie: U().owner.cookie }), 404, 'not_found', 'deleted chat'),
  },
  'GET /api/v1/chats/{id}/messages': {
    scope: 'owned', ok: 200,
    check: (r) => assert.ok(r.json.data.some((m) => m.id === ctx.ids.userMsg), r.text),
  },
  'POST /api/v1/chats/{id}/messages': {
    scope: 'owned', ok: 202,
    body: () => ({ content: `${OTHER_MARK} send` }),
    ownerBody: () => ({ content: 'owner sends again' }),
    check: async (r) => { assert.equal(r.json.assistant_message.status, 'streaming'); await settle(U().owner, r); },
  },
  'POST /api/v1/chats/{id}/messages/{mid}/edit': {
    scope: 'owned', ok: 202, mid: 'userMsg',
    body: () => ({ content: `${OTHER_MARK} edit` }),
    ownerBody: () => ({ content: 'owner edits' }),
    check: async (r) => { assert.equal(r.json.user_message.role, 'user'); await settle(U().owner, r); },
  },
  'POST /api/v1/chats/{id}/messages/{mid}/regenerate': {
    scope: 'owned', ok: 202, mid: 'turn',
    body: () => ({}),
    check: async (r) => { assert.equal(r.json.assistant_message.role, 'assistant'); await settle(U().owner, r); },
  },
  'GET /api/v1/turns/{id}/events': {
    scope: 'owned', ok: 200, sse: true,
    check: (r) => { assert.match(r.headers['content-type'], /^text\/event-stream/); assert.match(r.text, /event: done/); },
  },
  'POST /api/v1/turns/{id}/stop': {
    scope: 'owned', ok: 200,
    // an ended turn: 'finished' while this server still holds it, else its stored status
    check: (r) => {
      assert.deepEqual(Object.keys(r.json).sort(), ['status', 'stopped']);
      assert.equal(r.json.stopped, false);
      assert.ok(['finished', 'complete'].includes(r.json.status), r.text);
    },
  },
  'GET /api/v1/tokens': {
    scope: 'self', ok: 200, otherOk: 200,
    check: (r) => assert.ok(r.json.data.some((t) => t.id === ctx.ids.token), r.text),
  },
  'POST /api/v1/tokens': {
    scope: 'self', ok: 201, otherOk: 201,
    body: () => ({ name: 'matrix token', models: ['gpt-4o'], rpm: 10, expires_in_days: 1 }),
    check: (r) => { assert.match(r.json.secret, /^coai-[A-Za-z0-9_-]{43}$/); assert.deepEqual(r.json.token.models, ['gpt-4o']); },
  },
  'DELETE /api/v1/tokens/{id}': {
    scope: 'owned', ok: 204,
    prepare: async () => {
      const r = await send('POST', '/api/v1/tokens', { cookie: U().owner.cookie, json: { name: 'to revoke' } });
      assert.equal(r.status, 201);
      return { ids: { id: r.json.token.id } };
    },
    check: async (r, prep) => {
      const l = await send('GET', '/api/v1/tokens', { cookie: U().owner.cookie });
      assert.ok(l.json.data.find((t) => t.id === prep.ids.id).revoked_at > 0);
    },
  },
  'GET /api/v1/usage': {
    scope: 'self', ok: 200, otherOk: 200,
    check: (r) => assert.ok(Array.isArray(r.json.data), r.text),
  },
  'GET /api/v1/admin/usage': {
    scope: 'admin', ok: 200,
    check: (r) => assert.ok(Array.isArray(r.json.data), r.text),
  },
  'GET /api/v1/admin/keys': {
    scope: 'admin', ok: 200,
    check: (r) => {
      const k = r.json.data.find((x) => x.id === ctx.ids.key);
      assert.ok(k, r.text);
      assert.ok(!r.text.includes('sk-pool-matrix-secret'), 'no key in the list');
    },
  },
  'POST /api/v1/admin/keys': {
    scope: 'admin', ok: 201,
    body: () => ({ api_key: 'sk-pool-matrix-2', name: 'matrix key 2', weight: 2, enabled: false }),
    check: (r) => { assert.match(r.json.key.id, UUID); assert.equal(r.json.key.enabled, false); },
  },
  'PATCH /api/v1/admin/keys/{id}': {
    scope: 'admin', ok: 200,
    body: () => ({ name: `${OTHER_MARK}-key` }),
    ownerBody: () => ({ name: 'admin renamed key' }),
    check: (r) => { assert.equal(r.json.key.id, ctx.ids.key); assert.equal(r.json.key.name, 'admin renamed key'); },
  },
  'DELETE /api/v1/admin/keys/{id}': {
    scope: 'admin', ok: 204,
    prepare: async () => {
      const r = await send('POST', '/api/v1/admin/keys', { cookie: U().admin.cookie, json: { api_key: 'sk-to-delete', name: 'to delete' } });
      assert.equal(r.status, 201, r.text);
      return { ids: { id: r.json.key.id } };
    },
    check: async (r, prep) => {
      const l = await send('GET', '/api/v1/admin/keys', { cookie: U().admin.cookie });
      assert.ok(!l.json.data.some((k) => k.id === prep.ids.id));
    },
  },
  'GET /api/v1/admin/prices': {
    scope: 'pricesRead', ok: 200,
    check: (r) => assert.ok(r.json.data.some((p) => p.model === OWNER_PRICE_MODEL), r.text),
  },
  'PUT /api/v1/admin/prices': {
    scope: 'admin', ok: 200,
    body: () => ({ model: 'matrix-model-2', input: 1.5, output: 3, cached_input: 0.5 }),
    check: (r) => assert.ok(JSON.stringify(r.json).includes('matrix-model-2'), r.text),
  },
  'DELETE /api/v1/admin/prices': {
    scope: 'admin', ok: 204, query: `?model=${OWNER_PRICE_MODEL}`,
    prepare: async () => {
      const r = await send('PUT', '/api/v1/admin/prices', { cookie: U().admin.cookie, json: { model: 'matrix-model-del', input: 1, output: 1 } });
      assert.equal(r.status, 200, r.text);
      return { query: '?model=matrix-model-del' };
    },
    check: async () => {
      const l = await send('GET', '/api/v1/admin/prices', { cookie: U().admin.cookie });
      assert.ok(!l.json.data.some((p) => p.model === 'matrix-model-del'));
    },
  },
  'GET /api/v1/admin/users': {
    scope: 'admin', ok: 200,
    check: (r) => assert.ok(r.json.data.some((u) => u.id === U().owner.id), r.text),
  },
  'GET /api/v1/admin/users/{id}/limits': {
    scope: 'admin', ok: 200,
    check: (r) => assert.equal(r.json.limits.rpm, 1234, r.text),
  },
  'PUT /api/v1/admin/users/{id}/limits': {
    scope: 'admin', ok: 200,
    body: () => ({ rpm: 77 }),
    ownerBody: () => ({ rpm: 1234, tpm: 100000 }),
    check: (r) => { assert.equal(r.json.limits.rpm, 1234); assert.equal(r.json.limits.tpm, 100000); },
  },
};

// The real id behind each path placeholder.
function fill(pattern, ids = {}, entry = {}) {
  const base = {
    '/chats/{id}': ctx.ids.chat,
    '/turns/{id}': ctx.ids.turn,
    '/sessions/{id}': ctx.ids.session,
    '/tokens/{id}': ctx.ids.token,
    '/admin/keys/{id}': ctx.ids.key,
    '/admin/users/{id}': U().owner.id,
  };
  let p = pattern;
  for (const [k, v] of Object.entries(base)) {
    if (p.includes(k)) p = p.replace(k, k.replace('{id}', ids.id ?? v));
  }
  p = p.replace('{mid}', ids.mid ?? ctx.ids[entry.mid ?? 'userMsg']);
  assert.ok(!p.includes('{'), `placeholder left in ${p}`);
  return p + (entry.query ?? '');
}

// Strings of the owner's that nobody else may see.
function ownerMarkers() {
  return [U().owner.email, U().owner.id, ctx.ids.chat, ctx.ids.turn, ctx.ids.userMsg, ctx.ids.session, ctx.ids.token,
    ctx.tokenPrefix, OWNER_TITLE, OWNER_TEXT, OWNER_PROMPT, OWNER_TOKEN, 'sk-test-owner'];
}

function assertNoLeak(res, label) {
  for (const m of ownerMarkers()) assert.ok(!res.text.includes(m), `${label}: the answer shows the owner's ${m}: ${res.text.slice(0, 400)}`);
}

// ---- setup --------------------------------------------------------------------------------

async function snapshot() {
  const o = U().owner.cookie;
  const a = U().admin.cookie;
  const chat = await send('GET', `/api/v1/chats/${ctx.ids.chat}`, { cookie: o });
  assert.equal(chat.status, 200, chat.text);
  const tokens = await send('GET', '/api/v1/tokens', { cookie: o });
  const sessions = await send('GET', '/api/v1/sessions', { cookie: o });
  const conn = await send('GET', '/api/v1/connection', { cookie: o });
  const keys = await send('GET', '/api/v1/admin/keys', { cookie: a });
  const prices = await send('GET', '/api/v1/admin/prices', { cookie: a });
  const limits = await send('GET', `/api/v1/admin/users/${U().owner.id}/limits`, { cookie: a });
  const me = await send('GET', '/api/v1/me', { cookie: o });
  for (const r of [tokens, sessions, conn, keys, prices, limits, me]) assert.equal(r.status, 200, r.text);
  return {
    chat: chat.json,
    tokens: tokens.json.data.map(({ last_used_at: _, ...t }) => t),
    sessions: sessions.json.data.map((s) => s.id).sort(),
    connection: conn.json,
    keys: keys.json.data.map((k) => ({ id: k.id, name: k.name, enabled: k.enabled, weight: k.weight, key_last4: k.key_last4, base_url: k.base_url })),
    prices: prices.json,
    limits: limits.json,
    me: me.json,
  };
}

before(async () => {
  fake = await startFakeOpenAI();
  server = await startServer({ upstream: fake, env: { CHATOPENAII_TITLES: 'off' } });
  const admin = await registerUser('admin');
  assert.equal(admin.isAdmin, true, 'the first account is an administrator');
  const owner = await registerUser('owner');
  const other = await registerUser('other');
  assert.equal(owner.isAdmin, false);
  assert.equal(other.isAdmin, false);
  ctx.users = { admin, owner, other };
  ctx.throwaway = await registerUser('throwaway');
  ctx.ids = {};

  const o = owner.cookie;
  let r = await send('PUT', '/api/v1/connection', { cookie: o, json: { base_url: fake.baseURL, api_key: 'sk-test-owner' } });
  assert.equal(r.status, 200, r.text);
  r = await send('POST', '/api/v1/chats', { cookie: o, json: { title: OWNER_TITLE, system_prompt: OWNER_PROMPT } });
  assert.equal(r.status, 201, r.text);
  ctx.ids.chat = r.json.chat.id;
  r = await send('POST', `/api/v1/chats/${ctx.ids.chat}/messages`, { cookie: o, json: { content: OWNER_TEXT, model: 'gpt-4o' } });
  assert.equal(r.status, 202, r.text);
  ctx.ids.turn = r.json.turn.id;
  ctx.ids.userMsg = r.json.user_message.id;
  const done = await waitTurn(owner, ctx.ids.turn);
  assert.equal(done.status, 'complete', JSON.stringify(done));
  r = await send('POST', '/api/v1/tokens', { cookie: o, json: { name: OWNER_TOKEN } });
  assert.equal(r.status, 201, r.text);
  ctx.ids.token = r.json.token.id;
  ctx.tokenPrefix = r.json.token.prefix;
  ctx.tokenSecret = r.json.secret;
  r = await send('GET', '/api/v1/sessions', { cookie: o });
  ctx.ids.session = r.json.data.find((s) => s.current)?.id;
  assert.ok(ctx.ids.session, r.text);

  const a = admin.cookie;
  r = await send('POST', '/api/v1/admin/keys', { cookie: a, json: { api_key: 'sk-pool-matrix-secret', name: OWNER_KEY } });
  assert.equal(r.status, 201, r.text);
  ctx.ids.key = r.json.key.id;
  r = await send('PUT', '/api/v1/admin/prices', { cookie: a, json: { model: OWNER_PRICE_MODEL, input: 2, output: 4 } });
  assert.equal(r.status, 200, r.text);
  r = await send('PUT', `/api/v1/admin/users/${owner.id}/limits`, { cookie: a, json: { rpm: 1234 } });
  assert.equal(r.status, 200, r.text);
});

after(async () => {
  if (!server) return;
  let code;
  let stopErr;
  try {
    code = await server.stop('SIGTERM', { timeoutMs: 15000 });
  } catch (e) {
    stopErr = e;
  }
  if (fake) await fake.close();
  const rep = server.sanitizerReport();
  console.log(`# matrix.test.mjs: ${requests} requests`);
  assert.equal(rep, null, `sanitizer report in server output:\n${shortReport(rep)}`);
  if (stopErr) throw stopErr;
  assert.equal(code, 0, `exit code after SIGTERM; stderr tail:\n${server.logs('stderr').slice(-15).join('\n')}`);
  server.removeDataDir();
});

// ---- the matrix covers the route table -------------------------------------------------

test('the matrix has exactly one entry per route of `chatopenaii routes`, each documented', () => {
  assert.ok(ROUTES.length >= 30, `routes: ${ROUTES.length}`);
  const routeKeys = ROUTES.map((r) => r.key).sort();
  assert.equal(new Set(routeKeys).size, routeKeys.length, 'duplicate routes');
  const missing = routeKeys.filter((k) => !(k in MATRIX));
  const stale = Object.keys(MATRIX).filter((k) => !routeKeys.includes(k));
  assert.deepEqual(missing, [], `routes without a MATRIX entry in tests/api/matrix.test.mjs (add them): ${missing.join(', ')}`);
  assert.deepEqual(stale, [], `MATRIX entries for routes that do not exist: ${stale.join(', ')}`);
  for (const { key, method, pattern } of ROUTES) {
    const e = MATRIX[key];
    const op = SPEC.ops.get(key);
    assert.ok(op, `${key} is not in docs/openapi.yaml`);
    assert.ok(op.ok.includes(e.ok), `${key}: MATRIX success status ${e.ok} is not one the spec documents (${op.ok})`);
    assert.ok(['public', 'self', 'owned', 'admin', 'pricesRead'].includes(e.scope), `${key}: scope ${e.scope}`);
    if (e.scope === 'owned') assert.ok(params(pattern).length > 0, `${key}: owned routes have an {id}`);
    if (pattern.startsWith('/api/v1/admin/')) assert.ok(e.scope === 'admin' || e.scope === 'pricesRead', `${key}: admin route`);
    if (op.schema) {
      assert.ok(hasBody(method), `${key}: a request body on ${method}`);
      assert.ok(SPEC.fieldsOf(op.schema).length > 0, `${key}: schema ${op.schema} has no properties`);
      for (const f of SPEC.fieldsOf(op.schema)) assert.ok(f.type, `${key}: ${op.schema}.${f.name} has no type the test knows`);
    }
  }
});

// ---- authorization ----------------------------------------------------------------------

// The request of one route for one caller.
async function call(entry, { method, pattern }, { cookie, body, ids, query } = {}) {
  const p = fill(pattern, ids, { ...entry, query: query ?? entry.query });
  const headers = entry.sse ? { accept: 'text/event-stream' } : {};
  const opts = { cookie, headers };
  if (body !== undefined) opts.json = body;
  else if (hasBody(method) && entry.body) opts.json = entry.body(U().owner);
  return { res: await send(method, p, opts), p };
}

test('anonymous: 401 on every route but register, login and config', async () => {
  const stale = await spareCookie(U().owner);
  assert.equal((await send('POST', '/api/v1/auth/logout', { cookie: stale })).status, 204);
  for (const route of ROUTES) {
    const e = MATRIX[route.key];
    if (e.scope === 'public') {
      const body = e.body ? e.body() : undefined;
      const { res, p } = await call(e, route, { body });
      assertSane(res, `anonymous ${what(route.method, p)}`);
      assert.equal(res.status, e.ok, `anonymous ${route.key}: ${res.text}`);
      await e.check(res, { user: ctx.throwaway });
      continue;
    }
    for (const cookie of [undefined, stale, 'coai_session=forged-token-value']) {
      const { res, p } = await call(e, route, { cookie });
      assertError(res, 401, 'unauthorized', `anonymous ${what(route.method, p, cookie ? 'bad cookie' : 'no cookie')}`);
      assertNoLeak(res, `anonymous ${route.key}`);
    }
  }
  await assertAlive('anonymous calls');
});

test('another user: never 2xx on the owner\'s resources, sees none of them, changes nothing', async () => {
  const { other, owner } = U();
  const before_ = await snapshot();
  fake.reset();
  for (const route of ROUTES) {
    const e = MATRIX[route.key];
    const label = `other user ${route.key}`;
    if (e.scope === 'public') {
      const body = e.body ? e.body(route.key.endsWith('/login') ? other : undefined) : undefined;
      const { res } = await call(e, route, { body, cookie: other.cookie });
      assertSane(res, label);
      assert.equal(res.status, e.ok, `${label}: ${res.text}`);
      assertNoLeak(res, label);
      continue;
    }
    for (const caller of e.scope === 'admin' ? [other, owner] : [other]) {
      const who = caller === owner ? 'owner (not an admin)' : 'other user';
      const cookie = e.spare ? await spareCookie(caller) : caller.cookie;
      const body = hasBody(route.method) && e.body ? e.body(caller) : undefined;
      const { res, p } = await call(e, route, { cookie, body });
      const l = `${who} ${what(route.method, p)}`;
      if (e.scope === 'owned') assertError(res, 404, 'not_found', l);
      else if (e.scope === 'admin') assertError(res, 403, 'forbidden', l);
      else if (e.scope === 'pricesRead') { assertSane(res, l); assert.equal(res.status, 200, `${l}: ${res.text}`); }
      else {
        assertSane(res, l);
        assert.equal(res.status, e.otherOk, `${l}: ${res.text}`);
      }
      if (caller === other) assertNoLeak(res, l);
    }
  }
  // The owner's data did not change, and nothing of the other's reached the provider.
  const after_ = await snapshot();
  assert.deepEqual(after_.chat, before_.chat, 'owner\'s chat and messages unchanged');
  assert.equal(after_.chat.chat.title, OWNER_TITLE);
  assert.deepEqual(after_.tokens, before_.tokens, 'owner\'s tokens unchanged');
  assert.ok(after_.tokens.some((t) => t.id === ctx.ids.token && t.revoked_at === null), 'owner\'s token still active');
  assert.deepEqual(after_.sessions, before_.sessions, 'owner\'s sessions unchanged');
  assert.deepEqual(after_.connection, before_.connection, 'owner\'s connection unchanged');
  assert.deepEqual(after_.keys, before_.keys, 'pool keys unchanged');
  assert.ok(after_.keys.some((k) => k.id === ctx.ids.key && k.name === OWNER_KEY), 'pool key still present');
  assert.deepEqual(after_.prices, before_.prices, 'prices unchanged');
  assert.deepEqual(after_.limits, before_.limits, 'owner\'s limits unchanged');
  assert.deepEqual(after_.me, before_.me, 'owner\'s account unchanged');
  assert.deepEqual(fake.chatRequests().filter((b) => JSON.stringify(b).includes(OTHER_MARK)), [], 'nothing of the other user reached the provider');
  // The owner's token still works on the gateway.
  const g = await send('GET', '/v1/models', { headers: { authorization: `Bearer ${ctx.tokenSecret}` } });
  assert.equal(g.status, 200, `owner's token on /v1/models: ${g.text}`);
  // The other user's collections hold none of the owner's data.
  for (const p of ['/api/v1/chats', '/api/v1/tokens', '/api/v1/sessions', '/api/v1/usage', '/api/v1/me']) {
    const r = await send('GET', p, { cookie: other.cookie });
    assert.equal(r.status, 200, r.text);
    assertNoLeak(r, `other user GET ${p}`);
  }
  await assertAlive('other user calls');
});

test('owner (admin for /admin routes): every route answers 2xx with a valid body', async () => {
  const { owner, admin } = U();
  for (const route of ROUTES) {
    const e = MATRIX[route.key];
    const user = e.scope === 'admin' || e.scope === 'pricesRead' ? admin : owner;
    const prep = e.prepare ? await e.prepare() : {};
    prep.user = route.key.endsWith('/login') ? owner : user;
    let cookie = prep.cookie ?? user.cookie;
    if (e.spare) cookie = prep.cookie = await spareCookie(user);
    if (e.scope === 'public' && !route.key.startsWith('GET')) cookie = undefined;
    let body;
    if (hasBody(route.method) && (e.ownerBody || e.body)) body = (e.ownerBody ?? e.body)(prep.user);
    const { res, p } = await call(e, route, { cookie, body, ids: prep.ids, query: prep.query });
    const l = `${user === admin ? 'admin' : 'owner'} ${what(route.method, p)}`;
    assertSane(res, l);
    assert.equal(res.status, e.ok, `${l}: ${res.text.slice(0, 400)}`);
    if (e.ok === 204) assert.equal(res.text, '', `${l}: 204 has no body`);
    else if (!e.sse) assert.ok(res.json && typeof res.json === 'object' && !Array.isArray(res.json), `${l}: JSON object body: ${res.text.slice(0, 200)}`);
    await e.check(res, prep);
  }
  await assertAlive('owner calls');
});

// ---- hostile bodies ---------------------------------------------------------------------

// Who sends hostile bodies on a route: a caller that gets past authentication.
async function hostileCaller(route) {
  const e = MATRIX[route.key];
  if (e.scope === 'public') return undefined;
  if (e.spare) return spareCookie(U().owner); // logout: a session of its own each time
  return e.scope === 'admin' ? U().admin.cookie : U().owner.cookie;
}

function validBody(route) {
  const e = MATRIX[route.key];
  const u = e.scope === 'admin' ? U().admin : U().owner;
  if (route.key === 'POST /api/v1/auth/login') return e.body(ctx.throwaway);
  if (e.ownerBody) return e.ownerBody(u);
  return e.body ? e.body(u) : {};
}

function deepArray(n) { return '['.repeat(n) + ']'.repeat(n); }
function deepObject(n) { return '{"a":'.repeat(n) + '1' + '}'.repeat(n); }

test('hostile bodies on every POST/PUT/PATCH route: 4xx (or 2xx where valid), never 5xx, one error shape', async () => {
  const bodyRoutes = ROUTES.filter((r) => hasBody(r.method));
  assert.ok(bodyRoutes.length >= 15, `routes with a body: ${bodyRoutes.length}`);
  const big = Buffer.alloc(2 * 1024 * 1024, 'a');
  const soft = collector();
  for (const route of bodyRoutes) {
    const op = SPEC.ops.get(route.key);
    const fields = op.schema ? SPEC.fieldsOf(op.schema) : [];
    const p = fill(route.pattern, {}, MATRIX[route.key]);
    const firstString = fields.find((f) => f.type === 'string')?.name ?? 'x';
    const go = async (label, opts) => {
      const cookie = await hostileCaller(route);
      const res = await send(route.method, p, { cookie, ...opts });
      return { res, l: `${what(route.method, p, label)}` };
    };

    // Not JSON, or JSON that is not one object.
    const invalid = [
      ['invalid JSON', '{"a":'],
      ['trailing garbage', '{} x'],
      ['single quotes', "{'a':1}"],
      ['array 10000 deep', deepArray(10000)],
      ['object 10000 deep', deepObject(10000)],
      ['array', '[]'], ['array of object', '[{}]'], ['number', '1'], ['string', '"str"'],
      ['null', 'null'], ['true', 'true'],
      ['duplicate keys', `{"${firstString}":"a","${firstString}":"b"}`],
    ];
    for (const [label, body] of invalid) {
      const { res, l } = await go(label, { body });
      await soft(() => assertError(res, 400, 'invalid_json', l));
      await settle(U().owner, res);
    }
    // Invalid UTF-8 inside a JSON string (lone continuation byte, overlong
    // "/", a truncated sequence, a UTF-16 surrogate encoded as UTF-8).
    for (const bad of [[0xff, 0xfe], [0x80], [0xc0, 0xaf], [0xe2, 0x82], [0xed, 0xa0, 0x80]]) {
      const body = Buffer.concat([Buffer.from(`{"${firstString}":"a`), Buffer.from(bad), Buffer.from('b"}')]);
      const { res, l } = await go(`invalid UTF-8 ${Buffer.from(bad).toString('hex')} in "${firstString}"`, { body });
      await soft(() => assertError(res, 400, 'invalid_json', l));
      await settle(U().owner, res);
    }
    // Valid JSON escapes that are not valid text: a lone surrogate, a NUL.
    for (const esc of ['\\ud800', '\\udfff', '\\u0000']) {
      const { res, l } = await go(`${esc} in "${firstString}"`, { body: `{"${firstString}":"a${esc}b"}` });
      await soft(() => assertSane(res, l));
      await settle(U().owner, res);
    }
    // Each documented field with values of the wrong type, the rest valid.
    for (const f of fields) {
      for (const v of wrongValues(f)) {
        const body = { ...validBody(route), [f.name]: v };
        const { res, l } = await go(`${f.name}=${JSON.stringify(v)}`, { json: body });
        await soft(() => assert4xx(res, l));
        await settle(U().owner, res);
      }
    }
    // Unknown extra fields beside a valid body: accepted or refused cleanly.
    {
      const body = { ...validBody(route), unknown_field: { nested: [1, { deep: 'x' }] }, __proto__x: 1, 'x-evil': '<script>' };
      const { res, l } = await go('unknown fields', { json: body });
      await soft(() => {
        assertSane(res, l);
        assert.ok(res.status < 300 || res.status === 400, `${l}: unknown fields are accepted or 400: ${res.status} ${res.text}`);
      });
      await settle(U().owner, res);
    }
    // An empty body: accepted or refused cleanly.
    {
      const { res, l } = await go('empty body', { body: '' });
      await soft(() => assertSane(res, l));
      await settle(U().owner, res);
    }
    // 2 MiB: too large.
    {
      const body = Buffer.concat([Buffer.from(`{"${firstString}":"`), big, Buffer.from('"}')]);
      const { res, l } = await go('2 MiB body', { body });
      await soft(() => assertError(res, 413, 'payload_too_large', l));
    }
    // A JSON body declared as text/plain.
    {
      const { res, l } = await go('text/plain', { body: JSON.stringify(validBody(route)), headers: { 'content-type': 'text/plain' } });
      await soft(() => assertError(res, 415, 'unsupported_media_type', l));
    }
    await assertAlive(route.key);
  }
  soft.done('hostile bodies');
});

// ---- hostile path parameters and query strings --------------------------------------------

const HOSTILE_IDS = [
  '..%2F..%2Fetc%2Fpasswd', '..%2f..%2f..%2fetc%2fpasswd', '%2e%2e', '%2e%2e%2f%2e%2e', '..', '.',
  '%00', '%ff', '%', '%zz', '%c0%af', '%E2%80%AE', 'a'.repeat(4000), '0', '-1', '99999999999999999999999999',
  "'%20OR%20'1'='1", '%3Cscript%3Ealert(1)%3C%2Fscript%3E', '%0d%0aSet-Cookie:%20injected=1', '%2F', '%5c..%5c',
];

test('hostile path parameters on every route that has one: 4xx, never 5xx, nothing changes', async () => {
  const withParams = ROUTES.filter((r) => params(r.pattern).length > 0);
  assert.ok(withParams.length >= 14, `routes with parameters: ${withParams.length}`);
  const before_ = await snapshot();
  const soft = collector();
  for (const route of withParams) {
    const e = MATRIX[route.key];
    const cookie = e.scope === 'admin' ? U().admin.cookie : U().owner.cookie;
    const real = fill(route.pattern, {}, e).replace(/\?.*/, '');
    for (const param of params(route.pattern)) {
      const ids = [...HOSTILE_IDS, `${param === 'mid' ? ctx.ids[e.mid ?? 'userMsg'] : real.split('/').find((s) => UUID.test(s))}%00`];
      for (const bad of ids) {
        const p = fill(route.pattern, param === 'id' ? { id: bad } : { mid: bad }, e);
        const opts = { cookie, headers: e.sse ? { accept: 'text/event-stream' } : {} };
        if (hasBody(route.method)) opts.json = validBody(route);
        const res = await send(route.method, p, opts);
        const l = what(route.method, p, `${param}=${bad.slice(0, 40)}`);
        await soft(() => {
          assert4xx(res, l);
          assert.ok(![].concat(res.headers['set-cookie'] ?? []).some((c) => c.includes('injected')), `${l}: injected header`);
        });
      }
    }
    await assertAlive(route.key);
  }
  // A malformed query string on every route: 400 invalid_query.
  for (const route of ROUTES) {
    const e = MATRIX[route.key];
    const cookie = e.scope === 'admin' ? U().admin.cookie : U().owner.cookie;
    const p = fill(route.pattern, {}, e).replace(/\?.*/, '');
    for (const q of ['?a', '?%ff=%00&a', '?x=1&y&z=2']) {
      const opts = { cookie, headers: e.sse ? { accept: 'text/event-stream' } : {} };
      if (hasBody(route.method)) opts.json = validBody(route);
      const res = await send(route.method, p + q, opts);
      await soft(() => assertError(res, 400, 'invalid_query', what(route.method, p + q)));
      await settle(U().owner, res);
    }
  }
  // Hostile values of the documented query parameters: never 5xx.
  const o = U().owner.cookie;
  const a = U().admin.cookie;
  const queries = [
    [o, '/api/v1/chats?limit=-1'], [o, '/api/v1/chats?limit=abc'], [o, '/api/v1/chats?limit=99999999999999999999'],
    [o, '/api/v1/chats?cursor=%ff'], [o, `/api/v1/chats?cursor=${'9'.repeat(40)}_x`], [o, '/api/v1/chats?cursor=-1_..%2F'],
    [o, '/api/v1/usage?from=2024-13-45'], [o, '/api/v1/usage?from=9999-12-31&to=0000-01-01'], [o, '/api/v1/usage?from=%00'],
    [a, '/api/v1/admin/usage?user_id=..%2F'], [a, `/api/v1/admin/usage?user_id=${'a'.repeat(4000)}`],
    [o, `/api/v1/turns/${ctx.ids.turn}/events?last_event_id=-1`], [o, `/api/v1/turns/${ctx.ids.turn}/events?last_event_id=99999999999999999999`],
  ];
  for (const [cookie, p] of queries) {
    const res = await send('GET', p, { cookie, headers: p.includes('/events') ? { accept: 'text/event-stream' } : {} });
    await soft(() => assertSane(res, what('GET', p)));
  }
  for (const q of ['?model=%00', '?model=', '?model=..%2F', `?model=${'m'.repeat(4000)}`, `?model=${OWNER_PRICE_MODEL}%00junk`, `?model=${OWNER_PRICE_MODEL}%ff`]) {
    const res = await send('DELETE', `/api/v1/admin/prices${q}`, { cookie: a });
    await soft(() => assert4xx(res, what('DELETE', `/api/v1/admin/prices${q}`)));
  }
  const after_ = await snapshot();
  for (const k of ['tokens', 'sessions', 'connection', 'keys', 'prices', 'limits', 'me']) {
    await soft(() => assert.deepEqual(after_[k], before_[k], `owner's ${k} unchanged by hostile ids and queries`));
  }
  await soft(() => assert.deepEqual(after_.chat.chat, before_.chat.chat, 'owner\'s chat unchanged by hostile ids'));
  await assertAlive('hostile ids');
  soft.done('hostile path parameters and queries');
});

// ---- raw sockets: CR, LF and garbage in headers --------------------------------------

// Send raw bytes; resolve everything the server sent until it closed the
// connection (or timeoutMs passed: then `timedOut`).
function raw(bytes, timeoutMs = 5000) {
  requests++;
  return new Promise((resolve) => {
    const chunks = [];
    const sock = net.connect(server.port, '127.0.0.1');
    let timedOut = false;
    const timer = setTimeout(() => { timedOut = true; sock.destroy(); }, timeoutMs);
    sock.on('data', (d) => chunks.push(d));
    sock.on('error', () => {});
    sock.on('close', () => {
      clearTimeout(timer);
      resolve({ text: Buffer.concat(chunks).toString('latin1'), timedOut });
    });
    sock.write(bytes);
  });
}

// Each raw case on a public GET, an authenticated GET and an authenticated
// POST; the owner's cookie comes after the bad line, so a server that reads
// past it answers 200/201 instead of 400.
// lfEnds: the cases end a header line with a bare LF, which RFC 9112 2.2
// lets a server take as the line's end (libevent does): then the request is
// served normally, and only "nothing injected comes back" is checked.
async function rawCases(heads, name, { lfEnds = false } = {}) {
  const cookie = U().owner.cookie;
  const soft = collector();
  for (const [label, injected] of heads) {
    const title = `raw-${++seq}`;
    for (const [method, p, body] of [['GET', '/api/v1/config'], ['GET', '/api/v1/me'], ['POST', '/api/v1/chats', `{"title":"${title}"}`]]) {
      let req = `${method} ${p} HTTP/1.1\r\nHost: 127.0.0.1:${server.port}\r\n${injected}Cookie: ${cookie}\r\n`;
      if (body) req += `X-Requested-With: chatopenaii\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n`;
      req += `Connection: close\r\n\r\n${body ?? ''}`;
      const r = await raw(Buffer.from(req, 'latin1'));
      const l = `${label}: ${method} ${p} (raw ${JSON.stringify(injected)})`;
      await soft(() => {
        assert.ok(!r.timedOut, `${l}: neither answered nor closed within 5 s: ${r.text.slice(0, 200)}`);
        const head = r.text.split('\r\n\r\n')[0];
        assert.ok(!/injected/i.test(head), `${l}: an injected header came back: ${head}`);
        assert.ok(!/injected/i.test(r.text), `${l}: the injected text came back: ${r.text.slice(0, 400)}`);
        if (r.text !== '') {
          const status = /^HTTP\/1\.[01] (\d{3})/.exec(r.text)?.[1];
          if (lfEnds) assert.match(status ?? '', /^[24]\d\d$/, `${l}: want an ordinary answer, got ${r.text.split('\r\n')[0]}`);
          else assert.equal(status, '400', `${l}: want 400 or a closed connection, got ${r.text.split('\r\n')[0]}`);
        }
      });
    }
  }
  await assertAlive(name);
  // None of the raw POSTs created a chat.
  const list = await send('GET', '/api/v1/chats?limit=100', { cookie });
  const made = list.json.data.filter((c) => /^raw-/.test(c.title ?? '')).map((c) => c.title);
  if (!lfEnds) await soft(() => assert.deepEqual(made, [], 'raw requests with a bad header made chats'));
  soft.done(name);
}

test('raw requests with a bare CR in a header value, or a header line without a colon: 400 or closed, nothing injected', async () => {
  await rawCases([
    ['bare CR in a value', 'X-Test: a\rSet-Cookie: injected=cr\r\n'],
    ['bare CR before a fake request id', 'X-Test: a\rX-Request-Id: injected-rid\r\n'],
    ['two bare CRs', 'X-Test: a\r\rX-Injected-Header: injected-cr2\r\n'],
    ['garbage line without a colon', 'this line has no colon and injected text\r\n'],
    ['garbage line of symbols', '@@@@ injected @@@@\r\n'],
  ], 'raw requests (bare CR, no colon)');
});

// Whitespace before the colon makes another header name for libevent
// ("Content-Length " is not Content-Length): a request-smuggling ingredient
// behind a proxy that reads it differently; RFC 9112 5.1 says such a request
// MUST be refused with 400 (the server checks every header name is a token).
test('raw requests with whitespace before a header colon: 400 or closed', async () => {
  await rawCases([
    ['whitespace between a header name and its colon', 'X-Test : injected\r\n'],
    ['Content-Length with whitespace before the colon', 'Content-Length : 0\r\nX-Injected: injected\r\n'],
    ['tab before the colon', 'X-Test\t: injected\r\n'],
  ], 'raw requests (space before colon)');
});

// A bare LF ends the header line for libevent's parser (evbuffer_readln
// EVBUFFER_EOL_CRLF), as RFC 9112 2.2 allows: the following text is another
// request header, never something that reaches a response.
test('raw requests with a bare LF in a header value: served as two request headers, nothing injected into the answer', async () => {
  await rawCases([
    ['bare LF in a value', 'X-Test: a\nSet-Cookie: injected=lf\r\n'],
    ['bare LF before a fake request id', 'X-Test: a\nX-Request-Id: injected-rid\r\n'],
  ], 'raw requests (bare LF)', { lfEnds: true });
});
