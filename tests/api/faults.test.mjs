// faults.test.mjs - provider failures end the turn with an error stored on
// the assistant message (status "error", error.code), partial text kept when
// some was streamed; the SSE stream shows "error" then "done". Retryable
// failures (429, 5xx, transport before the first token) are retried with
// "retry" events. Every test starts its own server + fake upstream.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { freePort } from '../lib/harness.mjs';
import { readFixture, readFixtureJSON } from '../lib/fixtures.mjs';
import { splitEvents, TEXT_STOP_SSE, ERRORS_JSON } from '../upstream/fake-openai.mjs';
import {
  withEnv, fixtureAnswer, streamAnswer, deltaText, textOf, parse, assertConsecutiveIds, summary,
} from './turn-helpers.mjs';

const TEXT = fixtureAnswer(TEXT_STOP_SSE).content;
const FAST_RETRY = { CHATOPENAII_RETRY_MAX: 2, CHATOPENAII_RETRY_BASE_MS: 50 };

// Text of the first n events of the text-stop recording (what the fake sends
// before it fails).
const headText = (n) => streamAnswer(Buffer.concat(splitEvents(readFixture(TEXT_STOP_SSE)).slice(0, n))).content;

// The in-stream error frame the fake sends for fault:inline-error.
const INLINE = (() => {
  const e = readFixtureJSON(ERRORS_JSON).find((x) => typeof x.sse_line_reconstructed === 'string'
    && x.sse_line_reconstructed.startsWith('data: {"error"'));
  return JSON.parse(e.sse_line_reconstructed.slice('data: '.length)).error;
})();

/**
 * Send one message with `model`, follow the turn to the end and check the
 * common shape of a failed turn: ..., "error", "done" (status error), ids
 * consecutive, error code on the event, on done.message and on the stored
 * message, stored content == streamed deltas. Returns details.
 */
async function failingTurn(e, model, code, { partial = '' } = {}) {
  const chatId = await e.newChat();
  const r = await e.send(chatId, 'Hello there', { model });
  const events = await e.run(r.json, { timeoutMs: 30000 });
  assertConsecutiveIds(events, 1);
  const names = events.map((x) => x.event);
  assert.deepEqual(names.slice(-2), ['error', 'done'], `stream ends with error, done: ${summary(events)}`);
  const err = parse(events.at(-2));
  assert.equal(err.code, code, `error event: ${JSON.stringify(err)}`);
  assert.equal(typeof err.message, 'string');
  assert.ok(err.message.length > 0);
  const done = parse(events.at(-1));
  assert.equal(done.status, 'error');
  assert.equal(done.message.status, 'error');
  assert.deepEqual(done.message.error, err);

  assert.equal(deltaText(events), partial, 'streamed text');
  const m = await e.message(chatId, r.json.turn.id);
  assert.equal(m.status, 'error');
  assert.deepEqual(m.error, err, 'stored error = the error event');
  assert.equal(textOf(m), partial, 'stored partial text');
  if (!partial) assert.deepEqual(m.content, []);
  // A failed answer does not block the chat.
  const next = await e.send(chatId, 'try again', { model: 'gpt-4o' });
  assert.equal(next.status, 202);
  await e.run(next.json);
  return { events, err, message: m, retries: events.filter((x) => x.event === 'retry').map(parse) };
}

test('fault:401 -> provider_auth, not retried', async () => {
  await withEnv({ env: FAST_RETRY }, async (e) => {
    const { err, retries } = await failingTurn(e, 'fault:401', 'provider_auth');
    assert.equal(err.status, 401);
    assert.equal(err.provider_code, 'invalid_api_key');
    assert.deepEqual(retries, []);
    assert.equal(e.answerRequests().filter((b) => b.model === 'fault:401').length, 1);
  });
});

test('fault:404 -> model_not_found, not retried', async () => {
  await withEnv({ env: FAST_RETRY }, async (e) => {
    const { err, retries } = await failingTurn(e, 'fault:404', 'model_not_found');
    assert.equal(err.status, 404);
    assert.deepEqual(retries, []);
    assert.equal(e.answerRequests().filter((b) => b.model === 'fault:404').length, 1);
  });
});

test('fault:context -> context_length_exceeded, not retried', async () => {
  await withEnv({ env: FAST_RETRY }, async (e) => {
    const { err, retries } = await failingTurn(e, 'fault:context', 'context_length_exceeded');
    assert.equal(err.status, 400);
    assert.match(err.message, /context length/);
    assert.deepEqual(retries, []);
    assert.equal(e.answerRequests().filter((b) => b.model === 'fault:context').length, 1);
  });
});

test('fault:429 -> retried RETRY_MAX times, then provider_rate_limited', async () => {
  await withEnv({ env: FAST_RETRY }, async (e) => {
    const { err, retries } = await failingTurn(e, 'fault:429', 'provider_rate_limited');
    assert.equal(err.status, 429);
    assert.equal(err.provider_code, 'rate_limit_exceeded');
    assert.deepEqual(retries.map((x) => [x.attempt, x.status]), [[1, 429], [2, 429]]);
    // Retry-After: 0 is honoured.
    assert.deepEqual(retries.map((x) => x.delay_ms), [0, 0]);
    assert.equal(e.answerRequests().filter((b) => b.model === 'fault:429').length, 3, 'the fake saw 3 requests');
  });
});

test('fault:500 -> retried with backoff, then provider_error', async () => {
  await withEnv({ env: FAST_RETRY }, async (e) => {
    const { err, retries } = await failingTurn(e, 'fault:500', 'provider_error');
    assert.equal(err.status, 500);
    assert.deepEqual(retries.map((x) => [x.attempt, x.status]), [[1, 500], [2, 500]]);
    assert.deepEqual(retries.map((x) => x.delay_ms), [50, 100], 'exponential backoff from RETRY_BASE_MS');
    const reqs = e.answerRequests().filter((b) => b.model === 'fault:500');
    assert.equal(reqs.length, 3);
  });
});

for (const [model, status] of [['fault:429-once', 429], ['fault:500-once', 500]]) {
  test(`${model} -> one retry event, then the full answer`, async () => {
    await withEnv({ env: FAST_RETRY }, async (e) => {
      const chatId = await e.newChat();
      const r = await e.send(chatId, 'Hello there', { model });
      const events = await e.run(r.json);
      assertConsecutiveIds(events, 1);
      const retries = events.filter((x) => x.event === 'retry');
      assert.equal(retries.length, 1, summary(events));
      assert.equal(events[0].event, 'retry', 'the retry comes first');
      assert.equal(parse(retries[0]).attempt, 1);
      assert.equal(parse(retries[0]).status, status);
      assert.ok(!events.some((x) => x.event === 'error'));
      assert.equal(deltaText(events), TEXT);
      const done = parse(events.at(-1));
      assert.equal(done.status, 'complete');
      const m = await e.message(chatId, r.json.turn.id);
      assert.equal(m.status, 'complete');
      assert.equal(m.error, null);
      assert.equal(textOf(m), TEXT);
      assert.equal(e.answerRequests().length, 2);
    });
  });
}

test('fault:inline-error -> partial text kept, error from the in-stream frame', async () => {
  await withEnv({ env: FAST_RETRY }, async (e) => {
    const code = INLINE.code === 'context_length_exceeded' ? 'context_length_exceeded' : 'provider_stream_error';
    const partial = headText(2);
    assert.ok(partial.length > 0);
    const { err, retries } = await failingTurn(e, 'fault:inline-error', code, { partial });
    assert.equal(err.message, INLINE.message);
    if (INLINE.type) assert.equal(err.provider_type, INLINE.type);
    assert.deepEqual(retries, [], 'no retry once text was shown');
    assert.equal(e.answerRequests().filter((b) => b.model === 'fault:inline-error').length, 1);
  });
});

test('fault:drop -> provider_disconnected with the partial text kept', async () => {
  await withEnv({ env: FAST_RETRY }, async (e) => {
    const partial = headText(3);
    assert.ok(partial.length > 0);
    const { retries } = await failingTurn(e, 'fault:drop', 'provider_disconnected', { partial });
    assert.deepEqual(retries, [], 'no retry once text was shown');
    assert.equal(e.answerRequests().filter((b) => b.model === 'fault:drop').length, 1);
  });
});

test('fault:hang-headers -> provider_timeout (no response headers at all)', async () => {
  const env = { CHATOPENAII_UPSTREAM_IDLE_TIMEOUT: 2, CHATOPENAII_RETRY_MAX: 1, CHATOPENAII_RETRY_BASE_MS: 50 };
  await withEnv({ env }, async (e) => {
    const { retries } = await failingTurn(e, 'fault:hang-headers', 'provider_timeout');
    assert.equal(retries.length, 1, 'a timeout before the first token is retried');
    assert.equal(retries[0].status, 0);
    assert.equal(e.answerRequests().filter((b) => b.model === 'fault:hang-headers').length, 2);
  });
});

test('the idle timeout fires about UPSTREAM_IDLE_TIMEOUT seconds after the last byte', async () => {
  // provider.c: "A stalled provider (no byte for idle_timeout seconds) is a failure."
  const idle = 2;
  const env = { CHATOPENAII_UPSTREAM_IDLE_TIMEOUT: idle, CHATOPENAII_RETRY_MAX: 0 };
  await withEnv({ env }, async (e) => {
    const chatId = await e.newChat();
    const t0 = Date.now();
    const r = await e.send(chatId, 'Hello', { model: 'fault:hang' }); // one chunk, then silence
    const events = await e.run(r.json, { timeoutMs: 30000 });
    const took = Date.now() - t0;
    assert.equal(parse(events.at(-2)).code, 'provider_timeout');
    assert.ok(took >= idle * 1000 - 500, `not before the timeout (${took} ms)`);
    assert.ok(took <= idle * 1000 + 2500, `a ${idle} s stall should end the turn after about ${idle} s, took ${took} ms`);
  });
});

test('provider unreachable (closed port) -> retried, then provider_unreachable', async () => {
  const port = await freePort(); // nothing listens there
  await withEnv({ env: FAST_RETRY, baseURL: `http://127.0.0.1:${port}/v1` }, async (e) => {
    const chatId = await e.newChat();
    const r = await e.send(chatId, 'Hello there', { model: 'gpt-4o' });
    const events = await e.run(r.json);
    assertConsecutiveIds(events, 1);
    assert.deepEqual(events.map((x) => x.event), ['retry', 'retry', 'error', 'done'], summary(events));
    assert.deepEqual(events.slice(0, 2).map((x) => [parse(x).attempt, parse(x).status]), [[1, 0], [2, 0]]);
    const err = parse(events[2]);
    assert.equal(err.code, 'provider_unreachable');
    const done = parse(events[3]);
    assert.equal(done.status, 'error');
    const m = await e.message(chatId, r.json.turn.id);
    assert.equal(m.status, 'error');
    assert.deepEqual(m.error, err);
    assert.deepEqual(m.content, []);
  });
});

test('stop during a retry wait: the turn ends "stopped", the retry never fires, nothing leaks', async () => {
  const env = { CHATOPENAII_RETRY_MAX: 2, CHATOPENAII_RETRY_BASE_MS: 400 };
  await withEnv({ env }, async (e) => {
    const chatId = await e.newChat();
    const r = await e.send(chatId, 'Hello there', { model: 'fault:500' });
    const f = e.follow(r.json);
    await f.waitFor((evs) => evs.some((x) => x.event === 'retry'), { what: 'a retry event' });
    const s = await e.c.post(`/api/v1/turns/${r.json.turn.id}/stop`, {});
    assert.equal(s.status, 202, s.text);
    await f.finished;
    assert.deepEqual(f.events.map((x) => x.event), ['retry', 'done'], summary(f.events));
    assert.equal(parse(f.events.at(-1)).status, 'stopped');
    const m = await e.message(chatId, r.json.turn.id);
    assert.equal(m.status, 'stopped');
    assert.deepEqual(m.content, []);
    await new Promise((res) => setTimeout(res, 1000)); // past the retry delay
    assert.equal(e.answerRequests().length, 1, 'no retry after stop');
    // withEnv then checks the server exits 0 with no LeakSanitizer report.
  });
});

test('stop while still connecting (no response headers yet)', async () => {
  const env = { CHATOPENAII_UPSTREAM_IDLE_TIMEOUT: 30 };
  await withEnv({ env }, async (e) => {
    const chatId = await e.newChat();
    const r = await e.send(chatId, 'Hello there', { model: 'fault:hang-headers' });
    const f = e.follow(r.json);
    // Wait until the fake holds the request.
    for (let i = 0; i < 100 && e.answerRequests().length === 0; i++) await new Promise((res) => setTimeout(res, 20));
    assert.equal(e.answerRequests().length, 1);
    const s = await e.c.post(`/api/v1/turns/${r.json.turn.id}/stop`, {});
    assert.equal(s.status, 202, s.text);
    await f.finished;
    assert.deepEqual(f.events.map((x) => x.event), ['done'], summary(f.events));
    assert.equal(parse(f.events[0]).status, 'stopped');
    const m = await e.message(chatId, r.json.turn.id);
    assert.equal(m.status, 'stopped');
    assert.equal(m.error, null);
  });
});
