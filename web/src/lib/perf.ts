// perf.ts - named User Timing marks ("coai:<name>") on the way to a chat's
// first paint, read by bench/web/open.mjs to show where the time goes. Each
// name is marked once per page load; a mark costs microseconds.

const done = new Set<string>();

export function mark(name: string): void {
  if (done.has(name)) return;
  done.add(name);
  try {
    performance.mark(`coai:${name}`);
  } catch {
    /* no User Timing (old browser, test DOM): nothing to report */
  }
}
