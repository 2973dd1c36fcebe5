// The one way Kelid reads an HTTP body into memory (a response of the status fetcher, the update
// manifest, doctor's probes; a request body of the consent API): up to a byte limit counted while
// reading, so a hostile or broken peer can never fill memory. Node builtins only: any layer may use it.
import type { Readable } from 'node:stream';

/** The body was longer than the limit; reading stopped at the first byte past it. */
export class BodyTooLargeError extends Error {
  override readonly name = 'BodyTooLargeError';

  constructor(readonly limit: number) {
    super(`the body is larger than ${limit} bytes`);
  }
}

export interface BoundedBodyOptions {
  /**
   * What to do with the stream once the limit is passed: `destroy` it (the default: a response
   * stream, whose connection is then dropped), or only `stop` reading (a server's request, whose
   * socket must live on to carry the refusal; the server closes it after that response).
   */
  overflow?: 'destroy' | 'stop';
}

/**
 * Read `stream` to its end and return its bytes, at most `maxBytes` of them. One byte more rejects
 * with BodyTooLargeError and stops reading; a stream that closes or fails before its end rejects with
 * that error.
 */
export function readBoundedBody(
  stream: Readable,
  maxBytes: number,
  options: BoundedBodyOptions = {},
): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let total = 0;
    const done = (): void => {
      stream.off('data', onData);
      stream.off('end', onEnd);
      stream.off('error', onError);
      stream.off('close', onClose);
    };
    const onData = (chunk: Buffer | string): void => {
      const bytes = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
      total += bytes.byteLength;
      if (total > maxBytes) {
        done();
        // Late errors of a stream nobody reads any more must not become uncaught exceptions.
        stream.on('error', () => undefined);
        if (options.overflow === 'stop') stream.pause();
        else stream.destroy();
        reject(new BodyTooLargeError(maxBytes));
        return;
      }
      chunks.push(bytes);
    };
    const onEnd = (): void => {
      done();
      resolve(Buffer.concat(chunks, total));
    };
    const onError = (e: Error): void => {
      done();
      reject(e);
    };
    const onClose = (): void => {
      done();
      reject(new Error('the connection closed before the end of the body'));
    };
    stream.on('data', onData);
    stream.once('end', onEnd);
    stream.once('error', onError);
    stream.once('close', onClose);
  });
}
