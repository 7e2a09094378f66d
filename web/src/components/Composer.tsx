// Composer.tsx - where the person types. Enter sends, Shift+Enter adds a
// line, the box grows with its text; the draft is kept per chat (localStorage)
// so reloads and expired sessions lose nothing.

import { useEffect, useRef, useState } from 'preact/hooks';
import { loadDraft, saveDraft } from '../state/drafts';
import { ApiError } from '../api/client';
import { IconSend, IconStop } from './Icons';
import { navigate } from '../state/router';

interface Props {
  draftKey: string;
  /** Why sending is impossible (no provider key...), or null. */
  disabledReason: string | null;
  generating: boolean;
  onSend(text: string): Promise<void>;
  onStop(): void;
  autoFocus?: boolean;
}

const MAX_HEIGHT = 0.4; // of the viewport

export function Composer({ draftKey, disabledReason, generating, onSend, onStop, autoFocus = true }: Props) {
  const [text, setText] = useState(() => loadDraft(draftKey));
  const [error, setError] = useState<string | null>(null);
  const [sending, setSending] = useState(false);
  const ta = useRef<HTMLTextAreaElement>(null);
  const saveTimer = useRef<ReturnType<typeof setTimeout> | undefined>(undefined);
  const keyRef = useRef(draftKey);

  // Another chat: its own draft.
  useEffect(() => {
    if (keyRef.current !== draftKey) {
      keyRef.current = draftKey;
      setText(loadDraft(draftKey));
      setError(null);
    }
    if (autoFocus && !disabledReason && window.matchMedia?.('(pointer: fine)').matches !== false) ta.current?.focus();
  }, [draftKey]);

  useEffect(() => {
    const el = ta.current;
    if (!el) return;
    el.style.height = 'auto';
    el.style.height = `${Math.min(el.scrollHeight, Math.max(120, window.innerHeight * MAX_HEIGHT))}px`;
  }, [text]);

  // Unmounting (another chat, an expired session): write the draft now.
  const latest = useRef({ key: draftKey, text });
  latest.current = { key: draftKey, text };
  const dirty = useRef(false);
  useEffect(
    () => () => {
      clearTimeout(saveTimer.current);
      if (dirty.current) saveDraft(latest.current.key, latest.current.text);
    },
    [],
  );

  const update = (v: string) => {
    setText(v);
    clearTimeout(saveTimer.current);
    const key = draftKey;
    dirty.current = true;
    saveTimer.current = setTimeout(() => {
      saveDraft(key, v);
      dirty.current = false;
    }, 250);
  };

  const canSend = !disabledReason && !generating && !sending && text.trim().length > 0;

  const send = async () => {
    if (!canSend) return;
    const value = text;
    const key = draftKey;
    setSending(true);
    setError(null);
    setText('');
    clearTimeout(saveTimer.current);
    dirty.current = false;
    try {
      await onSend(value);
      saveDraft(key, '');
    } catch (e) {
      // Give the text back; the draft is still saved.
      setText(value);
      saveDraft(key, value);
      if (!(e instanceof ApiError && e.status === 401)) setError(e instanceof ApiError ? e.message : 'Could not send the message.');
    } finally {
      setSending(false);
      ta.current?.focus();
    }
  };

  const reasonId = 'composer-reason';
  return (
    <form
      class="composer"
      onSubmit={(e) => {
        e.preventDefault();
        void send();
      }}
      aria-label="Send a message"
    >
      {disabledReason && (
        <p class="composer-reason" id={reasonId} data-testid="composer-reason">
          {disabledReason}{' '}
          <a
            href="/settings"
            onClick={(e) => {
              e.preventDefault();
              navigate('/settings');
            }}
          >
            Open settings
          </a>
        </p>
      )}
      {error && (
        <p class="composer-error" role="alert" data-testid="composer-error">
          {error}
        </p>
      )}
      <div class={`composer-box${disabledReason ? ' disabled' : ''}`}>
        <label for="composer-input" class="sr-only">
          Message
        </label>
        <textarea
          id="composer-input"
          ref={ta}
          data-testid="composer"
          rows={1}
          value={text}
          placeholder={disabledReason ? 'Chat is unavailable' : 'Message ChatOpenAII'}
          disabled={!!disabledReason}
          aria-describedby={disabledReason ? reasonId : undefined}
          onInput={(e) => update((e.target as HTMLTextAreaElement).value)}
          onKeyDown={(e) => {
            if (e.key === 'Enter' && !e.shiftKey && !e.isComposing && e.keyCode !== 229) {
              e.preventDefault();
              void send();
            }
          }}
        />
        {generating ? (
          <button type="button" class="send-btn stop" aria-label="Stop generating" title="Stop (Esc)" onClick={onStop} data-testid="stop">
            <IconStop size={16} />
          </button>
        ) : (
          <button type="submit" class="send-btn" aria-label="Send message" title="Send (Enter)" disabled={!canSend} data-testid="send">
            <IconSend size={18} />
          </button>
        )}
      </div>
      <p class="composer-hint" aria-hidden="true">
        Enter to send · Shift+Enter for a new line{generating ? ' · Esc to stop' : ''}
      </p>
    </form>
  );
}
