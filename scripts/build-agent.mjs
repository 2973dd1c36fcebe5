// Bundles the CLI and agent (src/cli/main.ts with the npm dependencies it imports) into one ES
// module, dist/kelid.mjs, which bin/kelid.js runs. Why: loading ~500 separate modules was most of
// the agent's start-up; one file parses and links in a fraction of that time and memory.
// Left out of the bundle: pkcs11js (a native addon, loaded by the module host, which stays the
// unbundled dist/pkcs11/module-host.js from tsc) and ws's optional native speed-ups.
// The bundle sits in dist/, one level below the package root like every file of tsc's output, so
// package-files finds the root the same way from either.
import { build } from 'esbuild';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));

await build({
  absWorkingDir: root,
  entryPoints: { kelid: 'src/cli/main.ts' },
  outdir: 'dist',
  outExtension: { '.js': '.mjs' },
  bundle: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  // The dependencies' ES module builds where they ship one (@peculiar/*, asn1js...): no CommonJS
  // wrappers and unused exports left out, about a third faster to load (node's default is "main").
  mainFields: ['module', 'main'],
  // Less to scan and compile at each start; names are kept, so stack traces still read.
  minifyWhitespace: true,
  minifySyntax: true,
  // Bundled CommonJS dependencies (pino, ajv, ws...) call require() for node's built-ins.
  banner: {
    js: "import { createRequire as __kelidCreateRequire } from 'node:module'; const require = __kelidCreateRequire(import.meta.url);",
  },
  external: ['pkcs11js', 'bufferutil', 'utf-8-validate'],
  legalComments: 'none',
  logLevel: 'warning',
});
