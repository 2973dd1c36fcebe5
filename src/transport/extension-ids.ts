// The Kelid extension's identities. The Chromium ID follows from the public key below (the
// manifest `key`, which scripts/build-extension.mjs reads from here): SHA-256 of the DER SubjectPublicKeyInfo, first 16 bytes,
// each hex digit 0-f written as a-p. Every unpacked build of extension/ gets this ID. A build
// published to a store gets the store's ID instead: list it too (kelid extension install --extension-id).

/** Manifest `key` (base64 DER SubjectPublicKeyInfo, RSA 2048; the private key was not kept). */
export const EXTENSION_PUBLIC_KEY =
  'MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAv5I+pTfAYDU8+3BEdRlZmnzXWNR6/RV+AMnFHYn5sushCccCl8Cp4WvGQ6fWoPLPBz4RoT/r3EvLyZVWtJXaBcxJJcShh5zijv8wvGizCJSoFzdp6l+VApgxTa0eK2PgTwERmrYX+rtobr8oedvie23Uey9kSJMUXBK8GASsflkrsk0iJ7uY3nmnea3UziT2dtuHCBczatGP1tNH83dziI6Lt7/6ce/70ZeuYsRnPRXJuPfpYPyOWe6YFvFjPcTLESgH/rOEFkmLLPbJbX0lxrR9Y54qKlB5spkzb7aCghWNLcDqzbMGu/WR1DEwo5QcGLv9Wjx9X5YXhzMJknh5TwIDAQAB';

/** The Chromium ID of unpacked builds (derived from {@link EXTENSION_PUBLIC_KEY}). */
export const CHROMIUM_EXTENSION_ID = 'alnpikjaoblkcmpceojlpdemicokaemb';

/** Firefox's `browser_specific_settings.gecko.id`. */
export const FIREFOX_EXTENSION_ID = 'extension@kelid.org';

/** The native messaging host's name (`runtime.connectNative(NATIVE_HOST_NAME)`). */
export const NATIVE_HOST_NAME = 'org.kelid.agent';
