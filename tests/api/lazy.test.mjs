// lazy.test.mjs - libcurl, libpq and hiredis are loaded when first needed
// (server/src/lib/lazy.h): a started server that has served only health
// checks and static files has not mapped libcurl; the first API request
// loads it in the background and a turn streams; a library that cannot be
// loaded fails a turn (libcurl) or the start (libpq, hiredis) with a
// message naming it. The CHATOPENAII_LIB* variables name a missing file.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { startServer, Client, register, onPostgres } from '../lib/harness.mjs';
import { startFakeOpenAI } from '../upstream/fake-openai.mjs';
import { withEnv, summary, parse, sleep } from './turn-helpers.mjs';

const mapped = (pid, name) => fs.readFileSync(`/proc/${pid}/maps`, 'utf8').includes(name);

test('libcurl is mapped only after the first API request; a turn then streams', async () => {
  const fake = await startFakeOpenAI();
  const srv = await startServer({ upstream: fake });
  try {
    const c = new Client(srv.url);
    assert.equal((await c.get('/')).status, 200);
    assert.equal((await c.get('/healthz')).status, 200);
    const pid = srv.proc.pid;
    assert.equal(mapped(pid, 'libcurl'), false, 'libcurl before any API request');
    assert.equal(mapped(pid, 'libhiredis'), false, 'hiredis without CHATOPENAII_REDIS_URL');
    if (!onPostgres()) assert.equal(mapped(pid, 'libpq'), false, 'libpq on a SQLite store');

    await register(c, 'lazy@example.com', 'correct horse battery');
    for (let i = 0; i < 200 && !mapped(pid, 'libcurl'); i++) await sleep(25);
    assert.ok(mapped(pid, 'libcurl'), 'the first API request preloads libcurl');
    await srv.waitForLog(/"msg":"library loaded".*libcurl/);
  } finally {
    await srv.stop();
    await fake.close();
    srv.removeDataDir();
  }
});

test('a missing libcurl fails the turn with an error event; the server keeps serving', async () => {
  await withEnv({ env: { CHATOPENAII_LIBCURL: '/nonexistent/libcurl.so.4' } }, async (e) => {
    const chatId = await e.newChat();
    const r = await e.send(chatId, 'Hello?');
    const events = await e.run(r.json);
    assert.deepEqual(events.map((x) => x.event), ['error', 'done'], summary(events));
    assert.equal(parse(events.at(-1)).status, 'error');
    await e.srv.waitForLog(/cannot load libcurl \(\/nonexistent\/libcurl\.so\.4\)/);
    assert.equal((await e.c.get('/healthz')).status, 200);
    assert.equal((await e.c.get('/api/v1/chats')).status, 200);
  });
});

test('a missing libpq with a PostgreSQL store stops the start with a clear message', async () => {
  const env = {
    CHATOPENAII_DATABASE_URL: 'postgres://coai@127.0.0.1:1/coai',
    CHATOPENAII_LIBPQ: '/nonexistent/libpq.so.5',
  };
  await assert.rejects(startServer({ env, timeoutMs: 10000 }), (err) => {
    assert.match(err.message, /server exited \(code 1/);
    assert.match(err.message, /CHATOPENAII_DATABASE_URL: cannot load libpq \(\/nonexistent\/libpq\.so\.5\).*libpq5/);
    return true;
  });
});

test('a missing hiredis with CHATOPENAII_REDIS_URL stops the start with a clear message', async () => {
  const env = {
    CHATOPENAII_REDIS_URL: 'redis://127.0.0.1:1',
    CHATOPENAII_LIBHIREDIS: '/nonexistent/libhiredis.so',
  };
  await assert.rejects(startServer({ env, timeoutMs: 10000 }), (err) => {
    assert.match(err.message, /server exited \(code 1/);
    assert.match(err.message, /CHATOPENAII_REDIS_URL: cannot load hiredis \(\/nonexistent\/libhiredis\.so\)/);
    return true;
  });
});
