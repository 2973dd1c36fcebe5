// softhsm-only: OpenSC's pkcs11-spy is chained to SoftHSM to log C_Finalize; the tpm2 side of finding 6 is in tpm2-provisioning.test.ts
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HostClient } from '../../../src/pkcs11/host-client.js';
import { SoftHsm } from '../../helpers/softhsm.js';
import { until } from '../../helpers/wait.js';

// Some modules release device resources only in C_Finalize (tpm2-pkcs11 kept TPM transient objects
// loaded after a failed keygen): the module host finalizes on every orderly exit (issue 18, finding
// 6). OpenSC's pkcs11-spy sits between the host and SoftHSM and logs every call the host makes.
const SPY = [
  '/usr/lib/x86_64-linux-gnu/pkcs11/pkcs11-spy.so',
  '/usr/lib/aarch64-linux-gnu/pkcs11/pkcs11-spy.so',
].find((p) => existsSync(p));

describe.skipIf(SPY === undefined)(
  `module host exit${SPY ? '' : ' — skipped: pkcs11-spy.so (opensc) not installed'}`,
  () => {
    const hsm = new SoftHsm('kelid-finalize-');
    const dir = mkdtempSync(join(tmpdir(), 'kelid-spy-'));
    let n = 0;

    beforeAll(() => {
      hsm.initToken('fin', 'so-fin-1', '123456');
    });
    afterAll(() => {
      hsm.cleanup();
      rmSync(dir, { recursive: true, force: true });
    });

    async function spiedHost(): Promise<{ host: HostClient; log: string }> {
      const log = join(dir, `spy-${++n}.log`);
      const host = new HostClient({
        moduleId: 'spied',
        path: SPY!,
        env: { ...hsm.env, PKCS11SPY: hsm.module, PKCS11SPY_OUTPUT: log },
      });
      await host.start();
      expect(host.state).toBe('ready');
      // a session open and a login held, as after an operation that failed halfway (the spy's log
      // holds the PIN: it stays in this test's temporary directory)
      const { slots } = await host.call('listSlots', {});
      const slot = slots.find((s) => s.token.label === 'fin')!;
      const { sessionId } = await host.call('openSession', {
        token: { slotId: slot.slotId, serial: slot.token.serialNumber },
        readWrite: true,
      });
      await host.call('login', { sessionId, userType: 'user', pin: '123456' });
      return { host, log };
    }

    const finalized = (log: string) => readFileSync(log, 'utf8').includes('C_Finalize');

    it('calls C_Finalize when the agent stops it (IPC channel closed)', async () => {
      const { host, log } = await spiedHost();
      expect(finalized(log)).toBe(false);
      await host.stop();
      expect(host.state).toBe('stopped');
      expect(finalized(log)).toBe(true);
    });

    it('calls C_Finalize when it is sent SIGTERM', async () => {
      const { host, log } = await spiedHost();
      const exited = new Promise((resolve) => host.once('exit', resolve));
      process.kill(host.pid!, 'SIGTERM');
      await exited;
      await until(
        () => finalized(log),
        (ok) => ok,
        'C_Finalize in the spy log',
        5000,
      );
      await host.stop();
    });
  },
);
