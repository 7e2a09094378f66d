// boot.ts - the first module of the app's chunk to run (main.tsx imports it before
// anything else). It imports only the API client and the router, nothing
// that touches storage or renders (the first localStorage access alone can
// take milliseconds), so the session check and, when the page opens on
// /c/<id>, the chat are requested before the rest of the app is evaluated.
// state/session.ts and state/chat.ts take the answers from state/early.ts.

import { api } from './api/client';
import { mark } from './lib/perf';
import { parseRoute } from './state/router';
import { early, earlyTail } from './state/early';

mark('boot');
early.me = api.me();
early.me.catch(() => {}); // checkSession reads the outcome
const first = parseRoute(location.pathname);
if (first.name === 'chat') {
  // Only the end of the chat (enough for a tall viewport): the rest is
  // fetched after the first paint (state/chat.ts). The page's HTML has
  // already asked for it (a preload the server adds for /c/<id>): this
  // request, the same URL, takes that answer.
  early.chat = { id: first.id, p: api.chatTail(first.id, earlyTail(first.id)) };
  early.chat.p.catch(() => {}); // the chat state reads the outcome
  early.chatSettled = early.chat.p.then(
    () => {},
    () => {},
  );
}
