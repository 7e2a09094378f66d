// hardening.test.mjs - production hardening, end to end against the real
// server binary:
//   - security headers (CSP, nosniff, Referrer-Policy, Permissions-Policy,
//     frame-ancestors) on every kind of response; HSTS only over TLS or when a
//     trusted proxy says the client used https;
//   - CORS: nothing allowed by default; an explicit allow-list with correct
//     preflights, credentials and CSRF; invalid lists refused at start;
//   - rate limits (sign-in/registration per IP, API and generation per user)
//     and sign-in lock-out per account (any email) and per IP, with 429 and
//     Retry-After;
//   - trusted proxies: X-Forwarded-For decides the client IP only when the
//     peer is a trusted proxy;
//   - TLS termination with a SIGHUP certificate reload that keeps open
//     connections;
//   - Prometheus /metrics (loopback or bearer token), no secrets or message
//     text in metrics or logs;
//   - Sentry envelopes for provider failures and crashes, nothing without a
//     DSN, no secrets in them;
//   - environment profiles (production refuses unsafe configurations).
// Every test has its own server(s); each server must stop cleanly (exit 0
// after SIGTERM) with no sanitizer report, except the one crashed on purpose.
//
//   COAI_BIN=$PWD/build-asan/server/chatopenaii COAI_SUITE=api node --test \
//     --test-reporter=./tests/lib/reporter.mjs tests/api/hardening.test.mjs

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { startServer, Client, register, login, freePort, defaultBinary, pgDatabaseFor } from '../lib/harness.mjs';
import { repoRoot } from '../lib/fixtures.mjs';
import { SseParser } from '../lib/sse.mjs';
import { startFakeOpenAI } from '../upstream/fake-openai.mjs';
import { withEnv, Follower, shortReport, deltas, summary } from './turn-helpers.mjs';

const PW = 'correct horse battery';
const WRONG = 'wrong horse battery';
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
let seq = 0;
const newEmail = (p = 'u') => `${p}${++seq}-${process.pid}@example.com`;
const hex64 = () => crypto.randomBytes(32).toString('hex');
const SANITIZER = /AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|runtime error:/;

// ---- servers -------------------------------------------------------------------------

// Run fn(server); then SIGTERM: exit 0 and no sanitizer report.
async function withServer(opts, fn) {
  const srv = await startServer(opts);
  let err = null;
  try {
    await fn(srv);
  } catch (x) {
    err = x;
  }
  let code;
  let stopErr = null;
  try {
    code = await srv.stop('SIGTERM', { timeoutMs: 15000 });
  } catch (x) {
    stopErr = x;
  }
  const rep = srv.sanitizerReport();
  if (err) {
    if (rep && err instanceof Error) err.message += `\n(sanitizer report in server output:\n${shortReport(rep)})`;
    if (err instanceof Error) err.message += `\n(data dir kept: ${srv.dataDir})`;
    throw err;
  }
  if (stopErr) throw stopErr;
  assert.equal(rep, null, `sanitizer report in server output:\n${shortReport(rep)}`);
  assert.equal(code, 0, `exit code after SIGTERM; stderr tail:\n${srv.logs('stderr').slice(-15).join('\n')}`);
  srv.removeDataDir();
}

async function withFake(fn) {
  const fake = await startFakeOpenAI();
  try {
    return await fn(fake);
  } finally {
    await fake.close();
  }
}

// Processes spawned here directly (not through the harness) die with us.
const spawned = new Set();
process.on('exit', () => {
  for (const p of spawned) {
    try { p.kill('SIGKILL'); } catch { /* gone */ }
  }
});

// `chatopenaii serve` with the harness's environment rules, without waiting
// for an HTTP /healthz (TLS servers and servers expected to fail).
function spawnServe(env, { dataDir, port } = {}) {
  const fullEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('CHATOPENAII_')));
  Object.assign(fullEnv, {
    CHATOPENAII_LISTEN: `127.0.0.1:${port}`,
    CHATOPENAII_DATA_DIR: dataDir,
    CHATOPENAII_LOG_LEVEL: 'debug',
    CHATOPENAII_RATE_AUTH: '100000',
    CHATOPENAII_RATE_GENERATE: '100000',
    CHATOPENAII_RATE_API: '1000000',
  });
  for (const [k, v] of Object.entries(env)) {
    if (v === null || v === undefined) delete fullEnv[k];
    else fullEnv[k] = String(v);
  }
  const pg = pgDatabaseFor(dataDir);
  if (pg && !fullEnv.CHATOPENAII_DATABASE_URL) fullEnv.CHATOPENAII_DATABASE_URL = pg;
  const proc = spawn(defaultBinary, ['serve'], { cwd: repoRoot, env: fullEnv, stdio: ['ignore', 'pipe', 'pipe'] });
  spawned.add(proc);
  const lines = [];
  const waiters = new Set();
  let stdout = '';
  let stderr = '';
  const onData = (stream) => (d) => {
    const s = d.toString('utf8');
    if (stream === 'stdout') stdout += s; else stderr += s;
    for (const l of s.split('\n')) if (l) lines.push(l);
    for (const w of waiters) w();
  };
  proc.stdout.on('data', onData('stdout'));
  proc.stderr.on('data', onData('stderr'));
  const exited = new Promise((resolve) => proc.once('exit', (code, signal) => { spawned.delete(proc); resolve({ code, signal }); }));
  const closed = new Promise((resolve) => proc.once('close', resolve));
  return {
    proc,
    port,
    dataDir,
    exited,
    closed,
    lines,
    output: () => `${stderr}${stdout}`,
    alive: () => proc.exitCode === null && proc.signalCode === null,
    waitForLog(re, { timeoutMs = 5000, from = 0 } = {}) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const hit = lines.slice(from).find((l) => re.test(l));
          if (hit) {
            waiters.delete(check);
            clearTimeout(t);
            resolve(hit);
          }
        };
        const t = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`no log line matching ${re} within ${timeoutMs} ms; last lines:\n${lines.slice(-15).join('\n')}`));
        }, timeoutMs);
        waiters.add(check);
        check();
      });
    },
    async stop(signal = 'SIGTERM', timeoutMs = 15000) {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      const r = await Promise.race([exited, sleep(timeoutMs).then(() => 'timeout')]);
      if (r === 'timeout') {
        proc.kill('SIGKILL');
        await closed;
        throw new Error(`server did not exit within ${timeoutMs} ms of ${signal}; output:\n${stderr.slice(-3000)}`);
      }
      await closed;
      return r;
    },
  };
}

// serve with a configuration that must be refused: exits non-zero quickly.
async function runExpectingFailure(env, { timeoutMs = 10000 } = {}) {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'coai-hard-fail-'));
  const port = await freePort();
  const s = spawnServe(env, { dataDir, port });
  const started = Date.now();
  const r = await Promise.race([s.exited, sleep(timeoutMs).then(() => null)]);
  if (!r) s.proc.kill('SIGKILL');
  await s.closed;
  fs.rmSync(dataDir, { recursive: true, force: true });
  return { code: r?.code ?? null, signal: r?.signal ?? null, timedOut: !r, output: s.output(), ms: Date.now() - started };
}

function assertRefused(r, names, what) {
  assert.equal(r.timedOut, false, `${what}: the server did not exit (it started?); output:\n${r.output}`);
  assert.equal(r.signal, null, `${what}: killed by ${r.signal}; output:\n${r.output}`);
  assert.notEqual(r.code, 0, `${what}: exit code 0; output:\n${r.output}`);
  for (const n of [].concat(names)) assert.ok(r.output.includes(n), `${what}: the error does not name ${n}:\n${r.output}`);
  const at = r.output.search(SANITIZER);
  assert.ok(at < 0, `${what}: exited ${r.code} naming the variable, but with a sanitizer report:\n${r.output.slice(0, at).split('\n').slice(-4).join('\n')}\n${shortReport(r.output.slice(at), 30)}`);
  assert.doesNotMatch(r.output, /"msg":"listening"/, `${what}: the server started listening:\n${r.output}`);
}

// ---- HTTP helpers --------------------------------------------------------------------

const SAFE_REFERRER = ['no-referrer', 'same-origin', 'strict-origin', 'strict-origin-when-cross-origin'];

function parseCsp(v) {
  const m = new Map();
  for (const part of String(v).split(';')) {
    const toks = part.trim().split(/\s+/).filter(Boolean);
    if (toks.length) m.set(toks[0].toLowerCase(), toks.slice(1));
  }
  return m;
}

function assertSecurityHeaders(res, what, { hsts = false } = {}) {
  const h = res.headers;
  const csp = h['content-security-policy'];
  assert.ok(typeof csp === 'string' && csp.length > 0, `${what}: no Content-Security-Policy (headers ${JSON.stringify(h)})`);
  const d = parseCsp(csp);
  assert.ok(d.has('script-src'), `${what}: CSP has no script-src: ${csp}`);
  const script = d.get('script-src');
  assert.ok(script.includes("'self'"), `${what}: script-src lacks 'self': ${csp}`);
  assert.ok(!script.includes("'unsafe-inline'"), `${what}: script-src allows 'unsafe-inline': ${csp}`);
  assert.ok(!script.includes("'unsafe-eval'"), `${what}: script-src allows 'unsafe-eval': ${csp}`);
  assert.deepEqual(d.get('frame-ancestors'), ["'none'"], `${what}: frame-ancestors: ${csp}`);
  assert.deepEqual(d.get('object-src'), ["'none'"], `${what}: object-src: ${csp}`);
  assert.equal(h['x-content-type-options'], 'nosniff', `${what}: X-Content-Type-Options`);
  assert.ok(SAFE_REFERRER.includes(h['referrer-policy']), `${what}: Referrer-Policy ${h['referrer-policy']}`);
  const pp = h['permissions-policy'] ?? '';
  const mic = pp.split(',').map((s) => s.trim()).filter((s) => s.startsWith('microphone='));
  assert.deepEqual(mic, ['microphone=(self)'], `${what}: Permissions-Policy should allow the microphone for self only: ${pp}`);
  const sts = h['strict-transport-security'];
  if (hsts) {
    const m = /max-age=(\d+)/.exec(sts ?? '');
    assert.ok(m && Number(m[1]) >= 86400, `${what}: Strict-Transport-Security expected with max-age >= 1 day, got ${sts}`);
  } else {
    assert.equal(sts, undefined, `${what}: Strict-Transport-Security over plain HTTP: ${sts}`);
  }
}

const corsHeaders = (res) => Object.keys(res.headers).filter((k) => k.startsWith('access-control-'));
const listHeader = (v) => String(v ?? '').split(',').map((s) => s.trim().toLowerCase()).filter(Boolean);

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

const loginBody = (email, password) => ({ email, password });

// ---- metrics -------------------------------------------------------------------------

function parseMetrics(text) {
  const samples = [];
  const types = new Map();
  for (const line of text.split('\n')) {
    if (!line) continue;
    let m = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (m) { types.set(m[1], m[2]); continue; }
    if (line.startsWith('#')) continue;
    m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(m, `malformed metrics line: ${line}`);
    const labels = {};
    if (m[2]) {
      for (const lm of m[2].matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[lm[1]] = lm[2];
    }
    samples.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return {
    types,
    samples,
    find(name, want = {}) {
      return samples.filter((s) => s.name === name && Object.entries(want).every(([k, v]) => s.labels[k] === v));
    },
    value(name, want = {}) {
      const hits = this.find(name, want);
      return hits.length === 1 ? hits[0].value : hits.length === 0 ? undefined : NaN;
    },
  };
}

async function getMetrics(client, headers = {}) {
  const r = await client.get('/metrics', { headers: { accept: 'text/plain', ...headers } });
  assert.equal(r.status, 200, `GET /metrics: ${r.text.slice(0, 300)}`);
  assert.match(r.headers['content-type'] ?? '', /^text\/plain/);
  return { text: r.text, m: parseMetrics(r.text) };
}

async function poll(fn, pred, { timeoutMs = 5000, what = 'condition' } = {}) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    last = await fn();
    if (pred(last)) return last;
    if (Date.now() > deadline) throw new Error(`${what} not reached within ${timeoutMs} ms; last: ${typeof last === 'string' ? last.slice(0, 500) : JSON.stringify(last)?.slice(0, 500)}`);
    await sleep(50);
  }
}

// Follow a turn's event stream to its end; returns the events.
async function followToEnd(client, eventsUrl, timeoutMs = 20000) {
  const f = new Follower(client, eventsUrl, { timeoutMs });
  const events = await f.finished;
  if (f.error) throw f.error;
  assert.ok(events.some((e) => e.event === 'done'), `turn stream should end with "done": ${summary(events)}`);
  return events;
}

// ---- a local Sentry endpoint -----------------------------------------------------------

async function startSentrySink() {
  const received = [];
  const waiters = new Set();
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      received.push({ method: req.method, url: req.url, headers: req.headers, body: Buffer.concat(chunks).toString('utf8') });
      for (const w of waiters) w();
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{"id":"00000000000000000000000000000000"}');
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  return {
    port,
    received,
    dsn: (key = 'publickey', project = 42) => `http://${key}@127.0.0.1:${port}/${project}`,
    // Resolves with the first received request whose parsed envelope satisfies pred.
    waitFor(pred, { timeoutMs = 10000, what = 'envelope' } = {}) {
      return new Promise((resolve, reject) => {
        const check = () => {
          for (const r of received) {
            let env = null;
            try { env = splitEnvelope(r.body); } catch { env = null; }
            if (env && pred(env, r)) {
              waiters.delete(check);
              clearTimeout(t);
              resolve({ req: r, env });
              return;
            }
          }
        };
        const t = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`${what} not received within ${timeoutMs} ms; received ${received.length}: ${received.map((r) => r.body.slice(0, 300)).join(' || ')}`));
        }, timeoutMs);
        waiters.add(check);
        check();
      });
    },
    close: () => new Promise((resolve) => { server.closeAllConnections?.(); server.close(() => resolve()); }),
  };
}

// An envelope of one event: header line, item header line, event JSON line.
function splitEnvelope(body) {
  const lines = body.split('\n');
  if (lines.at(-1) === '') lines.pop();
  if (lines.length !== 3) throw new Error(`envelope should have 3 lines, has ${lines.length}: ${body.slice(0, 500)}`);
  return { header: JSON.parse(lines[0]), item: JSON.parse(lines[1]), event: JSON.parse(lines[2]), eventLine: lines[2] };
}

function checkEnvelope(req, env, sinkPort, what) {
  assert.equal(req.method, 'POST', `${what}: method`);
  const u = new URL(req.url, 'http://x');
  assert.equal(u.pathname, '/api/42/envelope/', `${what}: path`);
  assert.equal(u.searchParams.get('sentry_key'), 'publickey', `${what}: sentry_key`);
  assert.match(env.header.event_id, /^[0-9a-f]{32}$/, `${what}: envelope event_id`);
  if (env.header.dsn !== undefined) assert.equal(env.header.dsn, `http://publickey@127.0.0.1:${sinkPort}/42`, `${what}: envelope dsn`);
  assert.equal(env.item.type, 'event', `${what}: item type`);
  assert.equal(env.item.length, Buffer.byteLength(env.eventLine), `${what}: item length`);
  assert.match(env.event.event_id, /^[0-9a-f]{32}$/, `${what}: event_id`);
  const msg = typeof env.event.message === 'string' ? env.event.message : env.event.message?.formatted;
  assert.ok(typeof msg === 'string' && msg.length > 0, `${what}: event message: ${env.eventLine}`);
  return msg;
}

// ---- TLS -----------------------------------------------------------------------------------

function makeCert(dir, name) {
  const cert = path.join(dir, `${name}.crt`);
  const key = path.join(dir, `${name}.key`);
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=localhost',
    '-keyout', key, '-out', cert], { stdio: 'pipe' });
  return { cert, key, fp: new crypto.X509Certificate(fs.readFileSync(cert)).fingerprint256 };
}

// One HTTPS request; resolves with the status, headers, body, the server
// certificate's SHA-256 fingerprint and whether a kept-alive socket was reused.
function hreq(port, p, { method = 'GET', headers = {}, json, agent = false, timeoutMs = 10000 } = {}) {
  return new Promise((resolve, reject) => {
    const h = { ...headers };
    let body;
    if (json !== undefined) {
      body = JSON.stringify(json);
      h['content-type'] = 'application/json';
      h['content-length'] = Buffer.byteLength(body);
    }
    const req = https.request({
      host: '127.0.0.1', port, path: p, method, headers: h, agent, rejectUnauthorized: false, servername: 'localhost',
    }, (res) => {
      const fp = res.socket.getPeerCertificate?.()?.fingerprint256;
      const localPort = res.socket.localPort;
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let parsed = null;
        try { parsed = JSON.parse(text); } catch { parsed = null; }
        resolve({ status: res.statusCode, headers: res.headers, text, json: parsed, fp, reused: req.reusedSocket, localPort });
      });
      res.on('error', reject);
    });
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`${method} ${p}: no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end(body);
  });
}

// Stop a TLS test server: a test failure (err) is rethrown with the server's
// last lines; otherwise it must exit 0 after SIGTERM with no sanitizer report.
async function finishTlsServer(s, err, dirs) {
  let stopped = null;
  let stopErr = null;
  try { stopped = await s.stop('SIGTERM'); } catch (x) { stopErr = x; }
  const out = s.output();
  if (err) {
    err.message += `\n(server output tail:\n${out.split('\n').slice(-15).join('\n')})`;
    throw err;
  }
  if (stopErr) throw stopErr;
  assert.doesNotMatch(out, SANITIZER, `sanitizer report:\n${shortReport(out.slice(out.search(SANITIZER)))}`);
  assert.deepEqual(stopped, { code: 0, signal: null }, 'the TLS server exits 0 after SIGTERM');
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
}

function plainHttpGet(port, p = '/healthz') {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: p, agent: false }, (res) => {
      res.resume();
      resolve(res.statusCode);
    });
    req.setTimeout(3000, () => req.destroy(new Error('plain HTTP: no answer within 3 s')));
    req.on('error', reject);
  });
}

// =====================================================================================
// Security headers
// =====================================================================================

test('security headers on every kind of response (API JSON, errors, static, SSE, /v1, 404); no HSTS over plain HTTP', () => withFake((fake) => withServer({ upstream: fake }, async (srv) => {
  const anon = new Client(srv.url);
  const check = (what, r, status) => {
    assert.equal(r.status, status, `${what}: HTTP ${r.status}: ${String(r.text).slice(0, 300)}`);
    assertSecurityHeaders(r, what);
  };
  check('API JSON (GET /api/v1/config)', await anon.get('/api/v1/config'), 200);
  check('GET /healthz', await anon.get('/healthz'), 200);
  check('API error 401 (GET /api/v1/me signed out)', await anon.get('/api/v1/me'), 401);
  check('API error 403 csrf_failed', await anon.post('/api/v1/auth/login', loginBody('x@example.com', PW), { csrf: false }), 403);
  check('API error 400 invalid_json', await anon.request('POST', '/api/v1/auth/login', { body: '{', headers: { 'content-type': 'application/json' } }), 400);
  check('API 404', await anon.get('/api/v1/no-such-endpoint'), 404);
  check('API 405', await anon.request('DELETE', '/api/v1/config'), 405);
  check('/v1 gateway error 401 (no token)', await anon.get('/v1/models'), 401);
  check('static 404', await anon.get('/assets/no-such-file.js'), 404);
  check('GET /metrics', await anon.get('/metrics'), 200);
  check('preflight OPTIONS', await anon.request('OPTIONS', '/api/v1/chats', {
    csrf: false, headers: { origin: 'https://elsewhere.example', 'access-control-request-method': 'POST' },
  }), 204);

  // The web app itself: index.html and a client-side route, and it satisfies
  // the CSP (no inline scripts, scripts from our own origin).
  const index = await anon.get('/', { headers: { accept: 'text/html' } });
  check('static index.html', index, 200);
  assert.match(index.headers['content-type'] ?? '', /^text\/html/);
  check('client-side route (index.html)', await anon.get('/c/some-chat', { headers: { accept: 'text/html' } }), 200);
  const scripts = [...index.text.matchAll(/<script\b([^>]*)>([\s\S]*?)<\/script>/gi)];
  assert.ok(scripts.length > 0, 'index.html loads a script');
  for (const [tag, attrs, body] of scripts) {
    assert.match(attrs, /\bsrc="\/[^/]/, `index.html script is not from our own origin: ${tag.slice(0, 200)}`);
    assert.equal(body.trim(), '', `index.html has an inline script (the CSP forbids it): ${tag.slice(0, 200)}`);
  }
  assert.doesNotMatch(index.text, /\son[a-z]+\s*=/i, 'index.html has inline event handlers');
  const js = /<script\b[^>]*\bsrc="([^"]+)"/i.exec(index.text)[1];
  check(`static asset ${js}`, await anon.get(js), 200);

  // An SSE stream (a turn's events).
  const c = new Client(srv.url);
  await register(c, newEmail('hdr'), PW);
  const chat = await c.post('/api/v1/chats', {});
  check('API JSON 201 (POST /api/v1/chats)', chat, 201);
  const sent = await c.post(`/api/v1/chats/${chat.json.chat.id}/messages`, { content: 'hello', model: 'gpt-4o' });
  check('API JSON 202 (POST messages)', sent, 202);
  const { res } = await c.open('GET', sent.json.turn.events_url, { headers: { accept: 'text/event-stream' } });
  assert.equal(res.statusCode, 200);
  assert.match(res.headers['content-type'] ?? '', /^text\/event-stream/);
  assertSecurityHeaders({ headers: res.headers }, 'SSE stream');
  const parser = new SseParser();
  const events = [];
  for await (const chunk of res) events.push(...parser.feed(chunk));
  assert.equal(events.at(-1)?.event, 'done', `SSE stream: ${summary(events)}`);

  // A client cannot turn HSTS on by claiming https when no proxy is trusted.
  const spoof = await anon.get('/api/v1/config', { headers: { 'x-forwarded-proto': 'https' } });
  assertSecurityHeaders(spoof, 'X-Forwarded-Proto: https from an untrusted peer', { hsts: false });
})));

test('HSTS when a trusted proxy (CHATOPENAII_TRUSTED_PROXIES=127.0.0.1) forwards X-Forwarded-Proto: https, not otherwise', () => withServer({
  env: { CHATOPENAII_TRUSTED_PROXIES: '127.0.0.1' },
}, async (srv) => {
  const c = new Client(srv.url);
  const https_ = { 'x-forwarded-proto': 'https' };
  assertSecurityHeaders(await c.get('/api/v1/config', { headers: https_ }), 'API JSON via https proxy', { hsts: true });
  assertSecurityHeaders(await c.get('/api/v1/me', { headers: https_ }), 'API error via https proxy', { hsts: true });
  assertSecurityHeaders(await c.get('/', { headers: { ...https_, accept: 'text/html' } }), 'index.html via https proxy', { hsts: true });
  assertSecurityHeaders(await c.get('/v1/models', { headers: https_ }), '/v1 error via https proxy', { hsts: true });
  assertSecurityHeaders(await c.get('/api/v1/config'), 'no X-Forwarded-Proto', { hsts: false });
  assertSecurityHeaders(await c.get('/api/v1/config', { headers: { 'x-forwarded-proto': 'http' } }), 'X-Forwarded-Proto: http', { hsts: false });
}));

// =====================================================================================
// CORS
// =====================================================================================

const APP = 'https://app.example.com';
const EVIL = 'https://evil.example';

// A preflight; also returns how many times each response header was sent
// (a browser refuses an Access-Control-Allow-Origin sent more than once).
async function preflight(c, origin, p = '/api/v1/chats', method = 'POST') {
  const { res } = await c.open('OPTIONS', p, {
    csrf: false,
    headers: { origin, 'access-control-request-method': method, 'access-control-request-headers': 'content-type, x-requested-with' },
  });
  const chunks = [];
  for await (const ch of res) chunks.push(ch);
  return { status: res.statusCode, headers: res.headers, text: Buffer.concat(chunks).toString('utf8'), counts: headerCounts(res.rawHeaders) };
}

function headerCounts(raw) {
  const n = {};
  for (let i = 0; i < raw.length; i += 2) {
    const k = raw[i].toLowerCase();
    n[k] = (n[k] ?? 0) + 1;
  }
  return n;
}

function assertSentOnce(res, names, what) {
  for (const h of names) assert.equal(res.counts[h] ?? 0, 1, `${what}: ${h} sent ${res.counts[h] ?? 0} times (must be exactly once; a browser rejects several values): ${JSON.stringify(res.headers[h])}`);
}

test('CORS by default: no origin is allowed, preflights grant nothing, cross-origin writes are refused', () => withServer({}, async (srv) => {
  const c = new Client(srv.url);
  for (const origin of [APP, EVIL, 'null', 'http://localhost:5173']) {
    const pre = await preflight(c, origin);
    assert.ok(pre.status < 500, `preflight from ${origin}: HTTP ${pre.status}`);
    assert.deepEqual(corsHeaders(pre), [], `preflight from ${origin} must grant nothing: ${JSON.stringify(pre.headers)}`);
    const get = await c.get('/api/v1/config', { headers: { origin } });
    assert.equal(get.status, 200);
    assert.deepEqual(corsHeaders(get), [], `GET with Origin ${origin}: ${JSON.stringify(get.headers)}`);
    const err = await c.get('/api/v1/me', { headers: { origin } });
    assert.deepEqual(corsHeaders(err), [], `error answer with Origin ${origin}`);
    const v1 = await c.get('/v1/models', { headers: { origin } });
    assert.deepEqual(corsHeaders(v1), [], `/v1 answer with Origin ${origin}`);
    const post = await c.post('/api/v1/auth/register', { email: newEmail('cors'), password: PW }, { headers: { origin } });
    assertError(post, 403, 'csrf_failed', `register with Origin ${origin}`);
    assert.deepEqual(corsHeaders(post), []);
  }
  // SIGHUP without TLS is harmless.
  srv.proc.kill('SIGHUP');
  await sleep(200);
  assert.equal((await c.get('/healthz')).status, 200, 'the server survives SIGHUP without TLS');
}));

test('CORS allow-list (CHATOPENAII_CORS_ORIGINS): a preflight from a listed origin gets 204 with one Allow-Origin, credentials, methods and headers; unlisted origins get nothing', () => withServer({
  env: { CHATOPENAII_CORS_ORIGINS: `${APP}, https://admin.example.com:8443` },
}, async (srv) => {
  const c = new Client(srv.url, { headers: { origin: APP } });
  for (const origin of [APP, 'https://admin.example.com:8443']) {
    const pre = await preflight(c, origin);
    assert.equal(pre.status, 204, `preflight from ${origin}: ${pre.text}`);
    assertSentOnce(pre, ['access-control-allow-origin', 'access-control-allow-credentials', 'access-control-allow-methods', 'access-control-allow-headers'], `preflight from ${origin}`);
    assert.equal(pre.headers['access-control-allow-origin'], origin, `preflight ACAO: ${JSON.stringify(pre.headers)}`);
    assert.equal(pre.headers['access-control-allow-credentials'], 'true');
    const methods = listHeader(pre.headers['access-control-allow-methods']);
    for (const m of ['get', 'post', 'put', 'patch', 'delete']) assert.ok(methods.includes(m), `Allow-Methods lacks ${m}: ${methods}`);
    const hdrs = listHeader(pre.headers['access-control-allow-headers']);
    for (const h of ['x-requested-with', 'content-type']) assert.ok(hdrs.includes(h), `Allow-Headers lacks ${h}: ${hdrs}`);
    assert.ok(listHeader(pre.headers.vary).includes('origin'), `preflight Vary: ${pre.headers.vary}`);
  }
  for (const origin of [EVIL, 'https://app.example.com.evil.example', 'http://app.example.com', 'https://app.example.com:444', 'null']) {
    const pre = await preflight(c, origin);
    assert.deepEqual(corsHeaders(pre), [], `preflight from unlisted ${origin}: ${JSON.stringify(pre.headers)}`);
  }
}));

test('CORS allow-list: actual requests from a listed origin get ACAO, credentials and Vary: Origin; CSRF passes for it and fails for others', () => withServer({
  env: { CHATOPENAII_CORS_ORIGINS: `${APP}, https://admin.example.com:8443` },
}, async (srv) => {
  const c = new Client(srv.url, { headers: { origin: APP } });
  for (const origin of [EVIL, 'https://app.example.com.evil.example', 'http://app.example.com', 'https://app.example.com:444', 'null']) {
    const get = await c.get('/api/v1/config', { headers: { origin } });
    assert.deepEqual(corsHeaders(get), [], `GET from unlisted ${origin}`);
  }
  // Actual requests from the listed origin: ACAO, credentials, Vary: Origin.
  const { res: raw } = await c.open('GET', '/api/v1/config');
  raw.resume();
  assertSentOnce({ counts: headerCounts(raw.rawHeaders), headers: raw.headers }, ['access-control-allow-origin', 'access-control-allow-credentials'], `GET from ${APP}`);
  const cfg = await c.get('/api/v1/config');
  assert.equal(cfg.status, 200);
  assert.equal(cfg.headers['access-control-allow-origin'], APP);
  assert.equal(cfg.headers['access-control-allow-credentials'], 'true');
  assert.ok(listHeader(cfg.headers.vary).includes('origin'), `Vary: ${cfg.headers.vary}`);
  const err = await c.get('/api/v1/me');
  assert.equal(err.status, 401);
  assert.equal(err.headers['access-control-allow-origin'], APP, 'error answers carry ACAO too (the app can read them)');

  // State-changing requests: the listed origin with X-Requested-With passes CSRF.
  const email = newEmail('cors');
  // (The Client puts its own origin on writes; name the app's explicitly.)
  const fromApp = { headers: { origin: APP } };
  const reg = await c.post('/api/v1/auth/register', { email, password: PW }, fromApp);
  assert.equal(reg.status, 201, `register from ${APP}: ${reg.text}`);
  assert.equal(reg.headers['access-control-allow-origin'], APP);
  assert.equal(reg.headers['access-control-allow-credentials'], 'true');
  const chat = await c.post('/api/v1/chats', { title: 'from the app' }, fromApp);
  assert.equal(chat.status, 201, `POST /api/v1/chats from ${APP}: ${chat.text}`);
  assert.equal(chat.headers['access-control-allow-origin'], APP);
  // ... but not without the custom header,
  assertError(await c.post('/api/v1/chats', {}, { csrf: false, ...fromApp }), 403, 'csrf_failed', `${APP} without X-Requested-With`);
  // ... and never from an unlisted origin.
  const evil = await c.post('/api/v1/chats', {}, { headers: { origin: EVIL } });
  assertError(evil, 403, 'csrf_failed', `POST from ${EVIL}`);
  assert.deepEqual(corsHeaders(evil), []);
  assertError(await c.post('/api/v1/auth/login', loginBody(email, PW), { headers: { origin: EVIL } }), 403, 'csrf_failed', `login from ${EVIL}`);
}));

test('CORS: a wildcard, a path or a missing scheme in CHATOPENAII_CORS_ORIGINS stops the server at start', async () => {
  const bad = ['*', `${APP}, *`, `${APP}/path`, `${APP}/`, 'app.example.com'];
  const results = await Promise.all(bad.map((v) => runExpectingFailure({ CHATOPENAII_CORS_ORIGINS: v })));
  bad.forEach((v, i) => assertRefused(results[i], 'CHATOPENAII_CORS_ORIGINS', `CHATOPENAII_CORS_ORIGINS=${v}`));
});

test('CORS: a wildcard subdomain pattern (https://*.example.com) is refused at start as well', async () => {
  const r = await runExpectingFailure({ CHATOPENAII_CORS_ORIGINS: 'https://*.example.com' });
  assertRefused(r, 'CHATOPENAII_CORS_ORIGINS', 'CHATOPENAII_CORS_ORIGINS=https://*.example.com');
});

// =====================================================================================
// Rate limits and lock-out
// =====================================================================================

test('CHATOPENAII_RATE_AUTH=3: the 4th sign-in/registration from one IP within a minute gets 429 rate_limited with Retry-After', () => withServer({
  env: { CHATOPENAII_RATE_AUTH: 3 },
}, async (srv) => {
  const c = new Client(srv.url);
  const email = newEmail('rl');
  const reg = await c.post('/api/v1/auth/register', { email, password: PW });
  assert.equal(reg.status, 201, reg.text);
  const sc = String(reg.headers['set-cookie'] ?? '');
  assert.match(sc, /HttpOnly/i, `session cookie: ${sc}`);
  assert.doesNotMatch(sc, /;\s*Secure/i, `development does not mark the cookie Secure by default: ${sc}`);
  assertError(await c.post('/api/v1/auth/login', loginBody(email, WRONG)), 401, 'invalid_credentials', 'attempt 2');
  assert.equal((await c.post('/api/v1/auth/login', loginBody(email, PW))).status, 200, 'attempt 3');
  const fourth = await c.post('/api/v1/auth/login', loginBody(email, PW));
  assertError(fourth, 429, 'rate_limited', 'attempt 4 (login)');
  retryAfter(fourth, 60, 'attempt 4');
  const other = new Client(srv.url);
  const reg2 = await other.post('/api/v1/auth/register', { email: newEmail('rl'), password: PW });
  assertError(reg2, 429, 'rate_limited', 'attempt 5 (register, another client from the same IP)');
  retryAfter(reg2, 60, 'attempt 5');
  // Other routes are not affected by the sign-in limit.
  assert.equal((await c.get('/api/v1/me')).status, 200);
}));

test('CHATOPENAII_RATE_API=5: a signed-in user\'s 6th request within a minute gets 429; other users are not affected', () => withServer({
  env: { CHATOPENAII_RATE_API: 5 },
}, async (srv) => {
  const a = new Client(srv.url);
  await register(a, newEmail('api'), PW);
  const paths = ['/api/v1/me', '/api/v1/chats', '/api/v1/sessions', '/api/v1/me', '/api/v1/chats'];
  for (const [i, p] of paths.entries()) assert.equal((await a.get(p)).status, 200, `request ${i + 1} (${p})`);
  const sixth = await a.get('/api/v1/me');
  assertError(sixth, 429, 'rate_limited', 'request 6');
  retryAfter(sixth, 60, 'request 6');
  assertError(await a.post('/api/v1/chats', {}), 429, 'rate_limited', 'request 7 (POST)');
  const b = new Client(srv.url);
  await register(b, newEmail('api'), PW);
  assert.equal((await b.get('/api/v1/me')).status, 200, 'another user has a bucket of their own');
  assert.equal((await a.get('/api/v1/config')).status, 200, 'the public config is not a per-user API request');
}));

test('CHATOPENAII_RATE_GENERATE=2: the third answer requested within a minute (message, regenerate or edit) gets 429', () => withEnv({
  env: { CHATOPENAII_RATE_GENERATE: 2 },
}, async (e) => {
  const chatId = await e.newChat();
  const r1 = await e.send(chatId, 'first question');
  await e.run(r1.json);
  const r2 = await e.send(chatId, 'second question');
  await e.run(r2.json);
  const third = await e.c.post(`/api/v1/chats/${chatId}/messages`, { content: 'third question', model: 'gpt-4o' });
  assertError(third, 429, 'rate_limited', 'third message');
  retryAfter(third, 60, 'third message');
  assertError(await e.c.post(`/api/v1/chats/${chatId}/messages/${r2.json.assistant_message.id}/regenerate`, {}), 429, 'rate_limited', 'regenerate');
  assertError(await e.c.post(`/api/v1/chats/${chatId}/messages/${r2.json.user_message.id}/edit`, { content: 'edited', model: 'gpt-4o' }), 429, 'rate_limited', 'edit');
  assert.equal(e.answerRequests().length, 2, 'the provider saw exactly two answer requests');
  assert.equal((await e.c.get(`/api/v1/chats/${chatId}`)).status, 200, 'reading is not limited by the generation limit');
}));

test('lock-out (CHATOPENAII_LOCKOUT_FAILURES=3): per account, also for unknown emails with the same answer, and per IP after 4x failures', () => withServer({
  env: { CHATOPENAII_LOCKOUT_FAILURES: 3, CHATOPENAII_LOCKOUT_MINUTES: 2 },
}, async (srv) => {
  const c = new Client(srv.url);
  const login_ = (email, password) => c.post('/api/v1/auth/login', loginBody(email, password));
  const A = newEmail('lock');
  await register(new Client(srv.url), A, PW);
  const wrongA = [];
  for (let i = 0; i < 3; i++) {
    const r = await login_(A, WRONG);
    assertError(r, 401, 'invalid_credentials', `wrong password ${i + 1}`);
    wrongA.push(r.json);
  }
  const lockedA = await login_(A, PW);
  assertError(lockedA, 429, 'locked_out', 'the right password after 3 failures');
  retryAfter(lockedA, 2 * 60, 'locked account');
  assertError(await login_(A.toUpperCase(), PW), 429, 'locked_out', 'the same account spelled in upper case');

  // An email with no account: the same answers, then the same lock-out.
  const ghost = newEmail('ghost');
  for (let i = 0; i < 3; i++) {
    const r = await login_(ghost, WRONG);
    assertError(r, 401, 'invalid_credentials', `unknown email, attempt ${i + 1}`);
    assert.deepEqual(r.json, wrongA[i], 'an unknown email gets exactly the answer a wrong password gets');
  }
  const lockedGhost = await login_(ghost, PW);
  assertError(lockedGhost, 429, 'locked_out', 'unknown email after 3 failures');
  retryAfter(lockedGhost, 2 * 60, 'locked unknown email');
  assert.deepEqual(Object.keys(lockedGhost.json.error).sort(), Object.keys(lockedA.json.error).sort());
  assert.deepEqual(lockedGhost.json, lockedA.json, 'a locked unknown email looks exactly like a locked account');

  // Per IP: 6 failures so far; other accounts stay usable until 12 (4 x 3).
  const [B, C, D, E] = [newEmail('lockb'), newEmail('lockc'), newEmail('lockd'), newEmail('locke')];
  for (const u of [B, C, D, E]) await register(new Client(srv.url), u, PW);
  for (const [u, n] of [[B, 2], [C, 2], [D, 1]]) {
    for (let i = 0; i < n; i++) assertError(await login_(u, WRONG), 401, 'invalid_credentials', `${u} wrong ${i + 1}`);
  }
  // 11 failures from this IP: B (2 failures of its own) still signs in.
  assert.equal((await login_(B, PW)).status, 200, 'after 11 failures from the IP another account is not locked');
  assertError(await login_(D, WRONG), 401, 'invalid_credentials', 'failure 12');
  const ipLocked = await login_(C, PW);
  assertError(ipLocked, 429, 'locked_out', 'after 12 failures from the IP the right password of another account');
  retryAfter(ipLocked, 2 * 60, 'IP lock-out');
  assertError(await login_(E, PW), 429, 'locked_out', 'an account with no failures at all, from the locked IP');
}));

// =====================================================================================
// Trusted proxies
// =====================================================================================

async function currentSession(c) {
  const r = await c.get('/api/v1/sessions');
  assert.equal(r.status, 200, r.text);
  const cur = r.json.data.find((s) => s.current);
  assert.ok(cur, `a current session in ${r.text}`);
  return { cur, all: r.json.data };
}

test('trusted proxy (CHATOPENAII_TRUSTED_PROXIES=127.0.0.1): X-Forwarded-For is the client IP for sessions, the sign-in limit and /metrics', () => withServer({
  env: { CHATOPENAII_TRUSTED_PROXIES: '127.0.0.1', CHATOPENAII_RATE_AUTH: 3 },
}, async (srv) => {
  const via = (xff) => new Client(srv.url, { headers: { 'x-forwarded-for': xff } });
  const a = via('203.0.113.7');
  const email = newEmail('proxy');
  await register(a, email, PW); // 203.0.113.7: 1
  await login(a, email, PW); // 2
  const { cur, all } = await currentSession(a);
  assert.equal(cur.ip, '203.0.113.7', `session ip: ${JSON.stringify(all)}`);
  assert.ok(all.every((s) => s.ip === '203.0.113.7'), `every session from the forwarded address: ${JSON.stringify(all)}`);
  assertError(await a.post('/api/v1/auth/login', loginBody(email, WRONG)), 401, 'invalid_credentials', '203.0.113.7 attempt 3');
  const limited = await a.post('/api/v1/auth/login', loginBody(email, PW));
  assertError(limited, 429, 'rate_limited', '203.0.113.7 attempt 4');
  retryAfter(limited, 60, '203.0.113.7 attempt 4');
  // A client cannot escape by prepending its own X-Forwarded-For entry: the
  // proxy appends the real address, which is the one that counts.
  assertError(await via('198.18.0.1, 203.0.113.7').post('/api/v1/auth/login', loginBody(email, PW)), 429, 'rate_limited', 'spoofed left-most entry');

  // Another forwarded address has its own bucket.
  const b = via('198.51.100.9');
  assert.equal((await b.post('/api/v1/auth/login', loginBody(email, PW))).status, 200, '198.51.100.9 is not limited');
  assert.equal((await currentSession(b)).cur.ip, '198.51.100.9');
  // A chain through our own proxy: the right-most address that is not a trusted proxy.
  const chain = via('192.0.2.44, 127.0.0.1');
  await login(chain, email, PW);
  assert.equal((await currentSession(chain)).cur.ip, '192.0.2.44');
  // The proxy itself without X-Forwarded-For: its own address and bucket.
  const direct = new Client(srv.url);
  await login(direct, email, PW);
  assert.equal((await currentSession(direct)).cur.ip, '127.0.0.1');

  // /metrics is for loopback clients: a forwarded internet client is refused.
  const m = await a.get('/metrics');
  assert.equal(m.status, 403, `/metrics for a forwarded client 203.0.113.7: ${m.text.slice(0, 200)}`);
  assert.doesNotMatch(m.text, /coai_http_requests_total/);
  assert.equal((await direct.get('/metrics')).status, 200);
}));

test('without trusted proxies X-Forwarded-For is ignored: sessions show 127.0.0.1 and all attempts share one sign-in bucket', () => withServer({
  env: { CHATOPENAII_RATE_AUTH: 3 },
}, async (srv) => {
  const via = (xff) => new Client(srv.url, { headers: { 'x-forwarded-for': xff } });
  const a = via('203.0.113.7');
  const email = newEmail('noproxy');
  await register(a, email, PW);
  assert.equal((await currentSession(a)).cur.ip, '127.0.0.1');
  assert.equal((await via('198.51.100.9').post('/api/v1/auth/login', loginBody(email, PW))).status, 200);
  assert.equal((await via('192.0.2.1').post('/api/v1/auth/login', loginBody(email, PW))).status, 200);
  const fourth = await via('192.0.2.2').post('/api/v1/auth/login', loginBody(email, PW));
  assertError(fourth, 429, 'rate_limited', 'a 4th attempt with yet another X-Forwarded-For');
  assert.equal((await a.get('/metrics')).status, 200, 'the loopback peer may read /metrics whatever X-Forwarded-For says');
}));

// =====================================================================================
// TLS
// =====================================================================================

test('TLS: a certificate without a key, or a missing certificate file, stops the server at start naming the variable', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'coai-tls-bad-'));
  try {
    const A = makeCert(dir, 'a');
    const [noKey, badCert] = await Promise.all([
      runExpectingFailure({ CHATOPENAII_TLS_CERT: A.cert }),
      runExpectingFailure({ CHATOPENAII_TLS_CERT: path.join(dir, 'missing.crt'), CHATOPENAII_TLS_KEY: A.key }),
    ]);
    assertRefused(noKey, 'CHATOPENAII_TLS_KEY', 'CHATOPENAII_TLS_CERT without CHATOPENAII_TLS_KEY');
    assertRefused(badCert, 'CHATOPENAII_TLS_CERT', 'a missing certificate file');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('TLS: HTTPS with HSTS, no plain HTTP; SIGHUP loads a new certificate for new connections while open ones keep working; a broken one is refused', () => withFake(async (fake) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'coai-tls-'));
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'coai-tls-data-'));
  const A = makeCert(dir, 'a');
  const B = makeCert(dir, 'b');
  assert.notEqual(A.fp, B.fp);
  const live = { cert: path.join(dir, 'live.crt'), key: path.join(dir, 'live.key') };
  fs.copyFileSync(A.cert, live.cert);
  fs.copyFileSync(A.key, live.key);

  const port = await freePort();
  const s = spawnServe({
    CHATOPENAII_TLS_CERT: live.cert, CHATOPENAII_TLS_KEY: live.key,
    CHATOPENAII_PROVIDER_BASE_URL: fake.baseURL, CHATOPENAII_PROVIDER_API_KEY: 'sk-test',
  }, { dataDir, port });
  const agent = new https.Agent({ keepAlive: true, maxSockets: 1 });
  let err = null;
  try {
    const deadline = Date.now() + 15000;
    for (;;) {
      assert.ok(s.alive(), `the TLS server exited at start:\n${s.output()}`);
      const ok = await hreq(port, '/healthz', { timeoutMs: 1000 }).then((r) => r.status === 200, () => false);
      if (ok) break;
      assert.ok(Date.now() < deadline, `the TLS server did not answer https /healthz within 15 s:\n${s.output()}`);
      await sleep(50);
    }
    const h1 = await hreq(port, '/healthz', { agent });
    assert.equal(h1.status, 200);
    assert.equal(h1.fp, A.fp, 'the served certificate is the configured one');
    assertSecurityHeaders(h1, 'https /healthz', { hsts: true });
    assertSecurityHeaders(await hreq(port, '/api/v1/config'), 'https API JSON', { hsts: true });
    await assert.rejects(plainHttpGet(port), 'plain HTTP to the TLS port must not get an HTTP answer');

    // A signed-in user with a slow answer streaming over TLS.
    const xrw = { 'x-requested-with': 'chatopenaii' };
    const reg = await hreq(port, '/api/v1/auth/register', { method: 'POST', headers: xrw, json: { email: newEmail('tls'), password: PW } });
    assert.equal(reg.status, 201, reg.text);
    const cookie = String(reg.headers['set-cookie'][0]).split(';')[0];
    const auth = { ...xrw, cookie };
    const chat = await hreq(port, '/api/v1/chats', { method: 'POST', headers: auth, json: {} });
    assert.equal(chat.status, 201, chat.text);
    const msg = await hreq(port, `/api/v1/chats/${chat.json.chat.id}/messages`, { method: 'POST', headers: auth, json: { content: 'stream over tls', model: 'slow:60:50' } });
    assert.equal(msg.status, 202, msg.text);
    const sse = { events: [], fp: null, status: 0, ended: false, error: null };
    const sseDone = new Promise((resolve) => {
      const req = https.request({
        host: '127.0.0.1', port, path: msg.json.turn.events_url, headers: { cookie, accept: 'text/event-stream' },
        agent: false, rejectUnauthorized: false, servername: 'localhost',
      }, (res) => {
        sse.res = res;
        sse.status = res.statusCode;
        sse.fp = res.socket.getPeerCertificate().fingerprint256;
        const parser = new SseParser();
        res.on('data', (ch) => sse.events.push(...parser.feed(ch)));
        res.on('end', () => { sse.ended = true; resolve(); });
        res.on('error', (e) => { if (!sse.closing) sse.error = e; resolve(); });
      });
      sse.req = req;
      req.setTimeout(30000, () => req.destroy(new Error('SSE over TLS: timeout')));
      req.on('error', (e) => { if (!sse.closing) sse.error = e; resolve(); });
      req.on('close', () => resolve());
      req.end();
    });
    await poll(async () => deltas(sse.events).length, (n) => n >= 2 || sse.ended, { timeoutMs: 10000, what: 'first deltas over TLS' });
    assert.equal(sse.status, 200);
    assert.equal(sse.fp, A.fp);

    // Replace the files with certificate B and reload.
    fs.copyFileSync(B.cert, live.cert);
    fs.copyFileSync(B.key, live.key);
    const from = s.lines.length;
    const deltasBefore = deltas(sse.events).length;
    s.proc.kill('SIGHUP');
    await s.waitForLog(/TLS certificate reloaded/, { from });
    const h2 = await hreq(port, '/healthz');
    assert.equal(h2.status, 200);
    assert.equal(h2.fp, B.fp, 'a new connection after SIGHUP sees the new certificate');
    const h3 = await hreq(port, '/healthz', { agent });
    assert.equal(h3.status, 200, 'the kept-alive connection opened before the reload still works');
    assert.equal(h3.reused, true, 'the request went over the kept-alive connection');
    assert.equal(h3.localPort, h1.localPort, 'same TCP connection as before the reload');
    assert.equal(h3.fp, A.fp, 'the old connection keeps its certificate');
    // The stream opened before the reload keeps delivering after it, to its end.
    await poll(async () => deltas(sse.events).length, (n) => n > deltasBefore || sse.ended,
      { timeoutMs: 10000, what: 'deltas after the reload on the stream opened before it' });
    assert.equal(sse.error, null, `the SSE stream opened before the reload broke: ${sse.error} (events so far: ${summary(sse.events)})`);
    assert.ok(deltas(sse.events).length > deltasBefore, 'the stream kept delivering after the reload');
    assert.equal(sse.fp, A.fp, 'the open stream keeps the old certificate');
    await poll(async () => sse.ended, (e) => e, { timeoutMs: 15000, what: `the end of the stream opened before the reload (events: ${summary(sse.events)})` });
    assert.equal(sse.events.at(-1)?.event, 'done', `the stream ends with done: ${summary(sse.events)}`);
    await sseDone;

    // A broken certificate file: the reload fails, the old (B) certificate stays.
    fs.writeFileSync(live.cert, '-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n');
    const from2 = s.lines.length;
    s.proc.kill('SIGHUP');
    await s.waitForLog(/TLS certificate reload failed/, { from: from2 });
    assert.ok(s.alive(), 'the server stays up after a failed reload');
    const h4 = await hreq(port, '/healthz');
    assert.equal(h4.status, 200);
    assert.equal(h4.fp, B.fp, 'the last good certificate is still served');
  } catch (x) {
    err = x;
  }
  agent.destroy();
  await finishTlsServer(s, err, [dir, dataDir]);
}));

// libevent 2.1's OpenSSL bufferevent runs its write callback deferred; evhttp
// took a stream as sent while its last frames were still queued and closed
// the connection without them (about 1 stream in 4 lost its `done` event and
// the chunked terminator). Many short streams, each on its own connection
// (Connection: close), must all arrive whole: turn events and /v1 streams.
// The fake provider runs in its own process here: in this one its timing
// hid the bug.
async function withFakeProcess(fn) {
  const proc = spawn(process.execPath, [path.join(repoRoot, 'tests/upstream/fake-openai.mjs'), '--port', '0'], { stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    const line = await new Promise((resolve, reject) => {
      let buf = '';
      proc.stdout.on('data', (d) => { buf += d; if (buf.includes('\n')) resolve(buf.split('\n')[0]); });
      proc.on('exit', (code) => reject(new Error(`the fake provider exited (${code})`)));
    });
    return await fn(JSON.parse(line));
  } finally {
    proc.kill('SIGKILL');
  }
}

test('TLS: every live turn event stream and every /v1 stream arrives whole (done event, chunk terminator), 16 of each', () => withFakeProcess(async (fake) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'coai-tls-'));
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'coai-tls-data-'));
  const A = makeCert(dir, 'a');
  const port = await freePort();
  const s = spawnServe({
    CHATOPENAII_TLS_CERT: A.cert, CHATOPENAII_TLS_KEY: A.key,
    CHATOPENAII_PROVIDER_BASE_URL: fake.baseURL, CHATOPENAII_PROVIDER_API_KEY: 'sk-test',
  }, { dataDir, port });
  // A raw HTTPS GET/POST that resolves with the whole body and whether the
  // chunked reply ended properly (res.complete) before the socket closed.
  const whole = (p, { method = 'GET', headers = {}, json } = {}) => new Promise((resolve, reject) => {
    const h = { ...headers, connection: 'close' };
    const body = json === undefined ? undefined : JSON.stringify(json);
    if (body) { h['content-type'] = 'application/json'; h['content-length'] = Buffer.byteLength(body); }
    const req = https.request({ host: '127.0.0.1', port, path: p, method, headers: h, agent: false, rejectUnauthorized: false }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('close', () => resolve({ status: res.statusCode, complete: res.complete, text: Buffer.concat(chunks).toString('utf8') }));
    });
    req.setTimeout(10000, () => req.destroy(new Error(`${p}: stalled for 10 s`)));
    req.on('error', reject);
    req.end(body);
  });
  let err = null;
  try {
    const deadline = Date.now() + 15000;
    for (;;) {
      assert.ok(s.alive(), `the TLS server exited at start:\n${s.output()}`);
      if (await hreq(port, '/healthz', { timeoutMs: 1000 }).then((r) => r.status === 200, () => false)) break;
      assert.ok(Date.now() < deadline, `the TLS server did not answer within 15 s:\n${s.output()}`);
      await sleep(50);
    }
    const xrw = { 'x-requested-with': 'chatopenaii' };
    const reg = await hreq(port, '/api/v1/auth/register', { method: 'POST', headers: xrw, json: { email: newEmail('tlsw'), password: PW } });
    assert.equal(reg.status, 201, reg.text);
    const auth = { ...xrw, cookie: String(reg.headers['set-cookie'][0]).split(';')[0] };
    const chat = await hreq(port, '/api/v1/chats', { method: 'POST', headers: auth, json: {} });
    assert.equal(chat.status, 201, chat.text);
    for (let i = 0; i < 16; i++) {
      const msg = await hreq(port, `/api/v1/chats/${chat.json.chat.id}/messages`, { method: 'POST', headers: auth, json: { content: `tls ${i}`, model: 'slow:10:12' } });
      assert.equal(msg.status, 202, msg.text);
      const r = await whole(msg.json.turn.events_url, { headers: { cookie: auth.cookie, accept: 'text/event-stream' } });
      const events = new SseParser().feed(Buffer.from(r.text));
      assert.equal(r.status, 200);
      assert.ok(r.complete, `stream ${i}: the chunked reply was cut before its terminator (events: ${summary(events)})`);
      assert.equal(events.at(-1)?.event, 'done', `stream ${i} ends with done: ${summary(events)}`);
      assert.equal(deltas(events).length, 12, `stream ${i}: every delta arrived`);
    }
    const tok = await hreq(port, '/api/v1/tokens', { method: 'POST', headers: auth, json: { name: 'tls' } });
    assert.equal(tok.status, 201, tok.text);
    for (let i = 0; i < 16; i++) {
      const r = await whole('/v1/chat/completions', {
        method: 'POST', headers: { authorization: `Bearer ${tok.json.secret}` },
        json: { model: 'gpt-4o', stream: true, messages: [{ role: 'user', content: 'hi' }] },
      });
      assert.equal(r.status, 200, r.text.slice(0, 300));
      assert.ok(r.complete, `/v1 stream ${i}: the chunked reply was cut before its terminator: ...${r.text.slice(-200)}`);
      assert.ok(r.text.endsWith('data: [DONE]\n\n'), `/v1 stream ${i} ends with [DONE]: ...${r.text.slice(-200)}`);
    }
  } catch (x) {
    err = x;
  }
  await finishTlsServer(s, err, [dir, dataDir]);
}));

// =====================================================================================
// Metrics and logs
// =====================================================================================

test('/metrics from loopback: requests by route and status, latency histogram, active turns and subscribers, tokens, provider errors; no secrets or message text in metrics or info logs', () => withFake(async (fake) => {
  const SECRET = {
    providerKey: 'sk-PROVKEY-hardening-7d41c9e2',
    masterKey: hex64(),
    password: 'pw-HARDEN-3319-correct-horse',
    text: 'quokka-MSGTEXT-5123 what do zebras dream of',
  };
  await withServer({
    upstream: fake,
    env: { CHATOPENAII_LOG_LEVEL: 'info', CHATOPENAII_PROVIDER_API_KEY: SECRET.providerKey, CHATOPENAII_MASTER_KEY: SECRET.masterKey },
  }, async (srv) => {
    const c = new Client(srv.url);
    const email = newEmail('metrics');
    await register(c, email, SECRET.password);
    const cookie = c.cookies.get('coai_session');
    assert.ok(cookie && cookie.length >= 20, 'a session cookie');
    const ids = [];
    for (let i = 0; i < 3; i++) {
      const r = await c.get('/api/v1/chats');
      assert.equal(r.status, 200);
      ids.push(r.headers['x-request-id']);
    }
    const created = await c.post('/api/v1/chats', {});
    assert.equal(created.status, 201);
    const chatId = created.json.chat.id;

    let { text, m } = await getMetrics(c);
    assert.equal(m.types.get('coai_http_requests_total'), 'counter');
    assert.equal(m.types.get('coai_http_request_duration_seconds'), 'histogram');
    assert.equal(m.types.get('coai_active_turns'), 'gauge');
    assert.equal(m.types.get('coai_sse_subscribers'), 'gauge');
    assert.equal(m.value('coai_http_requests_total', { route: '/api/v1/chats', method: 'GET', status: '200' }), 3, text);
    assert.equal(m.value('coai_http_requests_total', { route: '/api/v1/chats', method: 'POST', status: '201' }), 1, text);
    const buckets = m.find('coai_http_request_duration_seconds_bucket', { route: '/api/v1/chats', method: 'GET' });
    assert.ok(buckets.length >= 2, `histogram buckets for GET /api/v1/chats:\n${text}`);
    for (let i = 1; i < buckets.length; i++) assert.ok(buckets[i].value >= buckets[i - 1].value, 'cumulative buckets');
    assert.equal(buckets.find((b) => b.labels.le === '+Inf')?.value, 3);
    assert.equal(m.value('coai_http_request_duration_seconds_count', { route: '/api/v1/chats', method: 'GET' }), 3);
    assert.ok(m.value('coai_http_request_duration_seconds_sum', { route: '/api/v1/chats', method: 'GET' }) > 0);
    assert.equal(m.value('coai_active_turns'), 0);
    assert.equal(m.value('coai_sse_subscribers'), 0);
    const tokens0 = m.value('coai_tokens_total', { kind: 'completion' }) ?? 0;

    // A slow answer: one active turn, one subscriber while it streams.
    const sent = await c.post(`/api/v1/chats/${chatId}/messages`, { content: SECRET.text, model: 'slow:40:60' });
    assert.equal(sent.status, 202, sent.text);
    const f = new Follower(c, sent.json.turn.events_url, { timeoutMs: 20000 });
    await f.waitDeltas(2);
    ({ text, m } = await getMetrics(c));
    assert.equal(m.value('coai_active_turns'), 1, `during the answer:\n${text}`);
    assert.equal(m.value('coai_sse_subscribers'), 1, `during the answer:\n${text}`);
    await f.finished;
    assert.equal(f.error, null);
    ({ text, m } = await poll(() => getMetrics(c), (x) => x.m.value('coai_active_turns') === 0 && x.m.value('coai_sse_subscribers') === 0,
      { what: 'no active turns or subscribers after the answer' }));
    assert.ok(m.value('coai_tokens_total', { kind: 'completion' }) > tokens0, `completion tokens counted:\n${text}`);
    assert.ok(m.value('coai_tokens_total', { kind: 'prompt' }) > 0, `prompt tokens counted:\n${text}`);

    // A provider failure (401 from the provider).
    const chat2 = (await c.post('/api/v1/chats', {})).json.chat.id;
    const bad = await c.post(`/api/v1/chats/${chat2}/messages`, { content: `${SECRET.text} again`, model: 'fault:401' });
    assert.equal(bad.status, 202, bad.text);
    await followToEnd(c, bad.json.turn.events_url);
    ({ text, m } = await poll(() => getMetrics(c), (x) => x.m.value('coai_provider_errors_total', { code: 'provider_auth' }) === 1,
      { what: 'coai_provider_errors_total{code="provider_auth"} 1' }));
    assert.equal(m.types.get('coai_provider_errors_total'), 'counter');
    assert.ok(m.value('coai_http_requests_total', { route: '/api/v1/chats/{id}/messages', method: 'POST', status: '202' }) >= 2,
      `message posts are counted under the route pattern:\n${text}`);

    // Nothing private in the metrics (route patterns, not ids).
    for (const [what, s] of Object.entries({ ...SECRET, cookie, email, chatId })) {
      assert.ok(!text.includes(s), `/metrics contains the ${what}`);
    }
    // Logs at the default level: structured JSON with request ids, no secrets.
    const lines = srv.logs();
    const parsed = lines.map((l) => { try { return JSON.parse(l); } catch { return null; } });
    parsed.forEach((o, i) => assert.ok(o && o.ts && o.level && o.msg, `log line is not structured JSON: ${lines[i]}`));
    for (const id of ids) {
      const hit = parsed.find((o) => o.msg === 'request' && o.request_id === id);
      assert.ok(hit, `no access log line with request_id ${id}`);
      assert.equal(hit.path, '/api/v1/chats');
      assert.equal(hit.status, 200);
    }
    assert.ok(!parsed.some((o) => o.level === 'debug'), 'no debug lines at CHATOPENAII_LOG_LEVEL=info');
    const all = lines.join('\n');
    for (const [what, s] of Object.entries({ ...SECRET, cookie })) assert.ok(!all.includes(s), `the server log contains the ${what}`);
    assert.ok(!all.includes('MSGTEXT'), 'the server log contains (part of) the message text');
  });
}));

test('/metrics with CHATOPENAII_METRICS_TOKEN: 403 without the bearer token or with a wrong one, 200 with it', () => withServer({
  env: { CHATOPENAII_METRICS_TOKEN: 't' },
}, async (srv) => {
  const c = new Client(srv.url);
  for (const auth of [undefined, 'Bearer wrong', 'Bearer tt', 'Bearer ', 'Basic dDp0', 't']) {
    const r = await c.get('/metrics', { headers: auth ? { authorization: auth } : {} });
    assert.equal(r.status, 403, `Authorization: ${auth}: HTTP ${r.status}`);
    assert.doesNotMatch(r.text, /coai_/);
  }
  const ok = await c.get('/metrics', { headers: { authorization: 'Bearer t' } });
  assert.equal(ok.status, 200);
  assert.match(ok.text, /^# HELP coai_http_requests_total/m);
  assert.match(ok.text, /^coai_uptime_seconds \d+$/m);
}));

// =====================================================================================
// Sentry
// =====================================================================================

// A provider failure in a chat turn (the user's own connection to the fake,
// fault:401) and a gateway provider_unreachable (another user, server default
// base URL pointing at a closed port). Returns the secrets involved.
async function sentryScenario(srv, fake, secret) {
  const a = new Client(srv.url);
  await register(a, newEmail('sentry'), secret.password);
  const put = await a.put('/api/v1/connection', { base_url: fake.baseURL, api_key: secret.ownKey });
  assert.equal(put.status, 200, `PUT /api/v1/connection: ${put.text}`);
  const chatId = (await a.post('/api/v1/chats', {})).json.chat.id;
  const sent = await a.post(`/api/v1/chats/${chatId}/messages`, { content: secret.text, model: 'fault:401' });
  assert.equal(sent.status, 202, sent.text);
  const events = await followToEnd(a, sent.json.turn.events_url);
  const err = events.find((e) => e.event === 'error');
  assert.ok(err && JSON.parse(err.data).code === 'provider_auth', `the turn failed with provider_auth: ${summary(events)}`);

  const b = new Client(srv.url);
  await register(b, newEmail('sentry'), secret.password);
  const tok = await b.post('/api/v1/tokens', { name: 'sentry test' });
  assert.equal(tok.status, 201, tok.text);
  const v1 = new Client(srv.url, { csrf: false, headers: { authorization: `Bearer ${tok.json.secret}` } });
  const r = await v1.post('/v1/chat/completions', { model: 'gpt-4o', messages: [{ role: 'user', content: secret.text }] });
  assert.ok(r.status === 502 || r.status === 504, `gateway with an unreachable provider: HTTP ${r.status}: ${r.text}`);
  assert.equal(r.json?.error?.code, 'provider_unreachable', r.text);
  return { cookies: [a.cookies.get('coai_session'), b.cookies.get('coai_session')], token: tok.json.secret };
}

function sentrySecrets() {
  return {
    ownKey: 'sk-OWNKEY-sentry-4b7e1f90aa',
    serverKey: 'sk-SERVERKEY-sentry-91c3d7e5bb',
    masterKey: hex64(),
    password: 'pw-SENTRY-7731-correct-horse',
    text: 'wombat-MSGTEXT-8812 the secret garden plan',
  };
}

test('Sentry (CHATOPENAII_SENTRY_DSN): envelopes for a turn provider failure and a gateway provider_unreachable, with level, message, tags, environment and no secrets', async () => {
  const sink = await startSentrySink();
  const closedPort = await freePort();
  const secret = sentrySecrets();
  try {
    await withFake((fake) => withServer({
      env: {
        CHATOPENAII_SENTRY_DSN: sink.dsn(),
        CHATOPENAII_ENV: 'staging',
        CHATOPENAII_MASTER_KEY: secret.masterKey,
        CHATOPENAII_PROVIDER_BASE_URL: `http://127.0.0.1:${closedPort}/v1`,
        CHATOPENAII_PROVIDER_API_KEY: secret.serverKey,
        CHATOPENAII_RETRY_MAX: 0,
      },
    }, async (srv) => {
      const cfg = await new Client(srv.url).get('/api/v1/config');
      assert.equal(cfg.json.environment, 'staging');
      assert.equal(cfg.json.sentry_dsn, sink.dsn(), 'the web app learns the DSN');
      const csp = parseCsp(cfg.headers['content-security-policy']);
      assert.ok(csp.get('connect-src').includes(`http://127.0.0.1:${sink.port}`), `CSP connect-src allows the Sentry host: ${cfg.headers['content-security-policy']}`);

      const got = await sentryScenario(srv, fake, secret);
      const auth = await sink.waitFor((e) => e.event.tags?.code === 'provider_auth', { what: 'an event tagged code=provider_auth' });
      const unreach = await sink.waitFor((e) => e.event.tags?.code === 'provider_unreachable', { what: 'an event tagged code=provider_unreachable' });
      for (const [what, { req, env }] of [['provider_auth', auth], ['provider_unreachable', unreach]]) {
        const msg = checkEnvelope(req, env, sink.port, what);
        assert.match(msg, /provider/i, `${what}: message`);
        assert.ok(['error', 'warning'].includes(env.event.level), `${what}: level ${env.event.level}`);
        assert.equal(env.event.environment, 'staging', `${what}: environment`);
        assert.equal(env.event.platform, 'c');
        assert.ok(Math.abs(Date.parse(env.event.timestamp) - Date.now()) < 120000, `${what}: timestamp ${env.event.timestamp}`);
      }
      // Give stragglers a moment, then look at everything received.
      await sleep(300);
      const secrets = { ...secret, cookieA: got.cookies[0], cookieB: got.cookies[1], token: got.token };
      assert.ok(got.cookies.every((v) => v && v.length >= 20));
      for (const r of sink.received) {
        const all = `${r.url}\n${JSON.stringify(r.headers)}\n${r.body}`;
        for (const [what, s] of Object.entries(secrets)) assert.ok(!all.includes(s), `a Sentry request contains the ${what}: ${all.slice(0, 800)}`);
        assert.ok(!all.includes('MSGTEXT'), 'a Sentry request contains (part of) the message text');
      }
    }));
  } finally {
    await sink.close();
  }
});

test('Sentry: without a DSN nothing is sent for the same failures', async () => {
  const sink = await startSentrySink();
  const closedPort = await freePort();
  const secret = sentrySecrets();
  try {
    await withFake((fake) => withServer({
      env: {
        CHATOPENAII_PROVIDER_BASE_URL: `http://127.0.0.1:${closedPort}/v1`,
        CHATOPENAII_PROVIDER_API_KEY: secret.serverKey,
        CHATOPENAII_RETRY_MAX: 0,
      },
    }, async (srv) => {
      const cfg = await new Client(srv.url).get('/api/v1/config');
      assert.equal(cfg.json.sentry_dsn, null);
      assert.deepEqual(parseCsp(cfg.headers['content-security-policy']).get('connect-src'), ["'self'"]);
      await sentryScenario(srv, fake, secret);
      await sleep(1000);
      assert.equal(sink.received.length, 0, `nothing may be sent without a DSN: ${sink.received.map((r) => r.url).join(', ')}`);
    }));
  } finally {
    await sink.close();
  }
  assert.equal(sink.received.length, 0);
});

test('Sentry crash report: SIGSEGV leaves <data>/crash.envelope; the next start sends a fatal event tagged signal=SIGSEGV and removes the file', async () => {
  const sink = await startSentrySink();
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'coai-crash-'));
  const env = { CHATOPENAII_SENTRY_DSN: sink.dsn() };
  const crashFile = path.join(dataDir, 'crash.envelope');
  try {
    const first = await startServer({ env, dataDir });
    first.proc.kill('SIGSEGV');
    const died = await Promise.race([first.exited, sleep(15000).then(() => 'timeout')]);
    if (died === 'timeout') await first.kill();
    else await first.stop(); // already dead: waits for its output to close
    assert.notEqual(died, 'timeout', 'the server did not die within 15 s of SIGSEGV');
    const out = first.logs().join('\n');
    assert.equal(first.proc.signalCode, 'SIGSEGV', `the server should die of SIGSEGV (exit ${first.proc.exitCode}); output tail:\n${out.slice(-2000)}`);
    assert.ok(fs.existsSync(crashFile), `${crashFile} should be written by the crash handler; output tail:\n${out.slice(-2000)}`);
    const saved = JSON.parse(fs.readFileSync(crashFile, 'utf8').split('\n')[0]);
    assert.equal(saved.level, 'fatal');
    assert.equal(saved.tags?.signal, 'SIGSEGV');
    assert.equal(sink.received.length, 0, 'nothing is sent from the signal handler itself');

    await withServer({ env, dataDir }, async () => {
      const { req, env: e } = await sink.waitFor((x) => x.event.level === 'fatal', { what: 'the fatal crash event' });
      const msg = checkEnvelope(req, e, sink.port, 'crash');
      assert.match(msg, /crash/i);
      assert.equal(e.event.tags?.signal, 'SIGSEGV');
      assert.equal(e.event.environment, 'development');
      assert.ok(!fs.existsSync(crashFile), 'crash.envelope is removed once sent');
    });
  } finally {
    await sink.close();
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
});

// =====================================================================================
// Environments
// =====================================================================================

test('environments: production refuses a missing master key, plain HTTP and a bogus CHATOPENAII_ENV; with a key and a trusted proxy it starts closed and with Secure cookies', async () => {
  const master = hex64();
  const prod = { CHATOPENAII_ENV: 'production', CHATOPENAII_MASTER_KEY: master, CHATOPENAII_TRUSTED_PROXIES: '127.0.0.1' };
  const [noKey, plain, bogus] = await Promise.all([
    runExpectingFailure({ ...prod, CHATOPENAII_MASTER_KEY: null }),
    runExpectingFailure({ ...prod, CHATOPENAII_TRUSTED_PROXIES: null }),
    runExpectingFailure({ CHATOPENAII_ENV: 'bogus' }),
  ]);
  assertRefused(noKey, 'CHATOPENAII_MASTER_KEY', 'production without CHATOPENAII_MASTER_KEY');
  assertRefused(plain, ['CHATOPENAII_TLS_CERT', 'CHATOPENAII_TRUSTED_PROXIES'], 'production without TLS or trusted proxies');
  assertRefused(bogus, 'CHATOPENAII_ENV', 'CHATOPENAII_ENV=bogus');

  // Registration is closed by default: an administrator creates the account.
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'coai-prod-'));
  const email = newEmail('prod');
  const cliEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('CHATOPENAII_')));
  Object.assign(cliEnv, prod, { CHATOPENAII_DATA_DIR: dataDir });
  const pg = pgDatabaseFor(dataDir);
  if (pg) cliEnv.CHATOPENAII_DATABASE_URL = pg;
  execFileSync(defaultBinary, ['admin', 'create-user', '--email', email, '--password', PW], { cwd: repoRoot, env: cliEnv, stdio: 'pipe' });
  await withServer({ dataDir, env: prod }, async (srv) => {
    const c = new Client(srv.url);
    const cfg = await c.get('/api/v1/config');
    assert.equal(cfg.json.environment, 'production');
    assert.equal(cfg.json.registration_open, false);
    assertError(await c.post('/api/v1/auth/register', { email: newEmail('prod'), password: PW }), 403, 'registration_closed', 'register in production');
    const r = await c.post('/api/v1/auth/login', loginBody(email, PW));
    assert.equal(r.status, 200, r.text);
    const sc = String(r.headers['set-cookie'] ?? '');
    assert.match(sc, /;\s*Secure/i, `production session cookie must be Secure: ${sc}`);
    assert.match(sc, /;\s*HttpOnly/i, `session cookie must be HttpOnly: ${sc}`);
  });

  // CHATOPENAII_REGISTRATION=open opens it explicitly.
  await withServer({ env: { ...prod, CHATOPENAII_REGISTRATION: 'open' } }, async (srv) => {
    const c = new Client(srv.url);
    assert.equal((await c.get('/api/v1/config')).json.registration_open, true);
    const r = await c.post('/api/v1/auth/register', { email: newEmail('prod'), password: PW });
    assert.equal(r.status, 201, r.text);
    assert.match(String(r.headers['set-cookie'] ?? ''), /;\s*Secure/i);
  });
});

test('environments: staging marks session cookies Secure by default; CHATOPENAII_COOKIE_SECURE=off overrides it', async () => {
  await withServer({ env: { CHATOPENAII_ENV: 'staging' } }, async (srv) => {
    const r = await new Client(srv.url).post('/api/v1/auth/register', { email: newEmail('stg'), password: PW });
    assert.equal(r.status, 201, r.text);
    assert.match(String(r.headers['set-cookie'] ?? ''), /;\s*Secure/i);
    assert.equal((await new Client(srv.url).get('/api/v1/config')).json.environment, 'staging');
  });
  await withServer({ env: { CHATOPENAII_ENV: 'staging', CHATOPENAII_COOKIE_SECURE: 'off' } }, async (srv) => {
    const r = await new Client(srv.url).post('/api/v1/auth/register', { email: newEmail('stg'), password: PW });
    assert.equal(r.status, 201, r.text);
    assert.doesNotMatch(String(r.headers['set-cookie'] ?? ''), /;\s*Secure/i);
  });
});
