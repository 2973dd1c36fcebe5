// The baseline of every bench figure: the same SoftHSM token driven by raw pkcs11js in the bench
// process, with the same mechanisms and templates Kelid uses, and nothing else (no IPC, no agent).
import { createRequire } from 'node:module';
import type * as Pkcs11js from 'pkcs11js';

const pkcs11js = createRequire(import.meta.url)('pkcs11js') as typeof Pkcs11js;
export { pkcs11js };

export type Handle = Buffer;

export class RawModule {
  readonly p11: Pkcs11js.PKCS11;

  constructor(path: string) {
    this.p11 = new pkcs11js.PKCS11();
    this.p11.load(path);
    this.p11.C_Initialize({ flags: pkcs11js.CKF_OS_LOCKING_OK });
  }

  slotOf(label: string): Handle {
    const slot = this.p11.C_GetSlotList(true).find((s) => this.p11.C_GetTokenInfo(s).label.trim() === label);
    if (!slot) throw new Error(`raw pkcs11js: no token labelled ${label}`);
    return slot;
  }

  /** What `tokens.list` costs without Kelid: the slot list and each token's info. */
  listTokens(): Pkcs11js.TokenInfo[] {
    return this.p11.C_GetSlotList(true).map((s) => this.p11.C_GetTokenInfo(s));
  }

  openSession(slot: Handle, readWrite = false): Handle {
    return this.p11.C_OpenSession(
      slot,
      pkcs11js.CKF_SERIAL_SESSION | (readWrite ? pkcs11js.CKF_RW_SESSION : 0),
    );
  }

  findPrivateKey(session: Handle, keyId: string): Handle {
    this.p11.C_FindObjectsInit(session, [
      { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PRIVATE_KEY },
      { type: pkcs11js.CKA_ID, value: Buffer.from(keyId, 'hex') },
    ]);
    const [h] = this.p11.C_FindObjects(session, 1);
    this.p11.C_FindObjectsFinal(session);
    if (!h) throw new Error(`raw pkcs11js: no private key ${keyId}`);
    return h;
  }

  signSync(session: Handle, mechanism: number, key: Handle, data: Buffer): Buffer {
    this.p11.C_SignInit(session, { mechanism }, key);
    return this.p11.C_Sign(session, data, Buffer.alloc(1024));
  }

  async signAsync(session: Handle, mechanism: number, key: Handle, data: Buffer): Promise<Buffer> {
    this.p11.C_SignInit(session, { mechanism }, key);
    return this.p11.C_SignAsync(session, data, Buffer.alloc(1024));
  }

  finalize(): void {
    this.p11.C_Finalize();
  }
}
