import { createHash, randomBytes } from 'node:crypto';
import { KelidError, isKelidError } from '../model/errors.js';
import type { ErrorCode } from '../model/errors.js';
import { silentLogger } from '../log.js';
import type { Logger } from '../log.js';
import type { SecretNeed, Tier } from '../model/types.js';
import { checkPin, normalizePin } from '../tokens/pin-policy.js';
import type { PinRule } from '../tokens/pin-policy.js';
import type { PromptLimiter } from './rate-limit.js';

// PROTOCOL.md section 5: a call that needs consent waits here until the user approves (through the
// consent page or `kelid consent approve`), denies, the page withdraws it, or the timeout passes.
// The secrets the user types go straight from the approval into the one service call waiting for
// them (`request(spec, run)` hands them to `run`); the broker keeps no reference to them.
//
// Issue 13, section 4: the user sees one consent at a time. The launcher opens the page of one
// request (the "shown" one); the next is opened when that one is decided, withdrawn or times out
// (requests from known tiers go before queued `unknown` ones). At most `maxPendingUnknown` requests
// of the `unknown` tier wait at once, across all origins; more are refused with ERR_RATE_LIMITED
// before anything is shown; and once `wastedPagesPerMinute` pages of that tier were opened for
// requests withdrawn (or expired) before the user decided them, the next ones wait: requests withdrawn
// as soon as their page opens, or once it has loaded, cannot make a stream of tabs. A request counts as
// seen once its details reached the user (the consent page traded its launch secret or fetched it,
// `kelid consent list` listed it, or the user decided it): `onSeen` tells the protocol layer, which
// audits only calls the user saw.
//
// Issue 13, section 6: the launch URL reaches the browser through its argv (readable in /proc), so
// its secret only opens the page: the page trades it once (`openPage`) for a page secret of its own,
// and the launch secret is spent at once.

export type ConsentWarning =
  'pin-count-low' | 'pin-final-try' | 'pin-locked' | 'status-unknown' | 'status-unavailable';

export interface PinRuleView {
  minLength: number;
  maxLength: number;
  charset: string;
}

export interface PinRulesView {
  user: PinRuleView;
  so: PinRuleView;
}

export interface ConsentTokenView {
  label: string;
  serialNumber: string;
  manufacturer: string;
  model: string;
}

export interface ConsentCertificateView {
  subject: string;
  issuer: string;
  serialNumber: string;
  notAfter: string;
}

/**
 * Extension: what a certificate request (`csr.create`, `keys.generate` with `csr`) will name, as
 * display text: the subject in RFC 4514 form and each alternative name as `type:value`, with control
 * and bidi formatting characters shown as `<U+XXXX>` and over-long text cut with `…`.
 */
export interface ConsentCsrView {
  subject: string;
  subjectAltNames: string[];
}

/** What the consent page (`GET /consent/api/request`) and `kelid consent list --json` show. */
export interface ConsentRequestView {
  requestId: string;
  origin: string;
  tier: Tier;
  method: string;
  /** Absent for site approvals (`agent.requestAccess`), which concern no token. */
  token?: ConsentTokenView;
  certificate?: ConsentCertificateView;
  csr?: ConsentCsrView;
  summary?: string;
  summaries?: string[];
  /** Hex digests of what will be signed (empty for operations that sign nothing the page gave). */
  digests: string[];
  needs: SecretNeed[];
  /**
   * Extension: the token has a PIN pad (protected authentication path). The user PIN is typed on the
   * reader's keypad after approval, so `needs` has no `userPin` and no UI may ask for it.
   */
  pinpad?: true;
  warnings: ConsentWarning[];
  pinRules: PinRulesView;
  /** ISO 8601 UTC. */
  expiresAt: string;
}

/** What a method asks consent for. */
export interface ConsentSpec {
  connectionId: string;
  origin: string;
  tier: Tier;
  method: string;
  token?: ConsentTokenView;
  certificate?: ConsentCertificateView;
  csr?: ConsentCsrView;
  summary?: string;
  summaries?: string[];
  digests?: string[];
  needs: SecretNeed[];
  /** The user PIN goes through the token's PIN pad (see {@link ConsentRequestView.pinpad}). */
  pinpad?: boolean;
  warnings?: ConsentWarning[];
  /** Rules new PINs are checked against before the call proceeds (default: the configured policy). */
  pinRules?: PinRulesView;
  /** Aborts when the page cancels the call or disconnects: the request is withdrawn. */
  signal: AbortSignal;
  /** Called once the request is pending (the protocol layer sends `consent.pending`). */
  onPending?: (requestId: string) => void;
  /** Called once, when the user first sees the request (see the notes at the top of this file). */
  onSeen?: () => void;
}

export type Secrets = Partial<Record<SecretNeed, string>>;

export interface ApproveError {
  code: ErrorCode;
  message: string;
  need?: SecretNeed;
}

export type ApproveResult = { ok: true } | { ok: false; error: ApproveError };

/** Find a pending request by its id (CLI) or by the one-time secret of its consent page. */
export type ConsentRef = { requestId: string } | { secret: string };

export interface ConsentBrokerOptions {
  timeoutMs: number;
  /** Per-origin prompt limits; `null` for tiers that are never limited (the console). */
  limiterFor: (tier: Tier) => PromptLimiter | null;
  /** Opens the consent page for a new request (the URL carries its one-time secret). */
  launch: (url: string) => void;
  /** The consent page URL for a secret. */
  consentUrl: (secret: string) => string;
  defaultPinRules: PinRulesView;
  /** Pending requests in all (each connection may have one). */
  maxPending?: number;
  /** Pending requests of the `unknown` tier (site approvals), all origins together; default 3. */
  maxPendingUnknown?: number;
  /**
   * Pages opened for `unknown` requests that ended undecided (withdrawn or expired), in any 60 s, all origins together, after
   * which pages for that tier wait; default 10.
   */
  wastedPagesPerMinute?: number;
  logger?: Logger;
  now?: () => number;
}

const NEW_PIN_ROLE: Partial<Record<SecretNeed, 'user' | 'so'>> = { newUserPin: 'user', newSoPin: 'so' };
// A PIN longer than this is not a PIN (PKCS#11 tokens allow far less); it bounds what we hold.
const MAX_SECRET_LENGTH = 256;

/** What the consent page gets when it trades its launch secret (`openPage`). */
export interface OpenedPage {
  /** The page's own secret for the other consent API calls; never in a URL. */
  secret: string;
  request: ConsentRequestView;
}

interface Entry {
  view: ConsentRequestView;
  /** Hash of the secret in the launch URL; spent by the first `openPage`. */
  launchHash: string;
  /** The launch URL until the request is shown (then only the launcher has had it). */
  launchUrl: string | null;
  launchSpent: boolean;
  /** Hash of the page secret handed out by `openPage`. */
  pageHash: string | null;
  seen: boolean;
  /** The user approved or denied it (a withdrawn or expired page is waste, seen or not). */
  decided: boolean;
  onSeen?: () => void;
  deadline: number;
  connectionId: string;
  resolve(secrets: Secrets): void;
  reject(error: KelidError): void;
  denied(): void;
}

export class ConsentBroker {
  readonly #options: ConsentBrokerOptions;
  readonly #log: Logger;
  readonly #now: () => number;
  readonly #byId = new Map<string, Entry>();
  readonly #byLaunch = new Map<string, Entry>();
  readonly #byPage = new Map<string, Entry>();
  readonly #byConnection = new Map<string, Entry>();
  #shown: Entry | null = null;
  #closing = false;
  /** When shown `unknown` requests ended undecided, in the last minute (monotonic ms; see #showNext). */
  readonly #wasted: number[] = [];
  #showTimer: NodeJS.Timeout | undefined;

  constructor(options: ConsentBrokerOptions) {
    this.#options = options;
    this.#log = options.logger ?? silentLogger;
    this.#now = options.now ?? Date.now;
  }

  /**
   * Ask the user; when they approve, call `run` with the secrets they typed and return its result.
   * Rejects with ERR_BUSY (this connection already waits for a decision, or too many are pending),
   * ERR_ORIGIN_DENIED / ERR_RATE_LIMITED (prompt limits), ERR_USER_CANCELLED (denied, or withdrawn
   * by the page) or ERR_CONSENT_TIMEOUT.
   */
  async request<T>(spec: ConsentSpec, run: (secrets: Secrets) => Promise<T>): Promise<T> {
    if (spec.signal.aborted) throw withdrawn();
    if (this.#byConnection.has(spec.connectionId)) {
      throw new KelidError('ERR_BUSY', 'this page already waits for a consent decision');
    }
    if (this.#byId.size >= (this.#options.maxPending ?? 64)) {
      throw new KelidError('ERR_BUSY', 'too many consent requests are pending');
    }
    if (spec.tier === 'unknown') this.#checkUnknownBudget();
    const limiter = this.#options.limiterFor(spec.tier);
    limiter?.check(spec.origin);
    const approvedPrompt = limiter?.recordPrompt(spec.origin);

    const requestId = randomBytes(16).toString('hex');
    const secret = randomBytes(32).toString('base64url');
    const view: ConsentRequestView = {
      requestId,
      origin: spec.origin,
      tier: spec.tier,
      method: spec.method,
      ...(spec.token ? { token: { ...spec.token } } : {}),
      ...(spec.certificate ? { certificate: { ...spec.certificate } } : {}),
      ...(spec.csr
        ? { csr: { subject: spec.csr.subject, subjectAltNames: [...spec.csr.subjectAltNames] } }
        : {}),
      ...(spec.summary !== undefined ? { summary: spec.summary } : {}),
      ...(spec.summaries !== undefined ? { summaries: spec.summaries } : {}),
      digests: spec.digests ?? [],
      needs: [...spec.needs],
      ...(spec.pinpad ? { pinpad: true as const } : {}),
      warnings: [...(spec.warnings ?? [])],
      pinRules: spec.pinRules ?? this.#options.defaultPinRules,
      expiresAt: new Date(this.#now() + this.#options.timeoutMs).toISOString(),
    };

    const secrets = await new Promise<Secrets>((resolve, reject) => {
      const settle = (): void => {
        clearTimeout(timer);
        spec.signal.removeEventListener('abort', onAbort);
        this.#remove(entry);
      };
      const onAbort = (): void => {
        settle();
        reject(withdrawn());
      };
      const entry: Entry = {
        view,
        launchHash: hashSecret(secret),
        launchUrl: this.#options.consentUrl(secret),
        launchSpent: false,
        pageHash: null,
        seen: false,
        decided: false,
        ...(spec.onSeen ? { onSeen: spec.onSeen } : {}),
        deadline: this.#now() + this.#options.timeoutMs,
        connectionId: spec.connectionId,
        resolve: (s) => {
          settle();
          resolve(s);
        },
        reject: (e) => {
          settle();
          reject(e);
        },
        denied: () => limiter?.recordDenial(spec.origin),
      };
      const timer = setTimeout(() => {
        entry.reject(new KelidError('ERR_CONSENT_TIMEOUT', 'the user did not decide in time'));
      }, this.#options.timeoutMs);
      this.#byId.set(requestId, entry);
      this.#byLaunch.set(entry.launchHash, entry);
      this.#byConnection.set(spec.connectionId, entry);
      spec.signal.addEventListener('abort', onAbort, { once: true });
      this.#log.info({ requestId, origin: spec.origin, method: spec.method }, 'consent requested');
      spec.onPending?.(requestId);
      if (this.#shown === null) this.#showNext();
    });
    this.#log.info({ requestId }, 'consent approved');
    approvedPrompt?.();
    return run(secrets);
  }

  /** The pending requests, oldest first (`kelid consent list`: the user now sees them all). */
  list(): ConsentRequestView[] {
    const entries = [...this.#byId.values()];
    for (const e of entries) this.#see(e);
    return entries.map((e) => e.view);
  }

  /** A pending request; looking it up by a page's secret means the page shows it (it is seen). */
  get(ref: ConsentRef): ConsentRequestView | undefined {
    const entry = this.#find(ref);
    if (entry && 'secret' in ref) this.#see(entry);
    return entry?.view;
  }

  /**
   * The consent page trades the secret of its launch URL for a secret of its own. The launch secret
   * works once: `'spent'` when it was already traded (by this page before a reload, or by whoever
   * read it from the browser's command line), `null` when no request has it.
   */
  openPage(launchSecret: string): OpenedPage | 'spent' | null {
    if (typeof launchSecret !== 'string' || launchSecret.length > 128) return null;
    const entry = this.#byLaunch.get(hashSecret(launchSecret));
    if (!entry) return null;
    if (entry.launchSpent) return 'spent';
    entry.launchSpent = true;
    const secret = randomBytes(32).toString('base64url');
    entry.pageHash = hashSecret(secret);
    this.#byPage.set(entry.pageHash, entry);
    this.#see(entry);
    return { secret, request: entry.view };
  }

  /**
   * Approve with the typed secrets. A missing, malformed or policy-breaking secret is returned as an
   * error and the request stays pending, so the user can retype.
   */
  approve(ref: ConsentRef, secrets: unknown): ApproveResult | null {
    const entry = this.#find(ref);
    if (!entry) return null;
    this.#see(entry);
    const problem = checkSecrets(entry.view, secrets);
    if (problem) return { ok: false, error: problem };
    const picked: Secrets = {};
    for (const need of entry.view.needs) picked[need] = (secrets as Record<string, string>)[need];
    entry.decided = true;
    entry.resolve(picked);
    return { ok: true };
  }

  /** Deny: the call fails with ERR_USER_CANCELLED and the origin cools down. False if not pending. */
  deny(ref: ConsentRef): boolean {
    const entry = this.#find(ref);
    if (!entry) return false;
    this.#see(entry);
    this.#log.info({ requestId: entry.view.requestId }, 'consent denied');
    entry.decided = true;
    entry.denied();
    entry.reject(new KelidError('ERR_USER_CANCELLED', 'the user declined'));
    return true;
  }

  /** Withdraw every pending request (agent shutdown). */
  cancelAll(): void {
    this.#closing = true;
    clearTimeout(this.#showTimer);
    for (const entry of [...this.#byId.values()]) {
      entry.reject(new KelidError('ERR_USER_CANCELLED', 'the agent is shutting down', { retriable: true }));
    }
  }

  get size(): number {
    return this.#byId.size;
  }

  #find(ref: ConsentRef): Entry | undefined {
    if ('requestId' in ref)
      return typeof ref.requestId === 'string' ? this.#byId.get(ref.requestId) : undefined;
    if (typeof ref.secret !== 'string' || ref.secret.length > 128) return undefined;
    const hash = hashSecret(ref.secret);
    const byPage = this.#byPage.get(hash);
    if (byPage) return byPage;
    // The launch secret also works until a page trades it (a page of an older agent, or a tool).
    const byLaunch = this.#byLaunch.get(hash);
    return byLaunch && !byLaunch.launchSpent ? byLaunch : undefined;
  }

  #see(entry: Entry): void {
    if (entry.seen) return;
    entry.seen = true;
    entry.onSeen?.();
  }

  #checkUnknownBudget(): void {
    const max = this.#options.maxPendingUnknown ?? 3;
    const unknown = [...this.#byId.values()].filter((e) => e.view.tier === 'unknown');
    if (unknown.length < max) return;
    const next = Math.min(...unknown.map((e) => e.deadline));
    throw new KelidError('ERR_RATE_LIMITED', 'too many websites are asking for access; try again later', {
      data: { retryAfterMs: Math.max(0, Math.ceil(next - this.#now())) },
    });
  }

  /**
   * Open the page of the next request: known tiers first, then the oldest. Pages for the `unknown`
   * tier are also bounded in time: a flood that withdraws each request as soon as its page opens
   * would otherwise turn "one at a time" into a stream of tabs.
   */
  #showNext(): void {
    clearTimeout(this.#showTimer);
    this.#showTimer = undefined;
    if (this.#shown !== null || this.#closing) return;
    const entries = [...this.#byId.values()];
    const next = entries.find((e) => e.view.tier !== 'unknown') ?? entries[0];
    if (next === undefined) return;
    if (next.view.tier === 'unknown') {
      // Monotonic: changing the system time neither lifts nor extends the bound.
      const now = performance.now();
      while (this.#wasted.length > 0 && this.#wasted[0] <= now - 60_000) this.#wasted.shift();
      if (this.#wasted.length >= (this.#options.wastedPagesPerMinute ?? 10)) {
        const wait = Math.min(60_000, Math.max(0, this.#wasted[0] + 60_000 - now));
        this.#showTimer = setTimeout(() => this.#showNext(), wait);
        this.#showTimer.unref();
        return;
      }
    }
    this.#shown = next;
    const url = next.launchUrl;
    next.launchUrl = null;
    if (url === null) return;
    try {
      this.#options.launch(url);
    } catch (e) {
      this.#log.warn(
        { requestId: next.view.requestId, err: e instanceof Error ? e.message : String(e) },
        'cannot open the consent page',
      );
    }
  }

  #remove(entry: Entry): void {
    this.#byId.delete(entry.view.requestId);
    this.#byLaunch.delete(entry.launchHash);
    if (entry.pageHash !== null) this.#byPage.delete(entry.pageHash);
    if (this.#byConnection.get(entry.connectionId) === entry) this.#byConnection.delete(entry.connectionId);
    if (this.#shown === entry) {
      // Seen is not enough: a flood can wait for each page to load before withdrawing its request.
      if (entry.view.tier === 'unknown' && !entry.decided) this.#wasted.push(performance.now());
      this.#shown = null;
      this.#showNext();
    }
  }
}

function withdrawn(): KelidError {
  return new KelidError('ERR_USER_CANCELLED', 'the request was withdrawn by the page');
}

// Secrets are looked up by their hash: the map never holds the bearer value itself.
function hashSecret(secret: string): string {
  return createHash('sha256').update(secret, 'utf8').digest('hex');
}

function toRule(view: PinRuleView): PinRule {
  const charset = view.charset === 'digits' || view.charset === 'alnum' ? view.charset : 'any';
  return { minLength: view.minLength, maxLength: view.maxLength, charset };
}

/** What is wrong with the secrets for this request, without ever echoing one. */
function checkSecrets(view: ConsentRequestView, secrets: unknown): ApproveError | null {
  if (typeof secrets !== 'object' || secrets === null || Array.isArray(secrets)) {
    return { code: 'ERR_INVALID_INPUT', message: 'secrets must be a JSON object whose keys are the needs' };
  }
  const given = Object.keys(secrets);
  if (given.some((k) => !(view.needs as string[]).includes(k))) {
    return {
      code: 'ERR_INVALID_INPUT',
      message: `only these secrets are expected: ${view.needs.join(', ') || '(none)'}`,
    };
  }
  for (const need of view.needs) {
    const value: unknown = (secrets as Record<string, unknown>)[need];
    if (typeof value !== 'string' || value.length === 0) {
      return { code: 'ERR_INVALID_INPUT', message: `${need} is missing`, need };
    }
    if (value.length > MAX_SECRET_LENGTH)
      return { code: 'ERR_INVALID_INPUT', message: `${need} is too long`, need };
    const role = NEW_PIN_ROLE[need];
    if (role) {
      try {
        checkPin(normalizePin(value), toRule(view.pinRules[role]));
      } catch (e) {
        if (isKelidError(e, 'ERR_PIN_POLICY')) return { code: 'ERR_PIN_POLICY', message: e.message, need };
        return { code: 'ERR_INVALID_INPUT', message: `${need} is not acceptable`, need };
      }
    }
  }
  return null;
}
