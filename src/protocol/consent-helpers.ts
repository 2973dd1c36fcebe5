import { hashDigests } from '../audit/audit-log.js';
import { KelidError } from '../model/errors.js';
import type {
  ConsentCertificateView,
  ConsentCsrView,
  ConsentSpec,
  ConsentTokenView,
  ConsentWarning,
  PinRulesView,
  Secrets,
} from '../consent/consent-broker.js';
import type { CsrRequest } from '../pki/csr.js';
import { validateCsrRequest } from '../pki/csr.js';
import { encodeName, formatName } from '../pki/dn.js';
import type { CallContext } from './context.js';
import type { SigningIntent, SigningWarning, PinEntry } from '../model/services.js';
import type { Certificate, PinState, SecretNeed, Token } from '../model/types.js';

// Shared by the methods that need consent: the views the consent UI shows, the PIN checks made
// before prompting (a locked PIN is reported at once: typing it would spend nothing but the user's
// time), and the call into the consent broker with this call's connection, signal and notification.

export function tokenView(t: Token): ConsentTokenView {
  return { label: t.label, serialNumber: t.serialNumber, manufacturer: t.manufacturer, model: t.model };
}

export function certificateView(
  c: Pick<Certificate, 'subject' | 'issuer' | 'serialNumber' | 'notAfter'>,
): ConsentCertificateView {
  return { subject: c.subject, issuer: c.issuer, serialNumber: c.serialNumber, notAfter: c.notAfter };
}

// Characters that would make page-supplied text read differently from what it is, or run into the
// text around it: C0/C1 controls (tab and newline too: a name is one line), lone surrogates, bidi
// embeddings, overrides and isolates, and the BOM. Summaries holding any are refused (schema.ts), and
// so are names in a certificate request (pki/dn.ts, pki/csr.ts, checked before the prompt); should
// one still get through, the consent shows it as a visible escape rather than obeying it.
const UNSAFE_DISPLAY = /[\p{Cc}\p{Cs}\u202a-\u202e\u2066-\u2069\ufeff]/gu;
const MAX_SUBJECT_DISPLAY = 2048;
const MAX_NAME_DISPLAY = 600;

/** Page-supplied text made safe to show: unsafe characters as `<U+XXXX>`, cut at `max` with `…`. */
export function displayText(text: string, max: number): string {
  const shown = text.replace(
    UNSAFE_DISPLAY,
    (c) => `<U+${(c.codePointAt(0) ?? 0).toString(16).toUpperCase().padStart(4, '0')}>`,
  );
  const chars = Array.from(shown);
  return chars.length > max ? `${chars.slice(0, max - 1).join('')}…` : shown;
}

/**
 * The subject and alternative names of a certificate request, as the consent shows them: one RFC 4514
 * text for both forms of the subject (string or attribute array). Throws ERR_INVALID_INPUT for a
 * request that could not be made (bad names, bidi controls), before anyone is asked.
 */
export function csrView(request: CsrRequest): ConsentCsrView {
  validateCsrRequest(request);
  return {
    subject: displayText(formatName(encodeName(request.subject)), MAX_SUBJECT_DISPLAY),
    subjectAltNames: (request.subjectAltNames ?? []).map((n) =>
      displayText(`${n.type}:${n.value}`, MAX_NAME_DISPLAY),
    ),
  };
}

/** The warnings for a PIN the user is about to type. */
export function pinWarnings(state: PinState): ConsentWarning[] {
  if (state.locked) return ['pin-locked'];
  if (state.finalTry) return ['pin-final-try'];
  if (state.countLow) return ['pin-count-low'];
  return [];
}

export function statusWarnings(warning: SigningWarning | undefined): ConsentWarning[] {
  return warning === undefined ? [] : [warning];
}

/** Refuse before prompting when the token cannot take this PIN at all. */
export function requireUsablePin(token: Token, role: 'user' | 'so'): void {
  if (!token.initialized) throw new KelidError('ERR_TOKEN_NOT_INITIALIZED', 'the token is not initialized');
  if (role === 'user' && !token.userPinInitialized) {
    throw new KelidError('ERR_TOKEN_NOT_INITIALIZED', 'the user PIN of this token has not been set');
  }
  const state = role === 'user' ? token.userPin : token.soPin;
  if (state.locked) {
    const what = role === 'user' ? 'the user PIN is locked' : 'the SO-PIN is locked';
    // A device-wide lockout (TPM) is not undone by the SO-PIN: say so, and let the UI word it.
    const deviceWide = token.lockout === 'device-wide';
    throw new KelidError(
      'ERR_PIN_LOCKED',
      deviceWide ? `${what} by the device-wide lockout: the SO-PIN cannot unblock it` : what,
      { data: { role, pin: state, ...(deviceWide ? { lockout: 'device-wide' } : {}) } },
    );
  }
}

/** The PIN rules for a token as just read (policy narrowed by the token), or the configured policy. */
export async function pinRulesFor(ctx: CallContext, token: Token): Promise<PinRulesView> {
  try {
    return await ctx.env.services.provisioning.pinRules(token.tokenId, token);
  } catch (e) {
    if (e instanceof KelidError && e.code !== 'ERR_INTERNAL') throw e;
    return ctx.env.defaultPinRules;
  }
}

/**
 * What a consent for a user login collects: the PIN in Kelid's UI, or nothing when the token has a
 * PIN pad (the user types the PIN on the reader's keypad once approved).
 */
export function userPinConsent(token: Token): Pick<ConsentSpec, 'needs' | 'pinpad'> {
  return token.protectedAuthenticationPath ? { needs: [], pinpad: true } : { needs: ['userPin'] };
}

/** The user PIN of an approved consent made with {@link userPinConsent}; `null` for a PIN pad. */
export function userPinOf(secrets: Secrets, token: Token): PinEntry {
  return token.protectedAuthenticationPath ? null : secret(secrets, 'userPin');
}

export type ConsentDetails = Omit<
  ConsentSpec,
  'connectionId' | 'origin' | 'tier' | 'method' | 'signal' | 'onPending' | 'onSeen'
>;

/** Ask for consent for this call; `run` gets the typed secrets and is the only place they go. */
export async function withConsent<T>(
  ctx: CallContext,
  details: ConsentDetails,
  run: (secrets: Secrets) => Promise<T>,
): Promise<T> {
  ctx.setCancellable(true);
  try {
    return await ctx.env.consent.request(
      {
        ...details,
        connectionId: ctx.connection.id,
        origin: ctx.connection.origin,
        tier: ctx.connection.tier,
        method: ctx.method,
        signal: ctx.signal,
        onPending: (requestId) => {
          ctx.connection.notify('consent.pending', { id: ctx.id, requestId });
        },
        // Audited (`audit: 'always'`) once the user saw it: a request the page withdrew while it
        // waited unseen in the queue was never put in front of the user (issue 13, section 4).
        onSeen: () => ctx.markPrompted(),
      },
      (secrets) => {
        ctx.setCancellable(false);
        return run(secrets);
      },
    );
  } finally {
    ctx.setCancellable(false);
  }
}

/**
 * The common path of the signing methods: preflight the certificate (key purpose for `intent`
 * included), record token, key, certificate
 * and digests in the audit line, refuse an unusable user PIN, then ask for consent showing `digests`
 * and run `sign` with the typed user PIN (`null` on a PIN pad token).
 */
export async function withSigningConsent<T>(
  ctx: CallContext,
  certificateId: string,
  intent: SigningIntent,
  digests: readonly Uint8Array[],
  details: Pick<ConsentDetails, 'summary' | 'summaries'>,
  sign: (userPin: PinEntry) => Promise<T>,
): Promise<T> {
  // The key purpose is checked here, before the prompt: the user is never asked for a PIN for a
  // call that the signing service would refuse.
  const pre = await ctx.env.services.signing.preflight(certificateId, intent);
  ctx.audit.tokenSerial = pre.token.serialNumber;
  ctx.audit.keyId = pre.certificate.keyId;
  ctx.audit.certificateSha256 = pre.certificate.fingerprintSha256;
  ctx.audit.digestsSha256 = hashDigests(digests);
  requireUsablePin(pre.token, 'user');
  return withConsent(
    ctx,
    {
      token: tokenView(pre.token),
      certificate: certificateView(pre.certificate),
      ...details,
      digests: digests.map(hex),
      ...userPinConsent(pre.token),
      warnings: [...pinWarnings(pre.token.userPin), ...statusWarnings(pre.warning)],
      pinRules: await pinRulesFor(ctx, pre.token),
    },
    (secrets) => sign(userPinOf(secrets, pre.token)),
  );
}

/** A secret the broker has checked is present (the broker only approves with every need filled). */
export function secret(secrets: Secrets, need: SecretNeed): string {
  const value = secrets[need];
  if (typeof value !== 'string') throw new KelidError('ERR_INTERNAL', `consent approved without ${need}`);
  return value;
}

/** Record the token in the audit line. */
export function auditToken(ctx: CallContext, token: Token): void {
  ctx.audit.tokenSerial = token.serialNumber;
}

export function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
}

export function base64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');
}
