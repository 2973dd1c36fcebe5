import { randomBytes } from 'node:crypto';
import { KelidError, isKelidError } from '../model/errors.js';
import type { FoundObject } from '../pkcs11/host-protocol.js';
import {
  CKA,
  CKF_MECH,
  CKK,
  CKM,
  CKO,
  decodeBool,
  decodeUlong,
  decodeUtf8,
  signingKeyPairTemplates,
} from '../pkcs11/templates.js';
import { toHex } from '../pki/der.js';
import { publicKeysEqual } from '../pki/certificate.js';
import { keyIdFromSpki } from '../pki/key-id.js';
import { curveFromEcParams, ecSpki, rsaSpki } from '../pki/spki.js';
import type { Key, KeyAlgorithm } from '../model/types.js';
import type { TokenKeyRef } from './token-signer.js';
import type { TokenSession } from './token-service.js';

const KEY_ATTRS = [
  CKA.CLASS,
  CKA.KEY_TYPE,
  CKA.ID,
  CKA.LABEL,
  CKA.MODULUS,
  CKA.PUBLIC_EXPONENT,
  CKA.EC_PARAMS,
  CKA.EC_POINT,
  CKA.LOCAL,
];
const PRIVATE_ATTRS = [
  CKA.KEY_TYPE,
  CKA.ID,
  CKA.LABEL,
  CKA.ALWAYS_AUTHENTICATE,
  CKA.LOCAL,
  CKA.ALWAYS_SENSITIVE,
  CKA.NEVER_EXTRACTABLE,
  CKA.SENSITIVE,
  CKA.EXTRACTABLE,
];

// A key pair gets its final CKA_ID (SHA-1 of the public key) only after C_GenerateKeyPair returned,
// by two C_SetAttributeValue calls; until then both halves carry a provisional id made of this
// marker and random bytes. A crash in between leaves a pair (or, mid-generation, one half) with the
// marker: such a pair is listed under the id it is going to get, found under it for signing, and
// completed (or, when only one half exists, removed) by the next write session under the user PIN
// (`repairInterruptedWrites` in interrupted-writes.ts). The private half is renamed first, so "public
// final, private provisional" never happens: the public half, which anyone can list, always leads to
// the private one.
const PENDING_ID_MARKER = Buffer.from('kelid-pending:', 'ascii');

/** Provisional ids of generations running in this process: not interrupted, not to be touched. */
const generating = new Set<string>();

/** Whether a key generation is running in this process (its objects may be half-made right now). */
export function generationInProgress(storedId?: string): boolean {
  return storedId === undefined ? generating.size > 0 : generating.has(storedId);
}

function newPendingId(): Buffer {
  return Buffer.concat([PENDING_ID_MARKER, randomBytes(6)]);
}

/** Whether a stored CKA_ID (hex) is a provisional id of an unfinished key generation. */
export function isPendingKeyId(storedId: string): boolean {
  return storedId.startsWith(PENDING_ID_MARKER.toString('hex'));
}

/** A public key object as read from the token, with its SPKI rebuilt from the attributes. */
export interface PublicKeyObject {
  handle: string;
  /** The key's id: its CKA_ID, or for a pair whose generation was interrupted, the id it will get. */
  keyId: string;
  /** CKA_ID as stored (hex). */
  storedId: string;
  label: string;
  spki: Uint8Array;
  keyType: 'RSA' | 'EC';
  algorithm: Key['algorithm'];
  local: boolean;
}

/** Rebuild the SubjectPublicKeyInfo of an RSA or EC key object; undefined for other key types. */
export function spkiFromAttributes(
  o: FoundObject,
): { spki: Uint8Array; keyType: 'RSA' | 'EC'; algorithm: Key['algorithm'] } | undefined {
  const type = decodeUlong(o.values[CKA.KEY_TYPE]);
  if (type === CKK.RSA) {
    const n = o.values[CKA.MODULUS];
    const e = o.values[CKA.PUBLIC_EXPONENT];
    if (!n || !e) return undefined;
    const spki = rsaSpki(n, e);
    let bits = n.length * 8;
    for (let i = 0; i < n.length && n[i] === 0; i++) bits -= 8;
    return { spki, keyType: 'RSA', algorithm: { name: 'RSA', modulusLength: bits } };
  }
  if (type === CKK.EC) {
    const params = o.values[CKA.EC_PARAMS];
    const point = o.values[CKA.EC_POINT];
    if (!params || !point) return undefined;
    try {
      const curve = curveFromEcParams(params);
      return { spki: ecSpki(curve, point), keyType: 'EC', algorithm: { name: 'EC', namedCurve: curve } };
    } catch {
      return undefined;
    }
  }
  return undefined;
}

function keyIdOf(o: FoundObject, spki: Uint8Array): string {
  const id = o.values[CKA.ID];
  return id && id.length > 0 && !isPendingKeyId(toHex(id)) ? toHex(id) : keyIdFromSpki(spki);
}

/** Narrow a search to one CKA_ID when the keyId is a real one (hex). */
function idFilter(keyId: string | undefined): Array<{ type: number; value: Uint8Array }> {
  return keyId && /^([0-9a-f]{2})+$/.test(keyId) ? [{ type: CKA.ID, value: Buffer.from(keyId, 'hex') }] : [];
}

/** Every RSA/EC public key object on the token (public objects: no login needed). */
export async function listPublicKeys(session: TokenSession, keyId?: string): Promise<PublicKeyObject[]> {
  const template = [{ type: CKA.CLASS, value: CKO.PUBLIC_KEY }, ...idFilter(keyId)];
  return publicKeysOf(await session.call('findObjects', { template, attributes: KEY_ATTRS }));
}

function publicKeysOf(found: FoundObject[]): PublicKeyObject[] {
  const out: PublicKeyObject[] = [];
  for (const o of found) {
    const k = spkiFromAttributes(o);
    if (!k) continue;
    out.push({
      handle: o.handle,
      keyId: keyIdOf(o, k.spki),
      storedId: toHex(o.values[CKA.ID] ?? new Uint8Array()),
      label: decodeUtf8(o.values[CKA.LABEL]),
      spki: k.spki,
      keyType: k.keyType,
      algorithm: k.algorithm,
      local: decodeBool(o.values[CKA.LOCAL]) ?? false,
    });
  }
  return out;
}

export interface PrivateKeyObject {
  handle: string;
  keyId: string;
  label: string;
  keyType: 'RSA' | 'EC';
  alwaysAuthenticate: boolean;
  local: boolean;
  alwaysSensitive: boolean;
  neverExtractable: boolean;
  sensitive: boolean;
  extractable: boolean;
}

/** Private keys (visible only after login on most tokens). */
export async function listPrivateKeys(session: TokenSession, keyId?: string): Promise<PrivateKeyObject[]> {
  const template = [{ type: CKA.CLASS, value: CKO.PRIVATE_KEY }, ...idFilter(keyId)];
  return privateKeysOf(await session.call('findObjects', { template, attributes: PRIVATE_ATTRS }));
}

function privateKeysOf(found: FoundObject[]): PrivateKeyObject[] {
  const out: PrivateKeyObject[] = [];
  for (const o of found) {
    const type = decodeUlong(o.values[CKA.KEY_TYPE]);
    if (type !== CKK.RSA && type !== CKK.EC) continue;
    const id = o.values[CKA.ID];
    out.push({
      handle: o.handle,
      keyId: id && id.length > 0 ? toHex(id) : '',
      label: decodeUtf8(o.values[CKA.LABEL]),
      keyType: type === CKK.RSA ? 'RSA' : 'EC',
      alwaysAuthenticate: decodeBool(o.values[CKA.ALWAYS_AUTHENTICATE]) ?? false,
      local: decodeBool(o.values[CKA.LOCAL]) ?? false,
      alwaysSensitive: decodeBool(o.values[CKA.ALWAYS_SENSITIVE]) ?? false,
      neverExtractable: decodeBool(o.values[CKA.NEVER_EXTRACTABLE]) ?? false,
      sensitive: decodeBool(o.values[CKA.SENSITIVE]) ?? false,
      extractable: decodeBool(o.values[CKA.EXTRACTABLE]) ?? true,
    });
  }
  return out;
}

/**
 * The searches {@link findSigningKey} makes for `keyId` (private keys, then public keys of that id),
 * for a caller that runs them in the login's own round trip ({@link TokenService.withLogin}).
 */
export function signingKeySearches(
  keyId: string,
): Array<{ template: Array<{ type: number; value: number | Uint8Array }>; attributes: number[] }> {
  return [
    {
      template: [{ type: CKA.CLASS, value: CKO.PRIVATE_KEY }, ...idFilter(keyId)],
      attributes: PRIVATE_ATTRS,
    },
    { template: [{ type: CKA.CLASS, value: CKO.PUBLIC_KEY }, ...idFilter(keyId)], attributes: KEY_ATTRS },
  ];
}

/**
 * The signing key of `keyId` (after login): its private key handle plus the public key (from the
 * public key object or, failing that, from `fallbackSpki` such as the certificate's). With
 * `fallbackSpki`, a public key object of this id must hold that key (ERR_CERTIFICATE_MISMATCH), and
 * two private keys of one id are refused: the signature would be made by either.
 */
export async function findSigningKey(
  session: TokenSession,
  keyId: string,
  fallbackSpki?: Uint8Array,
  /** What {@link signingKeySearches} found, when they were made already. */
  found?: FoundObject[][],
): Promise<TokenKeyRef> {
  let privates = (found?.[0] ? privateKeysOf(found[0]) : await listPrivateKeys(session, keyId)).filter(
    (k) => k.keyId === keyId,
  );
  let publics = (found?.[1] ? publicKeysOf(found[1]) : await listPublicKeys(session, keyId)).filter(
    (k) => k.keyId === keyId,
  );
  if (privates.length === 0) {
    // A pair whose generation was interrupted carries its provisional id until it is completed.
    publics = (await listPublicKeys(session)).filter((k) => k.keyId === keyId && isPendingKeyId(k.storedId));
    const ids = new Set(publics.map((k) => k.storedId));
    privates = (await listPrivateKeys(session)).filter((k) => ids.has(k.keyId));
  }
  if (fallbackSpki && publics.length > 0) {
    // The certificate names the key: a public key object with this CKA_ID but another key (written by
    // another program) means the private key beside it is not the certificate's either.
    publics = publics.filter((k) => publicKeysEqual(k.spki, fallbackSpki));
    if (publics.length === 0)
      throw new KelidError(
        'ERR_CERTIFICATE_MISMATCH',
        'the key with this keyId is not the certificate’s key',
        {
          data: { keyId },
        },
      );
  }
  if (privates.length > 1)
    throw new KelidError('ERR_CERTIFICATE_MISMATCH', 'several private keys on the token carry this keyId', {
      data: { keyId },
    });
  const priv = privates[0];
  if (!priv)
    throw new KelidError('ERR_KEY_NOT_FOUND', 'no private key with this keyId on the token', {
      data: { keyId },
    });
  const spki = publics[0]?.spki ?? fallbackSpki;
  if (!spki)
    throw new KelidError('ERR_KEY_NOT_FOUND', 'the public half of this key is not on the token', {
      data: { keyId },
    });
  return {
    handle: priv.handle,
    keyType: priv.keyType,
    publicKey: spki,
    alwaysAuthenticate: priv.alwaysAuthenticate,
  };
}

export interface GenerateKeyOptions {
  algorithm: KeyAlgorithm;
  label: string;
  alwaysAuthenticate: boolean;
}

export interface GeneratedKey {
  keyId: string;
  label: string;
  spki: Uint8Array;
  algorithm: KeyAlgorithm;
  publicHandle: string;
  privateHandle: string;
  local: boolean;
  alwaysSensitive: boolean;
  neverExtractable: boolean;
}

function checkKeygenSupport(
  mechs: Awaited<ReturnType<TokenSession['mechanisms']>>,
  algorithm: KeyAlgorithm,
): void {
  const mech = algorithm.name === 'RSA' ? CKM.RSA_PKCS_KEY_PAIR_GEN : CKM.EC_KEY_PAIR_GEN;
  const info = mechs.find((m) => m.type === mech);
  if (!info || (info.flags !== 0 && (info.flags & CKF_MECH.GENERATE_KEY_PAIR) === 0)) {
    throw new KelidError('ERR_MECHANISM_UNSUPPORTED', `the token cannot generate ${algorithm.name} keys`);
  }
  const size =
    algorithm.name === 'RSA' ? algorithm.modulusLength : algorithm.namedCurve === 'P-256' ? 256 : 384;
  // Some modules report RSA sizes in bits and EC sizes in bits; 0 means "not stated".
  if ((info.minKeySize > 0 && size < info.minKeySize) || (info.maxKeySize > 0 && size > info.maxKeySize)) {
    throw new KelidError(
      'ERR_MECHANISM_UNSUPPORTED',
      `the token cannot generate ${algorithm.name} keys of this size`,
    );
  }
}

/**
 * Generate a sign-only key pair on the token (caller holds the user login and a R/W session), then
 * set CKA_ID = SHA-1 of the modulus / EC point on both halves. A half-done pair is destroyed.
 */
export async function generateSigningKey(
  session: TokenSession,
  options: GenerateKeyOptions,
  quirks?: Parameters<typeof signingKeyPairTemplates>[1]['quirks'],
): Promise<GeneratedKey> {
  checkKeygenSupport(await session.mechanisms(), options.algorithm);
  const pendingId = newPendingId();
  generating.add(pendingId.toString('hex'));
  try {
    return await generateWithPendingId(session, options, pendingId, quirks);
  } finally {
    generating.delete(pendingId.toString('hex'));
  }
}

const TEMPLATE_CKRS = new Set([
  'CKR_TEMPLATE_INCONSISTENT',
  'CKR_TEMPLATE_INCOMPLETE',
  'CKR_ATTRIBUTE_VALUE_INVALID',
  'CKR_ATTRIBUTE_TYPE_INVALID',
]);

/**
 * A module that refuses Kelid's key template (tpm2-pkcs11 answers CKR_GENERAL_ERROR and names the
 * attribute only on stderr): say which attribute when the module said so, and where the fix goes —
 * a keyTemplate quirk — instead of a bare "general error".
 */
function templateRefusal(e: unknown, moduleId: string): unknown {
  if (!(e instanceof KelidError)) return e;
  const attribute = typeof e.data.attribute === 'string' ? e.data.attribute : undefined;
  if (attribute === undefined && !TEMPLATE_CKRS.has(String(e.data.ckr))) return e;
  return new KelidError(
    e.code,
    `the token refused the key template${attribute ? ` (${attribute})` : ''}: module "${moduleId}" may ` +
      'need a keyTemplate quirk in native-config/pkcs11-modules.json (see docs/modules.md)',
    { retriable: e.retriable, data: { ...e.data, quirks: 'native-config/pkcs11-modules.json' } },
  );
}

async function generateWithPendingId(
  session: TokenSession,
  options: GenerateKeyOptions,
  pendingId: Buffer,
  quirks?: Parameters<typeof signingKeyPairTemplates>[1]['quirks'],
): Promise<GeneratedKey> {
  const t = signingKeyPairTemplates(options.algorithm, {
    label: options.label,
    id: pendingId,
    alwaysAuthenticate: options.alwaysAuthenticate,
    ...(quirks ? { quirks } : {}),
  });
  const pair = await session
    .call(
      'generateKeyPair',
      {
        mechanism: { mechanism: t.mechanism },
        publicTemplate: t.publicTemplate,
        privateTemplate: t.privateTemplate,
      },
      { timeoutMs: 300_000 },
    )
    .catch((e: unknown) => {
      throw templateRefusal(e, session.moduleSpec.id);
    });
  try {
    const pub = await session.call('getAttributes', { handle: pair.publicKey, attributes: KEY_ATTRS });
    const k = spkiFromAttributes(pub);
    if (!k) throw new KelidError('ERR_INTERNAL', 'the token returned an unreadable public key');
    const keyId = keyIdFromSpki(k.spki);
    const id = Buffer.from(keyId, 'hex');
    // Private half first: see PENDING_ID_MARKER.
    await session.call('setAttributes', { handle: pair.privateKey, template: [{ type: CKA.ID, value: id }] });
    await session.call('setAttributes', { handle: pair.publicKey, template: [{ type: CKA.ID, value: id }] });
    const priv = await session.call('getAttributes', {
      handle: pair.privateKey,
      attributes: [CKA.LOCAL, CKA.ALWAYS_SENSITIVE, CKA.NEVER_EXTRACTABLE, CKA.SENSITIVE, CKA.EXTRACTABLE],
    });
    if (
      decodeBool(priv.values[CKA.SENSITIVE]) === false ||
      decodeBool(priv.values[CKA.EXTRACTABLE]) === true
    ) {
      throw new KelidError(
        'ERR_INTERNAL',
        'the token did not keep the new private key sensitive and non-extractable',
      );
    }
    return {
      keyId,
      label: options.label,
      spki: k.spki,
      algorithm: options.algorithm,
      publicHandle: pair.publicKey,
      privateHandle: pair.privateKey,
      local: decodeBool(priv.values[CKA.LOCAL]) ?? false,
      alwaysSensitive: decodeBool(priv.values[CKA.ALWAYS_SENSITIVE]) ?? false,
      neverExtractable: decodeBool(priv.values[CKA.NEVER_EXTRACTABLE]) ?? false,
    };
  } catch (e) {
    for (const handle of [pair.privateKey, pair.publicKey]) {
      await session.call('destroyObject', { handle }).catch(() => undefined);
    }
    throw isKelidError(e)
      ? e
      : new KelidError('ERR_INTERNAL', 'key generation could not be completed', { cause: e });
  }
}
