import { afterEach, describe, expect, it } from 'vitest';
import { dropSsr, settleSsr, ssrChatId } from './ssr';

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
    const el = document.getElementById('ssr')!;
    dropSsr();
    // out of the document at once: only the app's rows remain
    expect(ssrChatId()).toBeNull();
    expect(el.isConnected).toBe(false);
    expect(document.querySelector('[data-id=m1]')).toBeNull();
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
