// session.ts - who is signed in. A 401 on any request means the session
// ended (expired, revoked, password changed elsewhere): the app shows sign-in
// over whatever page was open; drafts stay in localStorage.

import { signal } from '@preact/signals';
import { api, ApiError, setUnauthorizedHandler } from '../api/client';
import type { User } from '../api/types';
import { CHAT_WAIT_MS, early } from './early';

export const user = signal<User | null>(null);
/** false until the first /me answered. */
export const sessionChecked = signal(false);
/** Signed out by the server rather than by the person. */
export const sessionExpired = signal(false);

const listeners: (() => void)[] = [];
/** Run after sign-in (load chats, connection...). */
export function onSignedIn(fn: () => void): void {
  listeners.push(fn);
}
const outListeners: (() => void)[] = [];
export function onSignedOut(fn: () => void): void {
  outListeners.push(fn);
}

setUnauthorizedHandler(() => {
  if (user.value) {
    sessionExpired.value = true;
    user.value = null;
    for (const fn of outListeners) fn();
  }
});

function signedIn(u: User): void {
  user.value = u;
  sessionExpired.value = false;
  for (const fn of listeners) fn();
}

export async function checkSession(): Promise<void> {
  try {
    // The /me request boot.ts made, if not used yet.
    const p = early.me ?? api.me();
    early.me = null;
    const { user: u } = await p;
    // Opening a chat by URL: both answers were preloaded and come in a task
    // or two apart. The chat state takes its answer first (it awaited it
    // before us), so waiting here for the chat, briefly, makes the signed-in
    // app and the chat one render and one frame, rather than the app shell
    // laid out and painted on its own just before the chat.
    const chat = early.chatSettled;
    early.chatSettled = null;
    if (chat) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([chat, new Promise<void>((ok) => (timer = setTimeout(ok, CHAT_WAIT_MS)))]);
      clearTimeout(timer);
    }
    signedIn(u);
  } catch (e) {
    if (!(e instanceof ApiError) || e.status !== 401) {
      // The server is unreachable: retry shortly rather than showing sign-in
      // to someone who is signed in.
      if (e instanceof ApiError && e.isNetwork) {
        sessionChecked.value = true;
        bootError.value = e.message;
        return;
      }
    }
  }
  sessionChecked.value = true;
}
export const bootError = signal<string | null>(null);

export async function login(email: string, password: string): Promise<void> {
  const { user: u } = await api.login(email, password);
  signedIn(u);
}

export async function register(email: string, password: string, name?: string): Promise<void> {
  const { user: u } = await api.register(email, password, name);
  signedIn(u);
}

export async function logout(): Promise<void> {
  try {
    await api.logout();
  } catch {
    /* signed out either way */
  }
  user.value = null;
  sessionExpired.value = false;
  for (const fn of outListeners) fn();
}
