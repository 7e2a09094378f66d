// load.mjs BASE_URL SECONDS USERS OUT_JSON - the mixed load of the soak.
//
// USERS virtual users, one account each, act like people in the web app and
// like SDK clients of the /v1 gateway, one action at a time with a think
// time of THINK_MIN..THINK_MAX ms between actions (a moderate, steady rate:
// the soak measures memory, not throughput). Each action is picked at random
// (weights in ACTIONS) from:
//   sign-in cycle (login, then log the old session out), /me, /sessions,
//   /models, /config; list chats, open a chat, create / rename / delete a
//   chat; send a message and follow its answer to the end (SSE), the same
//   with a second connection following the live turn (resuming with
//   Last-Event-ID), stop a turn mid-stream, disconnect mid-stream and resume
//   later, regenerate an answer; /v1/chat/completions streaming and not,
//   /v1/models, a /v1 stream abandoned mid-way; and 4xx traffic (bad JSON,
//   unknown ids, no session, bad API token).
// Answers come from the fake provider (recorded fixtures, paced).
//
// Every response's status is counted per action; a status outside the
// action's expected set is "unexpected", as is a turn that does not end the
// way the action expects. OUT_JSON gets the counts and a per-10-s timeline of
// finished requests. Exit 0 when the load ran (errors are in the counts).
import http from 'node:http';
import fs from 'node:fs';
import crypto from 'node:crypto';

const [baseArg, secsArg, usersArg, outFile] = process.argv.slice(2);
const base = new URL(baseArg);
const SECONDS = Number(secsArg);
const USERS = Number(usersArg);
const THINK_MIN = Number(process.env.SOAK_THINK_MIN_MS ?? 300);
const THINK_MAX = Number(process.env.SOAK_THINK_MAX_MS ?? 1500);
const PASSWORD = 'soak-password-1';
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const rnd = (n) => Math.floor(Math.random() * n);
const pick = (a) => a[rnd(a.length)];

// ---- counting -------------------------------------------------------------------

const counts = {};        // "action status" -> n
const unexpected = {};    // "action what" -> n
const samples = [];       // first few unexpected answers, for the report
const timeline = [];      // requests finished per 10 s
const outcomes = {};      // "turn kind: outcome" -> n
let requests = 0;
const t0 = Date.now();
const endAt = t0 + SECONDS * 1000;

function count(action, status) {
  const k = `${action} ${status}`;
  counts[k] = (counts[k] ?? 0) + 1;
  requests++;
  const b = Math.floor((Date.now() - t0) / 10000);
  timeline[b] = (timeline[b] ?? 0) + 1;
}
function bad(action, what, detail = '') {
  const k = `${action} ${what}`;
  unexpected[k] = (unexpected[k] ?? 0) + 1;
  if (samples.length < 12) samples.push(`${k}: ${String(detail).slice(0, 300)}`);
}
function outcome(kind, what) {
  const k = `${kind}: ${what}`;
  outcomes[k] = (outcomes[k] ?? 0) + 1;
}

// ---- HTTP -------------------------------------------------------------------------

// Sends one request and reads the whole answer; counts its status under
// `action` and checks it against `expect` (a list of statuses).
function request(u, action, method, path, { body, raw, expect = [200], auth, cookie = true } = {}) {
  return new Promise((resolve) => {
    const headers = { accept: 'application/json' };
    if (cookie && u.cookie) headers.cookie = u.cookie;
    if (auth) headers.authorization = auth;
    let data;
    if (raw !== undefined || body !== undefined) {
      data = Buffer.from(raw !== undefined ? raw : JSON.stringify(body));
      headers['content-type'] = 'application/json';
      headers['content-length'] = data.length;
    }
    if (method !== 'GET' && !path.startsWith('/v1/')) {
      headers['x-requested-with'] = 'chatopenaii';
      headers.origin = base.origin;
    }
    const req = http.request({ host: base.hostname, port: base.port, method, path, headers, agent: u.agent }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        count(action, res.statusCode);
        if (!expect.includes(res.statusCode)) bad(action, `status ${res.statusCode}`, `${method} ${path}: ${text}`);
        for (const sc of res.headers['set-cookie'] ?? []) {
          const m = /^coai_session=([^;]*)/.exec(sc);
          if (m) u.cookie = m[1] ? `coai_session=${m[1]}` : '';
        }
        let json = null;
        try { json = text ? JSON.parse(text) : null; } catch { /* not JSON */ }
        resolve({ status: res.statusCode, text, json });
      });
      res.on('error', (e) => { count(action, 'reset'); bad(action, 'transport', e.message); resolve({ status: 0, text: '' }); });
    });
    req.on('error', (e) => { count(action, 'transport'); bad(action, 'transport', `${method} ${path}: ${e.message}`); resolve({ status: 0, text: '' }); });
    req.setTimeout(60000, () => req.destroy(new Error('timeout 60 s')));
    req.end(data);
  });
}

// Follows a turn's events. Options: lastEventId; stopAfter (send Stop after
// that many deltas); abortAfter (close the connection after that many
// deltas); onDeltas(n) called as deltas arrive. Resolves
// {status, done (the done event's status or null), deltas, lastId, aborted}.
function follow(u, action, turnId, { lastEventId, stopAfter, abortAfter, onDelta } = {}) {
  return new Promise((resolve) => {
    const headers = { accept: 'text/event-stream', cookie: u.cookie };
    if (lastEventId) headers['last-event-id'] = String(lastEventId);
    const r = { status: 0, done: null, deltas: 0, lastId: lastEventId ?? null, aborted: false };
    let buf = '';
    let finished = false;
    const finish = () => { if (!finished) { finished = true; resolve(r); } };
    const req = http.request({ host: base.hostname, port: base.port, method: 'GET', path: `/api/v1/turns/${turnId}/events`, headers, agent: u.sseAgent }, (res) => {
      r.status = res.statusCode;
      count(action, res.statusCode);
      if (res.statusCode !== 200) {
        bad(action, `status ${res.statusCode}`, turnId);
        res.resume();
        res.on('end', finish);
        return;
      }
      res.setEncoding('utf8');
      res.on('data', (chunk) => {
        buf += chunk;
        let i;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          let ev = 'message';
          let data = '';
          for (const line of block.split('\n')) {
            if (line.startsWith('id:')) r.lastId = line.slice(3).trim();
            else if (line.startsWith('event:')) ev = line.slice(6).trim();
            else if (line.startsWith('data:')) data += line.slice(5).trim();
          }
          if (ev === 'delta') {
            r.deltas++;
            if (onDelta) onDelta(r.deltas);
            if (abortAfter && r.deltas >= abortAfter && !r.aborted) {
              r.aborted = true;
              req.destroy();
              finish();
              return;
            }
            if (stopAfter && r.deltas === stopAfter) {
              request(u, 'turn stop', 'POST', `/api/v1/turns/${turnId}/stop`, { body: {}, expect: [200, 202] });
            }
          } else if (ev === 'done') {
            try { r.done = JSON.parse(data).status; } catch { r.done = 'unparsable'; }
          }
        }
      });
      res.on('end', finish);
      res.on('error', () => finish());
      res.on('close', finish);
    });
    req.on('error', (e) => {
      if (!r.aborted) { count(action, 'transport'); bad(action, 'transport', e.message); }
      finish();
    });
    req.setTimeout(60000, () => req.destroy(new Error('timeout 60 s')));
    req.end();
  });
}

// ---- virtual users ----------------------------------------------------------------

// Models a chat asks the fake provider for: recorded answers (paced by the
// provider), and a generated drip.
const SHORT_MODELS = ['gpt-4o', 'gpt-4o', 'gpt-4o-mini', 'fixture:openai-python_tool-calls-parallel-2',
  'fixture:openai-python_refusal', 'fixture:openai-python_structured-json-content', 'slow:20:30'];
const LONG_MODEL = 'fixture:openai-python_json-object-long'; // 181 events, about 3 s
const PROMPTS = ['What is the weather in San Francisco?', 'Summarise the plot of Hamlet in three lines.',
  'Écris un haïku sur la mer 🌊', 'Explain TCP slow start to a five-year-old.', 'Как дела?',
  'Write a SQL query that lists the ten newest orders.'];
const MAX_CHATS = 5;
const MAX_TURNS = 8;

function newUser(i) {
  return {
    i, email: `soak${i}@example.com`, cookie: '', token: '',
    agent: new http.Agent({ keepAlive: true, maxSockets: 6, timeout: 30000 }),
    sseAgent: new http.Agent({ keepAlive: false }),
    chats: [], // {id, turns, busy: Promise|null, lastAnswer}
    background: new Set(),
  };
}

async function createChat(u) {
  const r = await request(u, 'chat create', 'POST', '/api/v1/chats',
    { body: { title: `soak chat ${rnd(1e6)}`, model: pick(SHORT_MODELS) }, expect: [201] });
  if (r.status === 201 && r.json?.chat?.id) {
    const ch = { id: r.json.chat.id, turns: 0, busy: null, lastAnswer: null };
    u.chats.push(ch);
    return ch;
  }
  return null;
}

async function deleteChat(u, ch) {
  u.chats.splice(u.chats.indexOf(ch), 1);
  await request(u, 'chat delete', 'DELETE', `/api/v1/chats/${ch.id}`, { expect: [204] });
}

// An idle chat that can take another turn (made or recycled as needed).
async function idleChat(u) {
  for (const ch of u.chats) {
    if (!ch.busy && ch.turns >= MAX_TURNS) { await deleteChat(u, ch); break; }
  }
  const idle = u.chats.filter((c) => !c.busy);
  if (idle.length && (u.chats.length >= MAX_CHATS || Math.random() < 0.8)) return pick(idle);
  if (u.chats.length >= MAX_CHATS) return null;
  return createChat(u);
}

// Sends a message; resolves the 202 body or null.
async function send(u, ch, model) {
  const r = await request(u, 'message send', 'POST', `/api/v1/chats/${ch.id}/messages`,
    { body: { content: pick(PROMPTS), model }, expect: [202] });
  if (r.status !== 202 || !r.json?.turn?.id) return null;
  ch.turns++;
  ch.lastAnswer = r.json.turn.id;
  return r.json;
}

function expectDone(kind, res, want) {
  outcome(kind, res.done ?? (res.aborted ? 'aborted' : 'no done event'));
  if (!want.includes(res.done)) bad(kind, `ended ${res.done}`, `deltas ${res.deltas}`);
}

const ACTIONS = [
  // [weight, name, fn]
  [12, 'list chats', async (u) => { await request(u, 'chats list', 'GET', '/api/v1/chats'); }],
  [8, 'open chat', async (u) => {
    const ch = u.chats.length ? pick(u.chats) : await createChat(u);
    if (ch) await request(u, 'chat get', 'GET', `/api/v1/chats/${ch.id}`);
  }],
  [3, 'me', async (u) => { await request(u, 'me', 'GET', '/api/v1/me'); }],
  [2, 'sessions', async (u) => { await request(u, 'sessions list', 'GET', '/api/v1/sessions'); }],
  [2, 'models', async (u) => { await request(u, 'models', 'GET', '/api/v1/models'); }],
  [1, 'config', async (u) => { await request(u, 'config', 'GET', '/api/v1/config', { cookie: false }); }],
  [2, 'sign-in cycle', async (u) => {
    const old = u.cookie;
    const r = await request(u, 'login', 'POST', '/api/v1/auth/login', { body: { email: u.email, password: PASSWORD }, cookie: false });
    if (r.status === 200) {
      const fresh = u.cookie;
      u.cookie = old;
      await request(u, 'logout', 'POST', '/api/v1/auth/logout', { body: {}, expect: [204] });
      u.cookie = fresh;
    }
  }],
  [3, 'create chat', async (u) => {
    if (u.chats.length >= MAX_CHATS) {
      const idle = u.chats.find((c) => !c.busy);
      if (idle) await deleteChat(u, idle);
    }
    if (u.chats.length < MAX_CHATS) await createChat(u);
  }],
  [3, 'rename chat', async (u) => {
    const ch = u.chats.length ? pick(u.chats) : null;
    if (ch) await request(u, 'chat rename', 'PATCH', `/api/v1/chats/${ch.id}`, { body: { title: `renamed ${rnd(1e6)}` } });
  }],
  [2, 'delete chat', async (u) => {
    const idle = u.chats.filter((c) => !c.busy);
    if (idle.length > 1) await deleteChat(u, pick(idle));
  }],
  [10, 'turn', async (u) => {
    const ch = await idleChat(u);
    if (!ch) return;
    const t = await send(u, ch, pick(SHORT_MODELS));
    if (!t) return;
    const f = await follow(u, 'turn events', t.turn.id);
    expectDone('turn', f, ['complete']);
  }],
  [4, 'turn, two followers', async (u) => {
    const ch = await idleChat(u);
    if (!ch) return;
    const t = await send(u, ch, LONG_MODEL);
    if (!t) return;
    let second = null;
    const first = follow(u, 'turn events', t.turn.id, {
      onDelta: (n) => {
        if (n === 20 && !second) second = follow(u, 'turn events (2nd)', t.turn.id, { lastEventId: rnd(2) ? undefined : 5 });
      },
    });
    const a = await first;
    expectDone('turn followed twice (1st)', a, ['complete']);
    if (second) expectDone('turn followed twice (2nd)', await second, ['complete']);
  }],
  [3, 'stop mid-stream', async (u) => {
    const ch = await idleChat(u);
    if (!ch) return;
    const t = await send(u, ch, LONG_MODEL);
    if (!t) return;
    const f = await follow(u, 'turn events', t.turn.id, { stopAfter: 10 + rnd(40) });
    expectDone('turn stopped', f, ['stopped']);
  }],
  [3, 'disconnect mid-stream', async (u) => {
    const ch = await idleChat(u);
    if (!ch) return;
    const t = await send(u, ch, LONG_MODEL);
    if (!t) return;
    const f = await follow(u, 'turn events', t.turn.id, { abortAfter: 5 + rnd(40) });
    outcome('turn disconnected', f.aborted ? 'disconnected' : `ended ${f.done}`);
    // the tab comes back a little later and resumes where it was
    ch.busy = (async () => {
      await sleep(500 + rnd(3000));
      const g = await follow(u, 'turn events (resume)', t.turn.id, { lastEventId: f.lastId });
      expectDone('turn resumed', g, ['complete']);
      ch.busy = null;
    })();
  }],
  [2, 'regenerate', async (u) => {
    const ch = u.chats.find((c) => !c.busy && c.lastAnswer && c.turns < MAX_TURNS);
    if (!ch) return;
    const r = await request(u, 'message regenerate', 'POST', `/api/v1/chats/${ch.id}/messages/${ch.lastAnswer}/regenerate`,
      { body: { model: pick(SHORT_MODELS) }, expect: [202] });
    if (r.status !== 202 || !r.json?.turn?.id) return;
    ch.turns++;
    ch.lastAnswer = r.json.turn.id;
    expectDone('turn regenerated', await follow(u, 'turn events', r.json.turn.id), ['complete']);
  }],
  [5, 'gateway stream', async (u) => {
    const r = await request(u, 'v1 chat stream', 'POST', '/v1/chat/completions', {
      auth: `Bearer ${u.token}`, cookie: false,
      body: { model: 'gpt-4o', stream: true, stream_options: { include_usage: true }, messages: [{ role: 'user', content: pick(PROMPTS) }] },
    });
    if (r.status === 200 && !r.text.endsWith('data: [DONE]\n\n')) bad('v1 chat stream', 'incomplete', r.text.slice(-200));
  }],
  [5, 'gateway json', async (u) => {
    const r = await request(u, 'v1 chat', 'POST', '/v1/chat/completions', {
      auth: `Bearer ${u.token}`, cookie: false,
      body: { model: 'gpt-4o', messages: [{ role: 'user', content: pick(PROMPTS) }] },
    });
    if (r.status === 200 && r.json?.object !== 'chat.completion') bad('v1 chat', 'not a completion', r.text.slice(0, 200));
  }],
  [2, 'gateway models', async (u) => { await request(u, 'v1 models', 'GET', '/v1/models', { auth: `Bearer ${u.token}`, cookie: false }); }],
  [1, 'gateway stream abandoned', async (u) => {
    // an SDK client that goes away mid-stream
    await new Promise((resolve) => {
      const data = Buffer.from(JSON.stringify({ model: LONG_MODEL, stream: true, messages: [{ role: 'user', content: 'long' }] }));
      const req = http.request({ host: base.hostname, port: base.port, method: 'POST', path: '/v1/chat/completions', agent: u.sseAgent,
        headers: { authorization: `Bearer ${u.token}`, 'content-type': 'application/json', 'content-length': data.length } }, (res) => {
        count('v1 chat stream (abandoned)', res.statusCode);
        if (res.statusCode !== 200) bad('v1 chat stream (abandoned)', `status ${res.statusCode}`);
        let n = 0;
        const stopAt = 3 + rnd(60);
        res.on('data', () => { if (++n >= stopAt) { req.destroy(); resolve(); } });
        res.on('end', resolve);
        res.on('close', resolve);
      });
      req.on('error', resolve);
      req.end(data);
    });
  }],
  [4, '4xx', async (u) => {
    const fake = '0123456789abcdef0123456789abcdef';
    switch (rnd(8)) {
      case 0: await request(u, '4xx bad json', 'POST', '/api/v1/chats', { raw: '{"title":', expect: [400] }); break;
      case 1: await request(u, '4xx unknown chat', 'GET', `/api/v1/chats/${fake}`, { expect: [404] }); break;
      case 2: await request(u, '4xx unknown turn stop', 'POST', `/api/v1/turns/${fake}/stop`, { body: {}, expect: [404] }); break;
      case 3: await request(u, '4xx unknown turn events', 'GET', `/api/v1/turns/${fake}/events`, { expect: [404] }); break;
      case 4: await request(u, '4xx no session', 'GET', '/api/v1/me', { cookie: false, expect: [401] }); break;
      case 5: await request(u, '4xx v1 bad json', 'POST', '/v1/chat/completions', { auth: `Bearer ${u.token}`, cookie: false, raw: '{"model":', expect: [400] }); break;
      // a made-up token each time (typos, revoked tokens, scanners): each is looked up once
      case 6: await request(u, '4xx v1 bad token', 'GET', '/v1/models', { auth: `Bearer coai-${crypto.randomBytes(24).toString('hex')}`, cookie: false, expect: [401] }); break;
      default: await request(u, '4xx unknown message', 'POST', `/api/v1/chats/${u.chats[0]?.id ?? fake}/messages/${fake}/regenerate`, { body: {}, expect: [404] }); break;
    }
  }],
];
const TOTAL_WEIGHT = ACTIONS.reduce((s, a) => s + a[0], 0);
function pickAction() {
  let x = Math.random() * TOTAL_WEIGHT;
  for (const a of ACTIONS) { if ((x -= a[0]) < 0) return a; }
  return ACTIONS[0];
}

async function setup(u) {
  let r = await request(u, 'register', 'POST', '/api/v1/auth/register', { body: { email: u.email, password: PASSWORD, name: `Soak ${u.i}` }, cookie: false, expect: [201] });
  if (r.status !== 201) throw new Error(`register ${u.email}: ${r.status} ${r.text}`);
  r = await request(u, 'token create', 'POST', '/api/v1/tokens', { body: { name: 'soak' }, expect: [201] });
  if (r.status !== 201) throw new Error(`token: ${r.status} ${r.text}`);
  u.token = r.json.secret;
}

async function run(u) {
  await sleep(rnd(THINK_MAX)); // spread the users out
  while (Date.now() < endAt) {
    const [, name, fn] = pickAction();
    try {
      await fn(u);
    } catch (e) {
      bad(name, 'exception', e.stack);
    }
    await sleep(THINK_MIN + rnd(THINK_MAX - THINK_MIN));
  }
  // let chats with a resume pending finish
  await Promise.all(u.chats.map((c) => c.busy).filter(Boolean));
}

const users = Array.from({ length: USERS }, (_, i) => newUser(i + 1));
for (const u of users) await setup(u);
process.stdout.write('started\n');
await Promise.all(users.map(run));
const elapsed = (Date.now() - t0) / 1000;
fs.writeFileSync(outFile, JSON.stringify({ elapsed, requests, counts, unexpected, samples, outcomes, timeline: Array.from(timeline, (x) => x ?? 0) }, null, 1));
for (const u of users) { u.agent.destroy(); u.sseAgent.destroy(); }
process.exit(0);
