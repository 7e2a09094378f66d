import { afterEach, describe, expect, it, vi } from 'vitest';
import { dropSsr, settleSsr, ssrChatId, SSR_KEEP_MS } from './ssr';

function block(chat: string): HTMLElement {
  const el = document.createElement('div');
  el.id = 'ssr';
  el.className = 'ssr';
  el.dataset.chat = chat;
  el.innerHTML = '<article data-testid="message" data-id="m1"><div data-testid="message-text">hi</div></article>';
  document.body.appendChild(el);
  return el;
}

describe('server-rendered first screen', () => {
  afterEach(() => {
    for (const el of document.querySelectorAll('.ssr')) el.remove();
  });

  it('reads the chat it shows; none without a block', () => {
    expect(ssrChatId()).toBeNull();
    block('c1');
    expect(ssrChatId()).toBe('c1');
    vi.useFakeTimers();
    try {
      const el = document.getElementById('ssr')!;
      dropSsr();
      // hidden at once, out of the document a little later
      expect(ssrChatId()).toBeNull();
      expect(el.hidden).toBe(true);
      expect(document.querySelector('[data-id=m1]')).toBeNull();
      expect(el.querySelector('[data-testid=message]')).toBeNull();
      vi.advanceTimersByTime(SSR_KEEP_MS);
      expect(el.isConnected).toBe(false);
      expect(document.querySelector('[data-id=m1]')).toBeNull();
    } finally {
      vi.useRealTimers();
    }
  });

  it('stays while the session is checked and while its chat loads', () => {
    block('c1');
    settleSsr({ booting: true, chatId: null, listed: false });
    expect(ssrChatId()).toBe('c1');
    settleSsr({ booting: false, chatId: 'c1', listed: false });
    expect(ssrChatId()).toBe('c1');
  });

  it('goes once the app lists the chat, or shows anything else', () => {
    block('c1');
    settleSsr({ booting: false, chatId: 'c1', listed: true });
    expect(ssrChatId()).toBeNull();
    block('c1');
    settleSsr({ booting: false, chatId: 'c2', listed: false });
    expect(ssrChatId()).toBeNull();
    block('c1');
    settleSsr({ booting: false, chatId: null, listed: false });
    expect(ssrChatId()).toBeNull();
  });
});
