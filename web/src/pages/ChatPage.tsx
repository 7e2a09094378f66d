// ChatPage.tsx - a chat (or, without an id, the new-chat screen): header with
// the model and settings, the message list, the composer.

import { useEffect, useLayoutEffect, useState } from 'preact/hooks';
import { dropSsr } from '../lib/ssr';
import {
  chatError,
  chatLoading,
  closeChat,
  newChatSettings,
  openChat,
  openChatById,
  sendMessage,
  startChat,
  stopGenerating,
  updateChatSettings,
  type OpenChat,
} from '../state/chat';
import { connection, noKeyReason } from '../state/connection';
import { NEW_CHAT_DRAFT } from '../state/drafts';
import { navigate } from '../state/router';
import { drawerOpen, toast } from '../state/ui';
import { ApiError } from '../api/client';
import { MessageList } from '../components/MessageList';
import { Composer } from '../components/Composer';
import { ChatSettingsDialog, ModelSelect, type SettingsValue } from '../components/ChatSettings';
import { chatTitle } from '../components/Sidebar';
import { IconMenu, IconSliders } from '../components/Icons';

function Header({ chat, title, settings, onModel, onOpenSettings }: { chat: OpenChat | null; title: string; settings: SettingsValue; onModel(m: string | null): void; onOpenSettings(): void }) {
  return (
    <header class="chat-header">
      <button
        type="button"
        class="icon-btn drawer-toggle"
        aria-label="Open sidebar"
        aria-controls="sidebar"
        aria-expanded={drawerOpen.value}
        onClick={() => (drawerOpen.value = true)}
      >
        <IconMenu />
      </button>
      <h1 class="chat-title" data-testid="chat-title">
        {title}
      </h1>
      <div class="chat-header-tools">
        <ModelSelect id="header-model" value={settings.model} onChange={onModel} />
        <button type="button" class="icon-btn" aria-label="Chat settings" title="Chat settings" onClick={onOpenSettings} data-testid="open-chat-settings">
          <IconSliders />
        </button>
      </div>
      {chat?.reconnecting.value && (
        <span class="reconnecting" role="status">
          Reconnecting…
        </span>
      )}
    </header>
  );
}

export function ChatPage({ chatId }: { chatId: string | null }) {
  const [settingsOpen, setSettingsOpen] = useState(false);

  useEffect(() => {
    if (chatId) void openChatById(chatId);
    else closeChat();
  }, [chatId]);

  const chat = openChat.value && (!chatId || openChat.value.id === chatId) ? openChat.value : null;
  const generating = chat?.generating.value ?? false;

  // Esc stops the answer (unless something else, a dialog or an edit box, used it).
  useEffect(() => {
    if (!chat) return;
    const onKey = (e: KeyboardEvent) => {
      if (e.key !== 'Escape' || e.defaultPrevented || !chat.generating.value) return;
      if (document.querySelector('dialog[open]')) return;
      e.preventDefault();
      void stopGenerating(chat);
    };
    document.addEventListener('keydown', onKey);
    return () => document.removeEventListener('keydown', onKey);
  }, [chat]);

  const c = chat?.chat.value;
  const settings: SettingsValue = c ? { model: c.model, system_prompt: c.system_prompt, params: c.params ?? {} } : newChatSettings.value;

  const saveSettings = async (v: SettingsValue) => {
    if (chat) await updateChatSettings(chat, { model: v.model, system_prompt: v.system_prompt, params: v.params });
    else newChatSettings.value = v;
  };
  const onModel = (m: string | null) => {
    saveSettings({ ...settings, model: m }).catch((e) => toast(e instanceof ApiError ? e.message : 'Could not change the model', 'error'));
  };

  const onSend = async (text: string) => {
    if (chat) await sendMessage(chat, text);
    else {
      const created = await startChat(text);
      navigate(`/c/${created.id}`);
    }
  };

  useEffect(() => {
    document.title = chatId ? `${c?.title || 'Chat'} · ChatOpenAII` : 'ChatOpenAII';
  }, [chatId, c?.title]);

  const reason = noKeyReason(connection.value);
  const title = chatId ? (c ? chatTitle(c) : chatLoading.value ? '' : 'Chat') : 'New chat';
  const err = chatId && !chat ? chatError.value : null;
  const empty = !chatId || (chat && chat.size === 0);
  // The chat could not be opened, or has nothing to list: the server's
  // first screen of it goes (MessageList replaces it otherwise).
  useLayoutEffect(() => {
    if (err || (chatId && chat && empty)) dropSsr();
  });

  return (
    <main class="chat-page" id="main" tabIndex={-1} data-testid="chat-page">
      <Header chat={chat} title={title} settings={settings} onModel={onModel} onOpenSettings={() => setSettingsOpen(true)} />
      {err ? (
        <div class="center-note" role="alert">
          <h2>{err.status === 404 ? 'This chat does not exist' : 'Could not open this chat'}</h2>
          <p class="muted">{err.status === 404 ? 'It may have been deleted.' : err.message}</p>
          <p>
            <button type="button" class="btn" onClick={() => (err.status === 404 ? navigate('/') : void openChatById(chatId!))}>
              {err.status === 404 ? 'Start a new chat' : 'Try again'}
            </button>
          </p>
        </div>
      ) : chatId && !chat ? (
        <div class="center-note" aria-busy="true">
          <div class="spinner" role="status" aria-label="Loading chat" />
        </div>
      ) : empty ? (
        <div class="welcome">
          <h2>How can I help?</h2>
        </div>
      ) : (
        <MessageList chat={chat!} />
      )}
      <div class="composer-wrap">
        <Composer
          draftKey={chatId ?? NEW_CHAT_DRAFT}
          disabledReason={reason}
          generating={generating}
          onSend={onSend}
          onStop={() => chat && void stopGenerating(chat)}
        />
      </div>
      <ChatSettingsDialog open={settingsOpen} value={settings} onClose={() => setSettingsOpen(false)} onSave={saveSettings} />
    </main>
  );
}
