// The typed request/response channel between the agent and a module host process. Values cross the
// process boundary with Node's "advanced" (structured clone) serialization, so byte strings are
// Uint8Arrays. Object handles are opaque hex strings valid only inside one host incarnation.

import type { SerializedKelidError } from '../model/errors.js';
import type { ModuleInfo } from '../model/services.js';

export type { ModuleInfo };

export type AttrValue = boolean | number | string | Uint8Array;

export interface AttrTemplateItem {
  type: number;
  value?: AttrValue;
}

export interface MechanismSpec {
  mechanism: number;
  /** Raw parameter bytes, or an RSA-PSS parameter object. */
  parameter?: Uint8Array | { type: number; hashAlg: number; mgf: number; saltLen: number };
}

/** A token as the host sees it: the slot id is valid only in this host incarnation. */
export interface TokenRef {
  slotId: string;
  /** Serial number (trimmed); empty for tokens that are not initialized yet. */
  serial: string;
  /**
   * Set when the serial does not tell this token apart within its module (repeated or empty
   * serials): the token's label and slot description must match too.
   */
  label?: string;
  slotDescription?: string;
  /** Not even those tell it apart: only the remembered slot is this token. */
  slotBound?: boolean;
}

export interface RawTokenInfo {
  label: string;
  manufacturerId: string;
  model: string;
  serialNumber: string;
  flags: number;
  minPinLen: number;
  maxPinLen: number;
}

export interface RawSlot {
  slotId: string;
  slotDescription: string;
  slotManufacturer: string;
  slotFlags: number;
  token: RawTokenInfo;
}

export interface RawMechanism {
  type: number;
  minKeySize: number;
  maxKeySize: number;
  flags: number;
}

export interface FoundObject {
  handle: string;
  /** Attribute type → raw value, or null when the token refused to reveal it. */
  values: Record<number, Uint8Array | null>;
}

export type UserType = 'so' | 'user' | 'context';

/** Every method a module host answers: params and result types. */
export interface HostMethods {
  moduleInfo: { params: Record<string, never>; result: ModuleInfo };
  listSlots: { params: { reinitialize?: boolean }; result: { slots: RawSlot[]; reinitialized: boolean } };
  tokenInfo: { params: { token: TokenRef }; result: RawSlot };
  mechanisms: { params: { token: TokenRef }; result: RawMechanism[] };
  /** Returns the token as it reads after initialization (new serial on some modules). */
  initToken: { params: { token: TokenRef; soPin: string; label: string }; result: RawSlot };
  openSession: { params: { token: TokenRef; readWrite: boolean }; result: { sessionId: number } };
  closeSession: { params: { sessionId: number }; result: Record<string, never> };
  /** `pin: null` logs in through the token's protected authentication path (PIN pad). */
  login: {
    params: { sessionId: number; userType: UserType; pin: string | null };
    result: Record<string, never>;
  };
  logout: { params: { sessionId: number }; result: Record<string, never> };
  /**
   * openSession, C_GetTokenInfo, login and searches in one round trip (a consented operation's start).
   * The token is read before the login: unless its flags hold every bit of `requireFlags` and none of
   * `refuseFlags` (not initialized, PIN locked, PIN pad gone), no login is tried and no session is
   * left open (`sessionId` absent). A failed login closes the session and fails the call as `login`
   * does. `find` runs after the login, in the session.
   */
  openLogin: {
    params: {
      token: TokenRef;
      readWrite: boolean;
      userType: 'user' | 'so';
      /** `null`: through the token's PIN pad. */
      pin: string | null;
      requireFlags: number;
      refuseFlags: number;
      find: Array<{ template: AttrTemplateItem[]; attributes: number[]; limit?: number }>;
    };
    result: { slot: RawSlot; sessionId?: number; found: FoundObject[][] };
  };
  /** logout (when `logout`) and closeSession in one round trip; never fails. */
  logoutClose: { params: { sessionId: number; logout: boolean }; result: Record<string, never> };
  initPin: { params: { sessionId: number; pin: string }; result: Record<string, never> };
  setPin: { params: { sessionId: number; oldPin: string; newPin: string }; result: Record<string, never> };
  findObjects: {
    params: { sessionId: number; template: AttrTemplateItem[]; attributes: number[]; limit?: number };
    result: FoundObject[];
  };
  getAttributes: { params: { sessionId: number; handle: string; attributes: number[] }; result: FoundObject };
  setAttributes: {
    params: { sessionId: number; handle: string; template: AttrTemplateItem[] };
    result: Record<string, never>;
  };
  createObject: { params: { sessionId: number; template: AttrTemplateItem[] }; result: { handle: string } };
  destroyObject: { params: { sessionId: number; handle: string }; result: Record<string, never> };
  generateKeyPair: {
    params: {
      sessionId: number;
      mechanism: MechanismSpec;
      publicTemplate: AttrTemplateItem[];
      privateTemplate: AttrTemplateItem[];
    };
    result: { publicKey: string; privateKey: string };
  };
  sign: {
    params: {
      sessionId: number;
      mechanism: MechanismSpec;
      key: string;
      data: Uint8Array;
      /** For CKA_ALWAYS_AUTHENTICATE keys; `null` through the PIN pad. */
      contextPin?: string | null;
    };
    result: { signature: Uint8Array };
  };
  /**
   * Sign several inputs with one key, one after another in the session, within about `budgetMs` of
   * work: the result holds the signatures of a prefix of `data` (at least one); the caller sends the
   * rest in the next call, and may stop between calls (cancel). Not for CKA_ALWAYS_AUTHENTICATE keys.
   */
  signMany: {
    params: {
      sessionId: number;
      mechanism: MechanismSpec;
      key: string;
      data: Uint8Array[];
      budgetMs: number;
    };
    result: { signatures: Uint8Array[] };
  };
  /** Test hook: block the host's event loop (used to prove the deadline kill). Only with KELID_TEST_HOOKS=1. */
  testHang: { params: { ms: number }; result: Record<string, never> };
}

export type HostMethod = keyof HostMethods;

export interface HostRequest<M extends HostMethod = HostMethod> {
  id: number;
  method: M;
  params: HostMethods[M]['params'];
}

export type HostResponse =
  { id: number; ok: true; result: unknown } | { id: number; ok: false; error: SerializedKelidError };

export type HostEvent =
  { event: 'ready'; info: ModuleInfo } | { event: 'load-failed'; error: SerializedKelidError };

/** What the agent needs from a loaded module: implemented by the host client and by test fakes. */
export interface ModuleHost {
  readonly moduleId: string;
  call<M extends HostMethod>(
    method: M,
    params: HostMethods[M]['params'],
    options?: { timeoutMs?: number },
  ): Promise<HostMethods[M]['result']>;
}
