import * as fs from 'node:fs';
import type * as http from 'node:http';
import * as path from 'node:path';
import type { ConsentBroker } from '../consent/consent-broker.js';
import { silentLogger } from '../log.js';
import type { Logger } from '../log.js';
import { BodyTooLargeError, readBoundedBody } from '../net/bounded-body.js';
import { packagePath } from '../package-files.js';
import { TRANSPORT_LIMITS } from './limits.js';

// The plain HTTP routes of the agent's server (PROTOCOL.md sections 1 and 5):
//   GET /health              {"status":"ok"} — no version (any page can read it), no secrets, no token data
//   GET /sdk/kelid.js        the browser SDK (dist/client/kelid.js), or a stub that says it is not built
//   /consent/, /manager/     the trusted pages (src/ui/consent, src/ui/manager), static files only
//   /shared/                 their common stylesheet and icon (src/ui/shared)
//   /consent/api/session     POST, Bearer <launch secret> → {secret, request}: the page trades the
//                            secret of its URL (which sat in the browser's argv) for its own; 409
//                            when that launch secret was already traded
//   /consent/api/request     GET,  Authorization: Bearer <secret> → the pending consent request
//   /consent/api/approve     POST, Bearer + {"secrets":{<need>: string}} → {ok:true} | 400 {error}
//   /consent/api/deny        POST, Bearer → {ok:true}
// Every request must carry an allowed Host (DNS rebinding); no route but the public SDK file sends CORS
// headers, so another origin's script can neither read a response nor send the Authorization header
// (its preflight fails).
// A plain node:http request listener: route names match case-insensitively with an optional trailing
// slash, GET routes also answer HEAD, and a method a route does not take is 404, as express did.

export interface HttpRoutesOptions {
  /** The Host values accepted (`127.0.0.1:PORT`, `localhost:PORT`, `[::1]:PORT`), for the listener's port. */
  allowedHosts: (localPort: number) => string[];
  /** The agent's own origin (`https://127.0.0.1:PORT`). */
  consoleOrigin: () => string;
  consent: ConsentBroker;
  /** Directory holding `consent/` and `manager/` (default: the package's src/ui). */
  uiDir?: string;
  /** The built browser SDK (default: the package's dist/client/kelid.js). */
  sdkFile?: string;
  logger?: Logger;
}

export const PAGE_CSP = "default-src 'self'; frame-ancestors 'none'";

const SDK_STUB = `// Kelid: the browser SDK is not built in this installation.
throw new Error('Kelid SDK is not available: build it with "npm run build" in the Kelid package (dist/client/kelid.js).');
`;

const BEARER = /^Bearer ([A-Za-z0-9_-]{16,128})$/;

const JSON_TYPE = 'application/json; charset=utf-8';

/** Content types of the files the pages are made of; anything else is served as bytes. */
const CONTENT_TYPES: Readonly<Record<string, string>> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.woff2': 'font/woff2',
  '.txt': 'text/plain; charset=utf-8',
};

/** The static directories: URL prefix, folder under the UI directory, and whether `/` serves index.html. */
const STATIC_MOUNTS = [
  { prefix: '/consent', dir: 'consent', index: true },
  { prefix: '/manager', dir: 'manager', index: true },
  { prefix: '/shared', dir: 'shared', index: false },
] as const;

type Request = http.IncomingMessage;
type Response = http.ServerResponse;

export function defaultUiDir(): string {
  return packagePath('src', 'ui') + path.sep;
}

export function defaultSdkFile(): string {
  return packagePath('dist', 'client', 'kelid.js');
}

/** An HTTP failure the route decided on: status, message and (for 4xx of bad input) a code. */
class RouteError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly code?: string,
  ) {
    super(message);
  }
}

/** The request listener serving the routes above. */
export function createHttpApp(options: HttpRoutesOptions): http.RequestListener {
  const log = options.logger ?? silentLogger;
  const uiDir = options.uiDir ?? defaultUiDir();
  const sdkFile = options.sdkFile ?? defaultSdkFile();

  const route = async (req: Request, res: Response): Promise<void> => {
    const { pathname, search } = splitTarget(req.url ?? '');
    if (pathname === null) return apiError(req, res, 404, 'not found');
    const name = routeName(pathname);
    const read = req.method === 'GET' || req.method === 'HEAD';

    if (name === '/health' && read) return sendJson(req, res, 200, { status: 'ok' });
    if (name === '/v1' && read) {
      // WebSocket upgrades never get here (server.ts takes them in the `upgrade` event).
      res.setHeader('Upgrade', 'websocket');
      return send(req, res, 426, 'text/plain; charset=utf-8', 'Upgrade Required\n');
    }
    if (name === '/sdk/kelid.js' && read) {
      // The SDK is an ES module: browsers fetch `import … from 'https://127.0.0.1:PORT/sdk/kelid.js'`
      // in CORS mode, so this one public, static, credential-free file is readable by any origin. It
      // is the only response with a CORS header; every other route (the API, the consent backend) has none.
      res.setHeader('Access-Control-Allow-Origin', '*');
      res.setHeader('Cross-Origin-Resource-Policy', 'cross-origin');
      let body: Buffer | string;
      try {
        body = await fs.promises.readFile(sdkFile);
      } catch {
        body = SDK_STUB;
      }
      return send(req, res, 200, 'text/javascript; charset=utf-8', body);
    }
    if (name === '/consent/api' || name.startsWith('/consent/api/')) {
      return consentApi(req, res, name.slice('/consent/api'.length));
    }
    const lower = pathname.toLowerCase();
    for (const mount of STATIC_MOUNTS) {
      if (lower !== mount.prefix && !lower.startsWith(`${mount.prefix}/`)) continue;
      if (!read) break;
      const rest = pathname.slice(mount.prefix.length);
      // The page's relative links need the trailing slash: /consent → /consent/ (query kept).
      if (rest === '') return redirect(req, res, `${mount.prefix}/${search}`);
      const file = await staticFile(path.join(uiDir, mount.dir), rest, mount.index);
      if (file === null) break;
      return send(req, res, 200, contentType(file.path), file.body);
    }
    return apiError(req, res, 404, 'not found');
  };

  const consentApi = async (req: Request, res: Response, sub: string): Promise<void> => {
    res.setHeader('Cross-Origin-Resource-Policy', 'same-origin');
    // Only the consent page itself (same origin) may call: a script elsewhere cannot send the bearer
    // header cross-origin anyway; this also refuses forms and navigations from other sites.
    const origin = req.headers.origin;
    if (origin !== undefined && origin !== options.consoleOrigin())
      return apiError(req, res, 403, 'cross-origin request');
    const site = req.headers['sec-fetch-site'];
    if (site !== undefined && site !== 'same-origin' && site !== 'none')
      return apiError(req, res, 403, 'cross-site request');
    // A JSON body is read (and must parse) before routing, whatever the route, as express.json did.
    const json = hasBody(req) && isJsonType(req.headers['content-type']);
    const body = json ? await readJsonBody(req) : undefined;
    const secret = BEARER.exec(req.headers.authorization ?? '')?.[1] ?? null;
    const subName = routeName(sub === '' ? '/' : sub);
    const methods = API_METHODS[subName];
    if (methods === undefined) return apiError(req, res, 404, 'not found');
    if (req.method === 'OPTIONS') {
      // No Access-Control-* header: a cross-origin preflight fails; the same origin needs none.
      res.setHeader('Allow', methods.join(', '));
      return send(req, res, 200, 'text/plain; charset=utf-8', methods.join(','));
    }
    if (!methods.includes(req.method ?? '')) return apiError(req, res, 404, 'not found');

    switch (subName) {
      // POST, not GET: nothing prefetches or preloads it, so only the page's own script spends the secret.
      case '/session': {
        const opened = secret === null ? null : options.consent.openPage(secret);
        if (opened === null) return apiError(req, res, 404, 'no such consent request');
        if (opened === 'spent')
          return apiError(req, res, 409, 'this consent page was already opened', 'ERR_FORBIDDEN');
        return sendJson(req, res, 200, opened);
      }
      case '/request': {
        const view = secret === null ? undefined : options.consent.get({ secret });
        if (!view) return apiError(req, res, 404, 'no such consent request');
        return sendJson(req, res, 200, view);
      }
      case '/approve': {
        if (secret === null || options.consent.get({ secret }) === undefined)
          return apiError(req, res, 404, 'no such consent request');
        if (!json) return apiError(req, res, 415, 'the body must be application/json', 'ERR_INVALID_INPUT');
        if (
          typeof body !== 'object' ||
          body === null ||
          Array.isArray(body) ||
          Object.keys(body).some((k) => k !== 'secrets')
        ) {
          return apiError(req, res, 400, 'the body must be {"secrets": {...}}', 'ERR_INVALID_INPUT');
        }
        const result = options.consent.approve({ secret }, (body as { secrets?: unknown }).secrets);
        if (result === null) return apiError(req, res, 404, 'no such consent request');
        if (!result.ok) return sendJson(req, res, 400, { error: result.error });
        return sendJson(req, res, 200, { ok: true });
      }
      default: {
        if (secret === null || !options.consent.deny({ secret }))
          return apiError(req, res, 404, 'no such consent request');
        return sendJson(req, res, 200, { ok: true });
      }
    }
  };

  return (req: Request, res: Response): void => {
    res.setHeader('Content-Security-Policy', PAGE_CSP);
    res.setHeader('X-Content-Type-Options', 'nosniff');
    res.setHeader('Referrer-Policy', 'no-referrer');
    res.setHeader('X-Frame-Options', 'DENY');
    res.setHeader('Cache-Control', 'no-store');
    const host = req.headersDistinct.host;
    const port = req.socket.localPort ?? 0;
    // Exactly one Host header, and one of ours (DNS rebinding).
    if (!host || host.length !== 1 || !options.allowedHosts(port).includes(host[0]!)) {
      return send(req, res, 403, 'text/plain; charset=utf-8', 'Forbidden: Host not allowed\n');
    }
    route(req, res).catch((err: unknown) => {
      const known = err instanceof RouteError;
      if (!known) log.error({ err: err instanceof Error ? err.message : String(err) }, 'HTTP route failed');
      if (res.headersSent) {
        res.destroy();
        return;
      }
      // The rest of a refused body is not read: the connection closes after this answer.
      if (known) res.setHeader('Connection', 'close');
      if (known) apiError(req, res, err.status, err.message, err.code);
      else apiError(req, res, 500, 'internal error', 'ERR_INTERNAL');
    });
  };
}

/** Methods of each consent API route (GET also answers HEAD). */
const API_METHODS: Readonly<Record<string, readonly string[]>> = {
  '/session': ['POST'],
  '/request': ['GET', 'HEAD'],
  '/approve': ['POST'],
  '/deny': ['POST'],
};

/**
 * The path and query of a request target. Absolute-form targets (`http://host/path`) are reduced to
 * their path, as express did; anything else that does not start with `/` (`*`) has no path (null).
 */
function splitTarget(target: string): { pathname: string | null; search: string } {
  let t = target;
  if (!t.startsWith('/')) {
    try {
      const url = new URL(t);
      if (url.protocol !== 'http:' && url.protocol !== 'https:') return { pathname: null, search: '' };
      t = url.pathname + url.search;
    } catch {
      return { pathname: null, search: '' };
    }
  }
  const q = t.indexOf('?');
  return q === -1 ? { pathname: t, search: '' } : { pathname: t.slice(0, q), search: t.slice(q) };
}

/** A path as route names are matched: lower case, one trailing slash dropped (`/Health/` → `/health`). */
function routeName(pathname: string): string {
  const lower = pathname.toLowerCase();
  return lower.length > 1 && lower.endsWith('/') ? lower.slice(0, -1) : lower;
}

/**
 * The file a static URL path names under `root`, or null (404). Refused: encoded slashes or
 * backslashes, backslashes, NUL and other control characters, undecodable escapes, `..` and dotfile
 * segments (before and after decoding), a file reached through a symlink that leaves `root`, and
 * directories (no listing; `/` serves index.html where the mount has one).
 */
async function staticFile(
  root: string,
  rest: string,
  index: boolean,
): Promise<{ path: string; body: Buffer } | null> {
  if (/%2f|%5c|\\/i.test(rest)) return null;
  const segments: string[] = [];
  for (const raw of rest.split('/')) {
    let segment: string;
    try {
      segment = decodeURIComponent(raw);
    } catch {
      return null;
    }
    // Control characters (NUL included) and separators never belong in one of our file names.
    if (hasControlOrSeparator(segment)) return null;
    if (segment === '' || segment === '.') continue;
    if (segment.startsWith('.')) return null;
    segments.push(segment);
  }
  if (rest.endsWith('/')) {
    if (!index) return null;
    segments.push('index.html');
  }
  if (segments.length === 0) return null;
  try {
    const realRoot = await fs.promises.realpath(root);
    const real = await fs.promises.realpath(path.join(realRoot, ...segments));
    if (!real.startsWith(realRoot + path.sep)) return null;
    const handle = await fs.promises.open(real, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
    try {
      if (!(await handle.stat()).isFile()) return null;
      return { path: real, body: await handle.readFile() };
    } finally {
      await handle.close();
    }
  } catch {
    return null;
  }
}

function hasControlOrSeparator(segment: string): boolean {
  for (let i = 0; i < segment.length; i++) {
    const c = segment.charCodeAt(i);
    if (c < 0x20 || c === 0x7f || c === 0x2f || c === 0x5c) return true;
  }
  return false;
}

function contentType(file: string): string {
  return CONTENT_TYPES[path.extname(file).toLowerCase()] ?? 'application/octet-stream';
}

/** Whether the request has a body (a Transfer-Encoding or a Content-Length, even 0), as type-is judged. */
function hasBody(req: Request): boolean {
  return req.headers['transfer-encoding'] !== undefined || req.headers['content-length'] !== undefined;
}

function isJsonType(header: string | undefined): boolean {
  return header?.split(';', 1)[0]!.trim().toLowerCase() === 'application/json';
}

/**
 * The JSON value of the request body: at most TRANSPORT_LIMITS.consentApiBodyBytes (413), UTF-8, no
 * content coding (415), an object or array at the top (400), as express.json({strict: true}) checked.
 */
async function readJsonBody(req: Request): Promise<unknown> {
  const limit = TRANSPORT_LIMITS.consentApiBodyBytes;
  const charset = /;\s*charset\s*=\s*"?([^";\s]+)/i.exec(req.headers['content-type'] ?? '')?.[1];
  if (charset !== undefined && !/^utf-?8$/i.test(charset))
    throw new RouteError(415, 'the request is malformed', 'ERR_INVALID_INPUT');
  const coding = (req.headers['content-encoding'] ?? 'identity').trim().toLowerCase();
  if (coding !== 'identity') throw new RouteError(415, 'the request is malformed', 'ERR_INVALID_INPUT');
  const declared = Number(req.headers['content-length'] ?? 'NaN');
  if (declared > limit) throw new RouteError(413, 'the body is too large', 'ERR_INVALID_INPUT');
  let bytes: Buffer;
  try {
    bytes = await readBoundedBody(req, limit, { overflow: 'stop' });
  } catch (e) {
    if (e instanceof BodyTooLargeError)
      throw new RouteError(413, 'the body is too large', 'ERR_INVALID_INPUT');
    throw new RouteError(400, 'the request is malformed', 'ERR_INVALID_INPUT');
  }
  // Invalid UTF-8 becomes U+FFFD (as iconv did); a byte order mark is dropped.
  const text = new TextDecoder('utf-8').decode(bytes);
  if (text === '') return {};
  if (!/^[ \t\n\r]*[{[]/.test(text))
    throw new RouteError(400, 'the request is malformed', 'ERR_INVALID_INPUT');
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new RouteError(400, 'the request is malformed', 'ERR_INVALID_INPUT');
  }
}

function send(req: Request, res: Response, status: number, type: string, body: Buffer | string): void {
  const bytes = typeof body === 'string' ? Buffer.from(body) : body;
  res.statusCode = status;
  res.setHeader('Content-Type', type);
  res.setHeader('Content-Length', bytes.byteLength);
  res.end(req.method === 'HEAD' ? undefined : bytes);
}

function sendJson(req: Request, res: Response, status: number, value: unknown): void {
  send(req, res, status, JSON_TYPE, JSON.stringify(value));
}

function apiError(req: Request, res: Response, status: number, message: string, code?: string): void {
  sendJson(req, res, status, { error: code === undefined ? { message } : { code, message } });
}

function redirect(req: Request, res: Response, location: string): void {
  res.setHeader('Location', location);
  res.setHeader('Content-Security-Policy', "default-src 'none'");
  send(req, res, 301, 'text/html; charset=utf-8', `<!DOCTYPE html><title>Redirecting</title>\n`);
}
