// Decides which PKCS#11 modules the agent loads: configured modules first (always), then, with
// auto-detection, the known modules of native-config that exist here, then the modules registered
// with p11-kit (Linux). Everything that touches the OS is injectable so the rules can be tested on
// any machine.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { KelidError } from '../model/errors.js';
import type { ModuleSource } from '../model/services.js';
import { loadKnownModules } from './native-config.js';
import type { KnownModule, ModulePlatform, ModuleQuirks } from './native-config.js';

export type { ModuleQuirks } from './native-config.js';
export type { ModuleSource };

/** One element of the config file's `modules` array (PROTOCOL.md section 8). */
export interface ModuleConfigEntry {
  id: string;
  path: string;
  env?: Record<string, string>;
}

/** A module the agent should start a module host for. */
export interface ModuleCandidate {
  id: string;
  name: string;
  /** Library path handed to the module host (after variable expansion; symlinks kept). */
  path: string;
  /** Extra environment for this module's host process only. */
  env: Record<string, string>;
  source: ModuleSource;
  reinitializeToDetectTokens: boolean;
  quirks: ModuleQuirks;
}

export interface DiscoveryOptions {
  platform?: NodeJS.Platform;
  arch?: string;
  env?: NodeJS.ProcessEnv;
  configured?: readonly ModuleConfigEntry[];
  /** Add the known and p11-kit-registered modules that exist on this machine. Default true. */
  autoDetect?: boolean;
  fileExists?: (p: string) => boolean;
  readDir?: (p: string) => string[];
  readFile?: (p: string) => string;
  /** Resolves symlinks; throws when the file does not exist. Default fs.realpathSync. */
  realpath?: (p: string) => string;
  /** Default: loadKnownModules(). */
  knownModules?: readonly KnownModule[];
  /** Name matched against p11-kit's enable-in/disable-in. Default 'kelid'. */
  programName?: string;
}

export interface P11KitRegistryOptions {
  platform?: NodeJS.Platform;
  arch?: string;
  env?: NodeJS.ProcessEnv;
  fileExists?: (p: string) => boolean;
  readDir?: (p: string) => string[];
  readFile?: (p: string) => string;
  programName?: string;
  /** Directories of *.module files, lowest precedence first. Default: package, system, user. */
  configDirs?: readonly string[];
  /** Where relative `module:` values are looked up, in order. Default: the multiarch and lib64 pkcs11 dirs. */
  moduleDirs?: readonly string[];
}

const DEFAULT_PROGRAM = 'kelid';

// Debian multiarch triplets by Node's process.arch.
const MULTIARCH: Readonly<Record<string, string>> = {
  x64: 'x86_64-linux-gnu',
  arm64: 'aarch64-linux-gnu',
  arm: 'arm-linux-gnueabihf',
  ia32: 'i386-linux-gnu',
  ppc64: 'powerpc64le-linux-gnu',
  s390x: 's390x-linux-gnu',
  riscv64: 'riscv64-linux-gnu',
  loong64: 'loongarch64-linux-gnu',
};

function pathApi(platform: NodeJS.Platform): path.PlatformPath {
  return platform === 'win32' ? path.win32 : path.posix;
}

function lookupEnv(env: NodeJS.ProcessEnv, name: string, platform: NodeJS.Platform): string | undefined {
  const direct = env[name];
  if (direct !== undefined && direct !== '') return direct;
  if (platform !== 'win32') return undefined;
  // Windows variable names are case-insensitive; an injected plain object is not.
  const upper = name.toUpperCase();
  for (const [k, v] of Object.entries(env)) {
    if (k.toUpperCase() === upper && v !== undefined && v !== '') return v;
  }
  return undefined;
}

// Expands a template; `missing` tells whether some variable (or the multiarch triplet) was unknown.
function expandTemplate(
  template: string,
  platform: NodeJS.Platform,
  env: NodeJS.ProcessEnv,
  arch: string,
): { value: string; missing: boolean } {
  let missing = false;
  const lookup = (whole: string, name: string): string => {
    const v = lookupEnv(env, name, platform);
    if (v === undefined) missing = true;
    return v ?? whole;
  };
  if (platform === 'win32') {
    return { value: template.replace(/%([^%]+)%/g, lookup), missing };
  }
  let value = template;
  if (value === '~' || value.startsWith('~/')) value = lookup('~', 'HOME') + value.slice(1);
  value = value.replace(
    /\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)/g,
    (whole, braced?: string, bare?: string) => lookup(whole, (braced ?? bare) as string),
  );
  if (platform === 'linux' && value.includes('{multiarch}')) {
    const triplet = MULTIARCH[arch];
    if (triplet === undefined) missing = true;
    else value = value.split('{multiarch}').join(triplet);
  }
  return { value, missing };
}

/**
 * Expands a module path template: `%VAR%` on win32 (case-insensitive names); a leading `~`, `$VAR`
 * and `${VAR}` elsewhere; `{multiarch}` on Linux (Debian triplet of `arch`). Unset variables are
 * left as written, so such a path simply does not exist.
 */
export function expandModulePath(
  template: string,
  platform: NodeJS.Platform,
  env: NodeJS.ProcessEnv,
  arch: string = process.arch,
): string {
  return expandTemplate(template, platform, env, arch).value;
}

function isModulePlatform(p: NodeJS.Platform): p is ModulePlatform {
  return p === 'linux' || p === 'darwin' || p === 'win32';
}

/**
 * The expanded candidate paths of a known module on `platform`, in the order to try them. Paths that
 * use an unset variable are left out.
 */
export function candidatePaths(
  entry: Pick<KnownModule, 'paths'>,
  platform: NodeJS.Platform,
  env: NodeJS.ProcessEnv,
  arch: string = process.arch,
): string[] {
  if (!isModulePlatform(platform)) return [];
  const P = pathApi(platform);
  const out: string[] = [];
  for (const template of entry.paths[platform] ?? []) {
    const { value, missing } = expandTemplate(template, platform, env, arch);
    if (!missing) out.push(P.normalize(value));
  }
  return out;
}

function defaultFileExists(p: string): boolean {
  try {
    return fs.statSync(p).isFile();
  } catch {
    return false;
  }
}

function defaultReadDir(p: string): string[] {
  return fs.readdirSync(p);
}

function defaultReadFile(p: string): string {
  return fs.readFileSync(p, 'utf8');
}

// --- p11-kit registry -------------------------------------------------------------------------

interface ModuleConfigFile {
  name: string;
  fields: Map<string, string>;
}

// pkcs11.conf(5): `name: value` lines; blank lines and lines starting with # are ignored.
function parseModuleConfig(text: string): Map<string, string> {
  const fields = new Map<string, string>();
  for (const rawLine of text.split(/\r?\n/)) {
    const line = rawLine.trim();
    if (line === '' || line.startsWith('#')) continue;
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    const name = line.slice(0, colon).trim();
    if (!/^[A-Za-z0-9._-]+$/.test(name)) continue;
    fields.set(name, line.slice(colon + 1).trim());
  }
  return fields;
}

function isTrue(v: string | undefined): boolean {
  return v !== undefined && /^(yes|true|on|1)$/i.test(v);
}

function programList(v: string): string[] {
  return v.split(/[\s,]+/).filter((s) => s !== '');
}

function defaultModuleDirs(arch: string): string[] {
  const triplet = MULTIARCH[arch];
  return [
    ...(triplet === undefined ? [] : [`/usr/lib/${triplet}/pkcs11`]),
    '/usr/lib64/pkcs11',
    '/usr/lib/pkcs11',
    '/usr/local/lib/pkcs11',
  ];
}

function defaultConfigDirs(env: NodeJS.ProcessEnv): string[] {
  const dirs = ['/usr/share/p11-kit/modules', '/etc/pkcs11/modules'];
  const home = lookupEnv(env, 'HOME', 'linux');
  if (home !== undefined) dirs.push(path.posix.join(home, '.config/pkcs11/modules'));
  return dirs;
}

/**
 * Modules registered with p11-kit that p11-kit would load in a program called `programName`
 * ('kelid'): the `*.module` files of the package, system and user directories, where a file in a
 * later directory replaces the same-named file of an earlier one (a blank `module:` unregisters
 * it). Left out: `enable-in`/`disable-in` excluding the program, `disable: yes`, trust-policy
 * modules (CA anchors, never keys) and `remote:` modules (nothing to load). Relative `module:`
 * values resolve against p11-kit's module directory. Sorted like p11-kit: priority, then name.
 * Only Linux has a registry; other platforms give [].
 */
export function readP11KitRegistry(
  options: P11KitRegistryOptions = {},
): Array<{ name: string; path: string }> {
  const platform = options.platform ?? process.platform;
  if (platform !== 'linux') return [];
  const env = options.env ?? process.env;
  const arch = options.arch ?? process.arch;
  const fileExists = options.fileExists ?? defaultFileExists;
  const readDir = options.readDir ?? defaultReadDir;
  const readFile = options.readFile ?? defaultReadFile;
  const program = options.programName ?? DEFAULT_PROGRAM;
  const configDirs = options.configDirs ?? defaultConfigDirs(env);
  const moduleDirs = options.moduleDirs ?? defaultModuleDirs(arch);

  const files = new Map<string, ModuleConfigFile>();
  for (const dir of configDirs) {
    let names: string[];
    try {
      names = readDir(dir);
    } catch {
      continue;
    }
    for (const fileName of [...names].sort()) {
      if (!/^[A-Za-z0-9][A-Za-z0-9_,.-]*\.module$/.test(fileName)) continue;
      let text: string;
      try {
        text = readFile(path.posix.join(dir, fileName));
      } catch {
        continue;
      }
      const name = fileName.slice(0, -'.module'.length);
      files.set(name, { name, fields: parseModuleConfig(text) });
    }
  }

  const enabled: Array<{ name: string; path: string; priority: number }> = [];
  for (const { name, fields } of files.values()) {
    const module = fields.get('module') ?? '';
    if (module === '') continue;
    if (isTrue(fields.get('trust-policy')) || isTrue(fields.get('disable'))) continue;
    const enableIn = fields.get('enable-in');
    if (enableIn !== undefined && !programList(enableIn).includes(program)) continue;
    const disableIn = fields.get('disable-in');
    if (disableIn !== undefined && programList(disableIn).includes(program)) continue;
    let resolved: string;
    if (path.posix.isAbsolute(module)) {
      resolved = path.posix.normalize(module);
    } else {
      const found = moduleDirs.map((d) => path.posix.join(d, module)).find((p) => fileExists(p));
      resolved = found ?? path.posix.join(moduleDirs[0] ?? '/usr/lib/pkcs11', module);
    }
    const priority = Number.parseInt(fields.get('priority') ?? '0', 10);
    enabled.push({ name, path: resolved, priority: Number.isFinite(priority) ? priority : 0 });
  }
  enabled.sort((a, b) => b.priority - a.priority || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  return enabled.map(({ name, path: p }) => ({ name, path: p }));
}

// --- discovery --------------------------------------------------------------------------------

function validateConfigured(configured: readonly ModuleConfigEntry[]): void {
  const ids = new Set<string>();
  for (const c of configured) {
    if (typeof c.id !== 'string' || c.id === '' || typeof c.path !== 'string' || c.path === '') {
      throw new KelidError('ERR_INVALID_INPUT', 'every configured module needs a non-empty id and path');
    }
    if (ids.has(c.id))
      throw new KelidError('ERR_INVALID_INPUT', `configured module id ${c.id} is used twice`);
    ids.add(c.id);
  }
}

/**
 * The modules to load, in order:
 * 1. every configured module, as given (even when its file is missing: the host then reports the
 *    load failure); one that resolves to a known module's file, or has its file name, takes that
 *    entry's name, quirks and re-initialisation flag;
 * 2. with `autoDetect` (default true), the first existing path of each known module;
 * 3. with `autoDetect`, on Linux, the p11-kit-registered modules that exist (id `p11kit-<name>`).
 * A file already listed (compared by real path) is not listed again, so the first source wins.
 * The p11-kit proxy found by auto-detection is dropped when any module it proxies is loaded
 * directly, so no token appears twice; a configured proxy is always kept. An auto-detected id
 * that a configured module already uses gets a `-2`, `-3`… suffix. Throws ERR_INVALID_INPUT for a
 * configured entry without id or path, or a configured id used twice.
 */
export function discoverModules(options: DiscoveryOptions = {}): ModuleCandidate[] {
  const platform = options.platform ?? process.platform;
  const arch = options.arch ?? process.arch;
  const env = options.env ?? process.env;
  const configured = options.configured ?? [];
  const fileExists = options.fileExists ?? defaultFileExists;
  const realpath = options.realpath ?? ((p: string) => fs.realpathSync(p));
  const P = pathApi(platform);
  validateConfigured(configured);
  const known = options.knownModules ?? loadKnownModules();

  const fileKey = (p: string): string => {
    let real: string;
    try {
      real = realpath(p);
    } catch {
      real = P.resolve(p);
    }
    return platform === 'win32' ? real.toLowerCase() : real;
  };
  const baseKey = (p: string): string => (platform === 'win32' ? P.basename(p).toLowerCase() : P.basename(p));

  // Which known entry a path belongs to: same real file first, then same file name.
  const byFile = new Map<string, KnownModule>();
  const byBase = new Map<string, KnownModule>();
  const existingPath = new Map<KnownModule, string>();
  for (const entry of known) {
    for (const p of candidatePaths(entry, platform, env, arch)) {
      if (!byBase.has(baseKey(p))) byBase.set(baseKey(p), entry);
      if (!fileExists(p)) continue;
      if (!existingPath.has(entry)) existingPath.set(entry, p);
      const key = fileKey(p);
      if (!byFile.has(key)) byFile.set(key, entry);
    }
  }
  const matchKnown = (p: string, key: string): KnownModule | undefined =>
    byFile.get(key) ?? byBase.get(baseKey(p));

  const out: Array<ModuleCandidate & { key: string; aggregator: boolean }> = [];
  const usedIds = new Set(configured.map((c) => c.id));
  const seen = new Set<string>();
  const uniqueId = (wanted: string): string => {
    let id = wanted;
    for (let n = 2; usedIds.has(id); n++) id = `${wanted}-${n}`;
    usedIds.add(id);
    return id;
  };

  for (const c of configured) {
    const p = expandModulePath(c.path, platform, env, arch);
    const key = fileKey(p);
    const entry = matchKnown(p, key);
    seen.add(key);
    out.push({
      id: c.id,
      name: entry?.name ?? c.id,
      path: p,
      env: { ...(c.env ?? {}) },
      source: 'config',
      reinitializeToDetectTokens: entry?.reinitializeToDetectTokens ?? false,
      quirks: structuredClone(entry?.quirks ?? {}),
      key,
      aggregator: false,
    });
  }

  if (options.autoDetect ?? true) {
    for (const entry of known) {
      if (!entry.autoDetect) continue;
      const p = existingPath.get(entry);
      if (p === undefined) continue;
      const key = fileKey(p);
      if (seen.has(key)) continue;
      seen.add(key);
      out.push({
        id: uniqueId(entry.id),
        name: entry.name,
        path: p,
        env: {},
        source: 'known',
        reinitializeToDetectTokens: entry.reinitializeToDetectTokens,
        quirks: structuredClone(entry.quirks),
        key,
        aggregator: entry.aggregator,
      });
    }

    const registryKeys = new Set<string>();
    const registryOptions: P11KitRegistryOptions = { platform, arch, env, fileExists };
    if (options.readDir !== undefined) registryOptions.readDir = options.readDir;
    if (options.readFile !== undefined) registryOptions.readFile = options.readFile;
    if (options.programName !== undefined) registryOptions.programName = options.programName;
    for (const r of readP11KitRegistry(registryOptions)) {
      if (!fileExists(r.path)) continue;
      const key = fileKey(r.path);
      registryKeys.add(key);
      const entry = matchKnown(r.path, key);
      // A registered proxy or client module is no more auto-loadable than its known entry.
      if (entry !== undefined && (!entry.autoDetect || entry.aggregator)) continue;
      if (seen.has(key)) continue;
      seen.add(key);
      out.push({
        id: uniqueId(`p11kit-${r.name.replace(/[^A-Za-z0-9._-]/g, '-')}`),
        name: entry?.name ?? `${r.name} (p11-kit)`,
        path: r.path,
        env: {},
        source: 'p11-kit',
        reinitializeToDetectTokens: entry?.reinitializeToDetectTokens ?? false,
        quirks: structuredClone(entry?.quirks ?? {}),
        key,
        aggregator: false,
      });
    }

    const proxiedLoadedDirectly = out.some((c) => !c.aggregator && registryKeys.has(c.key));
    if (proxiedLoadedDirectly) {
      for (let i = out.length - 1; i >= 0; i--) {
        const c = out[i];
        if (c !== undefined && c.source === 'known' && c.aggregator) out.splice(i, 1);
      }
    }
  }

  return out.map(({ key: _key, aggregator: _aggregator, ...candidate }) => candidate);
}
