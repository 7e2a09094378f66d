// stream_load.mjs URL COOKIE CHAT_IDS_FILE CONCURRENCY SECONDS
// Each of CONCURRENCY workers owns one chat and loops: send a message,
// follow its events to "done". Prints "<messages> <seconds> <errors>".
import http from 'node:http';
import fs from 'node:fs';

const [url, cookie, chatsFile, concArg, secsArg] = process.argv.slice(2);
const chats = fs.readFileSync(chatsFile, 'utf8').trim().split('\n');
const conc = Number(concArg);
const secs = Number(secsArg);
const agent = new http.Agent({ keepAlive: true, maxSockets: conc * 2 });
const base = new URL(url);
const hdr = { cookie, 'x-requested-with': 'chatopenaii', origin: base.origin };

function req(method, p, body) {
  return new Promise((resolve, reject) => {
    const data = body ? JSON.stringify(body) : undefined;
    const r = http.request({ host: base.hostname, port: base.port, path: p, method, agent,
      headers: { ...hdr, ...(data ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) } : {}) } }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, text: Buffer.concat(chunks).toString() }));
      res.on('error', reject);
    });
    r.on('error', reject);
    r.end(data);
  });
}

let done = 0;
let errors = 0;
const shown = new Set();
function report(what) { // the first few kinds of failure, on stderr
  const k = what.slice(0, 60);
  if (shown.size < 5 && !shown.has(k)) { shown.add(k); process.stderr.write(`stream_load: ${what.slice(0, 300)}\n`); }
}
const t0 = Date.now();
const end = t0 + secs * 1000;
async function worker(chat) {
  while (Date.now() < end) {
    try {
      const r = await req('POST', `/api/v1/chats/${chat}/messages`, { content: 'bench', model: 'gpt-4o' });
      if (r.status !== 202) { errors++; report(`POST ${r.status} ${r.text}`); await new Promise((s) => setTimeout(s, 20)); continue; }
      const ev = await req('GET', JSON.parse(r.text).turn.events_url);
      if (ev.status === 200 && /event: done\ndata: \{"status":"complete"/.test(ev.text)) done++;
      else { errors++; report(`events ${ev.status} ...${ev.text.slice(-250)}`); }
    } catch (e) {
      errors++;
      report(`exception ${e.message}`);
    }
  }
}
await Promise.all(chats.slice(0, conc).map(worker));
console.log(`${done} ${((Date.now() - t0) / 1000).toFixed(2)} ${errors}`);
agent.destroy();
