// migrate.test.mjs - `chatopenaii migrate-store` (issue #6, docs/migrate-store.md):
// real data made through the API on SQLite, copied to PostgreSQL, served from
// there (same chats and messages, tokens work, the saved key still decrypts);
// an interrupted copy resumes without duplicates; PostgreSQL back to SQLite
// gives the same checksums; a tampered destination fails --verify.
//
// PostgreSQL is needed in both API runs: COAI_TEST_PG_URL when run-api.sh
// sets it (the api-pg run), else a throwaway cluster started here with
// tests/pg.sh. Every copy goes to a fresh database on that server.
//
//   COAI_BIN=$PWD/build-asan/server/chatopenaii node --test tests/api/migrate.test.mjs

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startServer, Client, register, login, collectSse, defaultBinary } from '../lib/harness.mjs';
import { repoRoot } from '../lib/fixtures.mjs';
import { startFakeOpenAI } from '../upstream/fake-openai.mjs';

const PASSWORD = 'correct horse battery';
const USER_KEY = `sk-migrate-user-${crypto.randomBytes(6).toString('hex')}`;
const MASTER = crypto.randomBytes(32).toString('hex');
const SANITIZER = /AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|runtime error:/;

let pgBase = null;   // a database URL on the PostgreSQL server
let ownCluster = null; // the cluster directory when this file started one
const databases = [];
const cleanups = [];

// A fresh, empty database on the PostgreSQL server.
function freshPg(tag) {
  const db = `coai_mig_${tag}_${crypto.randomBytes(5).toString('hex')}`;
  execFileSync('psql', [pgBase, '-qc', `CREATE DATABASE ${db}`]);
  databases.push(db);
  const u = new URL(pgBase);
  u.pathname = `/${db}`;
  return u.toString();
}

const psql = (url, sql) => execFileSync('psql', [url, '-v', 'ON_ERROR_STOP=1', '-qAtc', sql]).toString().trim();
const sqlite = (file, sql) => execFileSync('sqlite3', [file, sql]).toString().trim();

// Run the command; resolves {code, stdout, stderr}. No sanitizer report, no secret.
function migrate(args, env = {}) {
  return new Promise((resolve, reject) => {
    const fullEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('CHATOPENAII_')));
    Object.assign(fullEnv, env);
    const p = spawn(defaultBinary, ['migrate-store', ...args], { cwd: repoRoot, env: fullEnv });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => { stdout += d; });
    p.stderr.on('data', (d) => { stderr += d; });
    p.on('error', reject);
    p.on('close', (code) => {
      const all = stdout + stderr;
      assert.ok(!SANITIZER.test(all), `sanitizer report from migrate-store:\n${all.slice(0, 4000)}`);
      assert.ok(!all.includes(USER_KEY), 'migrate-store printed a provider key');
      assert.ok(!all.includes(MASTER), 'migrate-store printed the master key');
      resolve({ code, stdout, stderr });
    });
  });
}

// "table: N rows, sha256 X, ok" lines -> {table: {rows, sha}}.
function parseLines(stdout) {
  const out = {};
  for (const line of stdout.split('\n').filter(Boolean)) {
    const m = /^(\w+): (\d+) rows, sha256 ([0-9a-f]{16}), ok$/.exec(line);
    assert.ok(m, `unexpected output line: ${line}`);
    out[m[1]] = { rows: Number(m[2]), sha: m[3] };
  }
  return out;
}

before(async () => {
  if (process.env.COAI_TEST_PG_URL) {
    pgBase = process.env.COAI_TEST_PG_URL;
    return;
  }
  const out = execFileSync('bash', [path.join(repoRoot, 'tests/pg.sh'), 'start'], { cwd: repoRoot }).toString();
  pgBase = /COAI_PG_URL=(\S+)/.exec(out)[1];
  ownCluster = /COAI_PG_DIR=(\S+)/.exec(out)[1];
});

after(async () => {
  for (const f of cleanups.reverse()) {
    try { await f(); } catch { /* best effort */ }
  }
  if (ownCluster) {
    execFileSync('bash', [path.join(repoRoot, 'tests/pg.sh'), 'stop', ownCluster], { cwd: repoRoot });
  } else {
    for (const db of databases) {
      try { execFileSync('psql', [pgBase, '-qc', `DROP DATABASE IF EXISTS ${db}`]); } catch { /* in use */ }
    }
  }
});

// ---- the data, made through the API -------------------------------------------------

async function runTurn(c, reply) {
  assert.ok(reply.turn, JSON.stringify(reply));
  const events = await collectSse(c, reply.turn.events_url, { until: (ev) => ev.event === 'done', timeoutMs: 20000 });
  assert.equal(events.at(-1).event, 'done');
}

async function send(c, chatId, content, extra = {}) {
  const r = await c.post(`/api/v1/chats/${chatId}/messages`, { content, model: 'gpt-4o', ...extra });
  assert.equal(r.status, 202, r.text);
  await runTurn(c, r.json);
  return r.json;
}

// Everything a user sees, for deepEqual before and after the move.
async function snapshot(c) {
  const get = async (p) => {
    const r = await c.get(p);
    assert.equal(r.status, 200, `GET ${p}: ${r.text}`);
    return r.json;
  };
  const chats = await get('/api/v1/chats');
  const detail = {};
  for (const chat of chats.data) {
    detail[chat.id] = {
      chat: await get(`/api/v1/chats/${chat.id}`),
      messages: await get(`/api/v1/chats/${chat.id}/messages`),
    };
  }
  const usage = await get('/api/v1/usage');
  delete usage.to; // "now"
  return {
    me: await get('/api/v1/me'), chats, detail,
    tokens: await get('/api/v1/tokens'), connection: await get('/api/v1/connection'), usage,
  };
}

// Snapshot once titles and usage stopped changing (they are written after "done").
async function settledSnapshot(c) {
  let prev = await snapshot(c);
  for (let i = 0; i < 50; i++) {
    await new Promise((r) => setTimeout(r, 150));
    const cur = await snapshot(c);
    if (JSON.stringify(cur) === JSON.stringify(prev)) {
      if (process.env.COAI_MIGRATE_TEST_DEBUG) console.log(`settled after ${i + 1}`);
      return cur;
    }
    prev = cur;
  }
  return prev;
}

const state = {}; // shared by the tests below, which run in order

test('SQLite -> PostgreSQL: users, chats, branches, tokens, saved key and usage survive the move', async () => {
  const fake = await startFakeOpenAI();
  cleanups.push(() => fake.close());
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'coai-mig-'));
  cleanups.push(() => fs.rmSync(dataDir, { recursive: true, force: true }));
  const file = path.join(dataDir, 'chatopenaii.db');
  state.file = file;
  const env = { CHATOPENAII_DATABASE_URL: `sqlite:${file}`, CHATOPENAII_MASTER_KEY: MASTER };
  const srv = await startServer({ upstream: fake, dataDir, env });
  cleanups.push(() => srv.kill());

  const a = new Client(srv.url);
  const b = new Client(srv.url);
  await register(a, 'alice@example.com', PASSWORD, { name: 'Alice' });
  await register(b, 'bob@example.com', PASSWORD);
  // Alice's own connection (key stored encrypted) to the fake
  const conn = await a.put('/api/v1/connection', { base_url: fake.baseURL ?? `${fake.url}/v1`, api_key: USER_KEY });
  assert.equal(conn.status, 200, conn.text);

  // Alice: a chat with two turns, an edit (a branch) and a regenerate
  let r = await a.post('/api/v1/chats', { title: 'Alice ✓ "quoted" \\ chat' });
  assert.equal(r.status, 201, r.text);
  const chatA = r.json.chat.id;
  await send(a, chatA, 'first question');
  const t2 = await send(a, chatA, 'second question — ünïcödé 😀');
  r = await a.post(`/api/v1/chats/${chatA}/messages/${t2.user_message.id}/edit`, { content: 'second, edited', model: 'gpt-4o' });
  assert.equal(r.status, 202, r.text);
  await runTurn(a, r.json);
  r = await a.post(`/api/v1/chats/${chatA}/messages/${r.json.turn.id}/regenerate`, {});
  assert.equal(r.status, 202, r.text);
  await runTurn(a, r.json);
  r = await a.post('/api/v1/chats', {});
  await send(a, r.json.chat.id, 'another chat');
  // Bob: one chat, two turns
  r = await b.post('/api/v1/chats', {});
  const chatB = r.json.chat.id;
  await send(b, chatB, 'bob asks');
  await send(b, chatB, 'bob asks again');
  assert.ok(fake.requests.some((q) => q.headers.authorization === `Bearer ${USER_KEY}`), 'Alice\'s turns used her key');

  // an API token, used on /v1 (usage rows)
  r = await a.post('/api/v1/tokens', { name: 'migrate token' });
  assert.equal(r.status, 201, r.text);
  const secret = r.json.secret;
  state.secret = secret;
  const v1 = new Client(srv.url, { csrf: false, headers: { authorization: `Bearer ${secret}` } });
  r = await v1.post('/v1/chat/completions', { model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }] });
  assert.equal(r.status, 200, r.text);

  const beforeA = await settledSnapshot(a);
  const beforeB = await settledSnapshot(b);
  assert.equal(beforeA.chats.data.length, 2);
  const code = await srv.stop();
  assert.equal(code, 0);
  assert.equal(srv.sanitizerReport(), null);
  const counts = {};
  for (const t of ['users', 'chats', 'messages', 'api_tokens', 'provider_connections', 'usage_records', 'sessions']) {
    counts[t] = Number(sqlite(file, `SELECT count(*) FROM ${t}`));
  }
  assert.equal(counts.users, 2);
  assert.ok(counts.messages >= 13, `messages: ${counts.messages}`);
  assert.ok(counts.usage_records >= 1, 'usage rows');
  state.counts = counts;

  // copy
  const pg = freshPg('a');
  const res = await migrate(['--from', `sqlite:${file}`, '--to', pg]);
  assert.equal(res.code, 0, res.stderr);
  const lines = parseLines(res.stdout);
  for (const [t, n] of Object.entries(counts)) assert.equal(lines[t].rows, n, `${t} rows`);
  assert.equal(psql(pg, "SELECT to_regclass('migrate_progress') IS NULL"), 't', 'progress table dropped');
  state.lines = lines;
  state.pg = pg;

  // a second run into the now non-empty database is refused
  const again = await migrate(['--from', file, '--to', pg]);
  assert.equal(again.code, 2, again.stderr);
  assert.match(again.stderr, /already holds data/);

  // serve from PostgreSQL: same master key, a fresh data directory
  const dataDir2 = fs.mkdtempSync(path.join(os.tmpdir(), 'coai-mig-pg-'));
  cleanups.push(() => fs.rmSync(dataDir2, { recursive: true, force: true }));
  const srv2 = await startServer({ upstream: fake, dataDir: dataDir2, env: { CHATOPENAII_DATABASE_URL: pg, CHATOPENAII_MASTER_KEY: MASTER } });
  cleanups.push(() => srv2.kill());
  try {
    const a2 = new Client(srv2.url);
    const b2 = new Client(srv2.url);
    await login(a2, 'alice@example.com', PASSWORD);
    await login(b2, 'bob@example.com', PASSWORD);
    const afterA = await snapshot(a2);
    const afterB = await snapshot(b2);
    assert.deepEqual(afterA.chats, beforeA.chats);
    assert.deepEqual(afterA.detail, beforeA.detail);
    assert.deepEqual(afterA.me, beforeA.me);
    assert.deepEqual(afterA.connection, beforeA.connection);
    assert.deepEqual(afterA.usage, beforeA.usage);
    assert.deepEqual(afterB.chats, beforeB.chats);
    assert.deepEqual(afterB.detail, beforeB.detail);
    // the token (same last_used_at until used: compare then use it)
    assert.deepEqual(afterA.tokens, beforeA.tokens);
    const v1b = new Client(srv2.url, { csrf: false, headers: { authorization: `Bearer ${secret}` } });
    r = await v1b.post('/v1/chat/completions', { model: 'gpt-4o', messages: [{ role: 'user', content: 'hi again' }] });
    assert.equal(r.status, 200, r.text);
    // the saved connection still decrypts: a turn goes out with Alice's key
    const seen = fake.requests.length;
    r = await a2.post('/api/v1/chats', {});
    await send(a2, r.json.chat.id, 'after the move');
    assert.ok(fake.requests.slice(seen).some((q) => q.headers.authorization === `Bearer ${USER_KEY}`),
      'the turn after the move used the decrypted user key');
  } finally {
    const code2 = await srv2.stop();
    assert.equal(srv2.sanitizerReport(), null);
    assert.equal(code2, 0);
  }
});

test('an interrupted copy (CHATOPENAII_MIGRATE_STOP_AFTER) exits 3 and a re-run resumes without duplicates', async () => {
  assert.ok(state.file, 'needs the first test');
  const pg = freshPg('b');
  const env = { CHATOPENAII_MIGRATE_BATCH: '2', CHATOPENAII_MIGRATE_STOP_AFTER: '1' };
  let res = await migrate(['--from', state.file, '--to', pg], env);
  assert.equal(res.code, 3, res.stderr);
  assert.match(res.stderr, /test hook/);
  assert.equal(res.stdout, '', 'no verification after an interruption');
  const copied1 = Number(psql(pg, 'SELECT coalesce(sum(rows_copied), 0) FROM migrate_progress'));
  assert.ok(copied1 >= 1 && copied1 <= 2, `one batch of at most 2 rows recorded (${copied1})`);

  // several more interruptions, each resuming where the last stopped
  let prev = copied1;
  for (let i = 0; i < 3; i++) {
    res = await migrate(['--from', state.file, '--to', pg], { ...env, CHATOPENAII_MIGRATE_STOP_AFTER: '4' });
    assert.equal(res.code, 3, res.stderr);
    assert.match(res.stderr, /resuming/);
    const copied = Number(psql(pg, 'SELECT coalesce(sum(rows_copied), 0) FROM migrate_progress'));
    const inTables = Object.keys(state.counts).reduce((n, t) => n + Number(psql(pg, `SELECT count(*) FROM ${t}`)), 0);
    assert.ok(copied > prev && copied <= prev + 8, `4 more batches of at most 2 rows: ${prev} -> ${copied}`);
    assert.ok(inTables <= copied, 'no row beyond the recorded progress');
    prev = copied;
  }

  // another source is refused while the migration is unfinished
  const other = path.join(path.dirname(state.file), 'other.db');
  fs.copyFileSync(state.file, other);
  res = await migrate(['--from', other, '--to', pg], { CHATOPENAII_MIGRATE_BATCH: '2' });
  assert.equal(res.code, 2, res.stderr);
  assert.match(res.stderr, /another source/);

  res = await migrate(['--from', state.file, '--to', pg], { CHATOPENAII_MIGRATE_BATCH: '3' });
  assert.equal(res.code, 0, res.stderr);
  assert.deepEqual(parseLines(res.stdout), state.lines, 'same counts and checksums as the uninterrupted copy');
  for (const [t, n] of Object.entries(state.counts)) {
    assert.equal(Number(psql(pg, `SELECT count(*) FROM ${t}`)), n, `${t}: no duplicates`);
  }
  assert.equal(psql(pg, "SELECT to_regclass('migrate_progress') IS NULL"), 't');
  state.pg2 = pg; // an exact copy (the first one has been served from since)
});

test('PostgreSQL -> SQLite gives the same checksums; a tampered destination fails --verify', async () => {
  assert.ok(state.pg2, 'needs the tests above');
  const back = path.join(path.dirname(state.file), 'back.db');
  let res = await migrate(['--from', state.pg2, '--to', `sqlite:${back}`], { CHATOPENAII_MIGRATE_BATCH: '5' });
  assert.equal(res.code, 0, res.stderr);
  assert.deepEqual(parseLines(res.stdout), state.lines, 'round trip: identical checksum lines');
  // the original and the round-tripped SQLite files compare equal, too
  res = await migrate(['--from', state.file, '--to', back, '--verify']);
  assert.equal(res.code, 0, res.stderr);
  assert.deepEqual(parseLines(res.stdout), state.lines);
  assert.equal(sqlite(back, "SELECT count(*) FROM sqlite_master WHERE name = 'migrate_progress'"), '0');

  // one changed value in the destination: --verify reports that table, exit 1
  psql(state.pg2, "UPDATE messages SET content = '[{\"type\":\"text\",\"text\":\"tampered\"}]' WHERE id = (SELECT min(id COLLATE \"C\") FROM messages)");
  res = await migrate(['--from', `sqlite:${state.file}`, '--to', state.pg2, '--verify']);
  assert.equal(res.code, 1, res.stderr);
  const bad = res.stdout.split('\n').filter((l) => l.includes('MISMATCH'));
  assert.equal(bad.length, 1, res.stdout);
  assert.match(bad[0], /^messages: MISMATCH/);
  assert.match(res.stdout, /^users: 2 rows, sha256 [0-9a-f]{16}, ok$/m);
  // a deleted row: counts differ
  sqlite(back, 'DELETE FROM usage_records WHERE id = (SELECT min(id) FROM usage_records)');
  res = await migrate(['--from', state.file, '--to', back, '--verify']);
  assert.equal(res.code, 1, res.stderr);
  assert.match(res.stdout, /^usage_records: MISMATCH: source \d+ rows .* destination \d+ rows/m);

  // refusals: usage, a missing source file, an unknown scheme
  assert.equal((await migrate(['--from', state.file])).code, 2);
  assert.equal((await migrate(['--from', `${state.file}.missing`, '--to', freshPg('c')])).code, 2);
  assert.equal((await migrate(['--from', 'mysql://x/y', '--to', back])).code, 2);
});
