// markdown.ts - markdown to safe HTML, incrementally.
//
// A message is split into blocks at blank lines that cannot continue the
// construct before them (outside code fences and $$ math; a list continues
// across blank lines while the next line is indented or another item).
// Finished blocks are rendered once and cached; only the last, still-growing
// block is rendered again as text arrives, so the work per chunk is bounded by
// the size of that block, not of the message.
//
// Raw HTML in model output is shown as text; images become links (loading a
// remote image can leak the conversation through its URL); the result always
// goes through the sanitizer. Code blocks get a header with the language and
// a copy button; math is marked up as <span class="math"> with the TeX as
// text, for KaTeX to typeset later (lib/enhance.ts).

import { Marked, type Tokens, type TokenizerAndRendererExtension, type TokenizerObject } from 'marked';
import { sanitizeHtml } from './sanitize';

export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

function mathToken(type: string, raw: string, tex: string, display: boolean) {
  return { type, raw, text: tex, display };
}

const mathBlock: TokenizerAndRendererExtension = {
  name: 'mathBlock',
  level: 'block',
  start(src: string) {
    const i = src.search(/(?:^|\n) {0,3}(?:\$\$|\\\[)/);
    return i < 0 ? undefined : i + (src[i] === '\n' ? 1 : 0);
  },
  tokenizer(src: string) {
    const m = /^ {0,3}\$\$([\s\S]+?)\$\$[ \t]*(?:\n+|$)/.exec(src) ?? /^ {0,3}\\\[([\s\S]+?)\\\][ \t]*(?:\n+|$)/.exec(src);
    if (m) return mathToken('mathBlock', m[0], m[1]!.trim(), true);
    return undefined;
  },
  renderer(token) {
    return `<div class="math math-display" data-display="1">${escapeHtml(token.text as string)}</div>\n`;
  },
};

const mathInline: TokenizerAndRendererExtension = {
  name: 'mathInline',
  level: 'inline',
  start(src: string) {
    const i = src.search(/\$|\\\(|\\\[/);
    return i < 0 ? undefined : i;
  },
  tokenizer(src: string) {
    let m = /^\$\$(?!\s)([\s\S]+?)\$\$/.exec(src);
    if (m) return mathToken('mathInline', m[0], m[1]!, true);
    m = /^\\\[([\s\S]+?)\\\]/.exec(src);
    if (m) return mathToken('mathInline', m[0], m[1]!, true);
    m = /^\\\(([\s\S]+?)\\\)/.exec(src);
    if (m) return mathToken('mathInline', m[0], m[1]!, false);
    // $x$: no space just inside the dollars, no digit right after the closing one ("$5 and $6").
    m = /^\$(?![\s$])((?:\\.|[^\\$\n])+?)(?<![\s\\])\$(?!\d)/.exec(src);
    if (m) return mathToken('mathInline', m[0], m[1]!, false);
    return undefined;
  },
  renderer(token) {
    const d = token.display as boolean;
    return `<span class="math${d ? ' math-display' : ''}" data-display="${d ? 1 : 0}">${escapeHtml(token.text as string)}</span>`;
  },
};

/**
 * marked tries every block tokenizer in turn at the start of each block, and
 * V8 compiles a regular expression the first time it runs: marked's setext
 * heading, table, blockquote and HTML expressions (1-1.3 KB of source each,
 * alternations of every HTML block tag inside lookaheads) take ~35 ms of CPU
 * to compile on this project's 2-core machine, on the way to a chat's first
 * paint, for a screen of plain paragraphs that none of them can match.
 * Each check below is a necessary condition of its tokenizer's expression
 * (gfm, not pedantic): when it fails, that tokenizer could not match, and
 * `undefined` says so without running it; otherwise `false` hands the text to
 * marked's own tokenizer. The output is the same (markdown.test.ts compares
 * it with a Marked without these over a corpus).
 */
const MAY_BE = {
  // ...\n {0,3}(=+|-+)[ \t]*(?:\n+|$): an underline line.
  lheading: /\n {0,3}[=-]/,
  // ^ *([^\n ].*)\n {0,3}((?:\| *)?:?-+...: a delimiter row under the first line.
  table: /^[^\n]*\n {0,3}[|:-]/,
  // ^( {0,3}> ?...
  blockquote: /^ {0,3}>/,
  // ^ {0,3}(?:<...|<!--...|<\?...|<!...|<![CDATA[...|</?tag...|<tag...|</tag...)
  html: /^ {0,3}</,
};
export const quickRejects: TokenizerObject = {
  lheading: (src: string) => (MAY_BE.lheading.test(src) ? false : undefined),
  table: (src: string) => (MAY_BE.table.test(src) ? false : undefined),
  blockquote: (src: string) => (MAY_BE.blockquote.test(src) ? false : undefined),
  html: (src: string) => (MAY_BE.html.test(src) ? false : undefined),
};

export const MARKED_OPTIONS = { gfm: true, breaks: false, async: false } as const;
const md = new Marked(MARKED_OPTIONS);
md.use({ tokenizer: quickRejects });
md.use({
  extensions: [mathBlock, mathInline],
  renderer: {
    code({ text, lang }: Tokens.Code) {
      const language = (lang ?? '').trim().split(/\s+/)[0]!.toLowerCase().replace(/[^a-z0-9_+#.-]/g, '');
      const label = language || 'text';
      return (
        `<div class="code-block"><div class="code-head"><span class="code-lang">${escapeHtml(label)}</span>` +
        `<button type="button" class="code-copy" aria-label="Copy code">Copy</button></div>` +
        `<pre><code class="${language ? `language-${escapeHtml(language)}` : ''}" data-lang="${escapeHtml(language)}">${escapeHtml(text)}</code></pre></div>\n`
      );
    },
    html({ text }: Tokens.HTML | Tokens.Tag) {
      return escapeHtml(text);
    },
    image({ href, text }: Tokens.Image) {
      const label = text ? `Image: ${text}` : 'Image';
      return `<a href="${escapeHtml(href)}" class="md-image-link">${escapeHtml(label)}</a>`;
    },
  },
});

let blockRenders = 0;
/** How many times a block has been rendered (tests bound the work per chunk with it). */
export function blockRenderCount(): number {
  return blockRenders;
}

/** Render one block (or any markdown) to sanitized HTML. */
export function renderBlock(src: string): string {
  blockRenders++;
  return sanitizeHtml(md.parse(src) as string);
}

/**
 * Render a small document using the common constructs once, for nothing: the
 * first render of all pays for compiling the tokenizer's regular expressions
 * and setting up the sanitizer. Not counted by blockRenderCount.
 */
export function warmUpMarkdown(): void {
  sanitizeHtml(md.parse('# a\n\nb **c** *d* `e` [f](https://example.com) $x$\n\n- g\n1. h\n\n> i\n\n```js\nj\n```\n\n| k |\n|---|\n| l |\n') as string);
}

// ---- block splitting -----------------------------------------------------------

const FENCE = /^ {0,3}(`{3,}|~{3,})/;
const LIST_ITEM = /^ {0,3}(?:[-*+]|\d{1,9}[.)])(?:[ \t]|$)/;

function isBlank(line: string): boolean {
  return /^[ \t]*$/.test(line);
}

/**
 * A plain paragraph longer than this is cut into several blocks (at a
 * sentence end, or past SOFT_HARD at any space) where no inline construct is
 * open, so that one endless paragraph cannot make every chunk re-render the
 * whole answer. Such a paragraph then renders as several <p>.
 */
export const SOFT_MIN = 6000;
export const SOFT_HARD = 12000;
const LETTER = /\p{L}/u;
const LINE_OPENER = /^ {0,3}(?:`|~~|\$\$|\\\[)/;

interface SoftState {
  ok: boolean | null; // null: not known yet (the block's first character decides)
  ticks: number;
  dollars: number;
  stars: number;
  tildes: number;
  brackets: number;
  parens: number;
}
function softReset(): SoftState {
  return { ok: null, ticks: 0, dollars: 0, stars: 0, tildes: 0, brackets: 0, parens: 0 };
}

/**
 * Incremental block splitter: feed it the whole text each time (append-only);
 * it only looks at lines it has not seen. `done` holds the end offsets of
 * finished blocks.
 */
export class BlockSplitter {
  private pos = 0; // start of the first line not yet processed
  private blockStart = 0;
  private blankAt = -1; // a run of blank lines began here, inside the open block
  private fence: { ch: string; len: number; lang: string; content: number; first: boolean } | null = null;
  private inMath: '$$' | '\\]' | null = null;
  private blockIsList = false;
  private blockFirstLine = true;
  private softPos = 0; // next character to look at for a soft cut
  private soft: SoftState = softReset();
  private lineStart = 0;
  private nlScan = 0; // no line break before this offset after pos
  /** End offsets of finished blocks (each block runs from the previous end). */
  readonly ends: number[] = [];

  get openStart(): number {
    return this.blockStart;
  }

  /**
   * When the open block is nothing but a code fence still being written:
   * its language and where its code starts (so a renderer can append code
   * text instead of re-rendering the block).
   */
  get openFence(): { lang: string; content: number } | null {
    const f = this.fence;
    if (!f || !f.first || this.blankAt >= 0) return null;
    // The text may end in the opener line's own newline being the last char.
    return { lang: f.lang, content: f.content };
  }

  /** Feed the text (the previous text plus more). Returns how many blocks finished. */
  update(text: string): number {
    const before = this.ends.length;
    for (;;) {
      // Search only text not searched before: one endless line costs O(chunk).
      const nl = text.indexOf('\n', Math.max(this.pos, this.nlScan));
      if (nl < 0) {
        this.nlScan = text.length;
        break;
      }
      this.lineStart = this.pos;
      this.line(this.pos, text.slice(this.pos, nl).replace(/\r$/, ''));
      this.softScan(text, nl + 1);
      this.pos = nl + 1;
    }
    this.lineStart = this.pos;
    // A partial last line can already settle a boundary: after a blank line,
    // an unindented line ends a block that is not a list.
    // (After a list, only once the line cannot be another item.)
    if (this.pos < text.length && this.blankAt >= 0 && !this.fence && !this.inMath) {
      const c = text[this.pos]!;
      if (c !== ' ' && c !== '\t' && c !== '\r' && !(this.blockIsList && /[-*+\d]/.test(c))) this.cut(this.pos);
    }
    if (this.pos < text.length) this.softScan(text, text.length);
    return this.ends.length - before;
  }

  private cut(at: number): void {
    if (at > this.blockStart) this.ends.push(at);
    this.blockStart = at;
    this.blankAt = -1;
    this.blockFirstLine = true;
    this.blockIsList = false;
    this.softPos = at;
    this.soft = softReset();
  }

  /**
   * Look for soft cuts in an over-long plain paragraph, over characters not
   * yet seen, up to `to`. A cut at i depends only on text before i and the
   * letter at i, so feeding the text in any chunks finds the same cuts.
   */
  private softScan(text: string, to: number): void {
    if (this.blankAt >= 0) return; // a boundary is pending: look again once it is settled
    const st = this.soft;
    if (this.fence || this.inMath) st.ok = false;
    if (st.ok === false) {
      this.softPos = Math.max(this.softPos, to);
      return;
    }
    for (let i = Math.max(this.softPos, this.blockStart); i < to; i++) {
      const c = text[i]!;
      if (st.ok === null) {
        // Only a plain paragraph: not a list, heading, quote, table, fence, HTML, math or indented code.
        st.ok = LETTER.test(c) && !/\d/.test(c);
        if (!st.ok) {
          this.softPos = to;
          return;
        }
      } else {
        const len = i - this.blockStart;
        if (
          len >= SOFT_MIN &&
          LETTER.test(c) &&
          text[i - 1] === ' ' &&
          (len >= SOFT_HARD || /[.!?]/.test(text[i - 2] ?? '')) &&
          st.ticks % 2 === 0 &&
          st.dollars % 2 === 0 &&
          st.stars % 2 === 0 &&
          st.tildes % 2 === 0 &&
          st.brackets === 0 &&
          st.parens === 0 &&
          !LINE_OPENER.test(this.lineHead(text, i))
        ) {
          this.ends.push(i);
          this.blockStart = i;
          this.blockFirstLine = false;
          this.blockIsList = false;
          this.soft = softReset();
          this.soft.ok = true;
          return this.softScanFrom(text, i, to);
        }
      }
      switch (c) {
        case '`':
          st.ticks++;
          break;
        case '$':
          st.dollars++;
          break;
        case '*':
          st.stars++;
          break;
        case '~':
          st.tildes++;
          break;
        case '[':
          st.brackets++;
          break;
        case ']':
          st.brackets--;
          break;
        case '(':
          st.parens++;
          break;
        case ')':
          st.parens--;
          break;
        case '|':
          st.ok = false; // maybe a table: never cut
          this.softPos = to;
          return;
        default:
          break;
      }
    }
    this.softPos = to;
  }

  /** The start of the line holding position i, up to i (at most 8 characters). */
  private lineHead(text: string, i: number): string {
    const ls = i >= this.lineStart ? this.lineStart : text.lastIndexOf('\n', i - 1) + 1;
    return text.slice(ls, Math.min(i, ls + 8));
  }

  private softScanFrom(text: string, at: number, to: number): void {
    this.softPos = at;
    this.softScan(text, to);
  }

  private line(start: number, l: string): void {
    if (this.fence) {
      const m = FENCE.exec(l);
      if (m && m[1]![0] === this.fence.ch && m[1]!.length >= this.fence.len && isBlank(l.slice(m[0].length))) this.fence = null;
      return;
    }
    if (this.inMath) {
      if (l.trimEnd().endsWith(this.inMath)) this.inMath = null;
      return;
    }
    if (isBlank(l)) {
      if (this.blankAt < 0 && !this.blockFirstLine) this.blankAt = start;
      return;
    }
    if (this.blankAt >= 0) {
      const indented = l[0] === ' ' || l[0] === '\t';
      const continuesList = this.blockIsList && LIST_ITEM.test(l);
      if (!indented && !continuesList) this.cut(start);
      else this.blankAt = -1;
    }
    const first = this.blockFirstLine;
    if (this.blockFirstLine) {
      this.blockFirstLine = false;
      this.blockIsList = LIST_ITEM.test(l);
    }
    const f = FENCE.exec(l);
    if (f) {
      // A backtick fence's info string may not contain backticks; then it is inline code.
      const info = l.slice(f[0].length);
      if (!(f[1]![0] === '`' && info.includes('`'))) {
        this.fence = { ch: f[1]![0]!, len: f[1]!.length, lang: info.trim().split(/\s+/)[0] ?? '', content: start + l.length + 1, first: first && start === this.blockStart };
      }
      return;
    }
    const t = l.trim();
    if (t.startsWith('$$') && !(t.length > 2 && t.slice(2).includes('$$'))) this.inMath = '$$';
    else if (t.startsWith('\\[') && !t.includes('\\]')) this.inMath = '\\]';
  }
}

/** Split a whole text into blocks at once (the same rules, for one-shot rendering). */
export function splitBlocks(text: string): string[] {
  const s = new BlockSplitter();
  s.update(text);
  const out: string[] = [];
  let prev = 0;
  for (const e of s.ends) {
    out.push(text.slice(prev, e));
    prev = e;
  }
  if (prev < text.length) out.push(text.slice(prev));
  return out;
}

/** One-shot render of a whole text (what the incremental renderer must equal). */
export function renderMarkdown(text: string, render: (src: string) => string = renderBlock): string {
  return splitBlocks(text).map(render).join('');
}

export interface RenderUpdate {
  /** The whole output was replaced (text was not an append). */
  reset: boolean;
  /** HTML of blocks that finished with this update, in order. */
  added: string[];
  /** HTML of the open block (may be ''); null when `fence` describes it instead. */
  tail: string | null;
  /** With { lazyFence: true }: the open block is a code fence still being written. */
  fence?: { lang: string; code: string };
}

/**
 * Incremental renderer: setText() with the growing text; finished blocks are
 * rendered once, the open block again each time. A text that does not extend
 * the previous one (or a new `rev`) starts over.
 */
export class IncrementalMarkdown {
  private splitter = new BlockSplitter();
  private text = '';
  private rev: number | null = null;
  private doneHtml: string[] = [];
  private tailSrc = '';
  private tailHtml = '';

  constructor(private readonly render: (src: string) => string = renderBlock) {}

  setText(text: string, rev = 0, opts: { lazyFence?: boolean } = {}): RenderUpdate {
    let reset = false;
    // Appends keep the previous text as a prefix. A cheap check (length and
    // the last character) plus the caller's rev counter, which it bumps on
    // every non-append replacement, keeps this O(1) rather than O(length).
    const prevLen = this.text.length;
    if (rev !== this.rev || text.length < prevLen || (prevLen > 0 && text.charCodeAt(prevLen - 1) !== this.text.charCodeAt(prevLen - 1))) {
      reset = this.rev !== null;
      this.splitter = new BlockSplitter();
      this.doneHtml = [];
      this.tailSrc = '';
      this.tailHtml = '';
      this.rev = rev;
    }
    this.text = text;
    const before = this.splitter.ends.length;
    this.splitter.update(text);
    const ends = this.splitter.ends;
    const added: string[] = [];
    for (let i = before; i < ends.length; i++) {
      const html = this.render(text.slice(i === 0 ? 0 : ends[i - 1], ends[i]));
      this.doneHtml.push(html);
      added.push(html);
    }
    const fence = opts.lazyFence ? this.splitter.openFence : null;
    if (fence) {
      // A growing code block: the caller appends the code text itself, so
      // the work per chunk stays proportional to the chunk.
      this.tailSrc = '';
      this.tailHtml = '';
      return { reset, added, tail: null, fence: { lang: fence.lang, code: text.slice(Math.min(fence.content, text.length)) } };
    }
    const tailSrc = text.slice(this.splitter.openStart);
    if (tailSrc !== this.tailSrc || added.length > 0 || reset) {
      this.tailSrc = tailSrc;
      this.tailHtml = tailSrc ? this.render(tailSrc) : '';
    }
    return { reset, added, tail: this.tailHtml };
  }

  html(): string {
    return this.doneHtml.join('') + this.tailHtml;
  }
}
