// tail.test.mjs - GET /api/v1/chats/{id}?tail=N: the end of the visible
// branch (plus the siblings of its messages, for the version arrows), so a
// long chat paints before the whole of it is downloaded.
//
//   COAI_BIN=build-asan/server/chatopenaii COAI_SUITE=api node --test \
//     --test-reporter=./tests/lib/reporter.mjs tests/api/tail.test.mjs

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, Client, register, collectSse } from '../lib/harness.mjs';
import { startFakeOpenAI } from '../upstream/fake-openai.mjs';

const PASSWORD = 'correct horse battery';

async function withServer(fn) {
  const fake = await startFakeOpenAI();
  let server;
  try {
    server = await startServer({ upstream: fake, env: { CHATOPENAII_TITLES: 'off' } });
  } catch (err) {
    await fake.close();
    throw err;
  }
  const clients = [];
  const newClient = () => { const c = new Client(server.url); clients.push(c); return c; };
  let failure;
  try {
    await fn({ newClient });
  } catch (err) {
    failure = err;
  }
  for (const c of clients) c.close();
  let code;
  try {
    code = await server.stop();
  } catch (err) {
    failure ??= err;
  }
  await fake.close();
  const report = server.sanitizerReport();
  server.removeDataDir();
  if (failure) {
    if (report) failure.message += `\n--- sanitizer report ---\n${report}`;
    throw failure;
  }
  assert.equal(report, null, `sanitizer report in server output:\n${report}`);
  assert.equal(code, 0, `server exit code after SIGTERM\n${server.logs().slice(-20).join('\n')}`);
}

let userSeq = 0;
async function newUser(newClient) {
  const c = newClient();
  await register(c, `tail${++userSeq}-${process.pid}@example.com`, PASSWORD);
  return c;
}

function assertError(res, status, code, what) {
  assert.equal(res.status, status, `${what}: status (body ${res.text})`);
  assert.deepEqual(Object.keys(res.json), ['error'], `${what}: only "error" at top level`);
  assert.equal(res.json.error.code, code, `${what}: error code`);
}

async function turn(c, path, body) {
  const res = await c.post(path, body);
  assert.equal(res.status, 202, `POST ${path}: ${res.text}`);
  const events = await collectSse(c, `/api/v1/turns/${res.json.turn.id}/events`, {
    until: (ev) => ev.event === 'done', timeoutMs: 20000,
  });
  assert.equal(events.at(-1)?.event, 'done');
  return res.json;
}

test('tail=N: the last N of the visible branch plus their siblings, oldest first', async () => {
  await withServer(async ({ newClient }) => {
    const c = await newUser(newClient);
    const { chat } = (await c.post('/api/v1/chats', { title: 'tail' })).json;
    const base = `/api/v1/chats/${chat.id}`;
    const t1 = await turn(c, `${base}/messages`, { content: 'Q1' });
    const t2 = await turn(c, `${base}/messages`, { content: 'Q2' });
    const r = await turn(c, `${base}/messages/${t2.assistant_message.id}/regenerate`);
    const t3 = await turn(c, `${base}/messages`, { content: 'Q3' });
    const e = await turn(c, `${base}/messages/${t3.user_message.id}/edit`, { content: 'Q3 edited' });
    const [u1, a1, u2, a2, a2b, u3, a3, u3b, a3b] = [t1.user_message, t1.assistant_message,
      t2.user_message, t2.assistant_message, r.assistant_message, t3.user_message,
      t3.assistant_message, e.user_message, e.assistant_message].map((m) => m.id);
    // visible branch: u1 a1 u2 a2b u3b a3b; off it: a2 (a2b's sibling), u3 (u3b's), a3 (below u3)

    const full = await c.get(base);
    assert.equal(full.status, 200);
    assert.deepEqual(Object.keys(full.json), ['chat', 'messages'], 'without tail: unchanged shape');
    assert.equal(full.json.messages.length, 9);
    assert.equal(full.json.chat.current_leaf_id, a3b);
    const byId = new Map(full.json.messages.map((m) => [m.id, m]));
    const order = full.json.messages.map((m) => m.id);
    const expect = (ids) => order.filter((id) => ids.includes(id));

    const check = async (n, ids, partial) => {
      const res = await c.get(`${base}?tail=${n}`);
      assert.equal(res.status, 200, res.text);
      assert.deepEqual(Object.keys(res.json), ['chat', 'messages', 'partial', 'message_count']);
      assert.deepEqual(res.json.chat, full.json.chat);
      assert.deepEqual(res.json.messages.map((m) => m.id), expect(ids), `tail=${n}: ids, oldest first`);
      for (const m of res.json.messages) assert.deepEqual(m, byId.get(m.id), 'same message objects');
      assert.equal(res.json.partial, partial, `tail=${n}: partial`);
      assert.equal(res.json.message_count, 9, `tail=${n}: message_count`);
    };
    await check(1, [a3b], true);
    await check(2, [u3b, a3b, u3], true);
    await check(3, [a2b, u3b, a3b, a2, u3], true);
    // the whole branch and its siblings: a3 (below the other version of Q3) is still left out
    await check(6, [u1, a1, u2, a2b, u3b, a3b, a2, u3], true);
    await check(500, [u1, a1, u2, a2b, u3b, a3b, a2, u3], true);

    // switching to the other version of Q3 shows its branch
    assert.equal((await c.patch(base, { current_leaf_id: u3 })).status, 200);
    const res = await c.get(`${base}?tail=2`);
    assert.deepEqual(res.json.messages.map((m) => m.id), expect([u3, a3, u3b]));
    assert.equal(res.json.partial, true);
  });
});

test('tail larger than the chat: everything, partial false; invalid tail 400; another user 404', async () => {
  await withServer(async ({ newClient }) => {
    const c = await newUser(newClient);
    const { chat } = (await c.post('/api/v1/chats', {})).json;
    const base = `/api/v1/chats/${chat.id}`;

    let res = await c.get(`${base}?tail=5`); // no messages yet
    assert.equal(res.status, 200, res.text);
    assert.deepEqual(res.json.messages, []);
    assert.equal(res.json.partial, false);
    assert.equal(res.json.message_count, 0);

    await turn(c, `${base}/messages`, { content: 'one' });
    await turn(c, `${base}/messages`, { content: 'two' });
    const full = (await c.get(base)).json;
    for (const n of [4, 10, 500]) {
      res = await c.get(`${base}?tail=${n}`);
      assert.equal(res.status, 200);
      assert.deepEqual(res.json.messages, full.messages, `tail=${n}: all of it`);
      assert.equal(res.json.partial, false);
      assert.equal(res.json.message_count, 4);
    }
    res = await c.get(`${base}?tail=3`);
    assert.equal(res.json.messages.length, 3);
    assert.deepEqual(res.json.messages, full.messages.slice(1));
    assert.equal(res.json.partial, true);

    for (const q of ['0', '501', '-1', 'abc', '', '1.5', '2x', '%202', '+2', '0x10', '99999999999999999999', '%00']) {
      assertError(await c.get(`${base}?tail=${q}`), 400, 'invalid_query', `tail=${q}`);
    }

    const b = await newUser(newClient);
    assertError(await b.get(`${base}?tail=2`), 404, 'not_found', 'another user\'s chat');
    assertError(await c.get('/api/v1/chats/01900000-0000-7000-8000-000000000000?tail=2'), 404, 'not_found', 'unknown chat');
    const anon = newClient();
    assert.equal((await anon.get(`${base}?tail=2`)).status, 401);
  });
});
