import { createHash as nodeHash, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { hashBlob } from '../../../src/client/hash-blob.js';
import type { BlobLike } from '../../../src/client/hash-blob.js';
import { KelidError } from '../../../src/client/kelid-error.js';

/** A Blob that records the size of every slice it hands out; its size may lie (a file that shrank). */
class CountingBlob implements BlobLike {
  maxSliceBytes = 0;
  slices = 0;
  constructor(
    private readonly data: Uint8Array,
    readonly size = data.length,
  ) {}
  slice(start = 0, end = this.size): { arrayBuffer(): Promise<ArrayBuffer> } {
    this.slices++;
    this.maxSliceBytes = Math.max(this.maxSliceBytes, end - start);
    // A copy (Buffer#slice would share the pool buffer).
    const part = Uint8Array.prototype.slice.call(this.data, start, end);
    return { arrayBuffer: async () => part.buffer };
  }
}

describe('hashBlob', () => {
  it('hashes a real Blob in chunks to the digest node:crypto computes', async () => {
    const data = randomBytes(5 * 1024 * 1024 + 3);
    const digest = await hashBlob(new Blob([data]), 'SHA-256', { chunkSize: 1024 * 1024 });
    expect(Buffer.from(digest).toString('hex')).toBe(nodeHash('sha256').update(data).digest('hex'));
  });

  it('reads chunk-sized slices only, reports progress to the end, and handles an empty blob', async () => {
    const data = randomBytes(10_000);
    const blob = new CountingBlob(data);
    const progress: number[] = [];
    const digest = await hashBlob(blob, 'SHA-512', { chunkSize: 999, onProgress: (n) => progress.push(n) });
    expect(Buffer.from(digest).toString('hex')).toBe(nodeHash('sha512').update(data).digest('hex'));
    expect(blob.maxSliceBytes).toBe(999);
    expect(blob.slices).toBe(Math.ceil(10_000 / 999));
    expect(progress.at(-1)).toBe(10_000);
    const empty = await hashBlob(new Blob([]), 'SHA-384');
    expect(Buffer.from(empty).toString('hex')).toBe(nodeHash('sha384').digest('hex'));
  });

  it('fails with ERR_INVALID_ARGUMENT when the file shrinks while being read', async () => {
    const blob = new CountingBlob(randomBytes(100), 200);
    await expect(hashBlob(blob, 'SHA-256', { chunkSize: 64 })).rejects.toMatchObject({
      code: 'ERR_INVALID_ARGUMENT',
    });
  });

  it('stops with ERR_ABORTED when the signal is aborted', async () => {
    const controller = new AbortController();
    controller.abort();
    const err = await hashBlob(new Blob([randomBytes(10)]), 'SHA-256', { signal: controller.signal }).catch(
      (e) => e,
    );
    expect(err).toBeInstanceOf(KelidError);
    expect(err.code).toBe('ERR_ABORTED');
  });
});
