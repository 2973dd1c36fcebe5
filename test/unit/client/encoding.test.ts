import { createPublicKey, generateKeyPairSync, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { fromBase64, fromHex, toBase64, toHex, toPem, utf8 } from '../../../src/client/encoding.js';

describe('encoding', () => {
  describe('#toBase64', () => {
    it('matches Buffer for every length 0..100 and for 100 KiB', () => {
      for (const n of [...Array(101).keys(), 100 * 1024 + 1]) {
        const b = randomBytes(n);
        expect(toBase64(b)).toBe(b.toString('base64'));
        expect(toBase64(b.buffer.slice(b.byteOffset, b.byteOffset + n))).toBe(b.toString('base64'));
      }
    });
  });

  describe('#fromBase64', () => {
    it('round-trips what Buffer encodes, with or without padding and line breaks', () => {
      for (let n = 0; n < 70; n++) {
        const b = randomBytes(n);
        const text = b.toString('base64');
        expect(Buffer.from(fromBase64(text)).equals(b)).toBe(true);
        expect(Buffer.from(fromBase64(text.replace(/=+$/, ''))).equals(b)).toBe(true);
        expect(Buffer.from(fromBase64(text.replace(/(.{8})/g, '$1\n'))).equals(b)).toBe(true);
      }
    });

    it('refuses characters outside the alphabet and impossible lengths', () => {
      expect(() => fromBase64('ab$d')).toThrow(TypeError);
      expect(() => fromBase64('abcde')).toThrow(TypeError);
      expect(() => fromBase64('-_==')).toThrow(TypeError);
    });
  });

  describe('#toHex / #fromHex', () => {
    it('match Buffer', () => {
      const b = randomBytes(40);
      expect(toHex(b)).toBe(b.toString('hex'));
      expect(Buffer.from(fromHex(b.toString('hex').toUpperCase())).equals(b)).toBe(true);
      expect(() => fromHex('abc')).toThrow(TypeError);
      expect(() => fromHex('zz')).toThrow(TypeError);
    });
  });

  describe('#utf8', () => {
    it('encodes Persian text as Buffer does', () => {
      const s = 'امضای سند ۱۲۳ — Kelid';
      expect(Buffer.from(utf8(s)).equals(Buffer.from(s, 'utf8'))).toBe(true);
    });
  });

  describe('#toPem', () => {
    it('writes 64-character lines that Node parses back', () => {
      const { publicKey } = generateKeyPairSync('rsa', { modulusLength: 1024 });
      const der = publicKey.export({ type: 'spki', format: 'der' });
      const pem = toPem(der, 'PUBLIC KEY');
      expect(pem.split('\n').every((l) => l.length <= 64)).toBe(true);
      expect(createPublicKey(pem).export({ type: 'spki', format: 'der' }).equals(der)).toBe(true);
    });
  });
});
