// respcache.test.mjs - kept answers of GET /api/v1/chats (http/respcache.c):
// a repeated list is answered from the loop (coai_respcache_hits_total
// counts it), and never shows anything a worker would not have read: every
// write (create, rename, delete, a streamed answer, sign-out, a revoked
// session) is seen at once; another user or session never gets the answer;
// the per-user API limit still applies; CHATOPENAII_RESPONSE_CACHE_MB=0
// turns it off.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, Client, register } from '../lib/harness.mjs';
import { startFakeOpenAI } from '../upstream/fake-openai.mjs';

const PASSWORD = 'correct horse battery';
// The suite runs again on PostgreSQL (tests/run-api.sh), where several
// instances may share the database: no answer is kept there, and every
// check below except the hit count holds the same.
const PG = Boolean(process.env.COAI_TEST_PG_URL);

async function hits(c) {
  const r = await c.get('/metrics', { headers: { accept: 'text/plain' } });
  assert.equal(r.status, 200);
  const m = /^coai_respcache_hits_total (\d+)$/m.exec(r.text);
  assert.ok(m, 'coai_respcache_hits_total on /metrics');
  return Number(m[1]);
}

async function withServer(env, fn) {
  const fake = await startFakeOpenAI();
  const srv = await startServer({ upstream: fake, env: { CHATOPENAII_TITLES: 'off', ...env } });
  const clients = [];
  const newClient = () => { const c = new Client(srv.url); clients.push(c); return c; };
  try {
    await fn({ srv, newClient });
  } finally {
    for (const c of clients) c.close();
    const code = await srv.stop();
    await fake.close();
    const report = srv.sanitizerReport();
    srv.removeDataDir();
    assert.equal(report, null, `sanitizer report:\n${report}`);
    assert.equal(code, 0);
  }
}

const titles = (r) => r.json.data.map((x) => x.title);

test('kept chat list: hits counted, every write seen at once, per session', async () => {
  await withServer({}, async ({ newClient }) => {
    const a = newClient();
    await register(a, 'cache-a@example.com', PASSWORD);
    const b = newClient();
    await register(b, 'cache-b@example.com', PASSWORD);
    const ids = [];
    for (const t of ['one', 'two']) ids.push((await a.post('/api/v1/chats', { title: t })).json.chat.id);

    const h0 = await hits(a);
    const first = await a.get('/api/v1/chats?limit=50');
    assert.deepEqual(titles(first), ['two', 'one']);
    const again = await a.get('/api/v1/chats?limit=50');
    assert.equal(again.text, first.text);
    assert.equal(await hits(a), PG ? 0 : h0 + 1, PG ? 'no kept answers on PostgreSQL' : 'the second identical list is a hit');
    assert.equal(again.headers['content-type'], 'application/json; charset=utf-8');
    assert.equal(again.headers['cache-control'], 'no-store');
    assert.ok(again.headers['x-request-id'], 'a hit has its own request id');

    // other query, other user: their own answers, never a's
    const other = await b.get('/api/v1/chats?limit=50');
    assert.deepEqual(other.json.data, []);
    assert.deepEqual(titles(await a.get('/api/v1/chats?limit=1')), ['two']);

    // each kind of write is visible in the very next list
    await a.post('/api/v1/chats', { title: 'three' });
    assert.deepEqual(titles(await a.get('/api/v1/chats?limit=50')), ['three', 'two', 'one']);
    assert.equal((await a.patch(`/api/v1/chats/${ids[0]}`, { title: 'uno' })).status, 200);
    assert.deepEqual(titles(await a.get('/api/v1/chats?limit=50')).sort(), ['three', 'two', 'uno']);
    assert.equal((await a.delete(`/api/v1/chats/${ids[1]}`)).status, 204);
    assert.deepEqual(titles(await a.get('/api/v1/chats?limit=50')).sort(), ['three', 'uno']);
    // a streamed answer moves its chat to the top (updated_at)
    const before = (await a.get('/api/v1/chats?limit=50')).json.data;
    assert.notEqual(before[0].id, ids[0]);
    const send = await a.post(`/api/v1/chats/${ids[0]}/messages`, { content: 'hi' });
    assert.equal(send.status, 202, send.text.slice(0, 300));
    for (let i = 0; ; i++) { // until the answer is stored complete
      const msgs = (await a.get(`/api/v1/chats/${ids[0]}/messages`)).json.data;
      if (msgs.length === 2 && msgs[1].status === 'complete') break;
      assert.ok(i < 200, 'the answer completes');
      await new Promise((r) => setTimeout(r, 25));
    }
    const after = (await a.get('/api/v1/chats?limit=50')).json.data;
    assert.equal(after[0].id, ids[0]);
    assert.ok(after[0].current_leaf_id, 'the answer is the chat\'s leaf');

    // sign-out: the cookie that had a kept list is refused at once
    const cookie = a.cookieHeader();
    await a.get('/api/v1/chats?limit=50');
    await a.get('/api/v1/chats?limit=50');
    assert.equal((await a.post('/api/v1/auth/logout')).status, 204);
    const stale = await b.get('/api/v1/chats?limit=50', { headers: { cookie } });
    assert.equal(stale.status, 401, 'a signed-out session must not be served its kept list');
  });
});

test('kept chat list: a revoked session is refused, and the API limit counts hits', async () => {
  await withServer({ CHATOPENAII_RATE_API: '8' }, async ({ newClient }) => {
    const a = newClient();
    await register(a, 'cache-c@example.com', PASSWORD);
    const a2 = newClient();
    assert.equal((await a2.post('/api/v1/auth/login', { email: 'cache-c@example.com', password: PASSWORD })).status, 200);
    await a2.get('/api/v1/chats');
    await a2.get('/api/v1/chats');
    const mine = (await a.get('/api/v1/sessions')).json.data;
    const other = mine.find((s) => !s.current);
    assert.equal((await a.delete(`/api/v1/sessions/${other.id}`)).status, 204);
    assert.equal((await a2.get('/api/v1/chats')).status, 401, 'revoked session');

    // 8 a minute in all: earlier requests used 3; the rest hit the cache
    const statuses = [];
    for (let i = 0; i < 8; i++) statuses.push((await a.get('/api/v1/chats')).status);
    assert.ok(statuses.includes(429), `limit applies to kept answers: ${statuses}`);
    const r = await a.get('/api/v1/chats');
    assert.equal(r.status, 429);
    assert.equal(r.json.error.code, 'rate_limited');
    assert.ok(Number(r.headers['retry-after']) > 0);
  });
});

test('CHATOPENAII_RESPONSE_CACHE_MB=0: no kept answers', async () => {
  await withServer({ CHATOPENAII_RESPONSE_CACHE_MB: '0' }, async ({ newClient }) => {
    const a = newClient();
    await register(a, 'cache-d@example.com', PASSWORD);
    for (let i = 0; i < 3; i++) assert.equal((await a.get('/api/v1/chats')).status, 200);
    assert.equal(await hits(a), 0);
  });
});
