// turns.test.mjs - a turn streams an answer server-side and clients follow it
// over SSE: exact text, numbered events, resume with Last-Event-ID, several
// subscribers, closing the tab, persistence while streaming, stop, 409 while
// streaming, branches (edit / regenerate), chunking, tool calls, refusals,
// heartbeats. Every test starts its own server + fake upstream.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { slowText, titleFor, UTF8_SSE, TEXT_STOP_SSE } from '../upstream/fake-openai.mjs';
import { SseParser } from '../lib/sse.mjs';
import {
  withEnv, fixtureAnswer, expectedParts, deltaText, deltas, textOf, parse, assertConsecutiveIds,
  summary, sleep,
} from './turn-helpers.mjs';

const TEXT_STOP = fixtureAnswer(TEXT_STOP_SSE);
const TEXT = TEXT_STOP.content;

test('expected answers come from the fixtures', () => {
  assert.ok(TEXT.length > 50, TEXT);
  assert.ok(TEXT_STOP.usage && TEXT_STOP.usage.completion_tokens > 0);
});

test('a turn streams the fixture text exactly, numbered events, usage, done, stored message', async () => {
  await withEnv({}, async (e) => {
    const chatId = await e.newChat();
    const r = await e.send(chatId, 'Hello there, how is the weather today?');
    const events = await e.run(r.json);

    assertConsecutiveIds(events, 1);
    assert.equal(deltaText(events), TEXT, 'concatenated delta content');
    // Only known event types; deltas come before usage and done.
    for (const ev of events) assert.ok(['delta', 'usage', 'done'].includes(ev.event), `unexpected event ${ev.event}`);
    const usage = events.filter((ev) => ev.event === 'usage');
    assert.equal(usage.length, 1, 'one usage event');
    assert.deepEqual(parse(usage[0]), {
      prompt_tokens: TEXT_STOP.usage.prompt_tokens, completion_tokens: TEXT_STOP.usage.completion_tokens,
    });

    const done = parse(events.at(-1));
    assert.equal(done.status, 'complete');
    assert.equal(done.message.id, r.json.turn.id);
    assert.equal(done.message.status, 'complete');
    assert.deepEqual(done.message.content, [{ type: 'text', text: TEXT }]);
    assert.deepEqual(done.message.usage, {
      prompt_tokens: TEXT_STOP.usage.prompt_tokens, completion_tokens: TEXT_STOP.usage.completion_tokens,
    });
    assert.equal(done.message.error, null);

    // "done" is published after the final write: the chat shows the same now.
    const chat = await e.getChat(chatId);
    const m = chat.messages.find((x) => x.id === r.json.turn.id);
    assert.ok(m);
    assert.equal(m.status, 'complete');
    assert.deepEqual(m.content, [{ type: 'text', text: TEXT }]);
    assert.deepEqual(m.usage, done.message.usage);
    assert.equal(m.error, null);
    assert.equal(m.parent_id, r.json.user_message.id);
    assert.equal(m.model, 'gpt-4o');
    const { updated_at: _a, ...storedRest } = m;
    const { updated_at: _b, ...doneRest } = done.message;
    assert.deepEqual(doneRest, storedRest, 'done.message equals the stored message (updated_at aside)');
    assert.equal(chat.chat.current_leaf_id, m.id);

    // The provider got the user's text, streaming with usage.
    const reqs = e.answerRequests();
    assert.equal(reqs.length, 1);
    assert.equal(reqs[0].stream, true);
    assert.deepEqual(reqs[0].stream_options, { include_usage: true });
    assert.deepEqual(reqs[0].messages, [{ role: 'user', content: 'Hello there, how is the weather today?' }]);
  });
});

test('done carries exactly the stored message, updated_at included', async () => {
  await withEnv({}, async (e) => {
    const chatId = await e.newChat();
    const r = await e.send(chatId, 'Hello there');
    // Give the stored updated_at a chance to differ from created_at.
    const events = await e.run(r.json);
    const done = parse(events.at(-1));
    const m = await e.message(chatId, r.json.turn.id);
    assert.deepEqual(done.message, m,
      'the stream promises "a client that reads the chat after done sees exactly what the stream showed"');
  });
});

test('the chat gets a title from the first user message', async () => {
  await withEnv({}, async (e) => {
    const chatId = await e.newChat();
    const first = 'Tell me about the weather in Paris please';
    const r = await e.send(chatId, first);
    await e.run(r.json);
    const deadline = Date.now() + 8000;
    let chat;
    for (;;) {
      chat = await e.getChat(chatId);
      if (chat.chat.title !== null || Date.now() > deadline) break;
      await sleep(50);
    }
    assert.equal(chat.chat.title, titleFor(first));
    const titleReqs = e.fake.chatRequests().filter((b) => b.stream !== true);
    assert.equal(titleReqs.length, 1, 'one title request');
    // A second message does not ask for another title.
    const r2 = await e.send(chatId, 'And in London?');
    await e.run(r2.json);
    await sleep(300);
    assert.equal((await e.getChat(chatId)).chat.title, titleFor(first));
    assert.equal(e.fake.chatRequests().filter((b) => b.stream !== true).length, 1);
  });
});

test('a chat whose first answer failed gets its title when that answer is regenerated', async () => {
  await withEnv({}, async (e) => {
    const chatId = await e.newChat();
    const first = 'What should I cook tonight with leeks';
    const r = await e.send(chatId, first, { model: 'fault:401' });
    const evs = await e.run(r.json);
    assert.equal(parse(evs.at(-1)).status, 'error');
    await sleep(300);
    assert.equal((await e.getChat(chatId)).chat.title, null, 'no title from a failed answer');
    const g = await e.c.post(`/api/v1/chats/${chatId}/messages/${r.json.turn.id}/regenerate`, { model: 'gpt-4o' });
    assert.equal(g.status, 202, g.text);
    await e.run(g.json);
    const deadline = Date.now() + 8000;
    let chat;
    for (;;) {
      chat = await e.getChat(chatId);
      if (chat.chat.title !== null || Date.now() > deadline) break;
      await sleep(50);
    }
    assert.equal(chat.chat.title, titleFor(first), 'titled from the first question');
  });
});

test('resume: Last-Event-ID header and ?last_event_id give exactly the rest', async () => {
  await withEnv({}, async (e) => {
    const chatId = await e.newChat();
    const r = await e.send(chatId, 'Hello');
    const url = r.json.turn.events_url;

    // Read the first K events, then disconnect.
    const K = 7;
    const head = e.follow(url);
    await head.waitFor((evs) => evs.length >= K, { what: `${K} events` });
    await head.abort();
    const first = head.events.slice(0, K);
    assertConsecutiveIds(first, 1);

    const full = await e.run(r.json); // the whole log, for N
    const N = full.length;
    assert.equal(full.at(-1).event, 'done');

    // Header.
    const rest = await e.run(url);
    assert.equal(rest.length, N, 'sanity: a fresh subscriber replays everything');
    const viaHeader = await collect(e, url, { lastEventId: K });
    assertConsecutiveIds(viaHeader, K + 1);
    assert.equal(viaHeader.length, N - K);
    assert.equal(viaHeader.at(-1).event, 'done');
    assert.equal(deltaText(first) + deltaText(viaHeader), TEXT);
    assert.deepEqual([...first, ...viaHeader], full, 'head + resumed = the full sequence');

    // Query parameter, another K.
    const K2 = 12;
    const viaQuery = await collect(e, `${url}?last_event_id=${K2}`);
    assertConsecutiveIds(viaQuery, K2 + 1);
    assert.deepEqual(viaQuery, full.slice(K2));
    assert.equal(deltaText(full.slice(0, K2)) + deltaText(viaQuery), TEXT);

    // Everything seen: nothing more, the stream just ends.
    const none = await collect(e, url, { lastEventId: N });
    assert.deepEqual(none, []);

    // A malformed id is refused.
    const bad = await e.c.get(url, { headers: { accept: 'text/event-stream', 'last-event-id': 'abc' } });
    assert.equal(bad.status, 400);
    assert.equal(bad.json?.error?.code, 'invalid_last_event_id');
  });
});

test('resume mid-stream on a live turn: no gaps, no duplicates', async () => {
  await withEnv({}, async (e) => {
    const chatId = await e.newChat();
    const count = 80;
    const r = await e.send(chatId, 'Hello', { model: `slow:20:${count}` });
    const url = r.json.turn.events_url;
    const head = e.follow(url);
    await head.waitFor((evs) => evs.length >= 10, { what: '10 events' });
    await head.abort();
    const first = head.events.slice(0, 10);
    const m = await e.message(chatId, r.json.turn.id);
    assert.equal(m.status, 'streaming', 'the turn is still running when we reconnect');
    const rest = await collect(e, url, { lastEventId: 10 });
    assertConsecutiveIds(rest, 11);
    assert.equal(rest.at(-1).event, 'done');
    assert.equal(deltaText(first) + deltaText(rest), slowText(count));
    assert.equal(parse(rest.at(-1)).status, 'complete');
  });
});

test('two subscribers on one turn see identical event sequences; a late one gets the replay', async () => {
  await withEnv({}, async (e) => {
    const chatId = await e.newChat();
    const r = await e.send(chatId, 'Hello', { model: 'slow:20:100' });
    const a = e.follow(r.json);
    const b = e.follow(r.json);
    await a.waitDeltas(20);
    const late = e.follow(r.json); // joins mid-stream without Last-Event-ID
    const [ea, eb, el] = await Promise.all([a.finished, b.finished, late.finished]);
    for (const f of [a, b, late]) assert.equal(f.error, null, f.error?.message);
    assert.equal(ea.at(-1).event, 'done');
    assert.deepEqual(eb, ea);
    assert.deepEqual(el, ea);
    assertConsecutiveIds(ea, 1);
    assert.equal(deltaText(ea), slowText(100));
    assert.equal(parse(ea.at(-1)).status, 'complete');
  });
});

test('closing the tab never stops the turn', async () => {
  await withEnv({}, async (e) => {
    const chatId = await e.newChat();
    const count = 60;
    const r = await e.send(chatId, 'Hello', { model: `slow:20:${count}` });
    const f = e.follow(r.json);
    await f.waitFor((evs) => evs.length >= 2, { what: '2 events' });
    await f.abort();
    assert.equal((await e.message(chatId, r.json.turn.id)).status, 'streaming', 'disconnected mid-stream');
    const m = await e.waitMessage(chatId, r.json.turn.id, (x) => x.status !== 'streaming', { what: 'turn end' });
    assert.equal(m.status, 'complete');
    assert.equal(textOf(m), slowText(count));
    assert.deepEqual(m.usage, { prompt_tokens: 14, completion_tokens: count });
  });
});

test('mid-stream persistence: the chat shows a streaming partial answer', async () => {
  await withEnv({ env: { CHATOPENAII_PERSIST_MS: 100 } }, async (e) => {
    const chatId = await e.newChat();
    const count = 100;
    const full = slowText(count);
    const r = await e.send(chatId, 'Hello', { model: `slow:20:${count}` });
    const f = e.follow(r.json);
    await f.waitDeltas(25);
    const seen = deltaText(f.events);
    await sleep(400); // several persist periods
    const m = await e.message(chatId, r.json.turn.id);
    assert.equal(m.status, 'streaming');
    const partial = textOf(m);
    assert.ok(partial.length > 0, 'partial content is stored while streaming');
    assert.ok(full.startsWith(partial), `stored partial is a prefix of the answer: ${JSON.stringify(partial)}`);
    assert.ok(partial.length >= seen.length, `stored partial (${partial.length}) covers what was streamed 400 ms earlier (${seen.length})`);
    assert.ok(partial.length < full.length, 'not the whole answer yet');
    await f.finished;
    const done = parse(f.events.at(-1));
    assert.equal(done.status, 'complete');
    assert.equal(textOf(await e.message(chatId, r.json.turn.id)), full);
  });
});

test('stop: the stream ends with done "stopped" and the partial text is stored', async () => {
  await withEnv({}, async (e) => {
    const chatId = await e.newChat();
    const count = 200;
    const full = slowText(count);
    const r = await e.send(chatId, 'Hello', { model: `slow:20:${count}` });
    const id = r.json.turn.id;
    const f = e.follow(r.json);
    await f.waitDeltas(5);
    const s = await e.c.post(`/api/v1/turns/${id}/stop`, {});
    assert.equal(s.status, 202, s.text);
    assert.deepEqual(s.json, { stopped: true, status: 'stopped' });
    const t0 = Date.now();
    await f.finished;
    assert.ok(Date.now() - t0 < 3000, 'the stream ends soon after stop');
    const events = f.events;
    assert.equal(events.at(-1).event, 'done', summary(events));
    const done = parse(events.at(-1));
    assert.equal(done.status, 'stopped');
    const streamed = deltaText(events);
    assert.ok(streamed.length > 0 && streamed.length < full.length);
    assert.ok(full.startsWith(streamed));
    assert.deepEqual(done.message.content, [{ type: 'text', text: streamed }]);

    const m = await e.message(chatId, id);
    assert.equal(m.status, 'stopped');
    assert.equal(textOf(m), streamed, 'stored content is exactly what was streamed');
    assert.equal(m.error, null);

    // The turn did not carry on in the background.
    await sleep(300);
    assert.equal(textOf(await e.message(chatId, id)), streamed);

    const again = await e.c.post(`/api/v1/turns/${id}/stop`, {});
    assert.equal(again.status, 200, again.text);
    assert.equal(again.json.stopped, false);

    // A stopped answer can be followed by a new message.
    const r2 = await e.send(chatId, 'Go on');
    const ev2 = await e.run(r2.json);
    assert.equal(parse(ev2.at(-1)).status, 'complete');
  });
});

test('sending while the previous answer streams is 409 turn_in_progress', async () => {
  await withEnv({}, async (e) => {
    const chatId = await e.newChat();
    const r = await e.send(chatId, 'Hello', { model: 'slow:20:60' });
    const second = await e.send(chatId, 'Another one', { expectStatus: 409 });
    assert.equal(second.json?.error?.code, 'turn_in_progress');
    // Nothing was created by the refused request.
    const chat = await e.getChat(chatId);
    assert.equal(chat.messages.length, 2);
    assert.equal(chat.chat.current_leaf_id, r.json.turn.id);
    await e.run(r.json);
    const third = await e.send(chatId, 'Now it works');
    await e.run(third.json);
  });
});

test('branches: edit makes a sibling user message, regenerate makes sibling answers', async () => {
  await withEnv({}, async (e) => {
    const chatId = await e.newChat();
    const r1 = await e.send(chatId, 'first question');
    await e.run(r1.json);
    const u1 = r1.json.user_message.id;
    const a1 = r1.json.turn.id;
    const r2 = await e.send(chatId, 'second question');
    await e.run(r2.json);
    const u2 = r2.json.user_message.id;
    const a2 = r2.json.turn.id;
    assert.equal(r2.json.user_message.parent_id, a1);

    // Edit the second question.
    e.fake.reset();
    const ed = await e.c.post(`/api/v1/chats/${chatId}/messages/${u2}/edit`, { content: 'second question, edited', model: 'gpt-4o' });
    assert.equal(ed.status, 202, ed.text);
    const u2e = ed.json.user_message;
    assert.ok(u2e && u2e.id !== u2);
    assert.equal(u2e.parent_id, a1, 'the edited message is a sibling of the original');
    assert.deepEqual(u2e.content, [{ type: 'text', text: 'second question, edited' }]);
    assert.equal(ed.json.assistant_message.parent_id, u2e.id);
    const evEd = await e.run(ed.json);
    assert.equal(deltaText(evEd), TEXT);
    const a2e = ed.json.turn.id;
    assert.deepEqual(e.answerRequests()[0].messages, [
      { role: 'user', content: 'first question' },
      { role: 'assistant', content: TEXT },
      { role: 'user', content: 'second question, edited' },
    ], 'the provider sees the edited branch only');

    let chat = await e.getChat(chatId);
    assert.equal(chat.chat.current_leaf_id, a2e);
    const byId = (id) => chat.messages.find((m) => m.id === id);
    assert.equal(byId(u2).parent_id, a1, 'old branch kept');
    assert.equal(byId(a2).parent_id, u2);
    assert.equal(byId(a2).status, 'complete');
    assert.equal(textOf(byId(a2)), TEXT);
    assert.deepEqual(chat.messages.filter((m) => m.parent_id === a1).map((m) => m.id).sort(), [u2, u2e.id].sort());

    // Regenerate the new answer: a sibling under the same user message.
    e.fake.reset();
    const rg = await e.c.post(`/api/v1/chats/${chatId}/messages/${a2e}/regenerate`, {});
    assert.equal(rg.status, 202, rg.text);
    assert.equal(rg.json.user_message, null);
    assert.equal(rg.json.assistant_message.parent_id, u2e.id);
    const evRg = await e.run(rg.json);
    assert.equal(parse(evRg.at(-1)).status, 'complete');
    const a2r = rg.json.turn.id;
    assert.deepEqual(e.answerRequests()[0].messages, [
      { role: 'user', content: 'first question' },
      { role: 'assistant', content: TEXT },
      { role: 'user', content: 'second question, edited' },
    ], 'regenerating does not send the answer being replaced');
    chat = await e.getChat(chatId);
    assert.equal(chat.chat.current_leaf_id, a2r);
    assert.deepEqual(chat.messages.filter((m) => m.parent_id === u2e.id).map((m) => m.id).sort(), [a2e, a2r].sort());

    // Regenerate on a user message (the original second question): another answer to it.
    e.fake.reset();
    const rgu = await e.c.post(`/api/v1/chats/${chatId}/messages/${u2}/regenerate`, {});
    assert.equal(rgu.status, 202, rgu.text);
    assert.equal(rgu.json.assistant_message.parent_id, u2);
    await e.run(rgu.json);
    assert.deepEqual(e.answerRequests()[0].messages, [
      { role: 'user', content: 'first question' },
      { role: 'assistant', content: TEXT },
      { role: 'user', content: 'second question' },
    ]);
    chat = await e.getChat(chatId);
    assert.equal(chat.chat.current_leaf_id, rgu.json.turn.id);
    assert.deepEqual(chat.messages.filter((m) => m.parent_id === u2).map((m) => m.id).sort(), [a2, rgu.json.turn.id].sort());
    assert.equal(chat.messages.length, 8);
    assert.equal(chat.messages.find((m) => m.id === u1).parent_id, null);
  });
});

test('chunks split at random byte boundaries give exactly the fixture text (ASCII and UTF-8)', async () => {
  await withEnv({}, async (e) => {
    const chatId = await e.newChat();
    const r = await e.send(chatId, 'Hello', { model: 'fault:split' });
    const ev = await e.run(r.json);
    assert.equal(parse(ev.at(-1)).status, 'complete', summary(ev));
    assert.equal(deltaText(ev), TEXT);
    assert.equal(textOf(await e.message(chatId, r.json.turn.id)), TEXT);

    const utf8 = fixtureAnswer(UTF8_SSE).content;
    assert.match(utf8, /[^\x00-\x7f]/, 'the UTF-8 fixture has multi-byte characters');
    const chat2 = await e.newChat();
    const r2 = await e.send(chat2, 'Hello', { model: 'fault:split-utf8' });
    const ev2 = await e.run(r2.json);
    assert.equal(parse(ev2.at(-1)).status, 'complete', summary(ev2));
    assert.equal(deltaText(ev2), utf8);
    const m = await e.message(chat2, r2.json.turn.id);
    assert.equal(textOf(m), utf8);
  });
});

test('tool calls: two parallel calls are stored as tool_call parts with valid JSON arguments', async () => {
  await withEnv({}, async (e) => {
    const name = 'openai-python_tool-calls-parallel-2';
    const want = fixtureAnswer(`openai-chat-sse/${name}.sse`);
    assert.equal(want.tools.length, 2);
    const chatId = await e.newChat();
    const r = await e.send(chatId, 'Weather in Paris and Tokyo?', { model: `fixture:${name}` });
    const ev = await e.run(r.json);
    assertConsecutiveIds(ev, 1);
    assert.equal(parse(ev.at(-1)).status, 'complete', summary(ev));
    assert.ok(deltas(ev).some((d) => Array.isArray(parse(d).tool_calls)), 'tool_calls deltas are streamed');
    const m = await e.message(chatId, r.json.turn.id);
    assert.equal(m.status, 'complete');
    const calls = m.content.filter((p) => p.type === 'tool_call');
    assert.equal(calls.length, 2);
    for (const c of calls) assert.doesNotThrow(() => JSON.parse(c.arguments), `arguments are JSON: ${c.arguments}`);
    assert.deepEqual(m.content, expectedParts(want));
    assert.deepEqual(parse(ev.at(-1)).message.content, m.content);
  });
});

test('refusals are stored as a refusal part', async () => {
  await withEnv({}, async (e) => {
    const name = 'openai-python_refusal';
    const want = fixtureAnswer(`openai-chat-sse/${name}.sse`);
    assert.ok(want.refusal.length > 0);
    const chatId = await e.newChat();
    const r = await e.send(chatId, 'Something not allowed', { model: `fixture:${name}` });
    const ev = await e.run(r.json);
    assert.equal(parse(ev.at(-1)).status, 'complete', summary(ev));
    const streamed = deltas(ev).map((d) => parse(d).refusal ?? '').join('');
    assert.equal(streamed, want.refusal, 'refusal deltas');
    const m = await e.message(chatId, r.json.turn.id);
    assert.deepEqual(m.content, expectedParts(want));
    assert.ok(m.content.some((p) => p.type === 'refusal' && p.text === want.refusal));
  });
});

test('heartbeats keep an idle stream alive; a silent provider ends in provider_timeout', async () => {
  const env = {
    CHATOPENAII_HEARTBEAT_MS: 200, CHATOPENAII_UPSTREAM_IDLE_TIMEOUT: 3, CHATOPENAII_RETRY_MAX: 0,
  };
  await withEnv({ env }, async (e) => {
    const chatId = await e.newChat();
    const r = await e.send(chatId, 'Hello', { model: 'fault:hang' });
    const t0 = Date.now();
    const { res } = await e.c.open('GET', r.json.turn.events_url, { headers: { accept: 'text/event-stream' }, timeoutMs: 0 });
    assert.equal(res.statusCode, 200);
    assert.match(res.headers['content-type'], /^text\/event-stream/);
    const parser = new SseParser();
    const timeline = []; // {t, kind: 'ping'|'event', ev}
    let raw = '';
    const timer = setTimeout(() => res.destroy(), 15000);
    for await (const chunk of res) {
      const s = chunk.toString('utf8');
      raw += s;
      const before = parser.comments;
      const evs = parser.feed(chunk);
      for (let i = before; i < parser.comments; i++) timeline.push({ t: Date.now() - t0, kind: 'ping' });
      for (const ev of evs) timeline.push({ t: Date.now() - t0, kind: 'event', ev });
    }
    clearTimeout(timer);
    const pings = raw.split('\n').filter((l) => l === ': ping');
    const events = timeline.filter((x) => x.kind === 'event').map((x) => x.ev);
    assert.ok(pings.length >= 5, `expected ": ping" lines while idle, got ${pings.length}`);
    const firstEvent = timeline.findIndex((x) => x.kind === 'event');
    assert.ok(firstEvent > 5, 'pings come before the error while the provider is silent');
    assert.deepEqual(events.map((x) => x.event), ['error', 'done'], summary(events));
    const err = parse(events[0]);
    assert.equal(err.code, 'provider_timeout');
    const done = parse(events[1]);
    assert.equal(done.status, 'error');
    assert.equal(done.message.error.code, 'provider_timeout');
    // How soon the stall is detected is checked in faults.test.mjs.
    assert.ok(timeline[firstEvent].t >= 2500, 'not before the idle timeout');

    const m = await e.message(chatId, r.json.turn.id);
    assert.equal(m.status, 'error');
    assert.equal(m.error.code, 'provider_timeout');
    // fault:hang sends only the role chunk (empty content): nothing to keep.
    assert.deepEqual(m.content, []);
  });
});

async function collect(e, url, { lastEventId } = {}) {
  const f = e.follow(url, { lastEventId });
  const evs = await f.finished;
  if (f.error) throw f.error;
  return evs;
}

test('deleting a chat stops its running answer; edit/regenerate also wait for it (409)', async () => {
  await withEnv({}, async (e) => {
    const chatId = await e.newChat();
    const first = await e.send(chatId, 'Hello');
    await e.run(first.json);
    const r = await e.send(chatId, 'Long one', { model: 'slow:20:300' });
    const id = r.json.turn.id;
    const f = e.follow(r.json);
    await f.waitDeltas(3);
    // a second generation in the same chat is refused while this one runs
    const regen = await e.c.post(`/api/v1/chats/${chatId}/messages/${first.json.assistant_message.id}/regenerate`, {});
    assert.equal(regen.status, 409, regen.text);
    assert.equal(regen.json.error.code, 'turn_in_progress');
    const edit = await e.c.post(`/api/v1/chats/${chatId}/messages/${first.json.user_message.id}/edit`, { content: 'x' });
    assert.equal(edit.status, 409, edit.text);

    const d = await e.c.delete(`/api/v1/chats/${chatId}`);
    assert.equal(d.status, 204, d.text);
    const t0 = Date.now();
    await f.finished;
    assert.ok(Date.now() - t0 < 3000, 'the stream ends soon after the delete');
    const last = f.events.at(-1);
    assert.equal(last.event, 'done');
    assert.equal(parse(last).status, 'stopped');
    assert.equal((await e.c.get(`/api/v1/chats/${chatId}`)).status, 404);
    await sleep(200);
    assert.ok(!e.srv.logs().some((l) => l.includes('turn persist failed')), 'no store errors');
    assert.equal(id.length, 36);
  });
});

test('events of a message stored as streaming that no turn runs: the stream waits about a second for the turn to appear, then ends with the stored state', async () => {
  const { dbExec } = await import('../lib/harness.mjs');
  await withEnv({}, async (e) => {
    const chatId = await e.newChat();
    const r = await e.send(chatId, 'Hello there');
    await e.run(r.json);
    // A row that says "streaming" but that nothing runs (as between a
    // worker's insert and the turn's registration on the loop, or after its
    // instance died), written behind the server's back.
    const orphan = '01a25000-0000-7000-8000-00000000beef';
    dbExec(e.srv.dataDir,
      `INSERT INTO messages (id, chat_id, parent_id, role, content, model, status, created_at, updated_at)
       VALUES ('${orphan}', '${chatId}', '${r.json.user_message.id}', 'assistant',
               '[{"type":"text","text":"half an ans"}]', 'gpt-4o', 'streaming', 1, 1)`);
    const t0 = Date.now();
    const evs = await e.run({ turn: { events_url: `/api/v1/turns/${orphan}/events` } }, { timeoutMs: 10000 });
    const waited = Date.now() - t0;
    assert.equal(evs.length, 1, summary(evs));
    assert.equal(evs[0].event, 'done');
    const d = parse(evs[0]);
    assert.equal(d.status, 'streaming', 'the stored state, which the app shows as interrupted');
    assert.deepEqual(d.message.content, [{ type: 'text', text: 'half an ans' }]);
    assert.ok(waited >= 900, `waited ${waited} ms for a turn to appear before giving up`);
    assert.ok(waited < 5000, `gave up in ${waited} ms`);

    // A client that leaves while the stream waits costs nothing (no leak at
    // the final SIGTERM, checked by withEnv).
    const f = e.follow(`/api/v1/turns/${orphan}/events`);
    await sleep(200);
    f.ac.abort();
    await f.finished;
    await sleep(1200);
  });
});
