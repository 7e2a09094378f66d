// SettingsPage.tsx - provider connection, theme, password, active sessions.

import { useEffect, useState } from 'preact/hooks';
import { api, ApiError } from '../api/client';
import type { Session } from '../api/types';
import { connection, loadConnection, removeConnection, saveConnection } from '../state/connection';
import { drawerOpen, setTheme, theme, toast, type Theme } from '../state/ui';
import { logout } from '../state/session';
import { relativeTime, formatTime } from '../lib/dates';
import { ConfirmDialog } from '../components/Dialog';
import { IconMenu } from '../components/Icons';

function msg(e: unknown): string {
  return e instanceof ApiError ? e.message : 'Something went wrong.';
}

const DEFAULT_BASE = 'https://api.openai.com/v1';

function ConnectionSection() {
  const c = connection.value;
  const personal = c?.source === 'user';
  const [baseUrl, setBaseUrl] = useState(c?.base_url ?? DEFAULT_BASE);
  const [key, setKey] = useState('');
  const [replacing, setReplacing] = useState(false);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [confirmRemove, setConfirmRemove] = useState(false);

  useEffect(() => {
    if (c) setBaseUrl(c.source === 'user' ? c.base_url : c.base_url || DEFAULT_BASE);
  }, [c?.base_url, c?.source]);

  const showKeyInput = !personal || !c?.has_key || replacing;

  const submit = async (e: Event) => {
    e.preventDefault();
    setError(null);
    if (!/^https?:\/\/\S+$/.test(baseUrl.trim())) return setError('The base URL must start with http:// or https://.');
    if (showKeyInput && !key.trim() && !personal) return setError('Enter your API key.');
    setBusy(true);
    try {
      await saveConnection(baseUrl.trim(), showKeyInput && key.trim() ? key.trim() : undefined);
      setKey('');
      setReplacing(false);
      toast('Connection saved');
    } catch (err) {
      setError(msg(err));
    } finally {
      setBusy(false);
    }
  };

  const remove = async () => {
    setBusy(true);
    try {
      await removeConnection();
      setConfirmRemove(false);
      toast('Connection removed');
    } catch (err) {
      setError(msg(err));
    } finally {
      setBusy(false);
    }
  };

  return (
    <section class="card" aria-labelledby="sec-conn" data-testid="settings-connection">
      <h2 id="sec-conn">Provider connection</h2>
      <p class="muted">
        Any OpenAI-compatible API. Your key is stored encrypted on the server and never shown again — only its last four characters.
      </p>
      {c && !personal && (
        <p class="note" data-testid="connection-source">
          {c.has_key ? 'You are using the server’s default connection. Save your own to use your key instead.' : 'No connection yet: add an API key to start chatting.'}
        </p>
      )}
      <form class="form" onSubmit={submit}>
        <div class="field">
          <label for="conn-url">Base URL</label>
          <input id="conn-url" type="url" autoComplete="off" spellcheck={false} value={baseUrl} onInput={(e) => setBaseUrl((e.target as HTMLInputElement).value)} required />
        </div>
        {personal && c?.has_key && !replacing ? (
          <div class="field">
            <span class="label" id="conn-key-label">
              API key
            </span>
            <div class="key-line" aria-labelledby="conn-key-label">
              <code data-testid="key-masked">••••{c.key_last4}</code>
              <button type="button" class="btn sm" onClick={() => setReplacing(true)}>
                Replace key
              </button>
              <button type="button" class="btn sm danger" onClick={() => setConfirmRemove(true)}>
                Remove
              </button>
            </div>
          </div>
        ) : (
          <div class="field">
            <label for="conn-key">API key</label>
            <input
              id="conn-key"
              type="password"
              autoComplete="off"
              spellcheck={false}
              placeholder="sk-…"
              value={key}
              onInput={(e) => setKey((e.target as HTMLInputElement).value)}
            />
            {replacing && (
              <button type="button" class="btn sm link" onClick={() => (setReplacing(false), setKey(''))}>
                Keep the current key
              </button>
            )}
          </div>
        )}
        {error && (
          <p class="form-error" role="alert">
            {error}
          </p>
        )}
        <div class="form-actions">
          <button type="submit" class="btn primary" disabled={busy} data-testid="save-connection">
            Save connection
          </button>
        </div>
      </form>
      <ConfirmDialog
        open={confirmRemove}
        title="Remove connection?"
        message={<p>Your saved API key will be deleted. {c?.source === 'user' ? 'If the server has a default key, it will be used instead.' : ''}</p>}
        confirmLabel="Remove"
        danger
        busy={busy}
        onConfirm={() => void remove()}
        onCancel={() => setConfirmRemove(false)}
      />
    </section>
  );
}

function ThemeSection() {
  const options: { value: Theme; label: string }[] = [
    { value: 'system', label: 'System' },
    { value: 'light', label: 'Light' },
    { value: 'dark', label: 'Dark' },
  ];
  return (
    <section class="card" aria-labelledby="sec-theme">
      <h2 id="sec-theme">Appearance</h2>
      <fieldset class="segmented">
        <legend class="sr-only">Theme</legend>
        {options.map((o) => (
          <label key={o.value} class={theme.value === o.value ? 'checked' : ''}>
            <input type="radio" name="theme" value={o.value} checked={theme.value === o.value} onChange={() => setTheme(o.value)} />
            {o.label}
          </label>
        ))}
      </fieldset>
    </section>
  );
}

function PasswordSection() {
  const [cur, setCur] = useState('');
  const [next, setNext] = useState('');
  const [again, setAgain] = useState('');
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const submit = async (e: Event) => {
    e.preventDefault();
    setError(null);
    if (next !== again) return setError('The new passwords do not match.');
    setBusy(true);
    try {
      await api.changePassword(cur, next);
      setCur('');
      setNext('');
      setAgain('');
      toast('Password changed. Other sessions were signed out.');
    } catch (err) {
      setError(msg(err));
    } finally {
      setBusy(false);
    }
  };
  return (
    <section class="card" aria-labelledby="sec-pw">
      <h2 id="sec-pw">Password</h2>
      <form class="form" onSubmit={submit}>
        <input type="text" name="username" autoComplete="username" hidden aria-hidden="true" />
        <div class="field">
          <label for="pw-cur">Current password</label>
          <input id="pw-cur" type="password" autoComplete="current-password" value={cur} onInput={(e) => setCur((e.target as HTMLInputElement).value)} required />
        </div>
        <div class="field-row">
          <div class="field">
            <label for="pw-new">New password</label>
            <input id="pw-new" type="password" autoComplete="new-password" value={next} onInput={(e) => setNext((e.target as HTMLInputElement).value)} required />
          </div>
          <div class="field">
            <label for="pw-again">Repeat new password</label>
            <input id="pw-again" type="password" autoComplete="new-password" value={again} onInput={(e) => setAgain((e.target as HTMLInputElement).value)} required />
          </div>
        </div>
        {error && (
          <p class="form-error" role="alert">
            {error}
          </p>
        )}
        <div class="form-actions">
          <button type="submit" class="btn primary" disabled={busy}>
            Change password
          </button>
        </div>
      </form>
    </section>
  );
}

function describeAgent(ua: string | null): string {
  if (!ua) return 'Unknown device';
  const browser = /Edg\//.test(ua) ? 'Edge' : /Firefox\//.test(ua) ? 'Firefox' : /Chrom(e|ium)\//.test(ua) ? 'Chrome' : /Safari\//.test(ua) ? 'Safari' : /curl\//.test(ua) ? 'curl' : /node/i.test(ua) ? 'Node.js' : '';
  const os = /Android/.test(ua) ? 'Android' : /iPhone|iPad/.test(ua) ? 'iOS' : /Mac OS X/.test(ua) ? 'macOS' : /Windows/.test(ua) ? 'Windows' : /Linux/.test(ua) ? 'Linux' : '';
  return [browser, os].filter(Boolean).join(' on ') || ua.slice(0, 60);
}

function SessionsSection() {
  const [list, setList] = useState<Session[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const load = async () => {
    try {
      setList((await api.sessions()).data);
    } catch (e) {
      setError(msg(e));
    }
  };
  useEffect(() => {
    void load();
  }, []);
  const revoke = async (s: Session) => {
    try {
      await api.revokeSession(s.id);
      if (s.current) {
        await logout();
        return;
      }
      toast('Session revoked');
      void load();
    } catch (e) {
      toast(msg(e), 'error');
    }
  };
  return (
    <section class="card" aria-labelledby="sec-sessions" data-testid="settings-sessions">
      <h2 id="sec-sessions">Active sessions</h2>
      {error && <p class="form-error">{error}</p>}
      {!list && !error && <p class="muted">Loading…</p>}
      {list && (
        <ul class="sessions">
          {list.map((s) => (
            <li key={s.id} data-testid="session-row">
              <div>
                <strong>{describeAgent(s.user_agent)}</strong>
                {s.current && <span class="badge">This device</span>}
                <div class="muted small" title={formatTime(s.last_seen_at)}>
                  {s.ip ?? 'unknown address'} · active {relativeTime(s.last_seen_at)} · signed in {formatTime(s.created_at)}
                </div>
              </div>
              <button type="button" class="btn sm" onClick={() => void revoke(s)} aria-label={s.current ? 'Sign out this device' : `Revoke session on ${describeAgent(s.user_agent)}`}>
                {s.current ? 'Sign out' : 'Revoke'}
              </button>
            </li>
          ))}
        </ul>
      )}
    </section>
  );
}

export function SettingsPage() {
  useEffect(() => {
    void loadConnection();
    document.title = 'Settings · ChatOpenAII';
  }, []);
  return (
    <main class="settings-page" id="main" tabIndex={-1} data-testid="settings-page">
      <header class="chat-header">
        <button type="button" class="icon-btn drawer-toggle" aria-label="Open sidebar" aria-controls="sidebar" aria-expanded={drawerOpen.value} onClick={() => (drawerOpen.value = true)}>
          <IconMenu />
        </button>
        <h1 class="chat-title">Settings</h1>
      </header>
      <div class="settings-scroll">
        <div class="settings-column">
          <ConnectionSection />
          <ThemeSection />
          <PasswordSection />
          <SessionsSection />
        </div>
      </div>
    </main>
  );
}
