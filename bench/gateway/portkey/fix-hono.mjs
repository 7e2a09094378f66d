// postinstall: the one-line fix Portkey's own repository applies to
// @hono/node-server 1.13.5 (pinned by "overrides" in package.json). Without
// the await, an error thrown while streaming escapes the try/catch and every
// streaming request answers 500 "TypeError: immutable" (Portkey issues
// #1389, #1550). Idempotent: running it twice changes nothing.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

// The copy Portkey loads: nested under it if npm put one there, else hoisted.
const here = dirname(fileURLToPath(import.meta.url));
const pkgJson = [
  'node_modules/@portkey-ai/gateway/node_modules/@hono/node-server/package.json',
  'node_modules/@hono/node-server/package.json',
].map((p) => join(here, p)).find((p) => existsSync(p));
if (!pkgJson) {
  console.error('fix-hono: @hono/node-server is not installed');
  process.exit(1);
}
const { version } = JSON.parse(readFileSync(pkgJson, 'utf8'));
if (version !== '1.13.5') {
  console.error(`fix-hono: expected @hono/node-server 1.13.5, found ${version}`);
  process.exit(1);
}
const file = join(dirname(pkgJson), 'dist/index.mjs');
const from = '      return responseViaResponseObject(res, outgoing, options);';
const to = '      return await responseViaResponseObject(res, outgoing, options);';
const src = readFileSync(file, 'utf8');
if (src.includes(to)) {
  console.log('fix-hono: already applied');
} else if (src.split(from).length === 2) {
  writeFileSync(file, src.replace(from, to));
  console.log('fix-hono: applied to', file);
} else {
  console.error('fix-hono: the line to fix is not in', file);
  process.exit(1);
}
