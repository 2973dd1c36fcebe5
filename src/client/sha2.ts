// Incremental SHA-256 / SHA-384 / SHA-512 (FIPS 180-4) in plain TypeScript. WebCrypto only offers
// one-shot digests, which would need the whole file in memory; this lets signFile hash any size in
// chunks. 64-bit words of SHA-512 are kept as (high, low) pairs of 32-bit integers.

import type { DigestAlgorithm } from '../model/types.js';

/** An incremental hash: feed bytes with `update`, then read the result once with `digest`. */
export interface IncrementalHash {
  /** The algorithm's name as used on the wire (`SHA-256`, `SHA-384`, `SHA-512`). */
  readonly algorithm: DigestAlgorithm;
  /** Digest length in bytes (32, 48 or 64). */
  readonly digestLength: number;
  /** Add bytes. Returns `this` so calls can be chained. Throws `TypeError` after {@link IncrementalHash.digest}. */
  update(data: Uint8Array): this;
  /** Finish and return the digest. The hash cannot be used afterwards. */
  digest(): Uint8Array;
}

// First 64 bits of the fractional parts of the cube roots of the first 80 primes (SHA-512 K);
// SHA-256's K is the high 32 bits of the first 64.
const K_HEX =
  '428a2f98d728ae227137449123ef65cdb5c0fbcfec4d3b2fe9b5dba58189dbbc3956c25bf348b53859f111f1b605d019' +
  '923f82a4af194f9bab1c5ed5da6d8118d807aa98a303024212835b0145706fbe243185be4ee4b28c550c7dc3d5ffb4e2' +
  '72be5d74f27b896f80deb1fe3b1696b19bdc06a725c71235c19bf174cf692694e49b69c19ef14ad2efbe4786384f25e3' +
  '0fc19dc68b8cd5b5240ca1cc77ac9c652de92c6f592b02754a7484aa6ea6e4835cb0a9dcbd41fbd476f988da831153b5' +
  '983e5152ee66dfaba831c66d2db43210b00327c898fb213fbf597fc7beef0ee4c6e00bf33da88fc2d5a79147930aa725' +
  '06ca6351e003826f142929670a0e6e7027b70a8546d22ffc2e1b21385c26c9264d2c6dfc5ac42aed53380d139d95b3df' +
  '650a73548baf63de766a0abb3c77b2a881c2c92e47edaee692722c851482353ba2bfe8a14cf10364a81a664bbc423001' +
  'c24b8b70d0f89791c76c51a30654be30d192e819d6ef5218d69906245565a910f40e35855771202a106aa07032bbd1b8' +
  '19a4c116b8d2d0c81e376c085141ab532748774cdf8eeb9934b0bcb5e19b48a8391c0cb3c5c95a634ed8aa4ae3418acb' +
  '5b9cca4f7763e373682e6ff3d6b2b8a3748f82ee5defb2fc78a5636f43172f6084c87814a1f0ab728cc702081a6439ec' +
  '90befffa23631e28a4506cebde82bde9bef9a3f7b2c67915c67178f2e372532bca273eceea26619cd186b8c721c0c207' +
  'eada7dd6cde0eb1ef57d4f7fee6ed17806f067aa72176fba0a637dc5a2c898a6113f9804bef90dae1b710b35131c471b' +
  '28db77f523047d8432caab7b40c724933c9ebe0a15c9bebc431d67c49c100d4c4cc5d4becb3e42b6597f299cfc657e2a' +
  '5fcb6fab3ad6faec6c44198c4a475817';

function words32(hex: string): Int32Array {
  const out = new Int32Array(hex.length / 8);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(i * 8, i * 8 + 8), 16) | 0;
  return out;
}

/** K512 as 160 words: high, low, high, low, … */
const K512 = words32(K_HEX);
const K256 = new Int32Array(64);
for (let i = 0; i < 64; i++) K256[i] = K512[2 * i];

const IV256 = words32('6a09e667bb67ae853c6ef372a54ff53a510e527f9b05688c1f83d9ab5be0cd19');
const IV512 = words32(
  '6a09e667f3bcc908bb67ae8584caa73b3c6ef372fe94f82ba54ff53a5f1d36f1' +
    '510e527fade682d19b05688c2b3e6c1f1f83d9abfb41bd6b5be0cd19137e2179',
);
const IV384 = words32(
  'cbbb9d5dc1059ed8629a292a367cd5079159015a3070dd17152fecd8f70e5939' +
    '67332667ffc00b318eb44a8768581511db0c2e0d64f98fa747b5481dbefa4fa4',
);

/** Shared block buffering and length padding (Merkle–Damgård). */
abstract class BlockHash implements IncrementalHash {
  abstract readonly algorithm: DigestAlgorithm;
  abstract readonly digestLength: number;
  protected readonly block: Uint8Array;
  private used = 0;
  // Total length in bytes; a double is exact up to 2^53 bytes (8 PiB), far beyond any file.
  private length = 0;
  private finished = false;

  constructor(private readonly blockSize: number) {
    this.block = new Uint8Array(blockSize);
  }

  protected abstract compress(data: Uint8Array, offset: number): void;
  protected abstract output(): Uint8Array;

  update(data: Uint8Array): this {
    if (this.finished) throw new TypeError('hash already finished');
    const bs = this.blockSize;
    let pos = 0;
    const n = data.length;
    this.length += n;
    if (this.used > 0) {
      const take = Math.min(bs - this.used, n);
      this.block.set(data.subarray(0, take), this.used);
      this.used += take;
      pos = take;
      if (this.used < bs) return this;
      this.compress(this.block, 0);
      this.used = 0;
    }
    for (; pos + bs <= n; pos += bs) this.compress(data, pos);
    if (pos < n) {
      this.block.set(data.subarray(pos), 0);
      this.used = n - pos;
    }
    return this;
  }

  digest(): Uint8Array {
    if (this.finished) throw new TypeError('hash already finished');
    this.finished = true;
    const bs = this.blockSize;
    const lengthBytes = bs / 8; // 8 for SHA-256, 16 for SHA-512
    const block = this.block;
    block[this.used++] = 0x80;
    if (this.used > bs - lengthBytes) {
      block.fill(0, this.used);
      this.compress(block, 0);
      this.used = 0;
    }
    block.fill(0, this.used);
    // Bit length, big-endian, in the last 8 bytes (the upper bytes of a 128-bit length stay zero).
    const bits = this.length * 8;
    const high = Math.floor(bits / 0x100000000);
    const view = new DataView(block.buffer, block.byteOffset, block.byteLength);
    view.setUint32(bs - 8, high >>> 0);
    view.setUint32(bs - 4, bits >>> 0);
    this.compress(block, 0);
    return this.output();
  }
}

class Sha256 extends BlockHash {
  readonly algorithm = 'SHA-256' as const;
  readonly digestLength = 32;
  private readonly state = Int32Array.from(IV256);
  private readonly w = new Int32Array(64);

  constructor() {
    super(64);
  }

  protected compress(data: Uint8Array, offset: number): void {
    const w = this.w;
    for (let i = 0; i < 16; i++) {
      const j = offset + i * 4;
      w[i] = (data[j] << 24) | (data[j + 1] << 16) | (data[j + 2] << 8) | data[j + 3];
    }
    for (let i = 16; i < 64; i++) {
      const x = w[i - 15];
      const y = w[i - 2];
      const s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3);
      const s1 = ((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10);
      w[i] = (w[i - 16] + s0 + w[i - 7] + s1) | 0;
    }
    const s = this.state;
    let a = s[0];
    let b = s[1];
    let c = s[2];
    let d = s[3];
    let e = s[4];
    let f = s[5];
    let g = s[6];
    let h = s[7];
    for (let i = 0; i < 64; i++) {
      const S1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
      const ch = (e & f) ^ (~e & g);
      const t1 = (h + S1 + ch + K256[i] + w[i]) | 0;
      const S0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
      const maj = (a & b) ^ (a & c) ^ (b & c);
      const t2 = (S0 + maj) | 0;
      h = g;
      g = f;
      f = e;
      e = (d + t1) | 0;
      d = c;
      c = b;
      b = a;
      a = (t1 + t2) | 0;
    }
    s[0] = (s[0] + a) | 0;
    s[1] = (s[1] + b) | 0;
    s[2] = (s[2] + c) | 0;
    s[3] = (s[3] + d) | 0;
    s[4] = (s[4] + e) | 0;
    s[5] = (s[5] + f) | 0;
    s[6] = (s[6] + g) | 0;
    s[7] = (s[7] + h) | 0;
  }

  protected output(): Uint8Array {
    const out = new Uint8Array(32);
    const view = new DataView(out.buffer);
    for (let i = 0; i < 8; i++) view.setInt32(i * 4, this.state[i]);
    return out;
  }
}

const TWO32 = 0x100000000;

class Sha512 extends BlockHash {
  readonly algorithm: 'SHA-384' | 'SHA-512';
  readonly digestLength: number;
  /** (high, low) pairs of a..h. */
  private readonly state: Int32Array;
  /** Message schedule as (high, low) pairs. */
  private readonly w = new Int32Array(160);

  constructor(variant: 'SHA-384' | 'SHA-512') {
    super(128);
    this.algorithm = variant;
    this.digestLength = variant === 'SHA-384' ? 48 : 64;
    this.state = Int32Array.from(variant === 'SHA-384' ? IV384 : IV512);
  }

  protected compress(data: Uint8Array, offset: number): void {
    const w = this.w;
    for (let i = 0; i < 32; i++) {
      const j = offset + i * 4;
      w[i] = (data[j] << 24) | (data[j + 1] << 16) | (data[j + 2] << 8) | data[j + 3];
    }
    for (let i = 16; i < 80; i++) {
      // σ0(w[i-15]) = rotr1 ^ rotr8 ^ shr7
      let xh = w[2 * (i - 15)];
      let xl = w[2 * (i - 15) + 1];
      const s0h = ((xh >>> 1) | (xl << 31)) ^ ((xh >>> 8) | (xl << 24)) ^ (xh >>> 7);
      const s0l = ((xl >>> 1) | (xh << 31)) ^ ((xl >>> 8) | (xh << 24)) ^ ((xl >>> 7) | (xh << 25));
      // σ1(w[i-2]) = rotr19 ^ rotr61 ^ shr6
      xh = w[2 * (i - 2)];
      xl = w[2 * (i - 2) + 1];
      const s1h = ((xh >>> 19) | (xl << 13)) ^ ((xl >>> 29) | (xh << 3)) ^ (xh >>> 6);
      const s1l = ((xl >>> 19) | (xh << 13)) ^ ((xh >>> 29) | (xl << 3)) ^ ((xl >>> 6) | (xh << 26));
      const lo = (s1l >>> 0) + (w[2 * (i - 7) + 1] >>> 0) + (s0l >>> 0) + (w[2 * (i - 16) + 1] >>> 0);
      const hi = s1h + w[2 * (i - 7)] + s0h + w[2 * (i - 16)] + ((lo / TWO32) | 0);
      w[2 * i] = hi | 0;
      w[2 * i + 1] = lo | 0;
    }
    const s = this.state;
    let ah = s[0],
      al = s[1],
      bh = s[2],
      bl = s[3],
      ch = s[4],
      cl = s[5],
      dh = s[6],
      dl = s[7],
      eh = s[8],
      el = s[9],
      fh = s[10],
      fl = s[11],
      gh = s[12],
      gl = s[13],
      hh = s[14],
      hl = s[15];
    for (let i = 0; i < 80; i++) {
      // Σ1(e) = rotr14 ^ rotr18 ^ rotr41
      const S1h = ((eh >>> 14) | (el << 18)) ^ ((eh >>> 18) | (el << 14)) ^ ((el >>> 9) | (eh << 23));
      const S1l = ((el >>> 14) | (eh << 18)) ^ ((el >>> 18) | (eh << 14)) ^ ((eh >>> 9) | (el << 23));
      const chh = (eh & fh) ^ (~eh & gh);
      const chl = (el & fl) ^ (~el & gl);
      const t1l = (hl >>> 0) + (S1l >>> 0) + (chl >>> 0) + (K512[2 * i + 1] >>> 0) + (w[2 * i + 1] >>> 0);
      const t1h = hh + S1h + chh + K512[2 * i] + w[2 * i] + ((t1l / TWO32) | 0);
      // Σ0(a) = rotr28 ^ rotr34 ^ rotr39
      const S0h = ((ah >>> 28) | (al << 4)) ^ ((al >>> 2) | (ah << 30)) ^ ((al >>> 7) | (ah << 25));
      const S0l = ((al >>> 28) | (ah << 4)) ^ ((ah >>> 2) | (al << 30)) ^ ((ah >>> 7) | (al << 25));
      const majh = (ah & bh) ^ (ah & ch) ^ (bh & ch);
      const majl = (al & bl) ^ (al & cl) ^ (bl & cl);
      const t2l = (S0l >>> 0) + (majl >>> 0);
      const t2h = S0h + majh + ((t2l / TWO32) | 0);
      hh = gh;
      hl = gl;
      gh = fh;
      gl = fl;
      fh = eh;
      fl = el;
      const el2 = (dl >>> 0) + (t1l >>> 0);
      eh = (dh + t1h + ((el2 / TWO32) | 0)) | 0;
      el = el2 | 0;
      dh = ch;
      dl = cl;
      ch = bh;
      cl = bl;
      bh = ah;
      bl = al;
      const al2 = (t1l >>> 0) + (t2l >>> 0);
      ah = (t1h + t2h + ((al2 / TWO32) | 0)) | 0;
      al = al2 | 0;
    }
    const add = (i: number, h: number, l: number): void => {
      const lo = (s[i + 1] >>> 0) + (l >>> 0);
      s[i] = (s[i] + h + ((lo / TWO32) | 0)) | 0;
      s[i + 1] = lo | 0;
    };
    add(0, ah, al);
    add(2, bh, bl);
    add(4, ch, cl);
    add(6, dh, dl);
    add(8, eh, el);
    add(10, fh, fl);
    add(12, gh, gl);
    add(14, hh, hl);
  }

  protected output(): Uint8Array {
    const out = new Uint8Array(64);
    const view = new DataView(out.buffer);
    for (let i = 0; i < 16; i++) view.setInt32(i * 4, this.state[i]);
    return out.slice(0, this.digestLength);
  }
}

/**
 * Create an incremental hash for one of the protocol's digest algorithms.
 * Throws `TypeError` for any other name.
 */
export function createHash(algorithm: DigestAlgorithm): IncrementalHash {
  switch (algorithm) {
    case 'SHA-256':
      return new Sha256();
    case 'SHA-384':
    case 'SHA-512':
      return new Sha512(algorithm);
    default:
      throw new TypeError(`unsupported digest algorithm: ${String(algorithm)}`);
  }
}

/** Digest length in bytes of a protocol digest algorithm. */
export function digestLength(algorithm: DigestAlgorithm): number {
  return algorithm === 'SHA-256' ? 32 : algorithm === 'SHA-384' ? 48 : 64;
}
