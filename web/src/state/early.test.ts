import { afterEach, describe, expect, it } from 'vitest';
import { EARLY_TAIL, earlyTail } from './early';

function links(...hrefs: string[]): void {
  for (const href of hrefs) {
    const l = document.createElement('link');
    l.rel = 'preload';
    l.setAttribute('as', 'fetch');
    l.setAttribute('crossorigin', '');
    l.setAttribute('href', href);
    document.head.appendChild(l);
  }
}

describe('earlyTail', () => {
  afterEach(() => {
    for (const l of Array.from(document.head.querySelectorAll('link'))) l.remove();
  });

  it('asks for what the server preloaded for this chat', () => {
    links('/api/v1/me', '/api/v1/chats/abc?tail=25');
    expect(earlyTail('abc')).toBe(25);
  });

  it('without a preload for this chat, the default', () => {
    expect(earlyTail('abc')).toBe(EARLY_TAIL);
    links('/api/v1/chats/other?tail=25', '/api/v1/chats/abcd?tail=7');
    expect(earlyTail('abc')).toBe(EARLY_TAIL);
  });

  it('ignores a count the API would refuse', () => {
    for (const bad of ['0', '501', 'x', '2.5', '']) {
      links(`/api/v1/chats/abc?tail=${bad}`);
      expect(earlyTail('abc'), bad).toBe(EARLY_TAIL);
      for (const l of Array.from(document.head.querySelectorAll('link'))) l.remove();
    }
  });

  it('matches the URL the server writes (the same as web/index.html on /c/<id>)', () => {
    links('/api/v1/chats/01a25000-0000-7000-8000-000000002000?tail=60');
    expect(earlyTail('01a25000-0000-7000-8000-000000002000')).toBe(60);
  });
});
