/**
 * Message catalogues (English, Simplified Chinese) and the current language. Every text a user
 * sees comes from here; `{name}` placeholders are filled by `t(key, { name })`. The default is
 * the browser's language (zh* → Simplified Chinese), a choice is remembered on this device.
 */
import { createContext } from 'preact';
import { useContext } from 'preact/hooks';
import { en, type MessageKey } from './en.js';
import { zhCN } from './zh-CN.js';

export type { MessageKey };
export type Locale = 'en' | 'zh-CN';
export const LOCALES: readonly Locale[] = ['en', 'zh-CN'];
export const CATALOGUES: Record<Locale, Record<MessageKey, string>> = { en, 'zh-CN': zhCN };

const LOCALE_KEY = 'checkpoint.locale';

/** The language to start in: a remembered choice, else the first browser language we have. */
export function initialLocale(languages: readonly string[], remembered: string | null): Locale {
  if (remembered && (LOCALES as readonly string[]).includes(remembered)) return remembered as Locale;
  for (const l of languages) {
    const lower = l.toLowerCase();
    if (lower.startsWith('zh')) return 'zh-CN';
    if (lower.startsWith('en')) return 'en';
  }
  return 'en';
}

export function rememberLocale(locale: Locale): void {
  try {
    localStorage.setItem(LOCALE_KEY, locale);
  } catch {
    // private mode: not remembered
  }
}

export function rememberedLocale(): string | null {
  try {
    return localStorage.getItem(LOCALE_KEY);
  } catch {
    return null;
  }
}

export type Params = Record<string, string | number>;

export function translate(locale: Locale, key: MessageKey, params?: Params): string {
  const text = CATALOGUES[locale][key] ?? en[key] ?? key;
  return params ? text.replace(/\{(\w+)\}/g, (m, name: string) => (name in params ? String(params[name]) : m)) : text;
}

export interface I18n {
  locale: Locale;
  t: (key: MessageKey, params?: Params) => string;
  setLocale: (locale: Locale) => void;
  /** Time of day / date-time in the current language. */
  time: (iso: string | number) => string;
  dateTime: (iso: string | number) => string;
  number: (n: number, digits?: number) => string;
}

export function makeI18n(locale: Locale, setLocale: (l: Locale) => void): I18n {
  const timeFmt = new Intl.DateTimeFormat(locale, { hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false });
  const dateTimeFmt = new Intl.DateTimeFormat(locale, { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', hour12: false });
  return {
    locale,
    setLocale,
    t: (key, params) => translate(locale, key, params),
    time: (v) => timeFmt.format(new Date(v)),
    dateTime: (v) => dateTimeFmt.format(new Date(v)),
    number: (n, digits = 0) => n.toLocaleString(locale, { minimumFractionDigits: digits, maximumFractionDigits: digits }),
  };
}

export const I18nContext = createContext<I18n>(makeI18n('en', () => undefined));
export const useI18n = () => useContext(I18nContext);
