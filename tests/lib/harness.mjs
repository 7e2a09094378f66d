// harness.mjs - helpers for API tests that drive the real server binary.
//
// startServer() spawns `chatopenaii serve` on a free loopback port with a
// fresh data directory and waits for /healthz; Client is a small HTTP client
// with a cookie jar, the CSRF headers the server expects, JSON bodies and an
// SSE iterator. Only Node built-ins.

import { execFileSync, spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { repoRoot } from './fixtures.mjs';
import { SseParser } from './sse.mjs';

export const defaultBinary = process.env.COAI_BIN
  ? path.resolve(process.env.COAI_BIN)
  : path.join(repoRoot, 'build-asan/server/chatopenaii');

// API paths used by the convenience helpers below.
export const paths = {
  register: '/api/v1/auth/register',
  login: '/api/v1/auth/login',
};

// Spawned servers are SIGKILLed if the test process exits or is signalled
// (e.g. node --test cancelling a file), so no server outlives its test.
const live = new Set();
function killLive() {
  for (const proc of live) {
    try { proc.kill('SIGKILL'); } catch { /* already gone */ }
  }
}
process.on('exit', killLive);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.once(sig, () => {
    killLive();
    process.kill(process.pid, sig); // re-raise with the default action
  });
}

// A port that was free a moment ago (bind port 0, read it, close).
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function probe(url, timeoutMs = 1000) {
  return new Promise((resolve) => {
    const req = http.get(url, { timeout: timeoutMs, agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode));
      res.on('error', () => resolve(0));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(0));
  });
}

const SANITIZER = /AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|ThreadSanitizer|runtime error:/;

/**
 * Start the server. Options:
 *   env       extra environment (a null/undefined value unsets the variable)
 *   binary    path of the executable (default COAI_BIN or build-asan/server/chatopenaii)
 *   args      extra arguments after `serve`
 *   upstream  a fake from startFakeOpenAI(): sets the provider base URL and a key
 *   dataDir   reuse a data directory (restart tests); default a fresh mkdtemp dir
 *   port      listen port; default a free one
 *   timeoutMs how long to wait for GET /healthz == 200 (default 15000)
 * Resolves { url, port, proc, dataDir, logs(), waitForLog(), sanitizerReport(),
 * stop(signal), kill(), exited, removeDataDir() }.
 */
/**
 * With COAI_TEST_PG_URL (a PostgreSQL database URL, tests/pg.sh), every data
 * directory gets its own database on that server, created on first use, so
 * a restart with the same data directory finds its data again. Returns the
 * URL to give the server, or null when the suites run on SQLite.
 */
export function pgDatabaseFor(dataDir) {
  const base = process.env.COAI_TEST_PG_URL;
  if (!base) return null;
  const db = `coai_${crypto.createHash('sha1').update(path.resolve(dataDir)).digest('hex').slice(0, 20)}`;
  const exists = execFileSync('psql', [base, '-Atc', `SELECT 1 FROM pg_database WHERE datname = '${db}'`]).toString().trim();
  if (exists !== '1') execFileSync('psql', [base, '-qc', `CREATE DATABASE ${db}`]);
  const u = new URL(base);
  u.pathname = `/${db}`;
  return u.toString();
}

export const onPostgres = () => Boolean(process.env.COAI_TEST_PG_URL);

/** Run SQL on the database of a server's data directory, behind its back:
 * sqlite3 on the SQLite file (WAL allows a second writer), psql on
 * PostgreSQL. */
export function dbExec(dataDir, sql) {
  const pg = pgDatabaseFor(dataDir);
  if (pg) return execFileSync('psql', [pg, '-v', 'ON_ERROR_STOP=1', '-qAtc', sql]).toString();
  return execFileSync('sqlite3', [path.join(dataDir, 'chatopenaii.db'), '.timeout 5000', sql]).toString();
}

export async function startServer({
  env = {}, binary = defaultBinary, args = [], upstream, dataDir, port, timeoutMs = 15000,
} = {}) {
  if (!fs.existsSync(binary)) {
    throw new Error(`server binary not found: ${binary} (build it, or set COAI_BIN)`);
  }
  // No port given: the server binds port 0 and its "listening" line says
  // which one it got (no window in which another process can take it).
  const portZero = port === undefined || port === null;
  if (portZero) port = 0;
  const ownDataDir = !dataDir;
  dataDir = dataDir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'coai-api-'));
  let url = `http://127.0.0.1:${port}`;

  // Inherit the environment minus any CHATOPENAII_* from the developer's shell.
  const fullEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('CHATOPENAII_')));
  Object.assign(fullEnv, {
    CHATOPENAII_LISTEN: `127.0.0.1:${port}`,
    CHATOPENAII_DATA_DIR: dataDir,
    CHATOPENAII_LOG_LEVEL: 'debug',
    // Every suite signs in many times from 127.0.0.1; the rate-limit and
    // lock-out tests set these back to strict values themselves.
    CHATOPENAII_RATE_AUTH: '100000',
    CHATOPENAII_RATE_GENERATE: '100000',
    CHATOPENAII_RATE_API: '1000000',
  });
  if (upstream) {
    fullEnv.CHATOPENAII_PROVIDER_BASE_URL = upstream.baseURL ?? `${upstream.url}/v1`;
    fullEnv.CHATOPENAII_PROVIDER_API_KEY = 'sk-test';
  }
  for (const [k, v] of Object.entries(env)) {
    if (v === null || v === undefined) delete fullEnv[k];
    else fullEnv[k] = String(v);
  }
  const pg = pgDatabaseFor(dataDir);
  if (pg && !fullEnv.CHATOPENAII_DATABASE_URL) fullEnv.CHATOPENAII_DATABASE_URL = pg;

  const proc = spawn(binary, ['serve', ...args], { cwd: repoRoot, env: fullEnv, stdio: ['ignore', 'pipe', 'pipe'] });
  live.add(proc);

  const lines = []; // {stream, line, time}
  const waiters = new Set();
  for (const stream of ['stdout', 'stderr']) {
    readline.createInterface({ input: proc[stream] }).on('line', (line) => {
      const entry = { stream, line, time: Date.now() };
      lines.push(entry);
      for (const w of waiters) w(entry);
    });
  }

  let exitInfo = null;
  const exited = new Promise((resolve) => {
    proc.once('exit', (code, signal) => {
      live.delete(proc);
      exitInfo = { code, signal };
      // Exit code, or 128 + signal number when killed by a signal.
      resolve(code ?? 128 + (os.constants.signals[signal] ?? 0));
    });
  });
  // Streams may still hold the last lines when 'exit' fires; 'close' is final.
  const closed = new Promise((resolve) => proc.once('close', resolve));
  proc.once('error', (err) => lines.push({ stream: 'spawn', line: String(err), time: Date.now() }));

  const logs = (stream) => lines.filter((l) => !stream || l.stream === stream).map((l) => l.line);
  const stderrText = () => logs('stderr').join('\n');

  // Wait for a log line matching a RegExp or containing a string.
  function waitForLog(pattern, { timeoutMs: wait = 5000, from = 0 } = {}) {
    const test = (l) => (pattern instanceof RegExp ? pattern.test(l) : l.includes(pattern));
    const hit = lines.slice(from).find((e) => test(e.line));
    if (hit) return Promise.resolve(hit.line);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        waiters.delete(w);
        reject(new Error(`no log line matching ${pattern} within ${wait} ms; last lines:\n${logs().slice(-20).join('\n')}`));
      }, wait);
      const w = (e) => {
        if (!test(e.line)) return;
        clearTimeout(timer);
        waiters.delete(w);
        resolve(e.line);
      };
      waiters.add(w);
    });
  }

  async function stop(signal = 'SIGTERM', { timeoutMs: wait = 10000 } = {}) {
    if (!exitInfo) proc.kill(signal);
    let timer;
    const timeout = new Promise((resolve) => { timer = setTimeout(() => resolve('timeout'), wait); });
    const code = await Promise.race([exited, timeout]);
    clearTimeout(timer);
    if (code === 'timeout') {
      proc.kill('SIGKILL');
      await exited;
      await closed;
      throw new Error(`server did not exit within ${wait} ms of ${signal}; killed. stderr:\n${stderrText()}`);
    }
    await closed;
    return code;
  }

  const server = {
    url,
    port,
    proc,
    dataDir,
    exited,
    logs,
    waitForLog,
    stop,
    kill: () => stop('SIGKILL'),
    // Sanitizer (ASan/LSan/UBSan) lines in the output, or null.
    sanitizerReport: () => {
      const i = lines.findIndex((l) => SANITIZER.test(l.line));
      return i < 0 ? null : lines.slice(i).map((l) => l.line).join('\n');
    },
    removeDataDir: () => fs.rmSync(dataDir, { recursive: true, force: true }),
  };

  // Wait for /healthz; on failure leave nothing behind but the error.
  const fail = async (message) => {
    if (!exitInfo) proc.kill('SIGKILL');
    await closed;
    if (ownDataDir) server.removeDataDir();
    return new Error(`${message}; stderr:\n${stderrText()}`);
  };
  const deadline = Date.now() + timeoutMs;
  if (portZero) {
    let line = null;
    while (!line) {
      line = lines.map((l) => l.line).find((l) => /"msg":"listening"/.test(l));
      if (line) break;
      if (exitInfo) throw await fail(`server exited (code ${exitInfo.code}, signal ${exitInfo.signal}) before listening`);
      if (Date.now() > deadline) throw await fail(`server did not log "listening" within ${timeoutMs} ms`);
      await sleep(10);
    }
    const m = /"port":(\d+)/.exec(line);
    if (!m || Number(m[1]) === 0) throw await fail(`no port in the listening line: ${line}`);
    port = Number(m[1]);
    url = `http://127.0.0.1:${port}`;
    server.port = port;
    server.url = url;
  }
  for (;;) {
    if (exitInfo) throw await fail(`server exited (code ${exitInfo.code}, signal ${exitInfo.signal}) before /healthz answered`);
    if (await probe(`${url}/healthz`) === 200) return server;
    if (Date.now() > deadline) throw await fail(`server not healthy within ${timeoutMs} ms`);
    await sleep(50);
  }
}

// ---- HTTP client --------------------------------------------------------------

function normalizeHeaders(h = {}) {
  const out = {};
  for (const [k, v] of Object.entries(h)) out[k.toLowerCase()] = v;
  return out;
}

export class Client {
  /**
   * baseUrl   the server url (from startServer)
   * headers   default headers for every request
   * csrf      send X-Requested-With and Origin on non-GET requests (default true)
   * keepAlive reuse connections (default false: no idle-socket races)
   * timeoutMs per-request timeout (default 30000)
   */
  constructor(baseUrl, { headers = {}, csrf = true, keepAlive = false, timeoutMs = 30000 } = {}) {
    this.baseUrl = String(baseUrl).replace(/\/$/, '');
    this.origin = new URL(this.baseUrl).origin;
    this.headers = normalizeHeaders(headers);
    this.csrf = csrf;
    this.timeoutMs = timeoutMs;
    this.agent = new http.Agent({ keepAlive });
    this.cookies = new Map(); // name -> value
  }

  cookieHeader() {
    return [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; ');
  }

  // Apply Set-Cookie headers: store, replace, or delete (Max-Age<=0 / past Expires).
  storeCookies(res) {
    for (const sc of res.headers['set-cookie'] ?? []) {
      const [pair, ...attrs] = sc.split(';');
      const eq = pair.indexOf('=');
      if (eq <= 0) continue;
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      let expired = false;
      for (const a of attrs) {
        const [k, ...rest] = a.split('=');
        const key = k.trim().toLowerCase();
        const val = rest.join('=').trim();
        if (key === 'max-age' && Number(val) <= 0) expired = true;
        if (key === 'expires' && Date.parse(val) <= Date.now()) expired = true;
      }
      if (expired) this.cookies.delete(name);
      else this.cookies.set(name, value);
    }
  }

  buildHeaders(method, { headers = {}, csrf = this.csrf } = {}) {
    const h = { accept: 'application/json', ...this.headers };
    if (this.cookies.size) h.cookie = this.cookieHeader();
    if (csrf && method !== 'GET' && method !== 'HEAD') {
      h['x-requested-with'] = 'chatopenaii';
      h.origin = this.origin;
    }
    Object.assign(h, normalizeHeaders(headers));
    for (const k of Object.keys(h)) if (h[k] === null || h[k] === undefined) delete h[k];
    return h;
  }

  // Send a request; resolves the response once its headers arrive.
  open(method, p, { headers, csrf, body, signal, timeoutMs = this.timeoutMs } = {}) {
    const url = new URL(p, `${this.baseUrl}/`);
    const h = this.buildHeaders(method, { headers, csrf });
    if (body !== undefined && h['content-length'] === undefined) h['content-length'] = Buffer.byteLength(body);
    return new Promise((resolve, reject) => {
      const req = http.request(url, { method, headers: h, agent: this.agent, signal });
      if (timeoutMs) {
        req.setTimeout(timeoutMs, () => req.destroy(new Error(`${method} ${url.pathname}: no response within ${timeoutMs} ms`)));
      }
      req.once('response', (res) => {
        req.setTimeout(0);
        this.storeCookies(res);
        resolve({ req, res });
      });
      req.once('error', reject);
      req.end(body);
    });
  }

  /**
   * request(method, path, {json, body, headers, csrf, signal, timeoutMs})
   * json: a value sent as JSON; body: a string/Buffer sent as is. A header
   * set to null in `headers` removes a default one (e.g. {origin: null}).
   * Resolves {status, headers, json, text, body}; json is null unless the
   * response is JSON.
   */
  async request(method, p, opts = {}) {
    const { json, headers = {}, ...rest } = opts;
    let { body } = opts;
    const hdrs = { ...headers };
    if (json !== undefined) {
      body = JSON.stringify(json);
      if (!Object.keys(hdrs).some((k) => k.toLowerCase() === 'content-type')) hdrs['content-type'] = 'application/json';
    }
    const { res } = await this.open(method, p, { ...rest, headers: hdrs, body });
    const chunks = [];
    for await (const c of res) chunks.push(c);
    const buf = Buffer.concat(chunks);
    const text = buf.toString('utf8');
    let parsed = null;
    if (/\bjson\b/i.test(res.headers['content-type'] ?? '') && text !== '') {
      try { parsed = JSON.parse(text); } catch { parsed = null; }
    }
    return { status: res.statusCode, headers: res.headers, json: parsed, text, body: buf };
  }

  get(p, opts) { return this.request('GET', p, opts); }
  delete(p, opts) { return this.request('DELETE', p, opts); }
  post(p, json, opts = {}) { return this.request('POST', p, { ...opts, json }); }
  put(p, json, opts = {}) { return this.request('PUT', p, { ...opts, json }); }
  patch(p, json, opts = {}) { return this.request('PATCH', p, { ...opts, json }); }

  /**
   * Streaming GET yielding SSE events {id, event, data} (see sse.mjs).
   * Throws (on the first next()) with err.status / err.body when the answer
   * is not 200. Aborting `signal` ends the iteration quietly; breaking out of
   * the loop closes the connection.
   */
  async *sse(p, { lastEventId, signal, headers = {}, timeoutMs = this.timeoutMs } = {}) {
    const h = { accept: 'text/event-stream', ...headers };
    if (lastEventId !== undefined && lastEventId !== null) h['last-event-id'] = String(lastEventId);
    let req;
    let res;
    try {
      ({ req, res } = await this.open('GET', p, { headers: h, signal, timeoutMs }));
    } catch (err) {
      if (signal?.aborted) return;
      throw err;
    }
    try {
      if (res.statusCode !== 200) {
        const chunks = [];
        for await (const c of res) chunks.push(c);
        const text = Buffer.concat(chunks).toString('utf8');
        const err = new Error(`SSE ${p}: HTTP ${res.statusCode}: ${text.slice(0, 500)}`);
        err.status = res.statusCode;
        err.body = text;
        throw err;
      }
      const parser = new SseParser();
      try {
        for await (const chunk of res) {
          for (const ev of parser.feed(chunk)) yield ev;
        }
        parser.end();
      } catch (err) {
        if (!signal?.aborted) throw err;
      }
    } finally {
      req.destroy();
    }
  }

  close() {
    this.agent.destroy();
  }
}

/**
 * Collect SSE events until `until(event, events)` returns true, the stream
 * ends, or timeoutMs passes (then rejects with the events so far).
 */
export async function collectSse(client, p, { until = () => false, lastEventId, timeoutMs = 15000 } = {}) {
  const ac = new AbortController();
  const events = [];
  let timedOut = false;
  const timer = setTimeout(() => { timedOut = true; ac.abort(); }, timeoutMs);
  try {
    for await (const ev of client.sse(p, { lastEventId, signal: ac.signal, timeoutMs: 0 })) {
      events.push(ev);
      if (until(ev, events)) break;
    }
  } finally {
    clearTimeout(timer);
  }
  if (timedOut) {
    const err = new Error(`SSE ${p}: condition not met within ${timeoutMs} ms (${events.length} events)`);
    err.events = events;
    throw err;
  }
  return events;
}

// Register a user (and, when the server logs it in, keep its session cookie).
export async function register(client, email, password, { name, path: p = paths.register } = {}) {
  const res = await client.post(p, { email, password, ...(name ? { name } : {}) });
  if (res.status < 200 || res.status >= 300) {
    throw new Error(`register ${email}: HTTP ${res.status}: ${res.text.slice(0, 500)}`);
  }
  return res;
}

export async function login(client, email, password, { path: p = paths.login } = {}) {
  const res = await client.post(p, { email, password });
  if (res.status < 200 || res.status >= 300) {
    throw new Error(`login ${email}: HTTP ${res.status}: ${res.text.slice(0, 500)}`);
  }
  return res;
}
