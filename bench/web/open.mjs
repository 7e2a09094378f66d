#!/usr/bin/env node
// bench/chat_open_browser.mjs BIN - how long a 2,000-message chat takes to
// open in headless Chromium (Debian's /usr/bin/chromium through Playwright
// from tests/e2e/node_modules), against the real server (BIN, a release
// build) serving the built web app (web/dist).
//
// The chat (one branch, ~600 characters of markdown per message) is written
// straight into the server's SQLite file. Each run opens /c/<id> in a new
// page of a signed-in context and measures, from navigation start:
//   first contentful paint (Paint Timing), and
//   "latest visible": the last message of the chat rendered in the viewport.
// Prints the median and worst of RUNS (default 7) runs after one warm-up,
// plus how many message rows were in the DOM (virtualized: far below 2,000).
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(path.join(root, 'tests/e2e/package.json'));
const { chromium } = require('@playwright/test');

const BIN = path.resolve(process.argv[2] ?? path.join(root, 'build/server/chatopenaii'));
const RUNS = Number(process.env.RUNS ?? 7);
const PORT = Number(process.env.BENCH_PORT ?? 18383);
const URL0 = `http://127.0.0.1:${PORT}`;
const data = fs.mkdtempSync(path.join(os.tmpdir(), 'coai-bench-open-'));

const srv = spawn(BIN, ['serve'], {
  cwd: root,
  env: {
    ...process.env,
    CHATOPENAII_LISTEN: `127.0.0.1:${PORT}`,
    CHATOPENAII_DATA_DIR: data,
    CHATOPENAII_LOG_LEVEL: 'warn',
    CHATOPENAII_MASTER_KEY: '7'.repeat(64),
  },
  stdio: ['ignore', 'ignore', 'inherit'],
});
const cleanup = () => { try { srv.kill('SIGTERM'); } catch { /* gone */ } fs.rmSync(data, { recursive: true, force: true }); };
process.on('exit', cleanup);

async function until(fn, ms = 10000) {
  const end = Date.now() + ms;
  for (;;) {
    try { if (await fn()) return; } catch { /* not yet */ }
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 20));
  }
}

await until(async () => (await fetch(`${URL0}/healthz`)).ok);
const H = { 'content-type': 'application/json', 'x-requested-with': 'chatopenaii', origin: URL0 };
const reg = await fetch(`${URL0}/api/v1/auth/register`, { method: 'POST', headers: H, body: JSON.stringify({ email: 'bench@example.com', password: 'benchmark-pw' }) });
if (reg.status !== 201) throw new Error(`register: ${reg.status} ${await reg.text()}`);
const cookie = reg.headers.get('set-cookie').split(';')[0];
const [cname, cvalue] = cookie.split('=');
const chat = await (await fetch(`${URL0}/api/v1/chats`, { method: 'POST', headers: { ...H, cookie }, body: JSON.stringify({ title: '2,000 messages' }) })).json();
const id = chat.chat.id;
const text = 'Lorem ipsum dolor sit amet, **consectetur** adipiscing elit; sed do eiusmod `tempor` incididunt ut labore et dolore magna aliqua. '.repeat(5);
execFileSync('sqlite3', [path.join(data, 'chatopenaii.db'), '.timeout 5000', `
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000)
INSERT INTO messages (id, chat_id, parent_id, role, content, model, status, created_at, updated_at)
SELECT printf('01a25000-0000-7000-8000-%012d', i), '${id}',
       CASE WHEN i = 1 THEN NULL ELSE printf('01a25000-0000-7000-8000-%012d', i - 1) END,
       CASE WHEN i % 2 = 1 THEN 'user' ELSE 'assistant' END,
       json_array(json_object('type', 'text', 'text', 'Message ' || i || '. ${text}')),
       'gpt-4o-mini', 'complete', 1790000000000 + i, 1790000000000 + i FROM n;
UPDATE chats SET current_leaf_id = '01a25000-0000-7000-8000-000000002000' WHERE id = '${id}';`]);

const browser = await chromium.launch({
  executablePath: process.env.COAI_CHROMIUM ?? '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1'],
});
const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 } });
await ctx.addCookies([{ name: cname, value: cvalue, url: URL0 }]);

const results = [];
for (let run = 0; run <= RUNS; run++) {
  const page = await ctx.newPage();
  await page.goto(`${URL0}/c/${id}`, { waitUntil: 'commit' });
  const last = page.locator('[data-testid="message"][data-id="01a25000-0000-7000-8000-000000002000"]');
  await last.waitFor({ state: 'visible', timeout: 30000 });
  const m = await page.evaluate(() => {
    const nav = performance.getEntriesByType('navigation')[0];
    const fcp = performance.getEntriesByName('first-contentful-paint')[0];
    return {
      latest: performance.now() - (nav ? nav.startTime : 0),
      fcp: fcp ? fcp.startTime : NaN,
      rows: document.querySelectorAll('[data-testid="message"]').length,
      dcl: nav ? nav.domContentLoadedEventEnd : NaN,
      api: Object.fromEntries(performance.getEntriesByType('resource')
        .filter((e) => e.name.includes('/api/') || e.name.endsWith('.js'))
        .map((e) => [e.name.replace(/^https?:\/\/[^/]+/, ''), `${e.startTime.toFixed(0)}-${e.responseEnd.toFixed(0)}`])),
    };
  });
  await page.close();
  if (run > 0) results.push(m); // run 0 warms the caches
}
await browser.close();

const med = (xs) => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]; };
const max = (xs) => Math.max(...xs);
const f = (x) => `${x.toFixed(0)} ms`;
console.log(`open a 2,000-message chat in chromium (${RUNS} runs after a warm-up, 1280x800):`);
console.log(`  first contentful paint: median ${f(med(results.map((r) => r.fcp)))}, worst ${f(max(results.map((r) => r.fcp)))}`);
console.log(`  latest message visible: median ${f(med(results.map((r) => r.latest)))}, worst ${f(max(results.map((r) => r.latest)))}`);
console.log(`  message rows in the DOM: ${results[0].rows} of 2000`);
if (process.env.VERBOSE) console.log(JSON.stringify(results[0], null, 1));
process.exit(0);
