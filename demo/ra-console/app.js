/* global document */
// Demo RA console: provisions a token through Kelid (`ra` tier): initialize, generate a key, make the
// CSR, have the demo CA issue the certificate, write it back with the chain, check its status, and
// service PINs. Every token operation is confirmed by the user in Kelid's own window.
import { KelidClient, toPem } from '/kelid.js';
import { ERROR_STRINGS, createI18n, describeError, el } from '/shared/i18n.js';

const STRINGS = {
  en: {
    ...ERROR_STRINGS.en,
    title: 'Kelid demo · Registration authority console',
    langToggle: 'فارسی',
    intro:
      'Provision a citizen’s token: initialize it, generate a key pair on it, request a certificate from the demo CA and write the certificate back. PINs are typed only in the Kelid window.',
    connecting: 'Connecting to Kelid…',
    connected: 'Kelid {version} · tier: {tier}',
    offline: 'Kelid not connected',
    waiting: 'Waiting for confirmation in the Kelid window…',
    cancel: 'Cancel request',
    'step.token': '1. Token',
    'step.init': '2. Initialize the token',
    'step.key': '3. Key pair',
    'step.csr': '4. Certificate request (CSR)',
    'step.ca': '5. Issue the certificate (demo CA)',
    'step.import': '6. Write the certificate to the token',
    'step.status': '7. Certificates and status',
    'step.pin': '8. PIN service',
    refresh: 'Refresh',
    noTokens: 'No token found',
    label: 'Label',
    maker: 'Maker',
    serial: 'Serial',
    state: 'State',
    initialized: 'initialized',
    notInitialized: 'not initialized',
    pinFlags: 'PIN',
    'pin.ok': 'OK',
    'pin.countLow': 'wrong PIN entered before',
    'pin.finalTry': 'final try',
    'pin.locked': 'locked',
    tokenLabel: 'Token label',
    init: 'Initialize token',
    initNote:
      'Erases the token. In the Kelid window, the officer sets the SO-PIN and the citizen chooses the PIN.',
    algorithm: 'Algorithm',
    keyLabel: 'Key label',
    generate: 'Generate key pair',
    noKeys: 'No keys on this token.',
    useKey: 'Use for the CSR',
    hasCert: 'has certificate',
    noCert: 'no certificate yet',
    'scope.certificate': 'certificate only',
    'scope.keypair': 'key pair only',
    'scope.all': 'key pair and certificate',
    delete: 'Delete',
    deleteScope: 'What to delete',
    cn: 'Name (CN)',
    nationalId: 'National ID (serialNumber)',
    org: 'Organization (O)',
    email: 'Email',
    createCsr: 'Create CSR on the token',
    csrFor: 'for key {keyId}',
    submit: 'Submit the CSR to the demo CA',
    subject: 'Subject',
    issuer: 'Issuer',
    serialNumber: 'Serial number',
    validUntil: 'Valid until',
    ocsp: 'OCSP',
    import: 'Write certificate and CA chain',
    noCertificates: 'No certificates on this token.',
    checkStatus: 'Check status',
    revoke: 'Revoke at the CA',
    'status.good': 'good',
    'status.revoked': 'revoked',
    'status.unknown': 'unknown',
    via: 'via {source}',
    unblock: 'Unblock user PIN',
    changePin: 'Change user PIN',
    changeSoPin: 'Change SO-PIN',
    'done.init': 'Token initialized: {label}.',
    'done.generate': 'Key pair generated on the token ({keyId}).',
    'done.csr': 'Certificate request created and signed on the token.',
    'done.issue': 'The demo CA issued certificate {serial}.',
    'done.import': 'Certificate and CA chain written to the token.',
    'done.status': 'Status: {status}.',
    'done.revoke': 'The demo CA revoked the certificate.',
    'done.delete': '{n} object(s) deleted.',
    'done.unblock': 'User PIN unblocked and set to the new value.',
    'done.changePin': 'User PIN changed.',
    'done.changeSoPin': 'SO-PIN changed.',
    'err.ca': 'The demo CA refused: {message}',
    'err.noToken': 'Pick a token first.',
    'err.noKey': 'Generate or pick a key first.',
    'err.noCsr': 'Create a CSR first.',
    'err.noCert': 'Have the CA issue a certificate first.',
  },
  fa: {
    ...ERROR_STRINGS.fa,
    title: 'نسخهٔ نمایشی کلید · میز دفتر ثبت‌نام',
    langToggle: 'English',
    intro:
      'توکن شهروند را آماده کنید: راه‌اندازی، ساخت جفت‌کلید روی توکن، درخواست گواهی از مرکز صدور نمایشی و نوشتن گواهی روی توکن. رمزها فقط در پنجرهٔ کلید وارد می‌شوند.',
    connecting: 'در حال اتصال به کلید…',
    connected: 'کلید {version} · سطح دسترسی: {tier}',
    offline: 'کلید متصل نیست',
    waiting: 'در انتظار تأیید در پنجرهٔ کلید…',
    cancel: 'لغو درخواست',
    'step.token': '۱. توکن',
    'step.init': '۲. راه‌اندازی توکن',
    'step.key': '۳. جفت‌کلید',
    'step.csr': '۴. درخواست گواهی (CSR)',
    'step.ca': '۵. صدور گواهی (مرکز صدور نمایشی)',
    'step.import': '۶. نوشتن گواهی روی توکن',
    'step.status': '۷. گواهی‌ها و وضعیت',
    'step.pin': '۸. خدمات رمز',
    refresh: 'به‌روزرسانی',
    noTokens: 'توکنی پیدا نشد',
    label: 'برچسب',
    maker: 'سازنده',
    serial: 'شمارهٔ سریال',
    state: 'وضعیت',
    initialized: 'راه‌اندازی شده',
    notInitialized: 'راه‌اندازی نشده',
    pinFlags: 'رمز',
    'pin.ok': 'سالم',
    'pin.countLow': 'پیش‌تر رمز اشتباه وارد شده',
    'pin.finalTry': 'آخرین تلاش',
    'pin.locked': 'قفل شده',
    tokenLabel: 'برچسب توکن',
    init: 'راه‌اندازی توکن',
    initNote:
      'توکن پاک می‌شود. در پنجرهٔ کلید، کارمند رمز مدیر (SO-PIN) را تعیین می‌کند و شهروند رمز خود را انتخاب می‌کند.',
    algorithm: 'الگوریتم',
    keyLabel: 'برچسب کلید',
    generate: 'ساخت جفت‌کلید',
    noKeys: 'کلیدی روی این توکن نیست.',
    useKey: 'برای درخواست گواهی',
    hasCert: 'گواهی دارد',
    noCert: 'هنوز گواهی ندارد',
    'scope.certificate': 'فقط گواهی',
    'scope.keypair': 'فقط جفت‌کلید',
    'scope.all': 'جفت‌کلید و گواهی',
    delete: 'حذف',
    deleteScope: 'چه چیزی حذف شود',
    cn: 'نام (CN)',
    nationalId: 'کد ملی (serialNumber)',
    org: 'سازمان (O)',
    email: 'رایانامه',
    createCsr: 'ساخت درخواست گواهی روی توکن',
    csrFor: 'برای کلید {keyId}',
    submit: 'ارسال درخواست به مرکز صدور نمایشی',
    subject: 'دارنده',
    issuer: 'صادرکننده',
    serialNumber: 'شمارهٔ سریال',
    validUntil: 'معتبر تا',
    ocsp: 'OCSP',
    import: 'نوشتن گواهی و زنجیرهٔ مرکز صدور',
    noCertificates: 'گواهی‌ای روی این توکن نیست.',
    checkStatus: 'بررسی وضعیت',
    revoke: 'ابطال در مرکز صدور',
    'status.good': 'معتبر',
    'status.revoked': 'باطل شده',
    'status.unknown': 'نامعلوم',
    via: 'از طریق {source}',
    unblock: 'رفع انسداد رمز کاربر',
    changePin: 'تغییر رمز کاربر',
    changeSoPin: 'تغییر رمز مدیر',
    'done.init': 'توکن راه‌اندازی شد: {label}.',
    'done.generate': 'جفت‌کلید روی توکن ساخته شد ({keyId}).',
    'done.csr': 'درخواست گواهی ساخته و روی توکن امضا شد.',
    'done.issue': 'مرکز صدور نمایشی گواهی {serial} را صادر کرد.',
    'done.import': 'گواهی و زنجیرهٔ مرکز صدور روی توکن نوشته شد.',
    'done.status': 'وضعیت: {status}.',
    'done.revoke': 'مرکز صدور نمایشی گواهی را باطل کرد.',
    'done.delete': '{n} شیء حذف شد.',
    'done.unblock': 'انسداد رمز کاربر برطرف و رمز جدید تنظیم شد.',
    'done.changePin': 'رمز کاربر تغییر کرد.',
    'done.changeSoPin': 'رمز مدیر تغییر کرد.',
    'err.ca': 'مرکز صدور نمایشی نپذیرفت: {message}',
    'err.noToken': 'ابتدا یک توکن انتخاب کنید.',
    'err.noKey': 'ابتدا یک کلید بسازید یا انتخاب کنید.',
    'err.noCsr': 'ابتدا درخواست گواهی را بسازید.',
    'err.noCert': 'ابتدا گواهی را از مرکز صدور بگیرید.',
  },
};

const i18n = createI18n(STRINGS, render);
const t = i18n.t;
const $ = (id) => document.getElementById(id);

const state = {
  client: null,
  info: null,
  connKey: 'connecting',
  tokens: [],
  tokenId: null,
  keys: [],
  keyId: null,
  csr: null,
  issued: null,
  certificates: [],
  statuses: new Map(),
  message: null,
  busy: false,
  controller: null,
};

function setMessage(kind, key, vars, hint) {
  state.message = { kind, key, vars: vars || {}, hint };
  renderMessage();
}

function renderMessage() {
  const m = $('message');
  const msg = state.message;
  m.hidden = !msg;
  if (!msg) return;
  m.dataset.kind = msg.kind;
  m.dataset.code = msg.code ?? '';
  m.textContent = t(msg.key, msg.vars);
  if (msg.hint) m.append(el('span', { class: 'hint' }, msg.hint));
}

function fail(e) {
  const [key, vars] = describeError(e, i18n);
  state.message = { kind: 'error', key, vars, code: e && e.code, hint: e?.data?.hint };
  renderMessage();
}

/** Run one operation: buttons off, "waiting" banner while the agent waits for the user. */
async function operation(fn) {
  if (state.busy) return;
  state.busy = true;
  state.controller = new AbortController();
  state.message = null;
  render();
  try {
    await fn(state.controller.signal);
  } catch (e) {
    fail(e);
  } finally {
    state.busy = false;
    state.controller = null;
    $('waiting').hidden = true;
    render();
  }
}

function callOptions(signal) {
  return { signal, onPending: () => ($('waiting').hidden = false) };
}

function selectedToken() {
  return state.tokens.find((tk) => tk.tokenId === state.tokenId) ?? null;
}

function requireToken() {
  const token = selectedToken();
  if (!token) throw Object.assign(new Error('no token'), { code: 'noToken' });
  return token;
}

function pinKey(p) {
  return p.locked ? 'pin.locked' : p.finalTry ? 'pin.finalTry' : p.countLow ? 'pin.countLow' : 'pin.ok';
}

// ---- rendering -------------------------------------------------------------------------------------

function render() {
  document.title = t('title');
  $('lang-toggle').textContent = t('langToggle');
  $('conn').textContent = state.info
    ? t('connected', { version: state.info.version, tier: state.info.tier })
    : t(state.connKey);
  renderMessage();
  renderTokens();
  renderKeys();
  renderCsr();
  renderIssued();
  renderCertificates();
  const token = selectedToken();
  const off = state.busy || !state.client;
  for (const id of ['refresh', 'init', 'token-select']) $(id).disabled = off;
  for (const id of ['generate', 'create-csr', 'unblock', 'change-pin', 'change-so-pin']) {
    $(id).disabled = off || !token || !token.initialized;
  }
  $('submit').disabled = off || !state.csr;
  $('import').disabled = off || !state.issued || !token;
}

function renderTokens() {
  const select = $('token-select');
  select.textContent = '';
  if (state.tokens.length === 0) select.append(el('option', { value: '' }, t('noTokens')));
  for (const tk of state.tokens) {
    const name = tk.initialized ? tk.label : `(${t('notInitialized')})`;
    select.append(
      el(
        'option',
        { value: tk.tokenId, selected: tk.tokenId === state.tokenId },
        `${name} — ${tk.model} ${tk.serialNumber}`,
      ),
    );
  }
  const info = $('token-info');
  info.textContent = '';
  const tk = selectedToken();
  if (!tk) return;
  const rows = [
    [t('label'), tk.label || '—'],
    [t('maker'), `${tk.manufacturer} ${tk.model}`],
    [t('serial'), tk.serialNumber || '—'],
    [t('state'), t(tk.initialized ? 'initialized' : 'notInitialized')],
    [t('pinFlags'), tk.initialized ? t(pinKey(tk.userPin)) : '—'],
  ];
  for (const [k, v] of rows) info.append(el('dt', {}, k), el('dd', { dir: 'auto' }, v));
}

function renderKeys() {
  const list = $('keys');
  list.textContent = '';
  if (selectedToken()?.initialized && state.keys.length === 0)
    list.append(el('li', { class: 'note' }, t('noKeys')));
  for (const key of state.keys) {
    const scope = el(
      'select',
      { testid: 'ra-delete-scope', 'aria-label': t('deleteScope') },
      ...['certificate', 'keypair', 'all'].map((s) =>
        el('option', { value: s, selected: s === 'all' }, t(`scope.${s}`)),
      ),
    );
    const alg =
      key.algorithm.name === 'RSA' ? `RSA ${key.algorithm.modulusLength}` : `EC ${key.algorithm.namedCurve}`;
    list.append(
      el(
        'li',
        { testid: 'ra-key', 'data-key-id': key.keyId },
        el(
          'label',
          {},
          el('input', {
            type: 'radio',
            name: 'key',
            value: key.keyId,
            checked: key.keyId === state.keyId,
            testid: 'ra-key-radio',
            onchange: () => {
              state.keyId = key.keyId;
              render();
            },
          }),
          ` ${key.label || '—'}`,
        ),
        el('span', { class: 'mono', dir: 'ltr' }, key.keyId.slice(0, 16)),
        el('span', {}, alg),
        el(
          'span',
          { class: key.hasCertificate ? 'badge ok' : 'badge' },
          t(key.hasCertificate ? 'hasCert' : 'noCert'),
        ),
        scope,
        el(
          'button',
          {
            type: 'button',
            class: 'danger',
            testid: 'ra-delete',
            disabled: state.busy,
            onclick: () => deleteObjects(key.keyId, scope.value),
          },
          t('delete'),
        ),
      ),
    );
  }
}

function renderCsr() {
  $('csr-pem').value = state.csr?.pem ?? '';
  $('csr-key').textContent = state.keyId ? t('csrFor', { keyId: state.keyId.slice(0, 16) }) : '';
}

function renderIssued() {
  const box = $('issued');
  box.textContent = '';
  if (!state.issued) return;
  const d = state.issued.details;
  for (const [k, v] of [
    [t('subject'), d.subject],
    [t('issuer'), d.issuer],
    [t('serialNumber'), d.serialNumber],
    [t('validUntil'), i18n.date(d.notAfter)],
  ]) {
    box.append(el('dt', {}, k), el('dd', { dir: 'auto' }, v));
  }
}

function renderCertificates() {
  const list = $('certificates');
  list.textContent = '';
  const user = state.certificates.filter((c) => c.category !== 'authority');
  if (selectedToken()?.initialized && user.length === 0)
    list.append(el('li', { class: 'note' }, t('noCertificates')));
  for (const cert of user) {
    const status = state.statuses.get(cert.certificateId);
    const badge = status
      ? el(
          'span',
          {
            class: `badge ${status.status === 'good' ? 'ok' : status.status === 'revoked' ? 'bad' : 'warn'}`,
            testid: 'ra-cert-status',
            'data-status': status.status,
          },
          `${t(`status.${status.status}`)} · ${t('via', { source: status.source.toUpperCase() })}`,
        )
      : null;
    list.append(
      el(
        'li',
        { testid: 'ra-certificate', 'data-certificate-id': cert.certificateId },
        el('span', { class: 'grow', dir: 'ltr' }, cert.subject),
        el('span', { class: 'note' }, `${t('validUntil')}: ${i18n.date(cert.notAfter)}`),
        badge,
        el(
          'button',
          {
            type: 'button',
            testid: 'ra-check-status',
            disabled: state.busy,
            onclick: () => checkStatus(cert),
          },
          t('checkStatus'),
        ),
        el(
          'button',
          {
            type: 'button',
            class: 'danger',
            testid: 'ra-revoke',
            disabled: state.busy,
            onclick: () => revoke(cert),
          },
          t('revoke'),
        ),
      ),
    );
  }
}

// ---- data ------------------------------------------------------------------------------------------

async function loadTokens() {
  state.tokens = await state.client.listTokens();
  if (!state.tokens.some((tk) => tk.tokenId === state.tokenId)) {
    // Prefer an initialized token; the demo's empty slot is there for "initialize".
    state.tokenId = (state.tokens.find((tk) => tk.initialized) ?? state.tokens[0])?.tokenId ?? null;
  }
  await loadTokenContents();
}

async function loadTokenContents() {
  const token = selectedToken();
  if (!token || !token.initialized) {
    state.keys = [];
    state.certificates = [];
  } else {
    [state.keys, state.certificates] = await Promise.all([
      state.client.listKeys(token.tokenId),
      state.client.listCertificates({ tokenId: token.tokenId }),
    ]);
  }
  if (!state.keys.some((k) => k.keyId === state.keyId)) {
    state.keyId = (state.keys.find((k) => !k.hasCertificate) ?? state.keys[0])?.keyId ?? null;
  }
  render();
}

function algorithmParams(value) {
  return value.startsWith('RSA-')
    ? { name: 'RSA', modulusLength: Number(value.slice(4)) }
    : { name: 'EC', namedCurve: value.slice(3) };
}

function subjectFromForm() {
  const subject = [{ type: 'CN', value: $('csr-cn').value.trim() }];
  const serial = $('csr-serial').value.trim();
  const org = $('csr-o').value.trim();
  if (serial) subject.push({ type: 'serialNumber', value: serial });
  if (org) subject.push({ type: 'O', value: org });
  subject.push({ type: 'C', value: 'IR' });
  return subject;
}

// ---- operations ------------------------------------------------------------------------------------

function initToken() {
  return operation(async (signal) => {
    const token = requireToken();
    const label = $('init-label').value.trim();
    const created = await state.client.initToken({ tokenId: token.tokenId, label }, callOptions(signal));
    state.tokenId = created.tokenId;
    state.csr = null;
    state.issued = null;
    await loadTokens();
    setMessage('ok', 'done.init', { label: created.label });
  });
}

function generateKey() {
  return operation(async (signal) => {
    const token = requireToken();
    const { key } = await state.client.generateKey(
      {
        tokenId: token.tokenId,
        algorithm: algorithmParams($('key-algorithm').value),
        label: $('key-label').value.trim() || undefined,
      },
      callOptions(signal),
    );
    state.keyId = key.keyId;
    await loadTokenContents();
    setMessage('ok', 'done.generate', { keyId: key.keyId.slice(0, 16) });
  });
}

function createCsr() {
  return operation(async (signal) => {
    const token = requireToken();
    if (!state.keyId) throw Object.assign(new Error('no key'), { code: 'noKey' });
    const email = $('csr-email').value.trim();
    const pem = await state.client.createCsr(
      {
        tokenId: token.tokenId,
        keyId: state.keyId,
        subject: subjectFromForm(),
        ...(email ? { subjectAltNames: [{ type: 'email', value: email }] } : {}),
        keyUsage: ['digitalSignature', 'nonRepudiation'],
      },
      callOptions(signal),
    );
    state.csr = { pem, keyId: state.keyId };
    state.issued = null;
    setMessage('ok', 'done.csr');
  });
}

async function caRequest(path, body) {
  const res = await fetch(path, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
  });
  const json = await res.json().catch(() => ({}));
  if (!res.ok) throw Object.assign(new Error(json.error || res.statusText), { code: 'ca' });
  return json;
}

function submitCsr() {
  return operation(async () => {
    if (!state.csr) throw Object.assign(new Error('no csr'), { code: 'noCsr' });
    const issued = await caRequest('/api/issue', { csr: state.csr.pem });
    state.issued = { ...issued, details: describePem(issued.certificate) };
    setMessage('ok', 'done.issue', { serial: state.issued.details.serialNumber });
  });
}

function importCertificate() {
  return operation(async (signal) => {
    const token = requireToken();
    if (!state.issued) throw Object.assign(new Error('no certificate'), { code: 'noCert' });
    const cert = await state.client.importCertificate(
      { tokenId: token.tokenId, certificate: state.issued.certificate, chain: state.issued.chain },
      callOptions(signal),
    );
    await loadTokenContents();
    setMessage('ok', 'done.import');
    await checkStatusNow(cert);
  });
}

async function checkStatusNow(cert) {
  const status = await state.client.certificateStatus({ certificateId: cert.certificateId });
  state.statuses.set(cert.certificateId, status);
  setMessage(status.status === 'good' ? 'ok' : 'error', 'done.status', {
    status: t(`status.${status.status}`),
  });
}

function checkStatus(cert) {
  return operation(() => checkStatusNow(cert));
}

function revoke(cert) {
  return operation(async () => {
    await caRequest('/api/revoke', { certificate: toPem(fromB64(cert.certificate), 'CERTIFICATE') });
    setMessage('ok', 'done.revoke');
    await checkStatusNow(cert);
  });
}

function deleteObjects(keyId, scope) {
  return operation(async (signal) => {
    const token = requireToken();
    const n = await state.client.deleteObjects({ tokenId: token.tokenId, keyId, scope }, callOptions(signal));
    for (const c of state.certificates) if (c.keyId === keyId) state.statuses.delete(c.certificateId);
    await loadTokenContents();
    setMessage('ok', 'done.delete', { n });
  });
}

function pinService(kind) {
  return operation(async (signal) => {
    const token = requireToken();
    if (kind === 'unblock') await state.client.unblockPin({ tokenId: token.tokenId }, callOptions(signal));
    else
      await state.client.changePin(
        { tokenId: token.tokenId, role: kind === 'changeSoPin' ? 'so' : 'user' },
        callOptions(signal),
      );
    await loadTokens();
    setMessage('ok', `done.${kind}`);
  });
}

// ---- small helpers ---------------------------------------------------------------------------------

function fromB64(b64) {
  const bin = globalThis.atob(b64);
  return Uint8Array.from(bin, (c) => c.charCodeAt(0));
}

// Just enough X.509 reading to show what the CA issued (the agent re-reads it on import).
function describePem(pem) {
  const der = fromB64(pem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''));
  const read = (buf, pos) => {
    let len = buf[pos + 1];
    let hdr = 2;
    if (len & 0x80) {
      const n = len & 0x7f;
      len = 0;
      for (let i = 0; i < n; i++) len = len * 256 + buf[pos + 2 + i];
      hdr += n;
    }
    return { tag: buf[pos], start: pos + hdr, end: pos + hdr + len };
  };
  const children = (buf, node) => {
    const out = [];
    for (let p = node.start; p < node.end;) {
      const c = read(buf, p);
      out.push(c);
      p = c.end;
    }
    return out;
  };
  const cert = read(der, 0);
  const tbs = children(der, children(der, cert)[0]);
  const i = tbs[0].tag === 0xa0 ? 1 : 0;
  const hex = Array.from(der.slice(tbs[i].start, tbs[i].end), (b) => b.toString(16).padStart(2, '0')).join(
    '',
  );
  const name = (node) =>
    children(der, node)
      .map((rdn) => {
        const atv = children(der, children(der, rdn)[0]);
        const oid = oidText(der.slice(atv[0].start, atv[0].end));
        const value = new TextDecoder().decode(der.slice(atv[1].start, atv[1].end));
        return `${OID_NAMES[oid] ?? oid}=${value}`;
      })
      .reverse()
      .join(', ');
  const validity = children(der, tbs[i + 3]);
  const time = (node) => {
    const s = new TextDecoder().decode(der.slice(node.start, node.end));
    const full = node.tag === 0x17 ? (Number(s.slice(0, 2)) < 50 ? '20' : '19') + s : s;
    return `${full.slice(0, 4)}-${full.slice(4, 6)}-${full.slice(6, 8)}T${full.slice(8, 10)}:${full.slice(10, 12)}:${full.slice(12, 14)}Z`;
  };
  return {
    serialNumber: hex.replace(/^00(?=[89a-f])/, ''),
    issuer: name(tbs[i + 2]),
    subject: name(tbs[i + 4]),
    notAfter: time(validity[1]),
  };
}

const OID_NAMES = {
  '2.5.4.3': 'CN',
  '2.5.4.5': 'serialNumber',
  '2.5.4.6': 'C',
  '2.5.4.10': 'O',
  '2.5.4.11': 'OU',
  '1.2.840.113549.1.9.1': 'emailAddress',
};

function oidText(bytes) {
  const parts = [Math.floor(bytes[0] / 40), bytes[0] % 40];
  let v = 0;
  for (const b of bytes.slice(1)) {
    v = v * 128 + (b & 0x7f);
    if (!(b & 0x80)) {
      parts.push(v);
      v = 0;
    }
  }
  return parts.join('.');
}

// ---- start -----------------------------------------------------------------------------------------

async function connect() {
  const config = await (await fetch('/config.json')).json();
  try {
    state.client = await KelidClient.connect({ url: config.agentUrl });
  } catch (e) {
    state.connKey = 'offline';
    fail(e);
    render();
    return;
  }
  state.client.on('tokensChanged', () => loadTokens().catch(fail));
  state.client.on('disconnected', () => {
    state.info = null;
    state.connKey = 'offline';
    render();
  });
  state.client.on('reconnected', async () => {
    state.info = await state.client.info();
    await loadTokens();
  });
  state.info = await state.client.info();
  await loadTokens();
}

$('lang-toggle').addEventListener('click', () => i18n.toggle());
$('refresh').addEventListener('click', () => operation(() => loadTokens()));
$('token-select').addEventListener('change', (e) => {
  state.tokenId = e.target.value;
  state.csr = null;
  operation(() => loadTokenContents());
});
$('init').addEventListener('click', initToken);
$('generate').addEventListener('click', generateKey);
$('create-csr').addEventListener('click', createCsr);
$('submit').addEventListener('click', submitCsr);
$('import').addEventListener('click', importCertificate);
$('unblock').addEventListener('click', () => pinService('unblock'));
$('change-pin').addEventListener('click', () => pinService('changePin'));
$('change-so-pin').addEventListener('click', () => pinService('changeSoPin'));
$('cancel').addEventListener('click', () => state.controller?.abort());

i18n.apply();
connect().catch(fail);
