// topology.test.mjs - several instances behind nginx on loopback (issue #6):
// two ChatOpenAII instances on one PostgreSQL database, deploy/nginx.conf in
// front of them, and (second scenario) Redis. Checks that any instance serves
// any request: a session made on A works on B and through nginx; a turn
// started on A is followed through B (resuming with Last-Event-ID) and
// stopped through B; SIGKILL of A mid-turn leaves the partial answer stored
// and marked interrupted within the lease time.
//
//   COAI_TEST_PG_URL=postgres://... COAI_BIN=build-asan/server/chatopenaii \
//     node --test tests/topology/   (tests/run-topology.sh starts PostgreSQL)
//
// COAI_TOPO_REDIS=1 adds the scenario with Redis (redis-server from PATH).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startServer, Client, register, collectSse, freePort, defaultBinary } from '../lib/harness.mjs';
import { repoRoot } from '../lib/fixtures.mjs';
import { startFakeOpenAI } from '../upstream/fake-openai.mjs';

const PW = 'correct horse battery';
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const LEASE_MS = 2000;
const PG = process.env.COAI_TEST_PG_URL;
const SANITIZER = /ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:/;
let seq = 0;

if (!PG) throw new Error('topology: COAI_TEST_PG_URL is not set (tests/run-topology.sh starts PostgreSQL)');
if (!fs.existsSync(defaultBinary)) throw new Error(`topology: no server binary at ${defaultBinary}`);

// A fresh database for one scenario.
function freshDatabase() {
  const name = `coai_topo_${process.pid}_${++seq}`;
  execFileSync('psql', [PG, '-qc', `CREATE DATABASE ${name}`]);
  const u = new URL(PG);
  u.pathname = `/${name}`;
  return u.toString();
}

async function startRedis() {
  const port = await freePort();
  const proc = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '',
    '--appendonly', 'no'], { stdio: ['ignore', 'pipe', 'pipe'] });
  const deadline = Date.now() + 10000;
  for (;;) {
    try {
      if (execFileSync('redis-cli', ['-p', String(port), 'ping'], { stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim() === 'PONG') break;
    } catch { /* not yet */ }
    if (Date.now() > deadline) throw new Error('redis-server did not answer within 10 s');
    await sleep(50);
  }
  return { url: `redis://127.0.0.1:${port}/0`, stop: () => proc.kill('SIGKILL') };
}

// nginx from deploy/nginx.conf: its listen line and upstream servers replaced.
async function startNginx(backends) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'coai-nginx-'));
  const port = await freePort();
  let conf = fs.readFileSync(path.join(repoRoot, 'deploy/nginx.conf'), 'utf8');
  conf = conf.replace(/^worker_processes .*$/m, 'worker_processes 1;\ndaemon off;\nmaster_process off;\n'
    + `pid ${dir}/nginx.pid;\nerror_log ${dir}/error.log warn;`);
  conf = conf.replace(/(upstream chatopenaii \{)[^}]*?(keepalive)/s,
    `$1\n${backends.map((b) => `    server 127.0.0.1:${b} max_fails=1 fail_timeout=2s;`).join('\n')}\n    $2`);
  conf = conf.replace(/listen 127\.0\.0\.1:8080;/, `listen 127.0.0.1:${port};`);
  conf = conf.replace(/http \{/, `http {\n  access_log off;\n  client_body_temp_path ${dir}/body;\n  proxy_temp_path ${dir}/proxy;`);
  fs.writeFileSync(path.join(dir, 'nginx.conf'), conf);
  const proc = spawn('/usr/sbin/nginx', ['-c', path.join(dir, 'nginx.conf'), '-p', dir], { stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  proc.stderr.on('data', (d) => { err += d; });
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 10000;
  for (;;) {
    const ok = await fetch(`${url}/healthz`).then((r) => r.status === 200, () => false);
    if (ok) break;
    if (proc.exitCode !== null || Date.now() > deadline) throw new Error(`nginx did not start: ${err}`);
    await sleep(50);
  }
  return { url, stop: () => { proc.kill('SIGKILL'); fs.rmSync(dir, { recursive: true, force: true }); } };
}

function textOf(m) {
  return (m?.content ?? []).filter((p) => p.type === 'text').map((p) => p.text).join('');
}

// Two instances on one database (+ Redis), nginx in front; fn(ctx).
async function withTopology({ redis = false, leaseMs = LEASE_MS, env: extra = {} } = {}, fn) {
  const fake = await startFakeOpenAI();
  const db = freshDatabase();
  const rds = redis ? await startRedis() : null;
  const common = {
    CHATOPENAII_DATABASE_URL: db,
    CHATOPENAII_MASTER_KEY: crypto.randomBytes(32).toString('hex'),
    CHATOPENAII_TURN_LEASE_MS: String(leaseMs),
    CHATOPENAII_TURN_POLL_MS: '100',
    CHATOPENAII_PERSIST_MS: '100',
    CHATOPENAII_TRUSTED_PROXIES: '127.0.0.1',
    ...(rds ? { CHATOPENAII_REDIS_URL: rds.url } : {}),
    ...extra,
  };
  const servers = [];
  let nginx = null;
  try {
    const a = await startServer({ upstream: fake, env: { ...common, CHATOPENAII_INSTANCE_ID: 'topo-a' } });
    servers.push(a);
    const b = await startServer({ upstream: fake, env: { ...common, CHATOPENAII_INSTANCE_ID: 'topo-b' } });
    servers.push(b);
    nginx = await startNginx([a.port, b.port]);
    await fn({ a, b, nginx, fake, redis: rds, env: common });
  } finally {
    nginx?.stop();
    for (const s of servers) {
      const report = s.sanitizerReport();
      try { await s.stop('SIGTERM'); } catch { /* killed by the test */ }
      assert.equal(report, null, `sanitizer report:\n${report}`);
      s.removeDataDir();
    }
    rds?.stop();
    await fake.close();
  }
}

// A signed-in client on `url`, and the same session on other base URLs.
async function signIn(url) {
  const c = new Client(url);
  await register(c, `topo${++seq}-${process.pid}@example.com`, PW);
  return c;
}
function sameSession(c, url) {
  const o = new Client(url);
  for (const [k, v] of c.cookies) o.cookies.set(k, v);
  return o;
}

async function startTurn(c, model) {
  const ch = await c.post('/api/v1/chats', { title: 'topology' });
  assert.equal(ch.status, 201, ch.text);
  const r = await c.post(`/api/v1/chats/${ch.json.chat.id}/messages`, { content: 'hello', model });
  assert.equal(r.status, 202, r.text);
  return { chatId: ch.json.chat.id, turn: r.json.turn, msgId: r.json.assistant_message.id };
}

async function storedMessage(c, chatId, msgId) {
  const r = await c.get(`/api/v1/chats/${chatId}/messages`);
  assert.equal(r.status, 200, r.text);
  return r.json.data.find((m) => m.id === msgId);
}

async function until(what, fn, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await sleep(50);
  }
}

for (const redis of process.env.COAI_TOPO_REDIS === '1' ? [false, true] : [false]) {
  const tag = redis ? 'with Redis' : 'without Redis';

  test(`${tag}: a session made through A works on B and through nginx; nginx spreads requests over both`, () => withTopology({ redis }, async ({ a, b, nginx }) => {
    const ca = await signIn(a.url);
    const me = await ca.get('/api/v1/me');
    assert.equal(me.status, 200);
    for (const url of [b.url, nginx.url]) {
      const r = await sameSession(ca, url).get('/api/v1/me');
      assert.equal(r.status, 200, `${url}: ${r.text}`);
      assert.equal(r.json.user.id, me.json.user.id);
    }
    // nginx without stickiness: both instances answer requests of one client
    const before = [a, b].map((s) => s.logs().filter((l) => l.includes('"path":"/api/v1/chats"')).length);
    const cn = sameSession(ca, nginx.url);
    for (let i = 0; i < 6; i++) assert.equal((await cn.get('/api/v1/chats')).status, 200);
    await sleep(100);
    const after = [a, b].map((s) => s.logs().filter((l) => l.includes('"path":"/api/v1/chats"')).length);
    assert.ok(after[0] > before[0] && after[1] > before[1], `both instances served /api/v1/chats through nginx: ${before} -> ${after}`);
  }));

  test(`${tag}: a turn running on A is followed through B, resuming with Last-Event-ID, and through nginx, to the stored answer`, () => withTopology({ redis }, async ({ a, b, nginx }) => {
    const ca = await signIn(a.url);
    const t = await startTurn(ca, 'slow:40:40');
    // a few events from A, then B takes over from the last id seen
    const first = await collectSse(ca, t.turn.events_url, { until: (e, all) => all.filter((x) => x.event === 'delta').length >= 3 });
    const lastId = Number(first.filter((e) => e.id).at(-1).id);
    assert.ok(lastId >= 3, `ids from A: ${first.map((e) => e.id)}`);
    const cb = sameSession(ca, b.url);
    const cn = sameSession(ca, nginx.url);
    const [evB, evN] = await Promise.all([
      collectSse(cb, t.turn.events_url, { lastEventId: lastId, until: (e) => e.event === 'done', timeoutMs: 20000 }),
      collectSse(cn, t.turn.events_url, { until: (e) => e.event === 'done', timeoutMs: 20000 }),
    ]);
    const done = JSON.parse(evB.at(-1).data);
    assert.equal(done.status, 'complete', `B: ${evB.map((e) => e.event)}`);
    const stored = await storedMessage(ca, t.chatId, t.msgId);
    assert.equal(stored.status, 'complete');
    assert.equal(textOf(done.message), textOf(stored), 'B ends with the stored answer');
    assert.ok(textOf(stored).length > 0);
    // B sent the content as it grew (not only at the end), with the owner's ids:
    // with Redis the owner's own delta events, live; without, snapshots read
    // from the store
    const snaps = evB.filter((e) => e.event === 'snapshot' || e.event === 'delta');
    assert.ok(snaps.length >= 1, `B sent progress before done: ${evB.map((e) => e.event)}`);
    if (redis) assert.ok(evB.filter((e) => e.event === 'delta').length >= 10, `live deltas through Redis: ${evB.map((e) => e.event)}`);
    else assert.ok(evB.every((e) => e.event !== 'delta'), 'without Redis B reads the store');
    for (const e of evB.filter((x) => x.id)) assert.ok(Number(e.id) > lastId, `B resumes after ${lastId}: got id ${e.id}`);
    // through nginx (either instance) the stream ends with the same answer
    assert.equal(textOf(JSON.parse(evN.at(-1).data).message), textOf(stored));
  }));

  test(`${tag}: a turn running on A is stopped through B`, () => withTopology({ redis }, async ({ a, b }) => {
    const ca = await signIn(a.url);
    const t = await startTurn(ca, 'slow:100:200');
    await collectSse(ca, t.turn.events_url, { until: (e, all) => all.filter((x) => x.event === 'delta').length >= 2 });
    const cb = sameSession(ca, b.url);
    const watch = collectSse(cb, t.turn.events_url, { until: (e) => e.event === 'done', timeoutMs: 15000 });
    const t0 = Date.now();
    const r = await cb.post(`/api/v1/turns/${t.msgId}/stop`);
    assert.equal(r.status, 202, r.text);
    assert.equal(r.json.stopped, true);
    const m = await until('stored as stopped', async () => {
      const s = await storedMessage(ca, t.chatId, t.msgId);
      return s.status === 'stopped' ? s : null;
    }, 5000);
    const took = Date.now() - t0;
    assert.ok(took < 3000, `stopped within 3 s (took ${took} ms)`);
    if (redis) assert.ok(took < 500, `with Redis the owner hears the stop at once (took ${took} ms)`);
    assert.ok(textOf(m).length > 0, 'the partial answer is kept');
    const ev = await watch;
    assert.equal(JSON.parse(ev.at(-1).data).status, 'stopped', 'B\'s stream ends with done "stopped"');
    assert.equal(a.logs().filter((l) => l.includes('turn stopped from another instance')).length, 1);
  }));

  test(`${tag}: sign-in rate limit (3 a minute): ${redis ? 'shared by both instances' : 'counted by each instance alone'}`, () => withTopology({ redis, env: { CHATOPENAII_RATE_AUTH: '3' } }, async ({ a, b }) => {
    const statuses = [];
    for (let i = 0; i < 4; i++) {
      const c = new Client((i % 2 ? b : a).url);
      const r = await c.post('/api/v1/auth/login', { email: `nobody${i}@example.com`, password: 'wrong password!' });
      statuses.push(r.status);
      if (r.status === 429) assert.ok(Number(r.headers['retry-after']) >= 1, 'Retry-After');
    }
    if (redis) assert.deepEqual(statuses, [401, 401, 401, 429], 'the 4th attempt, on either instance, is over the shared limit');
    else assert.deepEqual(statuses, [401, 401, 401, 401], 'two attempts on each instance stay under its own limit');
  }));

  test(`${tag}: SIGKILL of A mid-turn: B marks the answer interrupted within the lease time, partial text kept; B carries on`, () => withTopology({ redis }, async ({ a, b }) => {
    const ca = await signIn(a.url);
    const t = await startTurn(ca, 'slow:50:400');
    await collectSse(ca, t.turn.events_url, { until: (e, all) => all.filter((x) => x.event === 'delta').length >= 8 });
    await sleep(250); // a persist tick (100 ms) has stored some text
    const cb = sameSession(ca, b.url);
    const watch = collectSse(cb, t.turn.events_url, { until: (e) => e.event === 'done', timeoutMs: LEASE_MS + 8000 });
    a.proc.kill('SIGKILL');
    const killed = Date.now();
    const m = await until('marked interrupted', async () => {
      const s = await storedMessage(cb, t.chatId, t.msgId);
      return s.status === 'interrupted' ? s : null;
    }, LEASE_MS + 5000);
    const took = Date.now() - killed;
    assert.ok(took <= LEASE_MS + 2000, `interrupted ${took} ms after the kill (lease ${LEASE_MS} ms)`);
    assert.ok(textOf(m).length > 0, 'the persisted partial answer is kept');
    assert.equal(m.error?.code, 'interrupted');
    const ev = await watch;
    assert.equal(JSON.parse(ev.at(-1).data).status, 'interrupted', 'the follower on B is told');
    assert.ok(b.logs().some((l) => l.includes('stopped renewing its leases')), 'B logged the sweep');
    // the chat carries on, on B
    const r = await cb.post(`/api/v1/chats/${t.chatId}/messages`, { content: 'again', model: 'gpt-4o' });
    assert.equal(r.status, 202, r.text);
    const done = await collectSse(cb, r.json.turn.events_url, { until: (e) => e.event === 'done' });
    assert.equal(JSON.parse(done.at(-1).data).status, 'complete');
  }));

  test(`${tag}: an instance restarted after a crash recovers its own leftover turn at once; another instance's live turn is left alone`, () => withTopology({ redis, leaseMs: 15000 }, async ({ a, b, fake, env }) => {
    const ca = await signIn(a.url);
    const cb = sameSession(ca, b.url);
    const onB = await startTurn(cb, 'slow:100:100'); // 10 s, keeps running on B
    const t = await startTurn(ca, 'slow:50:400');
    await collectSse(ca, t.turn.events_url, { until: (e, all) => all.filter((x) => x.event === 'delta').length >= 4 });
    await sleep(250);
    a.proc.kill('SIGKILL');
    await a.exited;
    // A again, same instance id: its own turn is interrupted at start-up
    const a2 = await startServer({ upstream: fake, env: { ...env, CHATOPENAII_INSTANCE_ID: 'topo-a' } });
    try {
      await a2.waitForLog(/answers interrupted by the last shutdown were marked interrupted.*"count":1\b/, { timeoutMs: 1000 });
      const s = await storedMessage(cb, t.chatId, t.msgId);
      assert.equal(s.status, 'interrupted');
      const other = await storedMessage(cb, onB.chatId, onB.msgId);
      assert.equal(other.status, 'streaming', 'B\'s live turn was not touched by A\'s recovery');
      assert.equal((await cb.post(`/api/v1/turns/${onB.msgId}/stop`)).status, 202);
    } finally {
      await a2.stop('SIGTERM');
      assert.equal(a2.sanitizerReport(), null);
    }
  }));
}
