// softhsm-only: tests the .deb and the single-file program; the module does not matter
import { spawnSync } from 'node:child_process';
import type { SpawnSyncReturns } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentProcess, REPO } from '../../helpers/agent-process.js';
import { SoftHsm } from '../../helpers/softhsm.js';

// `npm run package` end to end: build the single-file program and the .deb once (light
// compression), inspect the .deb, unpack it into a throw-away root and run the program from there
// with no node anywhere on PATH, against a SoftHSM token; as root, also install and remove it with
// dpkg on this machine when no kelid package or file is in the way.

const VERSION = (JSON.parse(fs.readFileSync(path.join(REPO, 'package.json'), 'utf8')) as { version: string })
  .version;
const DEB_NAME = `kelid_${VERSION}_amd64.deb`;
const SO = 'Officer99';
const PIN = '4815162342';

function sh(cmd: string, args: string[], options: { env?: NodeJS.ProcessEnv; cwd?: string } = {}) {
  return spawnSync(cmd, args, { encoding: 'utf8', ...options });
}

function ok(r: SpawnSyncReturns<string>): string {
  if (r.status !== 0) throw new Error(`exit ${r.status}: ${r.stderr || r.stdout}`);
  return r.stdout;
}

describe('Packaged Kelid (single-file program and .deb)', () => {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'kelid-package-'));
  const out = path.join(work, 'out');
  const root = path.join(work, 'root');
  const home = path.join(work, 'home');
  const bin = path.join(work, 'bin');
  const hsm = new SoftHsm('kelid-package-hsm-');
  const config = path.join(work, 'kelid.json');
  let deb = '';
  let program = '';
  /** The environment of a user without Node: no node directory on PATH, a fresh HOME. */
  let env: Record<string, string> = {};

  function kelid(args: string[]): SpawnSyncReturns<string> {
    return sh(program, args, { env, cwd: home });
  }

  beforeAll(() => {
    ok(sh(process.execPath, [path.join(REPO, 'scripts/package.mjs'), '--out', out, '--fast'], { cwd: REPO }));
    deb = path.join(out, DEB_NAME);
    ok(sh('dpkg-deb', ['-x', deb, root]));
    program = path.join(root, 'opt/kelid/kelid');
    fs.mkdirSync(home);
    // PATH holds only setpriv (the module hosts' parent-death guard), linked from its real place.
    fs.mkdirSync(bin);
    const setpriv = sh('sh', ['-c', 'command -v setpriv']).stdout.trim();
    if (setpriv) fs.symlinkSync(setpriv, path.join(bin, 'setpriv'));
    env = { PATH: bin, HOME: home, LANG: 'C.UTF-8' };
    hsm.initToken('packaged', SO, PIN);
    fs.writeFileSync(
      config,
      JSON.stringify({
        autoDetectModules: false,
        modules: [{ id: 'softhsm', path: hsm.module, env: hsm.env }],
      }),
    );
  }, 180_000);

  afterAll(() => {
    hsm.cleanup();
    fs.rmSync(work, { recursive: true, force: true });
  });

  it('builds a .deb whose control fields name the version, the libraries it links and the recommended token stack', () => {
    const info = ok(sh('dpkg-deb', ['-I', deb]));
    const field = (name: string): string => new RegExp(`^ ${name}: (.*)$`, 'm').exec(info)?.[1] ?? '';
    expect(field('Package')).toBe('kelid');
    expect(field('Version')).toBe(VERSION);
    expect(field('Architecture')).toBe('amd64');
    // From dpkg-shlibdeps over the program and the pkcs11js addon: glibc and the C++ runtime.
    expect(field('Depends')).toMatch(
      /^libc6 \(>= [\d.]+\), libgcc-s1 \(>= [\d.]+\), libstdc\+\+6 \(>= [\d.]+\)$/,
    );
    expect(field('Recommends').split(', ')).toEqual(
      expect.arrayContaining(['p11-kit', 'opensc', 'pcscd', 'libnss3-tools']),
    );
    expect(Number(field('Installed-Size'))).toBeGreaterThan(10_000);
  });

  it('holds the program under /opt/kelid, /usr/bin/kelid linking to it, and only its documentation besides', () => {
    const lines = ok(sh('dpkg-deb', ['-c', deb]))
      .trim()
      .split('\n');
    const entries = lines.map((l) => {
      const [mode, owner, , , , ...rest] = l.split(/\s+/);
      return { mode, owner, name: rest.join(' ') };
    });
    const files = entries.filter((e) => !e.mode.startsWith('d')).map((e) => e.name);
    expect(files.sort()).toEqual(
      [
        './opt/kelid/kelid',
        './usr/bin/kelid -> /opt/kelid/kelid',
        './usr/share/doc/kelid/changelog.gz',
        './usr/share/doc/kelid/copyright',
        './usr/share/lintian/overrides/kelid',
        './usr/share/man/man1/kelid.1.gz',
      ].sort(),
    );
    expect(entries.every((e) => e.owner === 'root/root')).toBe(true);
    expect(entries.find((e) => e.name === './opt/kelid/kelid')?.mode).toBe('-rwxr-xr-x');
    // One program: an ELF executable, no node_modules or scripts next to it.
    expect(fs.readFileSync(program).subarray(0, 4)).toEqual(Buffer.from([0x7f, 0x45, 0x4c, 0x46]));
    expect(fs.readdirSync(path.join(root, 'opt/kelid'))).toEqual(['kelid']);
  });

  it('runs with no node on PATH: --version, modules and tokens --json against SoftHSM', () => {
    expect(sh('/bin/sh', ['-c', 'command -v node'], { env }).status).not.toBe(0);
    expect(kelid(['--version']).stdout.trim()).toBe(VERSION);

    const modules = kelid(['modules', '--config', config]);
    expect(modules.status, modules.stderr).toBe(0);
    expect(modules.stdout).toMatch(/softhsm\s+LOADED/);
    expect(modules.stdout).toContain('SoftHSM');

    // Without setpriv the module hosts are forked straight from the program.
    const bare = sh(program, ['modules', '--config', config], {
      env: { ...env, PATH: '/nonexistent' },
      cwd: home,
    });
    expect(bare.stdout).toMatch(/softhsm\s+LOADED/);

    const tokens = kelid(['tokens', '--json', '--config', config]);
    expect(tokens.status, tokens.stderr).toBe(0);
    const list = JSON.parse(tokens.stdout) as Array<{
      label: string;
      moduleId: string;
      initialized: boolean;
    }>;
    // SoftHSM also shows its empty free slot.
    expect(list.filter((t) => t.initialized)).toEqual([
      expect.objectContaining({ label: 'packaged', moduleId: 'softhsm', initialized: true }),
    ]);
  });

  it('extracts its files to a private per-user cache, once per build, and replaces an altered copy', () => {
    expect(kelid(['--version']).status).toBe(0);
    const cache = path.join(home, '.cache', 'kelid');
    const [dir, ...others] = fs.readdirSync(cache);
    expect(others).toEqual([]);
    expect(dir).toMatch(/^[0-9a-f]{32}$/);
    expect(fs.statSync(cache).mode & 0o777).toBe(0o700);
    expect(fs.statSync(path.join(cache, dir)).mode & 0o777).toBe(0o700);
    const addon = path.join(cache, dir, 'node_modules/pkcs11js/build/Release/pkcs11.node');
    expect(fs.statSync(addon).mode & 0o777).toBe(0o600);
    expect(fs.existsSync(path.join(cache, dir, 'src/ui/consent/index.html'))).toBe(true);

    // A changed addon (a torn write, or someone's code) is never loaded: the folder is rebuilt.
    fs.writeFileSync(addon, 'not the addon');
    fs.chmodSync(cache, 0o755);
    const tokens = kelid(['tokens', '--json', '--config', config]);
    expect(tokens.status, tokens.stderr).toBe(0);
    expect(fs.readFileSync(addon).subarray(0, 4)).toEqual(Buffer.from([0x7f, 0x45, 0x4c, 0x46]));
    expect(fs.statSync(cache).mode & 0o777).toBe(0o700);
    expect(fs.readdirSync(cache)).toEqual([dir]);
  });

  it('refuses a cache folder that is a symbolic link to somewhere else', () => {
    const elsewhere = path.join(work, 'elsewhere');
    const otherHome = path.join(work, 'home-link');
    fs.mkdirSync(elsewhere);
    fs.mkdirSync(path.join(otherHome, '.cache'), { recursive: true });
    fs.symlinkSync(elsewhere, path.join(otherHome, '.cache', 'kelid'));
    const r = sh(program, ['--version'], { env: { ...env, HOME: otherHome }, cwd: otherHome });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('is a symbolic link');
    expect(fs.readdirSync(elsewhere)).toEqual([]);
  });

  it('uses a private folder in TMPDIR when the home folder cannot hold a cache', () => {
    const notAFolder = path.join(work, 'home-file');
    const tmp = path.join(work, 'tmp');
    fs.writeFileSync(notAFolder, '');
    fs.mkdirSync(tmp);
    const r = sh(program, ['--version'], { env: { ...env, HOME: notAFolder, TMPDIR: tmp }, cwd: work });
    expect(r.stdout.trim(), r.stderr).toBe(VERSION);
    const own = path.join(tmp, `kelid-${process.getuid?.()}`);
    expect(fs.statSync(own).mode & 0o777).toBe(0o700);
    expect(fs.readdirSync(own)).toEqual([expect.stringMatching(/^[0-9a-f]{32}$/)]);
  });

  it.runIf(process.getuid?.() === 0)('refuses a cache folder that another account owns', () => {
    const otherHome = path.join(work, 'home-other-owner');
    const cache = path.join(otherHome, '.cache', 'kelid');
    fs.mkdirSync(cache, { recursive: true, mode: 0o700 });
    fs.chownSync(cache, 65534, 65534);
    const r = sh(program, ['--version'], { env: { ...env, HOME: otherHome }, cwd: otherHome });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('belongs to another user');
    expect(fs.readdirSync(cache)).toEqual([]);
  });

  it('serves /health, the SDK and the pages, and lists the SoftHSM token over a WebSocket', async () => {
    const agent = await AgentProcess.start({
      program,
      env,
      prefix: 'kelid-package-agent-',
      config: {
        modules: [{ id: 'softhsm', path: hsm.module, env: hsm.env }],
        sites: ['https://site.example'],
      },
    });
    try {
      const get = async (p: string): Promise<{ status: number; body: string }> => {
        const s = await agent.tlsSocket();
        return new Promise((resolve, reject) => {
          let raw = '';
          s.setEncoding('utf8');
          s.on('data', (d: string) => (raw += d));
          s.on('error', reject);
          s.on('end', () => {
            const [head, ...body] = raw.split('\r\n\r\n');
            resolve({ status: Number(head.split(' ')[1]), body: body.join('\r\n\r\n') });
          });
          s.write(`GET ${p} HTTP/1.1\r\nHost: 127.0.0.1:${agent.port}\r\nConnection: close\r\n\r\n`);
        });
      };
      const health = await get('/health');
      expect(health.status).toBe(200);
      expect(health.body).toContain('"status":"ok"');
      const sdk = await get('/sdk/kelid.js');
      expect(sdk.status).toBe(200);
      expect(sdk.body).toContain(
        fs.readFileSync(path.join(REPO, 'dist/client/kelid.js'), 'utf8').slice(0, 200),
      );
      const manager = await get('/manager/');
      expect(manager.status).toBe(200);
      expect(manager.body).toContain('<html');

      const page = await agent.connect('https://site.example');
      const { tokens } = await page.call<{ tokens: Array<{ label: string; initialized: boolean }> }>(
        'tokens.list',
      );
      expect(tokens.filter((t) => t.initialized).map((t) => t.label)).toEqual(['packaged']);
      await page.close();
    } finally {
      expect(await agent.stop()).toBe(0);
      agent.cleanup();
    }
  });

  it('kelid doctor --json reports versions and each check, with no node on PATH', () => {
    const r = kelid(['doctor', '--json']);
    const report = JSON.parse(r.stdout) as {
      versions: Record<string, string>;
      checks: Array<{ id: string; status: string }>;
    };
    expect(Object.keys(report.versions).length).toBeGreaterThan(0);
    const ids = new Set(report.checks.map((c) => c.id));
    for (const id of ['port', 'agent', 'modules', 'pcscd']) expect(ids.has(id), id).toBe(true);
    for (const c of report.checks) expect(['ok', 'warn', 'fail', 'skip']).toContain(c.status);
  });

  it('kelid extension install: the native host wrapper starts the program itself (no node, no kelid.js)', () => {
    const stateDir = path.join(work, 'ext-state');
    const r = kelid(['extension', 'install', '--state-dir', stateDir, '--browser', 'chromium']);
    expect(r.status, r.stderr).toBe(0);
    const manifest = JSON.parse(
      fs.readFileSync(
        path.join(home, '.config', 'chromium', 'NativeMessagingHosts', 'org.kelid.agent.json'),
        'utf8',
      ),
    ) as { path: string };
    const wrapper = fs.readFileSync(manifest.path, 'utf8');
    expect(wrapper).toContain(`exec '${program}' 'native-host' '--state-dir' '${stateDir}'`);
    expect(wrapper).not.toContain('kelid.js');
    expect(kelid(['extension', 'uninstall', '--state-dir', stateDir, '--browser', 'chromium']).status).toBe(
      0,
    );
    expect(fs.existsSync(manifest.path)).toBe(false);
  });

  // lintian takes 25-40 s here, too slow for every run: KELID_TEST_LINTIAN=1 runs it (docs/install.md).
  const lintian = process.env.KELID_TEST_LINTIAN === '1';
  it.runIf(lintian)('passes lintian: no error or warning beyond the explained overrides', () => {
    const r = sh('lintian', ['--fail-on', 'error,warning', deb]);
    const tags = r.stdout.split('\n').filter((l) => /^[EW]: /.test(l));
    expect(tags).toEqual([]);
    expect(r.status, r.stdout + r.stderr).toBe(0);
  });

  // dpkg -i / -r on this very machine: only as root, and only when nothing of a kelid package is
  // here to be overwritten or removed.
  const dpkgSafe =
    process.getuid?.() === 0 &&
    sh('dpkg-query', ['-W', 'kelid']).status !== 0 &&
    !fs.existsSync('/opt/kelid') &&
    !fs.existsSync('/usr/bin/kelid');

  it.runIf(dpkgSafe)(
    'installs with dpkg -i, runs as /usr/bin/kelid, and dpkg -r leaves nothing behind',
    () => {
      const dpkg = (args: string[]): string => {
        // Another process may hold the dpkg lock for a moment (apt on a shared machine).
        for (let i = 0; ; i++) {
          const r = sh('dpkg', args);
          if (r.status === 0 || i >= 30 || !/lock/i.test(r.stderr)) return ok(r);
          spawnSync('sleep', ['1']);
        }
      };
      const optExisted = fs.existsSync('/opt');
      try {
        dpkg(['-i', deb]);
        const listed = ok(sh('dpkg', ['-L', 'kelid']))
          .trim()
          .split('\n');
        expect(listed).toEqual(expect.arrayContaining(['/opt/kelid/kelid', '/usr/bin/kelid']));
        expect(fs.readlinkSync('/usr/bin/kelid')).toBe('/opt/kelid/kelid');
        expect(sh('/usr/bin/kelid', ['--version'], { env: { ...env, PATH: bin } }).stdout.trim()).toBe(
          VERSION,
        );
      } finally {
        dpkg(['-r', 'kelid']);
        // dpkg removes a folder of the package once empty, /opt too when no other package owns it
        // and nothing else is in it: put back what was there (docs/install.md says so).
        if (optExisted && !fs.existsSync('/opt')) fs.mkdirSync('/opt', { mode: 0o755 });
      }
      expect(sh('dpkg', ['-L', 'kelid']).status).not.toBe(0);
      // No conffiles: removal leaves no config-files state to purge.
      expect(sh('dpkg-query', ['-W', '-f=${Status}', 'kelid']).stdout).not.toContain('config-files');
      for (const p of [
        '/opt/kelid',
        '/usr/bin/kelid',
        '/usr/share/doc/kelid',
        '/usr/share/man/man1/kelid.1.gz',
      ])
        expect(fs.existsSync(p), p).toBe(false);
    },
  );
});
