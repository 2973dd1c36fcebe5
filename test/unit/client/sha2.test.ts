import { createHash as nodeHash, randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { createHash, digestLength } from '../../../src/client/sha2.js';
import type { DigestAlgorithm } from '../../../src/client/types.js';

const ALGORITHMS: DigestAlgorithm[] = ['SHA-256', 'SHA-384', 'SHA-512'];
const nodeName = (a: DigestAlgorithm): string => a.replace('-', '').toLowerCase();
const reference = (a: DigestAlgorithm, data: Uint8Array): string =>
  nodeHash(nodeName(a)).update(data).digest('hex');
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

describe('createHash', () => {
  for (const algorithm of ALGORITHMS) {
    describe(algorithm, () => {
      it('matches node:crypto on every length around the block and padding boundaries', () => {
        // 0..300 covers empty input, 55/56/63/64 (SHA-256) and 111/112/127/128 (SHA-512) edges.
        for (let n = 0; n <= 300; n++) {
          const data = randomBytes(n);
          expect(hex(createHash(algorithm).update(data).digest()), `length ${n}`).toBe(
            reference(algorithm, data),
          );
        }
      });

      it('gives the same digest whatever the split into updates', () => {
        fc.assert(
          fc.property(
            fc.uint8Array({ minLength: 0, maxLength: 2000 }),
            fc.array(fc.nat({ max: 2000 }), { maxLength: 8 }),
            (data, cuts) => {
              const points = [...new Set(cuts.map((c) => c % (data.length + 1)))].sort((a, b) => a - b);
              const h = createHash(algorithm);
              let last = 0;
              for (const p of points) {
                h.update(data.subarray(last, p));
                last = p;
              }
              h.update(data.subarray(last));
              expect(hex(h.digest())).toBe(reference(algorithm, data));
            },
          ),
          { numRuns: 60 },
        );
      });

      it('matches node:crypto on 3 MiB fed in odd-sized chunks that straddle blocks', () => {
        const data = randomBytes(3 * 1024 * 1024 + 17);
        const h = createHash(algorithm);
        for (let o = 0; o < data.length; o += 65_537) h.update(data.subarray(o, o + 65_537));
        expect(hex(h.digest())).toBe(reference(algorithm, data));
      });

      it('reports the digest length and refuses updates after digest()', () => {
        const h = createHash(algorithm);
        const d = h.digest();
        expect(d.length).toBe(digestLength(algorithm));
        expect(h.digestLength).toBe(d.length);
        expect(() => h.update(new Uint8Array(1))).toThrow(TypeError);
        expect(() => h.digest()).toThrow(TypeError);
      });
    });
  }

  it('refuses an unknown algorithm', () => {
    expect(() => createHash('SHA-1' as DigestAlgorithm)).toThrow(TypeError);
  });
});
