// Native messaging framing (Chrome and Firefox alike): each message is a 32-bit length in the
// machine's native byte order, then that many bytes of UTF-8 JSON. Messages to the browser are at
// most 1 MB; messages from the browser at most 64 MiB (Chrome's limit).

/** Largest message the host may send to the browser (Chrome and Firefox: 1 MB). */
export const MAX_TO_BROWSER_BYTES = 1024 * 1024;
/** Largest message the host accepts from the browser (Chrome sends at most 64 MiB). */
export const MAX_FROM_BROWSER_BYTES = 64 * 1024 * 1024;

const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/** Encode one message; throws RangeError when it is over the browser's 1 MB limit. */
export function encodeNativeMessage(value: unknown): Buffer {
  const body = Buffer.from(JSON.stringify(value), 'utf8');
  if (body.length > MAX_TO_BROWSER_BYTES)
    throw new RangeError(
      `native message of ${body.length} bytes is over the ${MAX_TO_BROWSER_BYTES}-byte limit`,
    );
  const header = Buffer.alloc(4);
  if (LITTLE_ENDIAN) header.writeUInt32LE(body.length, 0);
  else header.writeUInt32BE(body.length, 0);
  return Buffer.concat([header, body]);
}

export type NativeInput =
  | { kind: 'message'; value: unknown }
  | { kind: 'malformed'; reason: string }
  | { kind: 'oversized'; bytes: number; limit: number };

/**
 * Incremental reader of the browser's messages. Never throws on what stdin carries: a message that is
 * not JSON is reported `malformed`; one over `limit` is reported `oversized` once and its bytes are
 * skipped, so the next message is read correctly.
 */
export class NativeMessageReader {
  #buffer: Buffer = Buffer.alloc(0);
  #skip = 0;

  constructor(
    private readonly onInput: (input: NativeInput) => void,
    private readonly limit = MAX_FROM_BROWSER_BYTES,
  ) {}

  push(chunk: Buffer): void {
    if (this.#skip > 0) {
      const n = Math.min(this.#skip, chunk.length);
      this.#skip -= n;
      chunk = chunk.subarray(n);
    }
    this.#buffer = this.#buffer.length === 0 ? chunk : Buffer.concat([this.#buffer, chunk]);
    while (this.#buffer.length >= 4) {
      const length = LITTLE_ENDIAN ? this.#buffer.readUInt32LE(0) : this.#buffer.readUInt32BE(0);
      if (length > this.limit) {
        const available = this.#buffer.length - 4;
        this.#skip = Math.max(0, length - available);
        this.#buffer = this.#buffer.subarray(4 + Math.min(length, available));
        this.onInput({ kind: 'oversized', bytes: length, limit: this.limit });
        continue;
      }
      if (this.#buffer.length < 4 + length) return;
      const body = this.#buffer.subarray(4, 4 + length).toString('utf8');
      this.#buffer = this.#buffer.subarray(4 + length);
      let value: unknown;
      try {
        value = JSON.parse(body);
      } catch {
        this.onInput({ kind: 'malformed', reason: 'the native message is not JSON' });
        continue;
      }
      this.onInput({ kind: 'message', value });
    }
  }
}
