// early.ts - the requests boot.ts starts before the rest of the app is
// evaluated, handed over to the session and chat state when they are ready.
// No imports: evaluating this module costs nothing.

import type { ChatWithMessages, User } from '../api/types';

export const early: {
  me: Promise<{ user: User }> | null;
  chat: { id: string; p: Promise<ChatWithMessages> } | null;
} = { me: null, chat: null };
