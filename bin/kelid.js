#!/usr/bin/env node
// The CLI and agent as one bundled module (scripts/build-agent.mjs): much faster to start than
// tsc's ~500-module dist/cli/main.js, which stays for the library exports.
import { main } from '../dist/kelid.mjs';

main(process.argv).then(
  (code) => {
    process.exitCode = code;
  },
  (e) => {
    process.stderr.write(`kelid: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exitCode = 1;
  },
);
