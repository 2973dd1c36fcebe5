import { readFileSync, writeFileSync } from 'node:fs';
import { Command, Option } from 'commander';
import { KelidError } from '../../model/errors.js';
import type { CsrRequest, SubjectAltName, SubjectAltNameType } from '../../pki/csr.js';
import type { Certificate, Key, KeyAlgorithm } from '../../model/types.js';
import type { ProvisioningService } from '../../tokens/provisioning-service.js';
import { openTokenContext, printJson, withCommonOptions } from '../context.js';
import type { CommonOptions, TokenContext } from '../context.js';
import { secretSource } from '../secrets.js';
import { selectToken } from '../token-select.js';

interface TokenOptions extends CommonOptions {
  token?: string;
  pinStdin?: boolean;
}

const ALGORITHMS: Record<string, KeyAlgorithm> = {
  rsa2048: { name: 'RSA', modulusLength: 2048 },
  rsa3072: { name: 'RSA', modulusLength: 3072 },
  rsa4096: { name: 'RSA', modulusLength: 4096 },
  p256: { name: 'EC', namedCurve: 'P-256' },
  p384: { name: 'EC', namedCurve: 'P-384' },
};

function tokenCommand(name: string, description: string): Command {
  return withCommonOptions(new Command(name).description(description))
    .option('-t, --token <token>', 'tokenId, label or serial number (default: the only token)')
    .option('--pin-stdin', 'read PINs from stdin, one per line, in the order the command asks')
    .option('--json', 'machine-readable output');
}

async function withService<T>(
  opts: TokenOptions,
  fn: (svc: ProvisioningService, ctx: TokenContext) => Promise<T>,
): Promise<T> {
  const ctx = await openTokenContext(opts);
  try {
    return await fn(ctx.services.provisioningService, ctx);
  } finally {
    await ctx.close();
  }
}

/** A spinner on stderr while a slow token operation runs (only on a terminal). */
async function withProgress<T>(label: string, work: Promise<T>): Promise<T> {
  if (!process.stderr.isTTY) return work;
  const frames = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
  let i = 0;
  const started = Date.now();
  const timer = setInterval(() => {
    process.stderr.write(
      `\r${frames[i++ % frames.length]} ${label} (${Math.round((Date.now() - started) / 1000)} s)`,
    );
  }, 100);
  try {
    return await work;
  } finally {
    clearInterval(timer);
    process.stderr.write('\r\u001b[K');
  }
}

function parseSans(values: string[] | undefined): SubjectAltName[] | undefined {
  if (!values?.length) return undefined;
  return values.map((v) => {
    const i = v.indexOf(':');
    const type = v.slice(0, i) as SubjectAltNameType;
    if (i < 1 || !['email', 'dns', 'uri', 'ip', 'upn'].includes(type)) {
      throw new KelidError(
        'ERR_INVALID_INPUT',
        `--san wants type:value with type email, dns, uri, ip or upn (got "${v}")`,
      );
    }
    return { type, value: v.slice(i + 1) };
  });
}

const list = (v: string | undefined) =>
  v
    ? v
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean)
    : undefined;

interface CsrCliOptions {
  subject?: string;
  san?: string[];
  keyUsage?: string;
  eku?: string;
  pss?: boolean;
  digest?: string;
}

function csrRequest(o: CsrCliOptions): CsrRequest | undefined {
  if (!o.subject) return undefined;
  const req: CsrRequest = { subject: o.subject };
  const sans = parseSans(o.san);
  if (sans) req.subjectAltNames = sans;
  req.keyUsage = list(o.keyUsage) ?? ['digitalSignature', 'nonRepudiation'];
  const eku = list(o.eku);
  if (eku) req.extendedKeyUsage = eku;
  if (o.pss || o.digest) {
    req.signatureAlgorithm = {
      ...(o.pss ? { scheme: 'RSA-PSS' as const } : {}),
      ...(o.digest ? { digestAlgorithm: o.digest as 'SHA-256' } : {}),
    };
  }
  return req;
}

function csrOptions(cmd: Command, required: boolean): Command {
  const subject = new Option('--subject <dn>', 'subject as RFC 4514, e.g. "CN=علی رضایی,O=…,C=IR"');
  return cmd
    .addOption(required ? subject.makeOptionMandatory() : subject)
    .option('--san <type:value...>', 'subjectAltName (email, dns, uri, ip, upn); repeatable')
    .option('--key-usage <list>', 'keyUsage names, comma separated', undefined)
    .option('--eku <list>', 'extendedKeyUsage names or OIDs, comma separated')
    .option('--pss', 'sign the request with RSA-PSS')
    .addOption(
      new Option('--digest <alg>', 'hash for the request signature').choices([
        'SHA-256',
        'SHA-384',
        'SHA-512',
      ]),
    )
    .option('-o, --out <file>', 'write the CSR (PEM) to this file instead of stdout');
}

function writeOut(file: string | undefined, text: string): void {
  if (file) writeFileSync(file, text);
  else process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
}

function formatKeys(keys: Key[]): string {
  if (keys.length === 0) return 'No keys on this token.\n';
  return keys
    .map((k) => {
      const alg =
        k.algorithm.name === 'RSA' ? `RSA ${k.algorithm.modulusLength}` : `EC ${k.algorithm.namedCurve}`;
      return `${k.label}\n  keyId:  ${k.keyId}\n  type:   ${alg}${k.local ? ', generated on the token' : ''}\n  status: ${k.hasCertificate ? 'certificate present' : 'pending (no certificate yet)'}`;
    })
    .join('\n\n')
    .concat('\n');
}

export function formatCertificates(certs: Certificate[]): string {
  if (certs.length === 0) return 'No certificates.\n';
  return certs
    .map(
      (c) =>
        `${c.subject}  [${c.category}]\n  certificateId: ${c.certificateId}\n  issuer:        ${c.issuer}\n  serial:        ${c.serialNumber}\n  valid:         ${c.notBefore} … ${c.notAfter}\n  keyId:         ${c.keyId}${c.hasPrivateKey ? ' (private key on token)' : ''}\n  usage:         ${[...c.keyUsage, ...c.extendedKeyUsage].join(', ') || '-'}`,
    )
    .join('\n\n')
    .concat('\n');
}

export function initCommand(): Command {
  return tokenCommand('init', 'initialize a token: new SO-PIN (admin PIN), label and first user PIN')
    .requiredOption('-l, --label <label>', 'token label (at most 32 bytes UTF-8)')
    .action(async (opts: TokenOptions & { label: string }) => {
      await withService(opts, async (svc, ctx) => {
        const token = await selectToken(ctx.tokens, opts.token, false);
        const secrets = secretSource(opts);
        const soPin = await secrets.read('New SO-PIN', { confirm: true });
        const userPin = await secrets.read('New user PIN', { confirm: true });
        const result = await svc.initToken(token.tokenId, { label: opts.label, soPin, userPin });
        if (opts.json) printJson(result);
        else process.stdout.write(`Token initialized: ${result.label} (tokenId ${result.tokenId})\n`);
      });
    });
}

export function pinCommand(): Command {
  const pin = new Command('pin').description('change or unblock PINs');
  pin.addCommand(
    tokenCommand('change', 'change the user PIN (or the SO-PIN with --so)')
      .option('--so', 'change the SO-PIN (admin PIN) instead of the user PIN')
      .action(async (opts: TokenOptions & { so?: boolean }) => {
        await withService(opts, async (svc, ctx) => {
          const token = await selectToken(ctx.tokens, opts.token);
          const secrets = secretSource(opts);
          const role = opts.so ? 'so' : 'user';
          const who = opts.so ? 'SO-PIN' : 'user PIN';
          const oldPin = await secrets.read(`Current ${who}`);
          const newPin = await secrets.read(`New ${who}`, { confirm: true });
          await svc.changePin(token.tokenId, role, oldPin, newPin);
          process.stdout.write(`${who} changed.\n`);
        });
      }),
  );
  pin.addCommand(
    tokenCommand('unblock', 'unblock the user PIN with the SO-PIN and set a new user PIN').action(
      async (opts: TokenOptions) => {
        await withService(opts, async (svc, ctx) => {
          const token = await selectToken(ctx.tokens, opts.token);
          const secrets = secretSource(opts);
          const soPin = await secrets.read('SO-PIN');
          const newPin = await secrets.read('New user PIN', { confirm: true });
          await svc.unblockPin(token.tokenId, soPin, newPin);
          process.stdout.write('User PIN unblocked and set.\n');
        });
      },
    ),
  );
  return pin;
}

export function keygenCommand(): Command {
  return csrOptions(
    tokenCommand('keygen', 'generate a sign-only key pair on the token (optionally with its CSR)')
      .addOption(
        new Option('-a, --algorithm <alg>', 'key algorithm')
          .choices(Object.keys(ALGORITHMS))
          .default('rsa2048'),
      )
      .option('-l, --label <label>', 'key label (default: kelid-<date>)')
      .option('--always-authenticate', 'require the PIN for every signature (CKA_ALWAYS_AUTHENTICATE)'),
    false,
  ).action(
    async (
      opts: TokenOptions &
        CsrCliOptions & { algorithm: string; label?: string; alwaysAuthenticate?: boolean; out?: string },
    ) => {
      await withService(opts, async (svc, ctx) => {
        const token = await selectToken(ctx.tokens, opts.token);
        const pin = await secretSource(opts).read('User PIN');
        const csr = csrRequest(opts);
        const result = await withProgress(
          'generating the key on the token',
          svc.generateKey(token.tokenId, pin, {
            algorithm: ALGORITHMS[opts.algorithm]!,
            ...(opts.label ? { label: opts.label } : {}),
            ...(opts.alwaysAuthenticate ? { alwaysAuthenticate: true } : {}),
            ...(csr ? { csr } : {}),
          }),
        );
        if (opts.json) printJson(result);
        else {
          process.stdout.write(formatKeys([result.key]));
          if (result.csr) writeOut(opts.out, result.csr);
        }
      });
    },
  );
}

export function csrCommand(): Command {
  return csrOptions(tokenCommand('csr', 'create a PKCS#10 request signed by a key on the token'), true)
    .requiredOption('-k, --key-id <keyId>', 'the key (hex CKA_ID, see: kelid keys)')
    .action(async (opts: TokenOptions & CsrCliOptions & { keyId: string; out?: string }) => {
      await withService(opts, async (svc, ctx) => {
        const token = await selectToken(ctx.tokens, opts.token);
        const pin = await secretSource(opts).read('User PIN');
        const pem = await svc.createCsr(token.tokenId, pin, opts.keyId, csrRequest(opts)!);
        if (opts.json) printJson({ csr: pem });
        else writeOut(opts.out, pem);
      });
    });
}

/** Every PEM certificate in a file (a chain file may hold several), or the file as one DER certificate. */
function readCertificates(file: string): string[] {
  const raw = readFileSync(file);
  const text = raw.toString('latin1');
  const pems = text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g);
  return pems ?? [raw.toString('base64')];
}

export function importCommand(): Command {
  return tokenCommand('import', 'write an issued certificate (and its CA chain) next to its key on the token')
    .requiredOption('--cert <file>', 'the issued certificate (PEM or DER)')
    .option('--chain <file...>', 'CA certificates (PEM files, may hold several)')
    .option('-l, --label <label>', 'label (default: the key label)')
    .action(async (opts: TokenOptions & { cert: string; chain?: string[]; label?: string }) => {
      await withService(opts, async (svc, ctx) => {
        const token = await selectToken(ctx.tokens, opts.token);
        const [certificate] = readCertificates(opts.cert);
        const chain = (opts.chain ?? []).flatMap(readCertificates);
        const pin = await secretSource(opts).read('User PIN');
        const cert = await svc.importCertificate(token.tokenId, pin, {
          certificate: certificate!,
          chain,
          ...(opts.label ? { label: opts.label } : {}),
        });
        if (opts.json) printJson(cert);
        else process.stdout.write(`Imported:\n${formatCertificates([cert])}`);
      });
    });
}

export function keysCommand(): Command {
  return tokenCommand(
    'keys',
    'list the key pairs on a token, including pending ones (no certificate yet)',
  ).action(async (opts: TokenOptions) => {
    await withService(opts, async (svc, ctx) => {
      const token = await selectToken(ctx.tokens, opts.token);
      const keys = await svc.listKeys(token.tokenId);
      if (opts.json) printJson(keys);
      else process.stdout.write(formatKeys(keys));
    });
  });
}

export function certsCommand(): Command {
  return tokenCommand('certs', 'list the certificates on a token').action(async (opts: TokenOptions) => {
    await withService(opts, async (svc, ctx) => {
      const token = await selectToken(ctx.tokens, opts.token);
      const certs = await svc.listCertificates(token.tokenId);
      if (opts.json) printJson(certs);
      else process.stdout.write(formatCertificates(certs));
    });
  });
}

export function deleteCommand(): Command {
  return tokenCommand('delete', 'delete the certificate, the key pair, or all objects of a keyId')
    .requiredOption('-k, --key-id <keyId>', 'hex CKA_ID (see: kelid keys)')
    .addOption(
      new Option('--scope <scope>', 'what to delete')
        .choices(['certificate', 'keypair', 'all'])
        .makeOptionMandatory(),
    )
    .action(async (opts: TokenOptions & { keyId: string; scope: 'certificate' | 'keypair' | 'all' }) => {
      await withService(opts, async (svc, ctx) => {
        const token = await selectToken(ctx.tokens, opts.token);
        const pin = await secretSource(opts).read('User PIN');
        const deleted = await svc.deleteObjects(token.tokenId, pin, opts.keyId, opts.scope);
        if (opts.json) printJson({ deleted });
        else process.stdout.write(`Deleted ${deleted} object(s).\n`);
      });
    });
}
