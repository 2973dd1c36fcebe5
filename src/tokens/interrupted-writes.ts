import type { FoundObject } from '../pkcs11/host-protocol.js';
import { CKA, CKO } from '../pkcs11/templates.js';
import { toHex } from '../pki/der.js';
import { keyIdFromSpki } from '../pki/key-id.js';
import { generationInProgress, isPendingKeyId, spkiFromAttributes } from './key-store.js';
import type { TokenSession } from './token-service.js';

// What a crash in the middle of a token write leaves, and how the next write session under the user
// PIN finishes it (docs/crash-consistency.md):
//
// - Half-created objects: a module killed inside C_CreateObject or C_GenerateKeyPair can leave an
//   object it created but never filled (SoftHSM stores the object, then its template). Such an object
//   has no CKA_ID, no label and no value or key material: nobody can use or even name it. Removed.
// - Key pairs still carrying the provisional CKA_ID of key-store.ts: a complete pair (public key
//   material and a private half) gets its final id, private half first; anything else with that id
//   was interrupted inside C_GenerateKeyPair, was never handed out, and is removed.
//
// Objects of a key generation or write running in this process right now look the same, so the
// caller passes `alone` only when no other write session of this process is open.

const PUBLIC_ATTRS = [
  CKA.KEY_TYPE,
  CKA.ID,
  CKA.LABEL,
  CKA.MODULUS,
  CKA.PUBLIC_EXPONENT,
  CKA.EC_PARAMS,
  CKA.EC_POINT,
];
const PRIVATE_ATTRS = [CKA.KEY_TYPE, CKA.ID, CKA.LABEL, CKA.MODULUS, CKA.EC_PARAMS];
const CERT_ATTRS = [CKA.ID, CKA.LABEL, CKA.VALUE];

/** What {@link repairInterruptedWrites} did, by key id (the id `keys.list` showed). */
export interface InterruptedWrites {
  completed: string[];
  removed: string[];
  /** Half-created objects removed. */
  emptyObjects: number;
}

const isEmpty = (v: Uint8Array | null | undefined): boolean => !v || v.length === 0;
const storedId = (o: FoundObject): string => toHex(o.values[CKA.ID] ?? new Uint8Array());

async function find(session: TokenSession, cls: number, attributes: number[]): Promise<FoundObject[]> {
  return session.call('findObjects', { template: [{ type: CKA.CLASS, value: cls }], attributes });
}

/** Finish what interrupted writes left on the token (caller holds the user login and a R/W session). */
export async function repairInterruptedWrites(
  session: TokenSession,
  options: { alone: boolean },
): Promise<InterruptedWrites> {
  const out: InterruptedWrites = { completed: [], removed: [], emptyObjects: 0 };
  if (!options.alone || generationInProgress()) return out;
  const publics = await find(session, CKO.PUBLIC_KEY, PUBLIC_ATTRS);
  const privates = await find(session, CKO.PRIVATE_KEY, PRIVATE_ATTRS);
  const certificates = await find(session, CKO.CERTIFICATE, CERT_ATTRS);
  const destroy = (o: FoundObject) => session.call('destroyObject', { handle: o.handle });
  const unnamed = (o: FoundObject) => isEmpty(o.values[CKA.ID]) && isEmpty(o.values[CKA.LABEL]);

  const halfCreated = [
    ...publics.filter((o) => unnamed(o) && spkiFromAttributes(o) === undefined),
    ...privates.filter(
      (o) => unnamed(o) && isEmpty(o.values[CKA.MODULUS]) && isEmpty(o.values[CKA.EC_PARAMS]),
    ),
    ...certificates.filter((o) => unnamed(o) && isEmpty(o.values[CKA.VALUE])),
  ];
  for (const o of halfCreated) await destroy(o);
  out.emptyObjects = halfCreated.length;

  const pendingIds = new Set(
    [...publics, ...privates].map(storedId).filter((id) => isPendingKeyId(id) && !generationInProgress(id)),
  );
  for (const pending of pendingIds) {
    const pubs = publics.filter((o) => storedId(o) === pending);
    const privs = privates.filter((o) => storedId(o) === pending);
    const pub = pubs.find((o) => spkiFromAttributes(o) !== undefined);
    const spki = pub ? spkiFromAttributes(pub)?.spki : undefined;
    const finalId = spki ? keyIdFromSpki(spki) : undefined;
    // The private half may already carry the final id (it is renamed first).
    const renamed = finalId ? privates.filter((o) => storedId(o) === finalId) : [];
    if (!pub || !finalId || privs.length + renamed.length === 0) {
      for (const o of [...privs, ...pubs]) await destroy(o);
      out.removed.push(finalId ?? pending);
      continue;
    }
    const id = Buffer.from(finalId, 'hex');
    for (const o of [...privs, pub])
      await session.call('setAttributes', { handle: o.handle, template: [{ type: CKA.ID, value: id }] });
    for (const o of pubs) if (o !== pub) await destroy(o);
    out.completed.push(finalId);
  }
  return out;
}
