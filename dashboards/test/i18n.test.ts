/** The message catalogues: same keys, same placeholders, nothing empty, no diagnosis wording. */
import { describe, expect, it } from 'vitest';
import { en } from '../src/i18n/en.js';
import { zhCN } from '../src/i18n/zh-CN.js';
import { initialLocale, translate } from '../src/i18n/index.js';

const placeholders = (s: string) => [...s.matchAll(/\{(\w+)\}/g)].map((m) => m[1]).sort();

describe('message catalogues', () => {
  it('English and Simplified Chinese have exactly the same keys', () => {
    expect(Object.keys(zhCN).sort()).toEqual(Object.keys(en).sort());
  });

  it('each message has the same {placeholders} in both languages and no empty text', () => {
    for (const [key, text] of Object.entries(en)) {
      const zh = zhCN[key as keyof typeof en];
      expect(text.trim(), key).not.toBe('');
      expect(zh.trim(), key).not.toBe('');
      expect(placeholders(zh), key).toEqual(placeholders(text));
    }
  });

  it('never words a screening as a diagnosis', () => {
    for (const text of Object.values(en)) expect(text).not.toMatch(/\b(fever|febrile|sick|ill|infected|infection|infectious|diagnos\w*)\b/i);
    for (const text of Object.values(zhCN)) expect(text).not.toMatch(/发烧|发热|病/);
  });

  it('the Chinese catalogue is actually Chinese (most messages contain CJK characters)', () => {
    const cjk = Object.values(zhCN).filter((t) => /[\u4e00-\u9fff]/.test(t)).length;
    expect(cjk / Object.keys(zhCN).length).toBeGreaterThan(0.9);
  });

  it('defaults to the browser language and fills placeholders', () => {
    expect(initialLocale(['zh-CN', 'en'], null)).toBe('zh-CN');
    expect(initialLocale(['zh-TW'], null)).toBe('zh-CN');
    expect(initialLocale(['de-DE', 'en-GB'], null)).toBe('en');
    expect(initialLocale(['fr'], null)).toBe('en');
    expect(initialLocale(['zh-CN'], 'en')).toBe('en');
    expect(initialLocale(['en'], 'klingon')).toBe('en');
    expect(translate('en', 'guard.passedToday', { n: 12 })).toBe('12 passed today');
    expect(translate('zh-CN', 'guard.passedToday', { n: 12 })).toBe('今日已通过 12 人');
  });
});
