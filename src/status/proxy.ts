// Which forward proxy an outgoing fetch (OCSP, CRL, caIssuers, TSA) goes through: the config key
// `proxy` when set, else the environment as curl and most tools read it (`https_proxy`/`HTTPS_PROXY`
// for https URLs, `http_proxy`/`HTTP_PROXY` for http ones), minus the hosts of `NO_PROXY`. Banks and
// ministries reach the outside only through such a proxy.

/**
 * Config `proxy`: `null` (default) reads the environment; a URL (`http://proxy.example:3128`, optionally
 * with `user:password@`) is used for every fetch; `"direct"` never uses a proxy, whatever the
 * environment says. `NO_PROXY` applies in the first two cases.
 */
export type ProxySetting = string | null;

export const DIRECT = 'direct';

function envValue(env: NodeJS.ProcessEnv, name: string): string | undefined {
  const value = env[name.toLowerCase()] ?? env[name.toUpperCase()];
  return value === undefined || value.trim() === '' ? undefined : value.trim();
}

/** Parse a proxy URL; a bare `host:port` means http. Throws TypeError for anything else. */
export function parseProxyUrl(text: string): URL {
  const url = new URL(/^[a-z][a-z0-9+.-]*:\/\//i.test(text) ? text : `http://${text}`);
  if (url.protocol !== 'http:')
    throw new TypeError(`proxy ${url.protocol} URLs are not supported (http only)`);
  if (url.hostname === '') throw new TypeError('proxy URL without a host');
  return url;
}

function defaultPort(url: URL): string {
  return url.port !== '' ? url.port : url.protocol === 'https:' ? '443' : '80';
}

/**
 * Whether `target` is exempt from the proxy by a NO_PROXY list: comma- or space-separated entries,
 * `*` for every host, a host name matching itself and its subdomains (`example.ir`, `.example.ir`,
 * `*.example.ir`), an IP address matching itself, each optionally with `:port`.
 */
export function bypassesProxy(target: URL, noProxy: string | undefined): boolean {
  if (noProxy === undefined) return false;
  const host = target.hostname.toLowerCase().replace(/^\[|\]$/g, '');
  const port = defaultPort(target);
  for (const raw of noProxy.split(/[\s,]+/)) {
    let entry = raw.trim().toLowerCase();
    if (entry === '') continue;
    if (entry === '*') return true;
    let entryPort: string | undefined;
    const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(entry);
    if (bracketed) {
      entry = bracketed[1]!;
      entryPort = bracketed[2];
    } else if ((entry.match(/:/g) ?? []).length === 1) {
      [entry, entryPort] = entry.split(':') as [string, string];
    }
    if (entryPort !== undefined && entryPort !== port) continue;
    entry = entry.replace(/^\*?\./, '');
    if (host === entry || host.endsWith(`.${entry}`)) return true;
  }
  return false;
}

/** The proxy for a request to `target`, or undefined to connect directly. */
export function proxyFor(
  target: URL,
  setting: ProxySetting | undefined,
  env: NodeJS.ProcessEnv = process.env,
): URL | undefined {
  if (setting === DIRECT) return undefined;
  const chosen = setting ?? envValue(env, target.protocol === 'https:' ? 'https_proxy' : 'http_proxy');
  if (chosen === undefined) return undefined;
  if (bypassesProxy(target, envValue(env, 'no_proxy'))) return undefined;
  return parseProxyUrl(chosen);
}
