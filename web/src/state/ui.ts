// ui.ts - app-wide UI state: the screen-reader announcer, toasts, the phone
// drawer and the theme preference.

import { signal } from '@preact/signals';

/** Text for the polite aria-live region ("Generating…", "Answer complete"). */
export const announcement = signal('');
let announceSeq = 0;
export function announce(text: string): void {
  // Re-announce the same text by toggling a zero-width suffix.
  announceSeq++;
  announcement.value = text + (announceSeq % 2 ? '' : '\u200b');
}

export interface Toast {
  id: number;
  text: string;
  kind: 'info' | 'error';
}
export const toasts = signal<Toast[]>([]);
let toastSeq = 0;
export function toast(text: string, kind: Toast['kind'] = 'info', ms = 4000): void {
  const id = ++toastSeq;
  toasts.value = [...toasts.value, { id, text, kind }];
  setTimeout(() => dismissToast(id), ms);
}
export function dismissToast(id: number): void {
  toasts.value = toasts.value.filter((t) => t.id !== id);
}

/** The sidebar drawer on narrow screens. */
export const drawerOpen = signal(false);

export type Theme = 'light' | 'dark' | 'system';
const THEME_KEY = 'coai.theme';
function loadTheme(): Theme {
  try {
    const t = localStorage.getItem(THEME_KEY);
    if (t === 'light' || t === 'dark' || t === 'system') return t;
  } catch {
    /* storage blocked */
  }
  return 'system';
}
export const theme = signal<Theme>(loadTheme());
export function setTheme(t: Theme): void {
  theme.value = t;
  try {
    localStorage.setItem(THEME_KEY, t);
  } catch {
    /* storage blocked */
  }
}
