// gateway-redis.test.mjs - the /v1 gateway's limits shared by all instances
// through Redis (CHATOPENAII_REDIS_URL, issue #6). Two instances on one
// database, one user's token used alternately on A and B:
//   - a user rpm of 3 refuses the 4th request (429 rate_limit_exceeded,
//     Retry-After, x-ratelimit-* headers);
//   - a token tpm is shared the same way (tokens charged after an answer on
//     A count on B);
//   - a monthly token budget spent through A is refused on B;
//   - the same alternating patterns without Redis all get through (each
//     instance counts alone), which shows the tests measure sharing;
//   - Redis stopped mid-test: requests are still served from each instance's
//     own buckets (fail open, no 5xx, one warning per outage), and the
//     limits are shared again once Redis is back.
// The suite starts its own redis-server (a free port, no persistence) and a
// fake provider; every server must exit 0 after SIGTERM with no sanitizer
// report. Runs on SQLite, and on PostgreSQL with COAI_TEST_PG_URL (the same
// data directory maps to the same database).
//
//   COAI_BIN=$PWD/build-asan/server/chatopenaii node --test tests/api/gateway-redis.test.mjs

import { test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startServer, Client, register, freePort } from '../lib/harness.mjs';
import { readFixtureJSON } from '../lib/fixtures.mjs';
import { startFakeOpenAI, TEXT_STOP_JSON } from '../upstream/fake-openai.mjs';

const PW = 'correct horse battery';
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
let seq = 0;
const newEmail = (p = 'g') => `${p}${++seq}-${process.pid}@example.com`;

// Tokens of one recorded completion (prompt + completion), what each request
// below is charged.
const TEXT_JSON = readFixtureJSON(TEXT_STOP_JSON);
const PER_REQUEST = TEXT_JSON.usage.total_tokens;
const chatBody = { model: 'gpt-4o', messages: [{ role: 'user', content: "What's the weather like in San Francisco?" }] };

// ---- redis-server ---------------------------------------------------------------------

let redisPort = 0;
let redis = null; // { proc, exited }

async function startRedis() {
  const proc = spawn('redis-server', ['--port', String(redisPort), '--bind', '127.0.0.1',
    '--save', '', '--appendonly', 'no'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const exited = new Promise((resolve) => proc.once('exit', resolve));
  proc.once('error', (e) => { out += `spawn: ${e}\n`; });
  proc.stdout.on('data', (d) => { out += d; });
  proc.stderr.on('data', (d) => { out += d; });
  const deadline = Date.now() + 10000;
  while (!/Ready to accept connections/.test(out)) {
    if (proc.exitCode !== null || Date.now() > deadline) {
      proc.kill('SIGKILL');
      throw new Error(`redis-server did not start on port ${redisPort}:\n${out}`);
    }
    await sleep(20);
  }
  redis = { proc, exited };
}

async function stopRedis() {
  if (!redis) return;
  const r = redis;
  redis = null;
  r.proc.kill('SIGTERM');
  await Promise.race([r.exited, sleep(5000).then(() => r.proc.kill('SIGKILL'))]);
  await r.exited;
}

const cli = (...args) => execFileSync('redis-cli', ['-p', String(redisPort), ...args]).toString().trim();

let fake = null;

before(async () => {
  redisPort = await freePort();
  await startRedis();
  fake = await startFakeOpenAI();
});
after(async () => {
  await stopRedis();
  await fake?.close();
});
beforeEach(async () => {
  if (!redis) await startRedis();
  cli('FLUSHALL');
});

// ---- two instances on one database ----------------------------------------------------

const SANITIZER = /AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|runtime error:/;

// Both connections of an instance are up (see redis.test.mjs).
function redisUp(srv) {
  const lines = srv.logs();
  let warned = -1;
  lines.forEach((l, i) => { if (/"msg":"redis unreachable;/.test(l)) warned = i; });
  if (warned >= 0) return lines.slice(warned + 1).some((l) => l.includes('"msg":"redis connection restored"'));
  return ['commands', 'subscriptions'].every((c) => lines.some((l) => l.includes('"msg":"redis connected"') && l.includes(`"connection":"${c}"`)));
}

async function waitRedisUp(srv, { timeoutMs = 8000 } = {}) {
  const deadline = Date.now() + timeoutMs;
  while (!redisUp(srv)) {
    if (Date.now() > deadline) throw new Error(`instance not connected to Redis; last lines:\n${srv.logs().slice(-10).join('\n')}`);
    await sleep(25);
  }
}

// Start A then B on the same data (SQLite file, or the same PostgreSQL
// database), with or without Redis; run fn(a, b); stop both: exit 0, no
// sanitizer report.
async function withPair({ withRedis = true, env = {} }, fn) {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'coai-gwr-'));
  const full = {
    // principals stay cached for the whole test: without Redis an instance
    // must not learn of the other's spending from the store
    CHATOPENAII_GATEWAY_CACHE_MS: 600000,
    ...env,
    CHATOPENAII_REDIS_URL: withRedis ? `redis://127.0.0.1:${redisPort}/0` : null,
  };
  const servers = [];
  let err = null;
  try {
    for (const id of ['a', 'b']) {
      servers.push(await startServer({ upstream: fake, dataDir, env: { ...full, CHATOPENAII_INSTANCE_ID: `gwr-${id}-${process.pid}` } }));
    }
    if (withRedis) for (const s of servers) await waitRedisUp(s);
    await fn(servers[0], servers[1]);
  } catch (x) {
    err = x;
  }
  for (const s of servers) {
    let code;
    try {
      code = await s.stop('SIGTERM', { timeoutMs: 15000 });
    } catch (x) {
      err ??= x;
      continue;
    }
    const report = s.sanitizerReport();
    if (!err && report) err = new Error(`sanitizer report:\n${report.split('\n').slice(0, 40).join('\n')}`);
    if (!err && code !== 0) err = new Error(`server exited ${code}; last lines:\n${s.logs().slice(-15).join('\n')}`);
    if (!err && s.logs().some((l) => SANITIZER.test(l))) err = new Error('sanitizer output in the logs');
  }
  fs.rmSync(dataDir, { recursive: true, force: true });
  if (err) throw err;
}

// A user registered on A (the first one is the admin, who sets its own
// limits), with an API token; v1(srv) is a /v1 client with that token.
async function setup(a, { limits, token = {} } = {}) {
  const c = new Client(a.url);
  const r = await register(c, newEmail(), PW);
  const userId = r.json.user.id;
  if (limits) {
    const l = await c.put(`/api/v1/admin/users/${userId}/limits`, limits);
    assert.equal(l.status, 200, `PUT limits: ${l.text}`);
  }
  const t = await c.post('/api/v1/tokens', { name: 'shared', ...token });
  assert.equal(t.status, 201, `POST /api/v1/tokens: ${t.text}`);
  const secret = t.json.secret;
  return {
    userId,
    tokenId: t.json.token.id,
    v1: (srv) => new Client(srv.url, { csrf: false, headers: { authorization: `Bearer ${secret}` } }),
  };
}

// n chat completions alternating A, B, A, ... (a short pause after each, so
// that the answer's usage, charged after the reply, has reached Redis).
async function alternate(a, b, who, n, { start = 0, pauseMs = 30 } = {}) {
  const out = [];
  for (let i = start; i < start + n; i++) {
    const srv = i % 2 ? b : a;
    const res = await who.v1(srv).post('/v1/chat/completions', chatBody);
    res.on = i % 2 ? 'B' : 'A';
    out.push(res);
    await sleep(pauseMs);
  }
  return out;
}

function assertOk(res, what) {
  assert.equal(res.status, 200, `${what} (on ${res.on}): HTTP ${res.status}: ${res.text.slice(0, 400)}`);
  assert.equal(res.json?.usage?.total_tokens, PER_REQUEST, `${what}: usage`);
}

function assert429(res, code, what) {
  assert.equal(res.status, 429, `${what} (on ${res.on}): HTTP ${res.status}: ${res.text.slice(0, 400)}`);
  assert.equal(res.json?.error?.code, code, `${what}: ${res.text.slice(0, 400)}`);
}

function retryAfter(res, max, what) {
  const v = res.headers['retry-after'];
  assert.match(String(v), /^\d+$/, `${what}: Retry-After should be whole seconds, got ${v}`);
  const n = Number(v);
  assert.ok(n >= 1 && n <= max, `${what}: Retry-After ${n} not in 1..${max}`);
}

// ---- tests -------------------------------------------------------------------------------

for (const withRedis of [true, false]) {
  const mode = withRedis ? 'with Redis' : 'without Redis';

  test(`${mode}: user rpm 3, requests alternating A/B: ${withRedis ? 'the 4th is refused on B, with Retry-After and x-ratelimit-*' : 'all 4 get through'}`, () => withPair({ withRedis }, async (a, b) => {
    const u = await setup(a, { limits: { rpm: 3 } });
    const rs = await alternate(a, b, u, 4);
    rs.slice(0, 3).forEach((r, i) => {
      assertOk(r, `request ${i + 1}`);
      assert.equal(r.headers['x-ratelimit-limit-requests'], '3', `request ${i + 1}`);
      assert.ok(r.headers['x-ratelimit-reset-requests'], `request ${i + 1}: x-ratelimit-reset-requests`);
    });
    if (!withRedis) {
      assertOk(rs[3], 'request 4: each instance has its own bucket of 3');
      return;
    }
    // the remaining count is the shared one: 2, 1, 0 whichever instance answers
    assert.deepEqual(rs.slice(0, 3).map((r) => r.headers['x-ratelimit-remaining-requests']), ['2', '1', '0']);
    const before = fake.requests.length;
    assert429(rs[3], 'rate_limit_exceeded', 'request 4');
    retryAfter(rs[3], 20, 'request 4 (one request per 20 s)');
    assert.equal(rs[3].headers['x-ratelimit-limit-requests'], '3');
    assert.equal(rs[3].headers['x-ratelimit-remaining-requests'], '0');
    assert.ok(rs[3].headers['x-ratelimit-reset-requests'], 'x-ratelimit-reset-requests on the 429');
    const fifth = (await alternate(a, b, u, 1, { start: 4 }))[0];
    assert429(fifth, 'rate_limit_exceeded', 'request 5');
    assert.equal(fake.requests.length, before, 'a limited request is not forwarded');

    // keys carry no ids: coai:gw:u:<hash>, the spend coai:gw:spend:<hash>:<YYYYMM>
    const keys = cli('--scan', '--pattern', 'coai:gw:*').split('\n').filter(Boolean);
    assert.ok(keys.some((k) => /^coai:gw:u:[0-9a-f]{32}$/.test(k)), `keys: ${keys.join(' ')}`);
    const month = new Date().toISOString().slice(0, 7).replace('-', '');
    const spend = keys.find((k) => k.startsWith('coai:gw:spend:'));
    assert.match(spend ?? '', new RegExp(`^coai:gw:spend:[0-9a-f]{32}:${month}$`), `keys: ${keys.join(' ')}`);
    for (const k of keys) assert.ok(!k.includes(u.userId) && !k.includes(u.tokenId), `key ${k} holds an id`);
    assert.equal(Number(cli('HGET', spend, 's')), 3 * PER_REQUEST, 'the shared spend counts the 3 answers');
    const ttl = Number(cli('TTL', spend));
    assert.ok(ttl > 35 * 86400 && ttl <= 40 * 86400, `spend TTL ${ttl}`);
  }));

  test(`${mode}: token tpm 80 (${PER_REQUEST} tokens a request), alternating A/B: ${withRedis ? 'the 3rd is refused' : 'all 3 get through'}`, () => withPair({ withRedis }, async (a, b) => {
    assert.ok(PER_REQUEST > 40 && PER_REQUEST < 80, `the fixture uses ${PER_REQUEST} tokens`);
    const u = await setup(a, { token: { tpm: 80 } });
    const rs = await alternate(a, b, u, 3);
    rs.slice(0, 2).forEach((r, i) => {
      assertOk(r, `request ${i + 1}`);
      assert.equal(r.headers['x-ratelimit-limit-tokens'], '80', `request ${i + 1}: the token's (tighter) limit`);
    });
    if (!withRedis) {
      assertOk(rs[2], 'request 3: A has seen only its own answer');
      return;
    }
    assert429(rs[2], 'rate_limit_exceeded', 'request 3');
    assert.equal(rs[2].json.error.type, 'tokens');
    retryAfter(rs[2], 60, 'request 3');
    assert.equal(rs[2].headers['x-ratelimit-limit-tokens'], '80');
    assert.equal(rs[2].headers['x-ratelimit-remaining-tokens'], '0');
    assert.ok(cli('--scan', '--pattern', 'coai:gw:t:*').split('\n').some((k) => /^coai:gw:t:[0-9a-f]{32}$/.test(k)), 'a token bucket key');
  }));

  test(`${mode}: monthly token budget ${3 * PER_REQUEST - 10}, alternating A/B: ${withRedis ? 'spent through A and B, refused on B' : 'each instance counts alone'}`, () => withPair({ withRedis }, async (a, b) => {
    const u = await setup(a, { limits: { monthly_tokens: 3 * PER_REQUEST - 10 } });
    const rs = await alternate(a, b, u, 4);
    rs.slice(0, 3).forEach((r, i) => assertOk(r, `request ${i + 1}`));
    if (!withRedis) {
      assertOk(rs[3], 'request 4: B has counted at most 2 answers');
      return;
    }
    assert429(rs[3], 'budget_exceeded', 'request 4');
    assert.equal(rs[3].json.error.type, 'insufficient_quota');
    assert.equal(rs[3].headers['x-should-retry'], 'false');
    const fifth = (await alternate(a, b, u, 1, { start: 4 }))[0];
    assert429(fifth, 'budget_exceeded', 'request 5 (on A)');
  }));
}

test('with Redis: a spend counter lost (Redis emptied) is seeded again from what the instances counted', () => withPair({}, async (a, b) => {
  const u = await setup(a, { limits: { monthly_tokens: 3 * PER_REQUEST - 10 } });
  const rs = await alternate(a, b, u, 2);
  rs.forEach((r, i) => assertOk(r, `request ${i + 1}`));
  cli('FLUSHALL'); // as after a restart of Redis without persistence
  // A counted 1 answer itself and loaded none from the store; B loaded the
  // first from the store (or not yet) and counted its own: the counter comes
  // back with at least one answer, then A's and B's next answers are added.
  const more = await alternate(a, b, u, 3);
  assertOk(more[0], 'request 3');
  const spend = cli('--scan', '--pattern', 'coai:gw:spend:*').split('\n').filter(Boolean);
  assert.equal(spend.length, 1, `spend keys: ${spend}`);
  const s = Number(cli('HGET', spend[0], 's'));
  assert.ok(s >= 2 * PER_REQUEST, `spend after the flush and one more answer: ${s}`);
  // and the budget holds across instances again (request 4 or 5 is refused)
  assert.ok(more.slice(1).some((r) => r.status === 429 && r.json?.error?.code === 'budget_exceeded'),
    `statuses after the flush: ${more.map((r) => r.status)}`);
}));

test('with Redis stopped mid-test: requests still served (fail open, no 5xx, one warning), then shared again', () => withPair({}, async (a, b) => {
  const u = await setup(a, { limits: { rpm: 6, monthly_tokens: 1000000 }, token: { tpm: 1000000 } });
  const first = await alternate(a, b, u, 2);
  first.forEach((r, i) => assertOk(r, `request ${i + 1} (Redis up)`));
  await stopRedis();

  // Down: each instance admits from its own buckets (3 each fit 6), quickly.
  for (let i = 0; i < 6; i++) {
    const t0 = Date.now();
    const [r] = await alternate(a, b, u, 1, { start: i, pauseMs: 0 });
    assertOk(r, `request ${i + 1} with Redis down`);
    assert.ok(Date.now() - t0 < 2000, `request ${i + 1} took ${Date.now() - t0} ms with Redis down`);
  }
  // a streamed one too
  const st = await u.v1(b).post('/v1/chat/completions', { ...chatBody, stream: true });
  assert.equal(st.status, 200, `streamed with Redis down: ${st.text.slice(0, 300)}`);
  for (const s of [a, b]) {
    const warns = s.logs().filter((l) => l.includes('"msg":"gateway limits fall back to this instance'));
    assert.equal(warns.length, 1, `one gateway warning per outage:\n${warns.join('\n')}`);
    assert.ok(!s.logs().some((l) => /"status":"?=?5\d\d/.test(l)), 'no 5xx while Redis was down');
  }

  // Back (a fresh, empty Redis): reconnect, then a new user's rpm of 3 is
  // shared again.
  const from = [a.logs().length, b.logs().length];
  await startRedis();
  await a.waitForLog('"msg":"redis connection restored"', { timeoutMs: 8000, from: from[0] });
  await b.waitForLog('"msg":"redis connection restored"', { timeoutMs: 8000, from: from[1] });
  for (const s of [a, b]) await waitRedisUp(s);
  const v = await setup(a, { token: { rpm: 3 } });
  const rs = await alternate(a, b, v, 4);
  rs.slice(0, 3).forEach((r, i) => assertOk(r, `after reconnect, request ${i + 1}`));
  assert429(rs[3], 'rate_limit_exceeded', 'after reconnect, request 4 (shared again)');
  for (const s of [a, b]) {
    assert.ok(s.logs().some((l) => l.includes('"msg":"gateway limits are shared through redis again"')), 'the gateway says it shares again');
  }
}));
