// main.tsx - the app, a chunk of its own that entry.ts (the page's script)
// imports: early requests (boot.ts, first), theme, session listeners, render.
import './boot';
import { render } from 'preact';
import { effect } from '@preact/signals';
import { App } from './App';
import { theme } from './state/ui';
import { onSignedIn, onSignedOut } from './state/session';
import { loadChats, resetChats } from './state/chats';
import { loadConnection, loadModels } from './state/connection';
import { closeChat, openEarlyChat, refreshOpenChat } from './state/chat';
import { dropSsr, ssrChatId } from './lib/ssr';

if (import.meta.env.DEV) void import('./debug');

// Theme: an explicit choice wins; "system" follows prefers-color-scheme.
const media = window.matchMedia('(prefers-color-scheme: dark)');
function applyTheme(): void {
  const t = theme.value;
  const dark = t === 'dark' || (t === 'system' && media.matches);
  document.documentElement.dataset.theme = dark ? 'dark' : 'light';
}
effect(applyTheme);
media.addEventListener('change', applyTheme);

onSignedIn(() => {
  if (location.pathname === '/login' || location.pathname === '/signup') history.replaceState(null, '', '/');
  void loadChats();
  void loadConnection();
  void loadModels();
});
onSignedOut(() => {
  dropSsr(); // the server's rendering of a chat of this session
  closeChat();
  resetChats();
});

// Back to a tab: pick up what other tabs did to the open chat.
document.addEventListener('visibilitychange', () => {
  if (document.visibilityState === 'visible') void refreshOpenChat();
});

function start(): void {
  // The chat boot.ts requested opens as soon as it arrives.
  openEarlyChat();
  render(<App />, document.getElementById('app')!);
}
// The server rendered the chat's first screen into the page (lib/ssr.ts):
// let the browser paint it before the app's first render takes the main
// thread (the parser finishes and this script runs in one go otherwise).
if (ssrChatId() !== null) requestAnimationFrame(() => setTimeout(start, 0));
else start();
