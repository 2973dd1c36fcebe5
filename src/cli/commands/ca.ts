import * as fs from 'node:fs';
import * as path from 'node:path';
import { Command } from 'commander';
import { ensurePrivateDirectory } from '../../consent/control-channel.js';
import { KelidError } from '../../model/errors.js';
import { NSS_NICKNAME, hasCertutil, installInNssDb, nssDatabases } from '../../install/trust-stores.js';
import { currentPlatformEnv } from '../../platform-paths.js';
import { resolveStateDir } from '../../state-dir.js';
import { TLS_DIR, ensureTlsMaterial, readCaCertificate } from '../../transport/tls.js';

interface CaOptions {
  stateDir?: string;
  nssdb?: string[];
}

const STATE_DIR_HELP = 'state directory (default: $KELID_STATE_DIR or the per-user data dir)';

/** The CA certificate of this installation, generating the TLS material on first use. */
async function caPem(stateDir: string): Promise<string> {
  const existing = readCaCertificate(stateDir);
  if (existing) return existing;
  ensurePrivateDirectory(stateDir);
  return (await ensureTlsMaterial(stateDir)).caCertificatePem;
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
          : nssDatabases(currentPlatformEnv());
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
