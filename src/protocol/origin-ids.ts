import { createCipheriv, createDecipheriv, createHmac, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';

// Per-origin ids (PROTOCOL.md section 4): the tokenId and certificateId a page sees are its own.
// Inside the agent a token or certificate has one 16-byte id (32 hex characters, derived from token
// and certificate data). On the wire, each origin sees AES-256(K_origin, id), where
// K_origin = HMAC-SHA256(secret, "kelid-ids:1" ‖ origin) and the secret is 32 random bytes kept in the
// state directory. One AES block is a keyed permutation of 16-byte values: the mapping is stateless
// and deterministic (an RA page can keep an id for days, across agent restarts), reversible with the
// caller's own key, and without the secret one origin's id says nothing about another origin's id.
// An id given by another origin decrypts to an unrelated value that names nothing: the usual
// ERR_*_NOT_FOUND, never another object.

/** The secret's file inside the state directory (64 hex characters, mode 0600). */
export const ORIGIN_IDS_SECRET_FILE = 'origin-ids.key';

const DOMAIN = 'kelid-ids:1';
// Every internal id has this form (token-id.ts, certificate-store.ts): only these are mapped. Any other
// string a page sends cannot name an object, so it passes unchanged both ways (an echo in error data
// gives the page back exactly what it sent).
const ID_PATTERN = /^[0-9a-f]{32}$/;

/** Maps ids between the agent's form and one caller's wire form. */
export interface IdCodec {
  /** Internal id → the caller's wire id. */
  toWire(id: string): string;
  /** The caller's wire id → internal id (a foreign or made-up id maps to one that names nothing). */
  fromWire(id: string): string;
}

/** The agent's own clients (console tier) see internal ids, as the CLI and the audit log do. */
export const INTERNAL_IDS: IdCodec = { toWire: (id) => id, fromWire: (id) => id };

/** Derives each origin's {@link IdCodec} from the agent's secret. */
export class OriginIds {
  readonly #secret: Buffer;

  constructor(secret: Uint8Array) {
    if (secret.length !== 32) throw new TypeError('the origin-ids secret must be 32 bytes');
    this.#secret = Buffer.from(secret);
  }

  forOrigin(origin: string): IdCodec {
    const key = createHmac('sha256', this.#secret).update(DOMAIN, 'utf8').update(origin, 'utf8').digest();
    const run = (id: string, encrypt: boolean): string => {
      if (!ID_PATTERN.test(id)) return id;
      const cipher = encrypt
        ? createCipheriv('aes-256-ecb', key, null)
        : createDecipheriv('aes-256-ecb', key, null);
      cipher.setAutoPadding(false);
      return Buffer.concat([cipher.update(Buffer.from(id, 'hex')), cipher.final()]).toString('hex');
    };
    return { toWire: (id) => run(id, true), fromWire: (id) => run(id, false) };
  }
}

/** The wire members that carry an id. */
const ID_MEMBERS = new Set(['tokenId', 'certificateId']);

/**
 * A copy of plain JSON data (parsed params) with every `tokenId` and `certificateId` member, at any
 * depth, mapped by `map`. The data was depth-checked by the dispatcher.
 */
export function mapIdMembers(value: unknown, map: (id: string) => string): unknown {
  if (Array.isArray(value)) return value.map((v) => mapIdMembers(v, map));
  if (typeof value !== 'object' || value === null) return value;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) {
    out[k] = ID_MEMBERS.has(k) && typeof v === 'string' ? map(v) : mapIdMembers(v, map);
  }
  return out;
}

/** A `JSON.stringify` replacer that maps every `tokenId` and `certificateId` member (results, errors). */
export function idReplacer(map: (id: string) => string): (key: string, value: unknown) => unknown {
  return (key, value) => (ID_MEMBERS.has(key) && typeof value === 'string' ? map(value) : value);
}

/**
 * The agent's origin-ids secret from `<stateDir>/origin-ids.key`, generated on first use. A damaged
 * file is kept as `.corrupt` and replaced: ids that pages stored become unknown (they list again).
 */
export function loadOriginIdsSecret(stateDir: string): { secret: Buffer; generated: boolean } {
  const file = path.join(stateDir, ORIGIN_IDS_SECRET_FILE);
  let text: string | null = null;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  if (text !== null) {
    const hex = text.trim();
    if (/^[0-9a-f]{64}$/.test(hex)) return { secret: Buffer.from(hex, 'hex'), generated: false };
    fs.renameSync(file, `${file}.corrupt`);
  }
  const secret = randomBytes(32);
  const tmp = `${file}.${randomBytes(6).toString('hex')}.tmp`;
  fs.writeFileSync(tmp, `${secret.toString('hex')}\n`, { mode: 0o600, flag: 'wx' });
  fs.renameSync(tmp, file);
  return { secret, generated: true };
}
