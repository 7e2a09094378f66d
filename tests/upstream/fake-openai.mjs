// fake-openai.mjs - a fake OpenAI-compatible provider for tests.
//
// Replays the real recorded traffic in the shared fixtures byte for byte and
// injects faults; the `model` field of POST /v1/chat/completions picks the
// scenario (see SCENARIOS below). Import startFakeOpenAI(), or run
//   node tests/upstream/fake-openai.mjs --port 9999
// which prints one JSON line {"url","baseURL","port"} on stdout.

import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { fixturesDir as defaultFixturesDir } from '../lib/fixtures.mjs';
import { parseSse } from '../lib/sse.mjs';

export const TEXT_STOP_SSE = 'openai-chat-sse/openai-python_text-stop.sse';
export const TEXT_STOP_JSON = 'openai-json/openai-python_chatcmpl_text-stop.json';
export const UTF8_SSE = 'openai-chat-sse/openai-python_json-object-long.sse';
export const ERRORS_JSON = 'openai-errors/errors-from-github-issues.json';
export const TITLE_PREFIX = 'Generate a short title';

// Every scenario the `model` field can select (besides plain model names,
// "fixture:<name>" and "slow:<ms>:<count>").
//
// Some faults are picked by the API key instead (for key-pool tests), on
// every /v1 path: "sk-bad" -> 401 invalid_api_key; "sk-429" -> 429
// rate_limit_exceeded with Retry-After: 2; "sk-429-<n>" -> the same with
// Retry-After: <n>.
export const SCENARIOS = [
  'fault:401', 'fault:404', 'fault:429', 'fault:429-once', 'fault:500', 'fault:500-once',
  'fault:context', 'fault:inline-error', 'fault:drop', 'fault:hang', 'fault:hang-headers',
  'fault:slow', 'fault:split', 'fault:split-utf8',
];

export const MODELS = [
  { id: 'gpt-4o', object: 'model', created: 1715367049, owned_by: 'openai' },
  { id: 'gpt-4o-mini', object: 'model', created: 1721172741, owned_by: 'openai' },
  { id: 'gpt-4.1', object: 'model', created: 1744316542, owned_by: 'openai' },
];

// The title the fake answers for a title request: the first 4 words of the
// first user message, joined by single spaces.
export function titleFor(firstUserText) {
  return String(firstUserText).split(/\s+/).filter(Boolean).slice(0, 4).join(' ');
}

// The full answer text of the slow drip for `count` chunks.
export function slowText(count = 200) {
  let s = '';
  for (let i = 0; i < count; i++) s += `w${i} `;
  return s;
}

// Split an SSE body into pieces that end at event boundaries ("\n\n"); a
// trailing remainder (a recording without the final blank line) is kept.
export function splitEvents(buf) {
  const pieces = [];
  let start = 0;
  for (;;) {
    const i = buf.indexOf('\n\n', start);
    if (i < 0) break;
    pieces.push(buf.subarray(start, i + 2));
    start = i + 2;
  }
  if (start < buf.length) pieces.push(buf.subarray(start));
  return pieces;
}

// Cut buf into random 1-7 byte pieces; every multi-byte UTF-8 sequence is
// additionally cut right after its lead byte. rand() returns [0, 1).
export function splitRandom(buf, rand = Math.random) {
  const pieces = [];
  let pos = 0;
  while (pos < buf.length) {
    let end = Math.min(pos + 1 + Math.floor(rand() * 7), buf.length);
    for (let j = pos; j < end; j++) {
      if (buf[j] >= 0xc0 && j + 1 < buf.length) { end = j + 1; break; }
    }
    pieces.push(buf.subarray(pos, end));
    pos = end;
  }
  return pieces;
}

function mulberry32(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// ---- fixtures ---------------------------------------------------------------

function makeFixtures(dir) {
  if (!fs.existsSync(path.join(dir, ERRORS_JSON))) {
    throw new Error(`fake-openai: fixtures not found in ${dir} (set COAI_FIXTURES_DIR)`);
  }
  const cache = new Map();
  const read = (rel) => {
    if (!cache.has(rel)) cache.set(rel, fs.readFileSync(path.join(dir, rel)));
    return cache.get(rel);
  };
  const exists = (rel) => cache.has(rel) || fs.existsSync(path.join(dir, rel));

  // Real error bodies, picked from the errors fixture by what they are.
  const entries = JSON.parse(read(ERRORS_JSON).toString('utf8'));
  const wire = (e) => e.wire_body ?? e.wire_body_reconstructed;
  const pick = (what, pred) => {
    const e = entries.find((x) => wire(x) && pred(x, wire(x).error));
    if (!e) throw new Error(`fake-openai: no ${what} body in ${ERRORS_JSON}`);
    return { status: e.status, body: JSON.stringify(wire(e)) };
  };
  const inline = entries.find((x) => typeof x.sse_line_reconstructed === 'string'
    && x.sse_line_reconstructed.startsWith('data: {"error"'));
  if (!inline) throw new Error(`fake-openai: no in-stream error frame in ${ERRORS_JSON}`);
  const errors = {
    invalidKey: pick('invalid_api_key', (x, e) => x.status === 401 && e.code === 'invalid_api_key'),
    noKey: pick('missing key', (x, e) => x.status === 401 && e.code === null),
    rateLimit: pick('rate_limit_exceeded', (x, e) => x.status === 429 && e.code === 'rate_limit_exceeded'),
    modelNotFound: pick('model_not_found', (x, e) => x.status === 404 && e.code === 'model_not_found'),
    context: pick('context_length_exceeded', (x, e) => x.status === 400 && e.code === 'context_length_exceeded'),
    // The in-stream frame carries OpenAI's server_error body; reuse it for 500s.
    server: { status: 500, body: inline.sse_line_reconstructed.slice('data: '.length) },
    inlineFrame: Buffer.from(`${inline.sse_line_reconstructed}\n\n`),
  };
  return { dir, read, exists, errors };
}

// Stream body for "fixture:<name>": .sse as is, .chunks.jsonl as data lines.
function fixtureStream(fx, name) {
  for (const rel of [`openai-chat-sse/${name}.sse`, `openai-cassettes/${name}.sse`]) {
    if (fx.exists(rel)) return fx.read(rel);
  }
  const rel = `openai-chat-sse/${name}.chunks.jsonl`;
  if (!fx.exists(rel)) return null;
  const lines = fx.read(rel).toString('utf8').split('\n').filter((l) => l.trim() !== '');
  return Buffer.from(lines.map((l) => `data: ${l}\n\n`).join('') + 'data: [DONE]\n\n');
}

function fixtureJson(fx, name) {
  for (const rel of [`openai-json/${name}.json`, `openai-cassettes/${name}.json`]) {
    if (fx.exists(rel)) return fx.read(rel);
  }
  return null;
}

// ---- generated bodies -------------------------------------------------------

function completionId() {
  return `chatcmpl-fake${crypto.randomBytes(10).toString('hex')}`;
}

function chatCompletion(model, content, usage) {
  return JSON.stringify({
    id: completionId(), object: 'chat.completion', created: Math.floor(Date.now() / 1000), model,
    choices: [{ index: 0, message: { role: 'assistant', content, refusal: null }, logprobs: null, finish_reason: 'stop' }],
    usage, system_fingerprint: 'fp_fake',
  });
}

// Generated stream in OpenAI's chunk format: role chunk, one chunk per
// content piece, finish chunk, usage chunk, [DONE]. Returns event strings.
function chunkEvents(model, usage) {
  const id = completionId();
  const created = Math.floor(Date.now() / 1000);
  const chunk = (choices, extra) => `data: ${JSON.stringify({
    id, object: 'chat.completion.chunk', created, model, system_fingerprint: 'fp_fake', choices, ...extra,
  })}\n\n`;
  const delta = (d, finish = null) => [{ index: 0, delta: d, logprobs: null, finish_reason: finish }];
  return {
    head: chunk(delta({ role: 'assistant', content: '', refusal: null })),
    part: (text) => chunk(delta({ content: text })),
    tail: [chunk(delta({}, 'stop')), chunk([], { usage }), 'data: [DONE]\n\n'],
  };
}

function usageFor(completionTokens) {
  return { prompt_tokens: 14, completion_tokens: completionTokens, total_tokens: 14 + completionTokens };
}

function textOf(content) {
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) {
    return content.map((p) => (p && typeof p.text === 'string' ? p.text : '')).join(' ');
  }
  return '';
}

function isTitleRequest(body) {
  return Array.isArray(body.messages) && body.messages.some(
    (m) => m && m.role === 'system' && textOf(m.content).startsWith(TITLE_PREFIX));
}

// ---- the server -------------------------------------------------------------

export async function startFakeOpenAI({
  port = 0,
  host = '127.0.0.1',
  fixturesDir = defaultFixturesDir,
  eventDelayMs = Number(process.env.FAKE_OPENAI_EVENT_DELAY_MS ?? 2),
  slowMs = Number(process.env.FAKE_OPENAI_SLOW_MS ?? 25),
  slowCount = Number(process.env.FAKE_OPENAI_SLOW_COUNT ?? 200),
  seed = Number(process.env.FAKE_OPENAI_SEED ?? 1),
} = {}) {
  const fx = makeFixtures(fixturesDir);
  const requests = [];
  const onceSeen = new Set();
  let splitSeq = 0;

  function reset() {
    requests.length = 0;
    onceSeen.clear();
  }

  const sendJson = (res, status, body, headers = {}) => {
    const buf = Buffer.isBuffer(body) ? body : Buffer.from(typeof body === 'string' ? body : JSON.stringify(body));
    res.writeHead(status, {
      'content-type': 'application/json', 'content-length': buf.length,
      'x-request-id': `req_${crypto.randomBytes(16).toString('hex')}`, ...headers,
    });
    res.end(buf);
  };
  const sendError = (res, err, headers) => sendJson(res, err.status, err.body, headers);
  const fakeError = (res, status, message, code = null) => sendJson(res, status, {
    error: { message: `fake-openai: ${message}`, type: 'invalid_request_error', param: null, code },
  });

  const startStream = (res) => {
    res.writeHead(200, {
      'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive',
      'x-request-id': `req_${crypto.randomBytes(16).toString('hex')}`,
    });
  };
  // Resolves once the bytes are handed to the socket (or the socket is gone).
  const write = (res, piece) => new Promise((resolve) => {
    if (res.destroyed || res.writableEnded) return resolve(false);
    res.write(piece, () => resolve(true));
  });
  const gone = (res) => res.destroyed || res.writableEnded || !res.socket || res.socket.destroyed;

  async function replay(res, pieces, { delayMs = eventDelayMs, end = true } = {}) {
    startStream(res);
    for (let i = 0; i < pieces.length; i++) {
      if (gone(res)) return;
      await write(res, pieces[i]);
      if (delayMs > 0 && i + 1 < pieces.length) await sleep(delayMs);
    }
    if (end && !gone(res)) res.end();
  }

  async function drip(res, model, ms, count) {
    const g = chunkEvents(model, usageFor(count));
    startStream(res);
    await write(res, g.head);
    for (let i = 0; i < count; i++) {
      await sleep(ms);
      if (gone(res)) return;
      await write(res, g.part(`w${i} `));
    }
    for (const t of g.tail) await write(res, t);
    if (!gone(res)) res.end();
  }

  async function splitWrite(res, buf, contentType) {
    const rand = mulberry32(seed + splitSeq++);
    const pieces = splitRandom(buf, rand);
    if (contentType === 'json') {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': buf.length });
    } else {
      startStream(res);
    }
    for (const p of pieces) {
      if (gone(res)) return;
      await write(res, p);
      await new Promise((r) => setImmediate(r));
    }
    if (!gone(res)) res.end();
  }

  // A chat.completion assembled from a recorded stream (raw UTF-8 JSON).
  function completionFromStream(buf, model) {
    let content = '';
    for (const ev of parseSse(buf)) {
      if (ev.data === '[DONE]') continue;
      const c = JSON.parse(ev.data).choices?.[0]?.delta?.content;
      if (typeof c === 'string') content += c;
    }
    return Buffer.from(chatCompletion(model, content, usageFor(180)));
  }

  const textStop = (res, stream) => (stream
    ? replay(res, splitEvents(fx.read(TEXT_STOP_SSE)))
    : sendJson(res, 200, fx.read(TEXT_STOP_JSON)));

  async function chat(req, res, body) {
    const model = typeof body.model === 'string' ? body.model : '';
    const stream = body.stream === true;
    const messages = Array.isArray(body.messages) ? body.messages : [];

    // Title requests are answered predictably whatever the model.
    if (isTitleRequest(body)) {
      const first = messages.find((m) => m && m.role === 'user');
      const title = titleFor(first ? textOf(first.content) : '');
      if (!stream) return sendJson(res, 200, chatCompletion(model, title, usageFor(4)));
      const g = chunkEvents(model, usageFor(4));
      return replay(res, [g.head, g.part(title), ...g.tail].map((s) => Buffer.from(s)));
    }

    if (model === '') return fakeError(res, 400, 'request has no model');

    if (model.startsWith('fixture:')) {
      const name = model.slice('fixture:'.length).replace(/\.(sse|json|chunks\.jsonl)$/, '');
      if (!/^[\w.-]+$/.test(name) || name.includes('..')) return fakeError(res, 400, `bad fixture name ${name}`);
      const buf = stream ? fixtureStream(fx, name) : fixtureJson(fx, name);
      if (!buf) return fakeError(res, 404, `no ${stream ? 'stream' : 'json'} fixture named ${name}`, 'fixture_not_found');
      return stream ? replay(res, splitEvents(buf)) : sendJson(res, 200, buf);
    }

    const slow = /^slow:(\d+):(\d+)$/.exec(model);
    if (model === 'fault:slow' || slow) {
      const url = new URL(req.url, 'http://x');
      const ms = Number(slow?.[1] ?? url.searchParams.get('slow_ms') ?? slowMs);
      const count = Number(slow?.[2] ?? url.searchParams.get('slow_count') ?? slowCount);
      if (stream) return drip(res, model, ms, count);
      await sleep(ms * count);
      if (gone(res)) return undefined;
      return sendJson(res, 200, chatCompletion(model, slowText(count), usageFor(count)));
    }

    if (!model.startsWith('fault:')) return textStop(res, stream);

    const E = fx.errors;
    switch (model) {
      case 'fault:401': return sendError(res, E.invalidKey);
      case 'fault:404': return sendError(res, E.modelNotFound);
      case 'fault:429': return sendError(res, E.rateLimit, { 'retry-after': '0' });
      case 'fault:500': return sendError(res, E.server);
      case 'fault:context': return sendError(res, E.context);
      case 'fault:429-once':
      case 'fault:500-once': {
        const last = messages[messages.length - 1];
        const key = `${model}\0${last ? JSON.stringify(last.content ?? null) : ''}`;
        if (!onceSeen.has(key)) {
          onceSeen.add(key);
          return model === 'fault:429-once'
            ? sendError(res, E.rateLimit, { 'retry-after': '0' })
            : sendError(res, E.server);
        }
        return textStop(res, stream);
      }
      case 'fault:inline-error': {
        if (!stream) return sendError(res, E.server);
        const events = splitEvents(fx.read(TEXT_STOP_SSE)).slice(0, 2);
        return replay(res, [...events, E.inlineFrame]);
      }
      case 'fault:drop': {
        if (stream) {
          await replay(res, splitEvents(fx.read(TEXT_STOP_SSE)).slice(0, 3), { end: false });
        } else {
          const buf = fx.read(TEXT_STOP_JSON);
          res.writeHead(200, { 'content-type': 'application/json', 'content-length': buf.length });
          await write(res, buf.subarray(0, buf.length >> 1));
        }
        await sleep(5);
        res.socket?.destroy();
        return undefined;
      }
      case 'fault:hang': {
        if (stream) {
          startStream(res);
          await write(res, splitEvents(fx.read(TEXT_STOP_SSE))[0]);
        } else {
          res.writeHead(200, { 'content-type': 'application/json' });
          res.flushHeaders();
        }
        return undefined; // nothing more until the client goes away
      }
      case 'fault:hang-headers': return undefined;
      case 'fault:split':
        return stream ? splitWrite(res, fx.read(TEXT_STOP_SSE), 'sse') : splitWrite(res, fx.read(TEXT_STOP_JSON), 'json');
      case 'fault:split-utf8':
        return stream
          ? splitWrite(res, fx.read(UTF8_SSE), 'sse')
          : splitWrite(res, completionFromStream(fx.read(UTF8_SSE), model), 'json');
      default:
        return fakeError(res, 400, `unknown scenario ${model}; known: ${SCENARIOS.join(', ')}`, 'unknown_scenario');
    }
  }

  async function handle(req, res) {
    const url = new URL(req.url, 'http://fake');
    const chunks = [];
    for await (const c of req) chunks.push(c);
    const raw = Buffer.concat(chunks).toString('utf8');

    if (url.pathname === '/_requests') {
      if (req.method === 'GET') return sendJson(res, 200, requests);
      if (req.method === 'DELETE') { reset(); return sendJson(res, 200, { ok: true }); }
      return fakeError(res, 405, 'use GET or DELETE on /_requests');
    }
    if (!url.pathname.startsWith('/v1/')) {
      return sendJson(res, 404, { error: { message: `Invalid URL (${req.method} ${url.pathname})`, type: 'invalid_request_error', param: null, code: null } });
    }

    let body = raw;
    let badJson = false;
    if (raw !== '' && /json/i.test(req.headers['content-type'] ?? '')) {
      try { body = JSON.parse(raw); } catch { badJson = true; }
    }
    const model = body && typeof body === 'object' ? body.model : undefined;
    // raw: the request body exactly as received (UTF-8 text).
    requests.push({
      method: req.method, path: url.pathname, query: url.search, headers: { ...req.headers },
      body, raw, model, time: Date.now(),
    });

    const auth = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? '');
    if (!auth) return sendError(res, fx.errors.noKey);
    if (auth[1] === 'sk-bad') return sendError(res, fx.errors.invalidKey);
    const key429 = /^sk-429(?:-(\d+))?$/.exec(auth[1]);
    if (key429) return sendError(res, fx.errors.rateLimit, { 'retry-after': key429[1] ?? '2' });

    if (url.pathname === '/v1/models' && req.method === 'GET') {
      return sendJson(res, 200, { object: 'list', data: MODELS });
    }
    if (url.pathname.startsWith('/v1/models/') && req.method === 'GET') {
      const m = MODELS.find((x) => x.id === decodeURIComponent(url.pathname.slice('/v1/models/'.length)));
      return m ? sendJson(res, 200, m) : sendError(res, fx.errors.modelNotFound);
    }
    if (url.pathname === '/v1/chat/completions') {
      if (req.method !== 'POST') return fakeError(res, 405, 'use POST on /v1/chat/completions');
      if (badJson || typeof body !== 'object' || body === null || Array.isArray(body)) {
        return fakeError(res, 400, 'body is not a JSON object');
      }
      return chat(req, res, body);
    }
    return sendJson(res, 200, { object: 'fake', method: req.method, path: url.pathname });
  }

  const server = http.createServer((req, res) => {
    handle(req, res).catch((err) => {
      if (!res.headersSent) fakeError(res, 500, `internal error: ${err.message}`);
      else res.destroy();
    });
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => { server.off('error', reject); resolve(); });
  });
  const actualPort = server.address().port;
  const origin = `http://${host}:${actualPort}`;

  return {
    url: origin,
    baseURL: `${origin}/v1`,
    port: actualPort,
    requests,
    reset,
    // Chat-completion request bodies only, in arrival order.
    chatRequests: () => requests.filter((r) => r.path === '/v1/chat/completions').map((r) => r.body),
    close: () => new Promise((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    }),
  };
}

// ---- script mode --------------------------------------------------------------

const isMain = process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url);
if (isMain) {
  const args = process.argv.slice(2);
  const opt = (name, dflt) => {
    const i = args.indexOf(`--${name}`);
    return i >= 0 && i + 1 < args.length ? args[i + 1] : dflt;
  };
  const fake = await startFakeOpenAI({ port: Number(opt('port', 0)), host: opt('host', '127.0.0.1') });
  process.stdout.write(`${JSON.stringify({ url: fake.url, baseURL: fake.baseURL, port: fake.port })}\n`);
  const stop = () => fake.close().then(() => process.exit(0));
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}
