// reporter.mjs - node:test reporter: one "ok - name" / "not ok - name" line
// per test, failures with their message and a trimmed stack, then exactly
// one summary line "<suite>: N passed, N failed" (suite from COAI_SUITE,
// default "api"). Skipped and todo tests count as failed: nothing skips
// silently, and the run exits non-zero when any test did not pass.
//
//   node --test --test-reporter=./tests/lib/reporter.mjs tests/api/

import path from 'node:path';

const cwd = process.cwd();
const MAX_FRAMES = 6;

function indent(text, pad = '    ') {
  return text.split('\n').map((l) => pad + l).join('\n');
}

// The test's own error: node wraps it in ERR_TEST_FAILURE with a cause.
function rootError(err) {
  return err && err.code === 'ERR_TEST_FAILURE' && err.cause ? err.cause : err;
}

function describeError(err) {
  const e = rootError(err);
  if (e == null) return 'unknown failure';
  if (typeof e !== 'object') return String(e);
  const name = e.name && e.name !== 'Error' ? `${e.name}: ` : '';
  const lines = [`${name}${e.message ?? String(e)}`];
  if (e.failureType === 'cancelledByParent' || (err && err.failureType === 'cancelledByParent')) {
    return lines[0];
  }
  const frames = String(e.stack ?? '').split('\n')
    .filter((l) => /^\s+at .*:\d+:\d+\)?$/.test(l))
    .filter((l) => !/node:internal|node:test|\(node:|\bnode_modules\b/.test(l))
    .slice(0, MAX_FRAMES)
    .map((l) => l.trim().replaceAll(`file://${cwd}/`, '').replaceAll(`${cwd}/`, ''));
  if (e.cause && typeof e.cause === 'object' && e.cause.message) lines.push(`cause: ${e.cause.message}`);
  return [...lines, ...frames].join('\n');
}

export default async function* reporter(source) {
  const suite = process.env.COAI_SUITE || 'api';
  const stacks = new Map(); // file -> names of the tests started, by nesting
  let passed = 0;
  let failed = 0;

  const fullName = (data) => {
    const stack = stacks.get(data.file) ?? [];
    const parents = stack.slice(0, data.nesting).filter(Boolean);
    let name = data.name;
    if (data.file && name === data.file) name = path.relative(cwd, name) || name;
    return [...parents, name].join(' > ');
  };

  for await (const { type, data } of source) {
    switch (type) {
      case 'test:start': {
        const stack = stacks.get(data.file) ?? [];
        stack.length = data.nesting;
        stack[data.nesting] = data.name;
        stacks.set(data.file, stack);
        break;
      }
      case 'test:pass': {
        if (data.details?.type === 'suite') break;
        if (data.skip !== undefined || data.todo !== undefined) {
          const kind = data.skip !== undefined ? 'SKIP' : 'TODO';
          const why = data.skip ?? data.todo;
          failed++;
          yield `not ok - ${fullName(data)} # ${kind}${typeof why === 'string' ? ` ${why}` : ''}\n`;
          yield '    skip and todo count as failures: nothing skips silently\n';
          break;
        }
        passed++;
        yield `ok - ${fullName(data)}\n`;
        break;
      }
      case 'test:fail': {
        const err = data.details?.error;
        // A suite or parent test failing only because of its subtests adds
        // nothing: the subtests were counted already.
        if (err?.failureType === 'subtestsFailed') break;
        failed++;
        yield `not ok - ${fullName(data)}\n${indent(describeError(err))}\n`;
        break;
      }
      case 'test:stdout':
      case 'test:stderr':
        yield data.message;
        break;
      default:
        break;
    }
  }

  if (failed > 0 || passed === 0) process.exitCode = 1;
  yield `${suite}: ${passed} passed, ${failed} failed\n`;
}
