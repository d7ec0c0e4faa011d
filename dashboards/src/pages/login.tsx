import { useState } from 'preact/hooks';
import { ApiError, login, type Session } from '../api.js';
import { LanguageSwitch } from '../app.js';
import { useI18n } from '../i18n/index.js';

export function LoginPage({ onLogin, embedded = false, initialUser = '' }: { onLogin: (s: Session) => void; embedded?: boolean; initialUser?: string }) {
  const { t } = useI18n();
  const [username, setUsername] = useState(initialUser);
  const [password, setPassword] = useState('');
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      onLogin(await login(username.trim(), password));
    } catch (err) {
      const status = err instanceof ApiError ? err.status : 0;
      setError(status === 401 ? t('login.wrong') : status === 429 ? t('login.tooMany') : t('login.unreachable'));
    } finally {
      setBusy(false);
    }
  };

  const form = (
      <form onSubmit={(e) => void submit(e)} aria-labelledby={embedded ? 'signed-out-h' : 'login-title'}>
        {!embedded && <h1 id="login-title">{t('app.title')}</h1>}
        {!embedded && <p>{t('login.intro')}</p>}
        <label>
          <span>{t('login.username')}</span>
          <input name="username" autoComplete="username" required value={username} onInput={(e) => setUsername(e.currentTarget.value)} />
        </label>
        <label>
          <span>{t('login.password')}</span>
          <input name="password" type="password" autoComplete="current-password" required value={password} onInput={(e) => setPassword(e.currentTarget.value)} />
        </label>
        {error && (
          <p class="error" role="alert">
            {error}
          </p>
        )}
        <button type="submit" disabled={busy}>
          {t('login.submit')}
        </button>
        {!embedded && <LanguageSwitch />}
      </form>
  );
  return embedded ? form : <main class="login">{form}</main>;
}
