// client.ts - the one caller of fetch. Cross-cutting concerns live here:
// same-origin credentials, the CSRF header on every unsafe request, error
// JSON turned into a typed ApiError, 401 reported once to whoever listens
// (the session state shows sign-in), and the resumable turn event stream.

import { createSseParser } from './sse';
import type {
  Chat,
  ChatPage,
  ChatPatch,
  ChatWithMessages,
  Connection,
  ModelList,
  Session,
  TurnEvent,
  TurnStarted,
  User,
} from './types';

export const API = '/api/v1';
const CSRF_HEADER = 'X-Requested-With';
const CSRF_VALUE = 'chatopenaii';

export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  constructor(status: number, code: string, message: string) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
  }
  /** The network failed or the server did not answer with JSON. */
  get isNetwork(): boolean {
    return this.status === 0;
  }
}

type UnauthorizedListener = () => void;
let onUnauthorized: UnauthorizedListener = () => {};
/** Called whenever an authenticated request gets 401 (session expired or revoked). */
export function setUnauthorizedHandler(fn: UnauthorizedListener): void {
  onUnauthorized = fn;
}

interface RequestOptions {
  body?: unknown;
  signal?: AbortSignal;
  /** 401 here is an answer, not an expired session (sign-in, boot-time /me). */
  expect401?: boolean;
}

async function request<T>(method: string, path: string, opts: RequestOptions = {}): Promise<T> {
  const headers: Record<string, string> = { Accept: 'application/json' };
  if (method !== 'GET' && method !== 'HEAD') headers[CSRF_HEADER] = CSRF_VALUE;
  let body: string | undefined;
  if (opts.body !== undefined) {
    headers['Content-Type'] = 'application/json';
    body = JSON.stringify(opts.body);
  }
  let res: Response;
  try {
    res = await fetch(API + path, {
      method,
      headers,
      body,
      credentials: 'same-origin',
      signal: opts.signal,
    });
  } catch (e) {
    if (e instanceof DOMException && e.name === 'AbortError') throw e;
    throw new ApiError(0, 'network_error', 'Cannot reach the server. Check your connection and try again.');
  }
  if (res.status === 204) return undefined as T;
  let json: unknown = null;
  const text = await res.text().catch(() => '');
  if (text) {
    try {
      json = JSON.parse(text);
    } catch {
      json = null;
    }
  }
  if (!res.ok) {
    const err = (json as { error?: { code?: string; message?: string } } | null)?.error;
    const apiErr = new ApiError(
      res.status,
      err?.code ?? `http_${res.status}`,
      err?.message ?? `The server answered ${res.status} ${res.statusText}`.trim(),
    );
    if (res.status === 401 && !opts.expect401) onUnauthorized();
    throw apiErr;
  }
  return json as T;
}

const enc = encodeURIComponent;

// ---- accounts --------------------------------------------------------------

export const api = {
  register: (email: string, password: string, name?: string) =>
    request<{ user: User }>('POST', '/auth/register', { body: { email, password, ...(name ? { name } : {}) }, expect401: true }),
  login: (email: string, password: string) =>
    request<{ user: User }>('POST', '/auth/login', { body: { email, password }, expect401: true }),
  logout: () => request<void>('POST', '/auth/logout', { expect401: true }),
  me: () => request<{ user: User }>('GET', '/me', { expect401: true }),
  changePassword: (current_password: string, new_password: string) =>
    request<void>('POST', '/me/password', { body: { current_password, new_password } }),
  sessions: () => request<{ data: Session[] }>('GET', '/sessions'),
  revokeSession: (id: string) => request<void>('DELETE', `/sessions/${enc(id)}`),

  // ---- provider connection and models --------------------------------------
  connection: () => request<{ connection: Connection }>('GET', '/connection'),
  saveConnection: (base_url: string, api_key?: string) =>
    request<{ connection: Connection }>('PUT', '/connection', { body: { base_url, ...(api_key ? { api_key } : {}) } }),
  deleteConnection: () => request<void>('DELETE', '/connection'),
  models: () => request<ModelList>('GET', '/models'),

  // ---- chats and messages ---------------------------------------------------
  chats: (limit = 50, cursor?: string | null) =>
    request<ChatPage>('GET', `/chats?limit=${limit}${cursor ? `&cursor=${enc(cursor)}` : ''}`),
  createChat: (fields: ChatPatch = {}) => request<{ chat: Chat }>('POST', '/chats', { body: fields }),
  chat: (id: string, signal?: AbortSignal) => request<ChatWithMessages>('GET', `/chats/${enc(id)}`, { signal }),
  /** The same, fetched at boot before the session is known: a 401 is not news. */
  chatEarly: (id: string) => request<ChatWithMessages>('GET', `/chats/${enc(id)}`, { expect401: true }),
  /** The end of the visible branch only (and its messages' siblings): paints a long chat before the rest arrives. */
  chatTail: (id: string, tail: number) =>
    request<ChatWithMessages>('GET', `/chats/${enc(id)}?tail=${tail}`, { expect401: true }),
  updateChat: (id: string, patch: ChatPatch) => request<{ chat: Chat }>('PATCH', `/chats/${enc(id)}`, { body: patch }),
  deleteChat: (id: string) => request<void>('DELETE', `/chats/${enc(id)}`),
  send: (chatId: string, content: string, parentId?: string | null) =>
    request<TurnStarted>('POST', `/chats/${enc(chatId)}/messages`, {
      body: parentId === undefined ? { content } : { content, parent_id: parentId },
    }),
  edit: (chatId: string, messageId: string, content: string) =>
    request<TurnStarted>('POST', `/chats/${enc(chatId)}/messages/${enc(messageId)}/edit`, { body: { content } }),
  regenerate: (chatId: string, messageId: string) =>
    request<TurnStarted>('POST', `/chats/${enc(chatId)}/messages/${enc(messageId)}/regenerate`),
  stop: (turnId: string) => request<{ stopped: boolean; status: string }>('POST', `/turns/${enc(turnId)}/stop`),
};

// ---- the turn event stream ---------------------------------------------------

export interface TurnStreamHandlers {
  onEvent(ev: TurnEvent): void;
  /** The stream could not be (re)opened for good: 404, 401, or an aborted follow. */
  onFail?(err: ApiError): void;
  /** Connection state, for a "reconnecting…" hint. */
  onConnection?(state: 'open' | 'reconnecting'): void;
}

export interface TurnStream {
  close(): void;
  /** The last event id received (resume point), or null before any. */
  readonly lastEventId: number | null;
}

const BACKOFF_MS = [250, 500, 1000, 2000, 4000, 8000];
/** No bytes (not even the server's ": ping") for this long: reconnect. */
const IDLE_MS = 45_000;

/**
 * Follow a turn: GET /turns/{id}/events with fetch + ReadableStream, so it can
 * send Last-Event-ID and reconnect with backoff, resuming after the last event
 * it saw. Ends after the "done" event, on close(), or on a permanent failure.
 */
export function followTurn(turnId: string, handlers: TurnStreamHandlers, lastEventId: number | null = null): TurnStream {
  let closed = false;
  let lastId = lastEventId;
  let ctrl: AbortController | null = null;
  let attempt = 0;

  const stream: TurnStream = {
    close() {
      closed = true;
      ctrl?.abort();
    },
    get lastEventId() {
      return lastId;
    },
  };

  async function once(): Promise<'done' | 'ended' | 'failed'> {
    ctrl = new AbortController();
    const headers: Record<string, string> = { Accept: 'text/event-stream' };
    if (lastId !== null) headers['Last-Event-ID'] = String(lastId);
    let idle: ReturnType<typeof setTimeout> | undefined;
    const kick = () => {
      clearTimeout(idle);
      idle = setTimeout(() => ctrl?.abort(), IDLE_MS);
    };
    try {
      kick();
      const res = await fetch(`${API}/turns/${enc(turnId)}/events`, {
        headers,
        credentials: 'same-origin',
        cache: 'no-store',
        signal: ctrl.signal,
      });
      if (!res.ok || !res.body) {
        let code = `http_${res.status}`;
        let message = `The server answered ${res.status}`;
        try {
          const j = (await res.json()) as { error?: { code: string; message: string } };
          if (j.error) ({ code, message } = j.error);
        } catch {
          /* not JSON */
        }
        const err = new ApiError(res.status, code, message);
        if (res.status === 401) onUnauthorized();
        if (res.status >= 400 && res.status < 500 && res.status !== 408 && res.status !== 429) {
          handlers.onFail?.(err);
          return 'failed';
        }
        return 'ended';
      }
      handlers.onConnection?.('open');
      const reader = res.body.getReader();
      const decoder = new TextDecoder('utf-8');
      const parser = createSseParser();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        kick();
        const events = parser.push(decoder.decode(value, { stream: true }));
        for (const e of events) {
          if (closed) return 'done';
          attempt = 0;
          let data: unknown;
          try {
            data = JSON.parse(e.data);
          } catch {
            continue; // not ours
          }
          const n = e.id !== null && /^\d+$/.test(e.id) ? Number(e.id) : null;
          if (n !== null) lastId = n;
          handlers.onEvent({ type: e.event, id: n, data } as TurnEvent);
          if (e.event === 'done') {
            ctrl.abort();
            return 'done';
          }
        }
      }
      parser.push(decoder.decode());
      return 'ended';
    } catch {
      return closed ? 'done' : 'ended';
    } finally {
      clearTimeout(idle);
    }
  }

  void (async () => {
    while (!closed) {
      const r = await once();
      if (r !== 'ended' || closed) return;
      handlers.onConnection?.('reconnecting');
      const delay = BACKOFF_MS[Math.min(attempt, BACKOFF_MS.length - 1)] ?? 8000;
      attempt++;
      await new Promise((ok) => setTimeout(ok, delay * (0.75 + Math.random() * 0.5)));
    }
  })();

  return stream;
}
