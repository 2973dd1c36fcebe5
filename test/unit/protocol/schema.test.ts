import { describe, expect, it } from 'vitest';
import { METHODS } from '../../../src/protocol/methods/index.js';
import {
  InvalidParams,
  compileParams,
  decodeDigest,
  summary,
  validateParams,
} from '../../../src/protocol/schema.js';

const method = (name: string) => METHODS.find((m) => m.name === name)!;

function problem(name: string, params: unknown): string | null {
  try {
    validateParams(method(name).validate, params);
    return null;
  } catch (e) {
    expect(e).toBeInstanceOf(InvalidParams);
    return (e as Error).message;
  }
}

const DIGEST = Buffer.alloc(32, 7).toString('base64');
const RAW = { certificateId: 'a'.repeat(32), digest: DIGEST, digestAlgorithm: 'SHA-256', summary: 'pay 10' };

describe('params schemas', () => {
  it('accept a well-formed sign.raw and refuse unknown members without echoing values', () => {
    expect(problem('sign.raw', RAW)).toBeNull();
    const m = problem('sign.raw', { ...RAW, pin: '987654' });
    expect(m).toContain('unknown member "pin"');
    expect(m).not.toContain('987654');
  });

  it('refuse malformed base64, oversized strings and unknown enum values', () => {
    expect(problem('sign.raw', { ...RAW, digest: 'not base64!' })).toContain('digest');
    expect(problem('sign.raw', { ...RAW, digest: `${DIGEST}=` })).not.toBeNull();
    expect(problem('sign.raw', { ...RAW, summary: 'x'.repeat(501) })).toContain('summary');
    expect(problem('sign.raw', { ...RAW, digestAlgorithm: 'MD5' })).toContain('digestAlgorithm');
    expect(
      problem('keys.generate', { tokenId: 't', algorithm: { name: 'RSA', modulusLength: 1024 } }),
    ).not.toBeNull();
    expect(
      problem('sign.batch', { certificateId: 'a', format: 'raw', digestAlgorithm: 'SHA-256', items: [] }),
    ).not.toBeNull();
  });

  it('accept Persian text with ZWNJ in a summary but refuse bidi overrides and control characters', () => {
    const validate = compileParams({ type: 'object', properties: { summary }, additionalProperties: false });
    expect(() => validateParams(validate, { summary: 'می‌خواهم قرارداد ۱۲ را امضا کنم' })).not.toThrow();
    for (const bad of ['pay \u202e01 ot', 'a\u2066b', 'line\rbreak', 'nul\u0000']) {
      expect(() => validateParams(validate, { summary: bad }), JSON.stringify(bad)).toThrow(InvalidParams);
    }
  });

  it('closes every method schema (additionalProperties false at the top)', () => {
    for (const m of METHODS) {
      const variants = (m.schema.oneOf as Array<Record<string, unknown>> | undefined) ?? [m.schema];
      for (const v of variants) expect(v.additionalProperties, m.name).toBe(false);
    }
  });
});

describe('decodeDigest', () => {
  it('requires the exact output length of the digest algorithm', () => {
    expect(decodeDigest(DIGEST, 'SHA-256')).toHaveLength(32);
    expect(() => decodeDigest(DIGEST, 'SHA-384')).toThrow('must be 48 bytes');
    expect(() => decodeDigest(Buffer.alloc(64).toString('base64'), 'SHA-256')).toThrow(InvalidParams);
  });
});
