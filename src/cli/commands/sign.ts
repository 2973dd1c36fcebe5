import { createHash } from 'node:crypto';
import { createReadStream, writeFileSync } from 'node:fs';
import { Command, Option } from 'commander';
import { KelidError } from '../../model/errors.js';
import { DIGEST_NODE_NAME } from '../../pki/der.js';
import type { DigestAlgorithm, SignatureScheme } from '../../model/types.js';
import { openTokenContext, printJson, withCommonOptions } from '../context.js';
import type { CommonOptions } from '../context.js';
import { secretSource } from '../secrets.js';

interface SignOptions extends CommonOptions {
  cert: string;
  in: string;
  out: string;
  format: 'raw' | 'cms';
  attached?: boolean;
  digest: DigestAlgorithm;
  scheme?: SignatureScheme;
  tsa?: string;
  noChain?: boolean;
  pinStdin?: boolean;
}

/** Hash a file of any size in a stream (bounded memory). */
async function hashFile(file: string, alg: DigestAlgorithm): Promise<Uint8Array> {
  const h = createHash(DIGEST_NODE_NAME[alg]);
  for await (const chunk of createReadStream(file)) h.update(chunk as Buffer);
  return new Uint8Array(h.digest());
}

export function signCommand(): Command {
  return withCommonOptions(
    new Command('sign').description('sign a file with a key on a token (raw signature or CMS/CAdES)'),
  )
    .requiredOption('--cert <certificateId>', 'signing certificate (see: kelid certs)')
    .requiredOption('-i, --in <file>', 'file to sign')
    .requiredOption('-o, --out <file>', 'where to write the signature (DER)')
    .addOption(
      new Option('-f, --format <format>', 'raw signature or CMS/CAdES')
        .choices(['raw', 'cms'])
        .default('cms'),
    )
    .option('--attached', 'CMS: include the content (default: detached)')
    .addOption(
      new Option('--digest <alg>', 'hash algorithm')
        .choices(['SHA-256', 'SHA-384', 'SHA-512'])
        .default('SHA-256'),
    )
    .addOption(
      new Option('--scheme <scheme>', 'signature scheme').choices(['RSASSA-PKCS1-v1_5', 'RSA-PSS', 'ECDSA']),
    )
    .option('--tsa <url>', 'CMS: add an RFC 3161 timestamp from this TSA (CAdES-B-T)')
    .option('--no-chain', 'CMS: leave the CA certificates out')
    .option('--pin-stdin', 'read the PIN from stdin')
    .option('--json', 'print a JSON summary')
    .action(async (opts: SignOptions & { chain?: boolean }) => {
      const ctx = await openTokenContext(opts, (config) =>
        opts.tsa === undefined ? config : { ...config, tsaUrl: opts.tsa },
      );
      try {
        // The same signing service as the agent's: key purpose, revocation policy, TSA and proxy.
        const signing = ctx.services.signingService;
        // The key purpose is checked before the PIN is asked for.
        const pre = await signing.preflight(opts.cert, { use: opts.format === 'raw' ? 'raw' : 'cms' });
        const pin = await secretSource(opts).read(
          `User PIN for ${pre.token.label || pre.token.serialNumber}`,
        );
        let output: Uint8Array;
        let algorithm: string | undefined;
        if (opts.format === 'raw') {
          if (opts.attached || opts.tsa)
            throw new KelidError('ERR_INVALID_INPUT', '--attached and --tsa apply to CMS only');
          const digest = await hashFile(opts.in, opts.digest);
          const r = await signing.signRaw(opts.cert, pin, {
            digest,
            digestAlgorithm: opts.digest,
            ...(opts.scheme ? { scheme: opts.scheme } : {}),
          });
          output = r.signature;
          algorithm = r.signatureAlgorithm;
        } else if (opts.attached) {
          const { readFileSync } = await import('node:fs');
          const content = readFileSync(opts.in);
          if (content.length > 64 * 1024 * 1024)
            throw new KelidError('ERR_INVALID_INPUT', 'attached signatures are limited to 64 MiB');
          output = (
            await signing.signCms(opts.cert, pin, {
              content,
              detached: false,
              digestAlgorithm: opts.digest,
              includeChain: opts.chain !== false,
              timestamp: Boolean(opts.tsa),
            })
          ).cms;
        } else {
          const digest = await hashFile(opts.in, opts.digest);
          output = (
            await signing.signCms(opts.cert, pin, {
              digest,
              digestAlgorithm: opts.digest,
              includeChain: opts.chain !== false,
              timestamp: Boolean(opts.tsa),
            })
          ).cms;
        }
        writeFileSync(opts.out, output);
        const summary = {
          out: opts.out,
          format: opts.format,
          bytes: output.length,
          ...(algorithm ? { signatureAlgorithm: algorithm } : {}),
        };
        if (opts.json) printJson(summary);
        else
          process.stdout.write(
            `Signature written to ${opts.out} (${output.length} bytes${algorithm ? `, ${algorithm}` : ''}).\n`,
          );
      } finally {
        await ctx.close();
      }
    });
}
