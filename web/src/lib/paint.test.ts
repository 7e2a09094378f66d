import { afterEach, describe, expect, it, vi } from 'vitest';
import { afterFirstPaint } from './paint';

/** A PerformanceObserver stand-in: `paint(name)` delivers one paint entry. */
function fakeObserver(types: string[] = ['paint']) {
  const observers: { cb: PerformanceObserverCallback; on: boolean }[] = [];
  class PO {
    static supportedEntryTypes = types;
    private o: { cb: PerformanceObserverCallback; on: boolean };
    constructor(cb: PerformanceObserverCallback) {
      this.o = { cb, on: false };
      observers.push(this.o);
    }
    observe(): void {
      this.o.on = true;
    }
    disconnect(): void {
      this.o.on = false;
    }
  }
  vi.stubGlobal('PerformanceObserver', PO);
  return {
    paint(name: string): void {
      const list = { getEntriesByName: (n: string) => (n === name ? [{ name }] : []) } as unknown as PerformanceObserverEntryList;
      for (const o of observers) if (o.on) o.cb(list, o as unknown as PerformanceObserver);
    },
    get connected(): number {
      return observers.filter((o) => o.on).length;
    },
  };
}

describe('afterFirstPaint', () => {
  afterEach(() => {
    vi.unstubAllGlobals();
    vi.useRealTimers();
  });

  it('waits for the first contentful paint, not the first paint, and calls once', () => {
    const po = fakeObserver();
    const go = vi.fn();
    vi.useFakeTimers();
    afterFirstPaint(go);
    po.paint('first-paint');
    expect(go).not.toHaveBeenCalled();
    po.paint('first-contentful-paint');
    expect(go).toHaveBeenCalledTimes(1);
    expect(po.connected).toBe(0);
    vi.advanceTimersByTime(1000); // the fallback does not call it again
    document.dispatchEvent(new Event('visibilitychange'));
    expect(go).toHaveBeenCalledTimes(1);
  });

  it('starts anyway when no paint comes within half a second', () => {
    fakeObserver();
    const go = vi.fn();
    vi.useFakeTimers();
    afterFirstPaint(go);
    vi.advanceTimersByTime(499);
    expect(go).not.toHaveBeenCalled();
    vi.advanceTimersByTime(1);
    expect(go).toHaveBeenCalledTimes(1);
  });

  it('starts at once without Paint Timing or in a hidden page', () => {
    fakeObserver([]);
    const go = vi.fn();
    afterFirstPaint(go);
    expect(go).toHaveBeenCalledTimes(1);

    fakeObserver();
    const hidden = vi.spyOn(document, 'visibilityState', 'get').mockReturnValue('hidden');
    const go2 = vi.fn();
    afterFirstPaint(go2);
    expect(go2).toHaveBeenCalledTimes(1);
    hidden.mockRestore();
  });

  it('starts when the page is hidden while waiting (no paint comes then)', () => {
    fakeObserver();
    const go = vi.fn();
    afterFirstPaint(go);
    document.dispatchEvent(new Event('visibilitychange'));
    expect(go).toHaveBeenCalledTimes(1);
  });
});
