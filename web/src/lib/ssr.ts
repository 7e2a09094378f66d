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

/**
 * Replace the server-rendered block (the app now shows the page): out of
 * the document at once, in the frame the app's rendering is painted in.
 */
export function dropSsr(doc: Document = document): void {
  doc.getElementById(ID)?.remove();
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
