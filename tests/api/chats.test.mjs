// chats.test.mjs - chats API: create/list/read/update/delete, validation,
// keyset pagination, branch switching, what reaches the provider (system
// prompt, params, visible branch only), and the authorization matrix
// (another user sees nothing; anonymous gets 401 on every protected route).
//
//   COAI_BIN=build-asan/server/chatopenaii COAI_SUITE=api node --test \
//     --test-concurrency=2 --test-reporter=./tests/lib/reporter.mjs tests/api/chats.test.mjs

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { startServer, Client, register, collectSse, defaultBinary } from '../lib/harness.mjs';
import { startFakeOpenAI, TEXT_STOP_SSE, TITLE_PREFIX } from '../upstream/fake-openai.mjs';
import { readFixture } from '../lib/fixtures.mjs';
import { parseSse } from '../lib/sse.mjs';

const PASSWORD = 'correct horse battery';
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const MISSING_ID = '01900000-0000-7000-8000-000000000000'; // well-formed, never issued
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// The assistant text the fake streams for an ordinary model name.
const FIXTURE_TEXT = (() => {
  let s = '';
  for (const ev of parseSse(readFixture(TEXT_STOP_SSE))) {
    if (ev.data === '[DONE]') continue;
    const c = JSON.parse(ev.data).choices?.[0]?.delta?.content;
    if (typeof c === 'string') s += c;
  }
  return s;
})();

// ---- helpers -------------------------------------------------------------------

// Start a fake upstream (optional) and a server, run fn, then stop both and
// fail on a sanitizer report or an unclean exit.
async function withServer({ upstream = true, env = {} } = {}, fn) {
  const fake = upstream ? await startFakeOpenAI() : null;
  let server;
  try {
    server = await startServer({ upstream: fake ?? undefined, env: { CHATOPENAII_TITLES: 'off', ...env } });
  } catch (err) {
    if (fake) await fake.close();
    throw err;
  }
  const clients = [];
  const newClient = () => { const c = new Client(server.url); clients.push(c); return c; };
  let failure;
  try {
    await fn({ server, fake, newClient });
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
  if (fake) await fake.close();
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
async function newUser(newClient, name = 'user') {
  const c = newClient();
  await register(c, `${name}${++userSeq}-${process.pid}@example.com`, PASSWORD);
  return c;
}

// Assert the uniform error shape {error:{code,message}} with the given status/code.
function assertError(res, status, code, what = '') {
  assert.equal(res.status, status, `${what}: status (body ${res.text})`);
  assert.ok(res.json && typeof res.json === 'object', `${what}: JSON error body (got ${res.text})`);
  assert.deepEqual(Object.keys(res.json), ['error'], `${what}: only "error" at top level`);
  assert.deepEqual(Object.keys(res.json.error).sort(), ['code', 'message'], `${what}: error keys`);
  assert.equal(res.json.error.code, code, `${what}: error code (message ${res.json.error.message})`);
  assert.equal(typeof res.json.error.message, 'string');
  assert.ok(res.json.error.message.length > 0, `${what}: non-empty message`);
  assert.match(res.headers['content-type'] ?? '', /^application\/json/);
}

async function createChat(c, body) {
  const res = await c.post('/api/v1/chats', body);
  assert.equal(res.status, 201, `create chat: ${res.text}`);
  return res.json.chat;
}

// Follow a turn's SSE stream until "done"; returns the done payload.
async function waitTurn(c, turnId) {
  const events = await collectSse(c, `/api/v1/turns/${turnId}/events`, {
    until: (ev) => ev.event === 'done', timeoutMs: 20000,
  });
  const done = events.at(-1);
  assert.equal(done?.event, 'done', `turn ${turnId}: stream ended without "done" (${events.map((e) => e.event).join(',')})`);
  return JSON.parse(done.data);
}

// POST a message (or edit/regenerate) and wait for its turn to complete.
async function turn(c, path, body, { expectStatus = 'complete' } = {}) {
  const res = await c.post(path, body);
  assert.equal(res.status, 202, `POST ${path}: ${res.text}`);
  const done = await waitTurn(c, res.json.turn.id);
  assert.equal(done.status, expectStatus, `turn status (done ${JSON.stringify(done)})`);
  return { ...res.json, done };
}
const send = (c, chatId, content, extra = {}) => turn(c, `/api/v1/chats/${chatId}/messages`, { content, ...extra });

const textOf = (content) => (typeof content === 'string' ? content
  : content.map((p) => p.text ?? '').join(''));

const isTitleRequest = (b) => Array.isArray(b.messages)
  && b.messages.some((m) => m.role === 'system' && textOf(m.content).startsWith(TITLE_PREFIX));
// Chat-completion bodies the fake received, title requests excluded.
const chatBodies = (fake) => fake.chatRequests().filter((b) => !isTitleRequest(b));

// ---- create ----------------------------------------------------------------------

test('create chat: defaults, and with title/model/system_prompt/params', async () => {
  await withServer({ upstream: false }, async ({ newClient }) => {
    const c = await newUser(newClient);
    const before = Date.now();

    const res = await c.post('/api/v1/chats');
    assert.equal(res.status, 201, res.text);
    const ch = res.json.chat;
    const ch0 = ch;
    assert.deepEqual(Object.keys(res.json), ['chat']);
    assert.match(ch.id, UUID);
    assert.equal(ch.title, null);
    assert.equal(ch.model, null);
    assert.equal(ch.system_prompt, null);
    assert.deepEqual(ch.params, {});
    assert.equal(ch.folder_id, null);
    assert.equal(ch.workspace_id, null);
    assert.equal(ch.current_leaf_id, null);
    assert.ok(Number.isInteger(ch.created_at) && ch.created_at >= before - 5000, `created_at ${ch.created_at}`);
    assert.equal(ch.updated_at, ch.created_at);

    // An empty object body is the same as none.
    const empty = await createChat(c, {});
    assert.equal(empty.title, null);
    assert.notEqual(empty.id, ch.id);

    const params = { temperature: 0.7, top_p: 0.5, max_tokens: 256, presence_penalty: -1.5, frequency_penalty: 2, seed: -2147483648 };
    const full = await createChat(c, {
      title: 'Trip to Lisbon ✈️', model: 'gpt-4o', system_prompt: 'You are terse.\nAnswer in French.', params,
    });
    assert.equal(full.title, 'Trip to Lisbon ✈️');
    assert.equal(full.model, 'gpt-4o');
    assert.equal(full.system_prompt, 'You are terse.\nAnswer in French.');
    assert.deepEqual(full.params, params);

    // Stored, not just echoed.
    const got = await c.get(`/api/v1/chats/${full.id}`);
    assert.equal(got.status, 200);
    assert.deepEqual(got.json.chat, full);
    assert.deepEqual(got.json.messages, []);
    // The list writes its JSON straight from the rows (no tree): every chat
    // there is the same object as its own GET, escapes and params included.
    const odd = await createChat(c, { title: 'quote " backslash \\ tab\t é 🙂', system_prompt: 'a\u0001b\r\n"c"', params: { seed: 7 } });
    const listed = await c.get('/api/v1/chats?limit=200');
    assert.equal(listed.status, 200);
    for (const ch of [full, odd, ch0]) {
      const one = await c.get(`/api/v1/chats/${ch.id}`);
      assert.deepEqual(listed.json.data.find((x) => x.id === ch.id), one.json.chat);
    }
    assert.equal(listed.json.data.find((x) => x.id === odd.id).system_prompt, 'a\u0001b\r\n"c"');

    // Boundaries that are allowed: a 200-byte title, "" meaning no title.
    const t200 = await createChat(c, { title: 'x'.repeat(200) });
    assert.equal(t200.title, 'x'.repeat(200));
    const blank = await createChat(c, { title: '', model: '' });
    assert.equal(blank.title, null);
    assert.equal(blank.model, null);
    const nulls = await createChat(c, { title: null, params: null });
    assert.equal(nulls.title, null);
    assert.deepEqual(nulls.params, {});
  });
});

test('create chat: validation errors are 400 with the error shape, and nothing is created', async () => {
  await withServer({ upstream: false }, async ({ newClient }) => {
    const c = await newUser(newClient);
    const cases = [
      [{ params: { temprature: 0.5 } }, 'invalid_params', 'unknown params key'],
      [{ params: { temperature: 2.5 } }, 'invalid_params', 'temperature > 2'],
      [{ params: { temperature: -0.1 } }, 'invalid_params', 'temperature < 0'],
      [{ params: { top_p: 1.01 } }, 'invalid_params', 'top_p > 1'],
      [{ params: { max_tokens: 0 } }, 'invalid_params', 'max_tokens < 1'],
      [{ params: { max_tokens: 1.5 } }, 'invalid_params', 'max_tokens not an integer'],
      [{ params: { seed: 2147483648 } }, 'invalid_params', 'seed out of int32'],
      [{ params: { temperature: '0.5' } }, 'invalid_params', 'temperature as a string'],
      [{ params: { temperature: true } }, 'invalid_params', 'temperature as a bool'],
      [{ params: 'temperature=1' }, 'invalid_request', 'params not an object'],
      [{ params: [0.5] }, 'invalid_request', 'params an array'],
      [{ title: 42 }, 'invalid_request', 'title a number'],
      [{ title: ['a'] }, 'invalid_request', 'title an array'],
      [{ model: { id: 'gpt-4o' } }, 'invalid_request', 'model an object'],
      [{ system_prompt: false }, 'invalid_request', 'system_prompt a bool'],
      [{ title: 'x'.repeat(201) }, 'invalid_request', 'title 201 bytes'],
      [{ title: 'é'.repeat(101) }, 'invalid_request', 'title 101 chars but 202 bytes'],
      [{ model: 'm'.repeat(201) }, 'invalid_request', 'model too long'],
      [{ system_prompt: 's'.repeat(64 * 1024 + 1) }, 'invalid_request', 'system_prompt too long'],
      [{ title: 'bell\u0007' }, 'invalid_request', 'title with a control char'],
      [{ title: 'esc\u001b[31m' }, 'invalid_request', 'title with ESC'],
      [{ model: 'gpt\u0000x' }, 'invalid_json', 'model with NUL (the JSON parser refuses \\u0000)'],
      [{ model: 'gpt-4o\u0001' }, 'invalid_request', 'model with a control char'],
    ];
    for (const [body, code, what] of cases) {
      assertError(await c.post('/api/v1/chats', body), 400, code, what);
    }
    // Not JSON / not an object.
    assertError(await c.request('POST', '/api/v1/chats', { body: '{"title":', headers: { 'content-type': 'application/json' } }),
      400, 'invalid_json', 'truncated JSON');
    assertError(await c.post('/api/v1/chats', ['title']), 400, 'invalid_json', 'array body');
    assertError(await c.request('POST', '/api/v1/chats', { body: '{"title":"a","title":"b"}', headers: { 'content-type': 'application/json' } }),
      400, 'invalid_json', 'duplicate keys');

    const list = await c.get('/api/v1/chats');
    assert.equal(list.status, 200);
    assert.deepEqual(list.json.data, [], 'a rejected create must not leave a chat behind');
  });
});

// ---- list ---------------------------------------------------------------------------

test('list: newest first, keyset pagination with limit+cursor, no duplicates or gaps', async () => {
  await withServer({ upstream: false }, async ({ newClient }) => {
    const c = await newUser(newClient);
    const created = [];
    for (let i = 0; i < 7; i++) created.push((await createChat(c, { title: `chat ${i}` })).id);
    const expected = [...created].reverse();

    // Default limit: everything, newest first, no next page.
    const all = await c.get('/api/v1/chats');
    assert.equal(all.status, 200);
    assert.deepEqual(Object.keys(all.json).sort(), ['data', 'next_cursor']);
    assert.deepEqual(all.json.data.map((x) => x.id), expected);
    assert.equal(all.json.next_cursor, null);
    assert.equal(all.json.data[0].title, 'chat 6');
    for (let i = 1; i < all.json.data.length; i++) {
      assert.ok(all.json.data[i - 1].updated_at >= all.json.data[i].updated_at, 'sorted by updated_at desc');
    }

    // limit=3: pages of 3, 3, 1.
    const pages = [];
    let cursor = null;
    for (let guard = 0; guard < 10; guard++) {
      const q = cursor ? `?limit=3&cursor=${encodeURIComponent(cursor)}` : '?limit=3';
      const res = await c.get(`/api/v1/chats${q}`);
      assert.equal(res.status, 200, res.text);
      pages.push(res.json.data.map((x) => x.id));
      cursor = res.json.next_cursor;
      if (cursor === null) break;
      assert.equal(typeof cursor, 'string');
    }
    assert.deepEqual(pages.map((p) => p.length), [3, 3, 1]);
    assert.deepEqual(pages.flat(), expected, 'pages concatenate to the full list (no duplicates, no gaps)');

    // limit equal to the count: one page, no cursor; limit 6: a second page of 1.
    const exact = await c.get('/api/v1/chats?limit=7');
    assert.equal(exact.json.data.length, 7);
    assert.equal(exact.json.next_cursor, null);
    const six = await c.get('/api/v1/chats?limit=6');
    assert.equal(six.json.data.length, 6);
    const rest = await c.get(`/api/v1/chats?limit=6&cursor=${encodeURIComponent(six.json.next_cursor)}`);
    assert.deepEqual(rest.json.data.map((x) => x.id), [created[0]]);
    assert.equal(rest.json.next_cursor, null);
    assert.equal((await c.get('/api/v1/chats?limit=1')).json.data.length, 1);
    assert.equal((await c.get('/api/v1/chats?limit=200')).status, 200);

    // Chats created in the same millisecond: the id breaks the tie, and the
    // cursor must neither repeat nor skip within a tied timestamp.
    const burst = (await Promise.all(Array.from({ length: 12 }, (_, i) => createChat(c, { title: `burst ${i}` }))));
    const order = [...burst, ...all.json.data]
      .sort((x, y) => (y.updated_at - x.updated_at) || (y.id < x.id ? -1 : y.id > x.id ? 1 : 0))
      .map((x) => x.id);
    assert.equal(new Set(order).size, 19);
    const ts = burst.map((x) => x.updated_at);
    const tied = ts.length - new Set(ts).size;
    const seen = [];
    cursor = null;
    for (let guard = 0; guard < 20; guard++) {
      const q = cursor ? `?limit=2&cursor=${encodeURIComponent(cursor)}` : '?limit=2';
      const res = await c.get(`/api/v1/chats${q}`);
      assert.equal(res.status, 200, res.text);
      seen.push(...res.json.data.map((x) => x.id));
      cursor = res.json.next_cursor;
      if (cursor === null) break;
    }
    assert.deepEqual(seen, order, `pages of 2 over 19 chats (${tied} timestamp ties in the burst)`);

    // Invalid limits and cursors.
    for (const l of ['0', '201', '-1', 'abc', '3x', '', '1.5', '99999999999999999999']) {
      assertError(await c.get(`/api/v1/chats?limit=${encodeURIComponent(l)}`), 400, 'invalid_query', `limit=${l}`);
    }
    for (const cur of ['garbage', '123', '123_', '123_not-an-id', `abc_${created[0]}`, `_${created[0]}`,
      `123-${created[0]}`, `123_${created[0].toUpperCase()}`]) {
      assertError(await c.get(`/api/v1/chats?cursor=${encodeURIComponent(cur)}`), 400, 'invalid_query', `cursor=${cur}`);
    }
  });
});

test('list: sending a message to an older chat moves it to the top', async () => {
  await withServer({}, async ({ newClient }) => {
    const c = await newUser(newClient);
    const a = await createChat(c, { title: 'A' });
    const b = await createChat(c, { title: 'B' });
    const cc = await createChat(c, { title: 'C' });
    let ids = (await c.get('/api/v1/chats')).json.data.map((x) => x.id);
    assert.deepEqual(ids, [cc.id, b.id, a.id]);

    await sleep(15); // a later millisecond than the last create
    await send(c, a.id, 'bump this chat');
    const list = (await c.get('/api/v1/chats')).json.data;
    assert.deepEqual(list.map((x) => x.id), [a.id, cc.id, b.id]);
    assert.ok(list[0].updated_at > cc.updated_at, 'activity bumps updated_at');

    // Paging still sees every chat exactly once after the reorder.
    const p1 = await c.get('/api/v1/chats?limit=2');
    const p2 = await c.get(`/api/v1/chats?limit=2&cursor=${encodeURIComponent(p1.json.next_cursor)}`);
    assert.deepEqual([...p1.json.data, ...p2.json.data].map((x) => x.id), [a.id, cc.id, b.id]);
    assert.equal(p2.json.next_cursor, null);

    // Renaming is not "activity": B stays where it is.
    const r = await c.patch(`/api/v1/chats/${b.id}`, { title: 'B renamed' });
    assert.equal(r.status, 200);
    ids = (await c.get('/api/v1/chats')).json.data.map((x) => x.id);
    assert.deepEqual(ids, [a.id, cc.id, b.id]);
  });
});

// ---- read ---------------------------------------------------------------------------

test('GET chat returns the chat and its messages; GET messages lists them', async () => {
  await withServer({}, async ({ newClient }) => {
    const c = await newUser(newClient);
    const ch = await createChat(c, { title: 'read me', model: 'gpt-4o' });
    const t = await send(c, ch.id, 'What is the weather?');

    const res = await c.get(`/api/v1/chats/${ch.id}`);
    assert.equal(res.status, 200);
    assert.deepEqual(Object.keys(res.json).sort(), ['chat', 'messages']);
    const { chat, messages } = res.json;
    assert.equal(chat.id, ch.id);
    assert.equal(chat.title, 'read me');
    assert.equal(chat.current_leaf_id, t.assistant_message.id);
    assert.equal(messages.length, 2);
    const [u, a] = messages;
    assert.equal(u.id, t.user_message.id);
    assert.equal(u.role, 'user');
    assert.equal(u.parent_id, null);
    assert.equal(u.chat_id, ch.id);
    assert.deepEqual(u.content, [{ type: 'text', text: 'What is the weather?' }]);
    assert.equal(u.status, 'complete');
    assert.equal(a.id, t.assistant_message.id);
    assert.equal(a.role, 'assistant');
    assert.equal(a.parent_id, u.id);
    assert.equal(a.model, 'gpt-4o');
    assert.equal(a.status, 'complete');
    assert.equal(a.error, null);
    assert.equal(textOf(a.content), FIXTURE_TEXT);
    assert.ok(a.usage && Number.isInteger(a.usage.completion_tokens), `usage ${JSON.stringify(a.usage)}`);
    // What the stream's "done" showed is what is stored.
    for (const k of ['id', 'parent_id', 'content', 'status', 'usage', 'model', 'error']) {
      assert.deepEqual(a[k], t.done.message[k], `stored ${k} matches the done event`);
    }

    const list = await c.get(`/api/v1/chats/${ch.id}/messages`);
    assert.equal(list.status, 200);
    assert.deepEqual(Object.keys(list.json), ['data']);
    assert.deepEqual(list.json.data, messages);

    // Unknown / malformed ids.
    assertError(await c.get(`/api/v1/chats/${MISSING_ID}`), 404, 'not_found', 'missing chat');
    assertError(await c.get('/api/v1/chats/not-a-uuid'), 404, 'not_found', 'malformed id');
    assertError(await c.get(`/api/v1/chats/${MISSING_ID}/messages`), 404, 'not_found', 'missing chat messages');
    const empty = await createChat(c);
    assert.deepEqual((await c.get(`/api/v1/chats/${empty.id}/messages`)).json, { data: [] });
  });
});

// ---- update ---------------------------------------------------------------------------

test('PATCH: rename, model, system_prompt, params, set to null; partial; unknown field 400', async () => {
  await withServer({ upstream: false }, async ({ newClient }) => {
    const c = await newUser(newClient);
    const ch = await createChat(c, { title: 'old', model: 'gpt-4o', system_prompt: 'be brief', params: { temperature: 1 } });
    const url = `/api/v1/chats/${ch.id}`;
    const patch = async (body) => {
      const res = await c.patch(url, body);
      assert.equal(res.status, 200, `PATCH ${JSON.stringify(body)}: ${res.text}`);
      assert.deepEqual(res.json, { chat: (await c.get(url)).json.chat }, 'PATCH reply equals the stored chat');
      return res.json.chat;
    };

    let got = await patch({ title: 'new title' });
    assert.equal(got.title, 'new title');
    assert.equal(got.model, 'gpt-4o', 'untouched fields stay');
    assert.equal(got.system_prompt, 'be brief');
    assert.deepEqual(got.params, { temperature: 1 });

    got = await patch({ model: 'gpt-4.1' });
    assert.equal(got.model, 'gpt-4.1');
    assert.equal(got.title, 'new title');

    got = await patch({ system_prompt: 'You are a pirate.' });
    assert.equal(got.system_prompt, 'You are a pirate.');

    got = await patch({ params: { max_tokens: 50, seed: 7 } });
    assert.deepEqual(got.params, { max_tokens: 50, seed: 7 }, 'params are replaced as a whole');

    got = await patch({ title: 'both', model: 'gpt-4o-mini' });
    assert.equal(got.title, 'both');
    assert.equal(got.model, 'gpt-4o-mini');

    got = await patch({ title: null, model: null, system_prompt: null, params: null });
    assert.equal(got.title, null);
    assert.equal(got.model, null);
    assert.equal(got.system_prompt, null);
    assert.deepEqual(got.params, {});
    assert.equal(got.id, ch.id);
    assert.equal(got.created_at, ch.created_at);

    got = await patch({ title: 'again', params: { temperature: 0 } });
    assert.equal(got.title, 'again');
    assert.deepEqual(got.params, { temperature: 0 });
    got = await patch({ title: '' });
    assert.equal(got.title, null, '"" clears the title');

    // Rejections leave the chat as it was.
    const snapshot = (await c.get(url)).json.chat;
    assertError(await c.patch(url, { name: 'x' }), 400, 'invalid_request', 'unknown field');
    assertError(await c.patch(url, { title: 'ok', folder: 'x' }), 400, 'invalid_request', 'unknown field with a valid one');
    assertError(await c.patch(url, { title: 5 }), 400, 'invalid_request', 'title wrong type');
    assertError(await c.patch(url, { title: 'x'.repeat(201) }), 400, 'invalid_request', 'title too long');
    assertError(await c.patch(url, { title: 'tab\tok but \u0002 not' }), 400, 'invalid_request', 'title control char');
    assertError(await c.patch(url, { params: { temperature: 9 } }), 400, 'invalid_params', 'params out of range');
    assertError(await c.patch(url, { params: { top_k: 3 } }), 400, 'invalid_params', 'params unknown key');
    assertError(await c.patch(url, { title: 'would apply', params: { temperature: 9 } }), 400, 'invalid_params', 'mixed valid+invalid');
    assertError(await c.patch(url), 400, 'invalid_request', 'no body');
    assertError(await c.patch(url, { current_leaf_id: 42 }), 400, 'invalid_request', 'leaf wrong type');
    assert.deepEqual((await c.get(url)).json.chat, snapshot, 'rejected PATCHes change nothing');

    assertError(await c.patch(`/api/v1/chats/${MISSING_ID}`, { title: 'x' }), 404, 'not_found', 'PATCH missing chat');
    assertError(await c.patch('/api/v1/chats/nope', { title: 'x' }), 404, 'not_found', 'PATCH malformed id');
  });
});

test('PATCH checks the chat first (404), then the body (documented validation order)', async () => {
  await withServer({}, async ({ newClient }) => {
    const a = await newUser(newClient, 'alice');
    const b = await newUser(newClient, 'bob');
    const ch = await createChat(a, { title: 'alice chat' });
    const t = await send(a, ch.id, 'alice message');
    const own = await createChat(b, { title: 'bob chat' });
    const bt = await send(b, own.id, 'bob message');
    // docs/openapi.yaml, updateChat: "The chat id is checked first (404), then the body."
    const bodies = [
      ['a leaf of that chat', { current_leaf_id: t.user_message.id }],
      ['a leaf of my own chat', { current_leaf_id: bt.user_message.id }],
      ['an unknown field', { name: 'x' }],
      ['a field of the wrong type', { title: 5 }],
      ['bad params', { params: { temperature: 9 } }],
      ['no body', undefined],
    ];
    const got = [];
    const want = [];
    for (const [what, body] of bodies) {
      for (const [whose, id] of [["alice's chat", ch.id], ['a missing chat', MISSING_ID]]) {
        const r = await b.request('PATCH', `/api/v1/chats/${id}`, body === undefined ? {} : { json: body });
        got.push(`${whose}, ${what}: ${r.status} ${r.json?.error?.code}`);
        want.push(`${whose}, ${what}: 404 not_found`);
      }
    }
    assert.deepEqual(got, want);
    const after = (await a.get(`/api/v1/chats/${ch.id}`)).json.chat;
    assert.equal(after.title, 'alice chat');
    assert.equal(after.current_leaf_id, t.assistant_message.id);
  });
});

test('titles: an untitled chat gets one after its first answer; a titled chat keeps its own', async () => {
  await withServer({ env: { CHATOPENAII_TITLES: 'on' } }, async ({ newClient, fake }) => {
    const c = await newUser(newClient);
    const untitled = await createChat(c);
    await send(c, untitled.id, 'Plan a weekend trip to Lisbon in May');
    let title = null;
    for (let i = 0; i < 100 && title === null; i++) {
      title = (await c.get(`/api/v1/chats/${untitled.id}`)).json.chat.title;
      if (title === null) await sleep(50);
    }
    assert.equal(title, 'Plan a weekend trip', 'the title the provider suggested (fake: first 4 words)');
    const titleReqs = fake.chatRequests().filter(isTitleRequest);
    assert.equal(titleReqs.length, 1, 'one title request');
    assert.ok(JSON.stringify(titleReqs[0]).includes('Plan a weekend trip to Lisbon in May'));

    // A titled chat is left alone: no title request.
    fake.reset();
    const titled = await createChat(c, { title: 'Mine' });
    await send(c, titled.id, 'Something else entirely here');
    await sleep(300);
    assert.equal((await c.get(`/api/v1/chats/${titled.id}`)).json.chat.title, 'Mine');
    assert.equal(fake.chatRequests().length, chatBodies(fake).length, 'no title request for a titled chat');
  });
});

// ---- delete --------------------------------------------------------------------------

test('DELETE chat: 204 then 404; its messages go with it', async () => {
  await withServer({}, async ({ newClient }) => {
    const c = await newUser(newClient);
    const keep = await createChat(c, { title: 'keep' });
    const ch = await createChat(c, { title: 'doomed' });
    const t = await send(c, ch.id, 'hello');

    const del = await c.delete(`/api/v1/chats/${ch.id}`);
    assert.equal(del.status, 204);
    assert.equal(del.text, '', '204 has no body');

    assertError(await c.get(`/api/v1/chats/${ch.id}`), 404, 'not_found', 'GET after delete');
    assertError(await c.get(`/api/v1/chats/${ch.id}/messages`), 404, 'not_found', 'messages after delete');
    assertError(await c.delete(`/api/v1/chats/${ch.id}`), 404, 'not_found', 'second DELETE');
    assertError(await c.patch(`/api/v1/chats/${ch.id}`, { title: 'x' }), 404, 'not_found', 'PATCH after delete');
    assertError(await c.post(`/api/v1/chats/${ch.id}/messages`, { content: 'x' }), 404, 'not_found', 'POST message after delete');
    assertError(await c.get(`/api/v1/turns/${t.turn.id}/events`), 404, 'not_found', 'turn of a deleted chat');
    assertError(await c.delete(`/api/v1/chats/${MISSING_ID}`), 404, 'not_found', 'DELETE never-existing chat');

    const list = (await c.get('/api/v1/chats')).json.data.map((x) => x.id);
    assert.deepEqual(list, [keep.id]);
  });
});

// ---- messages, branches --------------------------------------------------------------------

test('branches: edit and regenerate build a tree; PATCH current_leaf_id shows the newest leaf below', async () => {
  await withServer({}, async ({ newClient, fake }) => {
    const c = await newUser(newClient);
    const ch = await createChat(c, { title: 'tree' });
    const base = `/api/v1/chats/${ch.id}`;

    const t1 = await send(c, ch.id, 'Q1 first question');
    const u1 = t1.user_message; const a1 = t1.assistant_message;
    const t2 = await send(c, ch.id, 'Q2 original wording');
    const u2 = t2.user_message; const a2 = t2.assistant_message;
    assert.equal(u2.parent_id, a1.id, 'a message without parent_id continues the current leaf');

    fake.reset();
    const r = await turn(c, `${base}/messages/${a2.id}/regenerate`, undefined);
    assert.equal(r.user_message, null, 'regenerate makes no user message');
    const a2b = r.assistant_message;
    assert.equal(a2b.parent_id, u2.id, 'regenerated answer is a sibling of the old one');
    assert.notEqual(a2b.id, a2.id);
    let bodies = chatBodies(fake);
    assert.equal(bodies.length, 1);
    assert.deepEqual(bodies[0].messages.map((m) => [m.role, m.content]),
      [['user', 'Q1 first question'], ['assistant', FIXTURE_TEXT], ['user', 'Q2 original wording']],
      'regenerate sends the path up to the question, not the old answer');

    fake.reset();
    const e = await turn(c, `${base}/messages/${u2.id}/edit`, { content: 'Q2 edited wording' });
    const u2b = e.user_message; const a2c = e.assistant_message;
    assert.equal(u2b.parent_id, a1.id, 'an edit is a sibling of the edited message');
    assert.deepEqual(u2b.content, [{ type: 'text', text: 'Q2 edited wording' }]);
    assert.equal(a2c.parent_id, u2b.id);
    bodies = chatBodies(fake);
    assert.equal(bodies.length, 1);
    assert.deepEqual(bodies[0].messages.map((m) => [m.role, m.content]),
      [['user', 'Q1 first question'], ['assistant', FIXTURE_TEXT], ['user', 'Q2 edited wording']],
      'after an edit the old branch is not sent');
    assert.ok(!JSON.stringify(bodies[0]).includes('Q2 original'), 'old wording absent from the request');

    let chat = (await c.get(base)).json;
    assert.equal(chat.chat.current_leaf_id, a2c.id, 'the new branch is shown');
    assert.equal(chat.messages.length, 7);
    assert.deepEqual(new Set(chat.messages.map((m) => m.id)),
      new Set([u1.id, a1.id, u2.id, a2.id, a2b.id, u2b.id, a2c.id]));

    const setLeaf = async (target) => {
      const res = await c.patch(base, { current_leaf_id: target });
      assert.equal(res.status, 200, res.text);
      assert.equal((await c.get(base)).json.chat.current_leaf_id, res.json.chat.current_leaf_id);
      return res.json.chat.current_leaf_id;
    };
    assert.equal(await setLeaf(u2.id), a2b.id, 'middle message u2 -> its newest answer');
    assert.equal(await setLeaf(a1.id), a2c.id, 'a1 -> newest child u2b -> a2c');
    assert.equal(await setLeaf(u1.id), a2c.id, 'root -> newest path');
    assert.equal(await setLeaf(a2.id), a2.id, 'a leaf is itself');

    // Continuing from the old branch sends that branch only.
    fake.reset();
    const t3 = await send(c, ch.id, 'Q3 on the old branch');
    assert.equal(t3.user_message.parent_id, a2.id);
    bodies = chatBodies(fake);
    assert.equal(bodies.length, 1);
    assert.deepEqual(bodies[0].messages.map((m) => m.content),
      ['Q1 first question', FIXTURE_TEXT, 'Q2 original wording', FIXTURE_TEXT, 'Q3 on the old branch']);
    assert.ok(!JSON.stringify(bodies[0]).includes('Q2 edited'), 'edited branch absent');

    // Invalid leaves: another chat's message, unknown id, malformed id.
    const other = await createChat(c, { title: 'other' });
    const ot = await send(c, other.id, 'in another chat');
    const leafBefore = (await c.get(base)).json.chat.current_leaf_id;
    assertError(await c.patch(base, { current_leaf_id: ot.assistant_message.id }), 400, 'invalid_leaf', 'leaf of another chat');
    assertError(await c.patch(base, { current_leaf_id: ot.user_message.id }), 400, 'invalid_leaf', 'user msg of another chat');
    assertError(await c.patch(base, { current_leaf_id: MISSING_ID }), 400, 'invalid_leaf', 'unknown leaf');
    assertError(await c.patch(base, { current_leaf_id: 'zzz' }), 400, 'invalid_leaf', 'malformed leaf');
    assert.equal((await c.get(base)).json.chat.current_leaf_id, leafBefore, 'rejected switch changes nothing');
    assert.equal((await c.get(`/api/v1/chats/${other.id}`)).json.chat.current_leaf_id, ot.assistant_message.id);

    // Edit/regenerate validation.
    assertError(await c.post(`${base}/messages/${a1.id}/edit`, { content: 'x' }), 400, 'invalid_message', 'edit an answer');
    assertError(await c.post(`${base}/messages/${u1.id}/edit`, {}), 400, 'invalid_request', 'edit without content');
    assertError(await c.post(`${base}/messages/${ot.user_message.id}/edit`, { content: 'x' }), 404, 'not_found', 'edit msg of another chat');
    assertError(await c.post(`${base}/messages/${ot.assistant_message.id}/regenerate`), 404, 'not_found', 'regenerate msg of another chat');
    assertError(await c.post(`${base}/messages/${MISSING_ID}/regenerate`), 404, 'not_found', 'regenerate unknown');
    assertError(await c.post(`${base}/messages`, { content: 'x', parent_id: ot.assistant_message.id }), 400, 'invalid_parent', 'parent in another chat');
    assertError(await c.post(`${base}/messages`, { content: 'x', parent_id: u1.id }), 400, 'invalid_parent', 'user answering user');
    chat = (await c.get(base)).json;
    assert.equal(chat.messages.length, 9, 'rejected requests add no messages');
  });
});

test('system prompt and params reach the provider; defaults when unset', async () => {
  await withServer({}, async ({ newClient, fake }) => {
    const c = await newUser(newClient);
    const ch = await createChat(c, {
      model: 'gpt-4o', system_prompt: 'You are a pirate. Say arr.',
      params: { temperature: 0.3, max_tokens: 77, top_p: 0.9, seed: 42, presence_penalty: null },
    });
    fake.reset();
    await send(c, ch.id, 'Hello there');
    let bodies = chatBodies(fake);
    assert.equal(bodies.length, 1);
    let b = bodies[0];
    assert.equal(b.model, 'gpt-4o');
    assert.equal(b.stream, true);
    assert.deepEqual(b.stream_options, { include_usage: true });
    assert.equal(b.temperature, 0.3);
    assert.equal(b.max_tokens, 77);
    assert.equal(b.top_p, 0.9);
    assert.equal(b.seed, 42);
    assert.ok(!('presence_penalty' in b), 'a null param is not sent');
    assert.deepEqual(b.messages, [
      { role: 'system', content: 'You are a pirate. Say arr.' },
      { role: 'user', content: 'Hello there' },
    ]);
    const req = fake.requests.find((r) => r.path === '/v1/chat/completions');
    assert.equal(req.method, 'POST');
    assert.equal(req.headers.authorization, 'Bearer sk-test');

    // Changes apply to the next turn: new params replace the old ones, the
    // system prompt goes away when cleared, the model follows the chat.
    const p = await c.patch(`/api/v1/chats/${ch.id}`, { system_prompt: null, params: { max_tokens: 5 }, model: 'gpt-4.1' });
    assert.equal(p.status, 200, p.text);
    fake.reset();
    await send(c, ch.id, 'Second');
    bodies = chatBodies(fake);
    assert.equal(bodies.length, 1);
    b = bodies[0];
    assert.equal(b.model, 'gpt-4.1');
    assert.equal(b.max_tokens, 5);
    assert.ok(!('temperature' in b) && !('seed' in b) && !('top_p' in b), `old params gone: ${JSON.stringify(b)}`);
    assert.deepEqual(b.stream_options, { include_usage: true });
    assert.deepEqual(b.messages.map((m) => m.role), ['user', 'assistant', 'user'], 'no system message once cleared');
    assert.deepEqual(b.messages.map((m) => m.content), ['Hello there', FIXTURE_TEXT, 'Second']);

    // A per-message model override wins for that turn only.
    fake.reset();
    const o = await send(c, ch.id, 'Third', { model: 'gpt-4o-mini' });
    assert.equal(chatBodies(fake)[0].model, 'gpt-4o-mini');
    assert.equal(o.done.message.model, 'gpt-4o-mini');
    assert.equal((await c.get(`/api/v1/chats/${ch.id}`)).json.chat.model, 'gpt-4.1');

    // A chat without a model uses the server default, and no params are sent.
    const plain = await createChat(c);
    fake.reset();
    const t = await send(c, plain.id, 'Defaults?');
    b = chatBodies(fake)[0];
    assert.equal(b.model, 'gpt-4o-mini');
    assert.equal(t.assistant_message.model, 'gpt-4o-mini');
    assert.deepEqual(Object.keys(b).sort(), ['messages', 'model', 'stream', 'stream_options']);
    assert.deepEqual(b.messages, [{ role: 'user', content: 'Defaults?' }]);
  });
});

// ---- authorization --------------------------------------------------------------------

test('another user gets 404 for everything of mine and lists none of my chats', async () => {
  await withServer({ env: { CHATOPENAII_PERSIST_MS: '10' } }, async ({ newClient, fake }) => {
    const a = await newUser(newClient, 'alice');
    const b = await newUser(newClient, 'bob');
    const ch = await createChat(a, { title: 'private', system_prompt: 'secret prompt' });
    const t = await send(a, ch.id, 'alice secret question');
    const u = t.user_message; const am = t.assistant_message;
    const snapshot = (await a.get(`/api/v1/chats/${ch.id}`)).json;

    const cid = ch.id;
    const attempts = [
      ['GET', `/api/v1/chats/${cid}`],
      ['PATCH', `/api/v1/chats/${cid}`, { title: 'pwned' }],
      ['DELETE', `/api/v1/chats/${cid}`],
      ['GET', `/api/v1/chats/${cid}/messages`],
      ['POST', `/api/v1/chats/${cid}/messages`, { content: 'bob was here' }],
      ['POST', `/api/v1/chats/${cid}/messages/${u.id}/edit`, { content: 'bob edit' }],
      ['POST', `/api/v1/chats/${cid}/messages/${am.id}/regenerate`],
      ['POST', `/api/v1/chats/${cid}/messages/${u.id}/regenerate`],
      ['GET', `/api/v1/turns/${am.id}/events`],
      ['POST', `/api/v1/turns/${am.id}/stop`],
    ];
    fake.reset();
    for (const [method, p, body] of attempts) {
      const res = await b.request(method, p, body !== undefined ? { json: body } : {});
      assertError(res, 404, 'not_found', `bob ${method} ${p}`);
      assert.ok(!res.text.includes('alice') && !res.text.includes('secret'), `no leak in ${res.text}`);
    }
    // Switching the branch of Alice's chat: refused exactly as for a chat that
    // does not exist (no way to tell the two apart).
    const leafTry = await b.patch(`/api/v1/chats/${cid}`, { current_leaf_id: u.id });
    const leafMissing = await b.patch(`/api/v1/chats/${MISSING_ID}`, { current_leaf_id: u.id });
    assert.ok(leafTry.status === 404 || leafTry.status === 400, `leaf switch on alice's chat: ${leafTry.status} ${leafTry.text}`);
    assert.equal(leafTry.status, leafMissing.status);
    assert.deepEqual(leafTry.json, leafMissing.json);

    // The SSE route refuses too when asked as an event stream.
    await assert.rejects(collectSse(b, `/api/v1/turns/${am.id}/events`, { timeoutMs: 5000 }), (err) => err.status === 404);

    // A live turn of Alice's cannot be stopped or followed by Bob either.
    const slowChat = await createChat(a, { model: 'slow:40:200' });
    const live = await a.post(`/api/v1/chats/${slowChat.id}/messages`, { content: 'long answer please' });
    assert.equal(live.status, 202, live.text);
    assertError(await b.post(`/api/v1/turns/${live.json.turn.id}/stop`), 404, 'not_found', 'bob stops a live turn');
    assertError(await b.get(`/api/v1/turns/${live.json.turn.id}/events`), 404, 'not_found', 'bob follows a live turn');
    const stop = await a.post(`/api/v1/turns/${live.json.turn.id}/stop`);
    assert.equal(stop.status, 202, `alice can stop her own live turn: ${stop.text}`);
    const done = await waitTurn(a, live.json.turn.id);
    assert.equal(done.status, 'stopped');

    // Bob's own chat cannot reach Alice's messages either.
    const bc = await createChat(b, { title: 'bob chat' });
    const bbase = `/api/v1/chats/${bc.id}`;
    assertError(await b.post(`${bbase}/messages/${u.id}/edit`, { content: 'x' }), 404, 'not_found', 'edit via own chat');
    assertError(await b.post(`${bbase}/messages/${am.id}/regenerate`), 404, 'not_found', 'regenerate via own chat');
    assertError(await b.post(`${bbase}/messages`, { content: 'x', parent_id: am.id }), 400, 'invalid_parent', 'parent from alice');
    assertError(await b.patch(bbase, { current_leaf_id: am.id }), 400, 'invalid_leaf', 'leaf from alice');

    const bl = await b.get('/api/v1/chats');
    assert.equal(bl.status, 200);
    assert.deepEqual(bl.json.data.map((x) => x.id), [bc.id], 'bob lists only his chat');
    // Bob's cursor made from Alice's chat does not reveal it either.
    const cur = `${ch.updated_at + 10_000_000}_${'f'.repeat(8)}-ffff-7fff-bfff-${'f'.repeat(12)}`;
    assert.deepEqual((await b.get(`/api/v1/chats?cursor=${encodeURIComponent(cur)}`)).json.data.map((x) => x.id), [bc.id]);

    // Nothing of Alice's changed, and nothing reached the provider for Bob.
    const after = (await a.get(`/api/v1/chats/${ch.id}`)).json;
    assert.deepEqual(after, snapshot);
    assert.deepEqual(chatBodies(fake).filter((x) => JSON.stringify(x).includes('bob')), []);
    const al = (await a.get('/api/v1/chats')).json.data.map((x) => x.id);
    assert.ok(al.includes(ch.id) && !al.includes(bc.id));
  });
});

test('anonymous (and a signed-out cookie) gets 401 on every route but register and login', async () => {
  const routes = execFileSync(defaultBinary, ['routes'], { encoding: 'utf8' })
    .trim().split('\n').map((l) => l.trim().split(/\s+/));
  assert.ok(routes.length >= 20, `routes: ${routes.length}`);
  const open = new Set(['POST /api/v1/auth/register', 'POST /api/v1/auth/login', 'GET /api/v1/config']);
  for (const o of open) assert.ok(routes.some(([m, p]) => `${m} ${p}` === o), `${o} is in the route table`);
  const guarded = routes.filter(([m, p]) => !open.has(`${m} ${p}`));
  assert.equal(guarded.length, routes.length - open.size);

  await withServer({}, async ({ newClient }) => {
    // Real ids, so a 401 is not a 404 in disguise.
    const a = await newUser(newClient);
    const ch = await createChat(a, { title: 'x' });
    const t = await send(a, ch.id, 'hi');
    const sessions = await a.get('/api/v1/sessions');
    assert.equal(sessions.status, 200);
    const sid = sessions.json.data?.[0]?.id;
    assert.ok(sid, `a session id: ${sessions.text}`);
    const fill = (p) => p
      .replace('/chats/{id}', `/chats/${ch.id}`)
      .replace('/turns/{id}', `/turns/${t.turn.id}`)
      .replace('/sessions/{id}', `/sessions/${sid}`)
      .replace('{mid}', t.user_message.id)
      // ids of resources the anonymous caller must not reach either
      .replace('/tokens/{id}', `/tokens/${ch.id}`)
      .replace('/admin/keys/{id}', `/admin/keys/${ch.id}`)
      .replace('/admin/users/{id}', `/admin/users/${sid}`);

    // A cookie that was valid once: sign in, keep the cookie, sign out.
    const gone = await newUser(newClient, 'gone');
    const stale = gone.cookieHeader();
    assert.match(stale, /coai_session=/);
    assert.equal((await gone.post('/api/v1/auth/logout')).status, 204);

    const anon = newClient();
    const bodies = {
      'POST /api/v1/me/password': { current_password: PASSWORD, new_password: 'another password' },
      'PUT /api/v1/connection': { base_url: 'http://127.0.0.1:9/v1', api_key: 'sk-anon' },
      'POST /api/v1/chats': { title: 'anon' },
      'PATCH /api/v1/chats/{id}': { title: 'anon' },
    };
    for (const [method, pattern] of guarded) {
      const p = fill(pattern);
      assert.ok(!p.includes('{'), `all placeholders filled: ${p}`);
      const json = method === 'GET' || method === 'DELETE' ? undefined
        : bodies[`${method} ${pattern}`] ?? { content: 'anon' };
      const opts = json === undefined ? {} : { json };
      assertError(await anon.request(method, p, opts), 401, 'unauthorized', `anonymous ${method} ${pattern}`);
      assertError(await anon.request(method, p, { ...opts, headers: { cookie: stale } }), 401, 'unauthorized',
        `signed-out cookie ${method} ${pattern}`);
      assertError(await anon.request(method, p, { ...opts, headers: { cookie: 'coai_session=forged-token-value' } }), 401,
        'unauthorized', `forged cookie ${method} ${pattern}`);
    }

    // None of it had an effect.
    const got = await a.get(`/api/v1/chats/${ch.id}`);
    assert.equal(got.status, 200);
    assert.equal(got.json.chat.title, 'x');
    assert.equal(got.json.messages.length, 2);
    assert.deepEqual((await a.get('/api/v1/chats')).json.data.map((x) => x.id), [ch.id]);
    assert.equal((await a.get('/api/v1/connection')).json.connection.source, 'server');
  });
});
