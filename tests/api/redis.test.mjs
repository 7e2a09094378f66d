// redis.test.mjs - shared rate limits and lock-out through Redis
// (CHATOPENAII_REDIS_URL, issue #6): two instances on the same data, each
// request alternating between them.
//   - without Redis each instance counts alone (the limits are per process);
//   - with Redis the sign-in limit per IP, the per-user API limit and the
//     lock-out are shared: 429 with Retry-After after the shared limit;
//   - Redis stopped mid-test: requests still succeed (fail open to the
//     instance's own limits, one warning per outage), and sharing is back
//     once Redis is back (reconnect);
//   - Redis closing the server's connections (CLIENT KILL) or stalling
//     (DEBUG SLEEP) never crashes a request or keeps it waiting long.
// The suite starts its own redis-server (a free port, no persistence) and
// stops it at the end. Every server must exit 0 after SIGTERM with no
// sanitizer report.
//
//   COAI_BIN=$PWD/build-asan/server/chatopenaii node --test tests/api/redis.test.mjs

import { test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startServer, Client, register, freePort } from '../lib/harness.mjs';

const PW = 'correct horse battery';
const WRONG = 'wrong horse battery';
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
let seq = 0;
const newEmail = (p = 'r') => `${p}${++seq}-${process.pid}@example.com`;

// ---- redis-server ---------------------------------------------------------------------

let redisPort = 0;
let redis = null; // { proc, exited, output() }

async function startRedis() {
  const proc = spawn('redis-server', ['--port', String(redisPort), '--bind', '127.0.0.1',
    '--save', '', '--appendonly', 'no', '--enable-debug-command', 'yes'], { stdio: ['ignore', 'pipe', 'pipe'] });
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
  redis = { proc, exited, output: () => out };
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

before(async () => {
  redisPort = await freePort();
  await startRedis();
});
after(stopRedis);
beforeEach(async () => {
  if (!redis) await startRedis();
  cli('FLUSHALL');
});

// ---- two instances on one data directory ---------------------------------------------

const SANITIZER = /AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|runtime error:/;

// Start A then B on the same data directory (SQLite file, or the same
// PostgreSQL database), run fn(a, b), stop both: exit 0, no sanitizer report.
async function withPair({ env = {}, withRedis = true }, fn) {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'coai-redis-'));
  const full = { ...env, CHATOPENAII_REDIS_URL: withRedis ? `redis://127.0.0.1:${redisPort}/0` : null };
  const servers = [];
  let err = null;
  try {
    for (const id of ['a', 'b']) {
      servers.push(await startServer({ env: { ...full, CHATOPENAII_INSTANCE_ID: `redis-test-${id}-${process.pid}` }, dataDir }));
    }
    if (withRedis) {
      for (const s of servers) await waitRedisUp(s);
    }
    await fn(servers[0], servers[1]);
  } catch (x) {
    err = x;
  }
  for (const s of servers) {
    let code;
    try {
      code = await s.stop();
    } catch (x) {
      err ??= x;
      continue;
    }
    const report = s.sanitizerReport();
    if (!err && report) err = new Error(`sanitizer report:\n${report.split('\n').slice(0, 40).join('\n')}`);
    if (!err && code !== 0) err = new Error(`server exited ${code}; last lines:\n${s.logs().slice(-15).join('\n')}`);
  }
  fs.rmSync(dataDir, { recursive: true, force: true });
  if (err) throw err;
}

// Both connections of an instance are up: after its last "redis
// unreachable" warning it logged "redis connection restored" (both ready
// again); with no warning at all, "redis connected" for the command and the
// subscription connection.
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

function retryAfter(res, max, what) {
  const v = res.headers['retry-after'];
  assert.match(String(v), /^\d+$/, `${what}: Retry-After should be whole seconds, got ${v}`);
  const n = Number(v);
  assert.ok(n >= 1 && n <= max, `${what}: Retry-After ${n} not in 1..${max}`);
  return n;
}

function assertError(res, status, code, what) {
  assert.equal(res.status, status, `${what}: HTTP ${res.status}: ${res.text.slice(0, 400)}`);
  assert.equal(res.json?.error?.code, code, `${what}: error code: ${res.text.slice(0, 400)}`);
}

// n sign-in attempts (unknown emails: 401) alternating A, B, A, ...
async function alternateLogins(a, b, n) {
  const out = [];
  for (let i = 0; i < n; i++) {
    const srv = i % 2 ? b : a;
    out.push(await new Client(srv.url).post('/api/v1/auth/login', { email: newEmail('ghost'), password: WRONG }));
  }
  return out;
}

// ---- tests ------------------------------------------------------------------------------

test('without Redis: each instance has its own sign-in bucket (CHATOPENAII_RATE_AUTH=3, 6 attempts alternating: none refused)', () => withPair({
  env: { CHATOPENAII_RATE_AUTH: 3 }, withRedis: false,
}, async (a, b) => {
  const rs = await alternateLogins(a, b, 6);
  rs.forEach((r, i) => assertError(r, 401, 'invalid_credentials', `attempt ${i + 1}`));
  assertError((await alternateLogins(a, b, 1))[0], 429, 'rate_limited', 'attempt 4 on A alone');
}));

test('with Redis: the sign-in limit per IP is shared (CHATOPENAII_RATE_AUTH=3: attempts 4 to 6, alternating, get 429 with Retry-After)', () => withPair({
  env: { CHATOPENAII_RATE_AUTH: 3 },
}, async (a, b) => {
  const rs = await alternateLogins(a, b, 6);
  rs.slice(0, 3).forEach((r, i) => assertError(r, 401, 'invalid_credentials', `attempt ${i + 1}`));
  rs.slice(3).forEach((r, i) => {
    assertError(r, 429, 'rate_limited', `attempt ${i + 4} (on ${i % 2 ? 'A' : 'B'})`);
    retryAfter(r, 60, `attempt ${i + 4}`);
  });
  // Keys carry no address or e-mail: coai:rl:<kind>:<hash>, coai:lock:<kind>:<hash>.
  const keys = cli('--scan').split('\n').filter(Boolean);
  assert.ok(keys.some((k) => /^coai:rl:auth-ip:[0-9a-f]{32}$/.test(k)), `keys: ${keys.join(' ')}`);
  for (const k of keys) {
    assert.match(k, /^coai:(rl|lock):[a-z-]+:[0-9a-f]{32}$/, `key ${k}`);
    assert.doesNotMatch(k, /127\.0\.0\.1|example\.com|@/, `key ${k} leaks data`);
  }
}));

test('with Redis: the per-user API limit is shared (CHATOPENAII_RATE_API=5, one session used on both instances)', () => withPair({
  env: { CHATOPENAII_RATE_API: 5 },
}, async (a, b) => {
  const ca = new Client(a.url);
  await register(ca, newEmail('api'), PW);
  const cb = new Client(b.url);
  cb.cookies = ca.cookies; // the same session on instance B
  for (let i = 0; i < 5; i++) {
    const r = await (i % 2 ? cb : ca).get('/api/v1/me');
    assert.equal(r.status, 200, `request ${i + 1}: ${r.text.slice(0, 200)}`);
  }
  const sixth = await cb.get('/api/v1/me');
  assertError(sixth, 429, 'rate_limited', 'request 6 (on B)');
  retryAfter(sixth, 60, 'request 6');
  assertError(await ca.get('/api/v1/chats'), 429, 'rate_limited', 'request 7 (on A)');
}));

test('with Redis: 3 wrong passwords on A lock the account on B too; without Redis they do not', async () => {
  const env = { CHATOPENAII_LOCKOUT_FAILURES: 3, CHATOPENAII_LOCKOUT_MINUTES: 2 };
  for (const withRedis of [true, false]) {
    await withPair({ env, withRedis }, async (a, b) => {
      const email = newEmail('lock');
      await register(new Client(a.url), email, PW);
      for (let i = 0; i < 3; i++) {
        assertError(await new Client(a.url).post('/api/v1/auth/login', { email, password: WRONG }), 401,
          'invalid_credentials', `wrong password ${i + 1} on A`);
      }
      const onB = await new Client(b.url).post('/api/v1/auth/login', { email, password: PW });
      if (withRedis) {
        assertError(onB, 429, 'locked_out', 'the right password on B after 3 failures on A');
        retryAfter(onB, 2 * 60, 'locked on B');
        assertError(await new Client(a.url).post('/api/v1/auth/login', { email, password: PW }), 429, 'locked_out', 'and on A');
      } else {
        assert.equal(onB.status, 200, `without Redis B knows nothing of A's failures: ${onB.text.slice(0, 200)}`);
        assertError(await new Client(a.url).post('/api/v1/auth/login', { email, password: PW }), 429, 'locked_out', 'A itself is locked');
      }
    });
  }
});

test('Redis stopped mid-test: requests still succeed (fail open, one warning); Redis back: the limits are shared again', () => withPair({
  env: { CHATOPENAII_RATE_AUTH: 3, CHATOPENAII_LOCKOUT_FAILURES: 50 },
}, async (a, b) => {
  const ca = new Client(a.url);
  const email = newEmail('open');
  await register(ca, email, PW); // auth attempt 1 (shared)
  const cb = new Client(b.url);
  cb.cookies = ca.cookies;
  await stopRedis();

  // Down: each instance answers from its own limits, without errors.
  for (let i = 0; i < 4; i++) {
    const r = await (i % 2 ? cb : ca).get('/api/v1/me');
    assert.equal(r.status, 200, `GET /me with Redis down, request ${i + 1}: ${r.text.slice(0, 200)}`);
  }
  // Two sign-ins per instance fit each local bucket of 3.
  for (const [i, srv] of [a, b, a, b].entries()) {
    const t0 = Date.now();
    const r = await new Client(srv.url).post('/api/v1/auth/login', { email, password: PW });
    assert.equal(r.status, 200, `sign-in ${i + 1} with Redis down: ${r.text.slice(0, 200)}`);
    assert.ok(Date.now() - t0 < 2000, `sign-in ${i + 1} took ${Date.now() - t0} ms with Redis down`);
  }
  for (const s of [a, b]) {
    const warns = s.logs().filter((l) => /"msg":"redis unreachable;/.test(l));
    assert.equal(warns.length, 1, `one loop-side warning per outage:\n${warns.join('\n')}`);
    assert.ok(s.logs().filter((l) => /"msg":"redis unreachable from workers/.test(l)).length <= 1, 'one worker-side warning per outage');
    assert.ok(!s.logs().some((l) => /"status":5\d\d/.test(l)), 'no 5xx while Redis was down');
  }

  // Back (a fresh, empty Redis on the same port): reconnect, share again.
  const from = [a.logs().length, b.logs().length];
  await startRedis();
  await a.waitForLog('"msg":"redis connection restored"', { timeoutMs: 8000, from: from[0] });
  await b.waitForLog('"msg":"redis connection restored"', { timeoutMs: 8000, from: from[1] });
  for (const s of [a, b]) await waitRedisUp(s);
  const rs = await alternateLogins(a, b, 4);
  rs.slice(0, 3).forEach((r, i) => assertError(r, 401, 'invalid_credentials', `after reconnect, attempt ${i + 1}`));
  assertError(rs[3], 429, 'rate_limited', 'after reconnect, attempt 4 (shared again)');
}));

test('Redis closing the connections (CLIENT KILL) or stalling (DEBUG SLEEP): no crash, no 5xx, bounded waits, then shared again', () => withPair({
  env: { CHATOPENAII_RATE_AUTH: 1000, CHATOPENAII_RATE_API: 100000 },
}, async (a, b) => {
  const ca = new Client(a.url);
  const email = newEmail('kill');
  await register(ca, email, PW);
  const cb = new Client(b.url);
  cb.cookies = ca.cookies;
  for (let round = 0; round < 5; round++) {
    cli('CLIENT', 'KILL', 'TYPE', 'normal');
    cli('CLIENT', 'KILL', 'TYPE', 'pubsub');
    const rs = await Promise.all([
      ca.get('/api/v1/me'), cb.get('/api/v1/me'),
      new Client(a.url).post('/api/v1/auth/login', { email, password: PW }),
      new Client(b.url).post('/api/v1/auth/login', { email: newEmail('ghost'), password: WRONG }),
    ]);
    assert.deepEqual(rs.map((r) => r.status), [200, 200, 200, 401], `round ${round + 1}`);
    await sleep(round * 60);
  }
  // Redis stalls for 3 s: answers come from the local limits within the
  // command timeouts (500 ms on the loop, 200 ms per worker call), not after
  // the stall.
  const sleeper = spawn('redis-cli', ['-p', String(redisPort), 'DEBUG', 'SLEEP', '3'], { stdio: 'ignore' });
  const sleeperDone = new Promise((r) => sleeper.once('exit', r));
  await sleep(100);
  const t0 = Date.now();
  const stalled = await Promise.all([
    new Client(a.url).post('/api/v1/auth/login', { email, password: PW }),
    cb.get('/api/v1/me'),
  ]);
  const took = Date.now() - t0;
  await sleeperDone;
  assert.deepEqual(stalled.map((r) => r.status), [200, 200], 'answers while Redis stalls');
  assert.ok(took < 2500, `requests waited ${took} ms for a stalled Redis`);

  // Everything reconnects; sharing works again (a fresh bucket key space).
  for (const s of [a, b]) await waitRedisUp(s);
  await sleep(1100); // workers skip Redis for 1 s after a failed call
  cli('FLUSHALL');
  const limited = await withLimit(a, b);
  assert.equal(limited, true, 'shared limits after the connections were killed');
}));

// One more shared-limit probe with the per-user API limit: the sessions of
// one user on both instances exhaust a bucket of 5 together.
async function withLimit(a, b) {
  const email = newEmail('probe');
  const ca = new Client(a.url);
  await register(ca, email, PW);
  const cb = new Client(b.url);
  cb.cookies = ca.cookies;
  // 100000 per minute cannot be exhausted here; use the shared lock-out
  // instead: failures on A are visible on B.
  for (let i = 0; i < 5; i++) await new Client(a.url).post('/api/v1/auth/login', { email, password: WRONG });
  const r = await new Client(b.url).post('/api/v1/auth/login', { email, password: PW });
  return r.status === 429 && r.json?.error?.code === 'locked_out';
}
