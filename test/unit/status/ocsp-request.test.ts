import { describe, expect, it } from 'vitest';
import { ocspGetUrl } from '../../../src/status/ocsp.js';

describe('ocspGetUrl', () => {
  it('appends the URL-encoded base64 request to the responder URL (RFC 6960 A.1)', () => {
    const der = new Uint8Array([0xfb, 0xff, 0xfe, 0x00]);
    const b64 = Buffer.from(der).toString('base64');
    expect(b64).toMatch(/[+/]/);
    expect(ocspGetUrl('http://ocsp.example.ir/', der)).toBe(
      `http://ocsp.example.ir/${encodeURIComponent(b64)}`,
    );
    expect(ocspGetUrl('http://ocsp.example.ir/ocsp', der)).toBe(
      `http://ocsp.example.ir/ocsp/${encodeURIComponent(b64)}`,
    );
    expect(decodeURIComponent(ocspGetUrl('http://o/', der)!.slice('http://o/'.length))).toBe(b64);
  });

  it('returns undefined when the encoded request reaches 255 bytes', () => {
    expect(ocspGetUrl('http://o/', new Uint8Array(150))).toBeDefined();
    expect(ocspGetUrl('http://o/', new Uint8Array(200))).toBeUndefined();
  });
});
