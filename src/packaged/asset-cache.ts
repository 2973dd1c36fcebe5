import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { dirname, isAbsolute, join } from 'node:path';

/** What the packaged program carries: file path (relative, '/'-separated) → SHA-256 (hex). */
export interface AssetManifest {
  files: Record<string, string>;
}

/** Reads one embedded asset (node:sea getAsset in the program; a map in tests). */
export type AssetReader = (name: string) => ArrayBuffer;

/** Name of the asset holding the manifest (JSON). */
export const MANIFEST_ASSET = 'kelid-manifest.json';

function sha256(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/** `$XDG_CACHE_HOME/kelid`, else `~/.cache/kelid`. */
export function defaultCacheBase(): string {
  const xdg = process.env.XDG_CACHE_HOME;
  return join(xdg && isAbsolute(xdg) ? xdg : join(homedir(), '.cache'), 'kelid');
}

// The folder must be ours and closed to everyone else: the native addon in it is loaded as code.
// A folder another account owns, or a symbolic link in its place, is refused; our own with loose
// permissions is closed (0700).
function ensureOwnPrivateDir(dir: string): void {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const st = fs.lstatSync(dir);
  if (st.isSymbolicLink()) throw new Error(`${dir} is a symbolic link: refusing to extract there`);
  if (!st.isDirectory()) throw new Error(`${dir} is not a directory`);
  const uid = process.getuid?.();
  if (uid !== undefined && st.uid !== uid) throw new Error(`${dir} belongs to another user (uid ${st.uid})`);
  if ((st.mode & 0o077) !== 0) fs.chmodSync(dir, 0o700);
}

function verify(dir: string, manifest: AssetManifest): boolean {
  try {
    ensureOwnPrivateDir(dir);
    for (const [name, hash] of Object.entries(manifest.files)) {
      const file = join(dir, ...name.split('/'));
      if (!fs.lstatSync(file).isFile() || sha256(fs.readFileSync(file)) !== hash) return false;
    }
    return true;
  } catch {
    return false;
  }
}

/**
 * The folder holding the program's files, extracted once per content: `<base>/<hash of the manifest>`,
 * every file checked against its SHA-256 at each start (a torn or altered copy is replaced). Written
 * to a temporary sibling and renamed into place, so two programs starting at once never see half a
 * folder. Returns the folder (absolute).
 */
export function extractAssets(read: AssetReader, preferred: string = defaultCacheBase()): string {
  const manifestBytes = new Uint8Array(read(MANIFEST_ASSET));
  const manifest = JSON.parse(Buffer.from(manifestBytes).toString('utf8')) as AssetManifest;
  let base = preferred;
  try {
    ensureOwnPrivateDir(base);
  } catch (e) {
    // No usable home (a service account, a read-only home): a folder of our own in the temporary
    // directory, under the same checks. A cache folder we refused is not worked around.
    const code = (e as NodeJS.ErrnoException).code;
    if (code === undefined) throw e;
    base = join(tmpdir(), `kelid-${process.getuid?.() ?? 'user'}`);
    ensureOwnPrivateDir(base);
  }
  const target = join(base, sha256(manifestBytes).slice(0, 32));
  if (verify(target, manifest)) return target;

  const tmp = fs.mkdtempSync(join(base, '.tmp-'));
  try {
    for (const [name, hash] of Object.entries(manifest.files)) {
      if (name.split('/').some((part) => part === '' || part === '.' || part === '..'))
        throw new Error(`bad asset name ${name}`);
      const data = new Uint8Array(read(name));
      if (sha256(data) !== hash) throw new Error(`asset ${name} does not match its hash`);
      const file = join(tmp, ...name.split('/'));
      fs.mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
      fs.writeFileSync(file, data, { mode: 0o600, flag: 'wx' });
    }
    fs.rmSync(target, { recursive: true, force: true });
    try {
      fs.renameSync(tmp, target);
    } catch (e) {
      // Another start won the race: use its copy if it is whole.
      if (!verify(target, manifest)) throw e;
    }
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
  if (!verify(target, manifest)) throw new Error(`cannot verify the extracted files in ${target}`);
  return target;
}
