import * as fs from 'node:fs';
import { sep } from 'node:path';
import express from 'express';
import type { NextFunction, Request, Response } from 'express';
import type { ConsentBroker } from '../consent/consent-broker.js';
import { silentLogger } from '../log.js';
import { packagePath } from '../package-files.js';
import type { Logger } from '../log.js';
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

export function defaultUiDir(): string {
  return packagePath('src', 'ui') + sep;
}

export function defaultSdkFile(): string {
  return packagePath('dist', 'client', 'kelid.js');
}

export function createHttpApp(options: HttpRoutesOptions): express.Express {
  const log = options.logger ?? silentLogger;
  const uiDir = options.uiDir ?? defaultUiDir();
  const sdkFile = options.sdkFile ?? defaultSdkFile();
  const app = express();
  app.disable('x-powered-by');
  app.disable('etag');
  app.set('query parser', 'simple');

  app.use((req: Request, res: Response, next: NextFunction) => {
    res.setHeader('Content-Security-Policy', PAGE_CSP);
    res.setHeader('X-Content-Type-Options', 'nosniff');
    res.setHeader('Referrer-Policy', 'no-referrer');
    res.setHeader('X-Frame-Options', 'DENY');
    res.setHeader('Cache-Control', 'no-store');
    const host = req.headersDistinct.host;
    const port = req.socket.localPort ?? 0;
    if (!host || host.length !== 1 || !options.allowedHosts(port).includes(host[0])) {
      res.status(403).type('text/plain').send('Forbidden: Host not allowed\n');
      return;
    }
    next();
  });

  app.get('/health', (_req, res) => {
    res.json({ status: 'ok' });
  });

  app.get('/v1', (_req, res) => {
    res.status(426).setHeader('Upgrade', 'websocket').type('text/plain').send('Upgrade Required\n');
  });

  app.get('/sdk/kelid.js', (_req, res) => {
    // The SDK is an ES module: browsers fetch `import … from 'https://127.0.0.1:PORT/sdk/kelid.js'`
    // in CORS mode, so this one public, static, credential-free file is readable by any origin. It is
    // the only response with a CORS header; every other route (the API, the consent backend) has none.
    res.setHeader('Access-Control-Allow-Origin', '*');
    res.setHeader('Cross-Origin-Resource-Policy', 'cross-origin');
    res.type('text/javascript; charset=utf-8');
    let body: Buffer | string;
    try {
      body = fs.readFileSync(sdkFile);
    } catch {
      body = SDK_STUB;
    }
    res.send(body);
  });

  const api = express.Router();
  api.use((req: Request, res: Response, next: NextFunction) => {
    res.setHeader('Cross-Origin-Resource-Policy', 'same-origin');
    // Only the consent page itself (same origin) may call: a script elsewhere cannot send the bearer
    // header cross-origin anyway; this also refuses forms and navigations from other sites.
    const origin = req.headers.origin;
    if (origin !== undefined && origin !== options.consoleOrigin())
      return apiError(res, 403, 'cross-origin request');
    const site = req.headers['sec-fetch-site'];
    if (site !== undefined && site !== 'same-origin' && site !== 'none')
      return apiError(res, 403, 'cross-site request');
    next();
  });
  api.use(
    express.json({ limit: TRANSPORT_LIMITS.consentApiBodyBytes, type: 'application/json', strict: true }),
  );

  const secretOf = (req: Request): string | null => BEARER.exec(req.headers.authorization ?? '')?.[1] ?? null;

  // POST, not GET: nothing prefetches or preloads it, so only the page's own script spends the secret.
  api.post('/session', (req, res) => {
    const secret = secretOf(req);
    const opened = secret === null ? null : options.consent.openPage(secret);
    if (opened === null) return apiError(res, 404, 'no such consent request');
    if (opened === 'spent')
      return apiError(res, 409, 'this consent page was already opened', 'ERR_FORBIDDEN');
    res.json(opened);
  });

  api.get('/request', (req, res) => {
    const secret = secretOf(req);
    const view = secret === null ? undefined : options.consent.get({ secret });
    if (!view) return apiError(res, 404, 'no such consent request');
    res.json(view);
  });

  api.post('/approve', (req, res) => {
    const secret = secretOf(req);
    if (secret === null || options.consent.get({ secret }) === undefined)
      return apiError(res, 404, 'no such consent request');
    if (!req.is('application/json'))
      return apiError(res, 415, 'the body must be application/json', 'ERR_INVALID_INPUT');
    const body: unknown = req.body;
    if (
      typeof body !== 'object' ||
      body === null ||
      Array.isArray(body) ||
      Object.keys(body).some((k) => k !== 'secrets')
    ) {
      return apiError(res, 400, 'the body must be {"secrets": {...}}', 'ERR_INVALID_INPUT');
    }
    const result = options.consent.approve({ secret }, (body as { secrets?: unknown }).secrets);
    if (result === null) return apiError(res, 404, 'no such consent request');
    if (!result.ok) {
      res.status(400).json({ error: result.error });
      return;
    }
    res.json({ ok: true });
  });

  api.post('/deny', (req, res) => {
    const secret = secretOf(req);
    if (secret === null || !options.consent.deny({ secret }))
      return apiError(res, 404, 'no such consent request');
    res.json({ ok: true });
  });

  app.use('/consent/api', api);

  const statics = { index: 'index.html', dotfiles: 'ignore', redirect: true, fallthrough: true } as const;
  app.use('/consent', express.static(`${uiDir}/consent`, statics));
  app.use('/manager', express.static(`${uiDir}/manager`, statics));
  // Stylesheet and icon both pages share (same CSP and headers as the pages).
  app.use('/shared', express.static(`${uiDir}/shared`, { ...statics, index: false }));

  app.use((_req, res) => {
    apiError(res, 404, 'not found');
  });

  app.use((err: unknown, _req: Request, res: Response, _next: NextFunction) => {
    const status =
      typeof (err as { status?: unknown }).status === 'number' ? (err as { status: number }).status : 500;
    if (status >= 500)
      log.error({ err: err instanceof Error ? err.message : String(err) }, 'HTTP route failed');
    if (res.headersSent) return;
    const message =
      status === 413
        ? 'the body is too large'
        : status >= 400 && status < 500
          ? 'the request is malformed'
          : 'internal error';
    apiError(
      res,
      status >= 400 && status < 600 ? status : 500,
      message,
      status < 500 ? 'ERR_INVALID_INPUT' : 'ERR_INTERNAL',
    );
  });
  return app;
}

function apiError(res: Response, status: number, message: string, code?: string): void {
  res.status(status).json({ error: code === undefined ? { message } : { code, message } });
}
