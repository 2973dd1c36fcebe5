import { createPublicKey, verify } from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import * as path from 'node:path';
import { compareVersions } from '../client/kelid-client.js';
import { BodyTooLargeError, readBoundedBody } from '../net/bounded-body.js';

// The signed update manifest (optional): `<updates.url>` holds JSON `{version, download, notes?}`,
// `<updates.url>.sig` its detached Ed25519 signature (base64) by the key pinned in the build
// (UPDATE_PUBLIC_KEY_PEM; a config can point at another URL but never at another key). Kelid only
// tells the user a newer version exists (log, `kelid doctor`, `<stateDir>/update.json`): it never
// downloads or runs anything. A manifest that does not verify is ignored.

/**
 * The Ed25519 public key (SPKI PEM) update manifests are signed with, set by the release build.
 * null in development builds: no update check happens.
 */
export const UPDATE_PUBLIC_KEY_PEM: string | null = null;

/** `<stateDir>/update.json`: the last check's outcome. */
export const UPDATE_STATE_FILE = 'update.json';

export interface UpdateManifest {
  version: string;
  download: string;
  notes?: string;
}

export type UpdateCheck =
  | { status: 'current'; checkedAt: string; latest: string }
  | { status: 'available'; checkedAt: string; latest: string; download: string; notes?: string }
  | { status: 'invalid' | 'unreachable'; checkedAt: string; reason: string };

const MAX_BYTES = 64 * 1024;

function get(url: string, timeoutMs: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const lib = url.startsWith('https:') ? https : http;
    const req = lib.get(url, { timeout: timeoutMs, agent: false }, (res) => {
      if (res.statusCode !== 200) {
        res.resume();
        reject(new Error(`HTTP ${res.statusCode ?? 0}`));
        return;
      }
      readBoundedBody(res, MAX_BYTES).then(resolve, (e: unknown) =>
        reject(e instanceof BodyTooLargeError ? new Error('manifest too large') : e),
      );
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
  });
}

/** Verify a manifest's bytes against its signature; the parsed manifest, or null when anything is off. */
export function verifyUpdateManifest(
  bytes: Buffer,
  signatureBase64: string,
  publicKeyPem: string,
): UpdateManifest | null {
  let ok = false;
  try {
    const key = createPublicKey(publicKeyPem);
    if (key.asymmetricKeyType !== 'ed25519') return null;
    ok = verify(null, bytes, key, Buffer.from(signatureBase64.trim(), 'base64'));
  } catch {
    return null;
  }
  if (!ok) return null;
  try {
    const m = JSON.parse(bytes.toString('utf8')) as Partial<UpdateManifest>;
    if (typeof m.version !== 'string' || !/^[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$/.test(m.version))
      return null;
    if (typeof m.download !== 'string' || !m.download.startsWith('https://')) return null;
    return {
      version: m.version,
      download: m.download,
      ...(typeof m.notes === 'string' ? { notes: m.notes.slice(0, 2000) } : {}),
    };
  } catch {
    return null;
  }
}

/** Fetch and verify the manifest, and compare it with the running version. */
export async function checkForUpdate(options: {
  url: string;
  publicKeyPem: string;
  currentVersion: string;
  timeoutMs?: number;
}): Promise<UpdateCheck> {
  const checkedAt = new Date().toISOString();
  const timeoutMs = options.timeoutMs ?? 10_000;
  let bytes: Buffer, sig: Buffer;
  try {
    [bytes, sig] = await Promise.all([get(options.url, timeoutMs), get(`${options.url}.sig`, timeoutMs)]);
  } catch (e) {
    return { status: 'unreachable', checkedAt, reason: e instanceof Error ? e.message : String(e) };
  }
  const manifest = verifyUpdateManifest(bytes, sig.toString('utf8'), options.publicKeyPem);
  if (!manifest)
    return { status: 'invalid', checkedAt, reason: 'the manifest signature does not verify: ignored' };
  if (compareVersions(manifest.version, options.currentVersion) <= 0)
    return { status: 'current', checkedAt, latest: manifest.version };
  return {
    status: 'available',
    checkedAt,
    latest: manifest.version,
    download: manifest.download,
    ...(manifest.notes !== undefined ? { notes: manifest.notes } : {}),
  };
}

/** Keep the outcome for `kelid doctor` (an invalid or unreachable check keeps the last good one). */
export function recordUpdateCheck(stateDir: string, result: UpdateCheck): void {
  if (result.status === 'invalid' || result.status === 'unreachable') {
    const last = readUpdateCheck(stateDir);
    if (last && (last.status === 'available' || last.status === 'current')) return;
  }
  const file = path.join(stateDir, UPDATE_STATE_FILE);
  fs.writeFileSync(`${file}.tmp`, `${JSON.stringify(result, null, 2)}\n`, { mode: 0o600 });
  fs.renameSync(`${file}.tmp`, file);
}

export function readUpdateCheck(stateDir: string): UpdateCheck | null {
  try {
    return JSON.parse(fs.readFileSync(path.join(stateDir, UPDATE_STATE_FILE), 'utf8')) as UpdateCheck;
  } catch {
    return null;
  }
}
