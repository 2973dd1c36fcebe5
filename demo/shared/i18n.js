/* global document, location, history */
// Tiny i18n for the demo pages: Persian (RTL) and English, chosen by ?lang=, then the last choice,
// then the browser language. Elements with data-i18n get their text; data-i18n-placeholder their
// placeholder.

export function createI18n(strings, onChange) {
  const params = new URLSearchParams(location.search);
  let lang = params.get('lang');
  if (lang !== 'fa' && lang !== 'en') lang = safeStored();
  if (lang !== 'fa' && lang !== 'en')
    lang = (navigator.language || '').toLowerCase().startsWith('fa') ? 'fa' : 'en';

  const i18n = {
    get lang() {
      return lang;
    },
    t(key, vars) {
      let s = strings[lang][key] ?? strings.en[key] ?? key;
      for (const [k, v] of Object.entries(vars || {})) {
        s = s.split(`{${k}}`).join(typeof v === 'number' ? i18n.number(v) : String(v));
      }
      return s;
    },
    has(key) {
      return key in strings.en;
    },
    number(n) {
      return new Intl.NumberFormat(lang === 'fa' ? 'fa-IR' : 'en-US', { useGrouping: false }).format(n);
    },
    date(iso) {
      const d = new Date(iso);
      if (Number.isNaN(d.getTime())) return String(iso);
      return new Intl.DateTimeFormat(lang === 'fa' ? 'fa-IR-u-ca-persian' : 'en-GB', {
        dateStyle: 'medium',
        timeStyle: 'short',
        timeZone: 'UTC',
      }).format(d);
    },
    apply() {
      const html = document.documentElement;
      html.lang = lang;
      html.dir = lang === 'fa' ? 'rtl' : 'ltr';
      for (const el of document.querySelectorAll('[data-i18n]')) el.textContent = i18n.t(el.dataset.i18n);
      for (const el of document.querySelectorAll('[data-i18n-placeholder]')) {
        el.placeholder = i18n.t(el.dataset.i18nPlaceholder);
      }
      onChange?.();
    },
    toggle() {
      lang = lang === 'fa' ? 'en' : 'fa';
      try {
        localStorage.setItem('kelid-demo-lang', lang);
      } catch {
        // storage may be off
      }
      const p = new URLSearchParams(location.search);
      p.set('lang', lang);
      history.replaceState(null, '', `${location.pathname}?${p}`);
      i18n.apply();
    },
  };
  return i18n;
}

function safeStored() {
  try {
    return localStorage.getItem('kelid-demo-lang');
  } catch {
    return null;
  }
}

/** Shorthand DOM builder: el('div', {class: 'x', testid: 'y'}, child, 'text'). */
export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'testid') e.dataset.testid = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children) if (c !== null && c !== undefined && c !== false) e.append(c);
  return e;
}

/** Error codes both demo pages explain in words (others show the agent's message). */
export const ERROR_STRINGS = {
  en: {
    'err.ERR_AGENT_UNREACHABLE': 'Kelid is not reachable on this computer.',
    'err.ERR_USER_CANCELLED': 'The request was declined in the Kelid window.',
    'err.ERR_CONSENT_TIMEOUT': 'No decision in time: the request in the Kelid window expired.',
    'err.ERR_ABORTED': 'You cancelled the request.',
    'err.ERR_PIN_INCORRECT': 'Wrong PIN.',
    'err.ERR_PIN_INCORRECT_FINAL': 'Wrong PIN. The next wrong PIN locks the token.',
    'err.ERR_PIN_LOCKED': 'The PIN is locked; it must be unblocked with the SO-PIN.',
    'err.ERR_FORBIDDEN': 'This site is not allowed to do that.',
    'err.ERR_ORIGIN_DENIED': 'Kelid refuses requests from this site for now (it was denied recently).',
    'err.ERR_RATE_LIMITED': 'Too many requests; wait a little.',
    'err.ERR_BUSY': 'Kelid is busy with another request.',
    'err.ERR_TOKEN_REMOVED': 'The token was removed.',
    'err.ERR_TOKEN_NOT_FOUND': 'The token is not connected.',
    'err.ERR_CERTIFICATE_REVOKED': 'The certificate is revoked: Kelid refuses to sign with it.',
    'err.ERR_CERTIFICATE_EXPIRED': 'The certificate has expired.',
    'err.ERR_DISCONNECTED': 'The connection to Kelid was lost; it reconnects by itself.',
    'err.other': 'Failed ({code}): {message}',
  },
  fa: {
    'err.ERR_AGENT_UNREACHABLE': 'برنامهٔ کلید روی این رایانه در دسترس نیست.',
    'err.ERR_USER_CANCELLED': 'درخواست در پنجرهٔ کلید رد شد.',
    'err.ERR_CONSENT_TIMEOUT': 'تصمیمی در مهلت گرفته نشد: مهلت درخواست در پنجرهٔ کلید تمام شد.',
    'err.ERR_ABORTED': 'شما درخواست را لغو کردید.',
    'err.ERR_PIN_INCORRECT': 'رمز اشتباه است.',
    'err.ERR_PIN_INCORRECT_FINAL': 'رمز اشتباه است. رمز اشتباه بعدی توکن را قفل می‌کند.',
    'err.ERR_PIN_LOCKED': 'رمز قفل شده است و باید با رمز مدیر (SO-PIN) رفع انسداد شود.',
    'err.ERR_FORBIDDEN': 'این سایت اجازهٔ انجام این کار را ندارد.',
    'err.ERR_ORIGIN_DENIED': 'کلید فعلاً درخواست‌های این سایت را نمی‌پذیرد (اخیراً رد شده است).',
    'err.ERR_RATE_LIMITED': 'درخواست‌ها زیاد است؛ کمی صبر کنید.',
    'err.ERR_BUSY': 'کلید مشغول درخواست دیگری است.',
    'err.ERR_TOKEN_REMOVED': 'توکن جدا شد.',
    'err.ERR_TOKEN_NOT_FOUND': 'توکن وصل نیست.',
    'err.ERR_CERTIFICATE_REVOKED': 'گواهی باطل شده است و کلید با آن امضا نمی‌کند.',
    'err.ERR_CERTIFICATE_EXPIRED': 'گواهی منقضی شده است.',
    'err.ERR_DISCONNECTED': 'اتصال به کلید قطع شد؛ خودبه‌خود دوباره وصل می‌شود.',
    'err.other': 'ناموفق ({code}): {message}',
  },
};

/** [i18n key, vars] describing a failure. */
export function describeError(e, i18n) {
  const code = e && typeof e.code === 'string' ? e.code : 'ERR_INTERNAL';
  const vars = { code, message: e && e.message ? e.message : String(e) };
  if (code === 'ERR_PIN_INCORRECT' && e.pin && e.pin.finalTry) return ['err.ERR_PIN_INCORRECT_FINAL', vars];
  if (i18n.has(`err.${code}`)) return [`err.${code}`, vars];
  return ['err.other', vars];
}
