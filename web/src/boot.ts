// boot.ts - the first module of the bundle to run (main.tsx imports it before
// anything else, and it imports no components, so neither markdown nor
// DOMPurify): the session check and, when the page opens on /c/<id>, the chat
// are requested now, while the rest of the app is still being evaluated.
// The chat is opened as soon as it arrives, so the chat page's first render
// already has its messages.

import { mark } from './lib/perf';
import { prefetchSession } from './state/session';
import { prefetchChat } from './state/chat';
import { parseRoute } from './state/router';

mark('boot');
prefetchSession();
const first = parseRoute(location.pathname);
if (first.name === 'chat') prefetchChat(first.id);
