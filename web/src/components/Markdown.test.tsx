// @vitest-environment jsdom
import { afterEach, describe, expect, it } from 'vitest';
import { render } from 'preact';
import { act } from 'preact/test-utils';
import { Markdown } from './Markdown';
import { renderMarkdown } from '../lib/markdown';

const frame = () => new Promise((r) => setTimeout(r, 40));

describe('<Markdown>', () => {
  let root: HTMLElement;
  afterEach(() => {
    render(null, root);
    root.remove();
  });

  it('streams to the same DOM as a one-shot render, including a growing code block', async () => {
    root = document.createElement('div');
    document.body.appendChild(root);
    const doc = 'Intro **bold**\n\n```js\nlet a = 1;\nlet b = 2;\n```\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\nEnd.';
    for (let i = 1; i <= doc.length; i += 7) {
      await act(async () => {
        render(<Markdown text={doc.slice(0, i)} rev={0} streaming={true} />, root);
      });
      await frame();
      if (doc.slice(0, i).endsWith('let a')) {
        // mid code block: a code element holds the text so far
        expect(root.querySelector('code')?.textContent).toContain('let a');
      }
    }
    await act(async () => {
      render(<Markdown text={doc} rev={0} streaming={false} />, root);
    });
    await frame();
    const expected = document.createElement('div');
    expected.innerHTML = renderMarkdown(doc);
    const got = root.querySelector('.markdown')!;
    // Highlighting may have run on the finished code; compare text and structure.
    expect(got.textContent).toBe(expected.textContent);
    expect(got.querySelectorAll('table').length).toBe(1);
    expect(got.querySelectorAll('.code-block').length).toBe(1);
    expect(got.querySelector('strong')?.textContent).toBe('bold');
  });

  it('renders a finished message at once', async () => {
    root = document.createElement('div');
    document.body.appendChild(root);
    await act(async () => {
      render(<Markdown text={'# Hi\n\n- [x] done'} rev={0} streaming={false} cacheKey="m1" />, root);
    });
    expect(root.querySelector('h1')?.textContent).toBe('Hi');
    expect(root.querySelector('input[type=checkbox]')).not.toBeNull();
  });
});
