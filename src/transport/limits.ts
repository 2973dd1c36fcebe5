import type { Tier } from '../model/types.js';

// PROTOCOL.md section 2, rule 3, and DESIGN.md "Bounded everything": the numbers that bound what one
// page (or all pages together) can make the agent hold in memory.

/** Limits applied to every listener (HTTPS and, when enabled, the plain development listener). */
export const TRANSPORT_LIMITS = {
  /** Time allowed for the request headers of an upgrade or HTTP request (slowloris). */
  headersTimeoutMs: 10_000,
  /** Time allowed for a whole HTTP request (the consent API bodies are tiny). */
  requestTimeoutMs: 30_000,
  /** Request header lines accepted by the HTTP parser. */
  maxHeadersCount: 64,
  /** Request header bytes accepted by the HTTP parser. */
  maxHeaderSize: 16 * 1024,
  /** ws: fragments of one message, and buffered chunks (the 2026 tiny-fragment advisory). */
  maxFragments: 1024,
  maxBufferedChunks: 4096,
  /**
   * Largest frame of an `unknown`-tier connection. The tier may call only agent.info,
   * agent.requestAccess and request.cancel: the largest of these (a 500-character reason, every
   * character escaped as a surrogate pair, and a 128-character id) stays under 7 KiB. Bigger frames
   * are refused by ws from their length header (close 1009), before the payload is read.
   */
  unknownMaxMessageBytes: 8 * 1024,
  /** Calls one connection may have in flight at once (one of them may wait for consent). */
  maxInFlightPerConnection: 8,
  /** Bytes queued for sending to one connection before it is considered stuck and closed. */
  maxSendBufferBytes: 64 * 1024 * 1024,
  /** Body of a consent API request (`POST /consent/api/*`). */
  consentApiBodyBytes: 4 * 1024,
  /** Time allowed for the TLS handshake of a new socket (a client that connects and says nothing). */
  tlsHandshakeTimeoutMs: 10_000,
  /** How often the HTTP server looks for requests past their header or request timeout. */
  timeoutCheckIntervalMs: 1_000,
  /**
   * Calls refused by the request rate limit (decaying at the allowed rate) after which the connection
   * is closed with 1008: a page that ignores ERR_RATE_LIMITED and keeps flooding loses the connection.
   */
  rateLimitStrikes: 1_000,
} as const;

export interface RequestRateOptions {
  /** Calls per second a connection may keep up (the bucket's refill rate). */
  perSecond: number;
  /** Calls a connection may make at once (the bucket's size). */
  burst: number;
  /** Refused calls, decaying at `perSecond`, before the connection must be closed. */
  strikes: number;
}

export type RateDecision = { ok: true } | { ok: false; retryAfterMs: number; close: boolean };

/**
 * The request rate limit of one connection: a token bucket of `burst` calls refilled at `perSecond`.
 * Every frame takes a token (malformed ones too: they cost the agent as much to refuse). Refusals are
 * counted in a second bucket draining at the same rate; when it overflows, `close` says so.
 */
export class RequestRateLimiter {
  readonly #perMs: number;
  readonly #burst: number;
  readonly #strikes: number;
  readonly #now: () => number;
  #tokens: number;
  #refused = 0;
  #last: number;

  constructor(options: RequestRateOptions, now: () => number = () => performance.now()) {
    this.#perMs = options.perSecond / 1000;
    this.#burst = options.burst;
    this.#strikes = options.strikes;
    this.#now = now;
    this.#tokens = options.burst;
    this.#last = now();
  }

  take(): RateDecision {
    const now = this.#now();
    const refill = Math.max(0, now - this.#last) * this.#perMs;
    this.#last = now;
    this.#tokens = Math.min(this.#burst, this.#tokens + refill);
    this.#refused = Math.max(0, this.#refused - refill);
    if (this.#tokens >= 1) {
      this.#tokens -= 1;
      return { ok: true };
    }
    this.#refused += 1;
    return {
      ok: false,
      retryAfterMs: Math.max(1, Math.ceil((1 - this.#tokens) / this.#perMs)),
      close: this.#refused > this.#strikes,
    };
  }
}

/**
 * The byte budget shared by every `unknown`-tier connection: a token bucket of `burst` bytes refilled
 * at `perSecond`. Any page can open unknown connections from many subdomains it controls; without a
 * shared budget they make the agent parse as much as they like, slowing the configured and approved
 * sites. A frame is never refused for the budget (it has been read already): the bucket goes into
 * debt and `take` says how long the connection must not be read, so the debt is paid before its next
 * frame, and the kernel's TCP window pushes back on the sender.
 */
export class UnknownByteBudget {
  readonly #perMs: number;
  readonly #burst: number;
  readonly #now: () => number;
  #tokens: number;
  #last: number;

  constructor(options: { perSecond: number; burst: number }, now: () => number = () => performance.now()) {
    this.#perMs = options.perSecond / 1000;
    this.#burst = options.burst;
    this.#now = now;
    this.#tokens = options.burst;
    this.#last = now();
  }

  /** Charge `bytes`; returns the milliseconds to wait before reading the connection again (0: none). */
  take(bytes: number): number {
    const now = this.#now();
    this.#tokens = Math.min(this.#burst, this.#tokens + Math.max(0, now - this.#last) * this.#perMs);
    this.#last = now;
    this.#tokens -= bytes;
    return this.#tokens >= 0 ? 0 : Math.ceil(-this.#tokens / this.#perMs);
  }
}

export interface ConnectionLimitOptions {
  perOrigin: number;
  total: number;
}

/**
 * Counts open WebSocket connections per origin and in all; a slot is held from upgrade to close.
 * Origins of the `unknown` tier together get at most half of `total`: any page can open connections
 * from many subdomains it controls, and must not lock the user's configured or approved sites out.
 */
export class ConnectionLimits {
  readonly #perOrigin: number;
  readonly #total: number;
  readonly #unknownTotal: number;
  readonly #counts = new Map<string, number>();
  #open = 0;
  #unknownOpen = 0;

  constructor(options: ConnectionLimitOptions) {
    this.#perOrigin = options.perOrigin;
    this.#total = options.total;
    this.#unknownTotal = Math.ceil(options.total / 2);
  }

  /**
   * Take a slot for `origin` (of the handshake's `tier`); returns its release function, or null when
   * a limit is reached.
   */
  acquire(origin: string, tier: Tier): (() => void) | null {
    const current = this.#counts.get(origin) ?? 0;
    if (this.#open >= this.#total || current >= this.#perOrigin) return null;
    const unknown = tier === 'unknown';
    if (unknown && this.#unknownOpen >= this.#unknownTotal) return null;
    this.#counts.set(origin, current + 1);
    this.#open += 1;
    if (unknown) this.#unknownOpen += 1;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#open -= 1;
      if (unknown) this.#unknownOpen -= 1;
      const n = (this.#counts.get(origin) ?? 1) - 1;
      if (n <= 0) this.#counts.delete(origin);
      else this.#counts.set(origin, n);
    };
  }

  get open(): number {
    return this.#open;
  }

  countFor(origin: string): number {
    return this.#counts.get(origin) ?? 0;
  }
}
