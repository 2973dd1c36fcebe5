#!/usr/bin/env node
// Kelid demo servers, one process, three origins:
//   CA            http://127.0.0.1:<ca-port>   OCSP responder, CRL, CA certificates (demo/ca.mjs)
//   RA console    http://localhost:<ra-port>   demo/ra-console (an `ra` origin in the demo config)
//                                              + POST /api/issue, /api/revoke (the RA's CA back end)
//   Signing site  http://localhost:<site-port> demo/signing-site (asks for the `site` tier)
// The pages are served over plain http from localhost: Chromium and Firefox treat http://localhost as
// a secure context, and the agent accepts these origins because the demo config lists them in
// `devOrigins` (and the RA console in `raOrigins`). A real deployment serves its pages over https.
//
//   node demo/server.mjs [--dir .kelid-demo] [--ca-port 17480] [--ra-port 17481] [--site-port 17482]
//                        [--agent-url wss://127.0.0.1:17443/v1 | --agent-state-dir <dir>]
// Prints the URLs, then one machine-readable line: `KELID_DEMO {"ca":…,"ra":…,"site":…}`.
import { createServer } from 'node:http';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { dirname, extname, join, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { DemoCa, DemoCaError } from './ca.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '..');
const MAX_BODY = 256 * 1024;

const TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.map': 'application/json',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
};

/**
 * Start the demo servers.
 * @param {{ dir: string, caPort?: number, raPort?: number, sitePort?: number,
 *           agentUrl?: string | (() => string), agentStateDir?: string }} options
 *   agentUrl: the agent's WebSocket URL (or a function giving it when a page asks); otherwise read
 *   from `<agentStateDir>/agent.json`, else the default wss://127.0.0.1:17443/v1.
 */
export async function startDemo(options) {
  const caPort = options.caPort ?? 17480;
  const caListener = await listen(caPort);
  const caUrl = `http://127.0.0.1:${caListener.port}`;
  const ca = new DemoCa({ dir: join(options.dir, 'ca'), baseUrl: caUrl });
  await ca.init();
  caListener.handle(caHandler(ca));

  const raListener = await listen(options.raPort ?? 17481);
  const siteListener = await listen(options.sitePort ?? 17482);
  const raUrl = `http://localhost:${raListener.port}`;
  const siteUrl = `http://localhost:${siteListener.port}`;

  const agentUrl = () => {
    if (typeof options.agentUrl === 'function') return options.agentUrl();
    if (options.agentUrl) return options.agentUrl;
    if (options.agentStateDir) {
      try {
        const info = JSON.parse(readFileSync(join(options.agentStateDir, 'agent.json'), 'utf8'));
        if (Number.isInteger(info.port)) return `wss://127.0.0.1:${info.port}/v1`;
      } catch {
        // the agent has not written agent.json yet
      }
    }
    return 'wss://127.0.0.1:17443/v1';
  };
  const pageConfig = () => ({ agentUrl: agentUrl(), caUrl, raUrl, siteUrl });

  raListener.handle(
    pageHandler(join(here, 'ra-console'), pageConfig, async (req, res, path) => {
      if (req.method === 'POST' && path === '/api/issue') {
        const body = await readJson(req);
        sendJson(res, 200, await ca.issue(body.csr));
        return true;
      }
      if (req.method === 'POST' && path === '/api/revoke') {
        const body = await readJson(req);
        sendJson(res, 200, await ca.revoke(body.certificate));
        return true;
      }
      return false;
    }),
  );
  siteListener.handle(
    pageHandler(join(here, 'signing-site'), pageConfig, async (req, res, path) => {
      // The site's trust list: the demo root, for verifying signatures in the page.
      if (req.method === 'GET' && path === '/api/trust') {
        sendJson(res, 200, { roots: [ca.rootPem] });
        return true;
      }
      return false;
    }),
  );

  return {
    ca,
    urls: { ca: caUrl, ra: raUrl, site: siteUrl },
    async close() {
      await Promise.all([caListener.close(), raListener.close(), siteListener.close()]);
    },
  };
}

// One port on 127.0.0.1 and, when the machine has IPv6, the same port on ::1 (browsers may try
// either address for `localhost`).
async function listen(port) {
  let handler = (_req, res) => {
    res.writeHead(503).end();
  };
  const dispatch = (req, res) => handler(req, res);
  const v4 = createServer(dispatch);
  await new Promise((ok, fail) => {
    v4.once('error', fail);
    v4.listen(port, '127.0.0.1', ok);
  });
  const actual = v4.address().port;
  const servers = [v4];
  const v6 = createServer(dispatch);
  await new Promise((ok) => {
    v6.once('error', () => ok());
    v6.listen(actual, '::1', () => {
      servers.push(v6);
      ok();
    });
  });
  for (const s of servers) {
    s.headersTimeout = 10_000;
    s.requestTimeout = 30_000;
  }
  return {
    port: actual,
    handle(h) {
      handler = (req, res) => {
        const allowed = [`localhost:${actual}`, `127.0.0.1:${actual}`, `[::1]:${actual}`];
        if (!allowed.includes(req.headers.host ?? '')) {
          res.writeHead(421, { 'Content-Type': 'text/plain' }).end('Misdirected request\n');
          return;
        }
        Promise.resolve(h(req, res)).catch((e) => fail(res, e));
      };
    },
    close: () =>
      Promise.all(
        servers.map(
          (s) =>
            new Promise((ok) => {
              s.close(() => ok());
              s.closeAllConnections();
            }),
        ),
      ),
  };
}

function caHandler(ca) {
  return async (req, res) => {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    if (req.method === 'POST' && path === '/ocsp') {
      const der = await readBody(req);
      send(res, 200, 'application/ocsp-response', await ca.ocsp(der));
      return;
    }
    if (req.method === 'GET' && path.startsWith('/ocsp/')) {
      // RFC 6960 appendix A.1: GET {url}/{url-encoding of base-64 encoding of the DER request}
      const der = Buffer.from(decodeURIComponent(path.slice('/ocsp/'.length)), 'base64');
      send(res, 200, 'application/ocsp-response', await ca.ocsp(der));
      return;
    }
    if (req.method === 'GET' && path === '/crl/issuing-ca.crl') {
      send(res, 200, 'application/pkix-crl', await ca.crlDer());
      return;
    }
    if (req.method === 'GET' && path === '/issuing-ca.cer') {
      send(res, 200, 'application/pkix-cert', ca.issuingDer());
      return;
    }
    if (req.method === 'GET' && path === '/root.pem') {
      send(res, 200, 'application/x-pem-file', ca.rootPem);
      return;
    }
    if (req.method === 'GET' && path === '/') {
      send(res, 200, 'text/plain; charset=utf-8', `Kelid demo CA\nOCSP: ${ca.ocspUrl}\nCRL: ${ca.crlUrl}\n`);
      return;
    }
    send(res, 404, 'text/plain', 'not found\n');
  };
}

function pageHandler(pageDir, pageConfig, api) {
  const shared = join(here, 'shared');
  const sdk = join(root, 'dist', 'client');
  return async (req, res) => {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    if (path.startsWith('/api/')) {
      if (!(await api(req, res, path))) send(res, 404, 'application/json', '{"error":"not found"}');
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      send(res, 405, 'text/plain', 'method not allowed\n');
      return;
    }
    if (path === '/config.json') {
      sendJson(res, 200, pageConfig());
      return;
    }
    if (path === '/kelid.js' || path === '/kelid.js.map') {
      const file = join(sdk, path.slice(1));
      if (!existsSync(file)) {
        send(res, 503, 'text/plain', 'The Kelid SDK is not built: run `npm run build`.\n');
        return;
      }
      sendFile(res, file);
      return;
    }
    if (path.startsWith('/shared/')) {
      serveStatic(res, shared, path.slice('/shared'.length));
      return;
    }
    serveStatic(res, pageDir, path === '/' ? '/index.html' : path);
  };
}

function serveStatic(res, base, path) {
  const file = resolve(base, `.${decodeURIComponent(path)}`);
  if (!file.startsWith(base + sep) || !existsSync(file) || !statSync(file).isFile()) {
    send(res, 404, 'text/plain', 'not found\n');
    return;
  }
  sendFile(res, file);
}

function sendFile(res, file) {
  send(res, 200, TYPES[extname(file)] ?? 'application/octet-stream', readFileSync(file));
}

// Pages may talk to this origin and to the agent on 127.0.0.1 only.
const PAGE_CSP =
  "default-src 'self'; connect-src 'self' wss://127.0.0.1:* wss://localhost:*; img-src 'self' data: blob:; " +
  "frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

function send(res, status, type, body) {
  res.writeHead(status, {
    'Content-Type': type,
    'Cache-Control': 'no-store',
    'X-Content-Type-Options': 'nosniff',
    'Content-Security-Policy': PAGE_CSP,
    'Referrer-Policy': 'no-referrer',
  });
  res.end(body);
}

function sendJson(res, status, value) {
  send(res, status, 'application/json; charset=utf-8', JSON.stringify(value));
}

function fail(res, e) {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  if (e instanceof DemoCaError) sendJson(res, e.status, { error: e.message });
  else if (e instanceof BodyError) sendJson(res, 400, { error: e.message });
  else {
    console.error('demo server:', e instanceof Error ? e.message : e);
    sendJson(res, 500, { error: 'internal error' });
  }
}

class BodyError extends Error {}

async function readBody(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > MAX_BODY) throw new BodyError('the request body is too large');
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

async function readJson(req) {
  const type = req.headers['content-type'] ?? '';
  if (!type.startsWith('application/json')) throw new BodyError('the body must be application/json');
  try {
    return JSON.parse((await readBody(req)).toString('utf8'));
  } catch (e) {
    if (e instanceof BodyError) throw e;
    throw new BodyError('the body is not valid JSON');
  }
}

async function main() {
  const { values } = parseArgs({
    options: {
      dir: { type: 'string', default: join(root, '.kelid-demo') },
      'ca-port': { type: 'string', default: '17480' },
      'ra-port': { type: 'string', default: '17481' },
      'site-port': { type: 'string', default: '17482' },
      'agent-url': { type: 'string' },
      'agent-state-dir': { type: 'string' },
    },
  });
  const demo = await startDemo({
    dir: resolve(values.dir),
    caPort: Number(values['ca-port']),
    raPort: Number(values['ra-port']),
    sitePort: Number(values['site-port']),
    agentUrl: values['agent-url'],
    agentStateDir: values['agent-state-dir'] ? resolve(values['agent-state-dir']) : undefined,
  });
  const { ca, ra, site } = demo.urls;
  process.stdout.write(
    `Demo CA (OCSP, CRL):   ${ca}\nDemo RA console:       ${ra}/\nDemo signing site:     ${site}/\n` +
      `KELID_DEMO ${JSON.stringify(demo.urls)}\n`,
  );
  const stop = () => {
    demo.close().then(() => process.exit(0));
    setTimeout(() => process.exit(0), 2000).unref();
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((e) => {
    console.error(`demo server: ${e instanceof Error ? e.message : e}`);
    process.exit(1);
  });
}
