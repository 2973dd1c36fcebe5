// Bundles the browser SDK (src/client) into one ES module, dist/client/kelid.js, which the agent
// serves at /sdk/kelid.js. Typed dist/client/index.js + .d.ts come from `tsc -p src/client/tsconfig.json`.
import { build } from 'esbuild';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));

await build({
  absWorkingDir: root,
  entryPoints: ['src/client/index.ts'],
  outfile: 'dist/client/kelid.js',
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: 'es2020',
  sourcemap: true,
  legalComments: 'none',
  logLevel: 'warning',
});
