// ssr.ts - the chat's first screen the server put into the page for /c/<id>
// (server/src/http/ssr.c): the last messages of the visible branch, in the
// list's own markup, painted while the HTML was parsed. It lies over the app
// (.ssr in styles.css) until the app shows the same chat (MessageList, in a
// layout effect: the rows are in and scrolled to the bottom before the
// frame that removes it is painted), or anything else (another page, the
// sign-in form, an error): then it goes, and only the app's rows remain.

const ID = 'ssr';

/** The chat the server-rendered block shows, or null when there is none. */
export function ssrChatId(doc: Document = document): string | null {
  const el = doc.getElementById(ID);
  return el ? (el.dataset.chat ?? '') : null;
}

/** How long a replaced block stays in the document, hidden. */
export const SSR_KEEP_MS = 2000;

/**
 * Replace the server-rendered block (the app now shows the page): hidden at
 * once, in the frame the app's rendering is painted in, and out of the
 * document a little later. Paint timing entries of its elements (Element
 * Timing, as bench/web/open.mjs reads them) name their element only while
 * it is in the document, and they are delivered after the paint, when the
 * main thread is free: removed in the same task, the block's first paint
 * could not be told from the app's.
 */
export function dropSsr(doc: Document = document): void {
  const el = doc.getElementById(ID);
  if (!el) return;
  el.removeAttribute('id');
  el.hidden = true;
  // Not found as a message any more (tests, scripts): only the app's rows
  // are. The text keeps its mark, which a paint entry of it is checked
  // against when it arrives.
  for (const e of el.querySelectorAll('[data-testid="message"], [data-id], [data-row]')) {
    e.removeAttribute('data-testid');
    e.removeAttribute('data-id');
    e.removeAttribute('data-row');
  }
  setTimeout(() => el.remove(), SSR_KEEP_MS);
}

/**
 * The app rendered: drop the block unless it may still stand for what the
 * app is about to show: the chat it holds, while the session is checked or
 * that chat is loading. `listed` is true once the chat's rows are rendered.
 */
export function settleSsr(state: { booting: boolean; chatId: string | null; listed: boolean }, doc: Document = document): void {
  const shown = ssrChatId(doc);
  if (shown === null) return;
  if (state.booting) return;
  if (state.chatId === shown && !state.listed) return;
  dropSsr(doc);
}
