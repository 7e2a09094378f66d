// looplag.test.mjs - the event-loop lag histogram on /metrics
// (coai_loop_lag_seconds, http/metrics.c): present, cumulative, and
// counting about 100 samples a second (a 10 ms timer), so the performance
// bench (bench/turns) can read p99 of a run from two scrapes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, Client } from '../lib/harness.mjs';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function lag(text) {
  const buckets = [];
  let count, sum;
  for (const line of text.split('\n')) {
    let m = /^coai_loop_lag_seconds_bucket\{le="([^"]+)"\} (\d+)$/.exec(line);
    if (m) buckets.push({ le: m[1] === '+Inf' ? Infinity : Number(m[1]), n: Number(m[2]) });
    m = /^coai_loop_lag_seconds_count (\d+)$/.exec(line);
    if (m) count = Number(m[1]);
    m = /^coai_loop_lag_seconds_sum (\S+)$/.exec(line);
    if (m) sum = Number(m[1]);
  }
  return { buckets, count, sum };
}

test('/metrics: coai_loop_lag_seconds is a histogram that counts a sample every 10 ms', async () => {
  const srv = await startServer({});
  try {
    const c = new Client(srv.url);
    const r0 = await c.get('/metrics', { headers: { accept: 'text/plain' } });
    assert.equal(r0.status, 200);
    assert.match(r0.text, /^# TYPE coai_loop_lag_seconds histogram$/m);
    assert.match(r0.text, /^# TYPE coai_loop_lag_max_seconds gauge$/m);
    const a = lag(r0.text);
    assert.ok(a.buckets.length >= 10, `lag buckets:\n${r0.text}`);
    assert.equal(a.buckets.at(-1).le, Infinity);
    for (let i = 1; i < a.buckets.length; i++) {
      assert.ok(a.buckets[i].le > a.buckets[i - 1].le, 'bounds ascend');
      assert.ok(a.buckets[i].n >= a.buckets[i - 1].n, 'cumulative counts');
    }
    assert.ok(a.buckets.some((b) => b.le === 0.01), 'a 10 ms bound (the budget)');
    assert.equal(a.buckets.at(-1).n, a.count, '+Inf equals _count');
    const t0 = Date.now();
    await sleep(1000);
    const r1 = await c.get('/metrics', { headers: { accept: 'text/plain' } });
    const elapsed = Date.now() - t0;
    const b = lag(r1.text);
    const n = b.count - a.count;
    // 100 a second; a loaded (sanitizer) build may fall behind, but every
    // expiry is counted even when the loop ran late.
    assert.ok(n >= elapsed / 10 * 0.7 && n <= elapsed / 10 * 1.3 + 5, `${n} samples in ${elapsed} ms`);
    assert.ok(b.sum >= a.sum, 'the sum grows');
  } finally {
    await srv.stop();
  }
});
