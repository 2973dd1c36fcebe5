import { createHash, randomBytes } from 'node:crypto';

// The console tier (PROTOCOL.md section 2): the agent's own pages (the token manager) connect from the
// agent's origin with a secret the agent handed to the page it opened (`kelid ui`). A secret is
// one-time: it authenticates exactly one WebSocket connection, and expires unused after a few minutes.
// Opening the manager again means asking the agent (`kelid ui`) for a new URL.

const DEFAULT_TTL_MS = 5 * 60_000;
const MAX_OUTSTANDING = 16;

export class ConsoleSecrets {
  readonly #ttlMs: number;
  readonly #now: () => number;
  // SHA-256 of the secret → expiry time (monotonic ms).
  readonly #issued = new Map<string, number>();

  constructor(options: { ttlMs?: number; now?: () => number } = {}) {
    this.#ttlMs = options.ttlMs ?? DEFAULT_TTL_MS;
    this.#now = options.now ?? (() => performance.now());
  }

  /** A new secret (base64url, 256 bits). The oldest outstanding one is dropped past a small bound. */
  issue(): string {
    this.#sweep();
    if (this.#issued.size >= MAX_OUTSTANDING) {
      const oldest = this.#issued.keys().next().value;
      if (oldest !== undefined) this.#issued.delete(oldest);
    }
    const secret = randomBytes(32).toString('base64url');
    this.#issued.set(hash(secret), this.#now() + this.#ttlMs);
    return secret;
  }

  /** True once for a valid, unexpired secret; the secret is spent by this call. */
  consume(secret: string): boolean {
    if (typeof secret !== 'string' || secret.length === 0 || secret.length > 128) return false;
    const key = hash(secret);
    const expiry = this.#issued.get(key);
    if (expiry === undefined) return false;
    this.#issued.delete(key);
    return this.#now() < expiry;
  }

  #sweep(): void {
    const now = this.#now();
    for (const [key, expiry] of this.#issued) if (now >= expiry) this.#issued.delete(key);
  }
}

function hash(secret: string): string {
  return createHash('sha256').update(secret, 'utf8').digest('hex');
}
