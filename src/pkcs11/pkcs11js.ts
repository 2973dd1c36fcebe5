import { createRequire } from 'node:module';
import type * as Pkcs11 from 'pkcs11js';

// pkcs11js is CommonJS whose constants come from the native binding: load it through require so they
// are all present (an ESM namespace import only sees statically detectable exports). One file loads
// it, so the packaged program's bundler (scripts/package.mjs) can swap this file for a plain require,
// which it resolves to the addon it extracts and loads with process.dlopen.
export const pkcs11js = createRequire(import.meta.url)('pkcs11js') as typeof Pkcs11;
