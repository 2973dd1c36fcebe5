// The one way the status layer talks to the network: http(s) only, a deadline that covers the whole
// exchange (headers and body), a byte limit enforced while reading, so a hostile or broken responder
// can neither hold a signing request nor fill memory; and a destination policy (address-policy.ts)
// checked on the addresses the socket connects to, for every redirect hop. Through a forward proxy
// (proxy.ts) when one is configured: http URLs in absolute form, https ones tunnelled with CONNECT and
// TLS verified end to end, so the proxy sees the host name but neither reads nor forges the answers.
import * as dns from 'node:dns';
import type { Duplex } from 'node:stream';
import * as http from 'node:http';
import * as https from 'node:https';
import { isIP } from 'node:net';
import * as tls from 'node:tls';
import { BodyTooLargeError, readBoundedBody } from '../net/bounded-body.js';
import {
  DestinationRefused,
  assertLiteralAllowed,
  guardedLookup,
  isAllowedAddress,
} from './address-policy.js';
import type { DestinationPolicy } from './address-policy.js';
import { proxyFor } from './proxy.js';
import type { ProxySetting } from './proxy.js';
import { StatusSourceError } from './source-error.js';

/** Redirects followed at most (per request). */
export const MAX_REDIRECTS = 5;

export interface FetchPolicy extends DestinationPolicy {
  /**
   * Follow redirects to another host (token certificates: a CA may move its CRL to a CDN). When false,
   * only redirects to the same host name are followed: a page cannot bounce the agent from an allowed
   * host to one it chose, and the scheme or port of that same host add nothing it could not already
   * put in the URL itself.
   */
  crossHostRedirects: boolean;
}

/** What a request may reach when the caller sets no policy: anything (the agent's own, trusted URLs). */
export const OPEN_POLICY: Readonly<FetchPolicy> = { allowPrivateNetworks: true, crossHostRedirects: true };

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
  /** Destinations and redirects allowed; default OPEN_POLICY. */
  policy?: FetchPolicy;
  /** Called once per HTTP request actually sent (redirect hops included): statistics. */
  onRequest?: () => void;
  /** Config `proxy` (proxy.ts): null or absent reads HTTPS_PROXY/HTTP_PROXY/NO_PROXY. */
  proxy?: ProxySetting;
  /** Follow redirects (default true); when false a redirect is refused (`redirect-refused`). */
  followRedirects?: boolean;
}

const REDIRECTS: ReadonlySet<number> = new Set([301, 302, 303, 307, 308]);

/** GET or POST `url` and return the body; throws StatusSourceError with a reason on any failure. */
export async function fetchBytes(url: string, options: FetchBytesOptions): Promise<Uint8Array> {
  let target: URL;
  try {
    target = new URL(url);
  } catch (cause) {
    throw new StatusSourceError('unsupported-url', 'not a URL', { cause });
  }
  assertHttp(target);
  const signals: AbortSignal[] = [];
  if (options.timeoutMs !== undefined)
    signals.push(AbortSignal.timeout(Math.max(1, Math.floor(options.timeoutMs))));
  if (options.signal) signals.push(options.signal);
  const signal =
    signals.length === 0 ? undefined : signals.length === 1 ? signals[0] : AbortSignal.any(signals);
  const policy = options.policy ?? OPEN_POLICY;
  const host = target.hostname.toLowerCase();
  let method = options.method ?? 'GET';
  let body = options.body;
  try {
    for (let hop = 0; ; hop++) {
      if (signal?.aborted) throw signal.reason;
      const response = await send(target, method, body, options, policy, signal);
      const status = response.statusCode ?? 0;
      if (REDIRECTS.has(status)) {
        response.destroy();
        if (options.followRedirects === false) {
          throw new StatusSourceError('redirect-refused', `a redirect (HTTP ${status})`);
        }
        const next = redirectTarget(target, response.headers.location, host, policy, hop);
        // Browsers and fetch turn a redirected POST into a GET, except for 307/308.
        if (status !== 307 && status !== 308 && method === 'POST') {
          method = 'GET';
          body = undefined;
        }
        target = next;
        continue;
      }
      if (status < 200 || status > 299) {
        response.destroy();
        throw new StatusSourceError('http-status', `HTTP ${status}`, { httpStatus: status });
      }
      const declared = Number(response.headers['content-length'] ?? 'NaN');
      if (Number.isFinite(declared) && declared > options.maxBytes) {
        response.destroy();
        throw new StatusSourceError('too-large', `response larger than ${options.maxBytes} bytes`);
      }
      return await readLimited(response, options.maxBytes);
    }
  } catch (e) {
    if (e instanceof StatusSourceError) throw e;
    if (e instanceof DestinationRefused) {
      throw new StatusSourceError('forbidden-destination', 'the destination address is not allowed', {
        cause: e,
      });
    }
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

function assertHttp(target: URL): void {
  if (target.protocol !== 'http:' && target.protocol !== 'https:') {
    throw new StatusSourceError('unsupported-url', `unsupported URL scheme ${target.protocol}`);
  }
  if (target.username !== '' || target.password !== '') {
    throw new StatusSourceError('unsupported-url', 'URLs with credentials are not used');
  }
}

/** The URL a redirect leads to, if `policy` lets the request follow it. */
export function redirectTarget(
  from: URL,
  location: string | undefined,
  originalHost: string,
  policy: FetchPolicy,
  hop: number,
): URL {
  if (hop >= MAX_REDIRECTS) throw new StatusSourceError('redirect-refused', 'too many redirects');
  if (!location) throw new StatusSourceError('redirect-refused', 'a redirect without Location');
  let next: URL;
  try {
    next = new URL(location, from);
  } catch (cause) {
    throw new StatusSourceError('redirect-refused', 'a redirect to something that is not a URL', { cause });
  }
  assertHttp(next);
  if (!policy.crossHostRedirects && next.hostname.toLowerCase() !== originalHost) {
    throw new StatusSourceError('redirect-refused', 'a redirect to another host');
  }
  return next;
}

function send(
  target: URL,
  method: 'GET' | 'POST',
  body: Uint8Array | undefined,
  options: FetchBytesOptions,
  policy: FetchPolicy,
  signal: AbortSignal | undefined,
): Promise<http.IncomingMessage> {
  // IP literals never go through `lookup`: check them here. Host names are checked by the lookup,
  // on the addresses the socket then connects to.
  assertLiteralAllowed(target.hostname, policy);
  let proxy: URL | undefined;
  try {
    proxy = proxyFor(target, options.proxy);
  } catch (cause) {
    throw new StatusSourceError('network', 'the proxy setting is not a usable http:// URL', { cause });
  }
  if (proxy) return sendViaProxy(target, proxy, method, body, options, policy, signal);
  const request = target.protocol === 'https:' ? https.request : http.request;
  return new Promise((resolve, reject) => {
    const req = request(target, {
      method,
      headers: { ...(options.headers ?? {}), ...(body ? { 'content-length': String(body.length) } : {}) },
      lookup: guardedLookup(policy),
      // No pooled sockets: a connection kept alive for one policy must not serve a request of another.
      agent: false,
      ...(signal ? { signal } : {}),
    });
    req.once('response', resolve);
    req.once('error', reject);
    options.onRequest?.();
    req.end(body);
  });
}

/**
 * What the proxy is asked to connect to. A proxy resolves names itself, out of reach of the guarded
 * lookup, so under a restricting policy the name is resolved and checked here and the proxy is given
 * the checked address (Host header and TLS name stay the name): it cannot be made to connect to a
 * private address by a DNS answer that changes in between. This needs the agent to resolve public
 * names; where only the proxy can, page-supplied certificates cannot be checked (token ones can).
 */
async function proxyDestination(target: URL, policy: FetchPolicy): Promise<string> {
  const bare = target.hostname.replace(/^\[|\]$/g, '');
  if (policy.allowPrivateNetworks || isIP(bare) !== 0) return target.hostname;
  const addresses = await dns.promises.lookup(bare, { all: true });
  const allowed = addresses.find((a) => isAllowedAddress(a.address, policy));
  if (!allowed) throw new DestinationRefused(target.hostname);
  return allowed.family === 6 ? `[${allowed.address}]` : allowed.address;
}

function proxyHeaders(proxy: URL): Record<string, string> {
  if (proxy.username === '' && proxy.password === '') return {};
  const credentials = `${decodeURIComponent(proxy.username)}:${decodeURIComponent(proxy.password)}`;
  return { 'proxy-authorization': `Basic ${Buffer.from(credentials).toString('base64')}` };
}

async function sendViaProxy(
  target: URL,
  proxy: URL,
  method: 'GET' | 'POST',
  body: Uint8Array | undefined,
  options: FetchBytesOptions,
  policy: FetchPolicy,
  signal: AbortSignal | undefined,
): Promise<http.IncomingMessage> {
  const destination = await proxyDestination(target, policy);
  const port = target.port !== '' ? target.port : target.protocol === 'https:' ? '443' : '80';
  const headers = {
    ...(options.headers ?? {}),
    ...(body ? { 'content-length': String(body.length) } : {}),
  };
  const toProxy = {
    host: proxy.hostname.replace(/^\[|\]$/g, ''),
    port: proxy.port || '80',
    agent: false as const,
  };
  if (target.protocol === 'http:') {
    // Absolute form (RFC 9112 section 3.2.2): the proxy connects to `destination` and passes Host on.
    const absolute = `http://${destination}:${port}${target.pathname}${target.search}`;
    return new Promise((resolve, reject) => {
      const req = http.request({
        ...toProxy,
        method,
        path: absolute,
        headers: { ...headers, host: target.host, ...proxyHeaders(proxy) },
        ...(signal ? { signal } : {}),
      });
      req.once('response', resolve);
      req.once('error', reject);
      options.onRequest?.();
      req.end(body);
    });
  }
  const socket = await new Promise<Duplex>((resolve, reject) => {
    const req = http.request({
      ...toProxy,
      method: 'CONNECT',
      path: `${destination}:${port}`,
      headers: { host: `${destination}:${port}`, ...proxyHeaders(proxy) },
      ...(signal ? { signal } : {}),
    });
    req.once('connect', (response: http.IncomingMessage, tunnel: Duplex) => {
      if (response.statusCode === 200) return void resolve(tunnel);
      tunnel.destroy();
      reject(new StatusSourceError('network', `the proxy refused the tunnel (HTTP ${response.statusCode})`));
    });
    req.once('error', reject);
    req.end();
  });
  const name = target.hostname.replace(/^\[|\]$/g, '');
  return new Promise((resolve, reject) => {
    const req = https.request(target, {
      method,
      headers,
      agent: false,
      // TLS runs through the tunnel and checks the certificate against the URL's host name.
      createConnection: () =>
        tls.connect({ socket, ...(isIP(name) === 0 ? { servername: name } : { host: name }) }),
      ...(signal ? { signal } : {}),
    });
    // The tunnel outlives the TLS session unless closed: the proxy would hold it until its own timeout.
    req.once('response', (response: http.IncomingMessage) => {
      response.once('close', () => socket.destroy());
      resolve(response);
    });
    req.once('error', (e) => {
      socket.destroy();
      reject(e);
    });
    options.onRequest?.();
    req.end(body);
  });
}

async function readLimited(response: http.IncomingMessage, maxBytes: number): Promise<Uint8Array> {
  try {
    return new Uint8Array(await readBoundedBody(response, maxBytes));
  } catch (e) {
    if (e instanceof BodyTooLargeError) {
      throw new StatusSourceError('too-large', `response larger than ${maxBytes} bytes`);
    }
    throw e;
  }
}
