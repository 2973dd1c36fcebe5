import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { ContentInfo, SignedData } from '@peculiar/asn1-cms';
import { AsnConvert } from '@peculiar/asn1-schema';
import { TSTInfo } from '@peculiar/asn1-tsp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CMS_OID, signCms } from '../../../src/signing/cms.js';
import { requestTimestamp } from '../../../src/signing/timestamp.js';
import { startTestTsa, type TestTsa } from '../../helpers/test-tsa.js';
import { createSigningPki, opensslStatus, type SigningPki } from './test-pki.js';

let dir: string;
let pki: SigningPki;
let tsa: TestTsa;
const content = new TextEncoder().encode('time-stamped document\n');

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kelid-ts-'));
  pki = await createSigningPki(dir);
  fs.writeFileSync(path.join(dir, 'data.bin'), content);
  tsa = await startTestTsa();
});

afterAll(async () => {
  await tsa?.close();
  await pki?.cleanup();
  fs.rmSync(dir, { recursive: true, force: true });
});

function write(name: string, bytes: Uint8Array): string {
  fs.writeFileSync(path.join(dir, name), bytes);
  return name;
}

function tsVerify(tokenFile: string, dataFile: string): { ok: boolean; output: string } {
  return opensslStatus(
    ['ts', '-verify', '-in', tokenFile, '-token_in', '-data', dataFile, '-CAfile', tsa.caCertPem],
    dir,
  );
}

/** A local HTTP server with a fixed behaviour, for transport failures. */
async function withServer(
  handler: http.RequestListener,
  body: (url: string) => Promise<void>,
): Promise<void> {
  const server = http.createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    await body(`http://127.0.0.1:${(server.address() as AddressInfo).port}/`);
  } finally {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}

describe('requestTimestamp', () => {
  describe('#requestTimestamp', () => {
    it.each(['SHA-256', 'SHA-384', 'SHA-512'] as const)(
      'returns a token openssl ts -verify accepts for the data (%s)',
      async (hash) => {
        const data = randomBytes(256);
        const token = await requestTimestamp(tsa.url, data, { hash, timeoutMs: 10_000 });
        const result = tsVerify(write(`token-${hash}.der`, token), write(`data-${hash}.bin`, data));
        expect(result.output).toContain('Verification: OK');
        expect(result.ok).toBe(true);
        const other = tsVerify(`token-${hash}.der`, write(`other-${hash}.bin`, randomBytes(256)));
        expect(other.ok).toBe(false);
      },
    );

    it('reports a TSA rejection as ERR_TIMESTAMP_FAILED with the failure info', async () => {
      const strict = await startTestTsa({ digests: ['sha256'] });
      try {
        const error = await requestTimestamp(strict.url, randomBytes(32), { hash: 'SHA-384' }).catch(
          (e: unknown) => e,
        );
        expect(error).toMatchObject({ code: 'ERR_TIMESTAMP_FAILED', retriable: false });
        expect((error as Error).message).toContain('badAlg');
      } finally {
        await strict.close();
      }
    });

    it('refuses a token that answers another request (nonce and imprint mismatch)', async () => {
      const replaying = await startTestTsa({ replay: true });
      try {
        await requestTimestamp(replaying.url, randomBytes(32), { hash: 'SHA-256' });
        await expect(
          requestTimestamp(replaying.url, randomBytes(32), { hash: 'SHA-256' }),
        ).rejects.toMatchObject({
          code: 'ERR_TIMESTAMP_FAILED',
          message: expect.stringContaining('nonce'),
        });
        expect(replaying.requests).toBe(2);
      } finally {
        await replaying.close();
      }
    });

    it('reports HTTP errors as retriable ERR_TIMESTAMP_FAILED for 5xx', async () => {
      await withServer(
        (_req, res) => res.writeHead(503).end('busy'),
        async (url) => {
          await expect(requestTimestamp(url, randomBytes(8), { hash: 'SHA-256' })).rejects.toMatchObject({
            code: 'ERR_TIMESTAMP_FAILED',
            retriable: true,
          });
        },
      );
    });

    it('stops reading a response larger than maxResponseBytes', async () => {
      await withServer(
        (_req, res) => {
          res.writeHead(200, { 'content-type': 'application/timestamp-reply' });
          res.write(Buffer.alloc(64 * 1024));
          res.end(Buffer.alloc(64 * 1024));
        },
        async (url) => {
          await expect(
            requestTimestamp(url, randomBytes(8), { hash: 'SHA-256', maxResponseBytes: 16 * 1024 }),
          ).rejects.toMatchObject({
            code: 'ERR_TIMESTAMP_FAILED',
            message: expect.stringContaining('larger'),
          });
        },
      );
    });

    it('refuses a response that is not a TimeStampResp', async () => {
      await withServer(
        (_req, res) => res.writeHead(200).end(Buffer.from('<html>hello</html>')),
        async (url) => {
          await expect(requestTimestamp(url, randomBytes(8), { hash: 'SHA-256' })).rejects.toMatchObject({
            code: 'ERR_TIMESTAMP_FAILED',
            retriable: false,
          });
        },
      );
    });

    it('gives up after timeoutMs when the TSA never answers', async () => {
      await withServer(
        () => undefined,
        async (url) => {
          await expect(
            requestTimestamp(url, randomBytes(8), { hash: 'SHA-256', timeoutMs: 300 }),
          ).rejects.toMatchObject({
            code: 'ERR_TIMESTAMP_FAILED',
            retriable: true,
          });
        },
      );
    });

    it('refuses URLs that are not http or https (ERR_INVALID_INPUT)', async () => {
      await expect(
        requestTimestamp('file:///etc/passwd', randomBytes(8), { hash: 'SHA-256' }),
      ).rejects.toMatchObject({
        code: 'ERR_INVALID_INPUT',
      });
      await expect(requestTimestamp('not a url', randomBytes(8), { hash: 'SHA-256' })).rejects.toMatchObject({
        code: 'ERR_INVALID_INPUT',
      });
    });
  });
});

describe('signCms', () => {
  describe('#signCms with timestamp (CAdES-B-T)', () => {
    it.each(['rsa', 'p256'] as const)(
      'embeds a signature time-stamp that openssl ts -verify accepts over the signature value (%s)',
      async (kind) => {
        const leaf = pki.leaves[kind];
        let stamped: Uint8Array | undefined;
        const cms = await signCms({
          signer: leaf.signer,
          certificate: leaf.der,
          chain: [pki.intermediate],
          digestAlgorithm: 'SHA-256',
          content,
          detached: true,
          timestamp: async (signatureValue) => {
            stamped = signatureValue;
            return requestTimestamp(tsa.url, signatureValue, { hash: 'SHA-256', timeoutMs: 10_000 });
          },
        });

        const verify = opensslStatus(
          [
            'cms',
            '-verify',
            '-cades',
            '-binary',
            '-inform',
            'DER',
            '-in',
            write(`bt-${kind}.p7s`, cms),
            '-content',
            'data.bin',
            '-CAfile',
            'root.pem',
            '-out',
            '/dev/null',
          ],
          dir,
        );
        expect(verify.output).toContain('CAdES Verification successful');
        expect(verify.ok).toBe(true);

        // Extract the token and the signature value by parsing the CMS.
        const sd = AsnConvert.parse(AsnConvert.parse(cms, ContentInfo).content, SignedData);
        const si = sd.signerInfos[0]!;
        const signature = new Uint8Array(si.signature.buffer);
        expect(Buffer.from(signature)).toEqual(Buffer.from(stamped!));
        const attrs = si.unsignedAttrs ?? [];
        expect(attrs.map((a) => a.attrType)).toEqual([CMS_OID.signatureTimeStampToken]);
        const token = new Uint8Array(attrs[0]!.attrValues[0]!);

        const byData = tsVerify(write(`bt-${kind}.tst`, token), write(`bt-${kind}.sig`, signature));
        expect(byData.output).toContain('Verification: OK');
        const byDigest = opensslStatus(
          [
            'ts',
            '-verify',
            '-in',
            `bt-${kind}.tst`,
            '-token_in',
            '-digest',
            createHash('sha256').update(signature).digest('hex'),
            '-CAfile',
            tsa.caCertPem,
          ],
          dir,
        );
        expect(byDigest.output).toContain('Verification: OK');

        // The token's imprint is the hash of the signature value, not of the content.
        const tokenSd = AsnConvert.parse(AsnConvert.parse(token, ContentInfo).content, SignedData);
        const tst = AsnConvert.parse(tokenSd.encapContentInfo.eContent!.single!, TSTInfo);
        expect(Buffer.from(tst.messageImprint.hashedMessage.buffer)).toEqual(
          createHash('sha256').update(signature).digest(),
        );
      },
    );

    it('fails with the time-stamp error and returns nothing when the TSA fails', async () => {
      const leaf = pki.leaves.p256;
      await expect(
        signCms({
          signer: leaf.signer,
          certificate: leaf.der,
          digestAlgorithm: 'SHA-256',
          content,
          timestamp: (sig) =>
            requestTimestamp('http://127.0.0.1:1/', sig, { hash: 'SHA-256', timeoutMs: 2000 }),
        }),
      ).rejects.toMatchObject({ code: 'ERR_TIMESTAMP_FAILED', retriable: true });
    });
  });
});
