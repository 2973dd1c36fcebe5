import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DemoCa } from '../../../demo/ca.mjs';

const openssl = (args: string[], input?: string): string =>
  execFileSync('openssl', args, { encoding: 'utf8', input, stdio: ['pipe', 'pipe', 'pipe'] });
/** stdout and stderr together (openssl ocsp reports the signature check on stderr). */
const opensslAll = (args: string[]): string => {
  const r = spawnSync('openssl', args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(r.stderr);
  return r.stdout + r.stderr;
};

describe('DemoCa', () => {
  let dir: string;
  let ca: DemoCa;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'kelid-demo-ca-'));
    ca = new DemoCa({ dir: join(dir, 'ca'), baseUrl: 'http://127.0.0.1:17480' });
    await ca.init();
    writeFileSync(join(dir, 'chain.pem'), ca.issuingPem + ca.rootPem);
  });

  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const request = (name: string, subject: string): string => {
    openssl([
      'req',
      '-new',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-utf8',
      '-keyout',
      join(dir, `${name}.key`),
      '-out',
      join(dir, `${name}.csr`),
      '-subj',
      subject,
    ]);
    return readFileSync(join(dir, `${name}.csr`), 'utf8');
  };

  describe('#issue', () => {
    it('issues a signing certificate with OCSP and CRL pointers, keeping a Persian subject in request order', async () => {
      const { certificate, chain } = await ca.issue(
        request('a', '/C=IR/O=Kelid Demo/serialNumber=0012345678/CN=علی رضایی'),
      );
      writeFileSync(join(dir, 'a.pem'), certificate);
      expect(chain).toEqual([ca.issuingPem, ca.rootPem]);
      expect(openssl(['verify', '-CAfile', join(dir, 'chain.pem'), join(dir, 'a.pem')])).toMatch(/: OK/);
      const text = openssl([
        'x509',
        '-in',
        join(dir, 'a.pem'),
        '-noout',
        '-subject',
        '-nameopt',
        'utf8,sep_comma_plus',
        '-ext',
        'keyUsage,extendedKeyUsage,authorityInfoAccess,crlDistributionPoints',
      ]);
      expect(text).toContain('subject=C=IR,O=Kelid Demo,serialNumber=0012345678,CN=علی رضایی');
      expect(text).toMatch(/Digital Signature, Non Repudiation/);
      expect(text).toContain(`OCSP - URI:${ca.ocspUrl}`);
      expect(text).toContain(`URI:${ca.crlUrl}`);
    });

    it('refuses a request whose signature is wrong', async () => {
      const pem = request('b', '/CN=Bad');
      const der = Buffer.from(pem.replace(/-----[^-]+-----|\s/g, ''), 'base64');
      der[der.length - 5] ^= 0xff;
      const broken = `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`;
      await expect(ca.issue(broken)).rejects.toMatchObject({ status: 400 });
    });
  });

  describe('#ocsp and #revoke', () => {
    it('answers good, then revoked after a revocation, and lists the serial in the new CRL', async () => {
      const { certificate } = await ca.issue(request('c', '/CN=Revoke Me'));
      writeFileSync(join(dir, 'c.pem'), certificate);
      writeFileSync(join(dir, 'issuing.pem'), ca.issuingPem);
      openssl([
        'ocsp',
        '-issuer',
        join(dir, 'issuing.pem'),
        '-cert',
        join(dir, 'c.pem'),
        '-reqout',
        join(dir, 'c.req'),
        '-no_nonce',
      ]);
      const check = async (): Promise<string> => {
        writeFileSync(join(dir, 'c.resp'), await ca.ocsp(readFileSync(join(dir, 'c.req'))));
        return opensslAll([
          'ocsp',
          '-respin',
          join(dir, 'c.resp'),
          '-issuer',
          join(dir, 'issuing.pem'),
          '-cert',
          join(dir, 'c.pem'),
          '-CAfile',
          join(dir, 'chain.pem'),
        ]);
      };
      const good = await check();
      expect(good).toMatch(/Response verify OK/);
      expect(good).toMatch(/c\.pem: good/);
      // Fresh for statusValiditySeconds (10 s by default): This Update and Next Update 10 s apart.
      const [thisUpdate, nextUpdate] = [/This Update: (.*)/, /Next Update: (.*)/].map((r) =>
        Date.parse(r.exec(good)?.[1] ?? ''),
      );
      expect(nextUpdate - thisUpdate).toBe(10_000);
      await ca.revoke(certificate);
      const revoked = await check();
      expect(revoked).toMatch(/Response verify OK/);
      expect(revoked).toMatch(/c\.pem: revoked[\s\S]*Reason: keyCompromise/);
      writeFileSync(join(dir, 'crl.der'), await ca.crlDer());
      const serial = openssl(['x509', '-in', join(dir, 'c.pem'), '-noout', '-serial'])
        .trim()
        .split('=')[1];
      const crl = openssl(['crl', '-inform', 'DER', '-in', join(dir, 'crl.der'), '-noout', '-text']);
      expect(crl).toContain(`Serial Number: ${serial}`);
      expect(
        openssl(
          ['crl', '-inform', 'DER', '-in', join(dir, 'crl.der'), '-noout', '-CAfile', join(dir, 'chain.pem')],
          undefined,
        ),
      ).toBe('');
    });

    it('answers unknown for a certificate of another issuer', async () => {
      openssl([
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:P-256',
        '-nodes',
        '-keyout',
        join(dir, 'o.key'),
        '-out',
        join(dir, 'o.pem'),
        '-subj',
        '/CN=Other CA',
        '-days',
        '1',
      ]);
      openssl([
        'ocsp',
        '-issuer',
        join(dir, 'o.pem'),
        '-cert',
        join(dir, 'o.pem'),
        '-reqout',
        join(dir, 'o.req'),
      ]);
      writeFileSync(join(dir, 'o.resp'), await ca.ocsp(readFileSync(join(dir, 'o.req'))));
      expect(opensslAll(['ocsp', '-respin', join(dir, 'o.resp'), '-resp_text', '-noverify'])).toMatch(
        /Cert Status: unknown/,
      );
    });

    it('refuses to revoke a certificate it did not issue and to answer a malformed OCSP request', async () => {
      openssl([
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:P-256',
        '-nodes',
        '-keyout',
        join(dir, 'x.key'),
        '-out',
        join(dir, 'x.pem'),
        '-subj',
        '/CN=Stranger',
        '-days',
        '1',
      ]);
      await expect(ca.revoke(readFileSync(join(dir, 'x.pem'), 'utf8'))).rejects.toMatchObject({
        status: 400,
      });
      expect(readFileSync(join(ca.dir, 'index.txt'), 'utf8')).not.toContain('Stranger');
      await expect(ca.ocsp(Buffer.from('not DER'))).rejects.toMatchObject({ status: 400 });
    });
  });
});
