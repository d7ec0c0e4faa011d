/**
 * The shell: login, the pages a role may open, the language switch and the live-feed status.
 * Pages get the authenticated API client and the one live connection from context.
 */
import { createContext } from 'preact';
import { useContext, useEffect, useMemo, useState } from 'preact/hooks';
import { Api, loadSession, roleAtLeast, saveSession, type Role, type Session } from './api.js';
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
    document.title = i18n.t('app.title');
  }, [locale]);

  const [session, setSession] = useState<Session | null>(() => loadSession());
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
      {session ? <Shell key={session.token} session={session} onLogout={logout} /> : <LoginPage onLogin={onLogin} />}
    </I18nContext.Provider>
  );
}

function Shell({ session, onLogout }: { session: Session; onLogout: () => void }) {
  const { t } = useI18n();
  const path = usePath();
  const [liveStatus, setLiveStatus] = useState<LiveStatus>('connecting');
  const value = useMemo(() => {
    const api = new Api(session.token, onLogout);
    const live = new LiveConnection({ token: session.token, onStatus: setLiveStatus, onUnauthorized: onLogout });
    return { session, api, live };
  }, [session.token]);
  useEffect(() => {
    value.live.start();
    return () => value.live.stop();
  }, [value]);

  const page = PAGES.find((p) => p.path === path);
  useEffect(() => {
    if (!page) navigate(HOME[session.role], true);
  }, [page]);

  const logout = async () => {
    await value.api.logout();
    onLogout();
  };

  return (
    <AppContext.Provider value={value}>
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
      <main id="main">
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
    </AppContext.Provider>
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
