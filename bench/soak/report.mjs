// report.mjs SAMPLES COUNTS_JSON START_MS SECONDS WARMUP_S SERVER_RC IDLE_SAMPLE [RESULTS_FILE]
// The soak's report: RSS timeline, growth between the first window after
// warm-up and the last window, request mix and status counts, unexpected
// answers. Appends the table row to RESULTS_FILE when given. Exit 0 when the
// soak ran (PASS or FAIL), 1 when it broke (5xx, transport errors, the server
// died or did not exit 0 on SIGTERM, too few samples).
import fs from 'node:fs';

const [samplesFile, countsFile, startArg, secondsArg, warmArg, rcArg, idleArg, resultsFile] = process.argv.slice(2);
const start = Number(startArg);
const warm = Number(warmArg);
// the load's planned length: the driver then only waits for the resumes it
// started, and that tail is not part of the measured windows
const dur = Number(secondsArg);
const c = JSON.parse(fs.readFileSync(countsFile, 'utf8'));
const samples = fs.readFileSync(samplesFile, 'utf8').trim().split('\n').filter(Boolean).map((l) => {
  const [t, rss, anon, file, hwm, fds] = l.split(/\s+/).map(Number);
  return { t: (t - start) / 1000, rss, anon, file, hwm, fds };
}).filter((s) => s.t <= dur + 0.5);
// "held" RSS: the minimum of each sample and its two neighbours (a window of
// ~3 s). Memory that stays is kept, a sub-second peak is not: a sign-in in
// flight holds argon2's 19 MiB for 0.1-0.25 s, and on a lean server two or
// three samples that catch one would move a window's mean by 5%.
samples.forEach((x, i) => {
  const nb = samples.slice(Math.max(0, i - 1), i + 2);
  x.hrss = Math.min(...nb.map((y) => y.rss));
  x.hanon = Math.min(...nb.map((y) => y.anon));
});
const mb = (kib) => (kib / 1024).toFixed(1);
const mean = (a, k) => a.reduce((s, x) => s + x[k], 0) / a.length;
const median = (a, k) => {
  const v = a.map((x) => x[k]).sort((x, y) => x - y);
  return v.length % 2 ? v[(v.length - 1) / 2] : (v[v.length / 2 - 1] + v[v.length / 2]) / 2;
};
const pct = (a, b) => `${a >= b ? '+' : ''}${((a - b) / b * 100).toFixed(1)}%`;
const broken = [];

// ---- RSS timeline ---------------------------------------------------------------
const W = Math.min(60, (dur - warm) / 3);
const first = samples.filter((s) => s.t >= warm && s.t < warm + W);
const last = samples.filter((s) => s.t > dur - W);
console.log(`\n== server memory (${samples.length} samples over ${dur.toFixed(0)} s; warm-up ${warm} s) ==`);
console.log('(means of the samples in each interval)');
console.log(`${'t (s)'.padStart(11)} ${'VmRSS MB'.padStart(9)} ${'RssAnon'.padStart(8)} ${'RssFile'.padStart(8)} ${'fds'.padStart(5)} ${'req/s'.padStart(6)}`);
const step = dur > 300 ? 60 : 20;
for (let a = 0; a < dur - 0.5; a += step) {
  const b = Math.min(a + step, dur);
  const s = samples.filter((x) => x.t >= a && x.t < b);
  if (!s.length) continue;
  let n = 0;
  for (let i = Math.floor(a / 10); i < Math.ceil(b / 10); i++) n += c.timeline[i] ?? 0;
  console.log(`${`${a.toFixed(0)}-${b.toFixed(0)}`.padStart(11)} ${mb(mean(s, 'rss')).padStart(9)} ${mb(mean(s, 'anon')).padStart(8)} ${mb(mean(s, 'file')).padStart(8)} ${Math.max(...s.map((x) => x.fds)).toString().padStart(5)} ${(n / (b - a)).toFixed(1).padStart(6)}${a < warm ? '  (warm-up)' : ''}`);
}
let growth = NaN;
let anonGrowth = NaN;
let m0 = 0;
let m1 = 0;
if (first.length < 2 || last.length < 2) {
  broken.push(`too few samples (${first.length} in the first window, ${last.length} in the last)`);
} else {
  m0 = mean(first, 'hrss');
  m1 = mean(last, 'hrss');
  growth = (m1 - m0) / m0 * 100;
  anonGrowth = (mean(last, 'hanon') - mean(first, 'hanon')) / mean(first, 'hanon') * 100;
  const line = (w) => `VmRSS ${mb(mean(w, 'hrss'))} MB (raw mean ${mb(mean(w, 'rss'))}, median ${mb(median(w, 'rss'))}), RssAnon ${mb(mean(w, 'hanon'))} MB (raw mean ${mb(mean(w, 'anon'))}), fds <= ${Math.max(...w.map((s) => s.fds))}, ${w.length} samples`;
  console.log(`\nfirst window after warm-up [${warm}, ${(warm + W).toFixed(0)}) s: ${line(first)}`);
  console.log(`last window [${(dur - W).toFixed(0)}, ${dur.toFixed(0)}] s: ${line(last)}`);
  console.log('(window figures: mean of the held RSS, each sample the minimum of it and its neighbours: sub-second peaks out)');
  console.log(`growth: VmRSS ${pct(m1, m0)}, RssAnon ${pct(mean(last, 'hanon'), mean(first, 'hanon'))}; of the raw samples: mean ${pct(mean(last, 'rss'), mean(first, 'rss'))}, median ${pct(median(last, 'rss'), median(first, 'rss'))}`);
  const lo = Math.min(...samples.filter((s) => s.t >= warm).map((s) => s.rss));
  const hi = Math.max(...samples.filter((s) => s.t >= warm).map((s) => s.rss));
  console.log(`after warm-up VmRSS ranged ${mb(lo)}-${mb(hi)} MB; peak VmHWM ${mb(samples.at(-1).hwm)} MB`);
}
if (idleArg) {
  const [, rss, anon] = idleArg.split(/\s+/).map(Number);
  console.log(`5 s after the load stopped (the server trims its heap when idle): VmRSS ${mb(rss)} MB, RssAnon ${mb(anon)} MB`);
}

// ---- requests -------------------------------------------------------------------
const byAction = {};
let n5xx = 0;
let nTransport = 0;
for (const [k, n] of Object.entries(c.counts)) {
  const i = k.lastIndexOf(' ');
  const action = k.slice(0, i);
  const status = k.slice(i + 1);
  (byAction[action] ??= {})[status] = n;
  if (/^5/.test(status)) n5xx += n;
  if (status === 'transport' || status === 'reset') nTransport += n;
}
console.log(`\n== requests: ${c.requests} in ${c.elapsed.toFixed(0)} s (${(c.requests / c.elapsed).toFixed(1)}/s) ==`);
for (const action of Object.keys(byAction).sort()) {
  const st = byAction[action];
  const total = Object.values(st).reduce((s, x) => s + x, 0);
  console.log(`${action.padEnd(28)} ${String(total).padStart(6)}   ${Object.entries(st).map(([s, n]) => `${s}: ${n}`).join(', ')}`);
}
console.log('\nturn outcomes:');
for (const k of Object.keys(c.outcomes).sort()) console.log(`  ${k.padEnd(40)} ${c.outcomes[k]}`);
const nUnexpected = Object.values(c.unexpected).reduce((s, x) => s + x, 0);
console.log(`\nunexpected: ${nUnexpected}${nUnexpected ? '' : ' (every status and every turn ending as its action expects)'}`);
for (const [k, n] of Object.entries(c.unexpected)) console.log(`  ${k}: ${n}`);
for (const s of c.samples) console.log(`  e.g. ${s}`);
if (n5xx) broken.push(`${n5xx} responses with a 5xx status`);
if (nTransport) broken.push(`${nTransport} transport errors`);
if (rcArg !== '0') broken.push(rcArg === 'dead' ? 'the server died during the soak' : `the server exited ${rcArg} on SIGTERM`);
else console.log('server: exit 0 on SIGTERM');

// ---- verdict --------------------------------------------------------------------
const ok = Number.isFinite(growth) && growth <= 5 && nUnexpected === 0 && !broken.length;
const measured = Number.isFinite(growth)
  ? `${growth >= 0 ? '+' : ''}${growth.toFixed(1)}% (${mb(m0)} → ${mb(m1)} MB; RssAnon ${anonGrowth >= 0 ? '+' : ''}${anonGrowth.toFixed(1)}%; ${c.requests} requests, ${nUnexpected} unexpected)`
  : 'no figure (bench broke)';
const figure = `RSS growth over a ${dur >= 590 && dur <= 610 ? '10-minute' : `${Math.round(dur)} s`} mixed soak`;
console.log(`\n${ok ? 'PASS' : 'FAIL'}  ${figure}: ${measured}; target <= 5% and no unexpected response`);
if (broken.length) console.log(`BROKEN: ${broken.join('; ')}`);
if (resultsFile) fs.appendFileSync(resultsFile, `${figure}\t${measured}\t≤ 5%\t${ok ? 'PASS' : 'FAIL'}\n`);
process.exit(broken.length ? 1 : 0);
