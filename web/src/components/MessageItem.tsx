// MessageItem.tsx - one message of the visible branch: content, actions
// (copy, edit, regenerate), branch arrows, model and token details, and an
// inline error with Retry.

import { useEffect, useRef, useState } from 'preact/hooks';
import type { OpenChat } from '../state/chat';
import { editMessage, regenerate, switchBranch } from '../state/chat';
import { messageText, type UiMessage } from '../state/turn';
import { Markdown } from './Markdown';
import { copyText } from '../lib/clipboard';
import { formatTime } from '../lib/dates';
import { IconAlert, IconCheck, IconChevronLeft, IconChevronRight, IconCopy, IconEdit, IconRegenerate } from './Icons';
import { toast } from '../state/ui';
import { ApiError } from '../api/client';

interface Props {
  chat: OpenChat;
  id: string;
}

export function BranchNav({ chat, id }: Props) {
  const s = chat.siblings(id);
  if (s.count < 2) return null;
  const busy = chat.generating.value;
  return (
    <div class="branch-nav" role="group" aria-label="Versions" data-testid="branch-nav">
      <button
        type="button"
        class="icon-btn sm"
        aria-label="Previous version"
        disabled={!s.prev || busy}
        onClick={() => s.prev && void switchBranch(chat, s.prev)}
      >
        <IconChevronLeft size={16} />
      </button>
      <span class="branch-pos" aria-live="polite" data-testid="branch-pos">
        {s.index + 1} / {s.count}
      </span>
      <button
        type="button"
        class="icon-btn sm"
        aria-label="Next version"
        disabled={!s.next || busy}
        onClick={() => s.next && void switchBranch(chat, s.next)}
      >
        <IconChevronRight size={16} />
      </button>
    </div>
  );
}

function CopyButton({ text }: { text: string }) {
  const [done, setDone] = useState(false);
  return (
    <button
      type="button"
      class="icon-btn sm"
      aria-label={done ? 'Copied' : 'Copy message'}
      title={done ? 'Copied' : 'Copy'}
      onClick={async () => {
        const ok = await copyText(text);
        if (ok) {
          setDone(true);
          setTimeout(() => setDone(false), 1500);
        } else toast('Could not copy', 'error');
      }}
    >
      {done ? <IconCheck size={16} /> : <IconCopy size={16} />}
    </button>
  );
}

function Details({ m }: { m: UiMessage }) {
  const bits: string[] = [];
  if (m.model) bits.push(m.model);
  if (m.usage && (m.usage.prompt_tokens != null || m.usage.completion_tokens != null)) {
    bits.push(`${m.usage.prompt_tokens ?? '?'} in · ${m.usage.completion_tokens ?? '?'} out tokens`);
  }
  if (m.status === 'stopped') bits.push('stopped');
  if (m.status === 'interrupted') bits.push('interrupted');
  // The date is only a tooltip: formatted when the pointer gets there, not
  // for every row rendered (opening a chat paints before any of it is needed).
  const when = (e: Event) => {
    const el = e.currentTarget as HTMLElement;
    if (!el.title) el.title = formatTime(m.created_at);
  };
  return (
    <span class="msg-details" data-testid="message-details" onPointerEnter={when} onFocus={when}>
      {bits.join(' · ')}
    </span>
  );
}

function EditBox({ initial, onCancel, onSave }: { initial: string; onCancel: () => void; onSave: (t: string) => Promise<void> }) {
  const [text, setText] = useState(initial);
  const [busy, setBusy] = useState(false);
  const ref = useRef<HTMLTextAreaElement>(null);
  useEffect(() => {
    const ta = ref.current!;
    ta.focus();
    ta.setSelectionRange(ta.value.length, ta.value.length);
  }, []);
  useEffect(() => {
    const ta = ref.current!;
    ta.style.height = 'auto';
    ta.style.height = `${Math.min(ta.scrollHeight, 400)}px`;
  }, [text]);
  const save = async () => {
    if (!text.trim() || busy) return;
    setBusy(true);
    try {
      await onSave(text);
    } catch (e) {
      toast(e instanceof ApiError ? e.message : 'Could not send', 'error');
      setBusy(false);
    }
  };
  return (
    <div class="edit-box">
      <label class="sr-only" for="edit-message">
        Edit message
      </label>
      <textarea
        id="edit-message"
        ref={ref}
        value={text}
        rows={2}
        onInput={(e) => setText((e.target as HTMLTextAreaElement).value)}
        onKeyDown={(e) => {
          if (e.key === 'Escape') {
            e.preventDefault();
            e.stopPropagation();
            onCancel();
          } else if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
            e.preventDefault();
            void save();
          }
        }}
      />
      <div class="edit-actions">
        <button type="button" class="btn" onClick={onCancel}>
          Cancel
        </button>
        <button type="button" class="btn primary" disabled={busy || !text.trim()} onClick={() => void save()}>
          Send
        </button>
      </div>
    </div>
  );
}

export function MessageItem({ chat, id }: Props) {
  const sig = chat.message(id);
  const [editing, setEditing] = useState(false);
  if (!sig) return null;
  const m = sig.value;
  const text = messageText(m);
  const streaming = m.status === 'streaming';
  const busy = chat.generating.value;

  if (m.role === 'user') {
    return (
      <article class="msg msg-user" data-testid="message" data-role="user" data-id={m.id} aria-label="Your message">
        {editing ? (
          <EditBox
            initial={text}
            onCancel={() => setEditing(false)}
            onSave={async (t) => {
              await editMessage(chat, m.id, t);
              setEditing(false);
            }}
          />
        ) : (
          <div class="bubble" data-testid="message-text">
            {text}
          </div>
        )}
        {!editing && (
          <div class="msg-actions">
            <CopyButton text={text} />
            <button type="button" class="icon-btn sm" aria-label="Edit message" title="Edit" disabled={busy} onClick={() => setEditing(true)}>
              <IconEdit size={16} />
            </button>
            <BranchNav chat={chat} id={id} />
          </div>
        )}
      </article>
    );
  }

  const refusal = m.content.filter((p) => p.type === 'refusal').map((p) => (p as { text: string }).text).join('');
  const tools = m.content.filter((p) => p.type === 'tool_call') as { id: string; name: string; arguments: string }[];
  const empty = !text && !refusal && tools.length === 0;
  return (
    <article
      class="msg msg-assistant"
      data-testid="message"
      data-role="assistant"
      data-status={m.status}
      data-id={m.id}
      aria-label="Assistant message"
      aria-busy={streaming ? 'true' : 'false'}
    >
      <div class="msg-body" data-testid="message-text">
        {text && <Markdown text={text} rev={m.rev} streaming={streaming} cacheKey={m.id} />}
        {refusal && <p class="refusal">{refusal}</p>}
        {tools.map((t, i) => (
          <details class="tool-call" key={t.id || i}>
            <summary>Tool call: {t.name || 'function'}</summary>
            <pre>
              <code>{t.arguments}</code>
            </pre>
          </details>
        ))}
        {streaming && empty && (
          <div class="thinking" aria-hidden="true">
            <span />
            <span />
            <span />
          </div>
        )}
        {streaming && !empty && <span class="caret" aria-hidden="true" />}
        {m.note && <p class="msg-note">{m.note}</p>}
        {m.error && m.status !== 'streaming' && (
          <div class="msg-error" role="alert" data-testid="message-error">
            <IconAlert size={18} />
            <div>
              <p>{m.error.message || 'The answer failed.'}</p>
              <button type="button" class="btn sm" disabled={busy} onClick={() => void regenerate(chat, m.id)}>
                Retry
              </button>
            </div>
          </div>
        )}
        {!m.error && m.status === 'error' && (
          <div class="msg-error" role="alert" data-testid="message-error">
            <IconAlert size={18} />
            <div>
              <p>The answer failed.</p>
              <button type="button" class="btn sm" disabled={busy} onClick={() => void regenerate(chat, m.id)}>
                Retry
              </button>
            </div>
          </div>
        )}
      </div>
      {!streaming && (
        <div class="msg-actions">
          <CopyButton text={text || refusal} />
          <button type="button" class="icon-btn sm" aria-label="Regenerate answer" title="Regenerate" disabled={busy} onClick={() => void regenerate(chat, m.id)}>
            <IconRegenerate size={16} />
          </button>
          <BranchNav chat={chat} id={id} />
          <Details m={m} />
        </div>
      )}
    </article>
  );
}
