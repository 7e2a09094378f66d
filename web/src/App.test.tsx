// The whole app (main.tsx: boot, session listeners, routing) against an
// in-memory fake of the server's API, driven through the DOM as a person
// would: sign in, open a chat from the URL, send, regenerate, edit, switch
// branches, rename and delete in the sidebar, chat settings, the settings
// page, sign out, and a session that expires.

import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { act } from 'preact/test-utils';
import type { Chat, Connection, Message, Session, User } from './api/types';

// ---- the fake server --------------------------------------------------------

interface Fake {
  user: User | null;
  password: string;
  chats: Map<string, Chat>;
  messages: Message[];
  connection: Connection;
  sessions: Session[];
  /** Answer text per assistant message id (what its event stream sends). */
  answers: Map<string, string>;
  seq: number;
  log: string[];
  /** Fail the next request whose "METHOD path" starts with the key. */
  failNext: Map<string, { status: number; code: string; message: string }>;
}

const NOW = Date.now();
const fake: Fake = {
  user: null,
  password: 'correct horse',
  chats: new Map(),
  messages: [],
  connection: { id: null, base_url: 'https://api.openai.com/v1', has_key: false, key_last4: null, source: 'server' },
  sessions: [],
  answers: new Map(),
  seq: 0,
  log: [],
  failNext: new Map(),
};

function id(prefix: string): string {
  return `${prefix}${++fake.seq}`;
}

function chat(fields: Partial<Chat> & { id: string }): Chat {
  return {
    title: null,
    model: null,
    system_prompt: null,
    params: {},
    folder_id: null,
    workspace_id: null,
    current_leaf_id: null,
    created_at: NOW,
    updated_at: NOW,
    ...fields,
  };
}

function message(fields: Partial<Message> & { id: string; chat_id: string; role: Message['role'] }): Message {
  return {
    parent_id: null,
    content: [],
    model: null,
    status: 'complete',
    error: null,
    usage: null,
    created_at: NOW + fake.seq,
    updated_at: NOW + fake.seq,
    ...fields,
  };
}

function json(status: number, body: unknown): Response {
  return new Response(body === undefined ? null : JSON.stringify(body), { status, headers: { 'Content-Type': 'application/json' } });
}
function fail(status: number, code: string, message: string): Response {
  return json(status, { error: { code, message } });
}

function sse(events: { event: string; data: unknown }[]): Response {
  const enc = new TextEncoder();
  const text = events.map((e, i) => `id: ${i + 1}\nevent: ${e.event}\ndata: ${JSON.stringify(e.data)}\n\n`).join('');
  const body = new ReadableStream<Uint8Array>({
    start(c) {
      c.enqueue(enc.encode(': ping\n\n'));
      c.enqueue(enc.encode(text));
      c.close();
    },
  });
  return new Response(body, { status: 200, headers: { 'Content-Type': 'text/event-stream' } });
}

/** Start a turn: the user message (unless regenerating) and a streaming answer. */
function startTurn(c: Chat, parentId: string | null, content: string | null, answer: string) {
  let user: Message | null = null;
  let parent = parentId;
  if (content !== null) {
    user = message({ id: id('u'), chat_id: c.id, role: 'user', parent_id: parentId, content: [{ type: 'text', text: content }] });
    fake.messages.push(user);
    parent = user.id;
  }
  const a = message({ id: id('a'), chat_id: c.id, role: 'assistant', parent_id: parent, status: 'streaming', model: c.model ?? 'gpt-test' });
  fake.messages.push(a);
  fake.answers.set(a.id, answer);
  c.current_leaf_id = a.id;
  c.updated_at = Date.now();
  if (!c.title && content) c.title = content.slice(0, 20);
  return { user_message: user, assistant_message: a, turn: { id: a.id, events_url: `/api/v1/turns/${a.id}/events` } };
}

function route(method: string, path: string, body: Record<string, unknown> | null): Response {
  const key = `${method} ${path}`;
  for (const [k, v] of fake.failNext) {
    if (key.startsWith(k)) {
      fake.failNext.delete(k);
      return fail(v.status, v.code, v.message);
    }
  }
  const url = new URL(path, 'http://x');
  const p = url.pathname;
  const authed = (): boolean => fake.user !== null;
  let m: RegExpExecArray | null;

  if (method === 'POST' && p === '/auth/login') {
    if (body?.password !== fake.password) return fail(401, 'invalid_credentials', 'wrong email or password');
    fake.user = { id: 'u1', email: String(body.email), name: null, is_admin: false, created_at: NOW, updated_at: NOW };
    return json(200, { user: fake.user });
  }
  if (method === 'POST' && p === '/auth/register') {
    if (String(body?.password).length < 8) return fail(400, 'weak_password', 'password must be at least 8 characters');
    return fail(409, 'email_taken', 'taken');
  }
  if (method === 'POST' && p === '/auth/logout') {
    fake.user = null;
    return json(204, undefined);
  }
  if (!authed()) return fail(401, 'unauthorized', 'sign in');

  if (method === 'GET' && p === '/me') return json(200, { user: fake.user });
  if (method === 'POST' && p === '/me/password') {
    if (body?.current_password !== fake.password) return fail(400, 'invalid_credentials', 'the current password is wrong');
    fake.password = String(body.new_password);
    return json(204, undefined);
  }
  if (method === 'GET' && p === '/sessions') return json(200, { data: fake.sessions });
  if (method === 'DELETE' && (m = /^\/sessions\/(.+)$/.exec(p))) {
    fake.sessions = fake.sessions.filter((s) => s.id !== m![1]);
    return json(204, undefined);
  }
  if (method === 'GET' && p === '/connection') return json(200, { connection: fake.connection });
  if (method === 'PUT' && p === '/connection') {
    const k = body?.api_key as string | undefined;
    fake.connection = {
      id: 'conn1',
      base_url: String(body?.base_url),
      has_key: !!k || fake.connection.has_key,
      key_last4: k ? k.slice(-4) : fake.connection.key_last4,
      source: 'user',
    };
    return json(200, { connection: fake.connection });
  }
  if (method === 'DELETE' && p === '/connection') {
    fake.connection = { id: null, base_url: 'https://api.openai.com/v1', has_key: false, key_last4: null, source: 'server' };
    return json(204, undefined);
  }
  if (method === 'GET' && p === '/models') return json(200, { data: [{ id: 'gpt-test' }, { id: 'gpt-other' }], default: 'gpt-test', source: 'provider' });

  if (method === 'GET' && p === '/chats') {
    const all = [...fake.chats.values()].sort((a, b) => b.updated_at - a.updated_at);
    const limit = Number(url.searchParams.get('limit') ?? 50);
    const from = Number(url.searchParams.get('cursor') ?? 0);
    const data = all.slice(from, from + limit);
    return json(200, { data, next_cursor: from + limit < all.length ? String(from + limit) : null });
  }
  if (method === 'POST' && p === '/chats') {
    const c = chat({ id: id('c'), ...(body as Partial<Chat>), updated_at: Date.now() });
    fake.chats.set(c.id, c);
    return json(201, { chat: c });
  }
  if ((m = /^\/chats\/([^/]+)$/.exec(p))) {
    const c = fake.chats.get(m[1]!);
    if (!c) return fail(404, 'not_found', 'no such chat');
    if (method === 'GET') return json(200, { chat: c, messages: fake.messages.filter((x) => x.chat_id === c.id) });
    if (method === 'PATCH') {
      Object.assign(c, body);
      return json(200, { chat: c });
    }
    if (method === 'DELETE') {
      fake.chats.delete(c.id);
      return json(204, undefined);
    }
  }
  if (method === 'POST' && (m = /^\/chats\/([^/]+)\/messages$/.exec(p))) {
    const c = fake.chats.get(m[1]!)!;
    const parent = body && 'parent_id' in body ? (body.parent_id as string | null) : c.current_leaf_id;
    const text = String(body?.content);
    return json(202, startTurn(c, parent, text, `You said: ${text}`));
  }
  if (method === 'POST' && (m = /^\/chats\/([^/]+)\/messages\/([^/]+)\/(edit|regenerate)$/.exec(p))) {
    const c = fake.chats.get(m[1]!)!;
    const target = fake.messages.find((x) => x.id === m![2])!;
    if (m[3] === 'edit') return json(202, startTurn(c, target.parent_id, String(body?.content), `Edited: ${String(body?.content)}`));
    return json(202, startTurn(c, target.parent_id, null, 'A second answer'));
  }
  if (method === 'POST' && (m = /^\/turns\/([^/]+)\/stop$/.exec(p))) {
    return json(200, { stopped: true, status: 'stopped' });
  }
  if (method === 'GET' && (m = /^\/turns\/([^/]+)\/events$/.exec(p))) {
    const a = fake.messages.find((x) => x.id === m![1]);
    if (!a || !fake.answers.has(a.id)) return fail(404, 'not_found', 'no such turn');
    const text = fake.answers.get(a.id)!;
    fake.answers.delete(a.id);
    Object.assign(a, { status: 'complete', content: [{ type: 'text', text }], usage: { prompt_tokens: 7, completion_tokens: 3 } });
    const half = Math.ceil(text.length / 2);
    return sse([
      { event: 'delta', data: { content: text.slice(0, half) } },
      { event: 'retry', data: { attempt: 1, delay_ms: 10 } },
      { event: 'delta', data: { content: text.slice(half) } },
      { event: 'usage', data: { prompt_tokens: 7, completion_tokens: 3 } },
      { event: 'done', data: { status: 'complete', message: a } },
    ]);
  }
  return fail(404, 'not_found', `no route ${key}`);
}

async function fakeFetch(input: string, init: RequestInit = {}): Promise<Response> {
  const method = init.method ?? 'GET';
  const path = input.replace(/^\/api\/v1/, '');
  fake.log.push(`${method} ${path}`);
  if (method !== 'GET' && (init.headers as Record<string, string>)['X-Requested-With'] !== 'chatopenaii') {
    return fail(403, 'csrf', 'missing the CSRF header');
  }
  const body = typeof init.body === 'string' ? (JSON.parse(init.body) as Record<string, unknown>) : null;
  return route(method, path, body);
}

// ---- DOM helpers ------------------------------------------------------------

const $ = <T extends Element = HTMLElement>(sel: string): T | null => document.querySelector<T>(sel);
const $$ = (sel: string): HTMLElement[] => [...document.querySelectorAll<HTMLElement>(sel)];
function byText(sel: string, text: string | RegExp): HTMLElement {
  const el = $$(sel).find((e) => (typeof text === 'string' ? e.textContent?.trim() === text : text.test(e.textContent ?? '')));
  if (!el) throw new Error(`no ${sel} with text ${String(text)}; page: ${document.body.textContent?.slice(0, 400)}`);
  return el;
}
function byLabel(label: string): HTMLElement {
  const el = $(`[aria-label="${label}"]`);
  if (!el) throw new Error(`no element labelled ${label}`);
  return el;
}
async function settle(rounds = 6): Promise<void> {
  for (let i = 0; i < rounds; i++) {
    await act(async () => {
      await new Promise((ok) => setTimeout(ok, 0));
    });
  }
}
/** Wait (in real time) until cond holds, letting fetches and renders run. */
async function until(cond: () => unknown, what: string, ms = 4000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}; page: ${document.body.textContent?.slice(0, 600)}`);
    await act(async () => {
      await new Promise((ok) => setTimeout(ok, 10));
    });
  }
}
async function type(el: HTMLInputElement | HTMLTextAreaElement, v: string): Promise<void> {
  await act(async () => {
    el.value = v;
    el.dispatchEvent(new Event('input', { bubbles: true }));
  });
}
async function click(el: HTMLElement): Promise<void> {
  await act(async () => {
    el.click();
  });
  await settle();
}
async function submit(form: HTMLFormElement): Promise<void> {
  await act(async () => {
    form.dispatchEvent(new Event('submit', { bubbles: true, cancelable: true }));
  });
  await settle();
}
async function key(el: Element, k: string, opts: KeyboardEventInit = {}): Promise<void> {
  await act(async () => {
    el.dispatchEvent(new KeyboardEvent('keydown', { key: k, bubbles: true, cancelable: true, ...opts }));
  });
  await settle();
}
const messages = () => $$('[data-testid=message]');
const rowTitles = () => $$('[data-testid=chat-row] .chat-link').map((a) => a.textContent);

// ---- the journey ------------------------------------------------------------

describe('the app against a fake server', () => {
  let session: typeof import('./state/session');
  let ui: typeof import('./state/ui');
  let chatsState: typeof import('./state/chats');

  beforeAll(async () => {
    // A chat with a finished question and answer, opened straight from its URL.
    fake.chats.set('c0', chat({ id: 'c0', title: 'Old chat', current_leaf_id: 'a0', updated_at: NOW - 3 * 86_400_000 }));
    fake.messages.push(
      message({ id: 'u0', chat_id: 'c0', role: 'user', content: [{ type: 'text', text: 'What is 2+2?' }] }),
      message({ id: 'a0', chat_id: 'c0', role: 'assistant', parent_id: 'u0', content: [{ type: 'text', text: 'It is **4**.' }], model: 'gpt-test', usage: { prompt_tokens: 5, completion_tokens: 2 } }),
    );
    // Enough chats for a second page of the sidebar.
    for (let i = 0; i < 55; i++) fake.chats.set(`old${i}`, chat({ id: `old${i}`, title: `Archived ${i}`, updated_at: NOW - 40 * 86_400_000 - i }));
    fake.sessions = [
      { id: 's-this', user_agent: 'Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0', ip: '127.0.0.1', created_at: NOW - 3600_000, last_seen_at: NOW, expires_at: NOW + 1e9, current: true },
      { id: 's-phone', user_agent: 'Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Safari/604.1', ip: null, created_at: NOW - 86_400_000, last_seen_at: NOW - 7200_000, expires_at: NOW + 1e9, current: false },
      { id: 's-cli', user_agent: 'curl/8.5.0', ip: '10.0.0.2', created_at: NOW - 86_400_000, last_seen_at: NOW - 7200_000, expires_at: NOW + 1e9, current: false },
      { id: 's-unknown', user_agent: null, ip: null, created_at: NOW, last_seen_at: NOW, expires_at: NOW + 1e9, current: false },
    ];
    vi.stubGlobal('fetch', vi.fn(fakeFetch));
    history.replaceState(null, '', '/c/c0');
    const root = document.createElement('div');
    root.id = 'app';
    document.body.appendChild(root);
    await act(async () => {
      await import('./main');
    });
    session = await import('./state/session');
    ui = await import('./state/ui');
    chatsState = await import('./state/chats');
    await settle();
  });

  afterAll(() => {
    vi.unstubAllGlobals();
  });

  it('boots signed out: the chat was prefetched, /me answered 401, and sign-in is shown', async () => {
    await until(() => $('#auth-email'), 'the sign-in form');
    expect(fake.log).toContain('GET /chats/c0?tail=60');
    expect(fake.log).toContain('GET /me');
    expect(byText('h1', 'Welcome back')).toBeTruthy();
    expect($('[data-testid=session-expired]')).toBeNull();
  });

  it('explains failed sign-in and sign-up attempts', async () => {
    const form = $<HTMLFormElement>('form.form')!;
    await type($<HTMLInputElement>('#auth-email')!, 'me@example.com');
    await type($<HTMLInputElement>('#auth-password')!, 'wrong');
    await submit(form);
    expect($('[data-testid=auth-error]')!.textContent).toBe('Wrong email or password.');

    await click(byText('button', 'Create an account'));
    expect(byText('h1', 'Create your account')).toBeTruthy();
    expect($('#pw-hint')).not.toBeNull();
    await type($<HTMLInputElement>('#auth-email')!, 'me@example.com');
    await type($<HTMLInputElement>('#auth-password')!, 'short');
    await submit($<HTMLFormElement>('form.form')!);
    expect($('[data-testid=auth-error]')!.textContent).toBe('The password must be at least 8 characters');
    await type($<HTMLInputElement>('#auth-password')!, 'long enough pw');
    await submit($<HTMLFormElement>('form.form')!);
    expect($('[data-testid=auth-error]')!.textContent).toContain('already exists');
    await click(byText('button', 'Sign in'));
    expect($('[data-testid=auth-error]')).toBeNull();
  });

  it('signs in and lands on the chat from the URL, with the sidebar loaded', async () => {
    await type($<HTMLInputElement>('#auth-email')!, 'me@example.com');
    await type($<HTMLInputElement>('#auth-password')!, fake.password);
    await submit($<HTMLFormElement>('form.form')!);
    await until(() => messages().length === 2, 'the two messages of c0');
    expect($('[data-testid=chat-title]')!.textContent).toBe('Old chat');
    expect(document.title).toBe('Old chat · ChatOpenAII');
    expect(messages()[0]!.textContent).toContain('What is 2+2?');
    expect(messages()[1]!.querySelector('strong')!.textContent).toBe('4');
    expect(messages()[1]!.querySelector('[data-testid=message-details]')!.textContent).toBe('gpt-test · 5 in · 2 out tokens');
    await until(() => rowTitles().length === 50, 'the first page of chats');
    expect($('.user-email')!.textContent).toBe('me@example.com');
    // No key yet: the composer says why it cannot send.
    await until(() => $('[data-testid=composer-reason]'), 'the no-key reason');
    expect($('[data-testid=composer-reason]')!.textContent).toContain('API key');
    // The header's model list comes from /models.
    const opts = [...$<HTMLSelectElement>('[data-testid=model-select]')!.options].map((o) => o.textContent);
    expect(opts).toEqual(['Default (gpt-test)', 'gpt-test', 'gpt-other']);
  });

  it('loads the next page of chats', async () => {
    await click(byText('button', 'Load more'));
    await until(() => rowTitles().length === 56, 'all 56 chats');
    expect(fake.log).toContain('GET /chats?limit=50&cursor=50');
    expect($$('button').some((b) => b.textContent === 'Load more')).toBe(false);
  });

  it('settings: saves a connection with a key, shows it masked, replaces and removes it', async () => {
    await click(byText('a.side-link', /Settings/));
    await until(() => $('[data-testid=settings-page]'), 'the settings page');
    expect(location.pathname).toBe('/settings');
    expect($('[data-testid=connection-source]')!.textContent).toContain('No connection yet');
    const url = $<HTMLInputElement>('#conn-url')!;
    const form = $('[data-testid=settings-connection] form') as HTMLFormElement;
    await type(url, 'ftp://nope');
    await submit(form);
    expect(form.querySelector('[role=alert]')!.textContent).toContain('must start with http');
    await type(url, 'https://llm.example.com/v1');
    await submit(form);
    expect(form.querySelector('[role=alert]')!.textContent).toBe('Enter your API key.');
    await type($<HTMLInputElement>('#conn-key')!, 'sk-test-abcd1234');
    await submit(form);
    await until(() => $('[data-testid=key-masked]'), 'the masked key');
    expect($('[data-testid=key-masked]')!.textContent).toBe('••••1234');
    expect(fake.connection.base_url).toBe('https://llm.example.com/v1');
    expect($$('.toast').map((t) => t.textContent)).toContainEqual(expect.stringContaining('Connection saved'));

    // Replace, then change our mind.
    await click(byText('button', 'Replace key'));
    expect($('#conn-key')).not.toBeNull();
    await click(byText('button', 'Keep the current key'));
    expect($('[data-testid=key-masked]')).not.toBeNull();
    // Replace for real.
    await click(byText('button', 'Replace key'));
    await type($<HTMLInputElement>('#conn-key')!, 'sk-other-9999');
    await submit(form);
    await until(() => $('[data-testid=key-masked]')?.textContent === '••••9999', 'the new masked key');

    // A server error is shown in the form.
    fake.failNext.set('PUT /connection', { status: 400, code: 'invalid_base_url', message: 'the base URL is not allowed' });
    await submit(form);
    expect(form.querySelector('[role=alert]')!.textContent).toBe('the base URL is not allowed');

    // Remove (confirmed in a dialog).
    await click(byText('button', 'Remove'));
    const dlg = $('[data-testid=settings-connection] [data-testid=confirm-dialog]')!;
    expect(dlg.textContent).toContain('default key');
    await click(byText('[data-testid=settings-connection] [data-testid=confirm-dialog] button', 'Remove'));
    await until(() => $('[data-testid=connection-source]'), 'the server connection again');
    expect(fake.connection.source).toBe('server');

    // Save again so the composer can send in the next tests.
    await type($<HTMLInputElement>('#conn-key')!, 'sk-final-0000');
    await submit(form);
    await until(() => $('[data-testid=key-masked]'), 'the key again');
  });

  it('settings: theme, password and sessions', async () => {
    await click(byText('.segmented label', 'Dark').querySelector('input')!);
    expect(ui.theme.value).toBe('dark');
    expect(localStorage.getItem('coai.theme')).toBe('dark');
    expect(document.documentElement.dataset.theme).toBe('dark');
    await click(byText('.segmented label', 'Light').querySelector('input')!);
    expect(document.documentElement.dataset.theme).toBe('light');

    const pwForm = $('#pw-cur')!.closest('form') as HTMLFormElement;
    await type($<HTMLInputElement>('#pw-cur')!, fake.password);
    await type($<HTMLInputElement>('#pw-new')!, 'new password 1');
    await type($<HTMLInputElement>('#pw-again')!, 'new password 2');
    await submit(pwForm);
    expect(pwForm.querySelector('[role=alert]')!.textContent).toBe('The new passwords do not match.');
    await type($<HTMLInputElement>('#pw-cur')!, 'not it');
    await type($<HTMLInputElement>('#pw-again')!, 'new password 1');
    await submit(pwForm);
    expect(pwForm.querySelector('[role=alert]')!.textContent).toBe('the current password is wrong');
    await type($<HTMLInputElement>('#pw-cur')!, fake.password);
    await submit(pwForm);
    expect(fake.password).toBe('new password 1');
    expect($<HTMLInputElement>('#pw-cur')!.value).toBe('');

    await until(() => $$('[data-testid=session-row]').length === 4, 'four sessions');
    const rows = $$('[data-testid=session-row]').map((r) => r.querySelector('strong')!.textContent);
    expect(rows).toEqual(['Chrome on Linux', 'Safari on iOS', 'curl', 'Unknown device']);
    expect($$('[data-testid=session-row]')[0]!.textContent).toContain('This device');
    await click(byLabel('Revoke session on Safari on iOS'));
    await until(() => $$('[data-testid=session-row]').length === 3, 'three sessions');
    expect(fake.sessions.map((s) => s.id)).not.toContain('s-phone');
    fake.failNext.set('DELETE /sessions/s-cli', { status: 500, code: 'internal', message: 'the store failed' });
    await click(byLabel('Revoke session on curl'));
    expect($$('.toast.error').map((t) => t.textContent)).toContainEqual(expect.stringContaining('the store failed'));
  });

  it('a new chat: settings for it, the first message, the streamed answer and the title', async () => {
    await click($('[data-testid=new-chat]')!);
    expect(location.pathname).toBe('/');
    await until(() => $('.welcome'), 'the new-chat screen');
    expect($('[data-testid=chat-title]')!.textContent).toBe('New chat');

    // Settings for the chat not created yet: bad values are refused.
    await click($('[data-testid=open-chat-settings]')!);
    const dlg = $('[data-testid=chat-settings]')!;
    const form = dlg.querySelector('form')!;
    await type($<HTMLInputElement>('#cs-temp')!, '3');
    await submit(form);
    expect(form.querySelector('[role=alert]')!.textContent).toContain('Temperature');
    await type($<HTMLInputElement>('#cs-temp')!, '0.5');
    await type($<HTMLInputElement>('#cs-max')!, '1.5');
    await submit(form);
    expect(form.querySelector('[role=alert]')!.textContent).toContain('Max tokens');
    await type($<HTMLInputElement>('#cs-max')!, '256');
    await type($<HTMLTextAreaElement>('#cs-prompt')!, 'Be brief.');
    await act(async () => {
      const sel = $<HTMLSelectElement>('#cs-model')!;
      sel.value = 'gpt-other';
      sel.dispatchEvent(new Event('change', { bubbles: true }));
    });
    await submit(form);
    expect($('[data-testid=chat-settings] form')).toBeNull();

    const ta = $<HTMLTextAreaElement>('.composer-wrap textarea')!;
    await until(() => !ta.disabled, 'the composer to be enabled');
    await type(ta, 'Hello there');
    await key(ta, 'Enter');
    await until(() => /^\/c\/c\d+$/.test(location.pathname), 'the new chat URL');
    const newId = location.pathname.slice(3);
    const created = fake.chats.get(newId)!;
    expect(created.model).toBe('gpt-other');
    expect(created.system_prompt).toBe('Be brief.');
    expect(created.params).toEqual({ temperature: 0.5, max_tokens: 256 });
    await until(() => messages()[1]?.getAttribute('data-status') === 'complete', 'the answer to finish');
    expect(messages()[1]!.textContent).toContain('You said: Hello there');
    expect(messages()[1]!.querySelector('[data-testid=message-details]')!.textContent).toContain('7 in · 3 out tokens');
    await until(() => $('[data-testid=announcer]')!.textContent!.startsWith('Answer complete'), 'the announcement');
    // The server named the chat; the header and the sidebar pick it up.
    await until(() => $('[data-testid=chat-title]')!.textContent === 'Hello there', 'the title');
    expect(rowTitles()[0]).toBe('Hello there');
  });

  it('regenerates, edits, and switches between versions', async () => {
    const c = location.pathname.slice(3);
    await click(byLabel('Regenerate answer'));
    await until(() => messages()[1]?.textContent?.includes('A second answer') && messages()[1]!.getAttribute('data-status') === 'complete', 'the second answer');
    expect($('[data-testid=branch-pos]')!.textContent).toBe('2 / 2');
    await click(byLabel('Previous version'));
    await until(() => messages()[1]!.textContent!.includes('You said: Hello there'), 'the first answer again');
    expect($('[data-testid=branch-pos]')!.textContent).toBe('1 / 2');
    expect(fake.chats.get(c)!.current_leaf_id).toBe(messages()[1]!.getAttribute('data-id'));
    await click(byLabel('Next version'));
    await until(() => messages()[1]!.textContent!.includes('A second answer'), 'the second answer again');

    // Edit the question: a new branch from the root.
    await click(byLabel('Edit message'));
    const box = $<HTMLTextAreaElement>('#edit-message')!;
    expect(box.value).toBe('Hello there');
    await key(box, 'Escape');
    expect($('#edit-message')).toBeNull();
    await click(byLabel('Edit message'));
    await type($<HTMLTextAreaElement>('#edit-message')!, 'Hello again');
    await key($('#edit-message')!, 'Enter');
    await until(() => messages()[1]?.textContent?.includes('Edited: Hello again') && messages()[1]!.getAttribute('data-status') === 'complete', 'the edited answer');
    expect(messages()[0]!.textContent).toContain('Hello again');
    expect(messages()[0]!.querySelector('[data-testid=branch-pos]')!.textContent).toBe('2 / 2');

    // A failing regenerate is a toast, the answer stays.
    fake.failNext.set(`POST /chats/${c}/messages/`, { status: 429, code: 'rate_limited', message: 'slow down' });
    await click(byLabel('Regenerate answer'));
    expect($$('.toast.error').map((t) => t.textContent)).toContainEqual(expect.stringContaining('slow down'));

    // Chat settings of an existing chat are saved on the server.
    await act(async () => {
      const sel = $<HTMLSelectElement>('[data-testid=model-select]')!;
      sel.value = 'gpt-test';
      sel.dispatchEvent(new Event('change', { bubbles: true }));
    });
    await until(() => fake.chats.get(c)!.model === 'gpt-test', 'the model change');
    // A rejected model change is a toast.
    fake.failNext.set(`PATCH /chats/${c}`, { status: 400, code: 'invalid_model', message: 'unknown model' });
    await act(async () => {
      const sel = $<HTMLSelectElement>('[data-testid=model-select]')!;
      sel.value = 'gpt-other';
      sel.dispatchEvent(new Event('change', { bubbles: true }));
    });
    await until(() => $$('.toast.error').some((t) => t.textContent!.includes('unknown model')), 'the model error');
  });

  it('a follow-up message continues the visible branch; Esc on a finished chat does nothing', async () => {
    const before = messages().length;
    const ta = $<HTMLTextAreaElement>('.composer-wrap textarea')!;
    await type(ta, 'And then?');
    await key(ta, 'Enter');
    await until(() => messages().length === before + 2 && messages()[before + 1]!.getAttribute('data-status') === 'complete', 'the follow-up answer');
    const lastUser = fake.messages.filter((x) => x.role === 'user').at(-1)!;
    expect(lastUser.parent_id).toBe(messages()[before - 1]!.getAttribute('data-id'));
    await key(document.body, 'Escape');
    expect(fake.log.some((l) => l.includes('/stop'))).toBe(false);
  });

  it('sidebar: rename in place (Enter saves, Esc cancels), and delete with confirmation', async () => {
    const c = location.pathname.slice(3);
    const row = () => $(`[data-chat-id="${c}"]`)!;
    await click(row().querySelector<HTMLElement>('[aria-label^="Rename"]')!);
    let input = $<HTMLInputElement>('[data-testid=rename-input]')!;
    await type(input, 'Greetings');
    await key(input, 'Escape');
    expect(row().querySelector('.chat-link')!.textContent).toBe('Hello there');

    await act(async () => {
      row().querySelector('.chat-link')!.dispatchEvent(new MouseEvent('dblclick', { bubbles: true }));
    });
    input = $<HTMLInputElement>('[data-testid=rename-input]')!;
    await type(input, 'Greetings');
    await key(input, 'Enter');
    await until(() => fake.chats.get(c)!.title === 'Greetings', 'the rename on the server');
    expect(row().querySelector('.chat-link')!.textContent).toBe('Greetings');
    expect($('[data-testid=chat-title]')!.textContent).toBe('Greetings');

    // A failed rename is undone.
    fake.failNext.set(`PATCH /chats/${c}`, { status: 500, code: 'internal', message: 'rename failed' });
    await click(row().querySelector<HTMLElement>('[aria-label^="Rename"]')!);
    input = $<HTMLInputElement>('[data-testid=rename-input]')!;
    await type(input, 'Never saved');
    await act(async () => {
      input.dispatchEvent(new FocusEvent('blur'));
    });
    await until(() => $$('.toast.error').some((t) => t.textContent!.includes('rename failed')), 'the rename error');
    expect(row().querySelector('.chat-link')!.textContent).toBe('Greetings');

    // Open another chat from the sidebar, then come back.
    await click($('[data-chat-id="c0"] .chat-link')!);
    await until(() => $('[data-testid=chat-title]')!.textContent === 'Old chat', 'chat c0');
    expect($('[data-chat-id="c0"] .chat-link')!.getAttribute('aria-current')).toBe('page');
    await click(row().querySelector('.chat-link')!);
    await until(() => $('[data-testid=chat-title]')!.textContent === 'Greetings', 'the chat again');

    // Delete: cancel first, then confirm.
    await click(row().querySelector<HTMLElement>('[aria-label^="Delete"]')!);
    expect($('[data-testid=confirm-dialog]')!.textContent).toContain('This deletes “Greetings”');
    await click(byText('[data-testid=confirm-dialog] button', 'Cancel'));
    expect(fake.chats.has(c)).toBe(true);
    await click(row().querySelector<HTMLElement>('[aria-label^="Delete"]')!);
    await click(byText('[data-testid=confirm-dialog] button', 'Delete'));
    await until(() => !$(`[data-chat-id="${c}"]`), 'the row to go');
    expect(fake.chats.has(c)).toBe(false);
    expect(location.pathname).toBe('/');
  });

  it('an unknown chat, an unknown page, and the drawer', async () => {
    const { navigate } = await import('./state/router');
    await act(async () => navigate('/c/missing'));
    await until(() => $('.center-note[role=alert]'), 'the not-found note');
    expect($('.center-note h2')!.textContent).toBe('This chat does not exist');
    await click(byText('button', 'Start a new chat'));
    expect(location.pathname).toBe('/');

    await act(async () => navigate('/nowhere/at/all'));
    expect(byText('h1', 'Page not found')).toBeTruthy();

    // Back and forward go through popstate.
    await act(async () => {
      history.replaceState(null, '', '/settings');
      window.dispatchEvent(new PopStateEvent('popstate'));
    });
    await until(() => $('[data-testid=settings-page]'), 'settings after popstate');

    await click(byLabel('Open sidebar'));
    expect($('[data-testid=sidebar]')!.classList.contains('open')).toBe(true);
    await key(document.body, 'Escape');
    expect($('[data-testid=sidebar]')!.classList.contains('open')).toBe(false);
    await click(byLabel('Open sidebar'));
    await click(byLabel('Close sidebar'));
    expect($('[data-testid=sidebar]')!.classList.contains('open')).toBe(false);
  });

  it('a session that expires shows sign-in with a note; signing out clears the chats', async () => {
    // The server forgets us: the next authenticated request gets 401.
    fake.user = null;
    await act(async () => {
      await chatsState.loadChats();
    });
    await until(() => $('[data-testid=session-expired]'), 'the expired-session note');
    expect(session.sessionExpired.value).toBe(true);
    expect(chatsState.chats.value).toEqual([]);

    await type($<HTMLInputElement>('#auth-email')!, 'me@example.com');
    await type($<HTMLInputElement>('#auth-password')!, fake.password);
    await submit($<HTMLFormElement>('form.form')!);
    await until(() => $('[data-testid=sign-out]'), 'signed in again');
    await until(() => chatsState.chats.value.length > 0, 'chats again');

    await click($('[data-testid=sign-out]')!);
    await until(() => $('#auth-email'), 'the sign-in form');
    expect(session.sessionExpired.value).toBe(false);
    expect(chatsState.chats.value).toEqual([]);
    expect(fake.user).toBeNull();
  });
});
