// crash.test.mjs - a server killed mid-answer (SIGKILL) or asked to stop
// (SIGTERM) leaves a usable database: on restart the answer is "interrupted"
// with the partial text that was persisted, and the chat carries on.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { startFakeOpenAI } from '../upstream/fake-openai.mjs';
import { slowText, TEXT_STOP_SSE } from '../upstream/fake-openai.mjs';
import { Env, isTitleRequest, shortReport, fixtureAnswer, deltaText, textOf, parse, summary, sleep } from './turn-helpers.mjs';

const TEXT = fixtureAnswer(TEXT_STOP_SSE).content;
const COUNT = 400;
const SLOW = `slow:50:${COUNT}`;
const FULL = slowText(COUNT);
const ENV = { CHATOPENAII_PERSIST_MS: 100 };

// Run fn with a first server; fn may restart it (returning new Envs to clean up).
async function scenario(fn) {
  const first = await Env.start({ env: ENV });
  const envs = [first];
  let err = null;
  try {
    await fn(first, envs);
  } catch (x) {
    err = x;
  }
  const problems = [];
  for (const e of envs) {
    if (e.srv.proc.exitCode === null && e.srv.proc.signalCode === null) {
      try { await e.stop(); } catch (x) { problems.push(x); }
    } else {
      const rep = e.srv.sanitizerReport();
      if (rep) problems.push(new Error(`sanitizer report in server output:\n${shortReport(rep)}`));
    }
  }
  await first.closeFake();
  if (err) {
    err.message += `\n(data dir kept: ${first.srv.dataDir})`;
    throw err;
  }
  if (problems.length) throw problems[0];
  first.srv.removeDataDir();
}

test('SIGKILL mid-stream: restart marks the answer interrupted with the persisted partial text', async () => {
  await scenario(async (e1, envs) => {
    const chatId = await e1.newChat();
    const r = await e1.send(chatId, 'Tell me a long story', { model: SLOW });
    const id = r.json.turn.id;
    const f = e1.follow(r.json);
    await f.waitDeltas(20);
    const seen = deltaText(f.events);
    await sleep(400); // several persist periods
    const code = await e1.srv.kill();
    assert.equal(code, 137, 'killed by SIGKILL');
    await f.finished;
    assert.notEqual(f.events.at(-1)?.event, 'done', 'no done event: the server died');

    const e2 = await e1.restart();
    envs.push(e2);
    await e2.srv.waitForLog(/answers interrupted by the last shutdown were marked interrupted.*"count":1\b/, { timeoutMs: 100 })
      .catch(() => assert.fail(`start-up should report 1 interrupted answer; logs:\n${e2.srv.logs().slice(0, 10).join('\n')}`));

    const chats = await e2.c.get('/api/v1/chats');
    assert.equal(chats.status, 200, chats.text);
    assert.deepEqual(chats.json.data.map((c) => c.id), [chatId]);

    const chat = await e2.getChat(chatId);
    assert.equal(chat.messages.length, 2);
    const m = chat.messages.find((x) => x.id === id);
    assert.equal(m.status, 'interrupted');
    const partial = textOf(m);
    assert.ok(partial.length > 0, 'partial content survived the crash');
    assert.ok(FULL.startsWith(partial), `stored text is a prefix of the answer: ${JSON.stringify(partial.slice(0, 80))}`);
    assert.ok(partial.length >= seen.length, `what was streamed 400 ms before the kill was persisted (${partial.length} >= ${seen.length})`);
    assert.ok(partial.length < FULL.length);
    assert.equal(chat.chat.current_leaf_id, id);

    // Following the old turn now gives its stored end state.
    const evs = await e2.run(`/api/v1/turns/${id}/events`);
    assert.equal(evs.length, 1, summary(evs));
    const done = parse(evs[0]);
    assert.equal(done.status, 'interrupted');
    assert.deepEqual(done.message, m);
    // Stopping it is not possible any more, and says so.
    const stop = await e2.c.post(`/api/v1/turns/${id}/stop`, {});
    assert.equal(stop.status, 200, stop.text);
    assert.equal(stop.json.stopped, false);

    // The chat carries on: a new message under the interrupted answer completes.
    const r2 = await e2.send(chatId, 'Please continue', { model: 'gpt-4o' });
    assert.equal(r2.json.user_message.parent_id, id);
    const ev2 = await e2.run(r2.json);
    assert.equal(parse(ev2.at(-1)).status, 'complete');
    assert.equal(deltaText(ev2), TEXT);
    const after = await e2.getChat(chatId);
    assert.equal(after.messages.length, 4);
    assert.equal(after.chat.current_leaf_id, r2.json.turn.id);
    assert.equal(textOf(after.messages.find((x) => x.id === id)), partial, 'the interrupted answer is unchanged');
    const sent = e2.answerRequests().at(-1).messages;
    assert.deepEqual(sent.map((x) => x.role), ['user', 'assistant', 'user']);
    assert.equal(sent[1].content, partial, 'the partial answer is part of the history sent on');

    await e2.stop();
    assert.deepEqual(e2.srv.logs().filter((l) => l.includes('"level":"error"')), [], 'no error logs');
  });
});

test('SIGTERM mid-stream: exit 0 quickly, subscribers get done "interrupted", restart shows it stored', async () => {
  await scenario(async (e1, envs) => {
    const chatId = await e1.newChat();
    const r = await e1.send(chatId, 'Tell me a long story', { model: SLOW });
    const id = r.json.turn.id;
    const f = e1.follow(r.json);
    const f2 = e1.follow(r.json);
    await f.waitDeltas(20);
    await f2.waitDeltas(20);
    const t0 = Date.now();
    const code = await e1.srv.stop('SIGTERM', { timeoutMs: 10000 });
    const took = Date.now() - t0;
    assert.equal(code, 0, `exit code after SIGTERM; stderr tail:\n${e1.srv.logs('stderr').slice(-10).join('\n')}`);
    assert.ok(took < 3000, `exit within a few seconds (took ${took} ms)`);
    e1.checkSanitizer();

    await Promise.all([f.finished, f2.finished]);
    for (const fl of [f, f2]) {
      const evs = fl.events;
      assert.equal(evs.at(-1)?.event, 'done', `subscriber saw done before the close: ${summary(evs)}`);
      assert.equal(evs.at(-2)?.event, 'error', summary(evs));
      assert.equal(parse(evs.at(-2)).code, 'interrupted');
      const done = parse(evs.at(-1));
      assert.equal(done.status, 'interrupted');
      assert.equal(done.message.error.code, 'interrupted');
      assert.equal(textOf(done.message), deltaText(evs));
    }
    assert.deepEqual(f2.events, f.events, 'both subscribers saw the same');
    const streamed = deltaText(f.events);
    assert.ok(streamed.length > 0 && FULL.startsWith(streamed) && streamed.length < FULL.length);

    const e2 = await e1.restart();
    envs.push(e2);
    assert.ok(!e2.srv.logs().some((l) => l.includes('answers interrupted by the last shutdown were marked')),
      'a graceful stop leaves nothing "streaming" for crash recovery');
    const m = await e2.message(chatId, id);
    assert.equal(m.status, 'interrupted');
    assert.equal(m.error?.code, 'interrupted');
    assert.equal(textOf(m), streamed, 'stored partial = what the stream showed');
    // (updated_at aside: see "done carries exactly the stored message" in turns.test.mjs)
    const { updated_at: _a, ...stored } = m;
    const { updated_at: _b, ...shown } = parse(f.events.at(-1)).message;
    assert.deepEqual(stored, shown, 'stored message = done.message');

    const r2 = await e2.send(chatId, 'Please continue', { model: 'gpt-4o' });
    const ev2 = await e2.run(r2.json);
    assert.equal(parse(ev2.at(-1)).status, 'complete');
  });
});

test('SIGTERM with no turn running and one lingering: clean exit 0', async () => {
  await scenario(async (e1) => {
    const chatId = await e1.newChat();
    const r = await e1.send(chatId, 'Hello there friend');
    await e1.run(r.json);
    // The turn lingers (60 s) for late subscribers and the title is requested.
    await sleep(300);
    const t0 = Date.now();
    await e1.stop();
    assert.ok(Date.now() - t0 < 3000, 'a lingering finished turn does not hold the shutdown');
  });
});

test('SIGTERM during a retry wait: done "interrupted", exit 0, nothing leaks', async () => {
  await scenario(async (e1) => {
    const chatId = await e1.newChat();
    const r = await e1.send(chatId, 'Hello', { model: 'fault:500' });
    const f = e1.follow(r.json);
    await f.waitFor((evs) => evs.some((x) => x.event === 'retry'), { what: 'a retry event' });
    // ENV has the default RETRY_BASE_MS (500): the server is in its retry wait now.
    await e1.stop(); // exit 0, no sanitizer report
    await f.finished;
    assert.deepEqual(f.events.map((x) => x.event), ['retry', 'error', 'done'], summary(f.events));
    assert.equal(parse(f.events.at(-1)).status, 'interrupted');
  });
});

// An upstream in front of the fake that never answers title requests.
async function titleHoldingProxy(fake) {
  const held = [];
  const server = http.createServer(async (req, res) => {
    const chunks = [];
    for await (const c of req) chunks.push(c);
    const body = Buffer.concat(chunks);
    let j = null;
    try { j = JSON.parse(body.toString('utf8')); } catch { /* not JSON */ }
    if (j && isTitleRequest(j)) {
      held.push(res);
      return;
    }
    const up = http.request(`${fake.url}${req.url}`, { method: req.method, headers: req.headers }, (ur) => {
      res.writeHead(ur.statusCode, ur.headers);
      ur.pipe(res);
    });
    up.on('error', () => res.destroy());
    up.end(body);
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address();
  return {
    baseURL: `http://127.0.0.1:${port}/v1`,
    held,
    close: () => new Promise((r) => { server.close(() => r()); server.closeAllConnections(); }),
  };
}

test('SIGTERM while the title request is in flight: exit 0, nothing leaks', async () => {
  const fake = await startFakeOpenAI();
  const proxy = await titleHoldingProxy(fake);
  const e = await Env.start({ fake, baseURL: proxy.baseURL });
  let err = null;
  try {
    const chatId = await e.newChat();
    const r = await e.send(chatId, 'Hello there my friend');
    const ev = await e.run(r.json);
    assert.equal(parse(ev.at(-1)).status, 'complete');
    for (let i = 0; i < 100 && proxy.held.length === 0; i++) await sleep(20);
    assert.equal(proxy.held.length, 1, 'the title request is pending');
    const t0 = Date.now();
    const code = await e.srv.stop('SIGTERM', { timeoutMs: 10000 });
    assert.ok(Date.now() - t0 < 3000, 'a pending title does not hold the shutdown');
    e.checkSanitizer();
    assert.equal(code, 0);
  } catch (x) {
    err = x;
  } finally {
    if (e.srv.proc.exitCode === null && e.srv.proc.signalCode === null) await e.srv.kill().catch(() => {});
    await proxy.close();
    await fake.close();
  }
  if (err) throw err;
  e.srv.removeDataDir();
});
