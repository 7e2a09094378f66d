// scripted-upstream.mjs - a minimal OpenAI-compatible upstream whose answer is
// whatever text the test sets (the fake in tests/upstream only replays
// recorded traffic). Used for hostile model output. Title requests get the
// title "Scripted chat".
import http from 'node:http';

export async function startScriptedUpstream() {
  let answer = 'Hello from the scripted upstream.';
  const chunk = (delta, finish = null) => `data: ${JSON.stringify({
    id: 'chatcmpl-scripted', object: 'chat.completion.chunk', created: Math.floor(Date.now() / 1000),
    model: 'gpt-4o-mini', choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }],
  })}\n\n`;
  const server = http.createServer((req, res) => {
    let raw = '';
    req.on('data', (c) => { raw += c; });
    req.on('end', () => {
      if (req.method === 'GET' && req.url.startsWith('/v1/models')) {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ object: 'list', data: [{ id: 'gpt-4o-mini', object: 'model', created: 1, owned_by: 'openai' }] }));
        return;
      }
      if (req.method !== 'POST' || !req.url.startsWith('/v1/chat/completions')) {
        res.writeHead(404, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: { message: 'not found', type: 'invalid_request_error', param: null, code: null } }));
        return;
      }
      let body = {};
      try { body = JSON.parse(raw); } catch { /* empty */ }
      const isTitle = (body.messages ?? []).some((m) => m.role === 'system' && String(m.content).startsWith('Generate a short title'));
      const text = isTitle ? 'Scripted chat' : answer;
      if (!body.stream) {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({
          id: 'chatcmpl-scripted', object: 'chat.completion', created: 1, model: 'gpt-4o-mini',
          choices: [{ index: 0, message: { role: 'assistant', content: text }, finish_reason: 'stop' }],
          usage: { prompt_tokens: 5, completion_tokens: 5, total_tokens: 10 },
        }));
        return;
      }
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      res.write(chunk({ role: 'assistant', content: '' }));
      // Several pieces, cut mid-tag, so the streaming renderer sees partial HTML.
      const n = 7;
      const size = Math.ceil(text.length / n);
      for (let i = 0; i < text.length; i += size) res.write(chunk({ content: text.slice(i, i + size) }));
      res.write(chunk({}, 'stop'));
      res.end('data: [DONE]\n\n');
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  return {
    url: `http://127.0.0.1:${port}`,
    baseURL: `http://127.0.0.1:${port}/v1`,
    setAnswer: (t) => { answer = t; },
    close: () => new Promise((resolve) => { server.close(() => resolve()); server.closeAllConnections(); }),
  };
}
