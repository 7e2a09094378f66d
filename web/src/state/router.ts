// router.ts - client-side routes on the History API. The server answers any
// unknown path with index.html, so /c/<id> and /settings survive a reload.

import { signal } from '@preact/signals';

export type Route =
  | { name: 'home' }
  | { name: 'chat'; id: string }
  | { name: 'settings'; section?: string }
  | { name: 'notfound' };

export function parseRoute(path: string): Route {
  const p = path.replace(/\/+$/, '') || '/';
  if (p === '/' || p === '/login' || p === '/signup') return { name: 'home' };
  const chat = /^\/c\/([A-Za-z0-9_-]{1,64})$/.exec(p);
  if (chat) return { name: 'chat', id: chat[1]! };
  const settings = /^\/settings(?:\/([a-z-]+))?$/.exec(p);
  if (settings) return settings[1] ? { name: 'settings', section: settings[1] } : { name: 'settings' };
  return { name: 'notfound' };
}

export function routePath(r: Route): string {
  switch (r.name) {
    case 'home':
      return '/';
    case 'chat':
      return `/c/${r.id}`;
    case 'settings':
      return r.section ? `/settings/${r.section}` : '/settings';
    default:
      return '/';
  }
}

const initialPath = typeof location !== 'undefined' ? location.pathname : '/';
export const route = signal<Route>(parseRoute(initialPath));

export function navigate(path: string, opts: { replace?: boolean } = {}): void {
  if (typeof history !== 'undefined') {
    if (location.pathname !== path) {
      if (opts.replace) history.replaceState(null, '', path);
      else history.pushState(null, '', path);
    }
  }
  route.value = parseRoute(path);
}

if (typeof window !== 'undefined') {
  window.addEventListener('popstate', () => {
    route.value = parseRoute(location.pathname);
  });
}
