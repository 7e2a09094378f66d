// gateway.test.mjs - the OpenAI-compatible /v1 gateway, driven by the
// official `openai` npm SDK (tests/package.json) against the fake upstream
// replaying the real recordings in ../shared/fixtures:
//   - chat completions (plain, streamed with usage, tool-call round trip),
//     models.list, the provider's errors as SDK exceptions, pass-through of
//     embeddings and image generation, bodies byte-identical both ways;
//   - API tokens (secret shown once, listed by prefix only, revocation,
//     expiry, model allow-list, bad Authorization);
//   - isolation between users (usage, revocation, own provider keys);
//   - the admin key pool (401 -> disabled for good, 429 -> cool-down for
//     Retry-After, failover, exhaustion) and the admin-only endpoints;
//   - per-user and per-token rate limits and monthly budgets with their
//     headers and error bodies;
//   - usage and cost accounting (price table, longest prefix, estimated
//     tokens, web chat turns).
// Every test has its own fake upstream and server; the server must exit 0
// after SIGTERM with no sanitizer report.
//
//   COAI_BIN=$PWD/build-asan/server/chatopenaii COAI_SUITE=api node --test \
//     --test-reporter=./tests/lib/reporter.mjs tests/api/gateway.test.mjs

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { startServer, Client, register, login, collectSse } from '../lib/harness.mjs';
import { readFixture, readFixtureJSON } from '../lib/fixtures.mjs';
import { startFakeOpenAI, MODELS, TEXT_STOP_SSE, TEXT_STOP_JSON, ERRORS_JSON } from '../upstream/fake-openai.mjs';
import { streamAnswer, shortReport } from './turn-helpers.mjs';

const PASSWORD = 'correct horse battery';
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const today = () => new Date().toISOString().slice(0, 10);

// ---- what the fixtures say -------------------------------------------------------

const TEXT_JSON = readFixtureJSON(TEXT_STOP_JSON);
const TEXT_JSON_BYTES = readFixture(TEXT_STOP_JSON);
const TEXT_SSE_BYTES = readFixture(TEXT_STOP_SSE);
const TEXT_SSE = streamAnswer(TEXT_SSE_BYTES);
const TEXT_CONTENT = TEXT_JSON.choices[0].message.content;
const FIXTURE_MODEL = TEXT_JSON.model; // "gpt-4o-2024-08-06", the model both recordings report

const TOOL_SINGLE = 'openai-python_tool-call-single';
const TOOL_SINGLE_ANSWER = streamAnswer(readFixture(`openai-chat-sse/${TOOL_SINGLE}.sse`));
const TOOL_PARALLEL = 'openai-python_chatcmpl_tool-calls-parallel-2';
const TOOL_PARALLEL_JSON = readFixtureJSON(`openai-json/${TOOL_PARALLEL}.json`);
// A recorded stream with no usage chunk (the gateway must count tokens itself).
const NO_USAGE = 'vercel-ai_anthropic-fallback-tool-call_openai-compatible';
const NO_USAGE_ANSWER = streamAnswer(readFixture(`openai-chat-sse/${NO_USAGE}.sse`));

// The real error bodies the fake sends (the same pick as fake-openai.mjs).
const ERROR_ENTRIES = readFixtureJSON(ERRORS_JSON);
function providerError(status, code) {
  const e = ERROR_ENTRIES.find((x) => {
    const w = x.wire_body ?? x.wire_body_reconstructed;
    return w && x.status === status && w.error.code === code;
  });
  assert.ok(e, `no ${status} ${code} body in ${ERRORS_JSON}`);
  return e.wire_body ?? e.wire_body_reconstructed;
}

// Prices (USD per 1M tokens) and the gateway's rounding: a request costs
// ceil(sum of tokens x micro-dollars per 1M / 1M) micro-dollars.
const PRICE_4O = { model: 'gpt-4o', input: 2.5, cached_input: 1.25, output: 10 };
function costMicros(price, prompt, completion, cached = 0) {
  const m = (usd) => Math.round(usd * 1e6);
  return Math.ceil(((prompt - cached) * m(price.input) + cached * m(price.cached_input) + completion * m(price.output)) / 1e6);
}

const USER_MSG = [{ role: 'user', content: "What's the weather like in San Francisco?" }];

// ---- environment -----------------------------------------------------------------

let userSeq = 0;

// A signed-in user (the first one on a server is the admin).
async function newUser(ctx, name = 'user') {
  const c = new Client(ctx.srv.url);
  const email = `${name}${++userSeq}-${process.pid}@example.com`;
  const r = await register(c, email, PASSWORD);
  c.email = email;
  c.id = r.json.user.id;
  ctx.clients.push(c);
  return c;
}

async function createToken(c, body = {}) {
  const r = await c.post('/api/v1/tokens', { name: 'test token', ...body });
  assert.equal(r.status, 201, `POST /api/v1/tokens: ${r.text}`);
  assert.match(r.json.secret, /^\S{20,}$/);
  return { secret: r.json.secret, token: r.json.token, id: r.json.token.id };
}

// The official SDK pointed at the gateway. `sent` collects the raw bodies the
// SDK put on the wire (a wrapper around fetch), to compare with what the
// fake upstream received.
function sdk(ctx, apiKey, { record = false } = {}) {
  const opts = { baseURL: `${ctx.srv.url}/v1`, apiKey, maxRetries: 0, timeout: 20000 };
  const client = new OpenAI(opts);
  if (record) {
    client.sent = [];
    const inner = new OpenAI(opts);
    // the SDK's own fetch, through the wrapper
    client.fetch = (url, init) => {
      client.sent.push({ url: String(url), body: init?.body });
      return inner.fetch(url, init);
    };
  }
  return client;
}

// A plain HTTP client for /v1 (to see raw bytes and headers).
function v1(ctx, secret) {
  const c = new Client(ctx.srv.url, { csrf: false, headers: secret ? { authorization: `Bearer ${secret}` } : {} });
  ctx.clients.push(c);
  return c;
}

async function expectError(promise, Klass, what) {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof Klass, `${what}: expected ${Klass.name}, got ${err?.constructor?.name}: ${err?.message}`);
    return err;
  }
  assert.fail(`${what}: expected ${Klass.name}, the call succeeded`);
}

// Our error shape: {"error":{"message","type","param","code"}}.
function assertOpenAIError(res, status, code, what) {
  assert.equal(res.status, status, `${what}: status; body ${res.text}`);
  assert.ok(res.json && res.json.error, `${what}: an OpenAI-shaped error body, got ${res.text}`);
  assert.deepEqual(Object.keys(res.json.error).sort(), ['code', 'message', 'param', 'type'], `${what}: error fields`);
  assert.equal(typeof res.json.error.message, 'string');
  assert.ok(res.json.error.message.length > 0, `${what}: a message`);
  if (code !== undefined) assert.equal(res.json.error.code, code, `${what}: code; body ${res.text}`);
  return res.json.error;
}

const chatBody = (model = 'gpt-4o', extra = {}) => ({ model, messages: USER_MSG, ...extra });

async function completeOk(client, model = 'gpt-4o', what = 'completion') {
  let r;
  try {
    r = await client.chat.completions.create(chatBody(model));
  } catch (err) {
    throw new Error(`${what}: ${err.constructor?.name}: ${err.message}`, { cause: err });
  }
  assert.equal(r.choices[0].message.content, TEXT_CONTENT, `${what}: content`);
  return r;
}

// Authorization headers the fake saw on chat completions.
const chatAuths = (fake) => fake.requests.filter((r) => r.path === '/v1/chat/completions').map((r) => r.headers.authorization);
const countAuth = (fake, key) => fake.requests.filter((r) => r.headers.authorization === `Bearer ${key}`).length;

async function poll(fn, pred, { timeoutMs = 5000, what = 'condition' } = {}) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    last = await fn();
    if (pred(last)) return last;
    if (Date.now() > deadline) throw new Error(`${what} not reached within ${timeoutMs} ms; last: ${JSON.stringify(last?.json ?? last).slice(0, 1500)}`);
    await sleep(50);
  }
}

// ---- admin helpers ---------------------------------------------------------------

async function addPoolKey(admin, fake, apiKey, extra = {}) {
  const r = await admin.post('/api/v1/admin/keys', { name: `pool key ${++userSeq}`, api_key: apiKey, base_url: fake.baseURL, ...extra });
  assert.equal(r.status, 201, `POST /api/v1/admin/keys: ${r.text}`);
  assert.equal(r.json.key.key_last4, apiKey.slice(-4));
  assert.ok(!r.text.includes(apiKey), 'the key is never shown');
  return r.json.key;
}

// GET /api/v1/admin/keys once the gateway has loaded every key (health known).
async function poolKeys(admin, n) {
  const r = await poll(() => admin.get('/api/v1/admin/keys'),
    (x) => x.status === 200 && x.json.data.length === n && x.json.data.every((k) => k.health && k.health.state !== 'loading'),
    { what: `${n} pool keys loaded` });
  return r.json.data;
}
const keyById = (keys, id) => keys.find((k) => k.id === id);

async function setLimits(admin, userId, limits) {
  const r = await admin.put(`/api/v1/admin/users/${userId}/limits`, limits);
  assert.equal(r.status, 200, `PUT limits: ${r.text}`);
  return r.json.limits;
}

async function setPrice(admin, price) {
  const r = await admin.put('/api/v1/admin/prices', price);
  assert.equal(r.status, 200, `PUT prices: ${r.text}`);
}

async function adminUsage(admin) {
  const r = await admin.get(`/api/v1/admin/usage?from=${today()}&to=${today()}`);
  assert.equal(r.status, 200, r.text);
  return r.json;
}
const rowFor = (report, userId, model) => report.data.find((x) => x.user_id === userId && x.model === model);

// ---- one test: fake upstream(s) + server ------------------------------------------

/**
 * Runs fn(ctx) with a fresh fake upstream (ctx.fake), a server (ctx.srv)
 * using it with the default key sk-test (serverKey: false: no default key)
 * and the admin signed in (ctx.admin). ctx.restart() restarts the server on
 * the same data. Every server must stop with exit 0 and no sanitizer report.
 */
async function withGw({ env = {}, serverKey = true } = {}, fn) {
  const ctx = { clients: [], servers: [], fakes: [] };
  const fullEnv = serverKey ? env : { CHATOPENAII_PROVIDER_API_KEY: null, ...env };
  let err = null;
  const problems = [];
  const stopOne = async (s) => {
    let code;
    try {
      code = await s.stop('SIGTERM', { timeoutMs: 15000 });
    } catch (x) {
      problems.push(x.message);
      return;
    }
    const rep = s.sanitizerReport();
    if (rep) problems.push(`sanitizer report in server output:\n${shortReport(rep)}`);
    if (code !== 0) problems.push(`server exit code after SIGTERM: ${code}; stderr tail:\n${s.logs('stderr').slice(-15).join('\n')}`);
  };
  try {
    ctx.fake = await startFakeOpenAI();
    ctx.fakes.push(ctx.fake);
    ctx.srv = await startServer({ upstream: ctx.fake, env: fullEnv });
    ctx.servers.push(ctx.srv);
    ctx.admin = await newUser(ctx, 'admin');
    ctx.restart = async () => {
      await stopOne(ctx.srv);
      ctx.srv = await startServer({ upstream: ctx.fake, env: fullEnv, dataDir: ctx.srv.dataDir });
      ctx.servers.push(ctx.srv);
      const c = new Client(ctx.srv.url);
      await login(c, ctx.admin.email, PASSWORD);
      c.email = ctx.admin.email;
      c.id = ctx.admin.id;
      ctx.clients.push(c);
      ctx.admin = c;
    };
    await fn(ctx);
  } catch (x) {
    err = x;
  }
  for (const c of ctx.clients) c.close();
  for (const s of ctx.servers) await stopOne(s);
  for (const f of ctx.fakes) await f.close();
  if (err) {
    if (err instanceof Error) {
      if (problems.length) err.message += `\n(also: ${problems.join('\n')})`;
      if (ctx.srv) err.message += `\n(data dir kept: ${ctx.srv.dataDir})`;
    }
    throw err;
  }
  if (problems.length) throw new Error(problems.join('\n'));
  ctx.srv?.removeDataDir();
}

// ================================================================================

describe('gateway', { concurrency: 4 }, () => {
  // ---- the SDK against the replayed provider ---------------------------------------

  test('SDK non-streaming chat completion returns the fixture; raw body byte-identical', () => withGw({}, async (ctx) => {
    const { secret } = await createToken(ctx.admin);
    const client = sdk(ctx, secret);
    const r = await client.chat.completions.create(chatBody());
    assert.equal(r.choices[0].message.content, TEXT_CONTENT);
    assert.equal(r.choices[0].finish_reason, 'stop');
    assert.equal(r.model, FIXTURE_MODEL);
    assert.deepEqual(r.usage, TEXT_JSON.usage);
    assert.equal(r.id, TEXT_JSON.id);

    // the same request without the SDK: the provider's bytes, unchanged
    const raw = await v1(ctx, secret).post('/v1/chat/completions', chatBody());
    assert.equal(raw.status, 200, raw.text);
    assert.match(raw.headers['content-type'], /^application\/json/);
    assert.ok(raw.body.equals(TEXT_JSON_BYTES), `body differs from the fixture:\n${raw.text.slice(0, 400)}`);

    // the provider saw the server's key, never the client's token
    assert.deepEqual(chatAuths(ctx.fake), ['Bearer sk-test', 'Bearer sk-test']);
    assert.ok(!JSON.stringify(ctx.fake.requests).includes(secret), 'the ChatOpenAII token never reaches the provider');
  }));

  test('SDK streaming with include_usage: content byte for byte and the usage chunk', () => withGw({}, async (ctx) => {
    const { secret } = await createToken(ctx.admin);
    const client = sdk(ctx, secret);
    const stream = await client.chat.completions.create(chatBody('gpt-4o', { stream: true, stream_options: { include_usage: true } }));
    let text = '';
    let chunks = 0;
    let usage = null;
    let finish = null;
    for await (const chunk of stream) {
      chunks++;
      assert.equal(chunk.object, 'chat.completion.chunk');
      if (chunk.usage) {
        usage = chunk.usage;
        assert.deepEqual(chunk.choices, [], 'the usage chunk has no choices');
      }
      const ch = chunk.choices[0];
      if (typeof ch?.delta?.content === 'string') text += ch.delta.content;
      if (ch?.finish_reason) finish = ch.finish_reason;
    }
    assert.equal(Buffer.from(text).toString('hex'), Buffer.from(TEXT_SSE.content).toString('hex'), 'streamed text equals the recording');
    assert.equal(text, TEXT_SSE.content);
    assert.deepEqual(usage, TEXT_SSE.usage);
    assert.equal(finish, 'stop');
    const recorded = TEXT_SSE_BYTES.toString('utf8').split('\n\n').filter((e) => e.startsWith('data: ') && e !== 'data: [DONE]').length;
    assert.equal(chunks, recorded, 'one SDK chunk per recorded event');

    // raw: the SSE body is the recording, byte for byte, as an event stream
    const raw = await v1(ctx, secret).post('/v1/chat/completions', chatBody('gpt-4o', { stream: true, stream_options: { include_usage: true } }));
    assert.equal(raw.status, 200, raw.text);
    assert.match(raw.headers['content-type'], /^text\/event-stream/);
    assert.ok(raw.body.equals(TEXT_SSE_BYTES), 'the stream differs from the recording');
  }));

  test('SDK tool-call round trip: tool_calls with valid JSON, then the tool result reaches the provider unchanged', () => withGw({}, async (ctx) => {
    const { secret } = await createToken(ctx.admin);
    const client = sdk(ctx, secret, { record: true });
    const tools = [{
      type: 'function',
      function: { name: 'GetWeatherArgs', parameters: { type: 'object', properties: { city: { type: 'string' }, country: { type: 'string' }, units: { type: 'string' } } } },
    }];

    // streamed single call
    const stream = await client.chat.completions.create({
      model: `fixture:${TOOL_SINGLE}`, messages: USER_MSG, tools, stream: true, stream_options: { include_usage: true },
    });
    const calls = new Map();
    let finish = null;
    for await (const chunk of stream) {
      const ch = chunk.choices[0];
      if (ch?.finish_reason) finish = ch.finish_reason;
      for (const tc of ch?.delta?.tool_calls ?? []) {
        const t = calls.get(tc.index) ?? { id: '', name: '', arguments: '' };
        if (tc.id) t.id = tc.id;
        if (tc.function?.name) t.name = tc.function.name;
        if (tc.function?.arguments) t.arguments += tc.function.arguments;
        calls.set(tc.index, t);
      }
    }
    assert.equal(finish, 'tool_calls');
    const got = [...calls.values()];
    assert.deepEqual(got, TOOL_SINGLE_ANSWER.tools.map(({ id, name, arguments: a }) => ({ id, name, arguments: a })));
    assert.deepEqual(JSON.parse(got[0].arguments), JSON.parse(TOOL_SINGLE_ANSWER.tools[0].arguments), 'arguments are valid JSON');

    // non-streamed parallel calls
    const r = await client.chat.completions.create({ model: `fixture:${TOOL_PARALLEL}`, messages: USER_MSG, tools });
    const msg = r.choices[0].message;
    assert.equal(r.choices[0].finish_reason, 'tool_calls');
    assert.deepEqual(msg.tool_calls, TOOL_PARALLEL_JSON.choices[0].message.tool_calls);
    assert.equal(msg.tool_calls.length, 2);
    for (const tc of msg.tool_calls) assert.equal(typeof JSON.parse(tc.function.arguments), 'object');

    // the tool results go back, with fields the gateway does not know
    const messages = [
      ...USER_MSG,
      msg,
      ...msg.tool_calls.map((tc, i) => ({ role: 'tool', tool_call_id: tc.id, content: JSON.stringify({ result: i === 0 ? '14°C, Regen ☔' : 227.5 }) })),
    ];
    const extra = { x_vendor_extension: { nested: [1, 'två', null, { deep: true }], emoji: '🦜' }, metadata: { trace: 'round-trip' } };
    ctx.fake.reset();
    client.sent.length = 0;
    const second = await client.chat.completions.create({ model: 'gpt-4o', messages, tools, ...extra });
    assert.equal(second.choices[0].message.content, TEXT_CONTENT);

    assert.equal(ctx.fake.requests.length, 1);
    const rec = ctx.fake.requests[0];
    assert.equal(client.sent.length, 1);
    assert.equal(typeof client.sent[0].body, 'string');
    assert.equal(rec.raw, client.sent[0].body, 'the provider received the exact bytes the SDK sent');
    assert.deepEqual(rec.body.messages[1], JSON.parse(JSON.stringify(msg)), 'the assistant tool_calls message arrived unchanged');
    assert.deepEqual(rec.body.messages.slice(2), messages.slice(2), 'the tool messages arrived unchanged');
    assert.deepEqual(rec.body.x_vendor_extension, extra.x_vendor_extension, 'unknown fields pass through');
    assert.equal(rec.headers['content-type'], 'application/json');
  }));

  test('SDK models.list returns the provider\'s models', () => withGw({}, async (ctx) => {
    const { secret } = await createToken(ctx.admin);
    const client = sdk(ctx, secret);
    const ids = [];
    for await (const m of client.models.list()) ids.push(m);
    assert.deepEqual(ids, MODELS);
    const one = await client.models.retrieve('gpt-4o-mini');
    assert.deepEqual(one, MODELS[1]);
    const raw = await v1(ctx, secret).get('/v1/models');
    assert.equal(raw.status, 200);
    assert.deepEqual(raw.json, { object: 'list', data: MODELS });
    assert.ok(ctx.fake.requests.every((r) => r.headers.authorization === 'Bearer sk-test'));
  }));

  test('provider errors become SDK exceptions with the provider\'s status and body (401, 404, 429, 400 context)', () => withGw({}, async (ctx) => {
    const { secret } = await createToken(ctx.admin);
    const client = sdk(ctx, secret);
    const cases = [
      ['fault:401', OpenAI.AuthenticationError, 401, providerError(401, 'invalid_api_key')],
      ['fault:404', OpenAI.NotFoundError, 404, providerError(404, 'model_not_found')],
      ['fault:429', OpenAI.RateLimitError, 429, providerError(429, 'rate_limit_exceeded')],
      ['fault:context', OpenAI.BadRequestError, 400, providerError(400, 'context_length_exceeded')],
    ];
    for (const [model, Klass, status, body] of cases) {
      for (const stream of [false, true]) {
        const what = `${model} stream=${stream}`;
        const err = await expectError(client.chat.completions.create(chatBody(model, stream ? { stream: true } : {})), Klass, what);
        assert.equal(err.status, status, what);
        assert.deepEqual(err.error, body.error, `${what}: the provider's error body`);
        assert.equal(err.error.message, body.error.message, `${what}: message text`);
        assert.equal(err.code, body.error.code, what);
        assert.equal(err.type, body.error.type, what);
      }
      const raw = await v1(ctx, secret).post('/v1/chat/completions', chatBody(model));
      assert.equal(raw.status, status);
      assert.equal(raw.text, JSON.stringify(body), `${model}: the provider's body byte for byte`);
    }
    const ctxErr = await expectError(client.chat.completions.create(chatBody('fault:context')), OpenAI.BadRequestError, 'context');
    assert.equal(ctxErr.code, 'context_length_exceeded');
    assert.equal(ctxErr.param, 'messages');
  }));

  test('pass-through: /v1/embeddings and /v1/images/generations reach the provider as sent', () => withGw({}, async (ctx) => {
    const { secret } = await createToken(ctx.admin);
    const client = sdk(ctx, secret, { record: true });
    const emb = await client.embeddings.create({ model: 'text-embedding-3-small', input: ['héllo', 'wörld'], encoding_format: 'float', dimensions: 8 });
    assert.deepEqual(emb, { object: 'fake', method: 'POST', path: '/v1/embeddings' });
    const img = await client.images.generate({ model: 'dall-e-3', prompt: 'a parrot 🦜 reading a newspaper', size: '1024x1024', x_extra: 7 });
    assert.deepEqual(img, { object: 'fake', method: 'POST', path: '/v1/images/generations' });
    const seen = ctx.fake.requests.map((r) => [r.method, r.path, r.raw]);
    assert.deepEqual(seen, [
      ['POST', '/v1/embeddings', client.sent[0].body],
      ['POST', '/v1/images/generations', client.sent[1].body],
    ], 'the provider got the SDK\'s bodies byte for byte');
    assert.ok(ctx.fake.requests.every((r) => r.headers.authorization === 'Bearer sk-test'));
  }));

  // ---- tokens -------------------------------------------------------------------------

  test('tokens: the created secret works; the list shows only its prefix, never the secret', () => withGw({}, async (ctx) => {
    const a = ctx.admin;
    const t1 = await createToken(a, { name: 'laptop' });
    const t2 = await createToken(a, { name: 'ci', models: ['gpt-4o'], rpm: 10 });
    assert.notEqual(t1.secret, t2.secret);
    assert.equal(t1.token.name, 'laptop');
    await completeOk(sdk(ctx, t1.secret));
    await completeOk(sdk(ctx, t2.secret));

    const list = await a.get('/api/v1/tokens');
    assert.equal(list.status, 200);
    for (const t of [t1, t2]) {
      assert.ok(!list.text.includes(t.secret), 'the list never contains a secret');
      assert.ok(!list.text.includes(t.secret.slice(9)), 'nor its random part');
      const row = list.json.data.find((x) => x.id === t.id);
      assert.ok(row, 'the token is listed');
      assert.equal(row.prefix, t.secret.slice(0, row.prefix.length));
      assert.ok(row.prefix.length >= 4 && row.prefix.length <= 12, `a short prefix: ${row.prefix}`);
      assert.equal(row.secret, undefined);
      assert.equal(row.revoked_at, null);
    }
    const row2 = list.json.data.find((x) => x.id === t2.id);
    assert.deepEqual(row2.models, ['gpt-4o']);
    assert.equal(row2.rpm, 10);
  }));

  test('tokens: revoking makes the very next call fail 401 (the cache forgets it at once)', () => withGw({}, async (ctx) => {
    const t = await createToken(ctx.admin);
    const client = sdk(ctx, t.secret);
    await completeOk(client, 'gpt-4o', 'before revocation');
    await completeOk(client, 'gpt-4o', 'cached principal');
    const del = await ctx.admin.delete(`/api/v1/tokens/${t.id}`);
    assert.equal(del.status, 204, del.text);
    const before = ctx.fake.requests.length;
    const err = await expectError(client.chat.completions.create(chatBody()), OpenAI.AuthenticationError, 'after revocation');
    assert.equal(err.status, 401);
    assert.equal(err.code, 'invalid_api_key');
    await expectError(client.models.list(), OpenAI.AuthenticationError, 'models after revocation');
    assert.equal(ctx.fake.requests.length, before, 'nothing reached the provider');
    const list = await ctx.admin.get('/api/v1/tokens');
    const row = list.json.data.find((x) => x.id === t.id);
    assert.ok(!row || typeof row.revoked_at === 'number', 'listed as revoked or not at all');
    assert.equal((await ctx.admin.delete(`/api/v1/tokens/${t.id}`)).status, 404, 'revoking twice');
  }));

  test('tokens: one with expires_at works until then, and answers 401 afterwards', () => withGw({}, async (ctx) => {
    const expiresAt = Date.now() + 4000;
    const t = await createToken(ctx.admin, { expires_at: expiresAt });
    assert.equal(t.token.expires_at, expiresAt);
    const client = sdk(ctx, t.secret);
    await completeOk(client, 'gpt-4o', 'before expiry');
    assert.ok(Date.now() < expiresAt, 'the first call finished before the expiry (else the test proves nothing)');
    await sleep(expiresAt - Date.now() + 150);
    const before = ctx.fake.requests.length;
    const err = await expectError(client.chat.completions.create(chatBody()), OpenAI.AuthenticationError, 'after expiry');
    assert.equal(err.status, 401);
    assert.equal(ctx.fake.requests.length, before, 'nothing reached the provider');
    const past = await ctx.admin.post('/api/v1/tokens', { name: 'past', expires_at: Date.now() - 1000 });
    assert.equal(past.status, 400, 'expires_at in the past is refused');
  }));

  test('tokens: a models allow-list admits gpt-4o and refuses gpt-4o-mini with 403 model_not_allowed', () => withGw({}, async (ctx) => {
    const t = await createToken(ctx.admin, { models: ['gpt-4o'] });
    const client = sdk(ctx, t.secret);
    await completeOk(client, 'gpt-4o', 'allowed model');
    const before = ctx.fake.requests.length;
    for (const stream of [false, true]) {
      const err = await expectError(client.chat.completions.create(chatBody('gpt-4o-mini', stream ? { stream: true } : {})), OpenAI.PermissionDeniedError, `gpt-4o-mini stream=${stream}`);
      assert.equal(err.status, 403);
      assert.equal(err.code, 'model_not_allowed');
    }
    assert.equal(ctx.fake.requests.length, before, 'refused requests never reach the provider');
    const raw = await v1(ctx, t.secret).post('/v1/chat/completions', chatBody('gpt-4o-mini'));
    assertOpenAIError(raw, 403, 'model_not_allowed', 'raw gpt-4o-mini');
    // the model list shows only what the token may use
    const ids = [];
    for await (const m of client.models.list()) ids.push(m.id);
    assert.deepEqual(ids, ['gpt-4o']);
  }));

  test('missing or garbage Authorization -> 401 in OpenAI shape, nothing forwarded', () => withGw({}, async (ctx) => {
    await createToken(ctx.admin);
    const none = await v1(ctx).post('/v1/chat/completions', chatBody());
    assertOpenAIError(none, 401, undefined, 'no Authorization');
    for (const h of ['Basic dXNlcjpwYXNz', 'Bearer ', 'Bearer coai-not-a-real-token', 'Bearer sk-test', 'garbage']) {
      const c = new Client(ctx.srv.url, { csrf: false, headers: { authorization: h } });
      ctx.clients.push(c);
      assertOpenAIError(await c.post('/v1/chat/completions', chatBody()), 401, undefined, `Authorization: ${h}`);
      assertOpenAIError(await c.get('/v1/models'), 401, undefined, `GET /v1/models with Authorization: ${h}`);
    }
    const err = await expectError(sdk(ctx, 'coai-garbage-garbage-garbage').chat.completions.create(chatBody()), OpenAI.AuthenticationError, 'SDK garbage key');
    assert.equal(err.status, 401);
    assert.equal(err.code, 'invalid_api_key');
    assert.equal(ctx.fake.requests.length, 0, 'nothing reached the provider');
  }));

  // ---- isolation ------------------------------------------------------------------------

  test('isolation: A\'s token spends and reports only as A; B cannot revoke it or see its usage', () => withGw({}, async (ctx) => {
    const a = ctx.admin;
    const b = await newUser(ctx, 'bob');
    const ta = await createToken(a, { name: 'a-token' });
    const tb = await createToken(b, { name: 'b-token' });
    const ca = sdk(ctx, ta.secret);
    const cb = sdk(ctx, tb.secret);
    await completeOk(ca, 'gpt-4o', 'A 1');
    await completeOk(ca, 'gpt-4o', 'A 2');
    await completeOk(cb, 'gpt-4o', 'B 1');

    const mine = (c) => c.get(`/api/v1/usage?from=${today()}&to=${today()}`);
    const ua = await poll(() => mine(a), (r) => r.status === 200 && r.json.totals.requests === 2, { what: 'A has 2 requests' });
    const ub = await poll(() => mine(b), (r) => r.status === 200 && r.json.totals.requests === 1, { what: 'B has 1 request' });
    assert.ok(ua.json.data.length > 0 && ua.json.data.every((x) => x.user_id === a.id), `A's report has only A's rows: ${ua.text}`);
    assert.ok(ub.json.data.every((x) => x.user_id === b.id), `B's report has only B's rows: ${ub.text}`);
    assert.equal(ua.json.totals.prompt_tokens, 2 * TEXT_JSON.usage.prompt_tokens);
    assert.equal(ub.json.totals.completion_tokens, TEXT_JSON.usage.completion_tokens);

    // B cannot revoke A's token, nor see it
    const del = await b.delete(`/api/v1/tokens/${ta.id}`);
    assert.equal(del.status, 404, `B revoking A's token: ${del.text}`);
    const lb = await b.get('/api/v1/tokens');
    assert.deepEqual(lb.json.data.map((x) => x.id), [tb.id]);
    await completeOk(ca, 'gpt-4o', 'A\'s token still works');
    // B's own usage did not grow from A's request; admin data is closed to B
    await poll(() => mine(a), (r) => r.json.totals.requests === 3, { what: 'A has 3 requests' });
    assert.equal((await mine(b)).json.totals.requests, 1);
    assert.equal((await b.get(`/api/v1/admin/usage?from=${today()}&to=${today()}`)).status, 403);
    assert.equal((await b.get(`/api/v1/admin/usage?user_id=${a.id}`)).status, 403);
    // the admin view splits them by user
    const rep = await adminUsage(a);
    assert.equal(rowFor(rep, a.id, FIXTURE_MODEL)?.requests, 3);
    assert.equal(rowFor(rep, b.id, FIXTURE_MODEL)?.requests, 1);
  }));

  test('isolation: each user\'s requests use only their own connection key, never another user\'s', () => withGw({}, async (ctx) => {
    const a = ctx.admin;
    const b = await newUser(ctx, 'bob');
    const c = await newUser(ctx, 'carol'); // no connection: the server default key
    for (const [u, key] of [[a, 'sk-conn-alice'], [b, 'sk-conn-bob']]) {
      const r = await u.put('/api/v1/connection', { base_url: ctx.fake.baseURL, api_key: key });
      assert.equal(r.status, 200, `PUT /api/v1/connection: ${r.text}`);
    }
    const who = { alice: { u: a, key: 'sk-conn-alice' }, bob: { u: b, key: 'sk-conn-bob' }, carol: { u: c, key: 'sk-test' } };
    for (const w of Object.values(who)) w.client = sdk(ctx, (await createToken(w.u)).secret);
    const order = ['alice', 'bob', 'carol', 'bob', 'alice', 'carol', 'alice', 'bob'];
    await Promise.all(order.map(async (name, i) => {
      const r = await who[name].client.chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: `${name} #${i}` }] });
      assert.equal(r.choices[0].message.content, TEXT_CONTENT);
    }));
    const seen = ctx.fake.requests.filter((r) => r.path === '/v1/chat/completions');
    assert.equal(seen.length, order.length);
    for (const r of seen) {
      const name = r.body.messages[0].content.split(' ')[0];
      assert.equal(r.headers.authorization, `Bearer ${who[name].key}`, `${r.body.messages[0].content} used ${r.headers.authorization}`);
    }
  }));

  // ---- the key pool ----------------------------------------------------------------------

  test('pool: a key answering 401 is skipped invisibly, disabled with a reason, and stays out of rotation (also after a restart)', () => withGw({ serverKey: false }, async (ctx) => {
    const bad = await addPoolKey(ctx.admin, ctx.fake, 'sk-bad', { weight: 1000 });
    const good = await addPoolKey(ctx.admin, ctx.fake, 'sk-good-0001', { weight: 1 });
    await poolKeys(ctx.admin, 2);
    const { secret } = await createToken(ctx.admin);
    const client = sdk(ctx, secret);
    for (let i = 0; i < 6; i++) await completeOk(client, 'gpt-4o', `request ${i}`);
    const stream = await client.chat.completions.create(chatBody('gpt-4o', { stream: true }));
    let text = '';
    for await (const ch of stream) text += ch.choices[0]?.delta?.content ?? '';
    assert.equal(text, TEXT_SSE.content);
    assert.equal(countAuth(ctx.fake, 'sk-bad'), 1, `the bad key was tried once, then never again: ${chatAuths(ctx.fake)}`);
    assert.equal(countAuth(ctx.fake, 'sk-good-0001'), 7);

    const keys = await poll(() => ctx.admin.get('/api/v1/admin/keys'), (r) => keyById(r.json.data, bad.id)?.enabled === false, { what: 'bad key stored as disabled' });
    const kb = keyById(keys.json.data, bad.id);
    const kg = keyById(keys.json.data, good.id);
    assert.equal(kb.enabled, false);
    assert.equal(typeof kb.disabled_reason, 'string');
    assert.match(kb.disabled_reason, /401/);
    assert.equal(kb.health.state, 'disabled');
    assert.equal(kg.enabled, true);
    assert.equal(kg.health.state, 'ok');
    assert.ok(!keys.text.includes('sk-good-0001') && !keys.text.includes('sk-bad'), 'keys are never shown');
    // per-key health and usage for the admin
    assert.ok(kb.health.errors_since_start >= 1, `bad key errors: ${JSON.stringify(kb.health)}`);
    assert.match(String(kb.health.last_error), /401/);
    assert.equal(kg.health.errors_since_start, 0);
    const tokens = 6 * TEXT_JSON.usage.total_tokens + TEXT_SSE.usage.total_tokens;
    const used = await poll(() => ctx.admin.get('/api/v1/admin/keys'), (r) => keyById(r.json.data, good.id)?.usage_30d?.requests === 7,
      { what: 'good key usage_30d.requests = 7' });
    assert.deepEqual(keyById(used.json.data, good.id).usage_30d, { requests: 7, tokens, errors: 0 });

    // persistently: a restart does not bring it back
    await ctx.restart();
    const after = await poolKeys(ctx.admin, 2);
    assert.equal(keyById(after, bad.id).enabled, false);
    assert.equal(keyById(after, bad.id).health.state, 'disabled');
    ctx.fake.reset();
    await completeOk(sdk(ctx, secret), 'gpt-4o', 'after restart');
    await completeOk(sdk(ctx, secret), 'gpt-4o', 'after restart 2');
    assert.deepEqual(chatAuths(ctx.fake), ['Bearer sk-good-0001', 'Bearer sk-good-0001']);
  }));

  // The 429 key answers Retry-After: 4 (fake key "sk-429-4"): long enough
  // that "during the cool-down" holds on a loaded machine.
  const COOL_MS = 4000;

  test('pool: a key answering 429 cools down for its Retry-After while the others serve, then is tried again', () => withGw({ serverKey: false }, async (ctx) => {
    const hot = await addPoolKey(ctx.admin, ctx.fake, 'sk-429-4', { weight: 1000 });
    await addPoolKey(ctx.admin, ctx.fake, 'sk-good-0002', { weight: 1 });
    await poolKeys(ctx.admin, 2);
    const { secret } = await createToken(ctx.admin);
    const client = sdk(ctx, secret);
    let tStart = 0; // before the request that met the 429: the cool-down ends after tStart + 4 s
    for (let i = 0; i < 5 && countAuth(ctx.fake, 'sk-429-4') === 0; i++) {
      tStart = Date.now();
      await completeOk(client, 'gpt-4o', `until the 429 key is picked (${i}): the client sees no error`);
    }
    assert.equal(countAuth(ctx.fake, 'sk-429-4'), 1, 'the 429 key was picked (weight 1000 of 1001)');
    let keys = await poolKeys(ctx.admin, 2);
    const k = keyById(keys, hot.id);
    assert.equal(k.health.state, 'cooling', JSON.stringify(k));
    assert.equal(k.enabled, true, 'cooling is not disabling');
    assert.ok(k.health.cooling_for_ms > 0 && k.health.cooling_for_ms <= COOL_MS, `cooling_for_ms ${k.health.cooling_for_ms}`);

    // while it cools, the good key serves everything
    let during = 0;
    for (let i = 0; i < 4; i++) {
      await completeOk(client, 'gpt-4o', `during cool-down ${i}`);
      if (Date.now() >= tStart + COOL_MS - 100) break; // (a slow machine) the cool-down may be over
      during++;
      assert.equal(countAuth(ctx.fake, 'sk-429-4'), 1, `not tried while cooling (request ${i}, ${Date.now() - tStart} ms after the 429 request began)`);
    }
    assert.ok(during >= 1, 'at least one request ran during the cool-down');

    // after Retry-After it is back in rotation
    keys = await poll(() => ctx.admin.get('/api/v1/admin/keys'), (r) => keyById(r.json.data, hot.id)?.health?.state === 'ok',
      { timeoutMs: COOL_MS + 4000, what: 'the 429 key back to ok' });
    assert.ok(Date.now() - tStart >= COOL_MS - 100, `cooled for less than Retry-After: back after ${Date.now() - tStart} ms`);
    for (let i = 0; i < 5 && countAuth(ctx.fake, 'sk-429-4') === 1; i++) await completeOk(client, 'gpt-4o', `after cool-down ${i}`);
    assert.equal(countAuth(ctx.fake, 'sk-429-4'), 2, 'tried again after the cool-down');
  }));

  test('pool: exhaustion (the only key rate limited) is a clear, quick error, and the key is tried again after its cool-down', () => withGw({ serverKey: false }, async (ctx) => {
    await addPoolKey(ctx.admin, ctx.fake, 'sk-429-4');
    await poolKeys(ctx.admin, 1);
    const { secret } = await createToken(ctx.admin);
    const raw = v1(ctx, secret);

    const tStart = Date.now();
    const r1 = await raw.post('/v1/chat/completions', chatBody());
    const tEnd = Date.now(); // the 429 came before: the cool-down ends by tEnd + 4 s
    assert.ok(tEnd - tStart < 8000, `answered in ${tEnd - tStart} ms (no hang)`);
    assert.ok([429, 503].includes(r1.status), `status ${r1.status}: ${r1.text}`);
    assertOpenAIError(r1, r1.status, undefined, 'first request');
    assert.ok(Number(r1.headers['retry-after']) > 0, `Retry-After on the first error: ${JSON.stringify(r1.headers)}`);
    assert.equal(countAuth(ctx.fake, 'sk-429-4'), 1);

    // during the cool-down: no call to the provider, a retryable error
    const r2 = await raw.post('/v1/chat/completions', chatBody());
    assert.ok(Date.now() < tStart + COOL_MS - 100, 'the second request ran during the cool-down');
    assert.ok([429, 503].includes(r2.status), `status ${r2.status}: ${r2.text}`);
    assertOpenAIError(r2, r2.status, undefined, 'during cool-down');
    assert.equal(countAuth(ctx.fake, 'sk-429-4'), 1, 'the cooling key is not called');
    assert.ok(Number(r2.headers['retry-after']) > 0,
      `a temporary exhaustion must say when to retry (Retry-After), got headers ${JSON.stringify(r2.headers)} body ${r2.text}`);
    assert.notEqual(r2.headers['x-should-retry'], 'false', 'exhaustion is temporary: x-should-retry must not be false');
    const sdkErr = await expectError(sdk(ctx, secret).chat.completions.create(chatBody()), OpenAI.APIError, 'SDK during cool-down');
    assert.ok([429, 503].includes(sdkErr.status), `SDK status ${sdkErr.status}`);

    await sleep(Math.max(0, tEnd + COOL_MS + 300 - Date.now()));
    const r3 = await raw.post('/v1/chat/completions', chatBody());
    assert.equal(countAuth(ctx.fake, 'sk-429-4'), 2, 'tried again after the cool-down');
    assertOpenAIError(r3, r3.status, undefined, 'after cool-down, still 429 upstream');
  }));

  test('pool: exhaustion (every key disabled by 401) is a clear error without calling the provider', () => withGw({ serverKey: false }, async (ctx) => {
    const bad = await addPoolKey(ctx.admin, ctx.fake, 'sk-bad');
    await poolKeys(ctx.admin, 1);
    const { secret } = await createToken(ctx.admin);
    const raw = v1(ctx, secret);
    const r1 = await raw.post('/v1/chat/completions', chatBody());
    assert.ok(r1.status >= 400, `status ${r1.status}`);
    assertOpenAIError(r1, r1.status, undefined, 'the only key fails');
    assert.equal(countAuth(ctx.fake, 'sk-bad'), 1);
    const keys = await poll(() => ctx.admin.get('/api/v1/admin/keys'), (r) => r.json.data[0]?.enabled === false, { what: 'disabled' });
    assert.equal(keyById(keys.json.data, bad.id).health.state, 'disabled');
    for (let i = 0; i < 2; i++) {
      const t0 = Date.now();
      const r = await raw.post('/v1/chat/completions', chatBody());
      assert.ok(Date.now() - t0 < 5000, `answered in ${Date.now() - t0} ms (no hang)`);
      assertOpenAIError(r, 503, 'no_provider_key', `request ${i} with every key disabled`);
    }
    assert.equal(countAuth(ctx.fake, 'sk-bad'), 1, 'a disabled key is never called');
    // an admin re-enabling it puts it back
    const en = await ctx.admin.patch(`/api/v1/admin/keys/${bad.id}`, { enabled: true });
    assert.equal(en.status, 200, en.text);
    await poll(() => ctx.admin.get('/api/v1/admin/keys'), (r) => r.json.data[0]?.health?.state === 'ok', { what: 're-enabled' });
    await raw.post('/v1/chat/completions', chatBody());
    assert.equal(countAuth(ctx.fake, 'sk-bad'), 2, 'back in rotation');
  }));

  test('pool: a web chat turn of a user without a key fails over from a 401 pool key and completes', () => withGw({ serverKey: false }, async (ctx) => {
    await addPoolKey(ctx.admin, ctx.fake, 'sk-bad', { weight: 1000 });
    await addPoolKey(ctx.admin, ctx.fake, 'sk-good-0003', { weight: 1 });
    await poolKeys(ctx.admin, 2);
    const b = await newUser(ctx, 'bob');
    const ch = await b.post('/api/v1/chats', { title: 'pool turn' });
    assert.equal(ch.status, 201, ch.text);
    const m = await b.post(`/api/v1/chats/${ch.json.chat.id}/messages`, { content: 'Hello there', model: 'gpt-4o' });
    assert.equal(m.status, 202, m.text);
    const events = await collectSse(b, `/api/v1/turns/${m.json.turn.id}/events`, { until: (ev) => ev.event === 'done', timeoutMs: 15000 });
    const done = JSON.parse(events.at(-1).data);
    assert.equal(done.status, 'complete', JSON.stringify(done));
    assert.deepEqual(done.message.content, [{ type: 'text', text: TEXT_SSE.content }]);
    assert.ok(countAuth(ctx.fake, 'sk-bad') <= 1, 'the bad key is used at most once');
    assert.ok(countAuth(ctx.fake, 'sk-good-0003') >= 1);
  }));

  test('admin endpoints answer 403 to a non-admin and change nothing', () => withGw({}, async (ctx) => {
    const b = await newUser(ctx, 'bob');
    const key = await addPoolKey(ctx.admin, ctx.fake, 'sk-admins-key');
    const pricesBefore = (await ctx.admin.get('/api/v1/admin/prices')).json.data;
    const calls = [
      ['GET', '/api/v1/admin/keys'],
      ['POST', '/api/v1/admin/keys', { name: 'x', api_key: 'sk-from-bob', base_url: ctx.fake.baseURL }],
      ['PATCH', `/api/v1/admin/keys/${key.id}`, { enabled: false }],
      ['DELETE', `/api/v1/admin/keys/${key.id}`],
      ['PUT', '/api/v1/admin/prices', PRICE_4O],
      ['DELETE', '/api/v1/admin/prices?model=gpt-4o'],
      ['GET', '/api/v1/admin/users'],
      ['GET', `/api/v1/admin/users/${b.id}/limits`],
      ['PUT', `/api/v1/admin/users/${b.id}/limits`, { rpm: 100000 }],
      ['PUT', `/api/v1/admin/users/${ctx.admin.id}/limits`, { rpm: 1 }],
      ['GET', `/api/v1/admin/usage?from=${today()}&to=${today()}`],
    ];
    for (const [method, p, json] of calls) {
      const r = await b.request(method, p, json !== undefined ? { json } : {});
      assert.equal(r.status, 403, `${method} ${p} as a non-admin: ${r.text}`);
    }
    const keys = await poolKeys(ctx.admin, 1);
    assert.equal(keys[0].enabled, true);
    assert.deepEqual((await ctx.admin.get('/api/v1/admin/prices')).json.data, pricesBefore, 'the price table is unchanged');
    const lim = await ctx.admin.get(`/api/v1/admin/users/${ctx.admin.id}/limits`);
    assert.equal(lim.json.limits.rpm, null);
    assert.equal((await ctx.admin.get('/api/v1/admin/users')).status, 200);
  }));

  test('pool keys: bad fields are 400 with their code and nothing is stored', () => withGw({}, async (ctx) => {
    const good = { name: 'k', api_key: 'sk-valid', base_url: ctx.fake.baseURL };
    const cases = [
      [{ ...good, base_url: 'http://' }, 'invalid_base_url'],
      [{ ...good, base_url: 'https:///v1' }, 'invalid_base_url'],
      [{ ...good, base_url: 'ftp://example.com/v1' }, 'invalid_base_url'],
      [{ ...good, base_url: 'http://example.com/v1?x=1' }, 'invalid_base_url'],
      [{ ...good, api_key: 'sk with space' }, 'invalid_api_key'],
      [{ ...good, api_key: '' }, 'invalid_api_key'],
      [{ ...good, weight: 0 }, 'invalid_request'],
      [{ ...good, weight: 'heavy' }, 'invalid_request'],
      [{ ...good, enabled: 'yes' }, 'invalid_request'],
    ];
    for (const [json, code] of cases) {
      const r = await ctx.admin.post('/api/v1/admin/keys', json);
      assert.equal(r.status, 400, `${JSON.stringify(json)}: ${r.text}`);
      assert.equal(r.json?.error?.code, code, `${JSON.stringify(json)}: ${r.text}`);
    }
    const list = await ctx.admin.get('/api/v1/admin/keys');
    assert.equal(list.status, 200);
    assert.deepEqual(list.json.data, [], 'no key was stored');
  }));

  // ---- limits and budgets --------------------------------------------------------------

  test('limits: per-user rpm 3 -> the 4th request is 429 rate_limit_exceeded with Retry-After and x-ratelimit-* headers', () => withGw({}, async (ctx) => {
    const lim = await setLimits(ctx.admin, ctx.admin.id, { rpm: 3 });
    assert.equal(lim.rpm, 3);
    const { secret } = await createToken(ctx.admin);
    const client = sdk(ctx, secret);
    for (let i = 0; i < 3; i++) {
      const { data, response } = await client.chat.completions.create(chatBody()).withResponse();
      assert.equal(data.choices[0].message.content, TEXT_CONTENT);
      assert.equal(response.headers.get('x-ratelimit-limit-requests'), '3', `request ${i}`);
      assert.equal(response.headers.get('x-ratelimit-remaining-requests'), String(2 - i), `request ${i}`);
      assert.ok(response.headers.get('x-ratelimit-reset-requests'), 'x-ratelimit-reset-requests');
    }
    const before = ctx.fake.requests.length;
    const err = await expectError(client.chat.completions.create(chatBody()), OpenAI.RateLimitError, '4th request');
    assert.equal(err.status, 429);
    assert.equal(err.code, 'rate_limit_exceeded');
    const ra = Number(err.headers['retry-after']);
    assert.ok(Number.isInteger(ra) && ra >= 1 && ra <= 20, `Retry-After ${err.headers['retry-after']} (one request per 20 s)`);
    assert.equal(err.headers['x-ratelimit-limit-requests'], '3');
    assert.equal(err.headers['x-ratelimit-remaining-requests'], '0');
    assert.equal(ctx.fake.requests.length, before, 'a limited request is not forwarded');
    const raw = await v1(ctx, secret).post('/v1/chat/completions', chatBody('gpt-4o', { stream: true }));
    assertOpenAIError(raw, 429, 'rate_limit_exceeded', 'streamed 5th request');
    // another user is not affected
    const b = await newUser(ctx, 'bob');
    await completeOk(sdk(ctx, (await createToken(b)).secret), 'gpt-4o', 'another user');
  }));

  test('limits: per-token rpm 2 -> the 3rd request on that token is 429; the user\'s other token still works', () => withGw({}, async (ctx) => {
    const limited = await createToken(ctx.admin, { name: 'limited', rpm: 2 });
    const free = await createToken(ctx.admin, { name: 'free' });
    const client = sdk(ctx, limited.secret);
    for (let i = 0; i < 2; i++) {
      const { response } = await client.chat.completions.create(chatBody()).withResponse();
      assert.equal(response.headers.get('x-ratelimit-limit-requests'), '2', 'the tighter (token) limit is shown');
      assert.equal(response.headers.get('x-ratelimit-remaining-requests'), String(1 - i));
    }
    const err = await expectError(client.chat.completions.create(chatBody()), OpenAI.RateLimitError, '3rd on the token');
    assert.equal(err.code, 'rate_limit_exceeded');
    assert.ok(Number(err.headers['retry-after']) >= 1, `Retry-After ${err.headers['retry-after']}`);
    assert.equal(err.headers['x-ratelimit-limit-requests'], '2');
    for (let i = 0; i < 3; i++) await completeOk(sdk(ctx, free.secret), 'gpt-4o', `other token ${i}`);
  }));

  test('limits: tpm 20 -> after a completion using more tokens the next request is 429', () => withGw({}, async (ctx) => {
    await setLimits(ctx.admin, ctx.admin.id, { tpm: 20 });
    const { secret } = await createToken(ctx.admin);
    const client = sdk(ctx, secret);
    const { data, response } = await client.chat.completions.create(chatBody()).withResponse();
    assert.ok(data.usage.total_tokens > 20);
    assert.equal(response.headers.get('x-ratelimit-limit-tokens'), '20');
    const err = await expectError(client.chat.completions.create(chatBody()), OpenAI.RateLimitError, 'over the tpm');
    assert.equal(err.status, 429);
    assert.equal(err.code, 'rate_limit_exceeded');
    assert.ok(Number(err.headers['retry-after']) >= 1, `Retry-After ${err.headers['retry-after']}`);
    assert.equal(err.headers['x-ratelimit-limit-tokens'], '20');
    assert.equal(err.headers['x-ratelimit-remaining-tokens'], '0');
  }));

  test('budgets: monthly_tokens spent -> 429 insufficient_quota budget_exceeded, x-should-retry: false', () => withGw({}, async (ctx) => {
    await setLimits(ctx.admin, ctx.admin.id, { monthly_tokens: 60 });
    const { secret } = await createToken(ctx.admin);
    const client = sdk(ctx, secret);
    await completeOk(client, 'gpt-4o', 'first (51 tokens, under 60)');
    await completeOk(client, 'gpt-4o', 'second (51 spent < 60)');
    const before = ctx.fake.requests.length;
    for (const stream of [false, true]) {
      const err = await expectError(client.chat.completions.create(chatBody('gpt-4o', stream ? { stream: true } : {})), OpenAI.RateLimitError, `budget spent, stream=${stream}`);
      assert.equal(err.status, 429);
      assert.equal(err.type, 'insufficient_quota');
      assert.equal(err.code, 'budget_exceeded');
      assert.equal(err.headers['x-should-retry'], 'false');
    }
    assert.equal(ctx.fake.requests.length, before, 'nothing forwarded once the budget is spent');
    const raw = await v1(ctx, secret).post('/v1/chat/completions', chatBody());
    const e = assertOpenAIError(raw, 429, 'budget_exceeded', 'raw');
    assert.equal(e.type, 'insufficient_quota');
    // raising the budget lets the user go on at once
    await setLimits(ctx.admin, ctx.admin.id, { monthly_tokens: 1000 });
    await completeOk(client, 'gpt-4o', 'after raising the budget');
  }));

  test('budgets: monthly_cost_usd spent (with prices) -> 429 budget_exceeded', () => withGw({}, async (ctx) => {
    await setPrice(ctx.admin, PRICE_4O);
    const { secret } = await createToken(ctx.admin);
    await setLimits(ctx.admin, ctx.admin.id, { monthly_cost_usd: 0.000001 });
    const client = sdk(ctx, secret);
    await completeOk(client, 'gpt-4o', 'first (nothing spent yet)');
    const err = await expectError(client.chat.completions.create(chatBody()), OpenAI.RateLimitError, 'cost budget spent');
    assert.equal(err.type, 'insufficient_quota');
    assert.equal(err.code, 'budget_exceeded');
    assert.equal(err.headers['x-should-retry'], 'false');
    // another user without a budget is unaffected
    const b = await newUser(ctx, 'bob');
    await completeOk(sdk(ctx, (await createToken(b)).secret), 'gpt-4o', 'user without a budget');
  }));

  // ---- usage and cost ------------------------------------------------------------------

  test('usage: admin report by day, model and user with the provider\'s tokens and cost from the price table', () => withGw({}, async (ctx) => {
    await setPrice(ctx.admin, PRICE_4O);
    // a shorter prefix and an unrelated longer name must not be used for gpt-4o-2024-08-06
    await setPrice(ctx.admin, { model: 'gpt', input: 1000, output: 1000 });
    await setPrice(ctx.admin, { model: 'gpt-4o-mini', input: 500, output: 500 });
    const prices = await ctx.admin.get('/api/v1/admin/prices');
    assert.deepEqual(prices.json.data.find((p) => p.model === 'gpt-4o'), { ...PRICE_4O, updated_at: prices.json.data.find((p) => p.model === 'gpt-4o').updated_at });
    const { secret } = await createToken(ctx.admin);
    const client = sdk(ctx, secret);
    await completeOk(client);
    const stream = await client.chat.completions.create(chatBody('gpt-4o', { stream: true, stream_options: { include_usage: true } }));
    for await (const _ of stream) { /* drain */ }

    const pt = TEXT_JSON.usage.prompt_tokens + TEXT_SSE.usage.prompt_tokens;
    const ct = TEXT_JSON.usage.completion_tokens + TEXT_SSE.usage.completion_tokens;
    const cost = costMicros(PRICE_4O, TEXT_JSON.usage.prompt_tokens, TEXT_JSON.usage.completion_tokens)
      + costMicros(PRICE_4O, TEXT_SSE.usage.prompt_tokens, TEXT_SSE.usage.completion_tokens);
    const rep = (await poll(() => ctx.admin.get(`/api/v1/admin/usage?from=${today()}&to=${today()}`),
      (r) => r.status === 200 && rowFor(r.json, ctx.admin.id, FIXTURE_MODEL)?.requests === 2, { what: 'two requests recorded' })).json;
    const row = rowFor(rep, ctx.admin.id, FIXTURE_MODEL);
    assert.equal(row.day, today());
    assert.equal(row.email, ctx.admin.email);
    assert.equal(row.prompt_tokens, pt);
    assert.equal(row.completion_tokens, ct);
    assert.equal(row.errors, 0);
    assert.ok(Math.abs(row.cost_usd - cost / 1e6) < 1e-9, `cost_usd ${row.cost_usd}, expected ${cost / 1e6} (gpt-4o prices: 2.5/10 per 1M)`);
    const keys = rep.data.map((x) => `${x.day}|${x.model}|${x.user_id}`);
    assert.equal(new Set(keys).size, keys.length, 'one row per day, model and user');
    // the user's own view agrees
    const mine = await ctx.admin.get(`/api/v1/usage?from=${today()}&to=${today()}`);
    assert.deepEqual(rowFor(mine.json, ctx.admin.id, FIXTURE_MODEL), row);
    // ranges: yesterday has nothing; a bad range is a 400
    const y = new Date(Date.now() - 86400000).toISOString().slice(0, 10);
    assert.equal((await ctx.admin.get(`/api/v1/admin/usage?from=${y}&to=${y}`)).json.data.length, 0);
    assert.equal((await ctx.admin.get('/api/v1/admin/usage?from=2026-13-01')).status, 400);
  }));

  test('usage: a stream without a usage chunk gets estimated tokens; web chat turns are recorded too', () => withGw({}, async (ctx) => {
    await setPrice(ctx.admin, PRICE_4O);
    const { secret } = await createToken(ctx.admin);
    const client = sdk(ctx, secret);
    const stream = await client.chat.completions.create({ model: `fixture:${NO_USAGE}`, messages: USER_MSG, stream: true });
    let text = '';
    let usage = null;
    for await (const ch of stream) {
      text += ch.choices[0]?.delta?.content ?? '';
      if (ch.usage) usage = ch.usage;
    }
    assert.equal(text, NO_USAGE_ANSWER.content);
    assert.equal(usage, null, 'the provider sent no usage');
    const est = (await poll(() => ctx.admin.get(`/api/v1/admin/usage?from=${today()}&to=${today()}`),
      (r) => r.status === 200 && r.json.data.some((x) => x.user_id === ctx.admin.id), { what: 'estimated row' })).json;
    const erow = est.data.find((x) => x.user_id === ctx.admin.id);
    assert.ok(erow, `a row for the stream: ${JSON.stringify(est.data)}`);
    assert.equal(erow.model, 'claude-haiku-4-5-20251001', 'the model the provider reported');
    assert.ok(erow.prompt_tokens > 0, `estimated prompt tokens: ${erow.prompt_tokens}`);
    assert.ok(erow.completion_tokens > 0, `estimated completion tokens: ${erow.completion_tokens}`);

    // a web chat turn (session, not token) by another user
    const b = await newUser(ctx, 'bob');
    const ch = await b.post('/api/v1/chats', { title: 'usage' });
    assert.equal(ch.status, 201, ch.text);
    const m = await b.post(`/api/v1/chats/${ch.json.chat.id}/messages`, { content: 'Hello there', model: 'gpt-4o' });
    assert.equal(m.status, 202, m.text);
    const events = await collectSse(b, `/api/v1/turns/${m.json.turn.id}/events`, { until: (ev) => ev.event === 'done', timeoutMs: 20000 });
    assert.equal(events.at(-1).event, 'done');
    const rep = (await poll(() => ctx.admin.get(`/api/v1/admin/usage?from=${today()}&to=${today()}`),
      (r) => rowFor(r.json, b.id, FIXTURE_MODEL), { what: 'the web turn recorded' })).json;
    const wrow = rowFor(rep, b.id, FIXTURE_MODEL);
    assert.equal(wrow.requests, 1);
    assert.equal(wrow.prompt_tokens, TEXT_SSE.usage.prompt_tokens);
    assert.equal(wrow.completion_tokens, TEXT_SSE.usage.completion_tokens);
    const cost = costMicros(PRICE_4O, TEXT_SSE.usage.prompt_tokens, TEXT_SSE.usage.completion_tokens);
    assert.ok(Math.abs(wrow.cost_usd - cost / 1e6) < 1e-9, `web turn cost_usd ${wrow.cost_usd}, expected ${cost / 1e6}`);
    const mineB = await b.get(`/api/v1/usage?from=${today()}&to=${today()}`);
    assert.ok(rowFor(mineB.json, b.id, FIXTURE_MODEL), 'the user sees their web usage');
  }));
});
