import { describe, expect, it } from 'vitest';
import { DEFAULT_PIN_POLICY } from '../../../src/tokens/pin-policy.js';
import { isKelidError } from '../../../src/model/errors.js';
import { ProvisioningService } from '../../../src/tokens/provisioning-service.js';
import { soPinState } from '../../../src/tokens/token-info.js';
import { TokenService } from '../../../src/tokens/token-service.js';
import { FakeModuleHost } from '../../helpers/fake-module-host.js';

function setup(maxTries = 3) {
  const fake = new FakeModuleHost('1357', 'SoSecret1', maxTries);
  const tokens = new TokenService({ modules: () => [fake.asModule()] });
  const provisioning = new ProvisioningService(tokens, DEFAULT_PIN_POLICY);
  return { fake, tokens, provisioning };
}

async function tokenId(tokens: TokenService): Promise<string> {
  return (await tokens.listTokens())[0]!.tokenId;
}

async function userLogin(tokens: TokenService, id: string, pin: string): Promise<unknown> {
  return tokens
    .withSession(id, { readWrite: false }, (s) => s.login('user', pin))
    .then(
      () => undefined,
      (e: unknown) => e,
    );
}

const logins = (fake: FakeModuleHost) => fake.calls.filter((c) => c === 'login').length;

describe('TokenSession (PIN flags through a fake at the pkcs11/ seam)', () => {
  describe('#login', () => {
    it('reports count-low and final-try flags in the Token so a prompt can warn', async () => {
      const { fake, tokens } = setup();
      const id = await tokenId(tokens);
      await userLogin(tokens, id, '0000');
      expect((await tokens.getToken(id)).userPin).toEqual({
        countLow: true,
        finalTry: false,
        locked: false,
        toBeChanged: false,
      });
      await userLogin(tokens, id, '0000');
      expect((await tokens.getToken(id)).userPin.finalTry).toBe(true);
      expect(fake.userTries).toBe(1);
    });

    it('carries the flags read after a wrong PIN in ERR_PIN_INCORRECT, and never retries by itself', async () => {
      const { fake, tokens } = setup();
      const id = await tokenId(tokens);
      fake.calls = [];
      const e = await userLogin(tokens, id, '9999');
      expect(isKelidError(e, 'ERR_PIN_INCORRECT')).toBe(true);
      expect((e as { data: { pin: { countLow: boolean } } }).data.pin.countLow).toBe(true);
      expect(logins(fake)).toBe(1);
    });

    it('turns the wrong final try into ERR_PIN_LOCKED with the locked flag', async () => {
      const { fake, tokens } = setup(2);
      const id = await tokenId(tokens);
      await userLogin(tokens, id, '0000');
      const e = await userLogin(tokens, id, '0000');
      expect(isKelidError(e, 'ERR_PIN_LOCKED')).toBe(true);
      expect((e as { data: { pin: { locked: boolean } } }).data.pin.locked).toBe(true);
      expect(fake.userTries).toBe(0);
    });

    it('fails a locked PIN with ERR_PIN_LOCKED without calling C_Login (no attempt is spent)', async () => {
      const { fake, tokens } = setup();
      fake.userTries = 0;
      const id = await tokenId(tokens);
      fake.calls = [];
      const e = await userLogin(tokens, id, '1357');
      expect(isKelidError(e, 'ERR_PIN_LOCKED')).toBe(true);
      expect(logins(fake)).toBe(0);
    });

    it('answers a PIN flagged "to be changed" with ERR_PIN_EXPIRED, and C_Login CKR_PIN_EXPIRED the same way', async () => {
      const { fake, tokens } = setup();
      fake.userToBeChanged = true;
      const id = await tokenId(tokens);
      expect(isKelidError(await userLogin(tokens, id, '1357'), 'ERR_PIN_EXPIRED')).toBe(true);
      fake.userToBeChanged = false;
      fake.userPinExpired = true;
      expect(isKelidError(await userLogin(tokens, id, '1357'), 'ERR_PIN_EXPIRED')).toBe(true);
    });
  });

  describe('ProvisioningService', () => {
    it('lets an expired PIN be changed, after which it works', async () => {
      const { fake, tokens, provisioning } = setup();
      fake.userToBeChanged = true;
      const id = await tokenId(tokens);
      await provisioning.changePin(id, 'user', '1357', '8642');
      expect(fake.userToBeChanged).toBe(false);
      expect(await userLogin(tokens, id, '8642')).toBeUndefined();
    });

    it('unblocks a locked user PIN with the SO-PIN and clears the lock', async () => {
      const { fake, tokens, provisioning } = setup();
      fake.userTries = 0;
      const id = await tokenId(tokens);
      expect((await tokens.getToken(id)).userPin.locked).toBe(true);
      await provisioning.unblockPin(id, 'SoSecret1', '2580');
      expect((await tokens.getToken(id)).userPin.locked).toBe(false);
      expect(await userLogin(tokens, id, '2580')).toBeUndefined();
    });

    it('refuses to unblock when the SO-PIN itself is locked, without trying it', async () => {
      const { fake, tokens, provisioning } = setup();
      fake.soTries = 0;
      const id = await tokenId(tokens);
      fake.calls = [];
      const e = await provisioning.unblockPin(id, 'SoSecret1', '2580').catch((x: unknown) => x);
      expect(isKelidError(e, 'ERR_PIN_LOCKED')).toBe(true);
      expect(logins(fake)).toBe(0);
    });
  });

  it('does not report an uninitialized token as SO-locked', () => {
    expect(soPinState(CKF_UNINITIALIZED_SOFTHSM).locked).toBe(false);
  });
});

// What SoftHSM reports for a fresh slot: SO_PIN_LOCKED | SO_PIN_TO_BE_CHANGED without TOKEN_INITIALIZED.
const CKF_UNINITIALIZED_SOFTHSM = 0x400000 | 0x800000 | 0x1;

describe('TokenService#withLogin (the sign step: session, token check and login in one round trip)', () => {
  async function signStep(tokens: TokenService, id: string, pin: string): Promise<unknown> {
    return tokens
      .withLogin(id, { readWrite: false, role: 'user', pin }, async () => 'signed')
      .catch((e: unknown) => e);
  }
  const opened = (fake: FakeModuleHost) => fake.calls.filter((c) => c === 'openLogin').length;

  it('signs in one openLogin and one logoutClose, without reading the token on its own', async () => {
    const { fake, tokens } = setup();
    const id = await tokenId(tokens);
    fake.calls = [];
    expect(await signStep(tokens, id, '1357')).toBe('signed');
    expect(fake.calls).toEqual(['openLogin', 'logoutClose']);
  });

  it('carries the flags read after a wrong PIN in ERR_PIN_INCORRECT, and never retries by itself', async () => {
    const { fake, tokens } = setup();
    const id = await tokenId(tokens);
    fake.calls = [];
    const e = await signStep(tokens, id, '9999');
    expect(isKelidError(e, 'ERR_PIN_INCORRECT')).toBe(true);
    expect((e as { data: { pin: { countLow: boolean } } }).data.pin.countLow).toBe(true);
    expect(opened(fake)).toBe(1);
    expect(fake.userTries).toBe(2);
  });

  it('turns the wrong final try into ERR_PIN_LOCKED with the locked flag', async () => {
    const { fake, tokens } = setup(2);
    const id = await tokenId(tokens);
    await signStep(tokens, id, '0000');
    const e = await signStep(tokens, id, '0000');
    expect(isKelidError(e, 'ERR_PIN_LOCKED')).toBe(true);
    expect((e as { data: { pin: { locked: boolean } } }).data.pin.locked).toBe(true);
    expect(fake.userTries).toBe(0);
  });

  it('refuses a locked PIN from the flags the host read, without a login', async () => {
    const { fake, tokens } = setup();
    const id = await tokenId(tokens);
    fake.userTries = 0;
    fake.calls = [];
    const e = await signStep(tokens, id, '1357');
    expect(isKelidError(e, 'ERR_PIN_LOCKED')).toBe(true);
    expect(fake.calls).toEqual(['openLogin']);
  });

  it('logs out again and fails with ERR_PIN_EXPIRED when the token wants a new PIN first', async () => {
    const { fake, tokens } = setup();
    const id = await tokenId(tokens);
    fake.userToBeChanged = true;
    fake.calls = [];
    const e = await signStep(tokens, id, '1357');
    expect(isKelidError(e, 'ERR_PIN_EXPIRED')).toBe(true);
    expect(fake.calls).toEqual(['openLogin', 'logoutClose']);
  });
});
