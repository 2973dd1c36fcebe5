// Entry point of the single-file program built by `npm run package` (Node single-executable
// application): extracts the embedded files (UI, native-config, SDK, the pkcs11js addon) to the
// per-user cache, points package-files at them, then runs either the CLI or, when started by
// HostClient with MODULE_HOST_ARG, a PKCS#11 module host.
import { getAsset } from 'node:sea';
import { MODULE_HOST_ARG, usePackagedRoot } from '../package-files.js';
import { extractAssets } from './asset-cache.js';

function fail(e: unknown): void {
  process.stderr.write(`kelid: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exitCode = 1;
}

try {
  usePackagedRoot(extractAssets((name) => getAsset(name)));
  // A single-executable application sees argv as [program, program, ...arguments].
  if (process.argv[2] === MODULE_HOST_ARG) {
    // The module host's entry reads its module path from argv[2] and starts on import.
    process.argv.splice(2, 1);
    import('../cli/module-host.js').catch(fail);
  } else {
    import('../cli/main.js')
      .then(({ main }) => main(process.argv))
      .then((code) => {
        process.exitCode = code;
      }, fail);
  }
} catch (e) {
  fail(e);
}
