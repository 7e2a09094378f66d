#!/usr/bin/env node
// bundle-size.mjs - the first-load JavaScript budget. Measures the gzipped
// size of the JS that dist/index.html loads before the app can start: the
// entry module, the app chunk it imports dynamically (src/entry.ts starts the
// app on every page load, after the first paint when the server rendered a
// chat), everything those import statically (followed recursively), any
// modulepreload links, and the scripts of workers those start (the chat
// loader worker runs on every chat page load). Lazy chunks the app imports
// on demand (highlighting, math) do not count.
// Fails above the budget (default 80 KB; BUNDLE_BUDGET_KB to override).

import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { fileURLToPath } from 'node:url';

const dist = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'dist');
const budgetKB = Number(process.env.BUNDLE_BUDGET_KB ?? 80);
const html = fs.readFileSync(path.join(dist, 'index.html'), 'utf8');

const roots = new Set();
for (const m of html.matchAll(/<script\b[^>]*\btype=["']module["'][^>]*\bsrc=["']([^"']+)["']/g)) roots.add(m[1]);
for (const m of html.matchAll(/<link\b[^>]*\brel=["']modulepreload["'][^>]*\bhref=["']([^"']+)["']/g)) roots.add(m[1]);
if (/<script\b(?![^>]*\bsrc=)[^>]*>\s*\S/.test(html)) {
  console.error('bundle-size: index.html has an inline script (the CSP forbids it)');
  process.exit(1);
}
if (roots.size === 0) {
  console.error('bundle-size: no module script found in dist/index.html');
  process.exit(1);
}

const files = new Set();
function visit(url, from, root = false) {
  const rel = url.startsWith('/') ? url.slice(1) : path.posix.join(path.posix.dirname(from), url);
  const file = path.join(dist, rel);
  if (files.has(file)) return;
  files.add(file);
  const code = fs.readFileSync(file, 'utf8');
  // Static imports only: `import x from "./a.js"`, `import "./b.js"`, `export * from "./c.js"`.
  for (const m of code.matchAll(/(?:^|[;\n}])\s*(?:import|export)\s*(?:[\w$*{}\s,]+?\s*from\s*)?["'](\.{1,2}\/[^"']+|\/[^"']+)["']/g)) {
    visit(m[1], rel);
  }
  // The entry's own dynamic imports: the app it starts.
  if (root) {
    for (const m of code.matchAll(/\bimport\(\s*[`"'](\.{1,2}\/[^`"']+)[`"']\s*\)/g)) visit(m[1], rel);
  }
  // Workers: `new Worker(new URL("/assets/x.js", import.meta.url), ...)`.
  for (const m of code.matchAll(/new\s+(?:Shared)?Worker\(\s*new\s+URL\(\s*[`"']([^`"']+)[`"']/g)) {
    visit(m[1], rel);
  }
}
for (const r of roots) visit(r, '', true);

let raw = 0;
let gz = 0;
const rows = [];
for (const f of files) {
  const buf = fs.readFileSync(f);
  const g = zlib.gzipSync(buf, { level: 9 }).length;
  raw += buf.length;
  gz += g;
  rows.push([path.relative(dist, f), buf.length, g]);
}
for (const [f, r, g] of rows) console.log(`  ${f}  ${(r / 1024).toFixed(1)} KB raw, ${(g / 1024).toFixed(1)} KB gzip`);
const kb = gz / 1024;
console.log(`first-load JS: ${kb.toFixed(1)} KB gzipped (${(raw / 1024).toFixed(1)} KB raw, ${files.size} file${files.size === 1 ? '' : 's'}); budget ${budgetKB} KB`);
if (kb > budgetKB) {
  console.error(`bundle-size: over budget by ${(kb - budgetKB).toFixed(1)} KB`);
  process.exit(1);
}
