import { execFileSync } from 'node:child_process';
import { X509Certificate, createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { KelidError } from '../model/errors.js';
import type { PlatformEnv } from '../platform-paths.js';

// The trust stores the local CA goes into: NSS databases (Chromium, Chrome and Firefox on Linux,
// including snap and flatpak ones) through `certutil` (libnss3-tools); Windows CurrentUser\Root and
// the macOS login keychain as planned commands. The one place that knows NSS.

/** The nickname of the CA in NSS databases (replaced on every install). */
export const NSS_NICKNAME = 'Kelid local CA';

export interface NssDatabase {
  /** The directory holding cert9.db. */
  dir: string;
  /** Which browser reads it (for people: doctor and install output). */
  browser: string;
  /** Create the database when missing (the browser's own directory exists but it never ran yet). */
  create: boolean;
}

// Flatpak ids of Chromium-based browsers: each keeps its NSS database under ~/.var/app/<id>/.pki/nssdb.
const FLATPAK_CHROMIUMS = [
  'org.chromium.Chromium',
  'com.google.Chrome',
  'com.brave.Browser',
  'com.microsoft.Edge',
  'io.github.ungoogled_software.ungoogled_chromium',
];

function exists(p: string): boolean {
  return fs.existsSync(p);
}

/** Firefox profile directories listed in `<root>/profiles.ini` (or found beside it) that have an NSS database. */
export function firefoxProfiles(root: string): string[] {
  const found = new Set<string>();
  let ini = '';
  try {
    ini = fs.readFileSync(path.join(root, 'profiles.ini'), 'utf8');
  } catch {
    // no profiles.ini: fall back to the directories themselves
  }
  let current: { path?: string; relative: boolean } | null = null;
  const flush = (): void => {
    if (current?.path !== undefined) {
      found.add(current.relative ? path.join(root, current.path) : current.path);
    }
  };
  for (const raw of ini.split(/\r?\n/)) {
    const line = raw.trim();
    if (line.startsWith('[')) {
      flush();
      current = /^\[Profile[0-9]+\]$/.test(line) ? { relative: true } : null;
    } else if (current) {
      const eq = line.indexOf('=');
      if (eq < 0) continue;
      const key = line.slice(0, eq).trim();
      const value = line.slice(eq + 1).trim();
      if (key === 'Path') current.path = value;
      if (key === 'IsRelative') current.relative = value !== '0';
    }
  }
  flush();
  try {
    for (const e of fs.readdirSync(root)) found.add(path.join(root, e));
  } catch {
    // no such root
  }
  return [...found].filter((dir) => exists(path.join(dir, 'cert9.db'))).sort();
}

/**
 * Every NSS database of this user that a browser reads: Chrome/Chromium's ~/.pki/nssdb (created when
 * missing, as Chromium would), snap and flatpak Chromiums (when installed), and every Firefox profile.
 */
export function nssDatabases(p: PlatformEnv): NssDatabase[] {
  if (p.platform !== 'linux') return [];
  const home = p.home;
  const dbs: NssDatabase[] = [
    { dir: path.join(home, '.pki', 'nssdb'), browser: 'Chrome/Chromium', create: true },
  ];
  const snapChromium = path.join(home, 'snap', 'chromium', 'current');
  if (exists(snapChromium)) {
    dbs.push({ dir: path.join(snapChromium, '.pki', 'nssdb'), browser: 'Chromium (snap)', create: true });
  }
  for (const id of FLATPAK_CHROMIUMS) {
    const appDir = path.join(home, '.var', 'app', id);
    if (exists(appDir))
      dbs.push({ dir: path.join(appDir, '.pki', 'nssdb'), browser: `${id} (flatpak)`, create: true });
  }
  for (const [root, browser] of [
    [path.join(home, '.mozilla', 'firefox'), 'Firefox'],
    [path.join(home, 'snap', 'firefox', 'common', '.mozilla', 'firefox'), 'Firefox (snap)'],
    [path.join(home, '.var', 'app', 'org.mozilla.firefox', '.mozilla', 'firefox'), 'Firefox (flatpak)'],
  ] as const) {
    for (const dir of firefoxProfiles(root)) dbs.push({ dir, browser, create: false });
  }
  return dbs;
}

function certutil(args: string[]): string {
  return execFileSync('certutil', args, { stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8' });
}

/** Whether `certutil` (libnss3-tools) can be run. */
export function hasCertutil(): boolean {
  try {
    execFileSync('certutil', ['-H'], { stdio: 'ignore' });
    return true;
  } catch (e) {
    // certutil -H exits non-zero after printing help; only a missing binary matters.
    return (e as NodeJS.ErrnoException).code !== 'ENOENT';
  }
}

/** What installing into one database changed, so that uninstall can undo exactly that. */
export interface NssInstallResult {
  dir: string;
  /** The database files did not exist and were created. */
  createdDb: boolean;
  /** Directories that did not exist and were created (outermost first). */
  createdDirs: string[];
}

/** Create `dir` and its missing parents (0700), returning the ones created, outermost first. */
export function mkdirTracked(dir: string, mode = 0o700): string[] {
  const missing: string[] = [];
  let d = path.resolve(dir);
  while (!exists(d)) {
    missing.unshift(d);
    const parent = path.dirname(d);
    if (parent === d) break;
    d = parent;
  }
  for (const m of missing) fs.mkdirSync(m, { mode });
  return missing;
}

/** Add (or replace) the CA in one NSS database; creates the database when asked to. */
export function installInNssDb(dir: string, pemFile: string, create: boolean): NssInstallResult {
  const db = `sql:${dir}`;
  let createdDb = false;
  let createdDirs: string[] = [];
  if (!exists(path.join(dir, 'cert9.db'))) {
    if (!create) throw new KelidError('ERR_INVALID_INPUT', `${dir} is not an NSS database`);
    createdDirs = mkdirTracked(dir);
    certutil(['-N', '--empty-password', '-d', db]);
    createdDb = true;
  }
  removeFromNssDb(dir);
  certutil(['-A', '-n', NSS_NICKNAME, '-t', 'C,,', '-i', pemFile, '-d', db]);
  return { dir, createdDb, createdDirs };
}

/** Remove every Kelid CA from one database (a regenerated CA has the same nickname). */
export function removeFromNssDb(dir: string): void {
  for (let i = 0; i < 16; i++) {
    try {
      certutil(['-D', '-n', NSS_NICKNAME, '-d', `sql:${dir}`]);
    } catch {
      break;
    }
  }
}

/** The Kelid CA certificates (PEM) a database holds, read back with `certutil -L -a`. */
export function readNssEntry(dir: string): string[] {
  try {
    const out = certutil(['-L', '-n', NSS_NICKNAME, '-a', '-d', `sql:${dir}`]);
    return out.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ?? [];
  } catch {
    return [];
  }
}

/** Nicknames and trust flags of every certificate in a database (`certutil -L`). */
export function listNssCertificates(dir: string): string[] {
  try {
    return certutil(['-L', '-d', `sql:${dir}`])
      .split('\n')
      .slice(4)
      .map((l) => l.trimEnd())
      .filter((l) => l !== '');
  } catch {
    return [];
  }
}

/**
 * Undo `installInNssDb`: delete the entry, and when Kelid created the database and it holds nothing
 * else, delete the database files and the directories Kelid created.
 */
export function uninstallFromNssDb(result: NssInstallResult): void {
  if (!exists(path.join(result.dir, 'cert9.db'))) return;
  removeFromNssDb(result.dir);
  if (!result.createdDb || listNssCertificates(result.dir).length > 0) return;
  for (const f of ['cert9.db', 'key4.db', 'pkcs11.txt']) fs.rmSync(path.join(result.dir, f), { force: true });
  removeEmptyDirs(result.createdDirs);
}

/** Remove the given directories (innermost first) while they are empty. */
export function removeEmptyDirs(dirs: string[]): void {
  for (const d of [...dirs].reverse()) {
    try {
      fs.rmdirSync(d);
    } catch {
      return;
    }
  }
}

/** Identity of a CA certificate, for the stores that address certificates by thumbprint. */
export function caIdentity(pem: string): { sha1: string; subjectCn: string } {
  const cert = new X509Certificate(pem);
  const cn = /CN=([^\n,]+)/.exec(cert.subject)?.[1] ?? NSS_NICKNAME;
  return { sha1: createHash('sha1').update(cert.raw).digest('hex').toUpperCase(), subjectCn: cn };
}

/** A command to run: argv, never through a shell. */
export type PlannedCommand = string[];

/** Windows: trust the CA in CurrentUser\Root (no administrator needed; Windows asks the user once). */
export function windowsTrustPlan(pemFile: string): PlannedCommand[] {
  return [['certutil.exe', '-user', '-f', '-addstore', 'Root', pemFile]];
}

/** Windows: remove the CA (by thumbprint) from CurrentUser\Root. */
export function windowsUntrustPlan(sha1: string): PlannedCommand[] {
  return [['certutil.exe', '-user', '-delstore', 'Root', sha1]];
}

/** macOS: trust the CA for SSL in the login keychain (the user confirms with their password). */
export function macosTrustPlan(pemFile: string, home: string): PlannedCommand[] {
  return [
    [
      '/usr/bin/security',
      'add-trusted-cert',
      '-r',
      'trustRoot',
      '-p',
      'ssl',
      '-k',
      path.posix.join(home, 'Library', 'Keychains', 'login.keychain-db'),
      pemFile,
    ],
  ];
}

/** macOS: remove the CA (by SHA-1 hash) from the login keychain. */
export function macosUntrustPlan(sha1: string, home: string): PlannedCommand[] {
  return [
    [
      '/usr/bin/security',
      'delete-certificate',
      '-Z',
      sha1,
      path.posix.join(home, 'Library', 'Keychains', 'login.keychain-db'),
    ],
  ];
}
