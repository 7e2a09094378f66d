// dates.ts - sidebar date groups and short time labels, in local time.

export type DateGroup = 'Today' | 'Yesterday' | 'Previous 7 days' | 'Older';
export const GROUP_ORDER: DateGroup[] = ['Today', 'Yesterday', 'Previous 7 days', 'Older'];

function startOfDay(d: Date): number {
  return new Date(d.getFullYear(), d.getMonth(), d.getDate()).getTime();
}

/** The group of a timestamp (ms), relative to `now` (local calendar days). */
export function dateGroup(ts: number, now: Date = new Date()): DateGroup {
  const today = startOfDay(now);
  // Days are not always 24 h long (DST): compare calendar starts, not ms offsets.
  const yesterday = new Date(now.getFullYear(), now.getMonth(), now.getDate() - 1).getTime();
  const weekAgo = new Date(now.getFullYear(), now.getMonth(), now.getDate() - 7).getTime();
  if (ts >= today) return 'Today'; // includes clock skew into the future
  if (ts >= yesterday) return 'Yesterday';
  if (ts >= weekAgo) return 'Previous 7 days';
  return 'Older';
}

/** Group items (already newest first) keeping order; empty groups are left out. */
export function groupByDate<T>(items: T[], ts: (t: T) => number, now: Date = new Date()): { group: DateGroup; items: T[] }[] {
  const map = new Map<DateGroup, T[]>();
  for (const it of items) {
    const g = dateGroup(ts(it), now);
    let list = map.get(g);
    if (!list) map.set(g, (list = []));
    list.push(it);
  }
  return GROUP_ORDER.filter((g) => map.has(g)).map((g) => ({ group: g, items: map.get(g)! }));
}

// One formatter: toLocaleString with options builds a new one (and looks up
// locale data) on every call, milliseconds each.
let timeFormat: Intl.DateTimeFormat | null = null;
export function formatTime(ts: number): string {
  timeFormat ??= new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });
  return timeFormat.format(ts);
}

export function relativeTime(ts: number, now = Date.now()): string {
  const s = Math.round((now - ts) / 1000);
  if (s < 60) return 'just now';
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return new Date(ts).toLocaleDateString();
}
