import { EventEmitter } from 'node:events';
import { isKelidError } from '../model/errors.js';
import { silentLogger } from '../log.js';
import type { Logger } from '../log.js';
import type { Token } from '../model/types.js';
import type { LoadedModules, TokenService } from './token-service.js';

export interface TokensChanged {
  added: Token[];
  removed: string[];
}

/**
 * Hot-plug: polls every module (about once a second) and reports tokens that appeared or went away,
 * diffed by tokenId (manufacturer, model, serial — never slot ids). Modules that only see new tokens
 * after re-initialisation are re-initialized by their host while nothing is in flight.
 *
 * Emits `changed` ({@link TokensChanged}).
 */
export class TokenWatcher extends EventEmitter {
  private known = new Map<string, Token>();
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  private readonly intervalMs: number;
  private readonly log: Logger;

  constructor(
    private readonly service: TokenService,
    private readonly source: LoadedModules,
    options: { intervalMs?: number; logger?: Logger } = {},
  ) {
    super();
    this.intervalMs = options.intervalMs ?? 1000;
    this.log = options.logger ?? silentLogger;
  }

  /** First scan (no events), then poll until {@link stop}. */
  async start(): Promise<void> {
    this.running = true;
    this.known = await this.scan(new Map());
    this.schedule();
  }

  stop(): void {
    this.running = false;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  current(): Token[] {
    return [...this.known.values()];
  }

  private schedule(): void {
    if (!this.running) return;
    this.timer = setTimeout(() => void this.tick(), this.intervalMs);
    this.timer.unref();
  }

  /** One poll now (also used by tests to avoid waiting). */
  async tick(): Promise<TokensChanged> {
    if (this.timer) clearTimeout(this.timer);
    const previous = this.known;
    const next = await this.scan(previous);
    this.known = next;
    const added = [...next.values()].filter((t) => !previous.has(t.tokenId));
    const removed = [...previous.keys()].filter((id) => !next.has(id));
    const change = { added, removed };
    if (added.length > 0 || removed.length > 0) this.emit('changed', change);
    this.schedule();
    return change;
  }

  private async scan(previous: Map<string, Token>): Promise<Map<string, Token>> {
    const next = new Map<string, Token>();
    await Promise.all(
      this.source.modules().map(async (m) => {
        const keepPrevious = () => {
          for (const t of previous.values()) if (t.moduleId === m.spec.id) next.set(t.tokenId, t);
        };
        if (!m.isReady()) {
          // A host restarting after a crash is not a token removal.
          keepPrevious();
          return;
        }
        try {
          const locations = await this.service.scanModule(m, m.spec.reinitializeToDetectTokens === true);
          for (const l of locations) next.set(l.token.tokenId, l.token);
        } catch (e) {
          this.log.debug(
            { module: m.spec.id, err: isKelidError(e) ? e.code : String(e) },
            'token scan failed',
          );
          keepPrevious();
        }
      }),
    );
    return next;
  }
}
