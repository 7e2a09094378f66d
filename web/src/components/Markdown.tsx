// Markdown.tsx - renders (possibly still growing) markdown into a container
// it owns. Updates are applied at most once per animation frame; finished
// blocks are appended once, only the open tail is replaced (lib/markdown.ts).

import { useEffect, useLayoutEffect, useRef } from 'preact/hooks';
import { IncrementalMarkdown, renderMarkdown } from '../lib/markdown';
import { enhance } from '../lib/enhance';
import { copyText } from '../lib/clipboard';

interface Props {
  text: string;
  /** Bumped when the text was replaced rather than appended to. */
  rev: number;
  /** Still growing: render incrementally. */
  streaming: boolean;
  /** Cache key for finished messages (message id). */
  cacheKey?: string;
}

// Finished messages re-mount as the list virtualizes: keep their HTML.
const htmlCache = new Map<string, string>();
const CACHE_MAX = 400;
function cached(key: string, text: string): string {
  let html = htmlCache.get(key);
  if (html === undefined) {
    html = renderMarkdown(text);
    if (htmlCache.size >= CACHE_MAX) htmlCache.delete(htmlCache.keys().next().value!);
    htmlCache.set(key, html);
  } else {
    htmlCache.delete(key); // refresh LRU position
    htmlCache.set(key, html);
  }
  return html;
}

function fragment(html: string): DocumentFragment {
  const t = document.createElement('template');
  t.innerHTML = html;
  return t.content;
}

const raf: (cb: () => void) => number =
  typeof requestAnimationFrame === 'function' ? (cb) => requestAnimationFrame(cb) : (cb) => setTimeout(cb, 16) as unknown as number;
const caf: (h: number) => void = typeof cancelAnimationFrame === 'function' ? cancelAnimationFrame : clearTimeout;

class DomRenderer {
  private md = new IncrementalMarkdown();
  private tailNodes: Node[] = [];
  // A code fence still being written: its text node and how much is in it.
  private fence: { text: Text; len: number } | null = null;
  constructor(private readonly root: HTMLElement) {}

  apply(text: string, rev: number, finished: boolean): void {
    const u = this.md.setText(text, rev, { lazyFence: !finished });
    if (u.reset) {
      this.root.textContent = '';
      this.tailNodes = [];
      this.fence = null;
    }
    const firstTail = this.tailNodes[0] ?? null;
    for (const html of u.added) {
      const f = fragment(html);
      const nodes = Array.from(f.childNodes);
      this.root.insertBefore(f, firstTail);
      enhance(nodes);
    }
    if (u.fence) {
      if (!this.fence || u.added.length > 0) this.startFence(u.fence.lang);
      const f = this.fence!;
      if (u.fence.code.length < f.len) {
        f.text.data = u.fence.code;
      } else {
        f.text.appendData(u.fence.code.slice(f.len));
      }
      f.len = u.fence.code.length;
      return;
    }
    this.fence = null;
    for (const n of this.tailNodes) n.parentNode?.removeChild(n);
    const f = fragment(u.tail ?? '');
    this.tailNodes = Array.from(f.childNodes);
    this.root.appendChild(f);
    if (finished) enhance(this.tailNodes);
  }

  /** The growing code block, built with DOM calls (its text is never parsed as HTML). */
  private startFence(lang: string): void {
    for (const n of this.tailNodes) n.parentNode?.removeChild(n);
    const block = document.createElement('div');
    block.className = 'code-block';
    const head = document.createElement('div');
    head.className = 'code-head';
    const label = document.createElement('span');
    label.className = 'code-lang';
    label.textContent = lang.toLowerCase() || 'text';
    const copy = document.createElement('button');
    copy.type = 'button';
    copy.className = 'code-copy';
    copy.setAttribute('aria-label', 'Copy code');
    copy.textContent = 'Copy';
    head.append(label, copy);
    const pre = document.createElement('pre');
    const code = document.createElement('code');
    const t = document.createTextNode('');
    code.appendChild(t);
    pre.appendChild(code);
    block.append(head, pre);
    this.root.appendChild(block);
    this.tailNodes = [block];
    this.fence = { text: t, len: 0 };
  }
}

export function Markdown({ text, rev, streaming, cacheKey }: Props) {
  const ref = useRef<HTMLDivElement>(null);
  const renderer = useRef<DomRenderer | null>(null);
  const pending = useRef<number | null>(null);
  const latest = useRef({ text, rev, streaming });
  latest.current = { text, rev, streaming };

  // A layout effect: a finished message is in the same paint as its row (an
  // effect would paint an empty bubble first, and the text one frame later).
  useLayoutEffect(() => {
    const root = ref.current!;
    if (!streaming && !renderer.current) {
      // A finished message: one render, possibly from cache.
      root.innerHTML = cacheKey ? cached(`${cacheKey}:${rev}`, text) : renderMarkdown(text);
      enhance(Array.from(root.childNodes));
      return;
    }
    renderer.current ??= new DomRenderer(root);
    if (pending.current !== null) return;
    pending.current = raf(() => {
      pending.current = null;
      const l = latest.current;
      renderer.current?.apply(l.text, l.rev, !l.streaming);
      if (!l.streaming) renderer.current = null;
    });
  }, [text, rev, streaming, cacheKey]);

  useEffect(
    () => () => {
      if (pending.current !== null) caf(pending.current);
    },
    [],
  );

  const onClick = (e: MouseEvent) => {
    const btn = (e.target as Element).closest?.('.code-copy');
    if (!btn) return;
    const code = btn.closest('.code-block')?.querySelector('code');
    if (!code) return;
    void copyText(code.textContent ?? '').then((ok) => {
      btn.textContent = ok ? 'Copied' : 'Copy failed';
      setTimeout(() => (btn.textContent = 'Copy'), 1500);
    });
  };

  return <div class="markdown" ref={ref} onClick={onClick} />;
}
