import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Command } from 'commander';
import { ensurePrivateDirectory } from '../../consent/control-channel.js';
import { KelidError } from '../../errors.js';
import { resolveStateDir } from '../../state-dir.js';
import { TLS_DIR, ensureTlsMaterial, readCaCertificate } from '../../transport/tls.js';

interface CaOptions {
  stateDir?: string;
  nssdb?: string[];
}

/** The nickname of the CA in NSS databases (replaced on every install). */
export const NSS_NICKNAME = 'Kelid local CA';

const STATE_DIR_HELP = 'state directory (default: $KELID_STATE_DIR or the per-user data dir)';

/** The CA certificate of this installation, generating the TLS material on first use. */
async function caPem(stateDir: string): Promise<string> {
  const existing = readCaCertificate(stateDir);
  if (existing) return existing;
  ensurePrivateDirectory(stateDir);
  return (await ensureTlsMaterial(stateDir)).caCertificatePem;
}

/** NSS databases of Chrome/Chromium (~/.pki/nssdb) and of every Firefox profile found. */
export function defaultNssDatabases(home = os.homedir()): { dir: string; create: boolean }[] {
  const dbs = [{ dir: path.join(home, '.pki', 'nssdb'), create: true }];
  for (const root of [
    path.join(home, '.mozilla', 'firefox'),
    path.join(home, 'snap', 'firefox', 'common', '.mozilla', 'firefox'),
  ]) {
    let entries: string[] = [];
    try {
      entries = fs.readdirSync(root);
    } catch {
      continue;
    }
    for (const e of entries) {
      const dir = path.join(root, e);
      if (fs.existsSync(path.join(dir, 'cert9.db'))) dbs.push({ dir, create: false });
    }
  }
  return dbs;
}

function certutil(args: string[]): void {
  execFileSync('certutil', args, { stdio: ['ignore', 'pipe', 'pipe'] });
}

/** Add (or replace) the CA in one NSS database; creates the database when asked to. */
export function installInNssDb(dir: string, pemFile: string, create: boolean): void {
  const db = `sql:${dir}`;
  if (!fs.existsSync(path.join(dir, 'cert9.db'))) {
    if (!create) throw new KelidError('ERR_INVALID_INPUT', `${dir} is not an NSS database`);
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    certutil(['-N', '--empty-password', '-d', db]);
  }
  // Remove every earlier Kelid CA (a regenerated CA has the same nickname).
  for (let i = 0; i < 16; i++) {
    try {
      certutil(['-D', '-n', NSS_NICKNAME, '-d', db]);
    } catch {
      break;
    }
  }
  certutil(['-A', '-n', NSS_NICKNAME, '-t', 'C,,', '-i', pemFile, '-d', db]);
}

function hasCertutil(): boolean {
  try {
    execFileSync('certutil', ['-H'], { stdio: 'ignore' });
    return true;
  } catch (e) {
    // certutil -H exits non-zero after printing help; only a missing binary matters.
    return (e as NodeJS.ErrnoException).code !== 'ENOENT';
  }
}

/** `kelid ca show|install`: the local CA that makes browsers trust wss://127.0.0.1. */
export function caCommand(): Command {
  const ca = new Command('ca').description("the agent's local certificate authority (TLS for 127.0.0.1)");
  ca.command('show')
    .description('print the CA certificate (PEM)')
    .option('--state-dir <dir>', STATE_DIR_HELP)
    .action(async (opts: CaOptions) => {
      process.stdout.write(await caPem(resolveStateDir(opts.stateDir)));
    });
  ca.command('install')
    .description(
      'trust the CA in the NSS databases of Chrome/Chromium and Firefox (Linux); print steps for other systems',
    )
    .option('--state-dir <dir>', STATE_DIR_HELP)
    .option(
      '--nssdb <dir>',
      'install into this NSS database directory only (repeatable; created if missing)',
      collect,
      [],
    )
    .action(async (opts: CaOptions) => {
      const stateDir = resolveStateDir(opts.stateDir);
      const pem = await caPem(stateDir);
      const pemFile = path.join(stateDir, TLS_DIR, 'ca-cert.pem');
      if (!fs.existsSync(pemFile)) fs.writeFileSync(pemFile, pem, { mode: 0o600 });
      const targets =
        opts.nssdb && opts.nssdb.length > 0
          ? opts.nssdb.map((dir) => ({ dir: path.resolve(dir), create: true }))
          : defaultNssDatabases();
      if (process.platform === 'linux' || (opts.nssdb && opts.nssdb.length > 0)) {
        if (!hasCertutil()) {
          throw new KelidError(
            'ERR_INVALID_INPUT',
            'certutil is not installed (Debian/Ubuntu: apt install libnss3-tools)',
          );
        }
        let failed = 0;
        for (const t of targets) {
          try {
            installInNssDb(t.dir, pemFile, t.create);
            process.stdout.write(`installed "${NSS_NICKNAME}" in ${t.dir}\n`);
          } catch (e) {
            failed += 1;
            process.stderr.write(
              `kelid: could not install in ${t.dir}: ${e instanceof Error ? e.message.split('\n')[0] : String(e)}\n`,
            );
          }
        }
        if (failed > 0) process.exitCode = 1;
        process.stdout.write('Restart the browser to pick up the new CA.\n');
      }
      if (!opts.nssdb || opts.nssdb.length === 0) {
        process.stdout.write(
          [
            '',
            `CA certificate: ${pemFile}`,
            'Other systems:',
            `  macOS:   security add-trusted-cert -r trustRoot -k ~/Library/Keychains/login.keychain-db "${pemFile}"`,
            `  Windows: certutil -user -addstore Root "${pemFile}"`,
            '  Firefox on macOS/Windows: Settings → Privacy & Security → Certificates → View Certificates → Authorities → Import',
            '',
          ].join('\n'),
        );
      }
    });
  return ca;
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}
