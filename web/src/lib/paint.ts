// paint.ts - when the page's first contentful paint has been presented
// (entry.ts starts the app after the server-rendered screen is painted).

/** No paint within this long (a page in a background tab, a browser without
 * Paint Timing): start anyway. */
const PAINT_WAIT_MAX_MS = 500;

/** Calls go once, after the page's first contentful paint (already done or
 * to come), or after PAINT_WAIT_MAX_MS, or when the page is or gets hidden
 * (no paint comes then), or at once without Paint Timing. */
export function afterFirstPaint(go: () => void, doc: Document = document): void {
  let done = false;
  let po: PerformanceObserver | undefined;
  const once = (): void => {
    if (done) return;
    done = true;
    po?.disconnect();
    doc.removeEventListener('visibilitychange', once);
    go();
  };
  if (doc.visibilityState !== 'visible' || typeof PerformanceObserver === 'undefined' ||
      !PerformanceObserver.supportedEntryTypes?.includes('paint')) {
    once();
    return;
  }
  po = new PerformanceObserver((list) => {
    if (list.getEntriesByName('first-contentful-paint').length) once();
  });
  po.observe({ type: 'paint', buffered: true });
  doc.addEventListener('visibilitychange', once);
  setTimeout(once, PAINT_WAIT_MAX_MS);
}
