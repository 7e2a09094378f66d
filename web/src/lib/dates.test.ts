import { describe, expect, it } from 'vitest';
import { dateGroup, formatTime, groupByDate } from './dates';

const now = new Date(2025, 2, 15, 10, 0, 0); // 15 March 2025, 10:00 local
const at = (d: number, h = 12) => new Date(2025, 2, d, h, 0, 0).getTime();

describe('date groups', () => {
  it('puts timestamps in calendar-day groups', () => {
    expect(dateGroup(at(15, 0), now)).toBe('Today');
    expect(dateGroup(at(15, 9), now)).toBe('Today');
    expect(dateGroup(at(16, 9), now)).toBe('Today'); // clock skew: future counts as today
    expect(dateGroup(at(14, 23), now)).toBe('Yesterday');
    expect(dateGroup(at(14, 0), now)).toBe('Yesterday');
    expect(dateGroup(at(13, 23), now)).toBe('Previous 7 days');
    expect(dateGroup(at(8, 0), now)).toBe('Previous 7 days');
    expect(dateGroup(at(7, 23), now)).toBe('Older');
    expect(dateGroup(new Date(2024, 0, 1).getTime(), now)).toBe('Older');
  });

  it('just after midnight, late yesterday is Yesterday', () => {
    const early = new Date(2025, 2, 15, 0, 5);
    expect(dateGroup(new Date(2025, 2, 14, 23, 59).getTime(), early)).toBe('Yesterday');
    expect(dateGroup(new Date(2025, 2, 15, 0, 1).getTime(), early)).toBe('Today');
  });

  it('groups newest-first items in order and leaves out empty groups', () => {
    const items = [at(15, 9), at(15, 1), at(10), at(1), at(0 + 2)];
    const g = groupByDate(items, (x) => x, now);
    expect(g.map((x) => x.group)).toEqual(['Today', 'Previous 7 days', 'Older']);
    expect(g[0]!.items).toEqual([at(15, 9), at(15, 1)]);
    expect(g[2]!.items).toEqual([at(1), at(2)]);
  });

  it('formats a time with the medium date and short time of the locale', () => {
    const ts = at(3, 14);
    const want = new Date(ts).toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' });
    expect(formatTime(ts)).toBe(want);
    expect(formatTime(ts)).toBe(want); // the cached formatter gives the same
  });
});

