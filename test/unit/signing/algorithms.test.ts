import {
  constants,
  createHash,
  generateKeyPairSync,
  sign,
  type RSAPSSKeyPairKeyObjectOptions,
} from 'node:crypto';
import { AsnConvert } from '@peculiar/asn1-schema';
import { AlgorithmIdentifier } from '@peculiar/asn1-x509';
import { describe, expect, it } from 'vitest';
import type { DigestAlgorithm } from '../../../src/model/types.js';
import {
  assertDigestLength,
  digest,
  digestAlgorithmFromOid,
  resolveScheme,
  rsaPssParams,
  signatureAlgorithmIdentifier,
  verifySignature,
} from '../../../src/signing/algorithms.js';
import { DIGEST_LENGTH, TAG_SEQUENCE, readSingle, readTlv } from '../../../src/pki/der.js';
import { OID } from '../../../src/pki/oids.js';

const ALGS: [DigestAlgorithm, string][] = [
  ['SHA-256', 'sha256'],
  ['SHA-384', 'sha384'],
  ['SHA-512', 'sha512'],
];
const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });

function spkiAlgorithm(spki: Buffer): AlgorithmIdentifier {
  // SubjectPublicKeyInfo ::= SEQUENCE { algorithm AlgorithmIdentifier, subjectPublicKey BIT STRING }
  const top = readSingle(spki, TAG_SEQUENCE, 'SubjectPublicKeyInfo');
  const alg = readTlv(spki, top.contentStart, top.end);
  return AsnConvert.parse(spki.subarray(alg.start, alg.end), AlgorithmIdentifier);
}

describe('algorithms', () => {
  describe('#digest', () => {
    it.each(ALGS)('matches node createHash for %s', (alg, node) => {
      const data = Buffer.from('کلید — kelid');
      const d = digest(alg, data);
      expect(Buffer.from(d)).toEqual(createHash(node).update(data).digest());
      expect(d.length).toBe(DIGEST_LENGTH[alg]);
    });
  });

  describe('#assertDigestLength', () => {
    it('throws ERR_INVALID_INPUT when the digest length does not fit the algorithm', () => {
      expect(() => assertDigestLength(new Uint8Array(32), 'SHA-384')).toThrow(
        expect.objectContaining({ code: 'ERR_INVALID_INPUT' }),
      );
      expect(() => assertDigestLength(new Uint8Array(48), 'SHA-384')).not.toThrow();
    });
  });

  describe('#resolveScheme', () => {
    it('defaults to PKCS#1 v1.5 for RSA and ECDSA for EC', () => {
      expect(resolveScheme('RSA')).toBe('RSASSA-PKCS1-v1_5');
      expect(resolveScheme('EC')).toBe('ECDSA');
      expect(resolveScheme('RSA', 'RSA-PSS')).toBe('RSA-PSS');
    });

    it('refuses a scheme the key type cannot do', () => {
      expect(() => resolveScheme('EC', 'RSA-PSS')).toThrow(
        expect.objectContaining({ code: 'ERR_INVALID_INPUT' }),
      );
      expect(() => resolveScheme('RSA', 'ECDSA')).toThrow(
        expect.objectContaining({ code: 'ERR_INVALID_INPUT' }),
      );
    });
  });

  describe('#rsaPssParams', () => {
    it.each(ALGS)('matches the RSASSA-PSS-params OpenSSL writes for an RSA-PSS %s key', (alg, node) => {
      // @types/node 20 types saltLength as a string; node wants a number.
      const options = {
        modulusLength: 1024,
        hashAlgorithm: node,
        mgf1HashAlgorithm: node,
        saltLength: DIGEST_LENGTH[alg],
      } as unknown as RSAPSSKeyPairKeyObjectOptions;
      const pss = generateKeyPairSync('rsa-pss', options);
      const spki = pss.publicKey.export({ format: 'der', type: 'spki' });
      const algorithm = spkiAlgorithm(spki);
      expect(algorithm.algorithm).toBe(OID.rsassaPss);
      expect(Buffer.from(rsaPssParams(alg))).toEqual(Buffer.from(algorithm.parameters!));
    });
  });

  describe('#signatureAlgorithmIdentifier', () => {
    it('uses rsaEncryption with NULL parameters for CMS PKCS#1 v1.5 and omits parameters for ECDSA', () => {
      const cms = signatureAlgorithmIdentifier('RSASSA-PKCS1-v1_5', 'SHA-256', {
        rsaPkcs1Form: 'rsaEncryption',
      });
      expect(cms.algorithm).toBe(OID.rsaEncryption);
      expect(cms.parameters).toBeNull();
      expect(signatureAlgorithmIdentifier('RSASSA-PKCS1-v1_5', 'SHA-384').algorithm).toBe(
        OID.sha384WithRSAEncryption,
      );
      const ec = signatureAlgorithmIdentifier('ECDSA', 'SHA-512');
      expect(ec.algorithm).toBe(OID.ecdsaWithSHA512);
      expect(ec.parameters).toBeUndefined();
    });

    it('maps digest OIDs back to names', () => {
      for (const [alg] of ALGS) {
        const id = AsnConvert.parse(
          AsnConvert.serialize(signatureAlgorithmIdentifier('RSA-PSS', alg)),
          AlgorithmIdentifier,
        );
        expect(id.algorithm).toBe(OID.rsassaPss);
      }
      expect(digestAlgorithmFromOid(OID.sha384)).toBe('SHA-384');
      expect(digestAlgorithmFromOid('1.3.14.3.2.26')).toBeUndefined();
    });
  });

  describe('#verifySignature', () => {
    it('accepts node signatures and refuses them under another scheme or key type', () => {
      const data = Buffer.from('x');
      const pssSig = sign('sha256', data, {
        key: rsa.privateKey,
        padding: constants.RSA_PKCS1_PSS_PADDING,
        saltLength: 32,
      });
      expect(verifySignature(rsa.publicKey, 'RSA-PSS', 'SHA-256', data, pssSig)).toBe(true);
      expect(verifySignature(rsa.publicKey, 'RSASSA-PKCS1-v1_5', 'SHA-256', data, pssSig)).toBe(false);
      expect(verifySignature(rsa.publicKey, 'ECDSA', 'SHA-256', data, pssSig)).toBe(false);
      const ec = generateKeyPairSync('ec', { namedCurve: 'P-384' });
      const ecSig = sign('sha384', data, ec.privateKey);
      expect(verifySignature(ec.publicKey, 'ECDSA', 'SHA-384', data, ecSig)).toBe(true);
      expect(verifySignature(ec.publicKey, 'ECDSA', 'SHA-256', data, ecSig)).toBe(false);
    });
  });
});
