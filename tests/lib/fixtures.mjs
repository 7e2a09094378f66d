// fixtures.mjs - locate the shared real-world fixtures at runtime.
//
// Fixtures live outside the repo (../shared/fixtures relative to the repo
// root) and are never copied in; COAI_FIXTURES_DIR overrides the location.

import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

export const fixturesDir = process.env.COAI_FIXTURES_DIR
  ? path.resolve(process.env.COAI_FIXTURES_DIR)
  : path.resolve(repoRoot, '../shared/fixtures');

// Absolute path of a fixture file; throws a clear error when it is missing.
export function fixturePath(...parts) {
  const p = path.join(fixturesDir, ...parts);
  if (!fs.existsSync(p)) {
    throw new Error(`fixture not found: ${p} (set COAI_FIXTURES_DIR to the shared fixtures directory)`);
  }
  return p;
}

// Raw bytes of a fixture file.
export function readFixture(...parts) {
  return fs.readFileSync(fixturePath(...parts));
}

export function readFixtureJSON(...parts) {
  return JSON.parse(readFixture(...parts).toString('utf8'));
}
