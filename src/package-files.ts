import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { readFileSync } from 'node:fs';

// The one way code finds the package's own files (src/ui, native-config, dist/client/kelid.js,
// package.json). From a checkout or npm install the root is the folder above src/ (or dist/); the
// packaged single-file program sets it, before anything reads a file, to the folder it extracted its
// assets to (src/packaged/sea-main.ts). import.meta.url is read only in the first case: the packaged
// program is one CommonJS bundle, where it does not exist.
let root: string | undefined;

/** First argument that makes the packaged program run as a module host (`<program> <arg> <module>`). */
export const MODULE_HOST_ARG = '--kelid-module-host';

let packaged = false;

/** Used by the packaged program only: read package files from `dir`. */
export function usePackagedRoot(dir: string): void {
  root = dir;
  packaged = true;
}

/** True in the single-file program built by `npm run package`. */
export function isPackagedProgram(): boolean {
  return packaged;
}

/** Absolute path of a file or folder of the package, e.g. `packagePath('src', 'ui')`. */
export function packagePath(...segments: string[]): string {
  // src/package-files.ts and dist/package-files.js both sit one level below the package root.
  root ??= fileURLToPath(new URL('..', import.meta.url));
  return join(root, ...segments);
}

let version: string | undefined;

/** The package version (package.json), read once. */
export function packageVersion(): string {
  if (version === undefined) {
    try {
      const pkg = JSON.parse(readFileSync(packagePath('package.json'), 'utf8')) as { version?: string };
      version = pkg.version ?? '0.0.0';
    } catch {
      version = '0.0.0';
    }
  }
  return version;
}
