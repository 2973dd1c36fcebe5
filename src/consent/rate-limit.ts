import { KelidError } from '../errors.js';

// Bounds how often one origin may put a consent prompt in front of the user (DESIGN.md "Bounded
// everything"): at most `perOriginPerMinute` prompts in any sliding 60 s window, and none at all for
// `denyCooldownMs` after the user denied one. The default clock is monotonic, so changing the system
// time neither lifts a cooldown nor extends it.

export interface PromptLimiterOptions {
  perOriginPerMinute?: number;
  denyCooldownMs?: number;
  /** Milliseconds from any fixed point; defaults to `performance.now()`. */
  now?: () => number;
}

const WINDOW_MS = 60_000;
// Past this many tracked origins, forget the ones with nothing left to remember.
const SWEEP_THRESHOLD = 1024;

interface OriginState {
  /** Times of the prompts still inside the window, oldest first. */
  prompts: number[];
  deniedUntil: number;
}

export class PromptLimiter {
  readonly #perMinute: number;
  readonly #cooldownMs: number;
  readonly #now: () => number;
  readonly #origins = new Map<string, OriginState>();

  constructor({ perOriginPerMinute = 5, denyCooldownMs = 10 * 60 * 1000, now }: PromptLimiterOptions = {}) {
    if (!Number.isSafeInteger(perOriginPerMinute) || perOriginPerMinute < 1) {
      throw new TypeError('perOriginPerMinute must be a positive integer');
    }
    if (!Number.isFinite(denyCooldownMs) || denyCooldownMs < 0) {
      throw new TypeError('denyCooldownMs must be a non-negative number');
    }
    this.#perMinute = perOriginPerMinute;
    this.#cooldownMs = denyCooldownMs;
    this.#now = now ?? (() => performance.now());
  }

  /**
   * Throws ERR_ORIGIN_DENIED while the origin is cooling down after a denial, else ERR_RATE_LIMITED
   * when it already had `perOriginPerMinute` prompts in the last minute. `data.retryAfterMs` says when
   * asking again can succeed.
   */
  check(origin: string): void {
    const now = this.#now();
    const state = this.#origins.get(origin);
    if (state === undefined) return;
    if (now < state.deniedUntil) {
      throw new KelidError(
        'ERR_ORIGIN_DENIED',
        'the user denied this site recently; it may not ask again yet',
        {
          data: { retryAfterMs: Math.ceil(state.deniedUntil - now) },
        },
      );
    }
    prune(state, now);
    if (state.prompts.length >= this.#perMinute) {
      throw new KelidError('ERR_RATE_LIMITED', 'too many consent prompts from this site; try again later', {
        data: { retryAfterMs: Math.ceil(state.prompts[0] + WINDOW_MS - now) },
      });
    }
  }

  recordPrompt(origin: string): void {
    const now = this.#now();
    const state = this.#state(origin);
    prune(state, now);
    state.prompts.push(now);
  }

  recordDenial(origin: string): void {
    this.#state(origin).deniedUntil = this.#now() + this.#cooldownMs;
  }

  #state(origin: string): OriginState {
    let state = this.#origins.get(origin);
    if (state === undefined) {
      if (this.#origins.size >= SWEEP_THRESHOLD) this.#sweep();
      state = { prompts: [], deniedUntil: -Infinity };
      this.#origins.set(origin, state);
    }
    return state;
  }

  #sweep(): void {
    const now = this.#now();
    for (const [origin, state] of this.#origins) {
      prune(state, now);
      if (state.prompts.length === 0 && now >= state.deniedUntil) this.#origins.delete(origin);
    }
  }
}

function prune(state: OriginState, now: number): void {
  let expired = 0;
  while (expired < state.prompts.length && state.prompts[expired] <= now - WINDOW_MS) expired += 1;
  if (expired > 0) state.prompts.splice(0, expired);
}
