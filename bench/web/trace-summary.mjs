#!/usr/bin/env node
// bench/web/trace-summary.mjs TRACE.json [END_MS] - where the time of a page
// load goes, from a Chrome trace written by `TRACE=file node bench/web/open.mjs`:
//   * the renderer main thread's tasks of 2 ms or more, in time order (ms
//     from navigation start), each with its biggest inner events (script
//     compile and evaluation, function calls, style, layout, paint);
//   * the JavaScript functions with the most self time (V8 CPU profiler
//     samples), up to END_MS (default: the whole trace);
//   * with the compositor's categories (TRACE_CATEGORIES=...,cc,viz): each
//     commit up to the first contentful paint, its raster tasks, activation
//     and draw, and the CPU time of each thread meanwhile.
import fs from 'node:fs';

const file = process.argv[2];
if (!file) {
  console.error('usage: trace-summary.mjs TRACE.json [END_MS]');
  process.exit(2);
}
const endMs = Number(process.argv[3] ?? Infinity);
const raw = JSON.parse(fs.readFileSync(file, 'utf8'));
if (raw.nodes && raw.samples) {
  cpuProfile(raw);
  process.exit(0);
}

/** A .cpuprofile (Profiler.stop): self and total time per function. */
function cpuProfile(p) {
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const key = (n) => {
    const cf = n.callFrame;
    return `${cf.functionName || '(anonymous)'} ${cf.url ? cf.url.replace(/^https?:\/\/[^/]+/, '') : ''}:${cf.lineNumber + 1}`;
  };
  const self = new Map();
  const total = new Map();
  let t = p.startTime;
  const start = p.startTime;
  for (let i = 0; i < p.samples.length; i++) {
    t += p.timeDeltas[i];
    if ((t - start) / 1000 > endMs) break;
    const d = (p.timeDeltas[i + 1] ?? 0) / 1000;
    if (d <= 0) continue;
    let n = byId.get(p.samples[i]);
    const k = key(n);
    self.set(k, (self.get(k) ?? 0) + d);
    const seen = new Set();
    while (n) {
      const kk = key(n);
      if (!seen.has(kk)) {
        seen.add(kk);
        total.set(kk, (total.get(kk) ?? 0) + d);
      }
      n = byId.get(parent.get(n.id));
    }
  }
  const show = (title, m, count) => {
    console.log(title);
    for (const [k, v] of [...m].filter(([k]) => !k.startsWith('(idle)') && !k.startsWith('(root)')).sort((a, b) => b[1] - a[1]).slice(0, count)) console.log(`  ${v.toFixed(1).padStart(7)}  ${k}`);
  };
  show('self time (ms):', self, 35);
  show('total time (ms):', total, 45);
}
const ev = Array.isArray(raw) ? raw : raw.traceEvents;

// The page's renderer: the CrRendererMain thread with the navigationStart mark
// of the last navigation (about:blank pages have their own renderers).
const names = new Map();
for (const e of ev) if (e.name === 'thread_name') names.set(`${e.pid}:${e.tid}`, e.args.name);
// The page's navigation: the http document's navigationStart, or else the
// first navigationStart of the frame that had the first contentful paint.
const onMain = (e) => names.get(`${e.pid}:${e.tid}`) === 'CrRendererMain';
let navs = ev.filter((e) => e.name === 'navigationStart' && onMain(e) && e.args?.data?.documentLoaderURL?.startsWith('http'));
if (navs.length === 0) {
  const fcp = ev.find((e) => e.name === 'firstContentfulPaint' && onMain(e));
  navs = ev.filter((e) => e.name === 'navigationStart' && fcp && e.args?.frame === fcp.args?.frame && e.ts < fcp.ts).sort((a, b) => a.ts - b.ts).slice(0, 1);
}
if (navs.length === 0) throw new Error('no navigationStart of the page in the trace');
const nav = navs[navs.length - 1];
const t0 = nav.ts;
const main = (e) => e.pid === nav.pid && e.tid === nav.tid;
const ms = (ts) => (ts - t0) / 1000;

// ---- tasks ------------------------------------------------------------------------
const complete = ev.filter((e) => main(e) && e.ph === 'X' && e.ts >= t0 && ms(e.ts) <= endMs).sort((a, b) => a.ts - b.ts || b.dur - a.dur);
const tasks = [];
for (const e of complete) {
  if (e.name !== 'RunTask' && e.name !== 'ThreadControllerImpl::RunTask') continue;
  const prev = tasks[tasks.length - 1];
  if (prev && e.ts < prev.ts + prev.dur) continue; // nested in the previous task
  tasks.push(e);
}
const INNER = new Set(['EvaluateScript', 'v8.compile', 'v8.compileModule', 'v8.evaluateModule', 'FunctionCall', 'ParseHTML', 'UpdateLayoutTree',
  'Layout', 'Paint', 'PrePaint', 'Layerize', 'TimerFire', 'FireAnimationFrame', 'EventDispatch', 'ResourceReceivedData', 'ResourceFinish',
  'V8.GC_SCAVENGER', 'MajorGC', 'MinorGC', 'v8.run', 'ParseAuthorStyleSheet', 'HitTest', 'RunMicrotasks', 'v8.parseOnBackground', 'XHRLoad', 'IntersectionObserverController::computeIntersections', 'ResizeObserverController::deliverObservations']);
console.log('renderer main thread tasks >= 2 ms (ms from navigation start):');
let busy = 0;
let cpu = 0;
for (const t of tasks) {
  const d = t.dur / 1000;
  busy += d;
  cpu += (t.tdur ?? t.dur) / 1000;
  if (d < 2) continue;
  const inner = complete.filter((e) => e !== t && e.ts >= t.ts && e.ts + e.dur <= t.ts + t.dur && INNER.has(e.name) && e.dur >= 1000);
  const desc = inner.slice(0, 8).map((e) => {
    const a = e.args?.data ?? {};
    const what = a.url ? ` ${a.url.replace(/^https?:\/\/[^/]+/, '')}` : a.functionName ? ` ${a.functionName}` : a.type ? ` ${a.type}` : '';
    return `${e.name}${what} ${(e.dur / 1000).toFixed(1)}`;
  });
  console.log(`  ${ms(t.ts).toFixed(0).padStart(5)} +${d.toFixed(1).padStart(5)} (cpu ${((t.tdur ?? t.dur) / 1000).toFixed(1).padStart(5)})  ${desc.join(' | ')}`);
}
console.log(`  main thread busy in tasks: ${busy.toFixed(0)} ms (on a CPU: ${cpu.toFixed(0)} ms)`);

// ---- marks, paints -------------------------------------------------------------------
const marks = ev.filter((e) => main(e) && (e.cat?.includes('user_timing') || e.name === 'firstContentfulPaint' || e.name === 'firstPaint') && e.ts >= t0 && e.ph !== 'X');
for (const m of marks) if (ms(m.ts) <= endMs) console.log(`  mark ${m.name} at ${ms(m.ts).toFixed(0)}`);

// ---- the compositor's side (with TRACE_CATEGORIES including cc,viz) -------------------
// Each commit of the page's renderer, the raster tasks of the frame it
// committed (a tile worker: wall time and CPU time), the activation and the
// draw that followed, up to the first contentful paint: where a frame the
// main thread has finished waits before it is shown. The CPU time of every
// thread (all processes) between the document's arrival and that paint says
// what ran beside it.
const inPage = (e) => e.pid === nav.pid;
const fcpEv = ev.find((e) => e.name === 'firstContentfulPaint' && main(e) && e.ts >= t0);
const commits = ev.filter((e) => inPage(e) && e.name === 'ProxyImpl::Commit' && e.ph === 'X' && e.dur > 0 && e.ts >= t0).sort((a, b) => a.ts - b.ts);
if (commits.length && fcpEv) {
  console.log(`compositor, up to the first contentful paint at ${ms(fcpEv.ts).toFixed(0)} ms:`);
  const at = (name, from, to) => ev.filter((e) => inPage(e) && e.name === name && e.ts >= from && e.ts < to).sort((a, b) => a.ts - b.ts);
  for (let i = 0; i < commits.length && commits[i].ts <= fcpEv.ts; i++) {
    const c = commits[i];
    const next = commits[i + 1]?.ts ?? Infinity;
    const act = at('ActivateLayerTree', c.ts, next)[0];
    // the tasks the activation waited for: those started before it
    const raster = at('RasterTask', c.ts, act ? act.ts : Math.min(next, fcpEv.ts)).filter((e) => e.ph === 'X');
    const wall = raster.length ? (Math.max(...raster.map((e) => e.ts + e.dur)) - raster[0].ts) / 1000 : 0;
    const rcpu = raster.reduce((a, e) => a + (e.tdur ?? e.dur), 0) / 1000;
    const draw = at('DrawFrame', act ? act.ts : c.ts, next)[0];
    console.log(`  commit ${ms(c.ts).toFixed(0)}: ${raster.length} raster tasks from ${raster.length ? ms(raster[0].ts).toFixed(0) : '-'} (${wall.toFixed(0)} ms wall, ${rcpu.toFixed(1)} ms CPU), activation ${act ? ms(act.ts).toFixed(0) : '-'}, draw ${draw ? ms(draw.ts).toFixed(0) : '-'}`);
  }
  const from = ev.find((e) => main(e) && e.name === 'ParseHTML' && e.ts >= t0 && e.args?.beginData?.url?.startsWith('http'))?.ts ?? t0;
  const perThread = new Map();
  const byThread = new Map();
  for (const e of ev) {
    if (e.ph !== 'X' || e.tdur === undefined || e.ts < from || e.ts > fcpEv.ts) continue;
    const k = `${e.pid}:${e.tid}`;
    if (!byThread.has(k)) byThread.set(k, []);
    byThread.get(k).push(e);
  }
  for (const [k, es] of byThread) {
    es.sort((a, b) => a.ts - b.ts || b.dur - a.dur);
    let end = -1;
    let sum = 0;
    for (const e of es) if (e.ts >= end) { sum += e.tdur; end = e.ts + e.dur; } // outermost events only
    perThread.set(k, sum / 1000);
  }
  const rows = [...perThread].filter(([, v]) => v >= 2).sort((a, b) => b[1] - a[1]);
  console.log(`  CPU by thread (page: the page's renderer) from its first ParseHTML (${ms(from).toFixed(0)} ms) to that paint:`);
  for (const [k, v] of rows) console.log(`    ${v.toFixed(1).padStart(6)} ms  ${k.split(':')[0] === String(nav.pid) ? 'page ' : ''}${names.get(k) ?? k}`);
}

// ---- CPU profile --------------------------------------------------------------------
const nodes = new Map();
const self = new Map();
const inclusive = new Map();
let lastTs = null;
for (const e of ev) {
  if (e.pid !== nav.pid || (e.name !== 'Profile' && e.name !== 'ProfileChunk')) continue;
  if (e.name === 'Profile') { lastTs = e.args.data.startTime; continue; }
  const d = e.args.data;
  for (const n of d.cpuProfile?.nodes ?? []) nodes.set(n.id, n);
  const samples = d.cpuProfile?.samples ?? [];
  const deltas = d.timeDeltas ?? [];
  for (let i = 0; i < samples.length; i++) {
    lastTs += deltas[i] ?? 0;
    if (lastTs < t0 || ms(lastTs) > endMs) continue;
    const n = nodes.get(samples[i]);
    if (!n) continue;
    const keyOf = (x) => {
      const cf = x.callFrame;
      return `${cf.functionName || '(anonymous)'} ${cf.url ? cf.url.replace(/^https?:\/\/[^/]+/, '') : ''}:${cf.lineNumber ?? ''}:${cf.columnNumber ?? ''}`;
    };
    const d = (deltas[i + 1] ?? deltas[i] ?? 0) / 1000;
    const key = keyOf(n);
    self.set(key, (self.get(key) ?? 0) + d);
    // Inclusive time: every function on the sample's stack, once.
    const seen = new Set();
    for (let x = n; x; x = nodes.get(x.parent)) {
      const k = keyOf(x);
      if (seen.has(k)) continue;
      seen.add(k);
      inclusive.set(k, (inclusive.get(k) ?? 0) + d);
    }
  }
}
const top = [...self].filter(([k]) => !k.startsWith('(idle)')).sort((a, b) => b[1] - a[1]).slice(0, 30);
if (top.length) {
  console.log('JS self time (CPU profiler samples, ms):');
  for (const [k, v] of top) console.log(`  ${v.toFixed(1).padStart(7)}  ${k}`);
  console.log('JS total time, callees included (CPU profiler samples, ms):');
  for (const [k, v] of [...inclusive].filter(([k]) => !/^\((idle|root|program)\)/.test(k)).sort((a, b) => b[1] - a[1]).slice(0, 40)) console.log(`  ${v.toFixed(1).padStart(7)}  ${k}`);
}
