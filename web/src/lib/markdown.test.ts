// @vitest-environment jsdom
import { describe, expect, it, vi } from 'vitest';
import { Lexer, Marked } from 'marked';
import { BlockSplitter, IncrementalMarkdown, MARKED_OPTIONS, SOFT_HARD, blockRenderCount, quickRejects, renderBlock, renderMarkdown, splitBlocks, warmUpMarkdown } from './markdown';

function rng(seed: number) {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

const DOC = `# Title

Some *emphasis*, **strong**, ~~struck~~ and \`code\`, a [link](https://example.com).

- item one
- item two

- loose item after a blank line
  continued with indentation

1. first
2. second

- [x] done task
- [ ] open task

| a | b |
|---|:-:|
| 1 | 2 |
| 3 | 4 |

\`\`\`python
def f(x):

    return x * 2
\`\`\`

> quoted
> text

Inline math $E = mc^2$ and \\(a^2 + b^2\\), prices $5 and $6.

$$
\\int_0^1 x\\,dx = \\frac12
$$

    indented code after a blank line

~~~
tilde fence with a blank line

inside
~~~

Last paragraph without a newline`;

/** Feed text in chunks and return the final HTML. */
function streamed(text: string, cuts: number[]): string {
  const r = new IncrementalMarkdown();
  let prev = 0;
  for (const c of [...cuts, text.length]) {
    r.setText(text.slice(0, c));
    prev = c;
  }
  void prev;
  return r.html();
}

describe('block splitting', () => {
  it('splits at blank lines but not inside fences, math or continuing lists', () => {
    const blocks = splitBlocks(DOC);
    expect(blocks.join('')).toBe(DOC);
    const fence = blocks.find((b) => b.startsWith('```python'))!;
    expect(fence).toContain('return x * 2');
    expect(blocks.find((b) => b.startsWith('- item one'))).toContain('continued with indentation');
    expect(blocks.find((b) => b.startsWith('$$'))).toContain('\\frac12');
    expect(blocks.find((b) => b.startsWith('~~~'))).toContain('inside');
  });

  it('the incremental splitter agrees with the one-shot split for every prefix', () => {
    const s = new BlockSplitter();
    for (let i = 0; i <= DOC.length; i++) s.update(DOC.slice(0, i));
    const oneShot = new BlockSplitter();
    oneShot.update(DOC);
    expect(s.ends).toEqual(oneShot.ends);
  });
});

describe('incremental markdown', () => {
  const oneShot = renderMarkdown(DOC);

  it('renders GFM: tables, task lists, strikethrough; code blocks with a label and a copy button', () => {
    expect(oneShot).toContain('<table>');
    expect(oneShot).toContain('<del>struck</del>');
    expect(oneShot).toMatch(/<input[^>]*type="checkbox"/);
    expect(oneShot).toMatch(/<input[^>]*checked/);
    expect(oneShot).toContain('<span class="code-lang">python</span>');
    expect(oneShot).toContain('class="code-copy"');
    expect(oneShot).toContain('data-lang="python"');
    expect(oneShot).toContain('<h1>Title</h1>');
  });

  it('marks math for KaTeX, inline and block, and leaves prices alone', () => {
    expect(oneShot).toContain('<span class="math" data-display="0">E = mc^2</span>');
    expect(oneShot).toContain('<span class="math" data-display="0">a^2 + b^2</span>');
    expect(oneShot).toMatch(/<div class="math math-display" data-display="1">\\int_0\^1/);
    expect(oneShot).toContain('prices $5 and $6');
  });

  it('matches marked on a whole document for ordinary markdown', () => {
    // The block-wise render equals rendering the whole text at once when no
    // construct spans blocks (the usual case).
    expect(renderMarkdown(DOC)).toBe(renderBlock(DOC));
  });

  it('streamed in random chunks gives the same HTML as a one-shot render', () => {
    const r = rng(7);
    for (let round = 0; round < 60; round++) {
      const cuts: number[] = [];
      const density = [0.01, 0.05, 0.3][round % 3]!;
      for (let i = 1; i < DOC.length; i++) if (r() < density) cuts.push(i);
      expect(streamed(DOC, cuts)).toBe(oneShot);
    }
  });

  it('character by character gives the same HTML', () => {
    const cuts = Array.from({ length: DOC.length - 1 }, (_, i) => i + 1);
    expect(streamed(DOC, cuts)).toBe(oneShot);
  });

  it('starts over when the text is replaced rather than appended', () => {
    const r = new IncrementalMarkdown();
    r.setText('Hello\n\nworld', 0);
    const u = r.setText('Other\n\ntext', 1);
    expect(u.reset).toBe(true);
    expect(r.html()).toBe(renderMarkdown('Other\n\ntext'));
    const v = r.setText('Short', 1);
    expect(v.reset).toBe(true);
    expect(r.html()).toBe(renderMarkdown('Short'));
  });

  it('work per chunk is bounded: appending to a 1,000-block message renders only the tail', () => {
    const para = (i: number) => `Paragraph ${i} with some **bold** text and \`code\`.\n\n`;
    let text = '';
    for (let i = 0; i < 1000; i++) text += para(i);
    text += 'Start:';
    const r = new IncrementalMarkdown();
    expect(r.setText(text).added.length).toBe(1000);
    const before = blockRenderCount();
    let cur = text;
    const words = 'the answer keeps growing word by word'.split(' ');
    for (const w of words) {
      cur += `${w} `;
      const u = r.setText(cur);
      expect(u.added.length).toBe(0);
    }
    // One render of the open block per chunk, whatever the message length.
    expect(blockRenderCount() - before).toBe(words.length);

    // Finishing a block renders it once, plus the new tail.
    const b2 = blockRenderCount();
    cur += '\n\nNext';
    const u = r.setText(cur);
    expect(u.added.length).toBe(1);
    expect(blockRenderCount() - b2).toBe(2);
    expect(r.html()).toBe(renderMarkdown(cur));
  });

  it('a render function is called with block-sized input only', () => {
    const sizes: number[] = [];
    const r = new IncrementalMarkdown((src) => {
      sizes.push(src.length);
      return src;
    });
    let text = '';
    for (let i = 0; i < 300; i++) {
      text += `Block ${i} text.\n\n`;
      r.setText(text);
    }
    expect(Math.max(...sizes)).toBeLessThan(40);
  });
});

describe('growing code blocks', () => {
  it('with lazyFence, a code block being written is handed over as text, not re-rendered', () => {
    const r = new IncrementalMarkdown();
    let text = 'Intro.\n\n```ts\n';
    r.setText(text, 0, { lazyFence: true });
    const before = blockRenderCount();
    for (let i = 0; i < 200; i++) {
      text += `const x${i} = ${i};\n`;
      const u = r.setText(text, 0, { lazyFence: true });
      expect(u.tail).toBeNull();
      expect(u.fence?.lang).toBe('ts');
      expect(u.fence?.code.endsWith(`const x${i} = ${i};\n`)).toBe(true);
    }
    expect(blockRenderCount() - before).toBe(0);
    text += '```\n\nAfter.';
    const u = r.setText(text, 0, { lazyFence: true });
    expect(u.added.length).toBe(1); // the finished fence, rendered once
    expect(r.html()).toBe(renderMarkdown(text));
  });
});

describe('endless paragraphs', () => {
  const words = (n: number, from = 0) => Array.from({ length: n }, (_, i) => `w${from + i}`).join(' ');
  const sentences = (n: number) => Array.from({ length: n }, (_, i) => `Sentence number ${i} has *some* words, \`code\` and [a link](https://x.example/${i}).`).join(' ');

  it('a paragraph longer than the limit is cut into blocks, the same however it arrives', () => {
    for (const doc of [words(9000), sentences(900), `Intro.\n\n${sentences(600)}\n\n- a list\n\n${words(5000)} end.`]) {
      const blocks = splitBlocks(doc);
      expect(blocks.join('')).toBe(doc);
      expect(blocks.length).toBeGreaterThan(2);
      expect(Math.max(...blocks.map((b) => b.length))).toBeLessThan(SOFT_HARD + 200);
      const r = rng(doc.length);
      const s = new BlockSplitter();
      let at = 0;
      while (at < doc.length) {
        at = Math.min(doc.length, at + 1 + Math.floor(r() * 400));
        s.update(doc.slice(0, at));
      }
      const one = new BlockSplitter();
      one.update(doc);
      expect(s.ends).toEqual(one.ends);
    }
  });

  it('cuts only where no inline construct is open', () => {
    const doc = sentences(900);
    for (const b of splitBlocks(doc)) {
      expect((b.match(/`/g) ?? []).length % 2).toBe(0);
      expect((b.match(/\*/g) ?? []).length % 2).toBe(0);
      expect((b.match(/\[/g) ?? []).length).toBe((b.match(/\]/g) ?? []).length);
    }
    const html = renderMarkdown(doc);
    expect((html.match(/<a /g) ?? []).length).toBe(900);
    expect((html.match(/<em>/g) ?? []).length).toBe(900);
  });

  it('streaming a 300 KB single paragraph keeps each render small', () => {
    const sizes: number[] = [];
    const r = new IncrementalMarkdown((src) => {
      sizes.push(src.length);
      return '';
    });
    let text = '';
    for (let i = 0; i < 50_000; i += 50) {
      text += `${words(50, i)} `;
      r.setText(text);
    }
    expect(text.length).toBeGreaterThan(300_000);
    expect(Math.max(...sizes)).toBeLessThan(SOFT_HARD + 500);
  });

  it('never cuts tables, lists, fences or math', () => {
    const table = `| a | b |\n|---|---|\n${Array.from({ length: 2000 }, (_, i) => `| ${i} | word word word |`).join('\n')}`;
    expect(splitBlocks(table).length).toBe(1);
    const list = Array.from({ length: 2000 }, (_, i) => `- item ${i} with words. And more`).join('\n');
    expect(splitBlocks(list).length).toBe(1);
    const fence = '```\n' + sentences(600) + '\n```';
    expect(splitBlocks(fence).length).toBe(1);
  });
});

describe('warmUpMarkdown', () => {
  it('renders nothing anyone sees and counts no block render', () => {
    const before = blockRenderCount();
    warmUpMarkdown();
    expect(blockRenderCount()).toBe(before);
    expect(renderMarkdown('**x**')).toContain('<strong>x</strong>');
  });
});

describe('quickRejects (marked tokenizers skipped when they cannot match)', () => {
  const plain = new Marked(MARKED_OPTIONS);
  const quick = new Marked(MARKED_OPTIONS).use({ tokenizer: quickRejects });
  const CASES = [
    DOC,
    'Title\n=====\n\npara',
    'Title\n---\n',
    'Title\n  ===  \nnext',
    'a\nb\n   -\n',
    'para\n    ---\n',
    '- item\n---\n',
    '> quote\n---\n',
    'a | b\n--|--\n1 | 2',
    '| a |\n|:-|\n| x |',
    'a|b\n :-: | -\nc|d',
    'a | b\n   |---|---|\n',
    'a | b\n    |---|---|\n',
    'not | a table\nline two',
    '  > indented quote\n> more\nlazy',
    '   >x',
    '    > code, not a quote',
    '>\n>\n',
    '<div>\nhtml block\n</div>\n\nafter',
    '   <!-- comment -->\ntext',
    '<?php echo 1; ?>\n',
    '<![CDATA[ x ]]>\n',
    '<!DOCTYPE html>\n',
    '<custom-tag attr="1">\n\ntext',
    '</div>\n',
    '<SCRIPT>alert(1)</SCRIPT>\n',
    'a < b and c > d\n',
    'Line one\r\nLine two\r\n===\r\n',
    '\tTabbed\n\t---\n',
    'text\u2028more\n---',
    '- a\n  b\n  ===\n- c\n  | x |\n  |---|\n  > q',
    '1. x\n\n   <div>y</div>\n\n   > z\n   ---',
    '',
    '\n\n',
    '=',
    '-',
    '|',
    '>',
    '<',
  ];
  const pieces = ['para', 'Head\n===', 'x\n---', '| a | b |\n|---|---|\n| 1 | 2 |', '> q', ' > q2', '<div>', '</div>', '<!-- c -->', '- li', '1. li', '    code', '```\nf\n```', '$$\nx\n$$', 'a | b', '--|--', ':-:', '\t> t', '   <p>', 'lazy', '***', '___'];

  it('renders every case exactly as marked alone', () => {
    for (const c of CASES) expect(quick.parse(c), JSON.stringify(c)).toBe(plain.parse(c));
  });

  it('renders random mixes of block openers exactly as marked alone', () => {
    const r = rng(42);
    for (let n = 0; n < 600; n++) {
      const parts: string[] = [];
      const k = 1 + Math.floor(r() * 6);
      for (let i = 0; i < k; i++) parts.push(pieces[Math.floor(r() * pieces.length)]!);
      const text = parts.join(r() < 0.5 ? '\n' : '\n\n');
      expect(quick.parse(text), JSON.stringify(text)).toBe(plain.parse(text));
    }
  });

  it('keeps the big expressions unused for plain paragraphs', () => {
    const block = Lexer.rules.block as unknown as Record<string, Record<string, RegExp>>;
    const g = block.gfm!;
    const spies = ['lheading', 'table', 'blockquote', 'html'].map((k) => vi.spyOn(g[k]!, 'exec'));
    try {
      renderBlock('Message 1. Lorem ipsum dolor sit amet, **consectetur** adipiscing elit; sed do `tempor` incididunt.\n');
      for (const s of spies) expect(s).not.toHaveBeenCalled();
      // ...and used when they may match.
      renderBlock('Title\n=====\n');
      expect(spies[0]).toHaveBeenCalled();
    } finally {
      for (const s of spies) s.mockRestore();
    }
  });
});
