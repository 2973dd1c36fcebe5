import { KelidError } from '../model/errors.js';
import type { Token } from '../model/types.js';
import type { TokenService } from '../tokens/token-service.js';

/**
 * Pick a token by tokenId, label or serial number; without a selector, the only token that fits
 * (`initialized` true for most commands, false for `kelid init`).
 */
export async function selectToken(
  tokens: TokenService,
  selector: string | undefined,
  initialized = true,
): Promise<Token> {
  const all = await tokens.listTokens({ reinitialize: true });
  if (selector) {
    const hits = all.filter(
      (t) =>
        t.tokenId === selector || t.serialNumber === selector || (t.label !== '' && t.label === selector),
    );
    if (hits.length === 1) return hits[0]!;
    if (hits.length > 1)
      throw new KelidError(
        'ERR_INVALID_INPUT',
        `"${selector}" matches ${hits.length} tokens: use the tokenId`,
      );
    throw new KelidError('ERR_TOKEN_NOT_FOUND', `no token matches "${selector}" (see: kelid tokens)`);
  }
  const fitting = all.filter((t) => t.initialized === initialized);
  if (fitting.length === 1) return fitting[0]!;
  throw new KelidError(
    'ERR_INVALID_INPUT',
    fitting.length === 0
      ? `no ${initialized ? 'initialized' : 'uninitialized'} token found (see: kelid tokens)`
      : `${fitting.length} tokens fit: choose one with --token <tokenId|label|serial>`,
  );
}
