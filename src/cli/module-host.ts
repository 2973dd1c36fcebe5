// Process entry of a module host (started by HostClient, src/pkcs11/host-client.ts, as
// `node module-host.js <module path>`). With KELID_TEST_HOOKS=1 it loads the test hooks and hands
// them to the host; otherwise that code is never loaded.

import type { HostHooks } from '../model/test-hooks.js';
import { runModuleHost } from '../pkcs11/module-host.js';

async function testHooks(): Promise<HostHooks | undefined> {
  if (process.env.KELID_TEST_HOOKS !== '1') return undefined;
  const { createTestHooks } = await import('../testing/crash-points.js');
  return createTestHooks('host');
}

testHooks().then(
  (hooks) => runModuleHost(process.argv[2], hooks),
  (e: unknown) => {
    process.stderr.write(`module-host: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(2);
  },
);
