// Sidebar.tsx - new chat, the chat list grouped by date (rename in place,
// delete with confirmation), settings and sign out. On phones it is a drawer.

import { useEffect, useRef, useState } from 'preact/hooks';
import type { Chat } from '../api/types';
import { chatGroups, chats, chatsCursor, chatsError, chatsLoaded, chatsLoading, deleteChat, loadMoreChats, renameChat } from '../state/chats';
import { chatRenamed } from '../state/chat';
import { navigate, route } from '../state/router';
import { drawerOpen, toast } from '../state/ui';
import { logout, user } from '../state/session';
import { ApiError } from '../api/client';
import { ConfirmDialog } from './Dialog';
import { IconClose, IconEdit, IconLogout, IconNewChat, IconSettings, IconTrash } from './Icons';

export function chatTitle(c: Pick<Chat, 'title'>): string {
  return c.title?.trim() || 'New chat';
}

function go(path: string) {
  navigate(path);
  drawerOpen.value = false;
}

function RenameInput({ chat, onDone }: { chat: Chat; onDone(): void }) {
  const [value, setValue] = useState(chat.title ?? '');
  const ref = useRef<HTMLInputElement>(null);
  const finished = useRef(false);
  useEffect(() => {
    ref.current?.focus();
    ref.current?.select();
  }, []);
  const save = async () => {
    if (finished.current) return;
    finished.current = true;
    onDone();
    if (value.trim() === (chat.title ?? '').trim()) return;
    try {
      chatRenamed(await renameChat(chat.id, value));
    } catch (e) {
      toast(e instanceof ApiError ? e.message : 'Could not rename the chat', 'error');
    }
  };
  return (
    <input
      ref={ref}
      class="rename-input"
      aria-label="Chat title"
      data-testid="rename-input"
      value={value}
      maxLength={200}
      onInput={(e) => setValue((e.target as HTMLInputElement).value)}
      onKeyDown={(e) => {
        if (e.key === 'Enter') {
          e.preventDefault();
          void save();
        } else if (e.key === 'Escape') {
          e.preventDefault();
          e.stopPropagation();
          finished.current = true;
          onDone();
        }
      }}
      onBlur={() => void save()}
    />
  );
}

function ChatRow({ chat, current, onDelete }: { chat: Chat; current: boolean; onDelete(c: Chat): void }) {
  const [renaming, setRenaming] = useState(false);
  const title = chatTitle(chat);
  return (
    <li class={`chat-row${current ? ' current' : ''}`} data-testid="chat-row" data-chat-id={chat.id}>
      {renaming ? (
        <RenameInput chat={chat} onDone={() => setRenaming(false)} />
      ) : (
        <>
          <a
            href={`/c/${chat.id}`}
            class="chat-link"
            aria-current={current ? 'page' : undefined}
            title={title}
            onClick={(e) => {
              if (e.metaKey || e.ctrlKey || e.shiftKey || e.button !== 0) return;
              e.preventDefault();
              go(`/c/${chat.id}`);
            }}
            onDblClick={() => setRenaming(true)}
          >
            {title}
          </a>
          <span class="chat-row-actions">
            <button type="button" class="icon-btn sm" aria-label={`Rename “${title}”`} title="Rename" onClick={() => setRenaming(true)}>
              <IconEdit size={15} />
            </button>
            <button type="button" class="icon-btn sm" aria-label={`Delete “${title}”`} title="Delete" onClick={() => onDelete(chat)}>
              <IconTrash size={15} />
            </button>
          </span>
        </>
      )}
    </li>
  );
}

export function Sidebar() {
  const r = route.value;
  const currentId = r.name === 'chat' ? r.id : null;
  const [toDelete, setToDelete] = useState<Chat | null>(null);
  const [busy, setBusy] = useState(false);
  const moreRef = useRef<HTMLDivElement>(null);

  // Load the next page when the end of the list scrolls into view.
  useEffect(() => {
    const el = moreRef.current;
    if (!el || typeof IntersectionObserver === 'undefined') return;
    const io = new IntersectionObserver((es) => {
      if (es.some((e) => e.isIntersecting)) void loadMoreChats();
    });
    io.observe(el);
    return () => io.disconnect();
  }, [chatsCursor.value]);

  const confirmDelete = async () => {
    const c = toDelete;
    if (!c) return;
    setBusy(true);
    try {
      await deleteChat(c.id);
      toast('Chat deleted');
      if (currentId === c.id) navigate('/', { replace: true });
      setToDelete(null);
    } catch (e) {
      toast(e instanceof ApiError ? e.message : 'Could not delete the chat', 'error');
    } finally {
      setBusy(false);
    }
  };

  const open = drawerOpen.value;
  return (
    <>
      <div class={`drawer-backdrop${open ? ' open' : ''}`} onClick={() => (drawerOpen.value = false)} aria-hidden="true" />
      <nav class={`sidebar${open ? ' open' : ''}`} aria-label="Chats" id="sidebar" data-testid="sidebar">
        <div class="sidebar-top">
          <a
            href="/"
            class="brand"
            onClick={(e) => {
              e.preventDefault();
              go('/');
            }}
          >
            ChatOpenAII
          </a>
          <button type="button" class="icon-btn drawer-close" aria-label="Close sidebar" onClick={() => (drawerOpen.value = false)}>
            <IconClose />
          </button>
        </div>
        <button type="button" class="new-chat" onClick={() => go('/')} data-testid="new-chat">
          <IconNewChat size={16} /> New chat
        </button>
        <div class="chat-list" data-testid="chat-list">
          {chatsLoaded.value && chats.value.length === 0 && <p class="muted pad">No chats yet.</p>}
          {chatGroups.value.map((g) => (
            <section key={g.group} class="chat-group" aria-labelledby={`grp-${g.group.replace(/\s/g, '')}`}>
              <h3 class="chat-group-title" id={`grp-${g.group.replace(/\s/g, '')}`}>
                {g.group}
              </h3>
              <ul>
                {g.items.map((c) => (
                  <ChatRow key={c.id} chat={c} current={c.id === currentId} onDelete={setToDelete} />
                ))}
              </ul>
            </section>
          ))}
          {chatsError.value && (
            <p class="form-error pad" role="alert">
              {chatsError.value}
            </p>
          )}
          {chatsCursor.value && (
            <div ref={moreRef} class="pad">
              <button type="button" class="btn sm" disabled={chatsLoading.value} onClick={() => void loadMoreChats()}>
                {chatsLoading.value ? 'Loading…' : 'Load more'}
              </button>
            </div>
          )}
        </div>
        <div class="sidebar-bottom">
          <a
            href="/settings"
            class={`side-link${r.name === 'settings' ? ' current' : ''}`}
            aria-current={r.name === 'settings' ? 'page' : undefined}
            onClick={(e) => {
              e.preventDefault();
              go('/settings');
            }}
          >
            <IconSettings size={16} /> Settings
          </a>
          <div class="user-line">
            <span class="user-email" title={user.value?.email}>
              {user.value?.email}
            </span>
            <button type="button" class="icon-btn sm" aria-label="Sign out" title="Sign out" onClick={() => void logout()} data-testid="sign-out">
              <IconLogout size={16} />
            </button>
          </div>
        </div>
      </nav>
      <ConfirmDialog
        open={!!toDelete}
        title="Delete chat?"
        message={
          <p>
            This deletes “{toDelete ? chatTitle(toDelete) : ''}” and all its messages. This cannot be undone.
          </p>
        }
        confirmLabel="Delete"
        danger
        busy={busy}
        onConfirm={() => void confirmDelete()}
        onCancel={() => setToDelete(null)}
      />
    </>
  );
}
