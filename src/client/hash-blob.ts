import type { DigestAlgorithm } from '../model/types.js';
import { KelidError } from './kelid-error.js';
import { createHash } from './sha2.js';

/** The part of `Blob` (and `File`) the SDK reads: its size and `slice(…).arrayBuffer()`. */
export interface BlobLike {
  readonly size: number;
  slice(start?: number, end?: number): { arrayBuffer(): Promise<ArrayBuffer> };
}

/** Options of {@link hashBlob}. */
export interface HashBlobOptions {
  /** Bytes per read; default 4 MiB. */
  chunkSize?: number;
  /** Called after each chunk. */
  onProgress?: (hashedBytes: number, totalBytes: number) => void;
  /** Stops between chunks (rejects with `ERR_ABORTED`). */
  signal?: { readonly aborted: boolean };
}

/** Default chunk size of {@link hashBlob}. */
export const DEFAULT_CHUNK_SIZE = 4 * 1024 * 1024;

/**
 * Hash a `Blob`/`File` of any size in chunks. At most two chunks are in memory at once: the one being
 * hashed and the next one being read, so reading overlaps hashing. Rejects with `ERR_INVALID_ARGUMENT`
 * when a read returns fewer bytes than expected (the file changed on disk).
 */
export async function hashBlob(
  blob: BlobLike,
  algorithm: DigestAlgorithm,
  options: HashBlobOptions = {},
): Promise<Uint8Array> {
  const chunkSize = options.chunkSize ?? DEFAULT_CHUNK_SIZE;
  if (!Number.isSafeInteger(chunkSize) || chunkSize < 1)
    throw new KelidError('ERR_INVALID_ARGUMENT', 'chunkSize must be a positive integer');
  const hash = createHash(algorithm);
  const total = blob.size;
  const read = (start: number): Promise<ArrayBuffer> =>
    blob.slice(start, Math.min(start + chunkSize, total)).arrayBuffer();
  let offset = 0;
  let next: Promise<ArrayBuffer> | undefined = total > 0 ? read(0) : undefined;
  while (next !== undefined) {
    const buffer: ArrayBuffer = await next;
    if (options.signal?.aborted) throw new KelidError('ERR_ABORTED', 'hashing was aborted');
    const expected = Math.min(chunkSize, total - offset);
    if (buffer.byteLength !== expected)
      throw new KelidError('ERR_INVALID_ARGUMENT', 'the file changed while it was read');
    offset += buffer.byteLength;
    next = offset < total ? read(offset) : undefined;
    hash.update(new Uint8Array(buffer));
    options.onProgress?.(offset, total);
  }
  return hash.digest();
}
