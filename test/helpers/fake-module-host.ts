import { KelidError } from '../../src/model/errors.js';
import { mapPkcs11Error } from '../../src/pkcs11/ckr.js';
import type { HostMethod, HostMethods, ModuleHost, RawSlot } from '../../src/pkcs11/host-protocol.js';
import type { LoadedModule } from '../../src/pkcs11/module-manager.js';
import { CKF } from '../../src/pkcs11/templates.js';

/**
 * A fake PKCS#11 module at the pkcs11/ seam, for what SoftHSM cannot do: PIN retry counters, lockout,
 * "final try", "to be changed" and CKR_PIN_EXPIRED. It speaks the same host protocol as a real
 * module host and fails the way pkcs11js does (plain "CKR_NAME:N" errors mapped by ckr.ts).
 */
export class FakeModuleHost implements ModuleHost {
  readonly moduleId = 'fake';
  calls: HostMethod[] = [];
  userTries: number;
  soTries: number;
  userToBeChanged = false;
  /** C_Login answers CKR_PIN_EXPIRED for the user (some SafeNet tokens do this on first use). */
  userPinExpired = false;
  /** Never set a PIN flag (tpm2-pkcs11): a lockout shows only as CKR_PIN_LOCKED from C_Login. */
  unflagged = false;
  private loggedIn: 'user' | 'so' | undefined;

  constructor(
    private userPin: string,
    private soPin: string,
    readonly maxTries = 3,
  ) {
    this.userTries = maxTries;
    this.soTries = maxTries;
  }

  private flags(): number {
    let f = CKF.TOKEN_INITIALIZED | CKF.USER_PIN_INITIALIZED | CKF.LOGIN_REQUIRED;
    if (this.unflagged) return f;
    const pinFlags = (tries: number, low: number, final: number, locked: number) =>
      tries === 0 ? locked : tries === 1 ? final | low : tries < this.maxTries ? low : 0;
    f |= pinFlags(this.userTries, CKF.USER_PIN_COUNT_LOW, CKF.USER_PIN_FINAL_TRY, CKF.USER_PIN_LOCKED);
    f |= pinFlags(this.soTries, CKF.SO_PIN_COUNT_LOW, CKF.SO_PIN_FINAL_TRY, CKF.SO_PIN_LOCKED);
    if (this.userToBeChanged) f |= CKF.USER_PIN_TO_BE_CHANGED;
    return f;
  }

  slot(): RawSlot {
    return {
      slotId: '01',
      slotDescription: 'Fake reader 0',
      slotManufacturer: 'Kelid tests',
      slotFlags: 1,
      token: {
        label: 'fake token',
        manufacturerId: 'Kelid tests',
        model: 'Lockout',
        serialNumber: 'FAKE0001',
        flags: this.flags(),
        minPinLen: 4,
        maxPinLen: 16,
      },
    };
  }

  private fail(name: string, value: number): never {
    throw mapPkcs11Error(new Error(`${name}:${value}`), 'fake');
  }

  async call<M extends HostMethod>(
    method: M,
    params: HostMethods[M]['params'],
  ): Promise<HostMethods[M]['result']> {
    this.calls.push(method);
    const p = params as Record<string, unknown>;
    const ok = {} as HostMethods[M]['result'];
    switch (method) {
      case 'listSlots':
        return { slots: [this.slot()], reinitialized: false } as HostMethods[M]['result'];
      case 'tokenInfo':
        return this.slot() as HostMethods[M]['result'];
      case 'mechanisms':
        return [] as HostMethods[M]['result'];
      case 'openSession':
        return { sessionId: 1 } as HostMethods[M]['result'];
      case 'closeSession':
        return ok;
      case 'logout':
      case 'logoutClose':
        this.loggedIn = undefined;
        return ok;
      case 'openLogin': {
        // As the module host does it: read the token, refuse by its flags, or log in (same checks).
        const slot = this.slot();
        const flags = slot.token.flags;
        if (
          (flags & (p.requireFlags as number)) !== p.requireFlags ||
          (flags & (p.refuseFlags as number)) !== 0
        )
          return { slot, found: [] } as unknown as HostMethods[M]['result'];
        // One round trip: the login inside is recorded as this openLogin only.
        this.calls.pop();
        try {
          await this.call('login', {
            sessionId: 1,
            userType: p.userType as 'user' | 'so',
            pin: p.pin as string,
          });
        } finally {
          this.calls[this.calls.length - 1] = 'openLogin';
        }
        return {
          slot,
          sessionId: 1,
          found: (p.find as unknown[]).map(() => []),
        } as unknown as HostMethods[M]['result'];
      }
      case 'login': {
        const role = p.userType as 'user' | 'so';
        const tries = role === 'user' ? this.userTries : this.soTries;
        if (tries === 0) this.fail('CKR_PIN_LOCKED', 0xa4);
        const expected = role === 'user' ? this.userPin : this.soPin;
        if (p.pin !== expected) {
          if (role === 'user') this.userTries--;
          else this.soTries--;
          if ((role === 'user' ? this.userTries : this.soTries) === 0) this.fail('CKR_PIN_LOCKED', 0xa4);
          this.fail('CKR_PIN_INCORRECT', 0xa0);
        }
        if (role === 'user') this.userTries = this.maxTries;
        else this.soTries = this.maxTries;
        if (role === 'user' && this.userPinExpired) this.fail('CKR_PIN_EXPIRED', 0xa3);
        this.loggedIn = role;
        return ok;
      }
      case 'setPin':
        if (p.oldPin !== this.userPin) this.fail('CKR_PIN_INCORRECT', 0xa0);
        this.userPin = p.newPin as string;
        this.userToBeChanged = false;
        this.userPinExpired = false;
        return ok;
      case 'initPin':
        if (this.loggedIn !== 'so') this.fail('CKR_USER_NOT_LOGGED_IN', 0x101);
        this.userPin = p.pin as string;
        this.userTries = this.maxTries;
        return ok;
      default:
        throw new KelidError('ERR_INTERNAL', `fake module does not implement ${method}`);
    }
  }

  asModule(): LoadedModule {
    return { spec: { id: 'fake', path: '/fake' }, host: this, isReady: () => true, generation: () => 1 };
  }
}
