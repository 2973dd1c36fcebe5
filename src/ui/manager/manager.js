// Kelid token manager (console tier): what a citizen needs without any website — tokens, their
// certificates and revocation status, change PIN, unblock PIN. Opened by `kelid ui` with a one-time
// secret in the fragment; it talks to the agent through the browser SDK like any page, but from the
// agent's own origin, which the agent authenticates with that secret.
import { KelidClient, KelidError } from '/sdk/kelid.js';

const STRINGS = {
  en: {
    title: 'Kelid — token manager',
    langToggle: 'فارسی',
    connecting: 'Connecting to Kelid…',
    connected: 'Connected to Kelid {version}.',
    updateAvailable: 'Connected to Kelid {version}. Kelid {latest} is available: {download}',
    disconnected: 'The connection to Kelid was lost. Open the token manager again with “kelid ui”.',
    noSecret: 'Open the token manager with the command “kelid ui”.',
    unreachable: 'Kelid is not reachable: {message}',
    noTokens: 'No token found. Plug in your token; this list updates by itself.',
    footer: 'Kelid runs on this computer. PINs are typed only into Kelid’s own confirmation window.',
    serial: 'Serial',
    maker: 'Maker',
    notInitialized: 'Not initialized',
    emptyToken: 'Empty token',
    emptyTokenNote:
      'This token has not been set up yet. A registration office initializes it and writes your certificate.',
    userPin: 'PIN',
    soPin: 'SO-PIN',
    'pin.ok': 'OK',
    'pin.countLow': 'wrong PIN entered before',
    'pin.finalTry': 'final try left',
    'pin.locked': 'locked',
    'pin.toBeChanged': 'must be changed',
    changePin: 'Change PIN',
    changeSoPin: 'Change SO-PIN',
    unblockPin: 'Unblock PIN',
    certificates: 'Certificates',
    caCertificates: 'CA certificates',
    noCertificates: 'No certificates on this token.',
    issuer: 'Issuer',
    validity: 'Valid',
    until: 'to',
    usage: 'Usage',
    noKey: 'no private key on the token',
    'status.checking': 'checking status…',
    'status.good': 'valid (not revoked)',
    'status.revoked': 'REVOKED',
    'status.unknown': 'unknown to the CA',
    'status.error': 'status unavailable',
    expired: 'expired',
    checkedBy: 'by {source}',
    waiting: 'Complete the request in the Kelid window that has opened.',
    'done.changePin': 'The PIN was changed.',
    'done.changeSoPin': 'The SO-PIN was changed.',
    'done.unblockPin': 'The PIN was unblocked and set to the new value.',
    'err.ERR_USER_CANCELLED': 'Cancelled. Nothing was changed.',
    'err.ERR_CONSENT_TIMEOUT': 'No answer in time. Nothing was changed.',
    'err.ERR_PIN_INCORRECT': 'Wrong PIN. Nothing was changed.',
    'err.ERR_PIN_INCORRECT_FINAL': 'Wrong PIN. One more wrong PIN locks the token.',
    'err.ERR_PIN_LOCKED': 'The PIN is locked. Use “Unblock PIN” with the SO-PIN.',
    'err.ERR_PIN_LOCKED_DEVICE':
      'The device is locked after too many wrong PINs (on any of its tokens). The SO-PIN cannot unblock it: wait until the device ends the lockout.',
    'err.ERR_PIN_POLICY': 'The new PIN does not meet the rules.',
    'err.ERR_TOKEN_REMOVED': 'The token was removed.',
    'err.ERR_BUSY': 'Kelid is busy with another request. Try again shortly.',
    'err.other': 'Failed: {message}',
  },
  fa: {
    title: 'کلید — مدیریت توکن',
    langToggle: 'English',
    connecting: 'در حال اتصال به کلید…',
    connected: 'به کلید {version} متصل است.',
    updateAvailable: 'به کلید {version} متصل است. نسخهٔ {latest} کلید آماده است: {download}',
    disconnected: 'اتصال به کلید قطع شد. مدیر توکن را دوباره با فرمان «kelid ui» باز کنید.',
    noSecret: 'مدیر توکن را با فرمان «kelid ui» باز کنید.',
    unreachable: 'دسترسی به کلید ممکن نیست: {message}',
    noTokens: 'توکنی پیدا نشد. توکن خود را وصل کنید؛ این فهرست خودبه‌خود به‌روز می‌شود.',
    footer: 'کلید روی همین رایانه اجرا می‌شود. رمزها فقط در پنجرهٔ تأیید خود کلید وارد می‌شوند.',
    serial: 'شمارهٔ سریال',
    maker: 'سازنده',
    notInitialized: 'راه‌اندازی نشده',
    emptyToken: 'توکن خالی',
    emptyTokenNote:
      'این توکن هنوز راه‌اندازی نشده است. دفتر ثبت‌نام آن را راه‌اندازی می‌کند و گواهی شما را روی آن می‌نویسد.',
    userPin: 'رمز کاربر',
    soPin: 'رمز مدیر',
    'pin.ok': 'سالم',
    'pin.countLow': 'پیش‌تر رمز اشتباه وارد شده',
    'pin.finalTry': 'فقط یک تلاش باقی است',
    'pin.locked': 'قفل شده',
    'pin.toBeChanged': 'باید تغییر کند',
    changePin: 'تغییر رمز',
    changeSoPin: 'تغییر رمز مدیر',
    unblockPin: 'رفع انسداد رمز',
    certificates: 'گواهی‌ها',
    caCertificates: 'گواهی‌های مرکز صدور',
    noCertificates: 'گواهی‌ای روی این توکن نیست.',
    issuer: 'صادرکننده',
    validity: 'اعتبار',
    until: 'تا',
    usage: 'کاربرد',
    noKey: 'کلید خصوصی روی توکن نیست',
    'status.checking': 'در حال بررسی وضعیت…',
    'status.good': 'معتبر (باطل نشده)',
    'status.revoked': 'باطل شده',
    'status.unknown': 'برای مرکز صدور ناشناخته',
    'status.error': 'وضعیت در دسترس نیست',
    expired: 'منقضی شده',
    checkedBy: 'از طریق {source}',
    waiting: 'درخواست را در پنجرهٔ کلید که باز شده است کامل کنید.',
    'done.changePin': 'رمز تغییر کرد.',
    'done.changeSoPin': 'رمز مدیر تغییر کرد.',
    'done.unblockPin': 'انسداد رمز برطرف شد و رمز جدید تنظیم شد.',
    'err.ERR_USER_CANCELLED': 'لغو شد. چیزی تغییر نکرد.',
    'err.ERR_CONSENT_TIMEOUT': 'پاسخی در مهلت داده نشد. چیزی تغییر نکرد.',
    'err.ERR_PIN_INCORRECT': 'رمز اشتباه است. چیزی تغییر نکرد.',
    'err.ERR_PIN_INCORRECT_FINAL': 'رمز اشتباه است. یک رمز اشتباه دیگر توکن را قفل می‌کند.',
    'err.ERR_PIN_LOCKED': 'رمز قفل شده است. با رمز مدیر از «رفع انسداد رمز» استفاده کنید.',
    'err.ERR_PIN_LOCKED_DEVICE':
      'دستگاه پس از چند رمز اشتباه (روی هر یک از توکن‌هایش) قفل شده است. رمز مدیر آن را باز نمی‌کند: صبر کنید تا دستگاه خودش قفل را بردارد.',
    'err.ERR_PIN_POLICY': 'رمز جدید با قواعد سازگار نیست.',
    'err.ERR_TOKEN_REMOVED': 'توکن جدا شد.',
    'err.ERR_BUSY': 'کلید مشغول درخواست دیگری است. کمی بعد دوباره تلاش کنید.',
    'err.other': 'ناموفق: {message}',
  },
};

const params = new URLSearchParams(location.search);
let lang = params.get('lang') === 'en' ? 'en' : params.get('lang') === 'fa' ? 'fa' : guessLanguage();
const secret = location.hash.length > 1 ? decodeURIComponent(location.hash.slice(1)) : '';
history.replaceState(null, '', location.pathname + location.search);

let client = null;
let version = '';
let statusKey = 'connecting';
let statusVars = {};
let messageKey = null;
let messageVars = {};
let messageKind = 'info';
let tokens = [];
/** tokenId → Certificate[] */
const certificates = new Map();
/** certificateId → Status | 'checking' | 'error' */
const statuses = new Map();
let busy = false;

const $ = (id) => document.getElementById(id);

function guessLanguage() {
  return (navigator.language || '').toLowerCase().startsWith('fa') ? 'fa' : 'en';
}

function t(key, vars) {
  let s = STRINGS[lang][key] ?? STRINGS.en[key] ?? key;
  for (const [k, v] of Object.entries(vars || {})) s = s.split(`{${k}}`).join(String(v));
  return s;
}

function formatDate(iso) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  return new Intl.DateTimeFormat(lang === 'fa' ? 'fa-IR-u-ca-persian' : 'en-GB', {
    dateStyle: 'medium',
    timeZone: 'UTC',
  }).format(d);
}

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'testid') e.setAttribute('data-testid', v);
    else if (k === 'onclick') e.addEventListener('click', v);
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c);
  return e;
}

function setStatus(key, vars) {
  statusKey = key;
  statusVars = vars || {};
  $('status').textContent = t(statusKey, statusVars);
}

function setMessage(key, vars, kind = 'info') {
  messageKey = key;
  messageVars = vars || {};
  messageKind = kind;
  renderMessage();
}

function renderMessage() {
  const m = $('message');
  m.hidden = !messageKey;
  m.className = `message message-${messageKind}`;
  m.textContent = messageKey ? t(messageKey, messageVars) : '';
}

function pinState(state) {
  if (state.locked) return ['pin.locked', 'bad'];
  if (state.finalTry) return ['pin.finalTry', 'bad'];
  if (state.countLow) return ['pin.countLow', 'warn'];
  if (state.toBeChanged) return ['pin.toBeChanged', 'warn'];
  return ['pin.ok', 'ok'];
}

function renderStatus(cert) {
  const s = statuses.get(cert.certificateId);
  const expired = Date.parse(cert.notAfter) < Date.now();
  if (expired)
    return el(
      'span',
      { class: 'badge bad', testid: 'manager-cert-status', 'data-status': 'expired' },
      t('expired'),
    );
  if (s === undefined || s === 'checking') {
    return el(
      'span',
      { class: 'badge muted', testid: 'manager-cert-status', 'data-status': 'checking' },
      t('status.checking'),
    );
  }
  if (s === 'error') {
    return el(
      'span',
      { class: 'badge warn', testid: 'manager-cert-status', 'data-status': 'error' },
      t('status.error'),
    );
  }
  const cls = s.status === 'good' ? 'ok' : s.status === 'revoked' ? 'bad' : 'warn';
  return el(
    'span',
    { class: `badge ${cls}`, testid: 'manager-cert-status', 'data-status': s.status },
    t(`status.${s.status}`),
    el('span', { class: 'by' }, ` ${t('checkedBy', { source: s.source.toUpperCase() })}`),
  );
}

function renderCertificate(cert) {
  const usage = [...cert.keyUsage, ...cert.extendedKeyUsage].join(', ');
  return el(
    'li',
    { class: 'cert', testid: 'manager-certificate', 'data-certificate-id': cert.certificateId },
    el(
      'div',
      { class: 'cert-head' },
      el('span', { class: 'cert-subject', dir: 'ltr' }, cert.subject),
      renderStatus(cert),
    ),
    el(
      'div',
      { class: 'cert-meta' },
      el('span', {}, `${t('issuer')}: `, el('bdi', { dir: 'ltr' }, cert.issuer)),
      el(
        'span',
        {},
        `${t('validity')}: ${formatDate(cert.notBefore)} ${t('until')} ${formatDate(cert.notAfter)}`,
      ),
      usage ? el('span', {}, `${t('usage')}: `, el('bdi', {}, usage)) : null,
      cert.hasPrivateKey ? null : el('span', { class: 'muted' }, t('noKey')),
    ),
  );
}

function renderTokens() {
  const box = $('tokens');
  box.textContent = '';
  $('empty').hidden = !client || tokens.length > 0;
  for (const token of tokens) {
    const [userKey, userCls] = pinState(token.userPin);
    const [soKey, soCls] = pinState(token.soPin);
    const certs = certificates.get(token.tokenId) || [];
    const userCerts = certs.filter((c) => c.category !== 'authority');
    const caCerts = certs.filter((c) => c.category === 'authority');
    if (!token.initialized) {
      box.append(
        el(
          'article',
          { class: 'token empty-token', testid: 'manager-token', 'data-token-id': token.tokenId },
          el(
            'header',
            { class: 'token-head' },
            el('h2', {}, t('emptyToken')),
            el('span', { class: 'badge warn' }, t('notInitialized')),
          ),
          el(
            'div',
            { class: 'token-meta' },
            el('span', {}, `${t('maker')}: `, el('bdi', {}, `${token.manufacturer} ${token.model}`)),
          ),
          el('p', { class: 'muted' }, t('emptyTokenNote')),
        ),
      );
      continue;
    }
    const card = el(
      'article',
      { class: 'token', testid: 'manager-token', 'data-token-id': token.tokenId },
      el(
        'header',
        { class: 'token-head' },
        el('h2', { dir: 'auto' }, token.label || '—'),
        token.initialized ? null : el('span', { class: 'badge warn' }, t('notInitialized')),
      ),
      el(
        'div',
        { class: 'token-meta' },
        el('span', {}, `${t('maker')}: `, el('bdi', {}, `${token.manufacturer} ${token.model}`)),
        el('span', {}, `${t('serial')}: `, el('bdi', { class: 'mono' }, token.serialNumber)),
      ),
      el(
        'div',
        { class: 'pins' },
        el(
          'span',
          {},
          `${t('userPin')}: `,
          el('span', { class: `badge ${userCls}`, testid: 'manager-user-pin' }, t(userKey)),
        ),
        el('span', {}, `${t('soPin')}: `, el('span', { class: `badge ${soCls}` }, t(soKey))),
      ),
      el(
        'div',
        { class: 'actions' },
        el(
          'button',
          {
            type: 'button',
            testid: 'manager-change-pin',
            disabled: busy || !token.initialized,
            onclick: () => run('changePin', token),
          },
          t('changePin'),
        ),
        el(
          'button',
          {
            type: 'button',
            testid: 'manager-unblock-pin',
            // A device-wide lockout (TPM) is not undone by the SO-PIN: do not point at this button.
            class: token.userPin.locked && token.lockout !== 'device-wide' ? 'primary' : undefined,
            disabled: busy || !token.initialized,
            onclick: () => run('unblockPin', token),
          },
          t('unblockPin'),
        ),
        el(
          'button',
          {
            type: 'button',
            testid: 'manager-change-so-pin',
            disabled: busy || !token.initialized,
            onclick: () => run('changeSoPin', token),
          },
          t('changeSoPin'),
        ),
      ),
      el('h3', {}, t('certificates')),
      userCerts.length === 0
        ? el('p', { class: 'muted' }, t('noCertificates'))
        : el('ul', { class: 'certs' }, ...userCerts.map(renderCertificate)),
      caCerts.length === 0
        ? null
        : el(
            'details',
            { class: 'ca' },
            el('summary', {}, `${t('caCertificates')} (${caCerts.length})`),
            el(
              'ul',
              { class: 'certs' },
              ...caCerts.map((c) => el('li', { class: 'cert' }, el('span', { dir: 'ltr' }, c.subject))),
            ),
          ),
    );
    box.append(card);
  }
}

function renderAll() {
  document.documentElement.lang = lang;
  document.documentElement.dir = lang === 'fa' ? 'rtl' : 'ltr';
  document.title = t('title');
  for (const e of document.querySelectorAll('[data-i18n]')) e.textContent = t(e.getAttribute('data-i18n'));
  $('lang-toggle').textContent = t('langToggle');
  $('status').textContent = t(statusKey, statusVars);
  renderMessage();
  renderTokens();
}

async function refresh() {
  if (!client) return;
  tokens = await client.listTokens();
  const lists = await Promise.all(
    tokens.map((tk) =>
      tk.initialized ? client.listCertificates({ tokenId: tk.tokenId }).catch(() => []) : [],
    ),
  );
  certificates.clear();
  tokens.forEach((tk, i) => certificates.set(tk.tokenId, lists[i]));
  renderTokens();
  for (const list of lists) {
    for (const cert of list) {
      if (cert.category === 'authority' || statuses.has(cert.certificateId)) continue;
      statuses.set(cert.certificateId, 'checking');
      client
        .certificateStatus({ certificateId: cert.certificateId })
        .then((s) => statuses.set(cert.certificateId, s))
        .catch(() => statuses.set(cert.certificateId, 'error'))
        .finally(renderTokens);
    }
  }
}

async function run(action, token) {
  if (busy) return;
  busy = true;
  setMessage('waiting', {}, 'info');
  renderTokens();
  try {
    if (action === 'changePin') await client.changePin({ tokenId: token.tokenId, role: 'user' });
    else if (action === 'changeSoPin') await client.changePin({ tokenId: token.tokenId, role: 'so' });
    else await client.unblockPin({ tokenId: token.tokenId });
    setMessage(`done.${action}`, {}, 'ok');
  } catch (e) {
    setMessage(...errorMessage(e));
  } finally {
    busy = false;
    await refresh().catch(() => undefined);
  }
}

function errorMessage(e) {
  if (e instanceof KelidError) {
    if (e.code === 'ERR_PIN_INCORRECT' && e.pin && e.pin.finalTry)
      return ['err.ERR_PIN_INCORRECT_FINAL', {}, 'bad'];
    if (e.code === 'ERR_PIN_LOCKED' && e.data && e.data.lockout === 'device-wide')
      return ['err.ERR_PIN_LOCKED_DEVICE', {}, 'bad'];
    if (STRINGS.en[`err.${e.code}`]) return [`err.${e.code}`, {}, e.userCancelled ? 'info' : 'bad'];
  }
  return ['err.other', { message: e && e.message ? e.message : String(e) }, 'bad'];
}

async function start() {
  renderAll();
  if (!secret) {
    setStatus('noSecret');
    return;
  }
  try {
    client = await KelidClient.connect({
      url: `wss://${location.host}/v1?console=${encodeURIComponent(secret)}`,
      // A console secret opens one connection only; a new one needs `kelid ui` again.
      reconnect: false,
      // The agent's own page: its console tier exists on the WebSocket only, never via the extension.
      transport: 'wss',
    });
  } catch (e) {
    setStatus('unreachable', { message: e.message });
    return;
  }
  client.on('disconnected', () => {
    setStatus('disconnected');
    client = null;
    renderTokens();
  });
  client.on('tokensChanged', () => refresh().catch(() => undefined));
  const info = await client.info();
  version = info.version;
  if (info.update)
    setStatus('updateAvailable', { version, latest: info.update.latest, download: info.update.download });
  else setStatus('connected', { version });
  await refresh();
}

$('lang-toggle').addEventListener('click', () => {
  lang = lang === 'fa' ? 'en' : 'fa';
  const p = new URLSearchParams(location.search);
  p.set('lang', lang);
  history.replaceState(null, '', `${location.pathname}?${p.toString()}`);
  renderAll();
});

start().catch((e) => setStatus('unreachable', { message: e && e.message ? e.message : String(e) }));
