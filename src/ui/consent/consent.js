// Kelid consent page: the trusted window where the user sees who asks for what and types PINs.
// Served by the agent with CSP `default-src 'self'; frame-ancestors 'none'`: no inline code, no
// third-party resources. Text from the requesting page is only ever set with textContent.
(() => {
  'use strict';

  if (window.top !== window.self) {
    document.documentElement.textContent = '';
    return;
  }

  const STRINGS = {
    en: {
      brand: 'Kelid',
      langToggle: 'فارسی',
      title: 'Kelid — confirm',
      loading: 'Loading the request…',
      whoAsks: 'Request from',
      'tier.ra': 'Registration authority (set up by your administrator)',
      'tier.site': 'Website you allowed',
      'tier.unknown': 'Website not allowed yet',
      'tier.console': 'Kelid token manager on this computer',
      token: 'Token',
      certificate: 'Certificate',
      'cert.issuer': 'Issuer',
      'cert.serial': 'Serial',
      'cert.until': 'Valid until',
      csr: 'Certificate request',
      'csr.subject': 'Name in the certificate',
      'csr.sans': 'Other names',
      summaryFrom: 'Text from {origin}',
      reasonFrom: 'Reason given by {origin}',
      summaryNote: 'Kelid cannot check this text: it is shown exactly as the website sent it.',
      summariesMore: '… and {n} more',
      digestsLabel: 'What will be signed: {n} digest(s)',
      digestNote: 'Fingerprints (hashes) of the data to be signed.',
      'op.agent.requestAccess': 'Allow this website to use your tokens?',
      'opDetail.agent.requestAccess':
        'It will be able to see your certificates and ask for signatures. Every signature still needs your PIN in this window.',
      'op.sign.raw': 'Sign data',
      'op.sign.cms': 'Sign a document',
      'op.sign.batch': 'Sign {n} documents with one PIN',
      'op.auth.challenge': 'Log in with your certificate',
      'op.tokens.init': 'Initialize the token',
      'op.pin.change.user': 'Change the PIN',
      'op.pin.change.so': 'Change the SO-PIN (administrator PIN)',
      'op.pin.unblock': 'Unblock the PIN',
      'op.keys.generate': 'Generate a new key pair on the token',
      'op.csr.create': 'Create a certificate request',
      'op.certificates.import': 'Write a certificate to the token',
      'op.objects.delete': 'Delete keys or certificates from the token',
      'op.other': 'Use the token ({method})',
      'warn.pin-count-low': 'A wrong PIN was entered before: only a few tries remain before the token locks.',
      'warn.pin-final-try': 'This is the final PIN try before the token locks.',
      'warn.pin-locked': 'The PIN is locked. It must be unblocked with the SO-PIN first.',
      'warn.status-unknown':
        'Revocation status unknown: the certificate authority does not know this certificate.',
      'warn.status-unavailable':
        'Revocation status could not be checked: the certificate authority did not answer.',
      'warn.erase': 'Everything on this token will be erased.',
      pinpad:
        "This token's reader has its own keypad: after you approve, type your PIN on the reader, not on this computer.",
      'need.userPin': 'PIN',
      'need.soPin': 'SO-PIN (administrator PIN)',
      'need.oldUserPin': 'Current PIN',
      'need.newUserPin': 'New PIN',
      'need.oldSoPin': 'Current SO-PIN',
      'need.newSoPin': 'New SO-PIN',
      confirmOf: 'Repeat: {label}',
      'rule.digits': '{min}–{max} digits (Persian or English digits)',
      'rule.alnum': '{min}–{max} letters A–Z or digits',
      'rule.any': '{min}–{max} characters',
      'rule.rejectAllSame': 'not one repeated character',
      'rule.rejectSequential': 'not a run like 1234',
      'err.required': 'Enter this.',
      'err.tooShort': 'At least {n} characters.',
      'err.tooLong': 'At most {n} characters.',
      'err.digits': 'Digits only.',
      'err.alnum': 'Only letters A–Z and digits.',
      'err.any': 'Control characters are not allowed.',
      'err.allSame': 'Do not repeat one character.',
      'err.sequential': 'Do not use a run like 1234.',
      'err.mismatch': 'The two entries differ.',
      'err.policy': 'This PIN does not meet the rules ({rule}).',
      'err.network': 'Kelid did not answer. Is it still running?',
      'err.server': 'Kelid refused: {message}',
      approve: 'Approve',
      'approve.sign': 'Sign',
      'approve.access': 'Allow',
      deny: 'Deny',
      'deny.access': 'Do not allow',
      working: 'Working…',
      expiresIn: 'This request expires in {s} s.',
      'result.approved': 'Approved. Kelid is carrying out the request; the website shows the outcome.',
      'result.denied': 'Denied. Nothing was done.',
      'result.gone':
        'This request is no longer pending: it was completed, cancelled by the website, or it expired.',
      'result.noSecret': 'Open this page only from Kelid.',
      'result.elsewhere':
        'This request was already opened in another window. If that was not you, deny it with “kelid consent deny” or let it expire.',
      closing: 'This window will close.',
      footer: 'This window belongs to Kelid on your computer, not to the website. Type your PIN only here.',
    },
    fa: {
      brand: 'کلید',
      langToggle: 'English',
      title: 'کلید — تأیید',
      loading: 'در حال بارگیری درخواست…',
      whoAsks: 'درخواست از طرف',
      'tier.ra': 'دفتر ثبت‌نام (تعیین‌شده توسط مدیر سیستم)',
      'tier.site': 'وب‌سایتی که به آن اجازه داده‌اید',
      'tier.unknown': 'وب‌سایتی که هنوز اجازه ندارد',
      'tier.console': 'مدیر توکن کلید روی همین رایانه',
      token: 'توکن',
      certificate: 'گواهی',
      'cert.issuer': 'صادرکننده',
      'cert.serial': 'شمارهٔ سریال',
      'cert.until': 'معتبر تا',
      csr: 'درخواست گواهی',
      'csr.subject': 'نام در گواهی',
      'csr.sans': 'نام‌های دیگر',
      summaryFrom: 'متن ارسال‌شده از {origin}',
      reasonFrom: 'دلیلی که {origin} آورده است',
      summaryNote:
        'کلید نمی‌تواند درستی این متن را بررسی کند؛ دقیقاً همان‌طور که وب‌سایت فرستاده نمایش داده می‌شود.',
      summariesMore: '… و {n} مورد دیگر',
      digestsLabel: 'آنچه امضا می‌شود: {n} چکیده',
      digestNote: 'اثر انگشت (چکیدهٔ) داده‌ای که امضا می‌شود.',
      'op.agent.requestAccess': 'به این وب‌سایت اجازهٔ استفاده از توکن‌هایتان داده شود؟',
      'opDetail.agent.requestAccess':
        'این وب‌سایت می‌تواند گواهی‌های شما را ببیند و درخواست امضا بدهد. هر امضا همچنان به وارد کردن رمز در همین پنجره نیاز دارد.',
      'op.sign.raw': 'امضای داده',
      'op.sign.cms': 'امضای سند',
      'op.sign.batch': 'امضای {n} سند با یک بار وارد کردن رمز',
      'op.auth.challenge': 'ورود با گواهی شما',
      'op.tokens.init': 'راه‌اندازی توکن',
      'op.pin.change.user': 'تغییر رمز کاربر',
      'op.pin.change.so': 'تغییر رمز مدیر (SO-PIN)',
      'op.pin.unblock': 'رفع انسداد رمز کاربر',
      'op.keys.generate': 'ساخت جفت‌کلید جدید روی توکن',
      'op.csr.create': 'ساخت درخواست گواهی',
      'op.certificates.import': 'نوشتن گواهی روی توکن',
      'op.objects.delete': 'حذف کلید یا گواهی از توکن',
      'op.other': 'استفاده از توکن ({method})',
      'warn.pin-count-low': 'پیش‌تر رمز اشتباه وارد شده است؛ تا قفل شدن توکن فقط چند تلاش باقی مانده است.',
      'warn.pin-final-try': 'این آخرین تلاش برای وارد کردن رمز است؛ با رمز اشتباه، توکن قفل می‌شود.',
      'warn.pin-locked': 'رمز قفل شده است و ابتدا باید با رمز مدیر (SO-PIN) رفع انسداد شود.',
      'warn.status-unknown': 'وضعیت ابطال نامعلوم است: مرکز صدور این گواهی را نمی‌شناسد.',
      'warn.status-unavailable': 'وضعیت ابطال گواهی بررسی نشد: مرکز صدور پاسخ نداد.',
      'warn.erase': 'همهٔ اطلاعات روی این توکن پاک خواهد شد.',
      pinpad:
        'کارت‌خوان این توکن صفحه‌کلید خودش را دارد: پس از تأیید، رمز را روی کارت‌خوان وارد کنید، نه روی این رایانه.',
      'need.userPin': 'رمز کاربر (PIN)',
      'need.soPin': 'رمز مدیر (SO-PIN)',
      'need.oldUserPin': 'رمز فعلی کاربر',
      'need.newUserPin': 'رمز جدید کاربر',
      'need.oldSoPin': 'رمز فعلی مدیر (SO-PIN)',
      'need.newSoPin': 'رمز جدید مدیر (SO-PIN)',
      confirmOf: 'تکرار {label}',
      'rule.digits': '{min} تا {max} رقم (ارقام فارسی یا انگلیسی)',
      'rule.alnum': '{min} تا {max} حرف لاتین (A تا Z) یا رقم',
      'rule.any': '{min} تا {max} نویسه',
      'rule.rejectAllSame': 'نه فقط یک نویسهٔ تکراری',
      'rule.rejectSequential': 'نه رشتهٔ متوالی مانند ۱۲۳۴',
      'err.required': 'این مورد را وارد کنید.',
      'err.tooShort': 'دست‌کم {n} نویسه.',
      'err.tooLong': 'حداکثر {n} نویسه.',
      'err.digits': 'فقط رقم مجاز است.',
      'err.alnum': 'فقط حروف لاتین و رقم مجاز است.',
      'err.any': 'نویسه‌های کنترلی مجاز نیستند.',
      'err.allSame': 'از یک نویسهٔ تکراری استفاده نکنید.',
      'err.sequential': 'از رشتهٔ متوالی مانند ۱۲۳۴ استفاده نکنید.',
      'err.mismatch': 'دو مقدار وارد شده یکسان نیستند.',
      'err.policy': 'این رمز با قواعد سازگار نیست ({rule}).',
      'err.network': 'کلید پاسخ نداد. آیا هنوز در حال اجراست؟',
      'err.server': 'کلید نپذیرفت: {message}',
      approve: 'تأیید',
      'approve.sign': 'امضا',
      'approve.access': 'اجازه بده',
      deny: 'رد',
      'deny.access': 'اجازه نده',
      working: 'در حال انجام…',
      expiresIn: 'این درخواست تا {s} ثانیهٔ دیگر منقضی می‌شود.',
      'result.approved': 'تأیید شد. کلید درخواست را انجام می‌دهد و نتیجه در وب‌سایت نمایش داده می‌شود.',
      'result.denied': 'رد شد. هیچ کاری انجام نشد.',
      'result.gone':
        'این درخواست دیگر در انتظار نیست: انجام شده، وب‌سایت آن را لغو کرده یا مهلتش تمام شده است.',
      'result.noSecret': 'این صفحه را فقط از طریق برنامهٔ کلید باز کنید.',
      'result.elsewhere':
        'این درخواست پیش‌تر در پنجرهٔ دیگری باز شده است. اگر کار شما نبوده، آن را با «kelid consent deny» رد کنید یا بگذارید منقضی شود.',
      closing: 'این پنجره بسته می‌شود.',
      footer: 'این پنجره متعلق به برنامهٔ کلید روی رایانهٔ شماست، نه وب‌سایت. رمز خود را فقط این‌جا وارد کنید.',
    },
  };

  const NEW_PIN_ROLE = { newUserPin: 'user', newSoPin: 'so' };
  const MAX_SUMMARIES_SHOWN = 200;
  const MAX_DIGESTS_SHOWN = 200;
  const POLL_MS = 2000;
  const CLOSE_AFTER_MS = 3000;
  // Keyjacking (issue 13, section 5): Approve and Deny work only once this page has been visible and
  // focused for this long without a break, as browsers do for their own permission prompts, so a key
  // press or click aimed at the page that raised the request cannot land on them.
  const ARM_DELAY_MS = 1000;
  // Where the page keeps its own secret across a reload of this tab (per tab and per origin).
  const SECRET_KEY = 'kelid.consent.secret';

  const params = new URLSearchParams(location.search);
  let lang = params.get('lang') === 'fa' ? 'fa' : params.get('lang') === 'en' ? 'en' : guessLanguage();
  // The launch secret travels in the fragment (never sent to a server, never in Referer), but it also
  // sat in the browser's command line, readable in /proc: the page trades it at once for a secret of
  // its own (POST /consent/api/session), which never appears in a URL, and takes it out of the
  // address bar and history.
  const launchSecret = location.hash.length > 1 ? decodeURIComponent(location.hash.slice(1)) : '';
  history.replaceState(null, '', location.pathname + location.search);
  let secret = '';
  let armed = false;
  let armTimer = null;

  let request = null;
  let state = 'loading'; // loading | pending | busy | done
  let resultKey = null;
  let pollTimer = null;
  let tickTimer = null;
  let formErrorKey = null;
  let formErrorVars = {};
  /** need → { input, confirm?, errorEl, labelEl, hintEl, confirmLabelEl?, errorKey, errorVars } */
  const fields = new Map();

  const $ = (id) => document.getElementById(id);
  const byTestId = (id) => document.querySelector(`[data-testid="${id}"]`);

  function guessLanguage() {
    const l = (navigator.language || '').toLowerCase();
    return l.startsWith('fa') ? 'fa' : 'en';
  }

  function number(n) {
    return new Intl.NumberFormat(lang === 'fa' ? 'fa-IR' : 'en-US', { useGrouping: false }).format(n);
  }

  function t(key, vars) {
    let s = STRINGS[lang][key] ?? STRINGS.en[key] ?? key;
    if (vars) {
      for (const [k, v] of Object.entries(vars)) {
        s = s.split(`{${k}}`).join(typeof v === 'number' ? number(v) : String(v));
      }
    }
    return s;
  }

  function formatDate(iso) {
    const d = new Date(iso);
    if (Number.isNaN(d.getTime())) return iso;
    const locale = lang === 'fa' ? 'fa-IR-u-ca-persian' : 'en-GB';
    return new Intl.DateTimeFormat(locale, { dateStyle: 'medium', timeZone: 'UTC' }).format(d);
  }

  // Persian (U+06F0–9) and Arabic-Indic (U+0660–9) digits become ASCII, as the agent does too.
  function normalizePin(pin) {
    return pin.replace(/[\u06f0-\u06f9\u0660-\u0669]/g, (d) => {
      const c = d.charCodeAt(0);
      return String(c - (c >= 0x06f0 ? 0x06f0 : 0x0660));
    });
  }

  function utf8Length(s) {
    return new TextEncoder().encode(s).length;
  }

  function ruleFor(need) {
    const role = NEW_PIN_ROLE[need];
    if (!role || !request || !request.pinRules) return null;
    return request.pinRules[role] || null;
  }

  function ruleHint(rule) {
    const charset = rule.charset === 'digits' || rule.charset === 'alnum' ? rule.charset : 'any';
    const parts = [t(`rule.${charset}`, { min: rule.minLength, max: rule.maxLength })];
    if (rule.rejectAllSame) parts.push(t('rule.rejectAllSame'));
    if (rule.rejectSequential) parts.push(t('rule.rejectSequential'));
    return parts.join(lang === 'fa' ? '، ' : ', ');
  }

  /** The i18n key of what is wrong with a new PIN, or null. Mirrors the agent's checkPin. */
  function checkNewPin(pin, rule) {
    const length = utf8Length(pin);
    if (length < rule.minLength) return ['err.tooShort', { n: rule.minLength }];
    if (length > rule.maxLength) return ['err.tooLong', { n: rule.maxLength }];
    if (rule.charset === 'digits' && !/^[0-9]*$/.test(pin)) return ['err.digits', {}];
    if (rule.charset === 'alnum' && !/^[0-9A-Za-z]*$/.test(pin)) return ['err.alnum', {}];
    if (rule.charset !== 'digits' && rule.charset !== 'alnum' && /[\p{Cc}\p{Cs}]/u.test(pin))
      return ['err.any', {}];
    const lower = pin.toLowerCase();
    const codes = Array.from(lower, (c) => c.codePointAt(0));
    if (rule.rejectAllSame && codes.length > 1 && codes.every((c) => c === codes[0]))
      return ['err.allSame', {}];
    if (rule.rejectSequential && codes.length > 1 && /^(?:[0-9]+|[a-z]+)$/.test(lower)) {
      const step = codes[1] - codes[0];
      if ((step === 1 || step === -1) && codes.every((c, i) => i === 0 || c - codes[i - 1] === step)) {
        return ['err.sequential', {}];
      }
    }
    return null;
  }

  function operationKey(req) {
    if (req.method === 'pin.change') {
      return req.needs.includes('newSoPin') ? 'op.pin.change.so' : 'op.pin.change.user';
    }
    return STRINGS.en[`op.${req.method}`] ? `op.${req.method}` : 'op.other';
  }

  function approveKey(req) {
    if (req.method === 'agent.requestAccess') return 'approve.access';
    if (req.method.startsWith('sign.') || req.method === 'auth.challenge') return 'approve.sign';
    return 'approve';
  }

  // ---- building the page -------------------------------------------------------------------------

  function buildFields() {
    const container = $('fields');
    container.textContent = '';
    fields.clear();
    for (const need of request.needs) {
      const rule = ruleFor(need);
      const wrap = document.createElement('div');
      wrap.className = 'field';
      const id = `pin-${need}`;
      const labelEl = document.createElement('label');
      labelEl.htmlFor = id;
      const input = makeInput(id, rule ? 'new-password' : 'current-password', rule);
      const hintEl = document.createElement('p');
      hintEl.className = 'hint';
      hintEl.id = `${id}-hint`;
      // A screen reader reads, with the field's label: its error, the page's warnings (final PIN try,
      // erase) and the PIN rules. Empty ones add nothing.
      input.setAttribute('aria-describedby', `${id}-error warnings ${hintEl.id}`);
      const errorEl = document.createElement('p');
      errorEl.className = 'field-error';
      errorEl.id = `${id}-error`;
      errorEl.setAttribute('data-testid', `${id}-error`);
      errorEl.setAttribute('role', 'alert');
      errorEl.hidden = true;
      wrap.append(labelEl, input, hintEl);
      const field = { input, labelEl, hintEl, errorEl, errorKey: null, errorVars: {} };
      if (rule) {
        const confirmLabelEl = document.createElement('label');
        confirmLabelEl.htmlFor = `${id}-confirm`;
        const confirm = makeInput(`${id}-confirm`, 'new-password', rule);
        confirm.setAttribute('aria-describedby', errorEl.id);
        wrap.append(confirmLabelEl, confirm);
        field.confirm = confirm;
        field.confirmLabelEl = confirmLabelEl;
        confirm.addEventListener('input', () => revalidate(need));
      }
      wrap.append(errorEl);
      input.addEventListener('input', () => revalidate(need));
      container.append(wrap);
      fields.set(need, field);
    }
  }

  function makeInput(id, autocomplete, rule) {
    const input = document.createElement('input');
    input.type = 'password';
    input.id = id;
    input.name = id;
    input.setAttribute('data-testid', id);
    input.autocomplete = autocomplete;
    input.spellcheck = false;
    input.dir = 'ltr';
    input.setAttribute('autocapitalize', 'off');
    if (!rule || rule.charset === 'digits') input.inputMode = 'numeric';
    input.maxLength = 256;
    return input;
  }

  function revalidate(need) {
    const f = fields.get(need);
    if (f && f.errorKey) setFieldError(need, validateField(need));
  }

  function validateField(need) {
    const f = fields.get(need);
    const value = normalizePin(f.input.value);
    if (value.length === 0) return ['err.required', {}];
    const rule = ruleFor(need);
    if (rule) {
      const problem = checkNewPin(value, rule);
      if (problem) return problem;
      if (f.confirm && normalizePin(f.confirm.value) !== value) return ['err.mismatch', {}];
    }
    return null;
  }

  function setFieldError(need, problem, rawMessage) {
    const f = fields.get(need);
    if (!f) return;
    f.errorKey = problem ? problem[0] : rawMessage ? 'raw' : null;
    f.errorVars = problem ? problem[1] : { message: rawMessage };
    f.input.setAttribute('aria-invalid', f.errorKey ? 'true' : 'false');
    renderFieldError(f);
  }

  function renderFieldError(f) {
    if (!f.errorKey) {
      f.errorEl.hidden = true;
      f.errorEl.textContent = '';
      return;
    }
    f.errorEl.hidden = false;
    f.errorEl.textContent = f.errorKey === 'raw' ? f.errorVars.message : t(f.errorKey, f.errorVars);
  }

  function setFormError(key, vars) {
    formErrorKey = key;
    formErrorVars = vars || {};
    renderFormError();
  }

  function renderFormError() {
    const el = $('form-error');
    el.hidden = !formErrorKey;
    el.textContent = formErrorKey ? t(formErrorKey, formErrorVars) : '';
  }

  function renderWarnings() {
    const list = $('warnings');
    list.textContent = '';
    const warnings = [...request.warnings];
    if (request.method === 'tokens.init') warnings.unshift('erase');
    for (const w of warnings) {
      const li = document.createElement('li');
      li.className = `warning warning-${w}`;
      li.setAttribute('data-testid', 'consent-warning');
      li.setAttribute('data-warning', w);
      li.textContent = t(`warn.${w}`);
      list.append(li);
    }
  }

  function renderRequest() {
    const req = request;
    byTestId('consent-origin').textContent = req.origin;
    $('tier').textContent = t(`tier.${req.tier}`);
    $('tier').className = `tier tier-${req.tier}`;
    const count = req.summaries ? req.summaries.length : req.digests.length;
    byTestId('consent-operation').textContent = t(operationKey(req), { method: req.method, n: count });
    const detailKey = `opDetail.${req.method}`;
    $('operation-detail').hidden = !STRINGS.en[detailKey];
    $('operation-detail').textContent = STRINGS.en[detailKey] ? t(detailKey) : '';

    renderWarnings();

    $('token-row').hidden = !req.token;
    if (req.token) {
      const tk = req.token;
      const maker = [tk.manufacturer, tk.model].filter(Boolean).join(' ');
      byTestId('consent-token').textContent = [tk.label, maker, tk.serialNumber].filter(Boolean).join(' — ');
    }
    $('certificate-row').hidden = !req.certificate;
    if (req.certificate) renderCertificate(req.certificate);
    $('csr-row').hidden = !req.csr;
    if (req.csr) renderCsr(req.csr);

    const hasSummary = typeof req.summary === 'string' || Array.isArray(req.summaries);
    $('summary-box').hidden = !hasSummary;
    if (hasSummary) {
      const labelKey = req.method === 'agent.requestAccess' ? 'reasonFrom' : 'summaryFrom';
      $('summary-label').textContent = t(labelKey, { origin: '\u2068' + req.origin + '\u2069' });
      renderSummary(req);
    }

    $('digests-box').hidden = req.digests.length === 0;
    if (req.digests.length > 0) {
      $('digests-label').textContent = t('digestsLabel', { n: req.digests.length });
      const list = byTestId('consent-digests');
      list.textContent = '';
      for (const d of req.digests.slice(0, MAX_DIGESTS_SHOWN)) {
        const li = document.createElement('li');
        li.textContent = d;
        list.append(li);
      }
      if (req.digests.length > MAX_DIGESTS_SHOWN) {
        const li = document.createElement('li');
        li.className = 'more';
        li.textContent = t('summariesMore', { n: req.digests.length - MAX_DIGESTS_SHOWN });
        list.append(li);
      }
      // A single digest is short enough to show at once.
      if (req.digests.length === 1) $('digests-box').open = true;
    }

    // A PIN pad reader collects the user PIN itself: say so instead of asking for it.
    $('pinpad').hidden = req.pinpad !== true;
    $('pinpad').textContent = req.pinpad === true ? t('pinpad') : '';

    for (const [need, f] of fields) {
      f.labelEl.textContent = t(`need.${need}`);
      const rule = ruleFor(need);
      f.hintEl.textContent = rule ? ruleHint(rule) : '';
      f.hintEl.hidden = !rule;
      if (f.confirmLabelEl) f.confirmLabelEl.textContent = t('confirmOf', { label: t(`need.${need}`) });
      renderFieldError(f);
    }
    renderFormError();
    renderButtons();
    renderExpiry();
  }

  function renderCertificate(c) {
    const dd = byTestId('consent-certificate');
    dd.textContent = '';
    const subject = document.createElement('div');
    subject.className = 'cert-subject';
    subject.dir = 'ltr'; // a DN is technical LTR text; its Persian values still render right to left inside it
    subject.textContent = c.subject;
    const meta = document.createElement('div');
    meta.className = 'cert-meta';
    const issuer = document.createElement('span');
    issuer.dir = 'ltr';
    issuer.textContent = c.issuer;
    const serial = document.createElement('span');
    serial.className = 'mono';
    serial.dir = 'ltr';
    serial.textContent = c.serialNumber;
    const until = document.createElement('span');
    until.textContent = formatDate(c.notAfter);
    meta.append(
      labelled(t('cert.issuer'), issuer),
      labelled(t('cert.serial'), serial),
      labelled(t('cert.until'), until),
    );
    dd.append(subject, meta);
  }

  // The agent sends the subject and names already filtered (controls and bidi overrides made visible).
  function renderCsr(csr) {
    const dd = byTestId('consent-csr');
    dd.textContent = '';
    const subject = document.createElement('bdi');
    subject.className = 'cert-subject';
    subject.dir = 'ltr';
    subject.setAttribute('data-testid', 'consent-csr-subject');
    subject.textContent = String(csr.subject);
    dd.append(labelled(t('csr.subject'), subject));
    const names = Array.isArray(csr.subjectAltNames) ? csr.subjectAltNames : [];
    if (names.length > 0) {
      const list = document.createElement('ul');
      list.className = 'csr-sans';
      for (const n of names) {
        const li = document.createElement('li');
        const b = document.createElement('bdi');
        b.dir = 'ltr';
        b.setAttribute('data-testid', 'consent-csr-san');
        b.textContent = String(n);
        li.append(b);
        list.append(li);
      }
      const k = document.createElement('div');
      k.className = 'k';
      k.textContent = `${t('csr.sans')}:`;
      dd.append(k, list);
    }
  }

  function labelled(label, valueEl) {
    const span = document.createElement('span');
    span.className = 'kv';
    const k = document.createElement('span');
    k.className = 'k';
    k.textContent = `${label}: `;
    span.append(k, valueEl);
    return span;
  }

  function renderSummary(req) {
    const box = byTestId('consent-summary');
    box.textContent = '';
    if (Array.isArray(req.summaries)) {
      const list = document.createElement('ol');
      list.className = 'summaries';
      for (const s of req.summaries.slice(0, MAX_SUMMARIES_SHOWN)) {
        const li = document.createElement('li');
        li.dir = 'auto';
        li.textContent = s;
        list.append(li);
      }
      box.append(list);
      if (req.summaries.length > MAX_SUMMARIES_SHOWN) {
        const more = document.createElement('p');
        more.className = 'more';
        more.textContent = t('summariesMore', { n: req.summaries.length - MAX_SUMMARIES_SHOWN });
        box.append(more);
      }
    } else {
      box.textContent = req.summary;
    }
  }

  function renderButtons() {
    const approve = $('approve');
    const deny = $('deny');
    const busy = state === 'busy';
    approve.disabled = busy || state !== 'pending' || !armed;
    deny.disabled = busy || state !== 'pending' || !armed;
    approve.textContent = busy ? t('working') : t(approveKey(request));
    deny.textContent = t(request.method === 'agent.requestAccess' ? 'deny.access' : 'deny');
  }

  function renderExpiry() {
    const el = $('expiry');
    if (!request || state === 'done') {
      el.textContent = '';
      return;
    }
    const left = Math.max(0, Math.ceil((Date.parse(request.expiresAt) - Date.now()) / 1000));
    el.textContent = t('expiresIn', { s: left });
  }

  function renderResult() {
    const el = $('result');
    el.hidden = !resultKey;
    if (!resultKey) return;
    el.textContent = '';
    el.className = `card result result-${resultKey}`;
    el.setAttribute('data-result', resultKey);
    const p = document.createElement('p');
    p.textContent = t(`result.${resultKey}`);
    el.append(p);
    if (resultKey === 'approved' || resultKey === 'denied') {
      const c = document.createElement('p');
      c.className = 'note';
      c.textContent = t('closing');
      el.append(c);
    }
  }

  function applyLanguage() {
    const html = document.documentElement;
    html.lang = lang;
    html.dir = lang === 'fa' ? 'rtl' : 'ltr';
    document.title = t('title');
    for (const el of document.querySelectorAll('[data-i18n]'))
      el.textContent = t(el.getAttribute('data-i18n'));
    $('lang-toggle').textContent = t('langToggle');
    $('lang-toggle').lang = lang === 'fa' ? 'en' : 'fa';
    if (request && state !== 'done') renderRequest();
    renderResult();
  }

  // ---- the arming delay (keyjacking) ----------------------------------------------------------------

  function attentive() {
    return document.visibilityState === 'visible' && document.hasFocus();
  }

  function disarm() {
    clearTimeout(armTimer);
    armTimer = null;
    if (armed) {
      armed = false;
      if (request && state !== 'done') renderButtons();
    }
  }

  function arm() {
    if (armed || armTimer !== null || state !== 'pending' || !attentive()) return;
    armTimer = setTimeout(() => {
      armTimer = null;
      if (!attentive()) return;
      armed = true;
      if (state !== 'done') renderButtons();
    }, ARM_DELAY_MS);
  }

  // A click, or Enter, Space or Escape, that comes before the page is armed starts the delay again: a
  // page that keeps the user clicking or pressing Enter (a game) would otherwise get the press that
  // lands one second after this page appeared. Capture phase: disabled buttons get no events of their own.
  function rearm() {
    if (armed || state !== 'pending') return;
    clearTimeout(armTimer);
    armTimer = null;
    arm();
  }

  window.addEventListener('pointerdown', rearm, true);
  window.addEventListener('mousedown', rearm, true);
  window.addEventListener(
    'keydown',
    (event) => {
      if (event.key === 'Enter' || event.key === ' ' || event.key === 'Escape') rearm();
    },
    true,
  );
  window.addEventListener('blur', disarm);
  window.addEventListener('focus', arm);
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'visible') arm();
    else disarm();
  });

  // ---- talking to the agent ----------------------------------------------------------------------

  function keepSecret(value) {
    try {
      if (value) sessionStorage.setItem(SECRET_KEY, value);
      else sessionStorage.removeItem(SECRET_KEY);
    } catch {
      // storage disabled: a reload then shows that the page must be opened from Kelid
    }
  }

  function keptSecret() {
    try {
      return sessionStorage.getItem(SECRET_KEY) || '';
    } catch {
      return '';
    }
  }

  async function api(path, body, bearer = secret) {
    const init = {
      method: body === undefined ? 'GET' : 'POST',
      headers: { Authorization: `Bearer ${bearer}` },
      cache: 'no-store',
      credentials: 'omit',
    };
    if (body !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    const res = await fetch(`/consent/api/${path}`, init);
    let json = null;
    try {
      json = await res.json();
    } catch {
      json = null;
    }
    return { status: res.status, json };
  }

  function finish(key) {
    state = 'done';
    resultKey = key;
    disarm();
    if (key !== 'elsewhere' && key !== 'noSecret') keepSecret('');
    clearInterval(pollTimer);
    clearInterval(tickTimer);
    for (const f of fields.values()) {
      f.input.value = '';
      if (f.confirm) f.confirm.value = '';
    }
    $('request').hidden = true;
    $('loading').hidden = true;
    renderResult();
    if (key === 'approved' || key === 'denied') {
      setTimeout(() => window.close(), CLOSE_AFTER_MS);
    }
  }

  async function load() {
    let r;
    try {
      if (launchSecret) {
        r = await api('session', {}, launchSecret);
        if (r.status === 409) {
          finish('elsewhere');
          return;
        }
        if (r.status === 200 && r.json && typeof r.json.secret === 'string') {
          secret = r.json.secret;
          keepSecret(secret);
          r = { status: 200, json: r.json.request };
        }
      } else {
        // A reload of this tab: the launch secret is spent, the page's own secret was kept.
        secret = keptSecret();
        if (!secret) {
          finish('noSecret');
          return;
        }
        r = await api('request');
      }
    } catch {
      $('loading').textContent = t('err.network');
      return;
    }
    if (r.status !== 200 || !r.json) {
      finish('gone');
      return;
    }
    request = r.json;
    if (!Array.isArray(request.needs)) request.needs = [];
    if (!Array.isArray(request.warnings)) request.warnings = [];
    if (!Array.isArray(request.digests)) request.digests = [];
    state = 'pending';
    buildFields();
    $('loading').hidden = true;
    $('request').hidden = false;
    renderRequest();
    // Nothing that Enter or Space would activate gets the focus: only a PIN field, when there is one.
    const first = fields.values().next().value;
    if (first) first.input.focus();
    arm();
    pollTimer = setInterval(poll, POLL_MS);
    tickTimer = setInterval(renderExpiry, 1000);
  }

  // The page may cancel the call, or it may time out, while this window is open.
  async function poll() {
    if (state !== 'pending') return;
    try {
      const r = await api('request');
      if (r.status === 404 && state === 'pending') finish('gone');
    } catch {
      // the agent may be busy; the next poll tells
    }
  }

  async function approve(event) {
    event.preventDefault();
    if (state !== 'pending' || !armed) return;
    setFormError(null);
    let firstBad = null;
    for (const need of fields.keys()) {
      const problem = validateField(need);
      setFieldError(need, problem);
      if (problem && !firstBad) firstBad = need;
    }
    if (firstBad) {
      fields.get(firstBad).input.focus();
      return;
    }
    const secrets = {};
    for (const [need, f] of fields) secrets[need] = normalizePin(f.input.value);
    state = 'busy';
    renderButtons();
    let r;
    try {
      r = await api('approve', { secrets });
    } catch {
      state = 'pending';
      renderButtons();
      setFormError('err.network');
      return;
    }
    if (r.status === 200) {
      finish('approved');
      return;
    }
    if (r.status === 404) {
      finish('gone');
      return;
    }
    state = 'pending';
    renderButtons();
    const err = (r.json && r.json.error) || {};
    if (err.need && fields.has(err.need)) {
      const rule = ruleFor(err.need);
      if (err.code === 'ERR_PIN_POLICY' && rule)
        setFieldError(err.need, ['err.policy', { rule: ruleHint(rule) }]);
      else setFieldError(err.need, null, String(err.message || err.code || ''));
      fields.get(err.need).input.focus();
    } else {
      setFormError('err.server', { message: String(err.message || err.code || r.status) });
    }
  }

  async function deny() {
    if (state !== 'pending' || !armed) return;
    state = 'busy';
    renderButtons();
    let r;
    try {
      r = await api('deny', {});
    } catch {
      state = 'pending';
      renderButtons();
      setFormError('err.network');
      return;
    }
    finish(r.status === 200 ? 'denied' : 'gone');
  }

  $('secrets').addEventListener('submit', approve);
  $('deny').addEventListener('click', deny);
  // Escape denies, as the Deny button does: only once the page is armed, so an Escape aimed at another
  // page (a game that has the user press it) cannot decide this request either.
  document.addEventListener('keydown', (event) => {
    if (event.key !== 'Escape' || event.repeat || state !== 'pending' || !armed) return;
    event.preventDefault();
    deny();
  });
  $('lang-toggle').addEventListener('click', () => {
    lang = lang === 'fa' ? 'en' : 'fa';
    const p = new URLSearchParams(location.search);
    p.set('lang', lang);
    history.replaceState(null, '', `${location.pathname}?${p.toString()}`);
    applyLanguage();
  });

  applyLanguage();
  load();
})();
