// App.tsx - the shell: sign-in until there is a user, then sidebar + page.

import { useEffect, useLayoutEffect } from 'preact/hooks';
import { route } from './state/router';
import { bootError, checkSession, sessionChecked, user } from './state/session';
import { announcement, dismissToast, drawerOpen, toasts } from './state/ui';
import { Sidebar } from './components/Sidebar';
import { mark } from './lib/perf';
import { dropSsr, settleSsr } from './lib/ssr';
import { ChatPage } from './pages/ChatPage';
import { SettingsPage } from './pages/SettingsPage';
import { AuthPage } from './pages/AuthPage';

function Announcer() {
  return (
    <div class="sr-only" role="status" aria-live="polite" aria-atomic="true" data-testid="announcer">
      {announcement.value}
    </div>
  );
}

function Toasts() {
  const list = toasts.value;
  return (
    <div class="toasts" aria-live="polite">
      {list.map((t) => (
        <div key={t.id} class={`toast ${t.kind}`} role={t.kind === 'error' ? 'alert' : 'status'}>
          <span>{t.text}</span>
          <button type="button" class="icon-btn sm" aria-label="Dismiss" onClick={() => dismissToast(t.id)}>
            ×
          </button>
        </div>
      ))}
    </div>
  );
}

function Main() {
  const r = route.value;
  // Another page than the chat the server rendered: its block goes.
  useLayoutEffect(() => settleSsr({ booting: false, chatId: r.name === 'chat' ? r.id : null, listed: false }));
  switch (r.name) {
    case 'chat':
      return <ChatPage chatId={r.id} />;
    case 'settings':
      return <SettingsPage />;
    case 'home':
      return <ChatPage chatId={null} />;
    default:
      return (
        <main class="chat-page" id="main">
          <div class="center-note">
            <h1>Page not found</h1>
            <a href="/">Go to ChatOpenAII</a>
          </div>
        </main>
      );
  }
}

export function App() {
  useEffect(() => {
    void checkSession();
  }, []);
  // Signed out (the session the server saw has ended): no chat on screen.
  useLayoutEffect(() => {
    if (sessionChecked.value && !user.value) dropSsr();
  });

  // Esc closes the drawer on phones.
  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      if (e.key === 'Escape' && drawerOpen.value) {
        drawerOpen.value = false;
        e.preventDefault();
      }
    };
    document.addEventListener('keydown', onKey);
    return () => document.removeEventListener('keydown', onKey);
  }, []);

  if (!sessionChecked.value) {
    mark('shell');
    return (
      <div class="boot" aria-busy="true">
        <div class="spinner" role="status" aria-label="Loading" />
      </div>
    );
  }
  if (!user.value) {
    return (
      <>
        {bootError.value && (
          <p class="boot-error" role="alert">
            {bootError.value}
          </p>
        )}
        <AuthPage />
        <Announcer />
        <Toasts />
      </>
    );
  }
  mark('app');
  return (
    <div class="app">
      <a class="skip-link" href="#main">
        Skip to main content
      </a>
      <Sidebar />
      <Main />
      <Announcer />
      <Toasts />
    </div>
  );
}
