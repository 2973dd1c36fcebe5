#!/usr/bin/env node
import { main } from '../dist/cli/main.js';

main(process.argv).then(
  (code) => {
    process.exitCode = code;
  },
  (e) => {
    process.stderr.write(`kelid: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exitCode = 1;
  },
);
