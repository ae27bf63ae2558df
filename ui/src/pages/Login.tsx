import { useState } from 'preact/hooks';
import { describe } from '../api/errors';
import { session } from '../api/session';
import { ErrorBanner } from '../ui';

export function Login() {
  const [username, setUsername] = useState('');
  const [password, setPassword] = useState('');
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  const submit = async (event: Event) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await session.login(username, password);
    } catch (err) {
      setError(describe(err));
      setBusy(false);
    }
  };

  return (
    <main class="login">
      <form onSubmit={submit} aria-label="Log in">
        <h1>Vapor</h1>
        <p class="muted">Log in with your Linux account on the host.</p>
        <label>
          User name
          <input
            name="username"
            autocomplete="username"
            value={username}
            onInput={(e) => setUsername(e.currentTarget.value)}
            required
            autofocus
          />
        </label>
        <label>
          Password
          <input
            name="password"
            type="password"
            autocomplete="current-password"
            value={password}
            onInput={(e) => setPassword(e.currentTarget.value)}
            required
          />
        </label>
        <ErrorBanner error={error} />
        <button class="primary" type="submit" disabled={busy}>
          {busy ? 'Logging in…' : 'Log in'}
        </button>
      </form>
    </main>
  );
}
