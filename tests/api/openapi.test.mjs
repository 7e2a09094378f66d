// openapi.test.mjs - docs/openapi.yaml against the server's route table.
//
// The server prints its routes with `chatopenaii routes` ("METHOD /path"
// per line, from server/src/api/routes.c). This test checks that the spec
// documents exactly those operations (plus /healthz and /readyz, served
// outside /api), that every operation has an operationId and responses, and
// that every component reference resolves. The spec is read without a YAML
// library, so it must keep its plain 2-space layout: path keys at two spaces,
// unquoted ("  /api/v1/chats/{id}:"), methods at four ("    get:"),
// operation fields at six ("      operationId: ...", "      responses:").
//
//   COAI_BIN=build/server/chatopenaii COAI_SUITE=openapi \
//     node --test --test-reporter=./tests/lib/reporter.mjs tests/api/openapi.test.mjs

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { repoRoot } from '../lib/fixtures.mjs';

const SPEC_PATH = path.join(repoRoot, 'docs/openapi.yaml');
const BINARY = process.env.COAI_BIN ? path.resolve(process.env.COAI_BIN) : null;
const HEALTH_PATHS = ['/healthz', '/readyz'];
const METHODS = ['get', 'put', 'post', 'patch', 'delete'];

const PATH_KEY = /^ {2}(\/[^\s:]+):\s*$/;
const METHOD_KEY = /^ {4}(get|put|post|patch|delete):\s*$/;

// ---- the route table, from the binary ---------------------------------------

let routesCache;
function serverRoutes() {
  if (routesCache) return routesCache;
  assert.ok(BINARY, 'COAI_BIN is not set: set it to the server binary (e.g. build/server/chatopenaii)');
  assert.ok(fs.existsSync(BINARY), `server binary not found: ${BINARY} (build it, or set COAI_BIN)`);
  const r = spawnSync(BINARY, ['routes'], { encoding: 'utf8', timeout: 15000 });
  assert.equal(r.error, undefined, `cannot run ${BINARY} routes: ${r.error?.message}`);
  assert.equal(r.status, 0, `${BINARY} routes exited with ${r.status} (signal ${r.signal}):\n${r.stderr}`);
  const routes = [];
  const bad = [];
  for (const [i, line] of r.stdout.split('\n').entries()) {
    if (line.trim() === '') continue;
    const m = /^(GET|PUT|POST|PATCH|DELETE) (\/\S*)$/.exec(line);
    if (!m) bad.push(`line ${i + 1}: ${JSON.stringify(line)}`);
    else routes.push(`${m[1]} ${m[2]}`);
  }
  assertNone(bad, '`routes` printed lines that are not "METHOD /path":');
  assert.ok(routes.length > 0, '`routes` printed no routes');
  routesCache = routes;
  return routes;
}

// ---- the spec, read line by line --------------------------------------------

// Lines of the top-level block `key:` (up to the next top-level key), with
// their 1-based line numbers.
function topBlock(lines, key) {
  const start = lines.findIndex((l) => new RegExp(`^${key}:\\s*$`).test(l));
  assert.notEqual(start, -1, `docs/openapi.yaml has no top-level "${key}:"`);
  const out = [];
  for (let i = start + 1; i < lines.length; i++) {
    const l = lines[i];
    if (/^[^\s#]/.test(l)) break; // next top-level key
    out.push({ n: i + 1, text: l });
  }
  return out;
}

let specCache;
function spec() {
  if (specCache) return specCache;
  assert.ok(fs.existsSync(SPEC_PATH), `missing ${path.relative(repoRoot, SPEC_PATH)}`);
  const text = fs.readFileSync(SPEC_PATH, 'utf8');
  assert.ok(!text.includes('\t'), 'docs/openapi.yaml contains tab characters; indent with spaces');
  const lines = text.split(/\r?\n/);
  assert.match(lines.find((l) => /^openapi:/.test(l)) ?? '', /^openapi:\s*['"]?3\.1\.\d+['"]?\s*$/,
    'docs/openapi.yaml must start with "openapi: 3.1.x"');

  // paths: path keys at 2 spaces, methods at 4, operation fields at 6+.
  const paths = new Map(); // path -> line number
  const operations = []; // { path, method, n, body: [{n, text}] }
  const strays = [];
  let curPath = null;
  let op = null;
  for (const { n, text: l } of topBlock(lines, 'paths')) {
    if (/^\s*(#.*)?$/.test(l)) {
      if (op) op.body.push({ n, text: l });
      continue;
    }
    let m = PATH_KEY.exec(l);
    if (m) {
      assert.ok(!paths.has(m[1]), `path ${m[1]} is listed twice (lines ${paths.get(m[1])} and ${n})`);
      paths.set(m[1], n);
      curPath = m[1];
      op = null;
      continue;
    }
    if (/^ {2}\S/.test(l)) {
      // Something at path-key level that is not a plain path key (a quoted
      // or malformed path would be silently missed otherwise).
      if (!/^ {2}x-/.test(l)) strays.push(`line ${n}: ${l.trim()}`);
      curPath = null;
      op = null;
      continue;
    }
    m = METHOD_KEY.exec(l);
    if (m) {
      if (!curPath) {
        strays.push(`line ${n}: method "${m[1]}" is not under a path key`);
        op = null;
        continue;
      }
      op = { path: curPath, method: m[1], n, body: [] };
      operations.push(op);
      continue;
    }
    if (/^ {4}\S/.test(l)) {
      op = null; // path-level field (parameters, summary, ...)
      continue;
    }
    if (op) op.body.push({ n, text: l });
  }
  assertNone(strays, 'lines directly under "paths:" must be unquoted path keys like "  /api/v1/chats/{id}:":');

  // components: section names at 2 spaces, component names at 4.
  const components = new Map(); // section -> Set(name)
  let section = null;
  for (const { text: l } of topBlock(lines, 'components')) {
    let m = /^ {2}([A-Za-z][\w-]*):\s*$/.exec(l);
    if (m) {
      section = m[1];
      if (!components.has(section)) components.set(section, new Set());
      continue;
    }
    m = /^ {4}([A-Za-z0-9_.-]+):\s*$/.exec(l);
    if (m && section) components.get(section).add(m[1]);
  }

  // Every "#/components/<section>/<name>" in the file: $ref values and
  // discriminator mappings alike.
  const refs = [];
  const refRe = /#\/components\/([A-Za-z]+)\/([A-Za-z0-9_.-]+)/g;
  lines.forEach((l, i) => {
    for (const m of l.matchAll(refRe)) refs.push({ n: i + 1, section: m[1], name: m[2] });
  });
  // Any other kind of $ref (external files, JSON pointers elsewhere).
  const otherRefs = [];
  lines.forEach((l, i) => {
    const m = /^\s*-?\s*\$ref:\s*['"]?([^'"\s]+)/.exec(l);
    if (m && !/^#\/components\/[A-Za-z]+\/[A-Za-z0-9_.-]+$/.test(m[1])) otherRefs.push(`line ${i + 1}: ${m[1]}`);
  });

  specCache = { paths, operations, components, refs, otherRefs };
  return specCache;
}

// Fails with header + the list when list is not empty (no deepEqual diff noise).
function assertNone(list, header) {
  if (list.length) assert.fail(`${header}\n${list.join('\n')}`);
}

function setDiff(a, b) {
  return [...a].filter((x) => !b.has(x)).sort();
}

// ---- tests ------------------------------------------------------------------

test('the server binary prints its route table (`chatopenaii routes`)', () => {
  const routes = serverRoutes();
  const dup = routes.filter((r, i) => routes.indexOf(r) !== i);
  assertNone(dup, '`routes` lists these routes twice:');
});

test('openapi.yaml documents GET /healthz and GET /readyz', () => {
  const { operations, paths } = spec();
  for (const p of HEALTH_PATHS) {
    assert.ok(paths.has(p), `docs/openapi.yaml does not document ${p}`);
    assert.ok(operations.some((o) => o.path === p && o.method === 'get'), `docs/openapi.yaml has no "get:" under ${p}`);
  }
});

test('openapi.yaml documents exactly the routes of the server', () => {
  const routes = new Set(serverRoutes());
  const { operations, paths } = spec();
  const documented = new Set();
  const twice = [];
  for (const o of operations) {
    if (HEALTH_PATHS.includes(o.path)) continue;
    const key = `${o.method.toUpperCase()} ${o.path}`;
    if (documented.has(key)) twice.push(key);
    documented.add(key);
  }
  const empty = [...paths.keys()].filter((p) => !operations.some((o) => o.path === p));
  const missing = setDiff(routes, documented);
  const extra = setDiff(documented, routes);
  const problems = [];
  if (missing.length) problems.push(`routes of the server missing from docs/openapi.yaml:\n  ${missing.join('\n  ')}`);
  if (extra.length) problems.push(`operations in docs/openapi.yaml that the server does not route:\n  ${extra.join('\n  ')}`);
  if (twice.length) problems.push(`operations documented twice:\n  ${twice.join('\n  ')}`);
  if (empty.length) problems.push(`paths without any ${METHODS.join('/')} operation:\n  ${empty.join('\n  ')}`);
  assertNone(problems, 'docs/openapi.yaml and `chatopenaii routes` (server/src/api/routes.c) disagree:');
});

test('every operation has an operationId (unique) and a responses block', () => {
  const { operations } = spec();
  assert.ok(operations.length > 0, 'no operations found under "paths:"');
  const problems = [];
  const ids = new Map();
  for (const o of operations) {
    const where = `${o.method.toUpperCase()} ${o.path} (line ${o.n})`;
    const idLine = o.body.find((l) => /^ {6}operationId:/.test(l.text));
    const id = idLine && /^ {6}operationId:\s*['"]?([A-Za-z0-9_.-]+)['"]?\s*$/.exec(idLine.text)?.[1];
    if (!id) problems.push(`${where}: no operationId`);
    else if (ids.has(id)) problems.push(`${where}: operationId "${id}" is also used by ${ids.get(id)}`);
    else ids.set(id, where);

    const r = o.body.findIndex((l) => /^ {6}responses:\s*$/.test(l.text));
    if (r === -1) {
      problems.push(`${where}: no responses block`);
      continue;
    }
    const codes = [];
    for (const l of o.body.slice(r + 1)) {
      if (/^\s*(#.*)?$/.test(l.text)) continue;
      if (!/^ {8}/.test(l.text)) break;
      const m = /^ {8}['"]?([1-5]\d{2}|[1-5]XX|default)['"]?:\s*$/.exec(l.text);
      if (m) codes.push(m[1]);
    }
    if (codes.length === 0) problems.push(`${where}: responses block lists no status code`);
    else if (!codes.some((c) => /^2/.test(c))) problems.push(`${where}: no 2xx response`);
  }
  assertNone(problems, 'operations with problems:');
});

test('every $ref points to a defined component', () => {
  const { refs, components, otherRefs } = spec();
  assert.ok(components.get('schemas')?.size > 0, 'docs/openapi.yaml defines no components/schemas');
  for (const s of ['User', 'Session', 'Chat', 'Message', 'Connection', 'Error']) {
    assert.ok(components.get('schemas').has(s), `components/schemas/${s} is not defined`);
  }
  const dangling = refs
    .filter((r) => !components.get(r.section)?.has(r.name))
    .map((r) => `line ${r.n}: #/components/${r.section}/${r.name}`);
  assertNone(dangling, 'references to undefined components:');
  assertNone(otherRefs, 'only local "#/components/<kind>/<Name>" references are allowed:');
});
