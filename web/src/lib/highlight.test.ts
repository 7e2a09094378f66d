import { afterEach, describe, expect, it, vi } from 'vitest';
import katex from 'katex';
import { canonical, highlight } from './highlight';
import { typeset } from './math';
import { enhance } from './enhance';

describe('highlight', () => {
  it('maps aliases to the languages it can load, and nothing else', () => {
    expect(canonical('ts')).toBe('typescript');
    expect(canonical('C++')).toBe('cpp');
    expect(canonical('yml')).toBe('yaml');
    expect(canonical('python')).toBe('python');
    expect(canonical('brainfuck')).toBeNull();
  });

  it('highlights code with escaped text, and returns the same HTML from its cache', async () => {
    const code = 'const a = "<b>";';
    const html = await highlight(code, 'js');
    expect(html).toContain('hljs-keyword');
    expect(html).toContain('&lt;b&gt;');
    expect(html).not.toContain('<b>');
    expect(await highlight(code, 'javascript')).toBe(html);
  });

  it('unknown languages are left alone', async () => {
    expect(await highlight('x', 'nope')).toBeNull();
  });
});

describe('math and enhance', () => {
  afterEach(() => vi.restoreAllMocks());

  it('typesets TeX with KaTeX (display mode, no trust)', () => {
    const render = vi.spyOn(katex, 'render').mockImplementation((tex, el) => {
      (el as HTMLElement).innerHTML = `<span class="katex">${tex}</span>`;
    });
    const el = document.createElement('span');
    typeset(el, 'x^2', true);
    expect(render).toHaveBeenCalledTimes(1);
    const opts = render.mock.calls[0]![2]!;
    expect(opts.displayMode).toBe(true);
    expect(opts.trust).toBe(false);
    expect(opts.throwOnError).toBe(false);
    expect(el.querySelector('.katex')!.textContent).toBe('x^2');
  });

  it('shows the TeX source as text when KaTeX throws', () => {
    vi.spyOn(katex, 'render').mockImplementation(() => {
      throw new Error('boom');
    });
    const el = document.createElement('span');
    el.innerHTML = '<b>old</b>';
    typeset(el, '\\frac{a}{b}', false);
    expect(el.innerHTML).toBe('\\frac{a}{b}');
  });

  it('enhance highlights code blocks and typesets math, once each', async () => {
    const render = vi.spyOn(katex, 'render').mockImplementation((tex, el) => {
      (el as HTMLElement).innerHTML = `<span class="katex-display">${tex}</span>`;
    });
    const root = document.createElement('div');
    root.innerHTML = '<pre><code data-lang="json">{"a": 1}</code></pre><span class="math" data-display="1">a+b</span><code data-lang="nope">x</code>';
    enhance([root, document.createTextNode('text')]);
    const code = root.querySelector<HTMLElement>('code[data-lang=json]')!;
    const math = root.querySelector<HTMLElement>('.math')!;
    expect(code.dataset.hl).toBe('1');
    expect(math.dataset.typeset).toBe('1');
    for (let i = 0; i < 100 && !(code.classList.contains('hljs') && math.querySelector('.katex-display')); i++) {
      await new Promise((ok) => setTimeout(ok, 20));
    }
    expect(code.classList.contains('hljs')).toBe(true);
    expect(code.querySelector('.hljs-attr')).not.toBeNull();
    expect(math.querySelector('.katex-display')!.textContent).toBe('a+b');
    expect(render.mock.calls[0]![2]!.displayMode).toBe(true);
    // an unknown language stays plain text; a second pass does nothing more
    expect(root.querySelector('code[data-lang=nope]')!.innerHTML).toBe('x');
    enhance([root]);
    await new Promise((ok) => setTimeout(ok, 20));
    expect(render).toHaveBeenCalledTimes(1);
  });
});
