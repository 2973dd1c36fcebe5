import { KelidError, isKelidError } from '../model/errors.js';
import { silentLogger } from '../log.js';
import type { Logger } from '../log.js';
import type { FoundObject, HostMethod, HostMethods, RawSlot, TokenRef } from '../pkcs11/host-protocol.js';
import { CKF } from '../pkcs11/templates.js';
import type { LoadedModule } from '../pkcs11/module-manager.js';
import type { PinEntry } from '../model/services.js';
import type { PinState, Token } from '../model/types.js';
import { identityLevels, tokenRefOf } from './token-id.js';
import type { IdentityLevel } from './token-id.js';
import { toToken } from './token-info.js';

/** Whatever holds the loaded modules (the ModuleManager; a test's fake): the token layer only reads them. */
export interface LoadedModules {
  modules(): LoadedModule[];
}

/** Where a token lives right now. */
export interface TokenLocation {
  module: LoadedModule;
  ref: TokenRef;
  token: Token;
  /** What the tokenId is made of (repeated serials need more than the serial). */
  level: IdentityLevel;
}

export type LoginRole = 'user' | 'so';

/**
 * How long a lockout that only C_Login reported (the PIN flags say unlocked) is shown as locked. The
 * flags will never say when it ends (a TPM recovers on its own clock), so after this a login may try
 * again; a successful login ends it at once.
 */
const OBSERVED_LOCK_MS = 10 * 60_000;

/**
 * Lockouts that C_Login reported while the token's flags said unlocked (tpm2-pkcs11 never sets the
 * lock flags): per token and role, or for the whole module when its quirks say `lockout:
 * "device-wide"` (every token and both roles share one counter). Applied to the Token objects
 * reported, so `tokens` and the pre-login check see the lock.
 */
export class ObservedLocks {
  readonly #until = new Map<string, number>();

  constructor(
    private readonly memoryMs = OBSERVED_LOCK_MS,
    private readonly now: () => number = Date.now,
  ) {}

  private keys(module: LoadedModule, tokenId: string, role: LoginRole): string[] {
    return deviceWide(module) ? [`module\u0000${module.spec.id}`] : [`token\u0000${tokenId}\u0000${role}`];
  }

  note(module: LoadedModule, tokenId: string, role: LoginRole): void {
    for (const k of this.keys(module, tokenId, role)) this.#until.set(k, this.now() + this.memoryMs);
  }

  clear(module: LoadedModule, tokenId: string, role: LoginRole): void {
    for (const k of this.keys(module, tokenId, role)) this.#until.delete(k);
  }

  private holds(key: string): boolean {
    const until = this.#until.get(key);
    if (until === undefined) return false;
    if (until > this.now()) return true;
    this.#until.delete(key);
    return false;
  }

  apply(module: LoadedModule, token: Token): Token {
    const out: Token = deviceWide(module) ? { ...token, lockout: 'device-wide' } : token;
    const locked = (role: LoginRole) =>
      token.initialized && this.keys(module, token.tokenId, role).some((k) => this.holds(k));
    if (locked('user')) out.userPin = { ...token.userPin, locked: true };
    if (locked('so')) out.soPin = { ...token.soPin, locked: true };
    return out;
  }
}

function deviceWide(module: LoadedModule): boolean {
  return module.spec.quirks?.lockout === 'device-wide';
}

/** Default deadline of C_Login: long, because a PIN pad reader waits for the user to type. */
const LOGIN_TIMEOUT_MS = 120_000;

function locationOf(
  module: LoadedModule,
  slot: RawSlot,
  level: IdentityLevel,
  observed: ObservedLocks,
): TokenLocation {
  const token = observed.apply(module, toToken(module.spec.id, slot, level));
  return { module, ref: tokenRefOf(slot, level), token, level };
}

/** Distinguishes "no token with this id" from "the module it lived on is down". */
function notFound(tokenId: string): KelidError {
  return new KelidError('ERR_TOKEN_NOT_FOUND', 'no connected token has this id', { data: { tokenId } });
}

/** The state of the PIN of `role` on `token`. */
function pinOf(token: Token, role: LoginRole): PinState {
  return role === 'user' ? token.userPin : token.soPin;
}

/** Logged in, but the token wants a new PIN first: the caller must run the PIN change flow. */
function pinExpired(role: LoginRole): KelidError {
  return new KelidError('ERR_PIN_EXPIRED', 'the PIN must be changed before the token can be used', {
    data: { role },
  });
}

/** The advice depends on the module: a device-wide lockout is not undone by the SO-PIN. */
function lockedError(module: LoadedModule, role: LoginRole, pin: PinState): KelidError {
  if (deviceWide(module)) {
    return new KelidError(
      'ERR_PIN_LOCKED',
      `the ${role === 'user' ? 'user PIN' : 'SO-PIN'} is locked by the device-wide lockout of module ` +
        `"${module.spec.id}" (too many wrong PINs on any of its tokens): the SO-PIN cannot ` +
        'unblock it; wait for the device to end the lockout, or reset it with the device tools',
      { data: { role, pin, lockout: 'device-wide' } },
    );
  }
  return new KelidError(
    'ERR_PIN_LOCKED',
    role === 'user' ? 'the user PIN is locked' : 'the SO-PIN is locked',
    {
      data: { role, pin },
    },
  );
}

/**
 * Why a login cannot be tried on a token as it reads now (not initialized, PIN locked, PIN pad gone),
 * or undefined when it can.
 */
function refusedLogin(
  module: LoadedModule,
  token: Token,
  role: LoginRole,
  pin: PinEntry,
): KelidError | undefined {
  if (!token.initialized) return new KelidError('ERR_TOKEN_NOT_INITIALIZED', 'the token is not initialized');
  if (role === 'user' && !token.userPinInitialized) {
    return new KelidError('ERR_TOKEN_NOT_INITIALIZED', 'the user PIN of this token has not been set');
  }
  const state = pinOf(token, role);
  if (state.locked) return lockedError(module, role, state);
  if (pin === null && !token.protectedAuthenticationPath) {
    // Consent was given for a PIN pad and the token no longer reports one (moved to another reader).
    return new KelidError('ERR_DEVICE_ERROR', 'the token no longer reports a PIN pad: try again', {
      retriable: true,
    });
  }
  return undefined;
}

/**
 * The error a failed C_Login becomes: a wrong or locked PIN with the PIN state read after the attempt
 * (`reread`), and a lockout that only C_Login reported (tpm2-pkcs11) remembered in `observed`.
 */
async function loginFailure(
  e: unknown,
  module: LoadedModule,
  tokenId: string,
  role: LoginRole,
  before: PinState,
  reread: () => Promise<PinState | undefined>,
  observed: ObservedLocks,
): Promise<unknown> {
  if (isKelidError(e, 'ERR_PIN_LOCKED')) {
    const after = await reread();
    if (!after?.locked) {
      // Locked though the flags say not (tpm2-pkcs11): report it from what the module said.
      observed.note(module, tokenId, role);
      await reread();
    }
    return lockedError(module, role, { ...(after ?? before), locked: true });
  }
  if (isKelidError(e, 'ERR_PIN_INCORRECT')) {
    const after = await reread();
    if (after?.locked) return lockedError(module, role, after);
    return new KelidError(e.code, e.message, { data: { role, pin: after ?? before } });
  }
  return e;
}

/** Errors of {@link TokenService.withLogin} raised before any login was tried (safe to try again). */
const beforeLoginErrors = new WeakSet<object>();

/** Whether `e` came from {@link TokenService.withLogin} before any login was tried. */
export function failedBeforeLogin(e: unknown): boolean {
  return typeof e === 'object' && e !== null && beforeLoginErrors.has(e);
}

function beforeLogin<E extends object>(e: E): E {
  beforeLoginErrors.add(e);
  return e;
}

/** What {@link TokenService.withLogin} logs in with and looks up right after the login. */
export interface LoginOptions {
  readWrite: boolean;
  role: LoginRole;
  pin: PinEntry;
  /** Searches made in the same round trip as the login (e.g. the signing key). */
  find?: Array<{ template: HostMethods['findObjects']['params']['template']; attributes: number[] }>;
}

export interface TokenServiceOptions {
  logger?: Logger;
  loginTimeoutMs?: number;
  /** How long `listTokens` waits for one module before reporting its last known tokens. */
  listWaitMs?: number;
  observedLocks?: ObservedLocks;
}

const LIST_WAIT_MS = 1000;

/**
 * One holder per key at a time, in arrival order. PKCS#11 login state belongs to the token (all
 * sessions of a process share it), so two consented operations on one token must not overlap: the
 * first one's C_Logout would end the second one's login and invalidate its private key handles.
 */
export class LoginLocks {
  readonly #tails = new Map<string, Promise<void>>();

  /** Wait for the key to be free; resolves to the release function (call it exactly once). */
  async acquire(key: string): Promise<() => void> {
    const previous = this.#tails.get(key) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((resolve) => (release = resolve));
    const tail = previous.then(() => mine);
    this.#tails.set(key, tail);
    await previous;
    return () => {
      release();
      if (this.#tails.get(key) === tail) this.#tails.delete(key);
    };
  }
}

/**
 * Finds tokens across all loaded modules and hands out sessions on them. Tokens are addressed by
 * their stable `tokenId`; slot ids are looked up fresh because they change between processes.
 */
export class TokenService {
  private readonly log: Logger;
  private readonly loginTimeoutMs: number;
  private locations = new Map<string, TokenLocation>();
  /** A token's mechanism list does not change while it is plugged in (C_GetMechanismInfo per mechanism is slow). */
  private readonly mechanismCache = new Map<string, Promise<HostMethods['mechanisms']['result']>>();
  private readonly loginLocks = new LoginLocks();
  private readonly observedLocks: ObservedLocks;
  #generation = 0;

  private readonly listWaitMs: number;

  constructor(
    private readonly source: LoadedModules,
    options: TokenServiceOptions = {},
  ) {
    this.log = options.logger ?? silentLogger;
    this.listWaitMs = options.listWaitMs ?? LIST_WAIT_MS;
    this.loginTimeoutMs = options.loginTimeoutMs ?? LOGIN_TIMEOUT_MS;
    this.observedLocks = options.observedLocks ?? new ObservedLocks();
  }

  /**
   * Changes whenever this agent may have changed what is on a token (a read-write session ended) or
   * the set of tokens changed: caches of token contents compare it to know they are stale.
   */
  get generation(): number {
    return this.#generation;
  }

  /** Read the slots of one module; `reinitialize` lets modules that need it notice new tokens. */
  async scanModule(module: LoadedModule, reinitialize = false): Promise<TokenLocation[]> {
    const { slots } = await module.host.call('listSlots', { reinitialize });
    const levels = identityLevels(slots);
    return slots.map((slot, i) => this.locate(module, slot, levels[i]!));
  }

  private locate(module: LoadedModule, slot: RawSlot, level: IdentityLevel): TokenLocation {
    const loc = locationOf(module, slot, level, this.observedLocks);
    this.locations.set(loc.token.tokenId, loc);
    return loc;
  }

  /**
   * Where a token read straight from the host (after C_InitToken) is now listed: by what it now
   * reads (serial, label, slot description), and by its slot only when those repeat. Not a lookup
   * by tokenId, which would take any token whose serial repeats this one's.
   */
  async relocate(module: LoadedModule, slot: RawSlot): Promise<TokenLocation> {
    await this.listTokens();
    const same = (l: TokenLocation) =>
      l.module.spec.id === module.spec.id &&
      l.token.serialNumber === slot.token.serialNumber &&
      l.token.label === slot.token.label &&
      l.token.slotDescription === slot.slotDescription &&
      l.token.manufacturer === slot.token.manufacturerId &&
      l.token.model === slot.token.model;
    const candidates = [...this.locations.values()].filter(same);
    const found =
      candidates.length === 1 ? candidates[0] : candidates.find((l) => l.ref.slotId === slot.slotId);
    if (!found) throw new KelidError('ERR_TOKEN_REMOVED', 'the token is no longer connected');
    return found;
  }

  /**
   * Every token on every loaded module (modules that are down are skipped and logged). A module busy
   * in a long synchronous call (a PIN typed on a reader's keypad, a hung vendor library) does not hold
   * up the others: past {@link TokenServiceOptions.listWaitMs} its tokens as last seen are reported,
   * and its answer, when it comes, updates them.
   */
  async listTokens(options: { reinitialize?: boolean } = {}): Promise<Token[]> {
    const results = await Promise.all(
      this.source.modules().map(async (m) => {
        const scan = this.scanModule(m, options.reinitialize && m.spec.reinitializeToDetectTokens === true);
        let timer: NodeJS.Timeout | undefined;
        const late = new Promise<'late'>((resolve) => {
          timer = setTimeout(() => resolve('late'), this.listWaitMs);
        });
        try {
          const r = await Promise.race([scan, late]);
          if (r !== 'late') return r;
          scan.catch(() => undefined);
          this.log.debug({ module: m.spec.id }, 'module slow to list tokens: last known tokens reported');
          return [...this.locations.values()].filter((l) => l.module.spec.id === m.spec.id);
        } catch (e) {
          this.log.warn(
            { module: m.spec.id, err: isKelidError(e) ? e.code : String(e) },
            'cannot list tokens',
          );
          return [];
        } finally {
          clearTimeout(timer);
        }
      }),
    );
    const all = results.flat();
    const live = new Set(all.map((l) => l.token.tokenId));
    for (const id of this.locations.keys()) {
      if (live.has(id)) continue;
      this.locations.delete(id);
      this.#generation++;
    }
    for (const id of this.mechanismCache.keys()) if (!live.has(id)) this.mechanismCache.delete(id);
    return all.map((l) => l.token);
  }

  /** Locate a token by id, rescanning once if it is not where we last saw it. */
  async locateToken(tokenId: string): Promise<TokenLocation> {
    const cached = this.locations.get(tokenId);
    if (cached?.module.isReady()) {
      try {
        const slot = await cached.module.host.call('tokenInfo', { token: cached.ref });
        const loc = this.locate(cached.module, slot, cached.level);
        if (loc.token.tokenId === tokenId) return loc;
      } catch (e) {
        if (!isKelidError(e, 'ERR_TOKEN_REMOVED')) throw e;
      }
    }
    await this.listTokens({ reinitialize: true });
    const found = this.locations.get(tokenId);
    if (!found) throw notFound(tokenId);
    return found;
  }

  /** The token as last read, without reading it again; undefined when it is not known. */
  knownToken(tokenId: string): Token | undefined {
    return this.locations.get(tokenId)?.token;
  }

  async getToken(tokenId: string): Promise<Token> {
    return (await this.locateToken(tokenId)).token;
  }

  /**
   * Run `fn` with a session on the token. The session is returned to the host's pool afterwards and
   * any login made through it is logged out (login isolation: one consented operation, one login).
   */
  async withSession<T>(
    tokenId: string,
    options: { readWrite: boolean },
    fn: (session: TokenSession) => Promise<T>,
  ): Promise<T> {
    const loc = await this.locateToken(tokenId);
    const { sessionId } = await loc.module.host.call('openSession', {
      token: loc.ref,
      readWrite: options.readWrite,
    });
    const session = new TokenSession(
      loc,
      sessionId,
      this.log,
      this.mechanismCache,
      this.loginLocks,
      this.loginTimeoutMs,
      this.observedLocks,
    );
    try {
      return await fn(session);
    } finally {
      if (options.readWrite) this.#generation++;
      await session.close();
    }
  }

  /**
   * Run `fn` logged in on the token, with what `options.find` found after the login. The token's
   * last known location is used as it is: the module host reads the token (its PIN state, that it is
   * still this token) in the same round trip as the session, the login and the searches, and the
   * logout goes with closing the session. A token no longer where it was is looked for once more
   * (before any login was tried); a token that now reads as another one fails with ERR_TOKEN_REMOVED.
   */
  async withLogin<T>(
    tokenId: string,
    options: LoginOptions,
    fn: (session: TokenSession, found: FoundObject[][]) => Promise<T>,
  ): Promise<T> {
    const relocate = (): Promise<TokenLocation> =>
      this.locateToken(tokenId).catch((err: unknown) => {
        throw isKelidError(err) ? beforeLogin(err) : err;
      });
    let loc = this.locations.get(tokenId);
    if (!loc?.module.isReady()) loc = await relocate();
    let opened: { session: TokenSession; found: FoundObject[][] };
    try {
      opened = await this.openLogin(loc, options);
    } catch (e) {
      if (!isKelidError(e, 'ERR_TOKEN_REMOVED') || !failedBeforeLogin(e)) throw e;
      loc = await relocate();
      opened = await this.openLogin(loc, options);
    }
    try {
      return await fn(opened.session, opened.found);
    } finally {
      if (options.readWrite) this.#generation++;
      await opened.session.close();
    }
  }

  private async openLogin(
    loc: TokenLocation,
    options: LoginOptions,
  ): Promise<{ session: TokenSession; found: FoundObject[][] }> {
    const { role, pin } = options;
    const release = await this.loginLocks.acquire(`${loc.module.spec.id}\u0000${loc.ref.serial}`);
    let session: TokenSession | undefined;
    try {
      // A lockout only C_Login reported (tpm2-pkcs11) is not in the flags: refuse before the module.
      const known = this.observedLocks.apply(loc.module, loc.token);
      const knownState = pinOf(known, role);
      if (knownState.locked) throw lockedError(loc.module, role, knownState);
      const requireFlags =
        CKF.TOKEN_INITIALIZED |
        (role === 'user' ? CKF.USER_PIN_INITIALIZED : 0) |
        (pin === null ? CKF.PROTECTED_AUTHENTICATION_PATH : 0);
      const refuseFlags = role === 'user' ? CKF.USER_PIN_LOCKED : CKF.SO_PIN_LOCKED;
      let result: HostMethods['openLogin']['result'];
      try {
        result = await loc.module.host.call(
          'openLogin',
          {
            token: loc.ref,
            readWrite: options.readWrite,
            userType: role,
            pin,
            requireFlags,
            refuseFlags,
            find: options.find ?? [],
          },
          { timeoutMs: this.loginTimeoutMs },
        );
      } catch (e) {
        if (isKelidError(e, 'ERR_TOKEN_REMOVED')) {
          // The host found no token for this reference: no login was tried.
          throw beforeLogin(e);
        }
        const reread = async (): Promise<PinState | undefined> => {
          try {
            const slot = await loc.module.host.call('tokenInfo', { token: loc.ref });
            const t = this.locate(loc.module, slot, loc.level).token;
            return pinOf(t, role);
          } catch {
            return undefined;
          }
        };
        throw await loginFailure(
          e,
          loc.module,
          loc.token.tokenId,
          role,
          knownState,
          reread,
          this.observedLocks,
        );
      }
      const now = locationOf(loc.module, result.slot, loc.level, this.observedLocks);
      if (now.token.tokenId !== loc.token.tokenId) {
        // Another token answers to this reference now: never sign with it.
        if (result.sessionId !== undefined)
          await loc.module.host
            .call('logoutClose', { sessionId: result.sessionId, logout: true })
            .catch(() => undefined);
        const removed = new KelidError('ERR_TOKEN_REMOVED', 'the token is no longer connected');
        throw result.sessionId === undefined ? beforeLogin(removed) : removed;
      }
      this.locations.set(now.token.tokenId, now);
      if (result.sessionId === undefined) {
        throw (
          refusedLogin(now.module, now.token, role, pin) ??
          new KelidError('ERR_DEVICE_ERROR', 'the token refused the login', { retriable: true })
        );
      }
      this.observedLocks.clear(now.module, now.token.tokenId, role);
      session = new TokenSession(
        now,
        result.sessionId,
        this.log,
        this.mechanismCache,
        this.loginLocks,
        this.loginTimeoutMs,
        this.observedLocks,
      );
      session.adoptLogin(release);
      const before = pinOf(now.token, role);
      if (before.toBeChanged) {
        await session.close();
        throw pinExpired(role);
      }
      return { session, found: result.found };
    } catch (e) {
      if (session === undefined) release();
      throw e;
    }
  }
}

/** One PKCS#11 session on one token, valid for the duration of a {@link TokenService.withSession} call. */
export class TokenSession {
  private loggedIn = false;
  private closed = false;
  /** Held from the start of a login to its logout (see {@link LoginLocks}). */
  private releaseLogin: (() => void) | undefined;

  constructor(
    private loc: TokenLocation,
    readonly sessionId: number,
    private readonly log: Logger,
    private readonly mechanismCache: Map<string, Promise<HostMethods['mechanisms']['result']>> = new Map(),
    private readonly loginLocks: LoginLocks = new LoginLocks(),
    private readonly loginTimeoutMs = LOGIN_TIMEOUT_MS,
    private readonly observedLocks = new ObservedLocks(),
  ) {}

  get token(): Token {
    return this.loc.token;
  }
  get moduleSpec(): LoadedModule['spec'] {
    return this.loc.module.spec;
  }

  /** Call a host method that takes this session. */
  call<M extends HostMethod>(
    method: M,
    params: Omit<HostMethods[M]['params'], 'sessionId'>,
    options?: { timeoutMs?: number },
  ): Promise<HostMethods[M]['result']> {
    if (this.closed) throw new TypeError('session used after close');
    const result = this.loc.module.host.call(
      method,
      { ...params, sessionId: this.sessionId } as HostMethods[M]['params'],
      options,
    );
    if (method !== 'initPin') return result;
    // A user PIN just set (unblock, init) ends a lockout that only C_Login had reported.
    return result.then((r) => {
      this.observedLocks.clear(this.loc.module, this.loc.token.tokenId, 'user');
      return r;
    });
  }

  /** Re-read CK_TOKEN_INFO (PIN flags change with every attempt). */
  async refresh(): Promise<Token> {
    const slot = await this.loc.module.host.call('tokenInfo', { token: this.loc.ref });
    this.loc = locationOf(this.loc.module, slot, this.loc.level, this.observedLocks);
    return this.loc.token;
  }

  mechanisms(): Promise<HostMethods['mechanisms']['result']> {
    const id = this.loc.token.tokenId;
    let cached = this.mechanismCache.get(id);
    if (!cached) {
      cached = this.loc.module.host.call('mechanisms', { token: this.loc.ref });
      cached.catch(() => this.mechanismCache.delete(id));
      this.mechanismCache.set(id, cached);
    }
    return cached;
  }

  /**
   * Log in after reading the PIN flags: a locked PIN fails without calling C_Login (no attempt is
   * spent); a wrong PIN fails with the flags read after the attempt. Never retried. A `null` PIN
   * logs in through the token's PIN pad.
   */
  async login(role: LoginRole, pin: PinEntry): Promise<void> {
    if (this.closed) throw new TypeError('session used after close');
    this.releaseLogin ??= await this.loginLocks.acquire(
      `${this.loc.module.spec.id}\u0000${this.loc.ref.serial}`,
    );
    try {
      await this.loginHoldingLock(role, pin);
    } catch (e) {
      if (!this.loggedIn) this.unlockLogin();
      throw e;
    }
  }

  /** The session was opened logged in ({@link TokenService.withLogin}): `release` ends the login lock. */
  adoptLogin(release: () => void): void {
    this.loggedIn = true;
    this.releaseLogin = release;
  }

  private unlockLogin(): void {
    const release = this.releaseLogin;
    this.releaseLogin = undefined;
    release?.();
  }

  private async loginHoldingLock(role: LoginRole, pin: PinEntry): Promise<void> {
    const token = await this.refresh();
    const refused = refusedLogin(this.loc.module, token, role, pin);
    if (refused) throw refused;
    const before = pinOf(token, role);
    try {
      await this.call('login', { userType: role, pin }, { timeoutMs: this.loginTimeoutMs });
    } catch (e) {
      throw await loginFailure(
        e,
        this.loc.module,
        token.tokenId,
        role,
        before,
        () => this.pinState(role),
        this.observedLocks,
      );
    }
    this.observedLocks.clear(this.loc.module, token.tokenId, role);
    this.loggedIn = true;
    if (before.toBeChanged) {
      await this.logout();
      throw pinExpired(role);
    }
  }

  private async pinState(role: LoginRole): Promise<PinState | undefined> {
    try {
      const t = await this.refresh();
      return pinOf(t, role);
    } catch {
      return undefined;
    }
  }

  async logout(): Promise<void> {
    if (!this.loggedIn) return;
    this.loggedIn = false;
    try {
      await this.call('logout', {});
    } catch (e) {
      this.log.debug({ err: isKelidError(e) ? e.code : String(e) }, 'logout failed (token gone?)');
    } finally {
      this.unlockLogin();
    }
  }

  /** Log out (when logged in) and close, in one round trip. */
  async close(): Promise<void> {
    if (this.closed) return;
    const logout = this.loggedIn;
    this.loggedIn = false;
    this.closed = true;
    try {
      await this.loc.module.host.call('logoutClose', { sessionId: this.sessionId, logout });
    } catch (e) {
      // host restarted or token gone: the session (and its login) is gone with it
      this.log.debug(
        { err: isKelidError(e) ? e.code : String(e) },
        'closing the session failed (token gone?)',
      );
    } finally {
      this.unlockLogin();
    }
  }
}
