import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { AgentProcess, REPO, assertBuilt, kelidSync } from '../../helpers/agent-process.js';
import {
  CHROMIUM_EXTENSION_ID,
  FIREFOX_EXTENSION_ID,
  NATIVE_HOST_NAME,
} from '../../../src/transport/extension-ids.js';

// `kelid install` / `kelid uninstall --purge` in a temporary HOME (never the real user's files): the
// login item and the NSS entries are right after install, and uninstall leaves the HOME exactly as
// it was: every file with its mode, every symlink, every NSS entry.

const BIN = path.join(REPO, 'bin', 'kelid.js');

interface Home {
  dir: string;
  env: Record<string, string>;
}

function makeHome(options: { userSystemd: boolean }): Home {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kelid-home-'));
  const runtime = path.join(dir, 'run');
  fs.mkdirSync(runtime, { mode: 0o700 });
  if (options.userSystemd) fs.mkdirSync(path.join(runtime, 'systemd'));
  fs.writeFileSync(path.join(dir, '.bashrc'), "# the user's own file\n", { mode: 0o644 });
  // A Firefox profile (listed in profiles.ini, as Firefox writes it) with its own NSS database and
  // one certificate of the user's; and a flatpak Chromium that never ran (no database yet).
  const ffRoot = path.join(dir, '.mozilla', 'firefox');
  const profile = path.join(ffRoot, 'abcd1234.default-release');
  fs.mkdirSync(profile, { recursive: true, mode: 0o700 });
  fs.writeFileSync(
    path.join(ffRoot, 'profiles.ini'),
    '[General]\nStartWithLastProfile=1\n\n[Profile0]\nName=default-release\nIsRelative=1\nPath=abcd1234.default-release\nDefault=1\n',
  );
  execFileSync('certutil', ['-N', '--empty-password', '-d', `sql:${profile}`]);
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-subj',
      '/CN=Users own CA',
      '-keyout',
      path.join(dir, 'own.key'),
      '-out',
      path.join(dir, 'own.pem'),
      '-days',
      '2',
    ],
    { stdio: 'ignore' },
  );
  execFileSync('certutil', [
    '-A',
    '-n',
    'Users own CA',
    '-t',
    'C,,',
    '-i',
    path.join(dir, 'own.pem'),
    '-d',
    `sql:${profile}`,
  ]);
  fs.mkdirSync(path.join(dir, '.var', 'app', 'org.chromium.Chromium'), { recursive: true, mode: 0o700 });
  return {
    dir,
    env: {
      HOME: dir,
      XDG_CONFIG_HOME: path.join(dir, '.config'),
      XDG_DATA_HOME: path.join(dir, '.local', 'share'),
      XDG_RUNTIME_DIR: runtime,
      KELID_STATE_DIR: '',
    },
  };
}

/** Every file, directory and symlink under `dir` with its mode, and every NSS database's entries. */
function snapshot(dir: string): string[] {
  const lines: string[] = [];
  const walk = (d: string): void => {
    for (const e of fs.readdirSync(d, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const p = path.join(d, e.name);
      const st = fs.lstatSync(p);
      const rel = path.relative(dir, p);
      const mode = (st.mode & 0o7777).toString(8);
      if (st.isSymbolicLink()) lines.push(`link ${rel} -> ${fs.readlinkSync(p)}`);
      else if (st.isDirectory()) {
        lines.push(`dir ${mode} ${rel}`);
        walk(p);
      } else {
        lines.push(`file ${mode} ${rel}`);
        if (e.name === 'cert9.db') {
          const list = execFileSync('certutil', ['-L', '-d', `sql:${d}`], { encoding: 'utf8' });
          for (const l of list.split('\n').slice(4))
            if (l.trim() !== '') lines.push(`nss ${path.relative(dir, d)}: ${l.trim()}`);
        }
      }
    }
  };
  walk(dir);
  return lines;
}

function kelid(home: Home, args: string[]): { status: number; stdout: string; stderr: string } {
  return kelidSync(args, home.env);
}

/** The CA certificates named "Kelid local CA" in one NSS database (certutil -L -a). */
function nssKelidCa(dbDir: string): string[] {
  const r = spawnSync('certutil', ['-L', '-n', 'Kelid local CA', '-a', '-d', `sql:${dbDir}`], {
    encoding: 'utf8',
  });
  if (r.status !== 0) return [];
  return (
    r.stdout.replace(/\r/g, '').match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ?? []
  ).map((s) => s.trim());
}

describe('kelid install / uninstall', () => {
  const homes: Home[] = [];
  beforeAll(() => assertBuilt());
  afterEach(() => {
    for (const h of homes.splice(0)) fs.rmSync(h.dir, { recursive: true, force: true });
  });

  it('installs a systemd user unit and the CA in every NSS database, and uninstall --purge leaves the HOME as it was', () => {
    const home = makeHome({ userSystemd: true });
    homes.push(home);
    const before = snapshot(home.dir);

    const r = kelid(home, ['install', '--no-start']);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);

    const stateDir = path.join(home.dir, '.local', 'share', 'kelid');
    expect(fs.statSync(stateDir).mode & 0o777).toBe(0o700);
    expect(fs.statSync(path.join(stateDir, 'install.json')).mode & 0o777).toBe(0o600);
    const unit = path.join(home.dir, '.config', 'systemd', 'user', 'kelid.service');
    expect(fs.statSync(unit).mode & 0o777).toBe(0o644);
    const text = fs.readFileSync(unit, 'utf8');
    expect(text).toContain(`ExecStart=${process.execPath} ${BIN} serve --state-dir ${stateDir}\n`);
    expect(text).toContain('Restart=on-failure\n');
    expect(text).toContain('WantedBy=default.target\n');
    expect(
      fs.readlinkSync(
        path.join(home.dir, '.config', 'systemd', 'user', 'default.target.wants', 'kelid.service'),
      ),
    ).toBe(unit);
    // systemd itself reads the unit (and checks that ExecStart is executable), where it is installed.
    if (spawnSync('systemd-analyze', ['--version']).status === 0) {
      const verify = spawnSync('systemd-analyze', ['--user', 'verify', unit], {
        env: { ...process.env, ...home.env },
        encoding: 'utf8',
      });
      expect(verify.stderr).toBe('');
      expect(verify.status).toBe(0);
    }
    // a database install created is private like the ones browsers create
    expect(fs.statSync(path.join(home.dir, '.pki')).mode & 0o777).toBe(0o700);
    expect(fs.statSync(path.join(home.dir, '.pki', 'nssdb', 'cert9.db')).mode & 0o077).toBe(0);

    const ca = fs.readFileSync(path.join(stateDir, 'tls', 'ca-cert.pem'), 'utf8').trim();
    const dbs = [
      path.join(home.dir, '.pki', 'nssdb'),
      path.join(home.dir, '.var', 'app', 'org.chromium.Chromium', '.pki', 'nssdb'),
      path.join(home.dir, '.mozilla', 'firefox', 'abcd1234.default-release'),
    ];
    for (const db of dbs) expect(nssKelidCa(db)).toEqual([ca]);
    // trusted as a CA for TLS servers ("C,,"), nothing more
    const list = execFileSync('certutil', ['-L', '-d', `sql:${dbs[2]}`], { encoding: 'utf8' });
    expect(list).toMatch(/Kelid local CA\s+C,,\s*\n/);
    expect(list).toContain('Users own CA');

    // the extension's native-messaging host, for Chromium-family browsers and Firefox
    const chromiumManifest = JSON.parse(
      fs.readFileSync(
        path.join(home.dir, '.config', 'chromium', 'NativeMessagingHosts', `${NATIVE_HOST_NAME}.json`),
        'utf8',
      ),
    ) as { path: string; allowed_origins: string[] };
    expect(chromiumManifest.allowed_origins).toEqual([`chrome-extension://${CHROMIUM_EXTENSION_ID}/`]);
    const firefoxManifest = JSON.parse(
      fs.readFileSync(
        path.join(home.dir, '.mozilla', 'native-messaging-hosts', `${NATIVE_HOST_NAME}.json`),
        'utf8',
      ),
    ) as { path: string; allowed_extensions: string[] };
    expect(firefoxManifest.allowed_extensions).toEqual([FIREFOX_EXTENSION_ID]);
    expect(firefoxManifest.path).toBe(chromiumManifest.path);
    expect(fs.statSync(chromiumManifest.path).mode & 0o777).toBe(0o700);
    expect(fs.readFileSync(chromiumManifest.path, 'utf8')).toContain(
      `'${BIN}' 'native-host' '--state-dir' '${stateDir}'`,
    );

    // installing again replaces the first install (same CA, one entry per database)
    expect(kelid(home, ['install', '--no-start']).status).toBe(0);
    for (const db of dbs) expect(nssKelidCa(db)).toEqual([ca]);

    const u = kelid(home, ['uninstall', '--purge', '--no-start']);
    expect(u.stderr).toBe('');
    expect(u.status).toBe(0);
    expect(snapshot(home.dir)).toEqual(before);
  });

  it('uses XDG autostart when there is no user systemd, and uninstall without --purge keeps only the state directory', () => {
    const home = makeHome({ userSystemd: false });
    homes.push(home);
    const before = snapshot(home.dir);
    expect(kelid(home, ['install', '--no-start']).status).toBe(0);
    const entry = path.join(home.dir, '.config', 'autostart', 'kelid.desktop');
    const text = fs.readFileSync(entry, 'utf8');
    expect(text).toMatch(/^\[Desktop Entry\]\nType=Application\n/);
    expect(text).toContain(
      `Exec=${process.execPath} ${BIN} serve --state-dir ${path.join(home.dir, '.local', 'share', 'kelid')}\n`,
    );
    expect(fs.existsSync(path.join(home.dir, '.config', 'systemd'))).toBe(false);

    expect(kelid(home, ['uninstall', '--no-start']).status).toBe(0);
    const stateDir = path.join('.local', 'share', 'kelid');
    const after = snapshot(home.dir).filter((l) => !l.includes(stateDir));
    // what remains is the state directory (and the XDG data directory holding it)
    expect(after.filter((l) => l !== 'dir 700 .local' && l !== 'dir 700 .local/share')).toEqual(before);
    expect(fs.existsSync(path.join(home.dir, stateDir, 'tls', 'ca-cert.pem'))).toBe(true);
    expect(nssKelidCa(path.join(home.dir, '.mozilla', 'firefox', 'abcd1234.default-release'))).toEqual([]);
    expect(kelid(home, ['uninstall', '--purge', '--no-start']).status).toBe(0);
  });

  it('starts the agent at once with XDG autostart, and uninstall --purge stops it and leaves the HOME as it was', async () => {
    const home = makeHome({ userSystemd: false });
    homes.push(home);
    const config = path.join(home.dir, 'kelid.json');
    fs.writeFileSync(
      config,
      JSON.stringify({ port: 0, autoDetectModules: false, consent: { launcher: 'none' } }),
    );
    const before = snapshot(home.dir);
    const r = kelid(home, ['install', '--config', config]);
    expect(r.status).toBe(0);
    // Up when install returns: `kelid install && kelid doctor` (README) finds it running.
    const info = path.join(home.dir, '.local', 'share', 'kelid', 'agent.json');
    expect(r.stdout).toMatch(/started the agent \(pid \d+\)/);
    expect(fs.existsSync(info)).toBe(true);
    const pid = (JSON.parse(fs.readFileSync(info, 'utf8')) as { pid: number }).pid;
    expect(fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')).toEqual([
      process.execPath,
      BIN,
      'serve',
      '--state-dir',
      path.join(home.dir, '.local', 'share', 'kelid'),
      '--config',
      config,
      '',
    ]);
    // the agent logs to its rotating file (stderr is no terminal)
    expect(fs.existsSync(path.join(home.dir, '.local', 'share', 'kelid', 'logs', 'kelid.log'))).toBe(true);

    const u = kelid(home, ['uninstall', '--purge']);
    expect(u.status).toBe(0);
    expect(u.stdout).toContain(`stopped the running agent (pid ${pid})`);
    // gone (or a zombie waiting for init to reap it, when the test runs without one)
    const stat = fs.existsSync(`/proc/${pid}/stat`) ? fs.readFileSync(`/proc/${pid}/stat`, 'utf8') : '';
    expect(stat === '' || / Z /.test(stat)).toBe(true);
    expect(snapshot(home.dir)).toEqual(before);
  });

  it('refuses a state directory that another account may write to (attack: swap the CA or install.json)', () => {
    const home = makeHome({ userSystemd: false });
    homes.push(home);
    const open = path.join(home.dir, 'shared-state');
    fs.mkdirSync(open);
    fs.chmodSync(open, 0o777);
    const r = kelid(home, ['install', '--no-start', '--state-dir', open]);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('ERR_FORBIDDEN');
    expect(fs.readdirSync(open)).toEqual([]);
    expect(fs.existsSync(path.join(home.dir, '.config'))).toBe(false);
    expect(fs.existsSync(path.join(home.dir, '.pki'))).toBe(false);
  });

  it('uninstall refuses an install.json in a directory others may write to (attack: make us delete our own files)', () => {
    const home = makeHome({ userSystemd: false });
    homes.push(home);
    const open = path.join(home.dir, 'shared-state');
    fs.mkdirSync(open);
    fs.chmodSync(open, 0o777);
    const victim = path.join(home.dir, '.bashrc');
    const planted = {
      version: 1,
      command: ['/bin/true'],
      stateDirCreated: [],
      steps: {
        autostart: { kind: 'xdg-autostart', files: [victim], links: [], createdDirs: [], removeCommands: [] },
      },
    };
    fs.writeFileSync(path.join(open, 'install.json'), JSON.stringify(planted));
    const r = kelid(home, ['uninstall', '--no-start', '--state-dir', open]);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('ERR_FORBIDDEN');
    expect(fs.existsSync(victim)).toBe(true);
  });

  it('re-trusts a regenerated CA in the stores install used, and only there', async () => {
    const home = makeHome({ userSystemd: false });
    homes.push(home);
    const agentDir = path.join(home.dir, 'agent');
    const stateDir = path.join(agentDir, 'state');
    expect(
      kelid(home, ['install', '--no-start', '--autostart', 'none', '--state-dir', stateDir]).status,
    ).toBe(0);
    const firefox = path.join(home.dir, '.mozilla', 'firefox', 'abcd1234.default-release');
    const oldCa = nssKelidCa(firefox);
    expect(oldCa).toHaveLength(1);
    // A profile created after install: install never put the CA there, so renewal must not either.
    const later = path.join(home.dir, '.mozilla', 'firefox', 'later.profile');
    fs.mkdirSync(later, { mode: 0o700 });
    execFileSync('certutil', ['-N', '--empty-password', '-d', `sql:${later}`]);

    fs.rmSync(path.join(stateDir, 'tls'), { recursive: true });
    const agent = await AgentProcess.start({ dir: agentDir, env: home.env });
    try {
      const newCa = agent.info.caCertificatePem.trim();
      expect(newCa).not.toBe(oldCa[0]);
      expect(nssKelidCa(firefox)).toEqual([newCa]);
      expect(nssKelidCa(path.join(home.dir, '.pki', 'nssdb'))).toEqual([newCa]);
      expect(nssKelidCa(later)).toEqual([]);
    } finally {
      await agent.stop();
    }
    expect(kelid(home, ['uninstall', '--purge', '--no-start', '--state-dir', stateDir]).status).toBe(0);
    expect(nssKelidCa(firefox)).toEqual([]);
    expect(fs.existsSync(path.join(home.dir, '.pki'))).toBe(false);
  });
});
