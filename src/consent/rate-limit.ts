import { KelidError } from '../model/errors.js';

// Bounds how often one origin may put a consent prompt in front of the user (DESIGN.md "Bounded
// everything"): at most `perOriginPerMinute` unanswered or refused prompts in any sliding 60 s window
// (a prompt the user approved stops counting: a citizen signing six documents in a row is not a
// flood), and none at all for a while after the user denied one. That cooldown grows with the denials
// of the last hour (default 1 min after the first, 10 min after the second and later): one accidental
// "No" costs a minute, a site that keeps asking is kept away. The default clock is monotonic, so
// changing the system time neither lifts a cooldown nor extends it.

export interface PromptLimiterOptions {
  perOriginPerMinute?: number;
  /**
   * Cooldown after the 1st, 2nd, … denial within an hour (the last one repeats); `[]` for none (the
   * RA tier, whose origins the administrator configured). Default `[60 000, 600 000]`.
   */
  denyCooldownsMs?: readonly number[];
  /** Milliseconds from any fixed point; defaults to `performance.now()`. */
  now?: () => number;
}

const WINDOW_MS = 60_000;
const DENIAL_MEMORY_MS = 60 * 60_000;
const DEFAULT_COOLDOWNS_MS: readonly number[] = [60_000, 10 * 60_000];
// Past this many tracked origins, forget the ones with nothing left to remember.
const SWEEP_THRESHOLD = 1024;

interface OriginState {
  /** Times of the prompts still inside the window, oldest first. */
  prompts: number[];
  /** Times of the denials of the last hour, oldest first. */
  denials: number[];
  deniedUntil: number;
}

export class PromptLimiter {
  readonly #perMinute: number;
  readonly #cooldownsMs: readonly number[];
  readonly #now: () => number;
  readonly #origins = new Map<string, OriginState>();

  constructor({
    perOriginPerMinute = 5,
    denyCooldownsMs = DEFAULT_COOLDOWNS_MS,
    now,
  }: PromptLimiterOptions = {}) {
    if (!Number.isSafeInteger(perOriginPerMinute) || perOriginPerMinute < 1) {
      throw new TypeError('perOriginPerMinute must be a positive integer');
    }
    if (!denyCooldownsMs.every((ms) => Number.isFinite(ms) && ms >= 0)) {
      throw new TypeError('denyCooldownsMs must hold non-negative numbers');
    }
    this.#perMinute = perOriginPerMinute;
    this.#cooldownsMs = [...denyCooldownsMs];
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

  /** Count a prompt; call the returned function when the user approves it, and it stops counting. */
  recordPrompt(origin: string): () => void {
    const now = this.#now();
    const state = this.#state(origin);
    prune(state, now);
    state.prompts.push(now);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      // Still in the window (else it no longer counts anyway): drop one entry of that time.
      const at = state.prompts.indexOf(now);
      if (at >= 0) state.prompts.splice(at, 1);
    };
  }

  recordDenial(origin: string): void {
    const now = this.#now();
    const state = this.#state(origin);
    pruneDenials(state, now);
    state.denials.push(now);
    if (this.#cooldownsMs.length === 0) return;
    const cooldown = this.#cooldownsMs[Math.min(state.denials.length, this.#cooldownsMs.length) - 1]!;
    state.deniedUntil = Math.max(state.deniedUntil, now + cooldown);
  }

  #state(origin: string): OriginState {
    let state = this.#origins.get(origin);
    if (state === undefined) {
      if (this.#origins.size >= SWEEP_THRESHOLD) this.#sweep();
      state = { prompts: [], denials: [], deniedUntil: -Infinity };
      this.#origins.set(origin, state);
    }
    return state;
  }

  #sweep(): void {
    const now = this.#now();
    for (const [origin, state] of this.#origins) {
      prune(state, now);
      pruneDenials(state, now);
      // The denials of the last hour are kept: forgetting them would reset the escalation.
      if (state.prompts.length === 0 && state.denials.length === 0 && now >= state.deniedUntil) {
        this.#origins.delete(origin);
      }
    }
  }
}

function prune(state: OriginState, now: number): void {
  dropUpTo(state.prompts, now - WINDOW_MS);
}

function pruneDenials(state: OriginState, now: number): void {
  dropUpTo(state.denials, now - DENIAL_MEMORY_MS);
}

/** Drop the times at or before `cutoff` from the front of `times` (oldest first). */
function dropUpTo(times: number[], cutoff: number): void {
  let expired = 0;
  while (expired < times.length && times[expired] <= cutoff) expired += 1;
  if (expired > 0) times.splice(0, expired);
}
