import { afterEach, describe, expect, it } from 'vitest';
import { render } from 'preact';
import { act } from 'preact/test-utils';
import { MessageList, visibleRange } from './MessageList';
import { OpenChat } from '../state/chat';
import type { Chat, Message } from '../api/types';
import { formatTime } from '../lib/dates';

describe('visibleRange', () => {
  const h = Array.from({ length: 2000 }, () => 100);
  it('at the bottom: only the last screenful plus overscan', () => {
    const [s, e] = visibleRange(h, 0, 800, true, 400);
    expect(e).toBe(2000);
    expect(e - s).toBe(12);
  });
  it('in the middle: rows around the viewport', () => {
    const [s, e] = visibleRange(h, 50_000, 800, false, 400);
    expect(s).toBe(495);
    expect(e).toBe(512);
  });
  it('at the top', () => {
    expect(visibleRange(h, 0, 800, false, 400)).toEqual([0, 12]);
  });
  it('empty', () => {
    expect(visibleRange([], 0, 800, false)).toEqual([0, 0]);
  });
});

function longChat(n: number): OpenChat {
  const msgs: Message[] = [];
  let parent: string | null = null;
  for (let i = 0; i < n; i++) {
    const id = `m${i}`;
    msgs.push({
      id,
      chat_id: 'c',
      parent_id: parent,
      role: i % 2 ? 'assistant' : 'user',
      content: [{ type: 'text', text: `message ${i}` }],
      model: i % 2 ? 'gpt-4o' : null,
      status: 'complete',
      error: null,
      usage: null,
      created_at: i,
      updated_at: i,
    });
    parent = id;
  }
  const chat: Chat = {
    id: 'c',
    title: 'Long',
    model: null,
    system_prompt: null,
    params: {},
    folder_id: null,
    workspace_id: null,
    current_leaf_id: parent,
    created_at: 0,
    updated_at: 0,
  };
  return new OpenChat(chat, msgs);
}

describe('<MessageList>', () => {
  let root: HTMLElement;
  afterEach(() => {
    render(null, root);
    root.remove();
  });

  it('a 2,000-message chat renders only a few rows, the newest', async () => {
    root = document.createElement('div');
    document.body.appendChild(root);
    const chat = longChat(2000);
    expect(chat.path.value.length).toBe(2000);
    const t0 = performance.now();
    await act(async () => {
      render(<MessageList chat={chat} />, root);
    });
    const ms = performance.now() - t0;
    const rows = root.querySelectorAll('[data-testid=message]');
    expect(rows.length).toBeGreaterThan(0);
    expect(rows.length).toBeLessThan(40);
    expect(rows[rows.length - 1]!.textContent).toContain('message 1999');
    expect(ms).toBeLessThan(1000);
  });

  it("a chat's first paint has only the viewport's rows, with their markdown; the overscan follows after it", async () => {
    root = document.createElement('div');
    document.body.appendChild(root);
    const chat = longChat(2000);
    render(<MessageList chat={chat} />, root);
    // What the first paint shows: layout effects and the renders they ask
    // for (microtasks) have run, effects (after paint) have not.
    for (let i = 0; i < 5; i++) await Promise.resolve();
    const first = root.querySelectorAll('[data-testid=message]');
    // 800 px of viewport at the 140 px estimate: 6 rows, not 12 with the 800 px overscan
    expect(first.length).toBe(6);
    expect(first[first.length - 1]!.textContent).toContain('message 1999');
    const assistant = first[first.length - 1]!.querySelector('.markdown');
    expect(assistant?.textContent).toContain('message 1999'); // markdown already rendered, not an empty bubble
    await act(async () => {
      await new Promise((ok) => setTimeout(ok, 150));
    });
    expect(root.querySelectorAll('[data-testid=message]').length).toBe(12);
  });

  it('a partial chat shows "Loading earlier messages…" at the top until the rest is merged in', async () => {
    root = document.createElement('div');
    document.body.appendChild(root);
    const whole = longChat(200);
    const all = whole.path.value.map((id) => ({ ...whole.message(id)!.value }));
    const chat = new OpenChat(whole.chat.value, all.slice(-60), true);
    await act(async () => {
      render(<MessageList chat={chat} />, root);
    });
    expect(root.querySelector('[data-testid=loading-earlier]')?.textContent).toBe('Loading earlier messages…');
    let rows = root.querySelectorAll('[data-testid=message]');
    expect(rows[rows.length - 1]!.textContent).toContain('message 199');
    await act(async () => {
      chat.merge(all);
    });
    expect(root.querySelector('[data-testid=loading-earlier]')).toBeNull();
    expect(chat.path.value.length).toBe(200);
    rows = root.querySelectorAll('[data-testid=message]');
    expect(rows.length).toBeLessThan(40);
    expect(rows[rows.length - 1]!.textContent).toContain('message 199'); // still at the bottom
  });

  it('older messages merged in while scrolled up: the same rows stay rendered', async () => {
    root = document.createElement('div');
    document.body.appendChild(root);
    const whole = longChat(200);
    const all = whole.path.value.map((id) => ({ ...whole.message(id)!.value }));
    const chat = new OpenChat(whole.chat.value, all.slice(-60), true);
    await act(async () => {
      render(<MessageList chat={chat} />, root);
    });
    const el = root.querySelector<HTMLElement>('[data-testid=message-list]')!;
    Object.defineProperty(el, 'scrollHeight', { configurable: true, get: () => 60 * 140 });
    Object.defineProperty(el, 'clientHeight', { configurable: true, get: () => 800 });
    let top = 0;
    Object.defineProperty(el, 'scrollTop', { configurable: true, get: () => top, set: (v: number) => (top = v) });
    await act(async () => {
      el.dispatchEvent(new Event('pointerdown'));
      top = 0; // the person scrolled to the top
      el.dispatchEvent(new Event('scroll'));
      await new Promise((ok) => setTimeout(ok, 50));
    });
    const before = [...root.querySelectorAll<HTMLElement>('[data-row]')].map((r) => r.dataset.row);
    expect(before[0]).toBe('m140');
    let during: (string | undefined)[] = [];
    const orig = el.querySelector.bind(el);
    el.querySelector = ((sel: string) => {
      if (sel.startsWith('[data-row="')) during = [...root.querySelectorAll<HTMLElement>('[data-row]')].map((r) => r.dataset.row);
      return orig(sel);
    }) as typeof el.querySelector;
    await act(async () => {
      chat.merge(all);
    });
    expect(during.slice(0, before.length)).toEqual(before); // re-rendered with the same rows, before any scroll
    expect(root.querySelector('[data-testid=jump-latest]')).not.toBeNull();
  });

  it('message details format their date only when pointed at', async () => {
    root = document.createElement('div');
    document.body.appendChild(root);
    const chat = longChat(4);
    await act(async () => {
      render(<MessageList chat={chat} />, root);
    });
    const details = root.querySelector<HTMLElement>('[data-testid=message-details]')!;
    expect(details.title).toBe('');
    details.dispatchEvent(new Event('pointerenter'));
    expect(details.title).toBe(formatTime(1));
  });

  it('replaces the server-rendered first screen of the chat when its rows are in: no duplicates remain', async () => {
    const ssr = document.createElement('div');
    ssr.id = 'ssr';
    ssr.dataset.chat = 'c';
    ssr.innerHTML = '<article data-testid="message" data-id="m1999"><div data-testid="message-text">message 1999</div></article>';
    document.body.appendChild(ssr);
    root = document.createElement('div');
    document.body.appendChild(root);
    const chat = longChat(2000);
    render(<MessageList chat={chat} />, root);
    // before the first paint (layout effects and the renders they ask for)
    for (let i = 0; i < 5; i++) await Promise.resolve();
    expect(document.getElementById('ssr')).toBeNull();
    expect(ssr.isConnected).toBe(false);
    expect(document.querySelectorAll('[data-id=m1999]').length).toBe(1);
    expect(root.querySelector('[data-id=m1999]')).not.toBeNull();
    ssr.remove();
  });

  it('drops a server-rendered block of another chat too', async () => {
    const ssr = document.createElement('div');
    ssr.id = 'ssr';
    ssr.dataset.chat = 'other';
    document.body.appendChild(ssr);
    root = document.createElement('div');
    document.body.appendChild(root);
    await act(async () => {
      render(<MessageList chat={longChat(10)} />, root);
    });
    // the app shows a chat: a block of another one goes too
    expect(document.getElementById('ssr')).toBeNull();
  });
});

