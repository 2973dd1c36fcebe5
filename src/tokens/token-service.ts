import { KelidError, isKelidError } from '../model/errors.js';
import { silentLogger } from '../log.js';
import type { Logger } from '../log.js';
import type { HostMethod, HostMethods, RawSlot, TokenRef } from '../pkcs11/host-protocol.js';
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

  private unlockLogin(): void {
    const release = this.releaseLogin;
    this.releaseLogin = undefined;
    release?.();
  }

  private async loginHoldingLock(role: LoginRole, pin: PinEntry): Promise<void> {
    const token = await this.refresh();
    if (!token.initialized) throw new KelidError('ERR_TOKEN_NOT_INITIALIZED', 'the token is not initialized');
    if (role === 'user' && !token.userPinInitialized) {
      throw new KelidError('ERR_TOKEN_NOT_INITIALIZED', 'the user PIN of this token has not been set');
    }
    const before = role === 'user' ? token.userPin : token.soPin;
    if (before.locked) throw this.lockedError(role, before);
    if (pin === null && !token.protectedAuthenticationPath) {
      // Consent was given for a PIN pad and the token no longer reports one (moved to another reader).
      throw new KelidError('ERR_DEVICE_ERROR', 'the token no longer reports a PIN pad: try again', {
        retriable: true,
      });
    }
    try {
      await this.call('login', { userType: role, pin }, { timeoutMs: this.loginTimeoutMs });
    } catch (e) {
      if (isKelidError(e, 'ERR_PIN_LOCKED')) {
        const after = await this.pinState(role);
        if (!after?.locked) {
          // Locked though the flags say not (tpm2-pkcs11): report it from what the module said.
          this.observedLocks.note(this.loc.module, token.tokenId, role);
          await this.pinState(role);
        }
        throw this.lockedError(role, { ...(after ?? before), locked: true });
      }
      if (isKelidError(e, 'ERR_PIN_INCORRECT')) {
        const after = await this.pinState(role);
        if (after?.locked) throw this.lockedError(role, after);
        throw new KelidError(e.code, e.message, { data: { role, pin: after ?? before } });
      }
      throw e;
    }
    this.observedLocks.clear(this.loc.module, token.tokenId, role);
    this.loggedIn = true;
    if (before.toBeChanged) {
      // Logged in, but the token wants a new PIN first: the caller must run the PIN change flow.
      await this.logout();
      throw new KelidError('ERR_PIN_EXPIRED', 'the PIN must be changed before the token can be used', {
        data: { role },
      });
    }
  }

  /** The advice depends on the module: a device-wide lockout is not undone by the SO-PIN. */
  private lockedError(role: LoginRole, pin: PinState): KelidError {
    if (deviceWide(this.loc.module)) {
      return new KelidError(
        'ERR_PIN_LOCKED',
        `the ${role === 'user' ? 'user PIN' : 'SO-PIN'} is locked by the device-wide lockout of module ` +
          `"${this.loc.module.spec.id}" (too many wrong PINs on any of its tokens): the SO-PIN cannot ` +
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

  private async pinState(role: LoginRole): Promise<PinState | undefined> {
    try {
      const t = await this.refresh();
      return role === 'user' ? t.userPin : t.soPin;
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

  async close(): Promise<void> {
    if (this.closed) return;
    await this.logout();
    this.unlockLogin();
    this.closed = true;
    try {
      await this.loc.module.host.call('closeSession', { sessionId: this.sessionId });
    } catch {
      // host restarted or token gone: the session is gone with it
    }
  }
}
