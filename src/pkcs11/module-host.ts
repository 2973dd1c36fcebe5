// A module host: one child process per PKCS#11 module (DESIGN.md "Process model"). A vendor library
// that crashes or hangs takes down only this process; the agent restarts it. The process entry is
// src/cli/module-host.ts (it injects the test hooks); this file and the rest of src/pkcs11/ are the
// only code that imports pkcs11js.

import type { IParams, Mechanism, Template } from 'pkcs11js';
import { KelidError } from '../model/errors.js';
import type { HostHooks } from '../model/test-hooks.js';
import { hasCkr, mapPkcs11Error } from './ckr.js';
import { hostHandler } from './host-handlers.js';
import type { HostHandlers } from './host-handlers.js';
import type {
  AttrTemplateItem,
  FoundObject,
  HostEvent,
  HostMethods,
  HostRequest,
  HostResponse,
  MechanismSpec,
  RawSlot,
  TokenRef,
  UserType,
} from './host-protocol.js';
import { pkcs11js } from './pkcs11js.js';

type Handle = Buffer;

const hex = (h: Handle): string => h.toString('hex');
const unhex = (s: string): Handle => Buffer.from(s, 'hex');
const trim = (s: string): string => s.replace(/[\s\0]+$/u, '');
/** How long an exiting host waits for running calls before it exits without C_Finalize. */
const FINALIZE_WAIT_MS = 1500;
/** Below this, a signature is made synchronously in signMany (see there). */
const FAST_SIGNATURE_MS = 1;
/** signMany yields to the event loop after this much synchronous work. */
const SYNC_SLICE_MS = 5;

interface SessionEntry {
  handle: Handle;
  slot: Handle;
  readWrite: boolean;
  leased: boolean;
  /** An operation failed in it: it may still be active in a module that does not end it (not pooled). */
  failed?: boolean;
}

class ModuleHostProcess {
  private readonly p11 = new pkcs11js.PKCS11();
  private sessions = new Map<number, SessionEntry>();
  private nextSessionId = 1;
  /** Slots where this process holds a login (PKCS#11 login state is per application and token). */
  private loggedIn = new Set<string>();
  private initialized = false;

  constructor(private readonly path: string) {}

  load(): void {
    this.p11.load(this.path);
    this.initialize();
  }

  private initialize(): void {
    try {
      // CKF_OS_LOCKING_OK: without it SoftHSM disables its mutexes while pkcs11js runs the Async
      // variants on libuv threads.
      this.p11.C_Initialize({ flags: pkcs11js.CKF_OS_LOCKING_OK });
    } catch (e) {
      if (!hasCkr(e, 'CKR_CRYPTOKI_ALREADY_INITIALIZED')) throw e;
    }
    this.initialized = true;
  }

  /**
   * Orderly exit: C_Finalize, so that modules which release device resources only there (tpm2-pkcs11
   * left TPM transient objects loaded after a failed keygen) let go of them.
   */
  shutdown(): void {
    this.finalize();
  }

  private finalize(): void {
    this.sessions.clear();
    this.loggedIn.clear();
    if (this.initialized) {
      try {
        this.p11.C_Finalize();
      } catch {
        // A module whose device vanished may fail to finalize; re-initializing is what matters.
      }
    }
    this.initialized = false;
  }

  private get idle(): boolean {
    for (const s of this.sessions.values()) if (s.leased) return false;
    return this.loggedIn.size === 0;
  }

  moduleInfo(): HostMethods['moduleInfo']['result'] {
    const info = this.p11.C_GetInfo();
    const v = (x: { major: number; minor: number }) => `${x.major}.${x.minor}`;
    return {
      manufacturer: trim(info.manufacturerID),
      libraryDescription: trim(info.libraryDescription),
      libraryVersion: v(info.libraryVersion),
      cryptokiVersion: v(info.cryptokiVersion),
    };
  }

  private readSlot(slot: Handle): RawSlot {
    const si = this.p11.C_GetSlotInfo(slot);
    const ti = this.p11.C_GetTokenInfo(slot);
    return {
      slotId: hex(slot),
      slotDescription: trim(si.slotDescription),
      slotManufacturer: trim(si.manufacturerID),
      slotFlags: si.flags,
      token: {
        label: trim(ti.label),
        manufacturerId: trim(ti.manufacturerID),
        model: trim(ti.model),
        serialNumber: trim(ti.serialNumber),
        flags: ti.flags,
        minPinLen: ti.minPinLen,
        maxPinLen: ti.maxPinLen,
      },
    };
  }

  listSlots(params: HostMethods['listSlots']['params']): HostMethods['listSlots']['result'] {
    let reinitialized = false;
    // Modules such as SoftHSM and p11-kit only notice new tokens after finalize + initialize; do it
    // only when nothing is in flight and no login would be lost.
    if ((params.reinitialize || !this.initialized) && this.idle) {
      this.finalize();
      this.initialize();
      reinitialized = true;
    }
    const slots: RawSlot[] = [];
    for (const slot of this.p11.C_GetSlotList(true)) {
      try {
        slots.push(this.readSlot(slot));
      } catch (e) {
        // A present but unreadable token (unrecognized card, device error) is skipped this round.
        if (!hasCkr(e, 'CKR_TOKEN_NOT_RECOGNIZED') && !hasCkr(e, 'CKR_TOKEN_NOT_PRESENT')) {
          if (hasCkr(e, 'CKR_DEVICE_ERROR') || hasCkr(e, 'CKR_GENERAL_ERROR')) continue;
          throw e;
        }
      }
    }
    return { slots, reinitialized };
  }

  /**
   * Find the slot of a token: the remembered slot id first, then by serial (slot ids are not stable),
   * and by label and slot description too when the serial does not tell tokens apart. Never another
   * token: when two slots fit, neither is taken.
   */
  private resolve(ref: TokenRef): Handle {
    if (!this.initialized) this.initialize();
    const fits = (slot: Handle): boolean => {
      const ti = this.p11.C_GetTokenInfo(slot);
      if (trim(ti.serialNumber) !== ref.serial) return false;
      if (ref.label !== undefined && trim(ti.label) !== ref.label) return false;
      if (ref.slotDescription !== undefined) {
        return trim(this.p11.C_GetSlotInfo(slot).slotDescription) === ref.slotDescription;
      }
      return true;
    };
    const remembered = unhex(ref.slotId);
    try {
      if (fits(remembered)) return remembered;
    } catch (e) {
      if (hasCkr(e, 'CKR_DEVICE_ERROR')) throw e;
    }
    if (ref.serial !== '' && ref.slotBound !== true) {
      const found: Handle[] = [];
      for (const slot of this.p11.C_GetSlotList(true)) {
        try {
          if (fits(slot)) found.push(slot);
        } catch {
          // keep looking
        }
      }
      if (found.length === 1) return found[0]!;
    }
    throw new KelidError('ERR_TOKEN_REMOVED', 'the token is no longer connected');
  }

  tokenInfo(p: HostMethods['tokenInfo']['params']): RawSlot {
    return this.readSlot(this.resolve(p.token));
  }

  mechanisms(p: HostMethods['mechanisms']['params']): HostMethods['mechanisms']['result'] {
    const slot = this.resolve(p.token);
    return this.p11.C_GetMechanismList(slot).map((type) => {
      const info = this.p11.C_GetMechanismInfo(slot, type);
      return { type, minKeySize: info.minKeySize, maxKeySize: info.maxKeySize, flags: info.flags };
    });
  }

  initToken(p: HostMethods['initToken']['params']): RawSlot {
    const slot = this.resolve(p.token);
    const key = hex(slot);
    for (const s of this.sessions.values()) {
      if (hex(s.slot) === key && s.leased) {
        throw new KelidError('ERR_BUSY', 'the token is in use by another operation');
      }
    }
    this.closeIdleSessions(slot);
    // The label must be exactly 32 bytes padded with blanks (pkcs11js passes the string's own length).
    const label = Buffer.from(p.label, 'utf8');
    if (label.length > 32)
      throw new KelidError('ERR_INVALID_INPUT', 'the token label is longer than 32 bytes');
    const padded = p.label + ' '.repeat(32 - label.length);
    this.p11.C_InitToken(slot, p.soPin, padded);
    this.loggedIn.delete(key);
    return this.readSlot(slot);
  }

  private closeIdleSessions(slot: Handle): void {
    const key = hex(slot);
    for (const [id, s] of this.sessions) {
      if (hex(s.slot) === key) this.sessions.delete(id);
    }
    try {
      this.p11.C_CloseAllSessions(slot);
    } catch {
      // nothing open
    }
  }

  private closeIdleReadOnly(slot: Handle): void {
    const key = hex(slot);
    for (const [id, s] of this.sessions) {
      if (!s.leased && !s.readWrite && hex(s.slot) === key) {
        this.sessions.delete(id);
        try {
          this.p11.C_CloseSession(s.handle);
        } catch {
          // already gone
        }
      }
    }
  }

  openSession(p: HostMethods['openSession']['params']): { sessionId: number } {
    const slot = this.resolve(p.token);
    const key = hex(slot);
    // Session pool: reuse an idle session of the same token and kind.
    for (const [id, s] of this.sessions) {
      if (!s.leased && hex(s.slot) === key && s.readWrite === p.readWrite) {
        s.leased = true;
        return { sessionId: id };
      }
    }
    const flags = pkcs11js.CKF_SERIAL_SESSION | (p.readWrite ? pkcs11js.CKF_RW_SESSION : 0);
    const handle = this.p11.C_OpenSession(slot, flags);
    const id = this.nextSessionId++;
    this.sessions.set(id, { handle, slot, readWrite: p.readWrite, leased: true });
    return { sessionId: id };
  }

  private session(id: number): SessionEntry {
    const s = this.sessions.get(id);
    if (!s) throw new KelidError('ERR_TOKEN_REMOVED', 'the token session was lost');
    return s;
  }

  closeSession(p: HostMethods['closeSession']['params']): Record<string, never> {
    const s = this.sessions.get(p.sessionId);
    if (!s) return {};
    if (s.failed) {
      this.sessions.delete(p.sessionId);
      try {
        this.p11.C_CloseSession(s.handle);
      } catch {
        // already gone
      }
      return {};
    }
    try {
      // A session that still answers goes back to the pool.
      this.p11.C_GetSessionInfo(s.handle);
      s.leased = false;
    } catch {
      this.sessions.delete(p.sessionId);
    }
    return {};
  }

  login(p: HostMethods['login']['params']): Record<string, never> {
    const s = this.session(p.sessionId);
    const type = userTypeValue(p.userType);
    // An SO login fails while this application holds any read-only session on the token
    // (CKR_SESSION_READ_ONLY_EXISTS): close our idle pooled ones first.
    if (p.userType === 'so') this.closeIdleReadOnly(s.slot);
    const pin = pinArgument(p.pin);
    try {
      this.p11.C_Login(s.handle, type, pin);
    } catch (e) {
      // A login left over from an interrupted operation: drop it and log in again, so the PIN just
      // typed is really checked. The first call did not check it, so this is not a PIN retry.
      if (p.userType !== 'context' && hasCkr(e, 'CKR_USER_ALREADY_LOGGED_IN')) {
        this.p11.C_Logout(s.handle);
        this.p11.C_Login(s.handle, type, pin);
      } else {
        throw e;
      }
    }
    if (p.userType !== 'context') this.loggedIn.add(hex(s.slot));
    return {};
  }

  logout(p: HostMethods['logout']['params']): Record<string, never> {
    const s = this.session(p.sessionId);
    try {
      this.p11.C_Logout(s.handle);
    } catch (e) {
      if (!hasCkr(e, 'CKR_USER_NOT_LOGGED_IN')) throw e;
    } finally {
      this.loggedIn.delete(hex(s.slot));
    }
    return {};
  }

  openLogin(p: HostMethods['openLogin']['params']): HostMethods['openLogin']['result'] {
    const slot = this.readSlot(this.resolve(p.token));
    const flags = slot.token.flags;
    if ((flags & p.requireFlags) !== p.requireFlags || (flags & p.refuseFlags) !== 0) {
      return { slot, found: [] };
    }
    const { sessionId } = this.openSession({ token: p.token, readWrite: p.readWrite });
    try {
      this.login({ sessionId, userType: p.userType, pin: p.pin });
    } catch (e) {
      this.closeSession({ sessionId });
      throw e;
    }
    try {
      const found = p.find.map((f) => this.findObjects({ sessionId, ...f }));
      return { slot, sessionId, found };
    } catch (e) {
      this.logoutClose({ sessionId, logout: true });
      throw e;
    }
  }

  logoutClose(p: HostMethods['logoutClose']['params']): Record<string, never> {
    if (p.logout && this.sessions.has(p.sessionId)) {
      try {
        this.logout({ sessionId: p.sessionId });
      } catch {
        // token gone: the session goes with it
      }
    }
    return this.closeSession({ sessionId: p.sessionId });
  }

  initPin(p: HostMethods['initPin']['params']): Record<string, never> {
    this.p11.C_InitPIN(this.session(p.sessionId).handle, p.pin);
    return {};
  }

  setPin(p: HostMethods['setPin']['params']): Record<string, never> {
    this.p11.C_SetPIN(this.session(p.sessionId).handle, p.oldPin, p.newPin);
    return {};
  }

  private readAttributes(session: Handle, handle: Handle, types: number[]): FoundObject {
    const values: Record<number, Uint8Array | null> = {};
    if (types.length === 0) return { handle: hex(handle), values };
    try {
      const got = this.p11.C_GetAttributeValue(
        session,
        handle,
        types.map((type) => ({ type })),
      );
      for (const a of got) values[a.type] = a.value instanceof Buffer ? new Uint8Array(a.value) : null;
    } catch {
      // One sensitive or unknown attribute fails the whole call: read them one by one.
      for (const type of types) {
        try {
          const [a] = this.p11.C_GetAttributeValue(session, handle, [{ type }]);
          values[type] = a?.value instanceof Buffer ? new Uint8Array(a.value) : null;
        } catch (e) {
          if (hasCkr(e, 'CKR_OBJECT_HANDLE_INVALID') || hasCkr(e, 'CKR_DEVICE_ERROR')) throw e;
          values[type] = null;
        }
      }
    }
    return { handle: hex(handle), values };
  }

  findObjects(p: HostMethods['findObjects']['params']): FoundObject[] {
    const s = this.session(p.sessionId);
    const handles = this.find(s.handle, p.template, p.limit ?? 10_000);
    return handles.map((h) => this.readAttributes(s.handle, h, p.attributes));
  }

  private find(session: Handle, template: AttrTemplateItem[], limit: number): Handle[] {
    this.p11.C_FindObjectsInit(session, toTemplate(template));
    try {
      const out: Handle[] = [];
      while (out.length < limit) {
        const batch = this.p11.C_FindObjects(session, Math.min(64, limit - out.length));
        if (batch.length === 0) break;
        out.push(...batch);
      }
      return out;
    } finally {
      this.p11.C_FindObjectsFinal(session);
    }
  }

  getAttributes(p: HostMethods['getAttributes']['params']): FoundObject {
    const s = this.session(p.sessionId);
    return this.readAttributes(s.handle, unhex(p.handle), p.attributes);
  }

  setAttributes(p: HostMethods['setAttributes']['params']): Record<string, never> {
    const s = this.session(p.sessionId);
    this.p11.C_SetAttributeValue(s.handle, unhex(p.handle), toTemplate(p.template));
    return {};
  }

  createObject(p: HostMethods['createObject']['params']): { handle: string } {
    const s = this.session(p.sessionId);
    const classAttr = p.template.find((a) => a.type === pkcs11js.CKA_CLASS);
    const probe = classAttr ? [classAttr] : [];
    const before = new Set(this.find(s.handle, probe, 100_000).map(hex));
    try {
      return { handle: hex(this.p11.C_CreateObject(s.handle, toTemplate(p.template))) };
    } catch (e) {
      // SoftHSM creates the object before validating the template and leaves it behind on failure:
      // destroy whatever appeared during this failed call.
      try {
        for (const h of this.find(s.handle, probe, 100_000)) {
          if (!before.has(hex(h))) this.p11.C_DestroyObject(s.handle, h);
        }
      } catch {
        // best effort; the original error is what the caller needs
      }
      throw e;
    }
  }

  destroyObject(p: HostMethods['destroyObject']['params']): Record<string, never> {
    this.p11.C_DestroyObject(this.session(p.sessionId).handle, unhex(p.handle));
    return {};
  }

  async generateKeyPair(
    p: HostMethods['generateKeyPair']['params'],
  ): Promise<HostMethods['generateKeyPair']['result']> {
    const s = this.session(p.sessionId);
    const pair = await this.p11.C_GenerateKeyPairAsync(
      s.handle,
      toMechanism(p.mechanism),
      toTemplate(p.publicTemplate),
      toTemplate(p.privateTemplate),
    );
    return { publicKey: hex(pair.publicKey), privateKey: hex(pair.privateKey) };
  }

  async sign(p: HostMethods['sign']['params']): Promise<HostMethods['sign']['result']> {
    const s = this.session(p.sessionId);
    try {
      this.p11.C_SignInit(s.handle, toMechanism(p.mechanism), unhex(p.key));
      if (p.contextPin !== undefined) {
        // CKA_ALWAYS_AUTHENTICATE keys: a context-specific login between SignInit and Sign.
        this.p11.C_Login(s.handle, pkcs11js.CKU_CONTEXT_SPECIFIC, pinArgument(p.contextPin));
      }
      const out = await this.p11.C_SignAsync(s.handle, Buffer.from(p.data), Buffer.alloc(1024));
      return { signature: new Uint8Array(out) };
    } catch (e) {
      // The spec ends the operation on a failed C_Sign, but not every module does: a pooled session
      // with a signing operation still active would fail every later call with CKR_OPERATION_ACTIVE.
      s.failed = true;
      throw e;
    }
  }

  async signMany(p: HostMethods['signMany']['params']): Promise<HostMethods['signMany']['result']> {
    const s = this.session(p.sessionId);
    const mechanism = toMechanism(p.mechanism);
    const key = unhex(p.key);
    const out = Buffer.alloc(1024);
    const signatures: Uint8Array[] = [];
    const start = performance.now();
    // A token that signs in well under a millisecond (software, fast cards) is cheaper to call
    // synchronously than through the thread pool, and blocks this loop for at most the budget; a
    // slow one (a USB token: tens of ms per signature) stays on the thread pool so the host keeps
    // answering. The first signature is always async, and it is measured again after each one.
    let fast = false;
    let slice = start;
    try {
      for (const item of p.data) {
        if (performance.now() - slice >= SYNC_SLICE_MS) {
          // Let other requests to this host (other tokens, hot-plug polling) in between.
          await new Promise((resolve) => setImmediate(resolve));
          slice = performance.now();
        }
        const t0 = performance.now();
        this.p11.C_SignInit(s.handle, mechanism, key);
        const sig = fast
          ? this.p11.C_Sign(s.handle, Buffer.from(item), out)
          : await this.p11.C_SignAsync(s.handle, Buffer.from(item), out);
        signatures.push(new Uint8Array(sig)); // its own exact buffer (sig is a view into `out`)
        const now = performance.now();
        fast = now - t0 < FAST_SIGNATURE_MS;
        if (now - start >= p.budgetMs) break;
      }
    } catch (e) {
      s.failed = true; // as in sign(): the operation may still be active
      throw e;
    }
    return { signatures };
  }
}

/**
 * The PIN argument of C_Login. For a PIN pad (`null`) PKCS#11 passes no PIN; pkcs11js cannot pass NULL
 * and sends an empty string (non-NULL, length 0), which PIN pad modules take the same way (OpenSC
 * refuses only a NULL PIN with a non-zero length).
 */
function pinArgument(pin: string | null): string {
  return pin ?? '';
}

function userTypeValue(t: UserType): number {
  switch (t) {
    case 'so':
      return pkcs11js.CKU_SO;
    case 'user':
      return pkcs11js.CKU_USER;
    case 'context':
      return pkcs11js.CKU_CONTEXT_SPECIFIC;
  }
}

function toTemplate(t: AttrTemplateItem[]): Template {
  return t.map((a) => {
    if (a.value === undefined) return { type: a.type };
    if (a.value instanceof Uint8Array) return { type: a.type, value: Buffer.from(a.value) };
    return { type: a.type, value: a.value };
  });
}

function toMechanism(m: MechanismSpec): Mechanism {
  if (m.parameter === undefined) return { mechanism: m.mechanism };
  if (m.parameter instanceof Uint8Array)
    return { mechanism: m.mechanism, parameter: Buffer.from(m.parameter) };
  return { mechanism: m.mechanism, parameter: m.parameter as IParams };
}

/**
 * The dispatch table: one entry per host method, checked against HostMethods by its type (see
 * host-handlers.ts). Handlers are arrow functions, so no method of the class is reachable by name.
 */
function handlersFor(host: ModuleHostProcess, hooks: HostHooks | undefined): HostHandlers {
  return {
    moduleInfo: () => host.moduleInfo(),
    listSlots: (p) => host.listSlots(p),
    tokenInfo: (p) => host.tokenInfo(p),
    mechanisms: (p) => host.mechanisms(p),
    initToken: (p) => host.initToken(p),
    openSession: (p) => host.openSession(p),
    closeSession: (p) => host.closeSession(p),
    login: (p) => host.login(p),
    logout: (p) => host.logout(p),
    openLogin: (p) => host.openLogin(p),
    logoutClose: (p) => host.logoutClose(p),
    initPin: (p) => host.initPin(p),
    setPin: (p) => host.setPin(p),
    findObjects: (p) => host.findObjects(p),
    getAttributes: (p) => host.getAttributes(p),
    setAttributes: (p) => host.setAttributes(p),
    createObject: (p) => host.createObject(p),
    destroyObject: (p) => host.destroyObject(p),
    generateKeyPair: (p) => host.generateKeyPair(p),
    sign: (p) => host.sign(p),
    signMany: (p) => host.signMany(p),
    testHang: (p) => {
      if (!hooks) throw new KelidError('ERR_FORBIDDEN', 'test hooks are disabled');
      hooks.hang(p.ms);
      return {};
    },
  };
}

function send(message: HostResponse | HostEvent): void {
  process.send?.(message);
}

/**
 * Run this process as the module host of the PKCS#11 module at `path`, answering the agent over the
 * IPC channel. `hooks` are the test hooks (crash points, hang), given only with KELID_TEST_HOOKS=1.
 */
export function runModuleHost(path: string | undefined, hooks?: HostHooks): void {
  if (!path || !process.send) {
    process.stderr.write('module-host: expected a module path and an IPC channel\n');
    process.exit(2);
  }
  const host = new ModuleHostProcess(path);
  try {
    host.load();
    send({ event: 'ready', info: host.moduleInfo() });
  } catch (e) {
    const err =
      e instanceof Error && !/CKR_/.test(e.message)
        ? new KelidError('ERR_MODULE_FAILED', `cannot load the PKCS#11 module: ${e.message.split('\n')[0]}`)
        : mapPkcs11Error(e, 'C_Initialize');
    send({ event: 'load-failed', error: err.toJSON() });
    setTimeout(() => process.exit(3), 50);
    return;
  }

  const handlers = handlersFor(host, hooks);
  let inFlight = 0;
  process.on('message', (raw: HostRequest) => {
    void (async () => {
      inFlight++;
      try {
        const fn = hostHandler(handlers, raw.method);
        const write = hooks?.beforeWrite(raw.method) ?? 0;
        let result: unknown;
        try {
          result = await fn(raw.params);
        } finally {
          hooks?.afterWrite(raw.method, write);
        }
        send({ id: raw.id, ok: true, result });
      } catch (e) {
        send({ id: raw.id, ok: false, error: mapPkcs11Error(e, `${raw.method}`).toJSON() });
      } finally {
        inFlight--;
      }
    })();
  });
  // The agent went away or stops us: finalize and exit, without lingering holding the token. A call
  // still running on a worker thread (C_SignAsync, C_GenerateKeyPairAsync) gets a moment to end:
  // C_Finalize under a running call is undefined, so past that the host exits without it.
  let exiting = false;
  const exit = (): void => {
    if (exiting) return;
    exiting = true;
    const deadline = Date.now() + FINALIZE_WAIT_MS;
    const attempt = (): void => {
      if (inFlight > 0 && Date.now() < deadline) {
        setTimeout(attempt, 10);
        return;
      }
      if (inFlight === 0) host.shutdown();
      process.exit(0);
    };
    attempt();
  };
  process.on('disconnect', exit);
  process.on('SIGTERM', exit);
  process.on('SIGINT', exit);
}
