// AuthPage.tsx - sign in / create account. Shown over any route, so after
// signing in the person is back where they were (drafts come from storage).

import { useEffect, useRef, useState } from 'preact/hooks';
import { ApiError } from '../api/client';
import { login, register, sessionExpired } from '../state/session';

function explain(e: unknown, mode: 'in' | 'up'): string {
  if (!(e instanceof ApiError)) return 'Something went wrong. Try again.';
  switch (e.code) {
    case 'invalid_credentials':
      return 'Wrong email or password.';
    case 'email_taken':
      return 'An account with this email already exists. Sign in instead.';
    case 'invalid_email':
      return 'That does not look like an email address.';
    case 'weak_password':
      return e.message.replace(/^password/, 'The password');
    case 'registration_closed':
      return 'Sign-ups are closed on this server. Ask an administrator for an account.';
    case 'rate_limited':
      return 'Too many attempts. Wait a minute and try again.';
    default:
      return e.isNetwork ? e.message : mode === 'in' ? `Could not sign in: ${e.message}` : `Could not create the account: ${e.message}`;
  }
}

export function AuthPage() {
  const [mode, setMode] = useState<'in' | 'up'>(() => (location.pathname === '/signup' ? 'up' : 'in'));
  const [email, setEmail] = useState('');
  const [password, setPassword] = useState('');
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const emailRef = useRef<HTMLInputElement>(null);

  useEffect(() => {
    emailRef.current?.focus();
  }, [mode]);

  const submit = async (e: Event) => {
    e.preventDefault();
    setError(null);
    setBusy(true);
    try {
      if (mode === 'in') await login(email.trim(), password);
      else await register(email.trim(), password);
      if (location.pathname === '/login' || location.pathname === '/signup') history.replaceState(null, '', '/');
    } catch (err) {
      setError(explain(err, mode));
      setBusy(false);
    }
  };

  const switchMode = () => {
    setMode(mode === 'in' ? 'up' : 'in');
    setError(null);
  };

  return (
    <main class="auth-page" id="main">
      <div class="auth-card">
        <div class="auth-logo" aria-hidden="true">
          <svg viewBox="0 0 32 32" width="40" height="40">
            <rect width="32" height="32" rx="8" fill="currentColor" />
            <path d="M9 11h14M9 16h10M9 21h12" stroke="var(--bg)" stroke-width="2.5" stroke-linecap="round" />
          </svg>
        </div>
        <h1>{mode === 'in' ? 'Welcome back' : 'Create your account'}</h1>
        {sessionExpired.value && mode === 'in' && (
          <p class="note" role="status" data-testid="session-expired">
            Your session ended. Sign in again to continue — what you were typing is kept.
          </p>
        )}
        <form class="form" onSubmit={submit} noValidate>
          <div class="field">
            <label for="auth-email">Email</label>
            <input
              id="auth-email"
              ref={emailRef}
              type="email"
              autoComplete="email"
              inputMode="email"
              required
              value={email}
              onInput={(e) => setEmail((e.target as HTMLInputElement).value)}
              aria-invalid={error ? 'true' : undefined}
              aria-describedby={error ? 'auth-error' : undefined}
            />
          </div>
          <div class="field">
            <label for="auth-password">Password</label>
            <input
              id="auth-password"
              type="password"
              autoComplete={mode === 'in' ? 'current-password' : 'new-password'}
              required
              minLength={mode === 'up' ? 8 : undefined}
              value={password}
              onInput={(e) => setPassword((e.target as HTMLInputElement).value)}
              aria-invalid={error ? 'true' : undefined}
              aria-describedby={mode === 'up' ? 'pw-hint' : error ? 'auth-error' : undefined}
            />
            {mode === 'up' && (
              <span class="hint" id="pw-hint">
                At least 8 characters.
              </span>
            )}
          </div>
          {error && (
            <p class="form-error" id="auth-error" role="alert" data-testid="auth-error">
              {error}
            </p>
          )}
          <button type="submit" class="btn primary block" disabled={busy || !email || !password}>
            {mode === 'in' ? (busy ? 'Signing in…' : 'Sign in') : busy ? 'Creating account…' : 'Create account'}
          </button>
        </form>
        <p class="auth-switch">
          {mode === 'in' ? 'No account yet?' : 'Already have an account?'}{' '}
          <button type="button" class="btn link" onClick={switchMode}>
            {mode === 'in' ? 'Create an account' : 'Sign in'}
          </button>
        </p>
      </div>
    </main>
  );
}
