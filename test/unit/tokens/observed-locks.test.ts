import { describe, expect, it } from 'vitest';
import { DEFAULT_PIN_POLICY } from '../../../src/tokens/pin-policy.js';
import type { KelidError } from '../../../src/model/errors.js';
import { ProvisioningService } from '../../../src/tokens/provisioning-service.js';
import { ObservedLocks, TokenService } from '../../../src/tokens/token-service.js';
import { FakeModuleHost } from '../../helpers/fake-module-host.js';

// A token that never sets PIN flags (tpm2-pkcs11): the lockout is known only from C_Login.
function setup() {
  const fake = new FakeModuleHost('1357', 'SoSecret1', 3);
  fake.unflagged = true;
  let now = 1_000_000;
  const locks = new ObservedLocks(60_000, () => now);
  const tokens = new TokenService({ modules: () => [fake.asModule()] }, { observedLocks: locks });
  const advance = (ms: number) => (now += ms);
  return { fake, tokens, provisioning: new ProvisioningService(tokens, DEFAULT_PIN_POLICY), advance };
}

const login = (tokens: TokenService, id: string, pin: string) =>
  tokens
    .withSession(id, { readWrite: false }, (s) => s.login('user', pin))
    .then(
      () => undefined,
      (e: unknown) => e as KelidError,
    );
const logins = (fake: FakeModuleHost) => fake.calls.filter((c) => c === 'login').length;

describe('TokenSession (a lockout no flag shows, through a fake at the pkcs11/ seam)', () => {
  async function lockedOut() {
    const s = setup();
    const id = (await s.tokens.listTokens())[0]!.tokenId;
    for (let i = 0; i < 3; i++) await login(s.tokens, id, '0000');
    return { ...s, id };
  }

  it('reports the token locked once C_Login said so, and spends no attempt on the right PIN', async () => {
    const { fake, tokens, id } = await lockedOut();
    expect((await tokens.getToken(id)).userPin.locked).toBe(true);
    const before = logins(fake);
    expect((await login(tokens, id, '1357'))?.code).toBe('ERR_PIN_LOCKED');
    expect(logins(fake)).toBe(before);
  });

  it('ends the lock when the SO-PIN sets a new user PIN (unblock)', async () => {
    const { tokens, provisioning, id } = await lockedOut();
    await provisioning.unblockPin(id, 'SoSecret1', '2468');
    expect((await tokens.getToken(id)).userPin.locked).toBe(false);
    expect(await login(tokens, id, '2468')).toBeUndefined();
  });

  it('lets a login try again once the remembered lock has expired', async () => {
    const { fake, tokens, advance, id } = await lockedOut();
    advance(60_001);
    expect((await tokens.getToken(id)).userPin.locked).toBe(false);
    const before = logins(fake);
    expect((await login(tokens, id, '1357'))?.code).toBe('ERR_PIN_LOCKED');
    expect(logins(fake)).toBe(before + 1);
  });
});
