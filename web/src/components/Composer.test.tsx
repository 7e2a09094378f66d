import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { render } from 'preact';
import { act } from 'preact/test-utils';
import { Composer } from './Composer';
import { loadDraft, saveDraft } from '../state/drafts';

function key(el: Element, k: string, opts: KeyboardEventInit = {}) {
  el.dispatchEvent(new KeyboardEvent('keydown', { key: k, bubbles: true, cancelable: true, ...opts }));
}
function type(el: HTMLTextAreaElement, v: string) {
  el.value = v;
  el.dispatchEvent(new Event('input', { bubbles: true }));
}

describe('<Composer>', () => {
  let root: HTMLElement;
  beforeEach(() => {
    localStorage.clear();
    root = document.createElement('div');
    document.body.appendChild(root);
  });
  afterEach(() => {
    render(null, root);
    root.remove();
  });

  it('Enter sends, Shift+Enter does not', async () => {
    const onSend = vi.fn(async () => {});
    await act(async () => {
      render(<Composer draftKey="c1" disabledReason={null} generating={false} onSend={onSend} onStop={() => {}} />, root);
    });
    const ta = root.querySelector('textarea')!;
    await act(async () => type(ta, 'hello'));
    await act(async () => key(ta, 'Enter', { shiftKey: true }));
    expect(onSend).not.toHaveBeenCalled();
    await act(async () => key(ta, 'Enter'));
    expect(onSend).toHaveBeenCalledWith('hello');
    expect(ta.value).toBe('');
  });

  it('is disabled with a visible reason when there is no key', async () => {
    await act(async () => {
      render(<Composer draftKey="c1" disabledReason="Add your provider API key in Settings to start chatting." generating={false} onSend={async () => {}} onStop={() => {}} />, root);
    });
    const ta = root.querySelector('textarea')!;
    expect(ta.disabled).toBe(true);
    const reason = root.querySelector('[data-testid=composer-reason]')!;
    expect(reason.textContent).toContain('API key');
    expect(ta.getAttribute('aria-describedby')).toBe(reason.id);
  });

  it('shows Stop while generating, and does not send', async () => {
    const onSend = vi.fn(async () => {});
    const onStop = vi.fn();
    await act(async () => {
      render(<Composer draftKey="c1" disabledReason={null} generating={true} onSend={onSend} onStop={onStop} />, root);
    });
    const ta = root.querySelector('textarea')!;
    await act(async () => type(ta, 'next'));
    await act(async () => key(ta, 'Enter'));
    expect(onSend).not.toHaveBeenCalled();
    (root.querySelector('[data-testid=stop]') as HTMLButtonElement).click();
    expect(onStop).toHaveBeenCalled();
  });

  it('keeps drafts per chat, and gives the text back when sending fails', async () => {
    saveDraft('c2', 'draft for two');
    await act(async () => {
      render(<Composer draftKey="c2" disabledReason={null} generating={false} onSend={async () => Promise.reject(new Error('nope'))} onStop={() => {}} />, root);
    });
    const ta = root.querySelector('textarea')!;
    expect(ta.value).toBe('draft for two');
    await act(async () => key(ta, 'Enter'));
    await act(async () => {});
    expect(ta.value).toBe('draft for two');
    expect(loadDraft('c2')).toBe('draft for two');
    expect(root.querySelector('[data-testid=composer-error]')).not.toBeNull();
  });

  it('writes the draft when it unmounts (an expired session must not lose it)', async () => {
    await act(async () => {
      render(<Composer draftKey="c3" disabledReason={null} generating={false} onSend={async () => {}} onStop={() => {}} />, root);
    });
    await act(async () => type(root.querySelector('textarea')!, 'unsaved words'));
    await act(async () => render(null, root));
    expect(loadDraft('c3')).toBe('unsaved words');
  });
});
