/**
 * The shell: login, the pages a role may open, the language switch and the live-feed status.
 * Pages get the authenticated API client and the one live connection from context.
 */
import { createContext } from 'preact';
import { useContext, useEffect, useMemo, useRef, useState } from 'preact/hooks';
import { Api, loadSession, onSessionChange, renewAtMs, roleAtLeast, saveSession, type Role, type Session } from './api.js';
import { I18nContext, initialLocale, LOCALES, makeI18n, rememberedLocale, rememberLocale, useI18n, type Locale, type MessageKey } from './i18n/index.js';
import { LiveConnection, type LiveStatus } from './live.js';
import { navigate, usePath } from './router.js';
import { DevicesPage } from './pages/devices.js';
import { DispatchPage } from './pages/dispatch.js';
import { GuardPage } from './pages/guard.js';
import { LoginPage } from './pages/login.js';
import { StatsPage } from './pages/stats.js';

export interface AppContextValue {
  session: Session;
  api: Api;
  live: LiveConnection;
  /** The live feed's state, `unauthorized` once the gateway refused the token. */
  status: LiveStatus;
}

export const AppContext = createContext<AppContextValue | null>(null);
export function useApp(): AppContextValue {
  const v = useContext(AppContext);
  if (!v) throw new Error('useApp outside a logged-in page');
  return v;
}

interface PageDef {
  path: string;
  label: MessageKey;
  least: Role;
  render: () => preact.JSX.Element;
}

/** Pages and the least role that opens them (the gateway's API enforces the same order). */
const PAGES: PageDef[] = [
  { path: '/guard', label: 'nav.guard', least: 'guard', render: () => <GuardPage /> },
  { path: '/dispatch', label: 'nav.dispatch', least: 'dispatcher', render: () => <DispatchPage /> },
  { path: '/devices', label: 'nav.devices', least: 'engineer', render: () => <DevicesPage /> },
  { path: '/stats', label: 'nav.stats', least: 'guard', render: () => <StatsPage /> },
];

const HOME: Record<Role, string> = { guard: '/guard', dispatcher: '/dispatch', engineer: '/devices', admin: '/guard' };

const WALL_KEY = 'checkpoint.wall';
function initialWall(): boolean {
  const asked = new URLSearchParams(location.search).get('wall');
  if (asked !== null) return asked !== '0';
  try {
    return localStorage.getItem(WALL_KEY) === '1';
  } catch {
    return false;
  }
}

export interface WallMode {
  wall: boolean;
  setWall: (on: boolean) => void;
}
export const WallContext = createContext<WallMode>({ wall: false, setWall: () => undefined });
export const useWall = () => useContext(WallContext);

export function App() {
  const [locale, setLocaleState] = useState<Locale>(() => initialLocale(navigator.languages ?? [navigator.language], rememberedLocale()));
  const i18n = useMemo(
    () =>
      makeI18n(locale, (l) => {
        rememberLocale(l);
        setLocaleState(l);
      }),
    [locale],
  );
  useEffect(() => {
    document.documentElement.lang = locale;
  }, [locale]);

  const [session, setSession] = useState<Session | null>(() => loadSession());
  // Another tab logged in, renewed or logged out: follow it (one login per browser, not per tab).
  useEffect(() => onSessionChange((s) => setSession(s)), []);
  const logout = () => {
    saveSession(null);
    setSession(null);
  };
  const onLogin = (s: Session) => {
    saveSession(s);
    setSession(s);
    navigate(HOME[s.role], true);
  };

  return (
    <I18nContext.Provider value={i18n}>
      {session ? <Shell key={session.user} session={session} onSession={(s) => (saveSession(s), setSession(s))} onLogout={logout} /> : <LoginPage onLogin={onLogin} />}
    </I18nContext.Provider>
  );
}

function Shell({ session, onSession, onLogout }: { session: Session; onSession: (s: Session) => void; onLogout: () => void }) {
  const { t } = useI18n();
  const path = usePath();
  const [liveStatus, setLiveStatus] = useState<LiveStatus>('connecting');
  /** The gateway no longer accepts the token (expired, ended, password changed): say so loudly, keep the page. */
  const [signedOut, setSignedOut] = useState(false);
  const [wall, setWallState] = useState(initialWall);
  const setWall = (on: boolean) => {
    try {
      localStorage.setItem(WALL_KEY, on ? '1' : '0');
    } catch {
      // not remembered
    }
    setWallState(on);
  };
  const tokenRef = useRef(session.token);
  tokenRef.current = session.token;
  const value = useMemo(() => {
    // Only the current token being refused means signed out: a request sent just before a
    // renewal or a new sign-in may still come back 401.
    const unauthorized = (token: string) => {
      if (token === tokenRef.current) setSignedOut(true);
    };
    const api = new Api(() => tokenRef.current, unauthorized);
    const live = new LiveConnection({
      token: () => tokenRef.current,
      onStatus: setLiveStatus,
      onUnauthorized: unauthorized,
    });
    return { session, api, live };
  }, []);
  const ctx: AppContextValue = { ...value, session, status: signedOut ? 'unauthorized' : liveStatus };
  useEffect(() => {
    value.live.start();
    return () => value.live.stop();
  }, [value]);

  // A wall monitor runs for days: renew the token before it ends (and in every tab, the same one).
  useEffect(() => {
    if (signedOut) return;
    const timer = setTimeout(
      () => {
        value.api
          .renew()
          .then((s) => {
            tokenRef.current = s.token;
            onSession(s);
          })
          .catch(() => undefined); // a 401 already raised the signed-out screen; a network error retries with the next render
      },
      Math.max(1000, renewAtMs(session.expiresAt, Date.now()) - Date.now()),
    );
    return () => clearTimeout(timer);
  }, [session.token, signedOut]);

  // An open live feed does not notice that its token ended: ask the gateway every 30 s, so a
  // signed-out screen says so within half a minute (the 401 raises the signed-out overlay).
  useEffect(() => {
    const timer = setInterval(() => void value.api.get('/api/auth/me').catch(() => undefined), 30_000);
    return () => clearInterval(timer);
  }, []);

  const page = PAGES.find((p) => p.path === path);
  useEffect(() => {
    if (!page) navigate(HOME[session.role], true);
  }, [page]);
  useEffect(() => {
    document.title = page ? `${t(page.label)} · ${t('app.title')}` : t('app.title');
  }, [page, t]);

  const logout = async () => {
    await value.api.logout();
    onLogout();
  };
  const signedBackIn = (s: Session) => {
    tokenRef.current = s.token;
    onSession(s);
    setSignedOut(false);
    // The live feed stopped at the 401: start it again with the new token.
    value.live.stop();
    value.live.start();
  };
  const wallHere = wall && path === '/guard';

  return (
    <AppContext.Provider value={ctx}>
      <WallContext.Provider value={{ wall: wallHere, setWall }}>
        {!wallHere && (
          <header class="topbar">
            <span class="brand">{t('app.title')}</span>
            <nav aria-label={t('nav.label')}>
              <ul>
                {PAGES.filter((p) => roleAtLeast(session.role, p.least)).map((p) => (
                  <li key={p.path}>
                    <a
                      href={p.path}
                      aria-current={p.path === path ? 'page' : undefined}
                      onClick={(e) => {
                        e.preventDefault();
                        navigate(p.path);
                      }}
                    >
                      {t(p.label)}
                    </a>
                  </li>
                ))}
              </ul>
            </nav>
            <span class={`live-status live-${liveStatus}`} role="status" data-live={liveStatus}>
              {t(`live.${liveStatus}`)}
            </span>
            <LanguageSwitch />
            <span class="user">
              {session.user} · {t(`role.${session.role}`)}
            </span>
            <button type="button" class="secondary" onClick={() => void logout()}>
              {t('nav.logout')}
            </button>
          </header>
        )}
        {wallHere && (
          <span class="visually-hidden" role="status" data-live={liveStatus}>
            {t(`live.${liveStatus}`)}
          </span>
        )}
        <main id="main" class={wallHere ? 'wall' : undefined}>
          {page ? (
            roleAtLeast(session.role, page.least) ? (
              page.render()
            ) : (
              <p class="forbidden" role="alert">
                {t('app.forbidden', { role: t(`role.${page.least}`) })}
              </p>
            )
          ) : null}
        </main>
        {signedOut && <SignedOut user={session.user} onLogin={signedBackIn} />}
      </WallContext.Provider>
    </AppContext.Provider>
  );
}

/** Covers the page when the gateway stops accepting the token: alerts have stopped until someone signs in. */
function SignedOut({ user, onLogin }: { user: string; onLogin: (s: Session) => void }) {
  const { t } = useI18n();
  return (
    <div class="signed-out" role="alertdialog" aria-modal="true" aria-labelledby="signed-out-h" data-signed-out="yes">
      <div class="signed-out-box">
        <h1 id="signed-out-h">{t('session.signedOut')}</h1>
        <p>{t('session.signedOutHint')}</p>
        <LoginPage onLogin={onLogin} embedded initialUser={user} />
      </div>
    </div>
  );
}

export function LanguageSwitch() {
  const { t, locale, setLocale } = useI18n();
  return (
    <label class="lang">
      <span>{t('nav.language')}</span>
      <select value={locale} onChange={(e) => setLocale((e.currentTarget as HTMLSelectElement).value as Locale)}>
        {LOCALES.map((l) => (
          <option key={l} value={l} lang={l}>
            {t(`lang.${l}`)}
          </option>
        ))}
      </select>
    </label>
  );
}
