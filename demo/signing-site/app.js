/* global document */
// Demo signing site (`site` tier): asks the user for access, lists signing certificates, signs a
// text or a file (CAdES) and 100 documents under one consent, and verifies every result in the page.
import { KelidClient, fromBase64 } from '/kelid.js';
import { ERROR_STRINGS, createI18n, describeError, el } from '/shared/i18n.js';
import { pemToDer, verifyCms } from './cms-verify.js';

const STRINGS = {
  en: {
    ...ERROR_STRINGS.en,
    title: 'Kelid demo · Signing site',
    langToggle: 'فارسی',
    intro:
      'A website that asks you to sign: it sees your certificates only after you allow it, and every signature is confirmed with your PIN in the Kelid window.',
    connecting: 'Connecting to Kelid…',
    connected: 'Kelid {version}',
    offline: 'Kelid not connected',
    waiting: 'Waiting for your confirmation in the Kelid window…',
    cancel: 'Cancel request',
    connect: 'Connect to Kelid',
    'step.access': '1. Access',
    'step.certificate': '2. Certificate',
    'step.text': '3. Sign a text',
    'step.file': '4. Sign a file',
    'step.batch': '5. Batch signing',
    'step.result': 'Result',
    'tier.unknown': 'This site may not use your tokens yet. Ask for access: Kelid shows you who asks.',
    'tier.site': 'Access granted: this site may list your certificates and ask for signatures.',
    'tier.ra': 'This origin is a registration authority.',
    'tier.none': 'Not connected.',
    requestAccess: 'Allow this site to use Kelid',
    accessReason: 'Sign contracts with the Kelid demo notary office',
    filterNote: 'Signing certificates only (non-repudiation, private key on the token, valid now).',
    noCerts: 'No signing certificate found. Provision one in the RA console first.',
    refresh: 'Refresh',
    validUntil: 'valid until {date}',
    defaultText:
      'قرارداد اجاره — Lease agreement\nموجر و مستأجر بر مفاد این قرارداد توافق دارند.\nThe landlord and the tenant agree to the terms of this contract.',
    signText: 'Sign the text',
    signFile: 'Sign the file',
    signBatch: 'Sign 100 documents',
    batchNote: '100 invoices, one confirmation and one PIN in the Kelid window.',
    noFile: 'Choose a file first.',
    noCert: 'Pick a certificate first.',
    hashing: 'Hashing the file…',
    'verify.ok': 'Signature verified in this page.',
    'verify.bad': 'Signature NOT valid: {problems}',
    'verify.batch': '{ok} of {n} signatures verified in this page.',
    signer: 'Signer',
    issuer: 'Issuer',
    serial: 'Certificate serial',
    signingTime: 'Signing time',
    digest: 'Digest',
    signatureAlgorithm: 'Signature algorithm',
    chain: 'Certificate chain',
    trusted: 'ends at a trusted root',
    untrusted: 'not trusted',
    cades: 'CAdES signing-certificate',
    bound: 'binds this certificate',
    kind: 'Form',
    attached: 'attached (content inside)',
    detached: 'detached (content separate)',
    size: 'Size',
    bytes: '{n} bytes',
    download: 'Download the signature (.p7s)',
    'done.access': 'Access granted.',
  },
  fa: {
    ...ERROR_STRINGS.fa,
    title: 'نسخهٔ نمایشی کلید · سایت امضا',
    langToggle: 'English',
    intro:
      'وب‌سایتی که از شما امضا می‌خواهد: فقط پس از اجازهٔ شما گواهی‌هایتان را می‌بیند و هر امضا با وارد کردن رمز در پنجرهٔ کلید تأیید می‌شود.',
    connecting: 'در حال اتصال به کلید…',
    connected: 'کلید {version}',
    offline: 'کلید متصل نیست',
    waiting: 'در انتظار تأیید شما در پنجرهٔ کلید…',
    cancel: 'لغو درخواست',
    connect: 'اتصال به کلید',
    'step.access': '۱. اجازهٔ دسترسی',
    'step.certificate': '۲. گواهی',
    'step.text': '۳. امضای متن',
    'step.file': '۴. امضای پرونده',
    'step.batch': '۵. امضای گروهی',
    'step.result': 'نتیجه',
    'tier.unknown':
      'این سایت هنوز اجازهٔ استفاده از توکن‌های شما را ندارد. درخواست دسترسی دهید؛ کلید نشان می‌دهد چه کسی درخواست کرده است.',
    'tier.site': 'دسترسی داده شد: این سایت می‌تواند گواهی‌های شما را ببیند و درخواست امضا بدهد.',
    'tier.ra': 'این مبدأ یک دفتر ثبت‌نام است.',
    'tier.none': 'متصل نیست.',
    requestAccess: 'اجازه به این سایت برای استفاده از کلید',
    accessReason: 'امضای قراردادها در دفترخانهٔ نمایشی کلید',
    filterNote: 'فقط گواهی‌های امضا (انکارناپذیری، کلید خصوصی روی توکن، معتبر در این لحظه).',
    noCerts: 'گواهی امضایی پیدا نشد. ابتدا در میز دفتر ثبت‌نام یک گواهی صادر کنید.',
    refresh: 'به‌روزرسانی',
    validUntil: 'معتبر تا {date}',
    defaultText:
      'قرارداد اجاره — Lease agreement\nموجر و مستأجر بر مفاد این قرارداد توافق دارند.\nThe landlord and the tenant agree to the terms of this contract.',
    signText: 'امضای متن',
    signFile: 'امضای پرونده',
    signBatch: 'امضای ۱۰۰ سند',
    batchNote: '۱۰۰ صورت‌حساب، با یک بار تأیید و یک بار وارد کردن رمز در پنجرهٔ کلید.',
    noFile: 'ابتدا یک پرونده انتخاب کنید.',
    noCert: 'ابتدا یک گواهی انتخاب کنید.',
    hashing: 'در حال محاسبهٔ چکیدهٔ پرونده…',
    'verify.ok': 'امضا در همین صفحه تأیید شد.',
    'verify.bad': 'امضا معتبر نیست: {problems}',
    'verify.batch': '{ok} امضا از {n} امضا در همین صفحه تأیید شد.',
    signer: 'امضاکننده',
    issuer: 'صادرکننده',
    serial: 'شمارهٔ سریال گواهی',
    signingTime: 'زمان امضا',
    digest: 'چکیده',
    signatureAlgorithm: 'الگوریتم امضا',
    chain: 'زنجیرهٔ گواهی',
    trusted: 'به ریشهٔ مورد اعتماد می‌رسد',
    untrusted: 'مورد اعتماد نیست',
    cades: 'ویژگی گواهی امضاکننده (CAdES)',
    bound: 'به همین گواهی مقید است',
    kind: 'نوع',
    attached: 'پیوسته (متن درون امضا)',
    detached: 'جدا (متن جدا از امضا)',
    size: 'اندازه',
    bytes: '{n} بایت',
    download: 'دریافت امضا (‎.p7s)',
    'done.access': 'دسترسی داده شد.',
  },
};

const SIGNATURE_NAMES = {
  '1.2.840.113549.1.1.1': 'RSA PKCS#1 v1.5',
  '1.2.840.113549.1.1.10': 'RSA-PSS',
  '1.2.840.113549.1.1.11': 'sha256WithRSAEncryption',
  '1.2.840.113549.1.1.12': 'sha384WithRSAEncryption',
  '1.2.840.113549.1.1.13': 'sha512WithRSAEncryption',
  '1.2.840.10045.2.1': 'ECDSA',
  '1.2.840.10045.4.3.2': 'ecdsa-with-SHA256',
  '1.2.840.10045.4.3.3': 'ecdsa-with-SHA384',
  '1.2.840.10045.4.3.4': 'ecdsa-with-SHA512',
};

const i18n = createI18n(STRINGS, render);
const t = i18n.t;
const $ = (id) => document.getElementById(id);

const state = {
  config: null,
  client: null,
  info: null,
  connKey: 'connecting',
  certificates: [],
  certificateId: null,
  busy: false,
  controller: null,
  message: null,
  result: null,
  trustedRoots: [],
  downloadUrl: null,
};

// ---- messages and rendering ---------------------------------------------------------------------------

function setMessage(kind, key, vars, extra = {}) {
  state.message = { kind, key, vars: vars || {}, ...extra };
  renderMessage();
}

function fail(e) {
  const [key, vars] = describeError(e, i18n);
  setMessage('error', key, vars, {
    code: e && e.code,
    hint: e?.data?.hint,
    elapsedMs: e?.elapsedMs,
  });
}

function renderMessage() {
  const m = $('message');
  const msg = state.message;
  m.hidden = !msg;
  if (!msg) return;
  m.dataset.kind = msg.kind;
  m.dataset.code = msg.code ?? '';
  if (msg.elapsedMs !== undefined) m.dataset.elapsedMs = String(Math.round(msg.elapsedMs));
  m.textContent = t(msg.key, msg.vars);
  if (msg.hint) m.append(el('span', { class: 'hint', testid: 'site-hint' }, msg.hint));
}

function render() {
  document.title = t('title');
  $('lang-toggle').textContent = t('langToggle');
  // The agent tells its exact version to approved sites only (not to the `unknown` tier).
  $('conn').textContent = state.info
    ? t('connected', { version: state.info.version ?? '' }).trim()
    : t(state.connKey);
  const tier = state.info?.tier ?? 'none';
  $('access-text').textContent = t(`tier.${tier}`);
  $('access-text').dataset.tier = tier;
  $('request-access').hidden = tier !== 'unknown';
  $('request-access').disabled = state.busy;
  $('connect').hidden = Boolean(state.client);
  renderMessage();
  renderCertificates();
  renderResult();
  const canSign = !state.busy && tier !== 'unknown' && tier !== 'none' && Boolean(state.certificateId);
  for (const id of ['sign-text', 'sign-file', 'sign-batch']) $(id).disabled = !canSign;
  $('refresh').disabled = state.busy || tier === 'unknown' || tier === 'none';
}

function renderCertificates() {
  const list = $('certs');
  list.textContent = '';
  const tier = state.info?.tier;
  if (tier && tier !== 'unknown' && state.certificates.length === 0)
    list.append(el('li', { class: 'note' }, t('noCerts')));
  for (const c of state.certificates) {
    list.append(
      el(
        'li',
        { testid: 'site-cert', 'data-certificate-id': c.certificateId },
        el(
          'label',
          { class: 'grow' },
          el('input', {
            type: 'radio',
            name: 'cert',
            value: c.certificateId,
            checked: c.certificateId === state.certificateId,
            onchange: () => {
              state.certificateId = c.certificateId;
              render();
            },
          }),
          ' ',
          el('bdi', {}, c.subject),
        ),
        el('span', { class: 'note' }, t('validUntil', { date: i18n.date(c.notAfter) })),
      ),
    );
  }
}

function renderResult() {
  const r = state.result;
  $('result-card').hidden = !r;
  if (!r) return;
  const verify = $('verify');
  const details = $('details');
  details.textContent = '';
  if (r.batch) {
    verify.dataset.kind = r.batch.ok === r.batch.n ? 'ok' : 'error';
    verify.dataset.valid = String(r.batch.ok === r.batch.n);
    verify.textContent = t('verify.batch', { ok: r.batch.ok, n: r.batch.n });
  } else {
    verify.dataset.kind = r.verification.valid ? 'ok' : 'error';
    verify.dataset.valid = String(r.verification.valid);
    verify.textContent = r.verification.valid
      ? t('verify.ok')
      : t('verify.bad', { problems: r.verification.problems.join('; ') });
  }
  const v = r.verification;
  const rows = [
    [t('signer'), v.signer.subject],
    [t('issuer'), v.signer.issuer],
    [t('serial'), v.signer.serialNumber],
    [t('signingTime'), v.signingTime ? i18n.date(v.signingTime) : '—'],
    [t('digest'), `${v.digestAlgorithm} ${v.messageDigest ?? ''}`],
    [t('signatureAlgorithm'), SIGNATURE_NAMES[v.signatureAlgorithm] ?? v.signatureAlgorithm],
    [
      t('chain'),
      `${v.chain.map((c) => c.subject).join(' ← ')} — ${t(v.chainTrusted ? 'trusted' : 'untrusted')}`,
    ],
    [t('cades'), v.signingCertificateBound ? t('bound') : '—'],
    [t('kind'), t(v.attached ? 'attached' : 'detached')],
  ];
  if (r.size !== undefined) rows.push([t('size'), t('bytes', { n: r.size })]);
  for (const [k, value] of rows) details.append(el('dt', {}, k), el('dd', { dir: 'auto' }, value));
  $('cms').value = r.cms;
  const a = $('download');
  a.hidden = false;
  a.download = r.fileName;
  a.href = r.downloadUrl;
}

// ---- operations ------------------------------------------------------------------------------------

async function operation(fn) {
  if (state.busy) return;
  state.busy = true;
  state.controller = new AbortController();
  state.message = null;
  state.result = null;
  render();
  try {
    await fn(state.controller.signal);
  } catch (e) {
    fail(e);
  } finally {
    state.busy = false;
    state.controller = null;
    $('waiting').hidden = true;
    $('progress').hidden = true;
    render();
  }
}

function callOptions(signal) {
  return { signal, onPending: () => ($('waiting').hidden = false) };
}

function requireCertificate() {
  if (!state.certificateId) throw Object.assign(new Error('no certificate'), { code: 'noCert' });
  return state.certificateId;
}

async function showResult(cmsB64, verifyOptions, fileName, extra = {}) {
  const der = fromBase64(cmsB64);
  const verification = await verifyCms(der, { ...verifyOptions, trustedRoots: state.trustedRoots });
  if (state.downloadUrl) URL.revokeObjectURL(state.downloadUrl);
  state.downloadUrl = URL.createObjectURL(new Blob([der], { type: 'application/pkcs7-signature' }));
  state.result = { cms: cmsB64, verification, fileName, downloadUrl: state.downloadUrl, ...extra };
  render();
}

function requestAccess() {
  return operation(async (signal) => {
    await state.client.requestAccess(t('accessReason'), callOptions(signal));
    state.info = await state.client.info();
    setMessage('ok', 'done.access');
    await loadCertificates();
  });
}

async function loadCertificates() {
  state.certificates = await state.client.listCertificates({
    filter: { keyUsage: ['nonRepudiation'], hasPrivateKey: true, validAt: new Date().toISOString() },
  });
  if (!state.certificates.some((c) => c.certificateId === state.certificateId)) {
    state.certificateId = state.certificates[0]?.certificateId ?? null;
  }
  render();
}

function signText() {
  return operation(async (signal) => {
    const certificateId = requireCertificate();
    const content = $('text').value;
    const summary = content.length <= 480 ? content : `${content.slice(0, 477)}...`;
    const { cms } = await state.client.signCms(
      { certificateId, content, summary: summary || '(empty text)', includeChain: true, detached: false },
      callOptions(signal),
    );
    await showResult(cms, {}, 'text.p7s');
  });
}

function signFile() {
  return operation(async (signal) => {
    const certificateId = requireCertificate();
    const file = $('file').files[0];
    if (!file) throw Object.assign(new Error('no file'), { code: 'noFile' });
    const progress = $('progress');
    progress.hidden = false;
    progress.max = Math.max(1, file.size);
    progress.value = 0;
    const result = await state.client.signFile(
      file,
      {
        certificateId,
        includeChain: true,
        onProgress: (done) => {
          progress.value = done;
        },
      },
      callOptions(signal),
    );
    await showResult(result.cms, { digest: fromBase64(result.digest) }, `${file.name}.p7s`, {
      size: result.size,
    });
  });
}

function signBatch() {
  return operation(async (signal) => {
    const certificateId = requireCertificate();
    const documents = Array.from({ length: 100 }, (_, i) => {
      const n = i + 1;
      return { text: `Invoice ${n}/100 — amount ${(n * 1_250_000).toLocaleString('en-US')} IRR`, n };
    });
    const items = [];
    for (const d of documents) {
      const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(d.text)));
      items.push({ digest, summary: d.text });
    }
    const { results } = await state.client.signBatch(
      { certificateId, format: 'cms', digestAlgorithm: 'SHA-256', items },
      callOptions(signal),
    );
    let ok = 0;
    let first = null;
    for (let i = 0; i < results.length; i++) {
      const v = await verifyCms(fromBase64(results[i].cms), {
        digest: items[i].digest,
        trustedRoots: state.trustedRoots,
      });
      if (v.valid) ok++;
      first ??= v;
    }
    if (state.downloadUrl) URL.revokeObjectURL(state.downloadUrl);
    state.downloadUrl = URL.createObjectURL(new Blob([fromBase64(results[0].cms)]));
    state.result = {
      cms: results[0].cms,
      verification: first,
      fileName: 'invoice-1.p7s',
      downloadUrl: state.downloadUrl,
      batch: { ok, n: documents.length },
    };
  });
}

// ---- connection ------------------------------------------------------------------------------------

async function connect() {
  state.connKey = 'connecting';
  render();
  const started = performance.now();
  try {
    state.client = await KelidClient.connect({ url: state.config.agentUrl });
  } catch (e) {
    e.elapsedMs = performance.now() - started;
    state.connKey = 'offline';
    fail(e);
    render();
    return;
  }
  state.client.on('disconnected', () => {
    state.info = null;
    state.connKey = 'offline';
    render();
  });
  state.client.on('reconnected', async () => {
    state.info = await state.client.info();
    if (state.info.tier !== 'unknown') await loadCertificates();
    render();
  });
  state.client.on('tokensChanged', () => {
    if (state.info && state.info.tier !== 'unknown') loadCertificates().catch(fail);
  });
  state.info = await state.client.info();
  if (state.info.tier !== 'unknown') await loadCertificates();
  render();
}

// Chrome's guidance for local network access: while the browser would still have to ask the user,
// connect only after a click, not on page load. Pages served from this machine (like this demo) are
// not asked about: loopback to loopback needs no permission.
async function loopbackPermissionPending() {
  const host = globalThis.location.hostname;
  if (host === 'localhost' || host === '[::1]' || /^127\./.test(host)) return false;
  try {
    const status = await globalThis.navigator.permissions.query({ name: 'loopback-network' });
    return status.state === 'prompt';
  } catch {
    return false;
  }
}

async function start() {
  $('text').value = t('defaultText');
  i18n.apply();
  state.config = await (await fetch('/config.json')).json();
  const trust = await (await fetch('/api/trust')).json();
  state.trustedRoots = trust.roots.map(pemToDer);
  if (await loopbackPermissionPending()) {
    state.connKey = 'offline';
    render();
    return;
  }
  await connect();
}

$('lang-toggle').addEventListener('click', () => i18n.toggle());
$('connect').addEventListener('click', () => connect().catch(fail));
$('request-access').addEventListener('click', requestAccess);
$('refresh').addEventListener('click', () => operation(() => loadCertificates()));
$('sign-text').addEventListener('click', signText);
$('sign-file').addEventListener('click', signFile);
$('sign-batch').addEventListener('click', signBatch);
$('cancel').addEventListener('click', () => state.controller?.abort());

start().catch(fail);
