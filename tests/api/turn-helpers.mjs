// turn-helpers.mjs - shared helpers for the turn/fault/crash API tests.
//
// Not a test file (no .test. in the name): imported by turns.test.mjs,
// faults.test.mjs and crash.test.mjs. Each test gets its own fake upstream,
// server and data directory through withEnv(); the server is stopped with
// SIGTERM afterwards and must exit 0 without sanitizer (ASan/UBSan/LSan)
// reports.

import assert from 'node:assert/strict';
import { startServer, Client, register, login } from '../lib/harness.mjs';
import { startFakeOpenAI, TITLE_PREFIX } from '../upstream/fake-openai.mjs';
import { readFixture } from '../lib/fixtures.mjs';
import { parseSse } from '../lib/sse.mjs';

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export const EMAIL = 'turns@example.com';
export const PASSWORD = 'correct horse battery';

// ---- expected answers, computed from the recorded streams ----------------------

// What a recorded /chat/completions stream says (choice 0 only): text,
// refusal, tool calls (merged by index), usage.
export function streamAnswer(buf) {
  let content = '';
  let refusal = '';
  const tools = new Map();
  let usage = null;
  let error = null;
  for (const ev of parseSse(buf)) {
    if (ev.data === '[DONE]') continue;
    const j = JSON.parse(ev.data);
    if (j.error) { error = j.error; continue; }
    if (j.usage) usage = j.usage;
    const ch = (j.choices ?? []).find((c) => (c.index ?? 0) === 0);
    const d = ch?.delta;
    if (!d) continue;
    if (typeof d.content === 'string') content += d.content;
    if (typeof d.refusal === 'string') refusal += d.refusal;
    for (const tc of d.tool_calls ?? []) {
      const t = tools.get(tc.index) ?? { index: tc.index, id: '', name: '', arguments: '' };
      if (tc.id) t.id = tc.id;
      if (tc.function?.name) t.name = tc.function.name;
      if (typeof tc.function?.arguments === 'string') t.arguments += tc.function.arguments;
      tools.set(tc.index, t);
    }
  }
  return {
    content, refusal, usage, error,
    tools: [...tools.values()].sort((a, b) => a.index - b.index),
  };
}

export function fixtureAnswer(rel) {
  return streamAnswer(readFixture(rel));
}

// The stored content parts the server should make of such an answer.
export function expectedParts(a) {
  const parts = [];
  if (a.content) parts.push({ type: 'text', text: a.content });
  if (a.refusal) parts.push({ type: 'refusal', text: a.refusal });
  for (const t of a.tools) parts.push({ type: 'tool_call', id: t.id, name: t.name, arguments: t.arguments });
  return parts;
}

// ---- reading events and messages ------------------------------------------------

export const parse = (ev) => JSON.parse(ev.data);

// Concatenated "content" of the delta events.
export function deltaText(events) {
  let s = '';
  for (const ev of events) {
    if (ev.event !== 'delta') continue;
    const d = parse(ev);
    if (typeof d.content === 'string') s += d.content;
  }
  return s;
}

export const deltas = (events) => events.filter((e) => e.event === 'delta');

// Text of a stored message (its "text" parts).
export function textOf(message) {
  return (message.content ?? []).filter((p) => p.type === 'text').map((p) => p.text).join('');
}

// Every event has an id, and they run from `first` up by one.
export function assertConsecutiveIds(events, first = 1) {
  const ids = events.map((e) => e.id);
  const want = events.map((_, i) => String(first + i));
  assert.deepEqual(ids, want, `event ids should be ${first}..${first + events.length - 1}`);
}

export function isTitleRequest(body) {
  return Array.isArray(body?.messages) && body.messages.some(
    (m) => m && m.role === 'system' && typeof m.content === 'string' && m.content.startsWith(TITLE_PREFIX));
}

// ---- following a turn in the background ---------------------------------------

export class Follower {
  constructor(client, url, { lastEventId, timeoutMs = 30000 } = {}) {
    this.events = [];
    this.ac = new AbortController();
    this.waiters = new Set();
    this.error = null;
    this.ended = false;
    this.timer = setTimeout(() => this.ac.abort(), timeoutMs);
    this.finished = (async () => {
      try {
        for await (const ev of client.sse(url, { lastEventId, signal: this.ac.signal, timeoutMs: 0 })) {
          this.events.push(ev);
          this.check();
        }
      } catch (err) {
        this.error = err;
      } finally {
        clearTimeout(this.timer);
        this.ended = true;
        this.check();
      }
      return this.events;
    })();
  }

  check() {
    for (const w of this.waiters) w();
  }

  // Resolves once pred(events) holds; rejects on timeout or if the stream ends first.
  waitFor(pred, { timeoutMs = 15000, what = 'condition' } = {}) {
    return new Promise((resolve, reject) => {
      const w = () => {
        if (pred(this.events)) {
          this.waiters.delete(w);
          clearTimeout(t);
          resolve(this.events);
        } else if (this.ended) {
          this.waiters.delete(w);
          clearTimeout(t);
          reject(new Error(`stream ended before ${what} (${this.events.length} events${this.error ? `, error ${this.error.message}` : ''}): ${summary(this.events)}`));
        }
      };
      const t = setTimeout(() => {
        this.waiters.delete(w);
        reject(new Error(`${what} not reached within ${timeoutMs} ms (${this.events.length} events): ${summary(this.events)}`));
      }, timeoutMs);
      this.waiters.add(w);
      w();
    });
  }

  waitDeltas(n, opts) {
    return this.waitFor((evs) => deltas(evs).length >= n, { what: `${n} deltas`, ...opts });
  }

  abort() {
    this.ac.abort();
    return this.finished;
  }
}

export function summary(events, max = 8) {
  const tail = events.slice(-max).map((e) => `${e.id}:${e.event}:${e.data.slice(0, 160)}`);
  return tail.join(' | ');
}

// ---- one server + fake upstream + signed-in client ------------------------------

export class Env {
  static async start({ env = {}, fake = true, baseURL, dataDir } = {}) {
    const e = new Env();
    e.env = env;
    e.fake = fake === true ? await startFakeOpenAI() : (fake || null);
    e.ownFake = fake === true;
    const upstream = baseURL ? { baseURL } : e.fake;
    e.upstream = upstream;
    e.srv = await startServer({ upstream, env, dataDir });
    e.c = new Client(e.srv.url);
    if (dataDir) await login(e.c, EMAIL, PASSWORD);
    else await register(e.c, EMAIL, PASSWORD);
    return e;
  }

  // Start another server on the same data directory (after this one stopped).
  async restart({ env = this.env } = {}) {
    const e = new Env();
    e.env = env;
    e.fake = this.fake;
    e.ownFake = false;
    e.upstream = this.upstream;
    e.srv = await startServer({ upstream: this.upstream, env, dataDir: this.srv.dataDir });
    e.c = new Client(e.srv.url);
    await login(e.c, EMAIL, PASSWORD);
    return e;
  }

  async newChat(body = {}) {
    const r = await this.c.post('/api/v1/chats', body);
    assert.equal(r.status, 201, r.text);
    return r.json.chat.id;
  }

  // POST a message; asserts 202 and the reply's shape unless expectStatus is given.
  async send(chatId, content, { model = 'gpt-4o', parentId, expectStatus = 202 } = {}) {
    const body = { content, model };
    if (parentId !== undefined) body.parent_id = parentId;
    const r = await this.c.post(`/api/v1/chats/${chatId}/messages`, body);
    assert.equal(r.status, expectStatus, `POST messages: ${r.text}`);
    if (expectStatus === 202) checkTurnReply(r.json);
    return r;
  }

  follow(url, opts) {
    return new Follower(this.c, typeof url === 'string' ? url : url.turn.events_url, opts);
  }

  // Follow a turn from the start until its "done" event (and the stream end).
  async run(reply, { timeoutMs = 20000 } = {}) {
    const f = this.follow(reply, { timeoutMs });
    const events = await f.finished;
    if (f.error) throw f.error;
    const done = events.at(-1);
    assert.ok(done && done.event === 'done', `the stream should end with "done": ${summary(events)}`);
    return events;
  }

  async getChat(chatId) {
    const r = await this.c.get(`/api/v1/chats/${chatId}`);
    assert.equal(r.status, 200, r.text);
    return r.json;
  }

  async message(chatId, id) {
    const chat = await this.getChat(chatId);
    const m = chat.messages.find((x) => x.id === id);
    assert.ok(m, `message ${id} should be in chat ${chatId}`);
    return m;
  }

  // Poll the stored message until pred(m) holds.
  async waitMessage(chatId, id, pred, { timeoutMs = 10000, what = 'condition' } = {}) {
    const deadline = Date.now() + timeoutMs;
    let m;
    for (;;) {
      m = await this.message(chatId, id);
      if (pred(m)) return m;
      if (Date.now() > deadline) throw new Error(`message ${id}: ${what} not reached within ${timeoutMs} ms; last: ${JSON.stringify(m).slice(0, 600)}`);
      await sleep(50);
    }
  }

  // Chat-completion requests the fake saw, title requests left out.
  answerRequests() {
    return this.fake.chatRequests().filter((b) => !isTitleRequest(b));
  }

  // SIGTERM; the server must exit 0 with no sanitizer report.
  async stop({ timeoutMs = 15000 } = {}) {
    const code = await this.srv.stop('SIGTERM', { timeoutMs });
    this.checkSanitizer();
    assert.equal(code, 0, `server exit code after SIGTERM; stderr tail:\n${this.srv.logs('stderr').slice(-15).join('\n')}`);
    return code;
  }

  checkSanitizer() {
    const rep = this.srv.sanitizerReport();
    assert.ok(rep === null, `sanitizer report in server output:\n${shortReport(rep)}`);
  }

  async closeFake() {
    if (this.ownFake && this.fake) await this.fake.close();
  }
}

// The head of a sanitizer report: the summary line and the first stacks.
export function shortReport(rep, maxLines = 40) {
  if (!rep) return rep;
  const lines = rep.split('\n');
  const summaryLine = lines.find((l) => l.startsWith('SUMMARY:'));
  const head = lines.slice(0, maxLines);
  if (lines.length > maxLines) head.push(`... (${lines.length - maxLines} more lines)`);
  if (summaryLine && !head.includes(summaryLine)) head.push(summaryLine);
  return head.join('\n');
}

function checkTurnReply(j) {
  assert.ok(j && j.assistant_message && j.turn, `202 body: ${JSON.stringify(j)}`);
  assert.equal(j.turn.id, j.assistant_message.id);
  assert.equal(j.turn.events_url, `/api/v1/turns/${j.turn.id}/events`);
  assert.equal(j.assistant_message.status, 'streaming');
  assert.equal(j.assistant_message.role, 'assistant');
}

/**
 * Run fn(env) with a fresh fake upstream, server and data dir; afterwards the
 * server gets SIGTERM and must exit 0 with no sanitizer report. The data
 * directory is removed when everything passed, kept (and named) otherwise.
 */
export async function withEnv(opts, fn) {
  const e = await Env.start(opts);
  let err = null;
  try {
    await fn(e);
  } catch (x) {
    err = x;
  }
  let stopErr = null;
  try {
    await e.stop();
  } catch (x) {
    stopErr = x;
  }
  await e.closeFake();
  if (err) {
    const rep = e.srv.sanitizerReport();
    if (rep && err instanceof Error) err.message += `\n(sanitizer report in server output:\n${shortReport(rep)})`;
    if (err instanceof Error) err.message += `\n(data dir kept: ${e.srv.dataDir})`;
    throw err;
  }
  if (stopErr) throw stopErr;
  e.srv.removeDataDir();
}
