// chats.ts - the sidebar's chat list: newest activity first, paginated with
// the server's cursor; rename and delete.

import { computed, signal } from '@preact/signals';
import { api } from '../api/client';
import type { Chat } from '../api/types';
import { groupByDate } from '../lib/dates';
import { clearDraft } from './drafts';

const PAGE = 50;

export const chats = signal<Chat[]>([]);
export const chatsCursor = signal<string | null>(null);
export const chatsLoading = signal(false);
export const chatsLoaded = signal(false);
export const chatsError = signal<string | null>(null);

/** Bumped once a minute so "Today" becomes "Yesterday" at midnight. */
export const clock = signal(Date.now());
if (typeof window !== 'undefined') setInterval(() => (clock.value = Date.now()), 60_000);

export const chatGroups = computed(() => groupByDate(chats.value, (c) => c.updated_at, new Date(clock.value)));

function sortChats(list: Chat[]): Chat[] {
  return list.sort((a, b) => b.updated_at - a.updated_at || (a.id < b.id ? 1 : -1));
}

export async function loadChats(): Promise<void> {
  chatsLoading.value = true;
  try {
    const page = await api.chats(PAGE);
    // Keep chats beyond the first page that are already loaded.
    const seen = new Set(page.data.map((c) => c.id));
    const rest = chatsLoaded.value ? chats.value.filter((c) => !seen.has(c.id)) : [];
    chats.value = sortChats([...page.data, ...rest]);
    if (!chatsLoaded.value) chatsCursor.value = page.next_cursor;
    chatsLoaded.value = true;
    chatsError.value = null;
  } catch (e) {
    chatsError.value = (e as Error).message;
  } finally {
    chatsLoading.value = false;
  }
}

export async function loadMoreChats(): Promise<void> {
  const cursor = chatsCursor.value;
  if (!cursor || chatsLoading.value) return;
  chatsLoading.value = true;
  try {
    const page = await api.chats(PAGE, cursor);
    const seen = new Set(chats.value.map((c) => c.id));
    chats.value = sortChats([...chats.value, ...page.data.filter((c) => !seen.has(c.id))]);
    chatsCursor.value = page.next_cursor;
  } catch (e) {
    chatsError.value = (e as Error).message;
  } finally {
    chatsLoading.value = false;
  }
}

/** Insert or replace one chat (after create, rename, a new message). */
export function upsertChat(c: Chat): void {
  const list = chats.value.filter((x) => x.id !== c.id);
  list.push(c);
  chats.value = sortChats(list);
}

export function removeChat(id: string): void {
  chats.value = chats.value.filter((c) => c.id !== id);
}

/** Rename a chat in the list (at once) and on the server; resolves the saved chat. */
export async function renameChat(id: string, title: string): Promise<Chat> {
  const old = chats.value.find((c) => c.id === id);
  const t = title.trim();
  if (old) upsertChat({ ...old, title: t || null });
  try {
    const { chat } = await api.updateChat(id, { title: t || null });
    upsertChat(chat);
    return chat;
  } catch (e) {
    if (old) upsertChat(old);
    throw e;
  }
}

export async function deleteChat(id: string): Promise<void> {
  await api.deleteChat(id);
  removeChat(id);
  clearDraft(id);
}

export function resetChats(): void {
  chats.value = [];
  chatsCursor.value = null;
  chatsLoaded.value = false;
}

/** Move a chat to the top after activity, keeping what the sidebar knows of it. */
export function touchChat(c: Chat, updatedAt: number): void {
  const cur = chats.value.find((x) => x.id === c.id);
  upsertChat({ ...(cur ?? c), updated_at: Math.max(updatedAt, (cur ?? c).updated_at) });
}
