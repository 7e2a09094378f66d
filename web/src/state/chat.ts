// chat.ts - the open chat: its message tree, the visible branch, and the
// actions on it (send, edit, regenerate, stop, switch branch, settings).
// Messages being generated are followed over the turn event stream; opening a
// chat with a message still "streaming" resumes it (reload, second tab).

import { batch, computed, signal, type Signal } from '@preact/signals';
import { api, ApiError, followTurn, type TurnStream } from '../api/client';
import type { Chat, ChatParams, ChatPatch, ChatWithMessages, Message, TurnStarted } from '../api/types';
import { early } from './early';
import { announce, toast } from './ui';
import { chats, loadChats, touchChat, upsertChat } from './chats';
import { addChild, buildChildren, defaultLeaf, newestLeaf, siblingInfo, visiblePath, type Children, type SiblingInfo, type TreeNode } from './tree';
import { applyTurnEvent, toUi, type UiMessage } from './turn';
import { mark } from '../lib/perf';

export class OpenChat {
  readonly id: string;
  readonly chat: Signal<Chat>;
  private readonly msgs = new Map<string, Signal<UiMessage>>();
  /** Messages as loaded, until something asks for them (a 2,000-message chat shows a few). */
  private readonly raw = new Map<string, Message>();
  private readonly nodes = new Map<string, TreeNode>();
  private children: Children = new Map();
  /** Bumped when messages are added (the tree changed). */
  readonly structure = signal(0);
  readonly leafId: Signal<string | null>;
  private readonly streams = new Map<string, TurnStream>();
  /** Ids of messages being generated. */
  readonly live = signal<ReadonlySet<string>>(new Set());
  readonly reconnecting = signal(false);
  /** Bumped when the person starts a turn: the list jumps to the bottom and follows. */
  readonly followNonce = signal(0);
  /** Only the end of the chat is loaded (GET ?tail=N); the rest comes with merge(). */
  readonly partial: Signal<boolean>;
  closed = false;

  constructor(chat: Chat, messages: Message[], partial = false) {
    this.id = chat.id;
    this.chat = signal(chat);
    this.partial = signal(partial);
    for (const m of messages) {
      this.raw.set(m.id, m);
      this.nodes.set(m.id, { id: m.id, parent_id: m.parent_id, created_at: m.created_at });
    }
    this.children = buildChildren(this.nodes.values());
    let leaf = chat.current_leaf_id && this.nodes.has(chat.current_leaf_id) ? chat.current_leaf_id : null;
    // A partial chat has no roots to start from: the server walked up from its newest message.
    if (!leaf) leaf = partial ? newestMessage(messages) : defaultLeaf(this.children);
    this.leafId = signal(leaf);
  }

  /**
   * The whole chat arrived (after a partial first paint): add the messages not
   * known yet. Those already here stay as they are (they may be streaming, or
   * newer than this answer); the visible branch grows upwards.
   */
  merge(messages: Message[]): void {
    let added = 0;
    for (const m of messages) {
      if (this.nodes.has(m.id)) continue;
      this.raw.set(m.id, m);
      this.nodes.set(m.id, { id: m.id, parent_id: m.parent_id, created_at: m.created_at });
      added++;
    }
    batch(() => {
      if (added) {
        this.children = buildChildren(this.nodes.values());
        const leaf = this.leafId.value;
        // A branch switched to while partial may have had no children loaded yet.
        if (leaf && this.chat.value.current_leaf_id !== leaf) this.leafId.value = newestLeaf(this.children, leaf);
        else if (!leaf) this.leafId.value = defaultLeaf(this.children);
        this.structure.value++;
      }
      this.partial.value = false;
    });
    this.followStreaming();
  }

  /** Ids on the visible branch, root first. */
  readonly path = computed<string[]>(() => {
    void this.structure.value;
    return visiblePath(this.nodes, this.leafId.value).map((n) => n.id);
  });

  readonly generating = computed(() => this.path.value.some((id) => this.live.value.has(id)));

  message(id: string): Signal<UiMessage> | undefined {
    let sig = this.msgs.get(id);
    if (!sig) {
      const m = this.raw.get(id);
      if (!m) return undefined;
      sig = signal(toUi(m));
      this.msgs.set(id, sig);
      this.raw.delete(id);
    }
    return sig;
  }

  get size(): number {
    return this.nodes.size;
  }

  siblings(id: string): SiblingInfo {
    void this.structure.value;
    const n = this.nodes.get(id);
    return n ? siblingInfo(this.children, n) : { index: 0, count: 1, prev: null, next: null };
  }

  add(m: Message): void {
    const existing = this.message(m.id);
    if (existing) {
      existing.value = toUi(m, existing.value.rev);
      return;
    }
    const node = { id: m.id, parent_id: m.parent_id, created_at: m.created_at };
    this.nodes.set(m.id, node);
    this.msgs.set(m.id, signal(toUi(m)));
    addChild(this.children, node, this.nodes);
    this.structure.value++;
  }

  /** Follow a message's turn until it is done. */
  follow(id: string): void {
    if (this.closed || this.streams.has(id)) return;
    const sig = this.message(id);
    if (!sig) return;
    let first = true;
    this.live.value = new Set([...this.live.value, id]);
    const stream = followTurn(id, {
      onEvent: (ev) => {
        sig.value = applyTurnEvent(sig.value, ev, first);
        first = false;
        if (ev.type === 'done') this.finished(id, sig.value);
      },
      onFail: (err) => {
        // 404: the turn is unknown; reload the message as stored.
        this.unfollow(id);
        if (err.status !== 401) void this.reloadMessage(id);
      },
      onConnection: (state) => {
        this.reconnecting.value = state === 'reconnecting';
      },
    });
    this.streams.set(id, stream);
  }

  private unfollow(id: string): void {
    this.streams.get(id)?.close();
    this.streams.delete(id);
    const s = new Set(this.live.value);
    s.delete(id);
    this.live.value = s;
    if (s.size === 0) this.reconnecting.value = false;
  }

  private finished(id: string, m: UiMessage): void {
    this.unfollow(id);
    if (this.closed) return;
    if (m.status === 'complete') announce('Answer complete');
    else if (m.status === 'stopped') announce('Stopped');
    else if (m.status === 'error') announce('The answer failed');
    touchChat(this.chat.value, m.updated_at);
    // The server names a new chat from its first message, shortly after.
    void refreshTitle(this);
  }

  private async reloadMessage(id: string): Promise<void> {
    try {
      const { messages } = await api.chat(this.id);
      const m = messages.find((x) => x.id === id);
      const sig = this.message(id);
      if (m && sig) sig.value = { ...m, rev: sig.value.rev + 1 };
    } catch {
      /* leave as is */
    }
  }

  followStreaming(): void {
    for (const [id, sig] of this.msgs) if (sig.value.status === 'streaming') this.follow(id);
    for (const [id, m] of this.raw) if (m.status === 'streaming') this.follow(id);
  }

  close(): void {
    this.closed = true;
    for (const s of this.streams.values()) s.close();
    this.streams.clear();
  }

  /** Add a started turn's messages and follow the answer. */
  started(t: TurnStarted): void {
    batch(() => {
      if (t.user_message) this.add(t.user_message);
      this.add(t.assistant_message);
      this.leafId.value = t.assistant_message.id;
      const c = this.chat.value;
      this.chat.value = { ...c, current_leaf_id: t.assistant_message.id, updated_at: Date.now() };
    });
    touchChat(this.chat.value, Date.now());
    this.followNonce.value++;
    announce('Generating…');
    this.follow(t.assistant_message.id);
  }

  newestLeafBelow(id: string): string {
    return newestLeaf(this.children, id);
  }
}

function newestMessage(messages: Message[]): string | null {
  let best: Message | null = null;
  for (const m of messages) if (!best || m.created_at > best.created_at || (m.created_at === best.created_at && m.id > best.id)) best = m;
  return best ? best.id : null;
}

/** After a partial chat painted: fetch the whole of it and merge it in (a few tries). */
export async function completeChat(c: OpenChat, waits: readonly number[] = [0, 1000, 3000]): Promise<void> {
  for (const wait of waits) {
    if (wait) await new Promise((ok) => setTimeout(ok, wait));
    if (c.closed || !c.partial.value) return;
    try {
      const data = await api.chat(c.id);
      if (c.closed) return;
      c.merge(data.messages);
      return;
    } catch (e) {
      if (e instanceof ApiError && (e.status === 401 || e.status === 404)) return;
    }
  }
}

/** Run fn once the current frame has painted (a task after the next animation frame). */
function afterPaint(fn: () => void): void {
  if (typeof requestAnimationFrame === 'undefined') setTimeout(fn, 0);
  else requestAnimationFrame(() => setTimeout(fn, 0));
}

async function refreshTitle(c: OpenChat): Promise<void> {
  for (const wait of [0, 1500, 4000]) {
    if (wait) await new Promise((ok) => setTimeout(ok, wait));
    if (c.closed || c.chat.value.title) return;
    await loadChats();
    const found = chats.value.find((x) => x.id === c.id);
    if (found?.title) {
      c.chat.value = { ...c.chat.value, title: found.title };
      return;
    }
  }
}

// ---- the open chat ---------------------------------------------------------------

/** A chat was renamed (in the sidebar): the open chat's header shows the new title. */
export function chatRenamed(chat: Pick<Chat, 'id' | 'title'>): void {
  const c = openChat.value;
  if (c && c.id === chat.id) c.chat.value = { ...c.chat.value, title: chat.title };
}

export const openChat = signal<OpenChat | null>(null);
export const chatLoading = signal(false);
export const chatError = signal<ApiError | null>(null);
let loadSeq = 0;

// The chat being loaded, so that asking for it again joins the request.
let inflight: { id: string; seq: number; p: Promise<void> } | null = null;

/**
 * At boot, when the page opens on /c/<id>: open the chat boot.ts requested
 * (state/early.ts) as soon as it arrives, so the chat page's first render has
 * it. A 401 there only means "signed out": nothing is shown, and the chat page
 * asks again after sign-in.
 */
export function openEarlyChat(): void {
  const e = early.chat;
  early.chat = null;
  if (e) void load(e.id, e.p);
}

export function openChatById(id: string): Promise<void> {
  if (openChat.value?.id === id) return Promise.resolve();
  if (inflight && inflight.id === id && inflight.seq === loadSeq) return inflight.p;
  return load(id);
}

/** Load and open a chat; `pending` is a request boot.ts already made. */
function load(id: string, pending: Promise<ChatWithMessages> | null = null): Promise<void> {
  openChat.value?.close();
  const seq = ++loadSeq;
  batch(() => {
    openChat.value = null;
    chatLoading.value = true;
    chatError.value = null;
  });
  const entry = { id, seq, p: Promise.resolve() };
  entry.p = (async () => {
    try {
      const data = await (pending ?? api.chat(id));
      if (seq !== loadSeq) return;
      mark('chat-data');
      const c = new OpenChat(data.chat, data.messages, data.partial === true);
      openChat.value = c;
      c.followStreaming();
      if (c.partial.value) afterPaint(() => void completeChat(c));
    } catch (e) {
      if (seq !== loadSeq) return;
      if (pending && e instanceof ApiError && e.status === 401) return;
      chatError.value = e instanceof ApiError ? e : new ApiError(0, 'error', String(e));
    } finally {
      if (inflight === entry) inflight = null;
      if (seq === loadSeq) chatLoading.value = false;
    }
  })();
  inflight = entry;
  return entry.p;
}

export function closeChat(): void {
  loadSeq++;
  openChat.value?.close();
  batch(() => {
    openChat.value = null;
    chatLoading.value = false;
    chatError.value = null;
  });
}

/** Re-read the open chat (another tab may have sent a message). */
export async function refreshOpenChat(): Promise<void> {
  const c = openChat.value;
  if (!c || c.generating.value) return;
  try {
    const data = await api.chat(c.id);
    if (openChat.value !== c) return;
    if (c.partial.value) c.merge(data.messages); // the older messages, all at once
    let changed = false;
    for (const m of data.messages) {
      const cur = c.message(m.id);
      if (!cur) {
        c.add(m);
        changed = true;
      } else if (cur.value.status !== m.status || cur.value.updated_at !== m.updated_at) {
        cur.value = { ...m, rev: cur.value.rev + 1 };
      }
    }
    batch(() => {
      c.chat.value = data.chat;
      if (data.chat.current_leaf_id && (changed || data.chat.current_leaf_id !== c.leafId.value)) c.leafId.value = data.chat.current_leaf_id;
    });
    c.followStreaming();
  } catch {
    /* try again next time */
  }
}

// ---- settings for a chat not created yet ---------------------------------------------

export interface ChatSettings {
  model: string | null;
  system_prompt: string | null;
  params: ChatParams;
}
export const newChatSettings = signal<ChatSettings>({ model: null, system_prompt: null, params: {} });

// ---- actions ---------------------------------------------------------------------------

function explain(e: unknown): string {
  return e instanceof ApiError ? e.message : 'Something went wrong.';
}

/** Create a chat (with the pending settings) and send the first message in it. */
export async function startChat(text: string): Promise<OpenChat> {
  const s = newChatSettings.value;
  const fields: ChatPatch = {};
  if (s.model) fields.model = s.model;
  if (s.system_prompt) fields.system_prompt = s.system_prompt;
  if (Object.keys(s.params).length) fields.params = s.params;
  const { chat } = await api.createChat(fields);
  const c = new OpenChat(chat, []);
  upsertChat(chat);
  openChat.value?.close();
  loadSeq++;
  batch(() => {
    openChat.value = c;
    chatLoading.value = false;
    chatError.value = null;
  });
  newChatSettings.value = { model: s.model, system_prompt: null, params: {} };
  try {
    c.started(await api.send(c.id, text));
  } catch (e) {
    // The chat exists but the message did not go: leave the empty chat open
    // so the person can retry, and hand the error to the composer.
    throw e;
  }
  return c;
}

export async function sendMessage(c: OpenChat, text: string): Promise<void> {
  const leaf = c.leafId.value;
  c.started(await api.send(c.id, text, leaf ?? null));
}

export async function editMessage(c: OpenChat, id: string, text: string): Promise<void> {
  c.started(await api.edit(c.id, id, text));
}

export async function regenerate(c: OpenChat, id: string): Promise<void> {
  try {
    c.started(await api.regenerate(c.id, id));
  } catch (e) {
    toast(explain(e), 'error');
  }
}

export async function stopGenerating(c: OpenChat): Promise<void> {
  const ids = c.path.value.filter((id) => c.live.value.has(id));
  for (const id of ids) {
    try {
      await api.stop(id);
    } catch (e) {
      toast(explain(e), 'error');
    }
  }
}

/** Show the branch through a sibling: the newest leaf below it. */
export async function switchBranch(c: OpenChat, siblingId: string): Promise<void> {
  const prev = c.leafId.value;
  c.leafId.value = c.newestLeafBelow(siblingId);
  try {
    const { chat } = await api.updateChat(c.id, { current_leaf_id: siblingId });
    c.chat.value = chat;
    if (chat.current_leaf_id && c.message(chat.current_leaf_id)) c.leafId.value = chat.current_leaf_id;
  } catch (e) {
    c.leafId.value = prev;
    toast(explain(e), 'error');
  }
}

export async function updateChatSettings(c: OpenChat, patch: ChatPatch): Promise<void> {
  const { chat } = await api.updateChat(c.id, patch);
  c.chat.value = chat;
  upsertChat(chat);
}
