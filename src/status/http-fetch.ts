// The one way the status layer talks to the network: http(s) only, a deadline that covers the whole
// exchange (headers and body), and a byte limit enforced while reading, so a hostile or broken
// responder can neither hold a signing request nor fill memory.
import { StatusSourceError } from './source-error.js';

export interface FetchBytesOptions {
  method?: 'GET' | 'POST';
  body?: Uint8Array;
  headers?: Record<string, string>;
  /** Largest accepted response body. */
  maxBytes: number;
  /** Time limit for this request, headers and body included. */
  timeoutMs?: number;
  /** An outer deadline (the whole status check), combined with `timeoutMs`. */
  signal?: AbortSignal;
  fetch?: typeof fetch;
}

/** GET or POST `url` and return the body; throws StatusSourceError with a reason on any failure. */
export async function fetchBytes(url: string, options: FetchBytesOptions): Promise<Uint8Array> {
  let target: URL;
  try {
    target = new URL(url);
  } catch (cause) {
    throw new StatusSourceError('unsupported-url', 'not a URL', { cause });
  }
  if (target.protocol !== 'http:' && target.protocol !== 'https:') {
    throw new StatusSourceError('unsupported-url', `unsupported URL scheme ${target.protocol}`);
  }
  const signals: AbortSignal[] = [];
  if (options.timeoutMs !== undefined)
    signals.push(AbortSignal.timeout(Math.max(1, Math.floor(options.timeoutMs))));
  if (options.signal) signals.push(options.signal);
  const signal =
    signals.length === 0 ? undefined : signals.length === 1 ? signals[0] : AbortSignal.any(signals);
  const doFetch = options.fetch ?? globalThis.fetch;
  try {
    if (signal?.aborted) throw signal.reason;
    const response = await doFetch(target, {
      method: options.method ?? 'GET',
      ...(options.body ? { body: options.body } : {}),
      headers: options.headers ?? {},
      redirect: 'follow',
      ...(signal ? { signal } : {}),
    });
    if (!response.ok) {
      await response.body?.cancel().catch(() => undefined);
      throw new StatusSourceError('http-status', `HTTP ${response.status}`);
    }
    const declared = Number(response.headers.get('content-length') ?? 'NaN');
    if (Number.isFinite(declared) && declared > options.maxBytes) {
      await response.body?.cancel().catch(() => undefined);
      throw new StatusSourceError('too-large', `response larger than ${options.maxBytes} bytes`);
    }
    return await readLimited(response, options.maxBytes);
  } catch (e) {
    if (e instanceof StatusSourceError) throw e;
    if (signal?.aborted) {
      const reason: unknown = signal.reason;
      const timedOut = reason instanceof Error && reason.name === 'TimeoutError';
      throw new StatusSourceError(timedOut ? 'timeout' : 'network', timedOut ? 'timed out' : 'aborted', {
        cause: e,
      });
    }
    throw new StatusSourceError('network', e instanceof Error ? e.message : 'request failed', { cause: e });
  }
}

async function readLimited(response: Response, maxBytes: number): Promise<Uint8Array> {
  if (!response.body) return new Uint8Array(0);
  const reader = response.body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > maxBytes) {
      await reader.cancel().catch(() => undefined);
      throw new StatusSourceError('too-large', `response larger than ${maxBytes} bytes`);
    }
    chunks.push(value);
  }
  const out = new Uint8Array(total);
  let offset = 0;
  for (const c of chunks) {
    out.set(c, offset);
    offset += c.byteLength;
  }
  return out;
}
