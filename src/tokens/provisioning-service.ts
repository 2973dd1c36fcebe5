import { KelidError, toKelidError } from '../model/errors.js';
import { checkPin, effectiveRule, normalizePin, normalizePinEntry } from './pin-policy.js';
import type { PinPolicy, PinRule } from './pin-policy.js';
import { createCsr, validateCsrRequest } from '../pki/csr.js';
import type { CsrRequest } from '../pki/csr.js';
import { describeCertificate, parseCertificateInput } from '../pki/certificate.js';
import type { PinEntry } from '../model/services.js';
import type { Certificate, Key, KeyAlgorithm, Token } from '../model/types.js';
import {
  deleteObjects,
  importCertificate,
  listCertificateObjects,
  listCertificates,
} from './certificate-store.js';
import type { DeleteScope } from './certificate-store.js';
import { DEFAULT_DUAL_USE } from '../pki/key-purpose.js';
import type { DualUseMode } from '../pki/key-purpose.js';
import { repairInterruptedWrites } from './interrupted-writes.js';
import type { InterruptedWrites } from './interrupted-writes.js';
import { findSigningKey, generateSigningKey, listPrivateKeys, listPublicKeys } from './key-store.js';
import type { GeneratedKey } from './key-store.js';
import { CKA } from '../pkcs11/templates.js';
import type { TemplateQuirks } from '../pkcs11/templates.js';
import { Pkcs11Signer } from './token-signer.js';
import type { LoginRole, TokenService, TokenSession } from './token-service.js';

const MAX_LABEL_BYTES = 32;

function checkLabel(label: string, what: string): void {
  if (label.trim() === '') throw new KelidError('ERR_INVALID_INPUT', `the ${what} must not be empty`);
  if (Buffer.byteLength(label, 'utf8') > MAX_LABEL_BYTES) {
    throw new KelidError('ERR_INVALID_INPUT', `the ${what} is longer than ${MAX_LABEL_BYTES} bytes (UTF-8)`);
  }
  if (/\p{Cc}/u.test(label))
    throw new KelidError('ERR_INVALID_INPUT', `the ${what} contains control characters`);
}

export interface GenerateKeyRequest {
  algorithm: KeyAlgorithm;
  label?: string;
  alwaysAuthenticate?: boolean;
  /** With a CSR request, the CSR is made under the same session and login. */
  csr?: CsrRequest;
}

/**
 * Crash consistency (docs/crash-consistency.md): every write session under the user PIN first
 * finishes what an interrupted write left (`repairInterruptedWrites`), and each operation orders its
 * writes so that a crash between any two leaves a state the next call accepts and finishes.
 *
 * The provisioning operations behind `tokens.init`, `pin.*`, `keys.*`, `csr.create`,
 * `certificates.import|list` and `objects.delete`. PINs are parameters of one call and go nowhere
 * else; new PINs are checked against the policy before the token is touched.
 */
export class ProvisioningService {
  constructor(
    private readonly tokens: TokenService,
    private readonly policy: PinPolicy,
    /** Config `keyPurpose.dualUse`, for the `allowedUses` of the certificates returned. */
    private readonly dualUse: DualUseMode = DEFAULT_DUAL_USE,
  ) {}

  /** Write sessions open in this process: the repair runs only when it is the only one. */
  private writers = 0;

  private async writeSession<T>(tokenId: string, fn: (s: TokenSession) => Promise<T>): Promise<T> {
    this.writers++;
    try {
      return await this.tokens.withSession(tokenId, { readWrite: true }, fn);
    } finally {
      this.writers--;
    }
  }

  private repair(s: TokenSession): Promise<InterruptedWrites> {
    return repairInterruptedWrites(s, { alone: this.writers === 1 });
  }

  private rule(role: LoginRole, token: Token): PinRule {
    return effectiveRule(
      role === 'user' ? this.policy.user : this.policy.so,
      token.pinLength.min,
      token.pinLength.max,
    );
  }

  /** Check a new PIN for `role` on this token; returns it normalized (Persian/Arabic digits → ASCII). */
  checkNewPin(role: LoginRole, token: Token, pin: string): string {
    const normalized = normalizePin(pin);
    checkPin(normalized, this.rule(role, token));
    return normalized;
  }

  /** The effective PIN rules of a token (for the consent UI). */
  async pinRules(tokenId: string, known?: Token): Promise<{ user: PinRule; so: PinRule }> {
    const token = known?.tokenId === tokenId ? known : await this.tokens.getToken(tokenId);
    return { user: this.rule('user', token), so: this.rule('so', token) };
  }

  /** C_InitToken with the SO-PIN and label, then SO login + C_InitPIN for the first user PIN. */
  async initToken(tokenId: string, input: { label: string; soPin: string; userPin: string }): Promise<Token> {
    checkLabel(input.label, 'token label');
    const loc = await this.tokens.locateToken(tokenId);
    const soPin = this.checkNewPin('so', loc.token, input.soPin);
    const userPin = this.checkNewPin('user', loc.token, input.userPin);
    if (loc.token.readOnly) throw new KelidError('ERR_FORBIDDEN', 'the token is write-protected');
    const slot = await loc.module.host.call(
      'initToken',
      { token: loc.ref, soPin, label: input.label },
      { timeoutMs: 180_000 },
    );
    // Re-found by what the token reads now, never by a tokenId computed from the serial alone: on a
    // module that repeats serials (tpm2-pkcs11) that id is also another token's.
    const initialized = (await this.tokens.relocate(loc.module, slot)).token;
    await this.writeSession(initialized.tokenId, async (s) => {
      await s.login('so', soPin);
      await s.call('initPin', { pin: userPin });
    });
    return this.tokens.getToken(initialized.tokenId);
  }

  /** C_SetPIN under the role's own login. A PIN the token flags "to be changed" is changed without a full login. */
  async changePin(tokenId: string, role: LoginRole, oldPin: string, newPin: string): Promise<void> {
    const token = await this.tokens.getToken(tokenId);
    const normalizedNew = this.checkNewPin(role, token, newPin);
    const normalizedOld = normalizePin(oldPin);
    await this.writeSession(tokenId, async (s) => {
      try {
        await s.login(role, normalizedOld);
      } catch (e) {
        // The token accepted the old PIN but wants it changed before use: C_SetPIN in this R/W session.
        if (!(e instanceof KelidError && e.code === 'ERR_PIN_EXPIRED')) throw e;
      }
      await s.call('setPin', { oldPin: normalizedOld, newPin: normalizedNew });
    });
  }

  /** Unblock: SO login, then C_InitPIN with the new user PIN (clears the user PIN's lock and counters). */
  async unblockPin(tokenId: string, soPin: string, newUserPin: string): Promise<void> {
    const token = await this.tokens.getToken(tokenId);
    const pin = this.checkNewPin('user', token, newUserPin);
    await this.writeSession(tokenId, async (s) => {
      await s.login('so', normalizePin(soPin));
      await s.call('initPin', { pin });
    });
  }

  /** Generate a key pair (and optionally its CSR) under one user login. */
  async generateKey(
    tokenId: string,
    userPin: PinEntry,
    request: GenerateKeyRequest,
  ): Promise<{ key: Key; csr?: string }> {
    const label = request.label ?? defaultKeyLabel();
    checkLabel(label, 'key label');
    // A request that cannot be signed by this key is refused before a key pair exists.
    if (request.csr) validateCsrRequest(request.csr, request.algorithm);
    return this.writeSession(tokenId, async (s) => {
      await s.login('user', normalizePinEntry(userPin));
      await this.repair(s);
      const quirks = s.moduleSpec.quirks?.keyTemplate as TemplateQuirks | undefined;
      const g = await generateSigningKey(
        s,
        { algorithm: request.algorithm, label, alwaysAuthenticate: request.alwaysAuthenticate ?? false },
        quirks,
      );
      const key: Key = {
        keyId: g.keyId,
        tokenId: s.token.tokenId,
        label: g.label,
        algorithm: g.algorithm,
        publicKey: Buffer.from(g.spki).toString('base64'),
        hasCertificate: false,
        local: g.local,
        alwaysAuthenticate: request.alwaysAuthenticate ?? false,
      };
      if (!request.csr) return { key };
      try {
        const csr = await this.csrInSession(s, g.keyId, request.csr, normalizePinEntry(userPin));
        return { key, csr };
      } catch (e) {
        throw await rollBack(s, g, e);
      }
    });
  }

  /** A PKCS#10 request signed on the token by the key `keyId`. */
  async createCsr(tokenId: string, userPin: PinEntry, keyId: string, request: CsrRequest): Promise<string> {
    return this.tokens.withSession(tokenId, { readWrite: false }, async (s) => {
      await s.login('user', normalizePinEntry(userPin));
      return this.csrInSession(s, keyId, request, normalizePinEntry(userPin));
    });
  }

  private async csrInSession(
    s: TokenSession,
    keyId: string,
    request: CsrRequest,
    pin: string | null,
  ): Promise<string> {
    const key = await findSigningKey(s, keyId);
    const signer = await Pkcs11Signer.create(s, key, pin);
    const { pem } = await createCsr({ ...request, signer });
    return pem;
  }

  /** Write an issued certificate (and chain) next to its key. */
  async importCertificate(
    tokenId: string,
    userPin: PinEntry,
    input: { certificate: string; chain?: string[]; label?: string },
  ): Promise<Certificate> {
    const der = parseCertificateInput(input.certificate);
    const chain = (input.chain ?? []).map((c) => parseCertificateInput(c));
    describeCertificate(der);
    if (input.label !== undefined) checkLabel(input.label, 'certificate label');
    return this.writeSession(tokenId, async (s) => {
      await s.login('user', normalizePinEntry(userPin));
      await this.repair(s);
      const r = await importCertificate(
        s,
        { der, chain, ...(input.label !== undefined ? { label: input.label } : {}) },
        this.dualUse,
      );
      return r.certificate;
    });
  }

  /** Keys of a token, with "pending" keys (no certificate yet) included. Public objects only: no login. */
  async listKeys(tokenId: string): Promise<Key[]> {
    return this.tokens.withSession(tokenId, { readWrite: false }, async (s) => {
      const [publics, certs, privates] = await Promise.all([
        listPublicKeys(s),
        listCertificateObjects(s),
        listPrivateKeys(s).catch(() => []),
      ]);
      return publics.map((k) => ({
        keyId: k.keyId,
        tokenId,
        label: k.label,
        algorithm: k.algorithm,
        publicKey: Buffer.from(k.spki).toString('base64'),
        hasCertificate: certs.some((c) => c.id === k.keyId && c.categoryValue !== 2),
        local: k.local,
        alwaysAuthenticate: privates.find((p) => p.keyId === k.keyId)?.alwaysAuthenticate ?? false,
      }));
    });
  }

  async listCertificates(tokenId: string): Promise<Certificate[]> {
    return this.tokens.withSession(tokenId, { readWrite: false }, (s) => listCertificates(s, this.dualUse));
  }

  async deleteObjects(
    tokenId: string,
    userPin: PinEntry,
    keyId: string,
    scope: DeleteScope,
  ): Promise<number> {
    if (!/^[0-9a-f]{2,128}$/.test(keyId))
      throw new KelidError('ERR_INVALID_INPUT', 'keyId must be lowercase hex');
    return this.writeSession(tokenId, async (s) => {
      await s.login('user', normalizePinEntry(userPin));
      // A lone half of an interrupted generation listed under this id is removed by the repair.
      const { removed } = await this.repair(s);
      try {
        return await deleteObjects(s, keyId, scope);
      } catch (e) {
        if (removed.includes(keyId) && e instanceof KelidError && e.code === 'ERR_KEY_NOT_FOUND') return 1;
        throw e;
      }
    });
  }

  /**
   * Renewal: a new key pair and a CSR carrying the subject of an existing certificate on the token.
   */
  async renew(
    tokenId: string,
    userPin: PinEntry,
    input: { certificateKeyId: string; algorithm: KeyAlgorithm; label?: string },
  ): Promise<{ key: Key; csr: string }> {
    const certs = await this.listCertificates(tokenId);
    const old = certs.find((c) => c.keyId === input.certificateKeyId && c.category !== 'authority');
    if (!old)
      throw new KelidError('ERR_CERTIFICATE_NOT_FOUND', 'no certificate with this keyId on the token');
    const d = describeCertificate(Buffer.from(old.certificate, 'base64'));
    const r = await this.generateKey(tokenId, userPin, {
      algorithm: input.algorithm,
      ...(input.label !== undefined ? { label: input.label } : {}),
      csr: { subject: d.subject, keyUsage: d.keyUsage, extendedKeyUsage: d.extendedKeyUsage },
    });
    return { key: r.key, csr: r.csr! };
  }
}

function defaultKeyLabel(): string {
  const d = new Date().toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15);
  return `kelid-${d}`;
}

/**
 * Keygen + CSR is one consented operation: when the CSR fails after the key pair was made, the pair
 * is removed in the same session (still logged in), so no orphan is left for the RA page to find.
 * When the removal fails too, the error names the pair (`data.pendingKeyId`) so the page can offer
 * to delete it (objects.delete).
 */
async function rollBack(s: TokenSession, g: GeneratedKey, e: unknown): Promise<KelidError> {
  const error = toKelidError(e, 'creating the certification request failed');
  try {
    // Handles are only valid in the host incarnation that made them: destroy an object only if it
    // still carries this pair's CKA_ID (a restarted host could have given the number to another).
    const id = Buffer.from(g.keyId, 'hex');
    for (const handle of [g.privateHandle, g.publicHandle]) {
      const { values } = await s.call('getAttributes', { handle, attributes: [CKA.ID] });
      const found = values[CKA.ID];
      if (!found || !id.equals(Buffer.from(found))) throw new Error('not this pair');
    }
    await s.call('destroyObject', { handle: g.privateHandle });
    await s.call('destroyObject', { handle: g.publicHandle });
  } catch {
    return new KelidError(
      error.code,
      `${error.message}; the new key pair is still on the token, pending (keyId ${g.keyId})`,
      { cause: error, retriable: error.retriable, data: { ...error.data, pendingKeyId: g.keyId } },
    );
  }
  return new KelidError(error.code, `${error.message}; the new key pair was removed`, {
    cause: error,
    retriable: error.retriable,
    data: { ...error.data, keyRolledBack: true },
  });
}
