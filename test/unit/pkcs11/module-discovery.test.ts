import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isKelidError } from '../../../src/model/errors.js';
import { loadKnownModules } from '../../../src/pkcs11/native-config.js';
import type { KnownModule } from '../../../src/pkcs11/native-config.js';
import {
  candidatePaths,
  discoverModules,
  expandModulePath,
  readP11KitRegistry,
} from '../../../src/pkcs11/module-discovery.js';

const known = loadKnownModules();
const entry = (id: string): KnownModule => {
  const e = known.find((m) => m.id === id);
  if (!e) throw new Error(`no known module ${id}`);
  return e;
};

const WIN_ENV = {
  SystemRoot: 'C:\\Windows',
  ProgramFiles: 'C:\\Program Files',
  'ProgramFiles(x86)': 'C:\\Program Files (x86)',
  SystemDrive: 'C:',
};

/**
 * A fake machine: `files` exist, `links` maps a path to the file it resolves to. Keys are compared
 * exactly as given (Windows tests spell paths the way the expansion produces them).
 */
function fakeFs(files: string[], links: Record<string, string> = {}) {
  const exists = new Set([...files, ...Object.keys(links)]);
  return {
    fileExists: (p: string) => exists.has(p),
    realpath: (p: string) => {
      if (!exists.has(p)) throw Object.assign(new Error(`ENOENT: ${p}`), { code: 'ENOENT' });
      return links[p] ?? p;
    },
    // No p11-kit registry unless a test adds one.
    readDir: (p: string): string[] => {
      throw Object.assign(new Error(`ENOENT: ${p}`), { code: 'ENOENT' });
    },
  };
}

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    return isKelidError(e) ? e.code : `not a KelidError: ${String(e)}`;
  }
  return undefined;
}

describe('module-discovery', () => {
  describe('#expandModulePath', () => {
    it('expands %VAR% on win32, matching names case-insensitively', () => {
      expect(expandModulePath('%ProgramFiles%\\OpenSC Project\\x.dll', 'win32', WIN_ENV)).toBe(
        'C:\\Program Files\\OpenSC Project\\x.dll',
      );
      expect(expandModulePath('%SYSTEMROOT%\\System32\\eTPKCS11.dll', 'win32', WIN_ENV)).toBe(
        'C:\\Windows\\System32\\eTPKCS11.dll',
      );
      expect(expandModulePath('%ProgramFiles(x86)%\\a.dll', 'win32', WIN_ENV)).toBe(
        'C:\\Program Files (x86)\\a.dll',
      );
    });

    it('leaves an unset %VAR% as written', () => {
      expect(expandModulePath('%NoSuchVar%\\a.dll', 'win32', WIN_ENV)).toBe('%NoSuchVar%\\a.dll');
    });

    it('expands a leading ~, $VAR and ${VAR} on linux and darwin', () => {
      const env = { HOME: '/home/ra', PREFIX: '/opt/tokens' };
      expect(expandModulePath('~/lib/a.so', 'linux', env)).toBe('/home/ra/lib/a.so');
      expect(expandModulePath('$PREFIX/lib/a.so', 'darwin', env)).toBe('/opt/tokens/lib/a.so');
      expect(expandModulePath('${PREFIX}/lib/a.dylib', 'darwin', env)).toBe('/opt/tokens/lib/a.dylib');
      expect(expandModulePath('/a/~/b.so', 'linux', env)).toBe('/a/~/b.so');
    });

    it('does not treat %VAR% as a variable on linux', () => {
      expect(expandModulePath('/opt/%HOME%/a.so', 'linux', { HOME: '/home/ra' })).toBe('/opt/%HOME%/a.so');
    });

    it('replaces {multiarch} with the Debian triplet of the architecture on linux', () => {
      expect(expandModulePath('/usr/lib/{multiarch}/a.so', 'linux', {}, 'x64')).toBe(
        '/usr/lib/x86_64-linux-gnu/a.so',
      );
      expect(expandModulePath('/usr/lib/{multiarch}/a.so', 'linux', {}, 'arm64')).toBe(
        '/usr/lib/aarch64-linux-gnu/a.so',
      );
    });
  });

  describe('#candidatePaths', () => {
    it('returns the expanded win32 paths of a shipped entry in order', () => {
      expect(candidatePaths(entry('opensc'), 'win32', WIN_ENV)).toEqual([
        'C:\\Program Files\\OpenSC Project\\OpenSC\\pkcs11\\opensc-pkcs11.dll',
        'C:\\Windows\\System32\\opensc-pkcs11.dll',
      ]);
    });

    it('leaves out paths whose variable is unset', () => {
      const env = { SystemRoot: 'C:\\Windows', ProgramFiles: 'C:\\Program Files' };
      expect(candidatePaths(entry('softhsm2'), 'win32', env)).toEqual([
        'C:\\Program Files\\SoftHSM2\\lib\\softhsm2-x64.dll',
      ]);
    });

    it('expands the multiarch paths for the given architecture', () => {
      const paths = candidatePaths(entry('softhsm2'), 'linux', {}, 'arm64');
      expect(paths[0]).toBe('/usr/lib/softhsm/libsofthsm2.so');
      expect(paths).toContain('/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so');
      expect(paths.some((p) => p.includes('{multiarch}'))).toBe(false);
    });

    it('returns nothing for a platform the entry has no paths for', () => {
      expect(candidatePaths(entry('p11-kit-proxy'), 'win32', WIN_ENV)).toEqual([]);
      expect(candidatePaths(entry('opensc'), 'freebsd', {})).toEqual([]);
    });
  });

  describe('#discoverModules', () => {
    it('finds a Windows module through %SystemRoot% and %ProgramFiles%', () => {
      const fake = fakeFs([
        'C:\\Windows\\System32\\eTPKCS11.dll',
        'C:\\Program Files\\Yubico\\Yubico PIV Tool\\bin\\libykcs11.dll',
      ]);
      const found = discoverModules({ platform: 'win32', env: WIN_ENV, knownModules: known, ...fake });
      expect(found.map((c) => [c.id, c.path])).toEqual([
        ['safenet-etoken', 'C:\\Windows\\System32\\eTPKCS11.dll'],
        ['yubico-ykcs11', 'C:\\Program Files\\Yubico\\Yubico PIV Tool\\bin\\libykcs11.dll'],
      ]);
      expect(found[0]).toMatchObject({ source: 'known', env: {}, quirks: { noParallelSessions: true } });
      expect(found[1]?.reinitializeToDetectTokens).toBe(true);
    });

    it('finds a macOS module in the Homebrew prefix and takes only the first existing path', () => {
      const fake = fakeFs(['/opt/homebrew/lib/libykcs11.dylib', '/usr/local/lib/libykcs11.dylib']);
      const found = discoverModules({ platform: 'darwin', env: {}, knownModules: known, ...fake });
      expect(found.map((c) => c.path)).toEqual(['/usr/local/lib/libykcs11.dylib']);
    });

    it('lists configured modules first, even when their file does not exist', () => {
      const fake = fakeFs(['/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so']);
      const found = discoverModules({
        platform: 'linux',
        arch: 'x64',
        env: { HOME: '/home/ra' },
        knownModules: known,
        configured: [{ id: 'vendor', path: '~/vendor/libvendor.so', env: { VENDOR_DEBUG: '0' } }],
        ...fake,
      });
      expect(found.map((c) => [c.id, c.source, c.path])).toEqual([
        ['vendor', 'config', '/home/ra/vendor/libvendor.so'],
        ['opensc', 'known', '/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so'],
      ]);
      expect(found[0]).toMatchObject({
        name: 'vendor',
        env: { VENDOR_DEBUG: '0' },
        reinitializeToDetectTokens: false,
      });
    });

    it('lets a configured module win over a known one with the same real path and lends it the known flags', () => {
      const real = '/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so';
      const fake = fakeFs([real], { '/usr/lib/softhsm/libsofthsm2.so': real, '/home/ra/hsm.so': real });
      const found = discoverModules({
        platform: 'linux',
        arch: 'x64',
        env: {},
        knownModules: known,
        configured: [
          { id: 'dev-hsm', path: '/home/ra/hsm.so', env: { SOFTHSM2_CONF: '/tmp/softhsm2.conf' } },
        ],
        ...fake,
      });
      expect(found).toHaveLength(1);
      expect(found[0]).toMatchObject({
        id: 'dev-hsm',
        name: 'SoftHSM 2',
        source: 'config',
        path: '/home/ra/hsm.so',
        env: { SOFTHSM2_CONF: '/tmp/softhsm2.conf' },
        reinitializeToDetectTokens: true,
      });
    });

    it('lends the known flags by file name to a configured module installed elsewhere', () => {
      const found = discoverModules({
        platform: 'linux',
        arch: 'x64',
        env: {},
        knownModules: known,
        autoDetect: false,
        configured: [
          {
            id: 'remote',
            path: '/opt/p11/p11-kit-client.so',
            env: { P11_KIT_SERVER_ADDRESS: 'unix:path=/s' },
          },
        ],
        ...fakeFs([]),
      });
      expect(found).toEqual([
        {
          id: 'remote',
          name: 'p11-kit remote client',
          path: '/opt/p11/p11-kit-client.so',
          env: { P11_KIT_SERVER_ADDRESS: 'unix:path=/s' },
          source: 'config',
          reinitializeToDetectTokens: true,
          quirks: {},
        },
      ]);
    });

    it('keeps two configured modules with the same file (different env) and lists nothing else without autoDetect', () => {
      const real = '/usr/lib/softhsm/libsofthsm2.so';
      const found = discoverModules({
        platform: 'linux',
        env: {},
        knownModules: known,
        autoDetect: false,
        configured: [
          { id: 'a', path: real, env: { SOFTHSM2_CONF: '/a.conf' } },
          { id: 'b', path: real, env: { SOFTHSM2_CONF: '/b.conf' } },
        ],
        ...fakeFs([real, '/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so']),
      });
      expect(found.map((c) => c.id)).toEqual(['a', 'b']);
    });

    it('gives an auto-detected module a suffixed id when a configured module took its id', () => {
      const found = discoverModules({
        platform: 'linux',
        arch: 'x64',
        env: {},
        knownModules: known,
        configured: [{ id: 'opensc', path: '/opt/custom/libcustom.so' }],
        ...fakeFs(['/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so']),
      });
      expect(found.map((c) => c.id)).toEqual(['opensc', 'opensc-2']);
      expect(new Set(found.map((c) => c.id)).size).toBe(found.length);
    });

    it('throws ERR_INVALID_INPUT for a configured id used twice or an entry without a path', () => {
      const base = { platform: 'linux' as const, env: {}, knownModules: known, ...fakeFs([]) };
      expect(
        codeOf(() =>
          discoverModules({
            ...base,
            configured: [
              { id: 'x', path: '/a.so' },
              { id: 'x', path: '/b.so' },
            ],
          }),
        ),
      ).toBe('ERR_INVALID_INPUT');
      expect(codeOf(() => discoverModules({ ...base, configured: [{ id: 'x', path: '' }] }))).toBe(
        'ERR_INVALID_INPUT',
      );
    });

    it('never auto-detects a module marked autoDetect: false', () => {
      const found = discoverModules({
        platform: 'linux',
        arch: 'x64',
        env: {},
        knownModules: known,
        ...fakeFs(['/usr/lib/x86_64-linux-gnu/pkcs11/p11-kit-client.so']),
      });
      expect(found).toEqual([]);
    });

    it('compares Windows paths without regard to case', () => {
      const found = discoverModules({
        platform: 'win32',
        env: WIN_ENV,
        knownModules: known,
        configured: [{ id: 'etoken', path: 'c:\\windows\\system32\\etpkcs11.DLL' }],
        ...fakeFs(['C:\\Windows\\System32\\eTPKCS11.dll', 'c:\\windows\\system32\\etpkcs11.DLL']),
      });
      expect(found.map((c) => [c.id, c.name])).toEqual([
        ['etoken', 'SafeNet Authentication Client (eToken)'],
      ]);
    });
  });

  describe('with a p11-kit registry', () => {
    let root: string;
    let pkgDir: string;
    let sysDir: string;
    let userDir: string;
    let modDir: string;
    let libDir: string;

    beforeEach(() => {
      root = fs.mkdtempSync(path.join(os.tmpdir(), 'kelid-p11kit-'));
      pkgDir = path.join(root, 'share/p11-kit/modules');
      sysDir = path.join(root, 'etc/pkcs11/modules');
      userDir = path.join(root, 'home/.config/pkcs11/modules');
      modDir = path.join(root, 'lib/pkcs11');
      libDir = path.join(root, 'lib');
      for (const d of [pkgDir, sysDir, userDir, modDir]) fs.mkdirSync(d, { recursive: true });
    });
    afterEach(() => {
      fs.rmSync(root, { recursive: true, force: true });
    });

    const writeModule = (dir: string, name: string, body: string) =>
      fs.writeFileSync(path.join(dir, name), body);
    const lib = (file: string): string => {
      fs.writeFileSync(file, 'not really ELF');
      return file;
    };
    const registry = () =>
      readP11KitRegistry({
        platform: 'linux',
        configDirs: [pkgDir, sysDir, userDir],
        moduleDirs: [modDir, libDir],
      });

    describe('#readP11KitRegistry', () => {
      it('resolves relative modules against the module directory and keeps absolute ones', () => {
        lib(path.join(modDir, 'rel-pkcs11.so'));
        const abs = lib(path.join(libDir, 'abs.so'));
        writeModule(pkgDir, 'rel.module', '# comment\n\nmodule: rel-pkcs11.so\n');
        writeModule(pkgDir, 'abs.module', `module:   ${abs}   \ncritical: yes\n`);
        expect(registry()).toEqual([
          { name: 'abs', path: abs },
          { name: 'rel', path: path.join(modDir, 'rel-pkcs11.so') },
        ]);
      });

      it('looks a relative module up in the later module directories when the first lacks it', () => {
        lib(path.join(libDir, 'only-here.so'));
        writeModule(pkgDir, 'x.module', 'module: only-here.so');
        expect(registry()).toEqual([{ name: 'x', path: path.join(libDir, 'only-here.so') }]);
      });

      it('skips modules disabled for kelid, enabled only elsewhere, disabled, trust-only, remote or blank', () => {
        writeModule(pkgDir, 'dis.module', 'module: a.so\ndisable-in: firefox, kelid\n');
        writeModule(pkgDir, 'proxyonly.module', 'module: b.so\nenable-in: p11-kit-proxy\n');
        writeModule(pkgDir, 'off.module', 'module: c.so\ndisable: yes\n');
        writeModule(
          pkgDir,
          'trust.module',
          'module: p11-kit-trust.so\ntrust-policy: yes\ndisable-in: p11-kit-proxy\n',
        );
        writeModule(pkgDir, 'remote.module', 'remote: |ssh host p11-kit remote /x.so\n');
        writeModule(pkgDir, 'blank.module', 'module:\n');
        writeModule(pkgDir, 'ok-proxy-disabled.module', 'module: d.so\ndisable-in: p11-kit-proxy\n');
        writeModule(pkgDir, 'ok-enabled.module', 'module: e.so\nenable-in: seahorse kelid\n');
        writeModule(pkgDir, 'README.txt', 'module: f.so\n');
        expect(registry().map((r) => r.name)).toEqual(['ok-enabled', 'ok-proxy-disabled']);
      });

      it('lets a later directory replace or unregister a same-named module', () => {
        writeModule(pkgDir, 'vendor.module', 'module: /usr/lib/vendor-old.so\n');
        writeModule(sysDir, 'vendor.module', 'module: /usr/lib/vendor-new.so\n');
        writeModule(pkgDir, 'softhsm2.module', 'module: /usr/lib/softhsm/libsofthsm2.so\n');
        writeModule(userDir, 'softhsm2.module', 'module:\n');
        expect(registry()).toEqual([{ name: 'vendor', path: '/usr/lib/vendor-new.so' }]);
      });

      it('orders by priority, then by name', () => {
        writeModule(pkgDir, 'b.module', 'module: /b.so\n');
        writeModule(pkgDir, 'a.module', 'module: /a.so\n');
        writeModule(pkgDir, 'z.module', 'module: /z.so\npriority: 5\n');
        expect(registry().map((r) => r.name)).toEqual(['z', 'a', 'b']);
      });

      it('reads the package, system and ~/.config directories by default', () => {
        const asked: string[] = [];
        readP11KitRegistry({
          platform: 'linux',
          env: { HOME: '/home/ra' },
          readDir: (d) => {
            asked.push(d);
            return [];
          },
        });
        expect(asked).toEqual([
          '/usr/share/p11-kit/modules',
          '/etc/pkcs11/modules',
          '/home/ra/.config/pkcs11/modules',
        ]);
      });

      it('has no registry outside Linux', () => {
        writeModule(pkgDir, 'a.module', 'module: /a.so\n');
        expect(readP11KitRegistry({ platform: 'darwin', configDirs: [pkgDir] })).toEqual([]);
        expect(readP11KitRegistry({ platform: 'win32', configDirs: [pkgDir] })).toEqual([]);
      });
    });

    describe('#discoverModules', () => {
      // The registry directories are real temp dirs; known modules are a small synthetic list.
      const run = (
        knownModules: KnownModule[],
        extra: Partial<Parameters<typeof discoverModules>[0]> = {},
      ) => {
        const realRead = (d: string) => {
          const map: Record<string, string> = {
            '/usr/share/p11-kit/modules': pkgDir,
            '/etc/pkcs11/modules': sysDir,
            '/home/ra/.config/pkcs11/modules': userDir,
          };
          return fs.readdirSync(map[d] ?? path.join(root, 'missing'));
        };
        const realFile = (f: string) => {
          const dir = path.posix.dirname(f);
          const map: Record<string, string> = {
            '/usr/share/p11-kit/modules': pkgDir,
            '/etc/pkcs11/modules': sysDir,
            '/home/ra/.config/pkcs11/modules': userDir,
          };
          return fs.readFileSync(path.join(map[dir] ?? dir, path.posix.basename(f)), 'utf8');
        };
        return discoverModules({
          platform: 'linux',
          arch: 'x64',
          env: { HOME: '/home/ra' },
          knownModules,
          readDir: realRead,
          readFile: realFile,
          ...extra,
        });
      };
      const knownEntry = (id: string, paths: string[], more: Partial<KnownModule> = {}): KnownModule => ({
        id,
        name: id.toUpperCase(),
        vendor: 'test',
        tokens: [],
        paths: { linux: paths },
        confidence: 'verified',
        reinitializeToDetectTokens: false,
        autoDetect: true,
        aggregator: false,
        quirks: {},
        ...more,
      });

      it('adds registered modules after the known ones, named p11kit-<name>, skipping files already listed', () => {
        const a = lib(path.join(libDir, 'a.so'));
        const aLink = path.join(libDir, 'a-link.so');
        fs.symlinkSync(a, aLink);
        const b = lib(path.join(libDir, 'b.so'));
        writeModule(pkgDir, 'alpha.module', `module: ${aLink}\n`);
        writeModule(pkgDir, 'beta.module', `module: ${b}\n`);
        writeModule(pkgDir, 'gone.module', `module: ${path.join(libDir, 'missing.so')}\n`);
        const found = run([knownEntry('known-a', [a])]);
        expect(found.map((c) => [c.id, c.source, c.path])).toEqual([
          ['known-a', 'known', a],
          ['p11kit-beta', 'p11-kit', b],
        ]);
        expect(found[1]?.name).toBe('beta (p11-kit)');
      });

      it('skips the p11-kit proxy when it finds a proxied module directly, and keeps it otherwise', () => {
        const proxy = lib(path.join(libDir, 'p11-kit-proxy.so'));
        const hsm = lib(path.join(libDir, 'libhsm.so'));
        const modules = [
          knownEntry('p11-kit-proxy', [proxy], { aggregator: true, reinitializeToDetectTokens: true }),
          knownEntry('hsm', [hsm]),
        ];
        expect(run(modules).map((c) => c.id)).toEqual(['p11-kit-proxy', 'hsm']);
        writeModule(pkgDir, 'hsm.module', `module: ${hsm}\n`);
        expect(run(modules).map((c) => c.id)).toEqual(['hsm']);
        const configured = run(modules, { configured: [{ id: 'proxy', path: proxy }] });
        expect(configured.map((c) => [c.id, c.source, c.reinitializeToDetectTokens])).toEqual([
          ['proxy', 'config', true],
          ['hsm', 'known', false],
        ]);
      });

      it('does not load a registered module that matches a known entry excluded from auto-detection', () => {
        const client = lib(path.join(libDir, 'p11-kit-client.so'));
        writeModule(pkgDir, 'client.module', `module: ${client}\n`);
        expect(run([knownEntry('client', ['/elsewhere/p11-kit-client.so'], { autoDetect: false })])).toEqual(
          [],
        );
      });

      it('lends a registered module the flags of the known entry with the same file name', () => {
        const yk = lib(path.join(libDir, 'libykcs11.so'));
        writeModule(sysDir, 'ykcs11.module', `module: ${yk}\n`);
        const found = run([
          knownEntry('yk', ['/usr/lib/libykcs11.so'], {
            reinitializeToDetectTokens: true,
            quirks: { noParallelSessions: true },
          }),
        ]);
        expect(found).toEqual([
          {
            id: 'p11kit-ykcs11',
            name: 'YK',
            path: yk,
            env: {},
            source: 'p11-kit',
            reinitializeToDetectTokens: true,
            quirks: { noParallelSessions: true },
          },
        ]);
      });
    });
  });

  describe('on this machine', () => {
    it('discovers the installed SoftHSM2 and OpenSC, each once, and neither the proxy nor the trust module', () => {
      const found = discoverModules();
      const byId = new Map(found.map((c) => [c.id, c]));
      expect(byId.get('softhsm2')).toMatchObject({
        path: '/usr/lib/softhsm/libsofthsm2.so',
        source: 'known',
        reinitializeToDetectTokens: true,
      });
      const opensc = byId.get('opensc');
      expect(opensc?.source).toBe('known');
      expect(fs.realpathSync(opensc?.path ?? '')).toBe(
        fs.realpathSync('/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so'),
      );
      const reals = found.map((c) => fs.realpathSync(c.path));
      expect(new Set(reals).size).toBe(reals.length);
      expect(found.some((c) => c.path.endsWith('p11-kit-proxy.so'))).toBe(false);
      expect(found.some((c) => c.path.endsWith('p11-kit-trust.so'))).toBe(false);
    });

    it('reads the registrations that Debian packages installed for SoftHSM2 and OpenSC', () => {
      const reals = readP11KitRegistry().map((r) => fs.realpathSync(r.path));
      expect(reals).toContain(fs.realpathSync('/usr/lib/softhsm/libsofthsm2.so'));
      expect(reals).toContain(fs.realpathSync('/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so'));
      expect(reals.some((p) => p.endsWith('p11-kit-trust.so'))).toBe(false);
    });
  });
});
