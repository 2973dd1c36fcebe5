import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { normalizeOrigin } from '../model/origin.js';

// The user's site approvals (`agent.requestAccess`), persisted in `<stateDir>/sites.json` as
// `{"version":1,"sites":[{"origin","grantedAt"}]}`. The file is read on every call, so a revocation
// made by another process (the CLI) takes effect at the next handshake. Writes go to a temporary file
// that is renamed over the old one, so a crash leaves either the old or the new list, never half.

export interface SiteGrant {
  /** Normalized origin (see `normalizeOrigin`). */
  origin: string;
  /** ISO 8601 UTC. */
  grantedAt: string;
}

export interface SiteGrantsOptions {
  now?: () => Date;
}

/** The name of the grants file inside the state directory. */
export const SITE_GRANTS_FILE = 'sites.json';

export class SiteGrants {
  readonly file: string;
  readonly #now: () => Date;

  constructor(file: string, options: SiteGrantsOptions = {}) {
    this.file = file;
    this.#now = options.now ?? (() => new Date());
  }

  list(): SiteGrant[] {
    return this.#read();
  }

  has(origin: string): boolean {
    const normalized = normalizeOrigin(origin);
    return normalized !== null && this.#read().some((g) => g.origin === normalized);
  }

  /** Approve an origin; granting an approved origin again keeps its first `grantedAt`. */
  grant(origin: string): SiteGrant {
    const normalized = normalizeOrigin(origin);
    if (normalized === null) throw new TypeError('cannot grant a malformed origin');
    const grants = this.#read();
    const existing = grants.find((g) => g.origin === normalized);
    if (existing) return existing;
    const grant = { origin: normalized, grantedAt: this.#now().toISOString() };
    this.#write([...grants, grant]);
    return grant;
  }

  /** Withdraw an approval; false when the origin was not approved. */
  revoke(origin: string): boolean {
    const normalized = normalizeOrigin(origin);
    const grants = this.#read();
    const kept = grants.filter((g) => g.origin !== normalized);
    if (kept.length === grants.length) return false;
    this.#write(kept);
    return true;
  }

  #read(): SiteGrant[] {
    let text: string;
    try {
      text = fs.readFileSync(this.file, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw e;
    }
    const grants = parseGrants(text);
    if (grants === null) {
      // Keep the evidence, start over empty: the user can approve the sites again.
      fs.renameSync(this.file, `${this.file}.corrupt`);
      return [];
    }
    return grants;
  }

  #write(grants: SiteGrant[]): void {
    const dir = path.dirname(this.file);
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    const tmp = `${this.file}.${randomBytes(6).toString('hex')}.tmp`;
    const fd = fs.openSync(tmp, 'wx', 0o600);
    try {
      fs.writeFileSync(fd, `${JSON.stringify({ version: 1, sites: grants }, null, 2)}\n`);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    try {
      fs.renameSync(tmp, this.file);
    } catch (e) {
      fs.rmSync(tmp, { force: true });
      throw e;
    }
    syncDirectory(dir);
  }
}

// Makes the rename durable; Windows cannot open a directory for fsync and does not need it.
function syncDirectory(dir: string): void {
  if (process.platform === 'win32') return;
  const fd = fs.openSync(dir, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** The grants in a file's text, or null when the text is not a valid grants file. */
function parseGrants(text: string): SiteGrant[] | null {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return null;
  }
  if (typeof value !== 'object' || value === null) return null;
  const { version, sites } = value as { version?: unknown; sites?: unknown };
  if (version !== 1 || !Array.isArray(sites)) return null;
  const grants: SiteGrant[] = [];
  for (const s of sites as unknown[]) {
    if (typeof s !== 'object' || s === null) return null;
    const { origin, grantedAt } = s as { origin?: unknown; grantedAt?: unknown };
    if (typeof origin !== 'string' || normalizeOrigin(origin) !== origin) return null;
    if (typeof grantedAt !== 'string' || Number.isNaN(Date.parse(grantedAt))) return null;
    if (grants.some((g) => g.origin === origin)) return null;
    grants.push({ origin, grantedAt });
  }
  return grants;
}
