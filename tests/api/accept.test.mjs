// accept.test.mjs - accepting paced per turn of the loop (http/server.c):
// a crowd of connections that arrive at once is taken at most 32 a turn,
// so the streams and timers already running are not held behind all of
// them; every one of them is still answered, and the backlog is large
// enough that none is refused while the server catches up.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { startServer, Client } from '../lib/harness.mjs';

function metric(text, name) {
  const m = new RegExp(`^${name} (\\d+)$`, 'm').exec(text);
  return m ? Number(m[1]) : undefined;
}

function rawGet(port, path) {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port });
    let data = '';
    s.setEncoding('latin1');
    s.on('connect', () => s.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`));
    s.on('data', (d) => { data += d; });
    s.on('end', () => resolve(data));
    s.on('error', reject);
    s.setTimeout(30000, () => { s.destroy(); reject(new Error('timed out')); });
  });
}

test('600 connections at once: all answered, taken at most 32 a turn of the loop', async () => {
  const srv = await startServer({});
  try {
    const c = new Client(srv.url);
    const before = metric((await c.get('/metrics', { headers: { accept: 'text/plain' } })).text,
      'coai_accept_pauses_total');
    assert.equal(before, 0, 'no pause yet');
    // Stopped, the server accepts nothing: the kernel completes every
    // handshake into the listen backlog (raised above evhttp's 128), and
    // all of them are waiting when it goes on.
    srv.proc.kill('SIGSTOP');
    let answers;
    try {
      const pending = [];
      for (let i = 0; i < 600; i++) pending.push(rawGet(srv.port, '/healthz'));
      await new Promise((r) => setTimeout(r, 300));
      srv.proc.kill('SIGCONT');
      answers = await Promise.all(pending);
    } finally {
      srv.proc.kill('SIGCONT');
    }
    const ok = answers.filter((a) => /^HTTP\/1\.1 200 /.test(a)).length;
    assert.equal(ok, 600, `answers: ${answers.find((a) => !/^HTTP\/1\.1 200 /.test(a))}`);
    const after = metric((await c.get('/metrics', { headers: { accept: 'text/plain' } })).text,
      'coai_accept_pauses_total');
    // 600 waiting, 32 a turn: at least 18 turns stopped accepting early
    assert.ok(after >= 600 / 32 - 1, `accept pauses: ${after}`);
  } finally {
    await srv.stop();
  }
});
