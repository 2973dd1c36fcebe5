import { Command, InvalidArgumentError } from 'commander';
import { loadConfig } from '../../config.js';
import { createStatusChecker } from '../../services.js';
import { openTokenContext } from '../context.js';
import * as fs from 'node:fs';
import { KelidError, isKelidError } from '../../model/errors.js';
import { describeCertificate } from '../../pki/certificate.js';
import type { Status } from '../../model/types.js';
import { resolveStateDir } from '../../state-dir.js';
import { parseCertificateBundle } from '../../status/certificate-bundle.js';
import type { StatusChecker, StatusServiceOptions } from '../../status/status-service.js';

/** Exit status of `kelid status`: 0 good, 1 no answer or bad input, 3 revoked, 4 unknown. */
export const STATUS_EXIT_CODES = { good: 0, failed: 1, revoked: 3, unknown: 4 } as const;

const MAX_FILE_BYTES = 1024 * 1024;

export interface StatusCommandOptions {
  cert?: string;
  /** A certificate on a token (see `kelid certs`), with the modules of `--config`. */
  certificateId?: string;
  config?: string;
  issuer?: string;
  json?: boolean;
  /** Seconds. */
  timeout: number;
  stateDir?: string;
  /** `--no-cache` sets this to false. */
  cache: boolean;
}

export interface LoadedCertificate {
  certificate: Uint8Array;
  /** Candidate issuers (DER). */
  issuers: Uint8Array[];
  /** Release what loading opened (a token session, say). */
  close?(): Promise<void>;
}

/**
 * Where the certificate to check comes from. Files today; a token source (`--token`/`--key-id`) adds
 * its options to the command and one more entry here.
 */
export interface CertificateSource {
  /** Whether the parsed options select this source. */
  selected(options: StatusCommandOptions): boolean;
  load(options: StatusCommandOptions): Promise<LoadedCertificate>;
}

function readCertificates(file: string, what: string): Uint8Array[] {
  let bytes: Buffer;
  try {
    if (fs.statSync(file).size > MAX_FILE_BYTES)
      throw new KelidError('ERR_INVALID_INPUT', `${what} file is too large`);
    bytes = fs.readFileSync(file);
  } catch (e) {
    if (isKelidError(e)) throw e;
    throw new KelidError('ERR_INVALID_INPUT', `cannot read the ${what} file ${file}`, { cause: e });
  }
  const certs = parseCertificateBundle(new Uint8Array(bytes));
  if (certs.length === 0) throw new KelidError('ERR_INVALID_INPUT', `no certificate (PEM or DER) in ${file}`);
  return certs;
}

/** `--cert <file>` (PEM or DER; further certificates in the file count as issuer candidates) and `--issuer <file>`. */
export const fileCertificateSource: CertificateSource = {
  selected: (options) => options.cert !== undefined,
  load: async (options) => {
    const [certificate, ...rest] = readCertificates(options.cert!, 'certificate');
    const issuers = options.issuer ? readCertificates(options.issuer, 'issuer') : [];
    return { certificate: certificate!, issuers: [...issuers, ...rest] };
  },
};

/** `--certificate-id <id>`: a certificate on a connected token, its issuers from the token's chain. */
export const tokenCertificateSource: CertificateSource = {
  selected: (options) => options.certificateId !== undefined,
  load: async (options) => {
    const ctx = await openTokenContext({
      ...(options.config ? { config: options.config } : {}),
      ...(options.stateDir ? { stateDir: options.stateDir } : {}),
    });
    try {
      const { der, issuers } = await ctx.services.signingService.certificateWithIssuers(
        options.certificateId!,
      );
      return { certificate: der, issuers, close: () => ctx.close() };
    } catch (e) {
      await ctx.close();
      throw e;
    }
  },
};

export interface StatusCommandDeps {
  sources?: CertificateSource[];
  /** Build the checker; `config` is the `--config` file (default: the composition root's). */
  createService?: (options: StatusServiceOptions, config?: string) => StatusChecker;
  stdout?: (text: string) => void;
  stderr?: (text: string) => void;
  setExitCode?: (code: number) => void;
}

function parseTimeout(value: string): number {
  const seconds = Number(value);
  if (!Number.isFinite(seconds) || seconds <= 0 || seconds > 300) {
    throw new InvalidArgumentError('a number of seconds between 0 and 300');
  }
  return seconds;
}

/** Human-readable form of a Status. */
export function formatStatus(
  status: Status,
  certificate?: { subject: string; serialNumber: string },
): string {
  const lines: string[] = [];
  if (certificate) lines.push(`certificate:  ${certificate.subject} (serial ${certificate.serialNumber})`);
  lines.push(`status:       ${status.status === 'revoked' ? 'REVOKED' : status.status}`);
  lines.push(`source:       ${status.source.toUpperCase()}`);
  if (status.revokedAt) lines.push(`revoked at:   ${status.revokedAt}`);
  if (status.reason) lines.push(`reason:       ${status.reason}`);
  lines.push(`this update:  ${status.thisUpdate}`);
  if (status.nextUpdate) lines.push(`next update:  ${status.nextUpdate}`);
  lines.push(`checked at:   ${status.checkedAt}`);
  return `${lines.join('\n')}\n`;
}

interface Attempt {
  source: string;
  url?: string;
  reason: string;
  message: string;
}

function attemptsOf(e: KelidError): Attempt[] {
  const attempts = e.data.attempts;
  return Array.isArray(attempts) ? (attempts as Attempt[]) : [];
}

/**
 * `kelid status --cert <file> [--issuer <file>] [--json] [--timeout <s>] [--state-dir <dir>] [--no-cache]`:
 * OCSP first, CRL second. Exit status: see {@link STATUS_EXIT_CODES}.
 */
export function statusCommand(deps: StatusCommandDeps = {}): Command {
  const sources = deps.sources ?? [fileCertificateSource, tokenCertificateSource];
  const out = deps.stdout ?? ((t: string) => void process.stdout.write(t));
  const err = deps.stderr ?? ((t: string) => void process.stderr.write(t));
  const setExitCode =
    deps.setExitCode ??
    ((c: number) => {
      process.exitCode = c;
    });
  // The checker of the composition root, with the config's proxy; this command's deadline and cache.
  const createService =
    deps.createService ??
    ((o: StatusServiceOptions, config?: string) => createStatusChecker(loadConfig(config), o));

  return new Command('status')
    .description('check whether a certificate is revoked (OCSP, then CRL)')
    .option(
      '--cert <file>',
      'the certificate, PEM or DER (more certificates in the file are issuer candidates)',
    )
    .option(
      '--issuer <file>',
      'issuer certificate(s), PEM or DER (default: from the token chain or AIA caIssuers)',
    )
    .option('--certificate-id <id>', 'a certificate on a connected token (see: kelid certs)')
    .option('-c, --config <file>', 'config file: the PKCS#11 modules (with --certificate-id), the proxy')
    .option('--json', 'print the Status object (PROTOCOL.md section 4) as JSON')
    .option('--timeout <seconds>', 'deadline for the whole check', parseTimeout, 5)
    .option(
      '--state-dir <dir>',
      'state directory holding the status cache (default: $KELID_STATE_DIR or the per-user data dir)',
    )
    .option('--no-cache', 'do not read or write the status cache on disk')
    .action(async (options: StatusCommandOptions) => {
      const chosen = sources.filter((s) => s.selected(options));
      if (chosen.length === 0)
        throw new KelidError(
          'ERR_INVALID_INPUT',
          'give the certificate to check with --cert <file> or --certificate-id <id>',
        );
      if (chosen.length > 1) throw new KelidError('ERR_INVALID_INPUT', 'give only one certificate source');
      const loaded = await chosen[0]!.load(options);
      try {
        const description = describeCertificate(loaded.certificate);
        const service = createService(
          {
            timeoutMs: options.timeout * 1000,
            ...(options.cache ? { stateDir: resolveStateDir(options.stateDir) } : {}),
          },
          options.config,
        );
        let status: Status;
        try {
          status = await service.check(loaded.certificate, { issuers: loaded.issuers });
        } catch (e) {
          if (!isKelidError(e, 'ERR_STATUS_UNAVAILABLE')) throw e;
          if (options.json) {
            out(
              `${JSON.stringify({ error: { code: e.code, message: e.message, data: e.data } }, null, 2)}\n`,
            );
          } else {
            err(`kelid: no revocation status for ${description.subject} (${e.code})\n`);
            for (const a of attemptsOf(e))
              err(`  ${a.source}${a.url ? ` ${a.url}` : ''}: ${a.reason} (${a.message})\n`);
          }
          setExitCode(STATUS_EXIT_CODES.failed);
          return;
        }
        if (options.json) out(`${JSON.stringify(status, null, 2)}\n`);
        else out(formatStatus(status, description));
        setExitCode(STATUS_EXIT_CODES[status.status]);
      } finally {
        await loaded.close?.();
      }
    });
}
