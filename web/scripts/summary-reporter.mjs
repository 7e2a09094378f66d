// summary-reporter.mjs - a Vitest reporter that prints one line,
// "web-unit: N passed, N failed", after the default output.
export default class SummaryReporter {
  onTestRunEnd(testModules, unhandledErrors) {
    let passed = 0;
    let failed = 0;
    const walk = (children) => {
      for (const t of children.allTests()) {
        const s = t.result().state;
        if (s === 'passed') passed++;
        else if (s === 'failed') failed++;
      }
    };
    for (const m of testModules) {
      walk(m.children);
      if (m.state() === 'failed' && m.children.size === 0) failed++; // a file that did not load
    }
    failed += unhandledErrors?.length ?? 0;
    console.log(`web-unit: ${passed} passed, ${failed} failed`);
  }
}
