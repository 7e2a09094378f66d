// fanout.test.mjs - the SSE writer under fan-out (http/sse.c): frames go
// straight to the socket while it takes them and queue in the connection's
// output buffer when it does not. Subscribers that stop reading for a while,
// and a late one whose replay is larger than the socket takes at once, must
// still get every event whole and in order, byte for byte what a subscriber
// that always reads gets. Every test starts its own server + fake upstream.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { SseParser } from '../lib/sse.mjs';
import { withEnv, deltas, deltaText, parse, assertConsecutiveIds, summary, sleep } from './turn-helpers.mjs';

// A provider streaming COUNT deltas of SIZE characters, PACE_MS apart. The
// text is mostly U+0001, six bytes in JSON ("\u0001"): a 600 KB answer
// makes about 7 MB of events, and the late subscriber's replay (about
// 2 MB, one write) is more than a fresh loopback connection takes at once.
const COUNT = 150;
const SIZE = 4000;
const PACE_MS = 10;
const piece = (i) => `<${i}>`.padEnd(SIZE, '\u0001');
const FULL = Array.from({ length: COUNT }, (_, i) => piece(i)).join('');

async function bigProvider() {
  const srv = http.createServer(async (req, res) => {
    for await (const _ of req); // the request body
    if (req.method !== 'POST' || !req.url.endsWith('/chat/completions')) {
      res.writeHead(404).end();
      return;
    }
    const chunk = (delta, finish = null) => `data: ${JSON.stringify({
      id: 'chatcmpl-big', object: 'chat.completion.chunk', created: 1727346168, model: 'gpt-4o',
      choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }],
    })}\n\n`;
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    res.write(chunk({ role: 'assistant', content: '' }));
    for (let i = 0; i < COUNT && !res.destroyed; i++) {
      await sleep(PACE_MS);
      res.write(chunk({ content: piece(i) }));
    }
    res.end(`${chunk({}, 'stop')}data: [DONE]\n\n`);
  });
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  return { srv, baseURL: `http://127.0.0.1:${srv.address().port}/v1` };
}

// GET an event stream whose reader is paused until resume() is called: the
// server's writes fill the socket buffers meanwhile. Resolves {raw, events}
// when the server ends the response.
function pausedSubscriber(e, url) {
  let resume;
  const resumed = new Promise((r) => { resume = r; });
  const done = new Promise((resolve, reject) => {
    const u = new URL(url, e.srv.url);
    const req = http.get(u, { headers: { cookie: e.c.cookieHeader(), accept: 'text/event-stream' } }, (res) => {
      if (res.statusCode !== 200) { reject(new Error(`HTTP ${res.statusCode}`)); return; }
      res.pause();
      const chunks = [];
      resumed.then(() => {
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => {
          const raw = Buffer.concat(chunks);
          const p = new SseParser();
          const events = [...p.feed(raw)];
          p.end();
          resolve({ raw, events });
        });
        res.on('error', reject);
        res.resume();
      });
    });
    req.on('error', reject);
  });
  return { resume, done };
}

test('subscribers that stop reading, and a late one with a large replay, get every event whole and in order', async () => {
  const up = await bigProvider();
  await withEnv({ fake: false, baseURL: up.baseURL }, async (e) => {
    const count = COUNT;
    const chatId = await e.newChat();
    const r = await e.send(chatId, 'Hello');
    const url = r.json.turn.events_url;
    const always = e.follow(r.json, { timeoutMs: 60000 });
    const paused = [pausedSubscriber(e, url), pausedSubscriber(e, url)];
    await always.waitDeltas(count / 2, { timeoutMs: 40000 });
    // joins now: its replay (half the answer) is one write, larger than a
    // fresh connection's socket takes at once; live events queue behind it
    const late = e.follow(r.json, { timeoutMs: 60000 });
    await sleep(300);
    paused[0].resume(); // one resumes mid-stream, the other after the end
    const ea = await always.finished;
    assert.equal(always.error, null, always.error?.message);
    paused[1].resume();
    const el = await late.finished;
    assert.equal(late.error, null, late.error?.message);
    const [p0, p1] = await Promise.all(paused.map((p) => p.done));

    assert.equal(ea.at(-1).event, 'done', summary(ea));
    assert.equal(parse(ea.at(-1)).status, 'complete');
    assertConsecutiveIds(ea, 1);
    assert.equal(deltas(ea).length, count);
    assert.equal(deltaText(ea), FULL);
    for (const [name, evs] of [['late', el], ['paused mid-stream', p0.events], ['paused to the end', p1.events]]) {
      assert.equal(evs.length, ea.length, `${name}: ${evs.length} events, want ${ea.length}: ${summary(evs)}`);
      assert.deepEqual(evs, ea, `${name}: the same events as a subscriber that always read`);
    }
    // what the paused ones got, as bytes (chunked framing removed by node):
    // the retry hint, then exactly the frames, nothing split or repeated
    const frames = ea.map((ev) => `id: ${ev.id}\nevent: ${ev.event}\ndata: ${ev.data}\n\n`).join('');
    for (const p of [p0, p1]) {
      const text = p.raw.toString('utf8').replace(/^retry: \d+\n\n/, '').replace(/: ping\n\n/g, '');
      assert.ok(text === frames, `a paused subscriber's bytes differ from the frames (${text.length} vs ${frames.length} bytes)`);
    }
  });
  up.srv.close();
});
