// early.ts - the requests boot.ts starts before the rest of the app is
// evaluated, handed over to the session and chat state when they are ready.
// No imports: evaluating this module costs nothing.

import type { ChatWithMessages, User } from '../api/types';

export const early: {
  me: Promise<{ user: User }> | null;
  chat: { id: string; p: Promise<ChatWithMessages> } | null;
  /**
   * Settles (never rejects) once the chat boot.ts asked for has answered,
   * whatever the answer: the session check waits for it (a little), so that
   * the signed-in app and the chat render together, in one frame.
   */
  chatSettled: Promise<void> | null;
} = { me: null, chat: null, chatSettled: null };

/** How long the session check may hold the app for the early chat. */
export const CHAT_WAIT_MS = 250;

/** How many messages boot.ts asks for first, unless the page says otherwise. */
export const EARLY_TAIL = 60;

/**
 * How many messages to ask for first: the number in the preload the server
 * put into the page for this chat (server/src/http/static.c), so that the
 * request is the preloaded one and takes its answer; else EARLY_TAIL.
 */
export function earlyTail(id: string, doc: Pick<Document, 'querySelectorAll'> = document): number {
  const prefix = `/api/v1/chats/${encodeURIComponent(id)}?tail=`;
  for (const l of Array.from(doc.querySelectorAll<HTMLLinkElement>('link[rel="preload"][as="fetch"]'))) {
    const href = l.getAttribute('href') ?? '';
    if (!href.startsWith(prefix)) continue;
    const n = Number(href.slice(prefix.length));
    if (Number.isInteger(n) && n >= 1 && n <= 500) return n;
  }
  return EARLY_TAIL;
}
