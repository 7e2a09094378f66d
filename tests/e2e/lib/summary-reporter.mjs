// summary-reporter.mjs - one line per failed test with its error, then the
// summary line "e2e: N passed, N failed" (what tests/run-e2e.sh prints).
export default class SummaryReporter {
  constructor() {
    this.passed = 0;
    this.failed = 0;
    this.started = Date.now();
  }

  printsToStdio() {
    return true;
  }

  onTestEnd(test, result) {
    const name = test.titlePath().filter(Boolean).slice(1).join(' › ');
    const secs = (result.duration / 1000).toFixed(1);
    if (result.status === 'passed') {
      this.passed++;
      process.stdout.write(`  ok   ${name} (${secs}s)\n`);
      return;
    }
    // failed, timedOut, interrupted, skipped: all count as failures
    this.failed++;
    process.stdout.write(`  FAIL ${name} (${result.status}, ${secs}s)\n`);
    for (const err of result.errors ?? []) {
      const text = (err.stack || err.message || String(err.value ?? '')).replace(/\u001b\[[0-9;]*m/g, '');
      process.stdout.write(`${text.split('\n').map((l) => `       ${l}`).join('\n')}\n`);
    }
    for (const a of result.attachments ?? []) {
      if (a.path) process.stdout.write(`       attachment: ${a.name} ${a.path}\n`);
      else if (a.body && a.name === 'server-log') {
        const lines = a.body.toString('utf8').split('\n').slice(-40);
        process.stdout.write(`       server log (last ${lines.length} lines):\n${lines.map((l) => `         ${l}`).join('\n')}\n`);
      }
    }
  }

  onError(err) {
    this.failed++;
    const text = (err.stack || err.message || String(err.value ?? '')).replace(/\u001b\[[0-9;]*m/g, '');
    process.stdout.write(`  ERROR ${text}\n`);
  }

  onEnd(result) {
    const secs = ((Date.now() - this.started) / 1000).toFixed(1);
    if (result.status !== 'passed' && this.failed === 0) this.failed = 1; // e.g. global timeout, no tests found
    process.stdout.write(`e2e: ran in ${secs}s\n`);
    process.stdout.write(`e2e: ${this.passed} passed, ${this.failed} failed\n`);
  }
}
