// The PKCS#11 implementations the suite runs on (issue 18: "a second backend in the suite").
// A suite written against TokenBackend runs once per backend with describeBackends(); a test that
// cannot run on one of them says why in its skip condition (skipOn), never silently.
// Files that construct `new SoftHsm(` directly are SoftHSM-only and carry a `// softhsm-only: <why>`
// line (test/unit/test-backends.test.ts checks it).
import { describe, it } from 'vitest';
import { loadKnownModules } from '../../src/pkcs11/native-config.js';
import type { ModuleQuirks } from '../../src/pkcs11/native-config.js';
import { SoftHsm } from './softhsm.js';
import { Tpm2Stack, tpm2SkipReason } from './tpm2.js';

export type BackendName = 'softhsm' | 'tpm2';

/** A started PKCS#11 implementation with a private store, for one test file. */
export interface TokenBackend {
  readonly name: BackendName;
  /** The module library. */
  readonly module: string;
  /** The module's `env` (SOFTHSM2_CONF, or the TPM2_PKCS11_* of the private stack). */
  readonly env: Record<string, string>;
  /** The quirks the agent applies to this module from native-config (its known-module entry). */
  readonly quirks: ModuleQuirks | undefined;
  /**
   * Whether the module reports PIN count-low / final-try flags. tpm2-pkcs11 never sets them, and
   * its wrong PINs count against one TPM-wide dictionary-attack counter (swtpm: 3 tries).
   */
  readonly pinFlags: boolean;
  /** A module entry for an agent config or a ModuleManager (`id` defaults to the backend name). */
  moduleConfig(id?: string): { id: string; path: string; env: Record<string, string> };
  /** A new initialized token with both PINs set, made out of band (softhsm2-util / tpm2_ptool). */
  initToken(label: string, soPin: string, userPin: string): void;
  /** Run pkcs11-tool against this backend's store. */
  tool(args: string[], input?: string): string;
  cleanup(): void;
}

/** A backend of the suite: either startable, or skipped with the reason. */
export interface BackendCase {
  name: BackendName;
  /** Why this backend cannot run here; undefined when it can. */
  skip: string | undefined;
  start(prefix?: string): Promise<TokenBackend>;
}

function quirksOf(id: string): ModuleQuirks | undefined {
  return loadKnownModules().find((m) => m.id === id)?.quirks;
}

class SoftHsmBackend implements TokenBackend {
  readonly name = 'softhsm' as const;
  readonly pinFlags = true;
  readonly quirks = quirksOf('softhsm2');
  constructor(readonly hsm: SoftHsm) {}
  get module(): string {
    return this.hsm.module;
  }
  get env(): Record<string, string> {
    return this.hsm.env;
  }
  moduleConfig(id: string = this.name) {
    return { id, path: this.module, env: this.env };
  }
  initToken(label: string, soPin: string, userPin: string): void {
    this.hsm.initToken(label, soPin, userPin);
  }
  tool(args: string[], input?: string): string {
    return this.hsm.tool(args, input);
  }
  cleanup(): void {
    this.hsm.cleanup();
  }
}

class Tpm2Backend implements TokenBackend {
  readonly name = 'tpm2' as const;
  readonly pinFlags = false;
  readonly quirks = quirksOf('tpm2-pkcs11');
  constructor(readonly stack: Tpm2Stack) {}
  get module(): string {
    return this.stack.module;
  }
  get env(): Record<string, string> {
    return this.stack.env;
  }
  moduleConfig(id: string = this.name) {
    return { id, path: this.module, env: this.env };
  }
  initToken(label: string, soPin: string, userPin: string): void {
    this.stack.addToken(label, soPin, userPin);
  }
  tool(args: string[], input?: string): string {
    return this.stack.tool(args, input);
  }
  cleanup(): void {
    this.stack.cleanup();
  }
}

/**
 * The backends to run on: SoftHSM always, tpm2-pkcs11 on swtpm when its stack is installed (else
 * listed with the reason). `KELID_TEST_BACKEND=softhsm|tpm2|both` (default both) narrows a local run.
 */
export function backends(): BackendCase[] {
  const wanted = process.env.KELID_TEST_BACKEND ?? 'both';
  const off = (name: BackendName) =>
    wanted !== 'both' && wanted !== name ? `KELID_TEST_BACKEND=${wanted}` : undefined;
  return [
    {
      name: 'softhsm',
      skip: off('softhsm'),
      start: (prefix) => Promise.resolve(new SoftHsmBackend(new SoftHsm(prefix))),
    },
    {
      name: 'tpm2',
      skip: off('tpm2') ?? tpm2SkipReason(),
      start: async () => new Tpm2Backend(await Tpm2Stack.start()),
    },
  ];
}

/**
 * `describe` once per backend, titled `<title> on <backend>`; a backend that cannot run here is a
 * skipped describe whose title carries the reason.
 */
export function describeBackends(title: string, body: (backend: BackendCase) => void): void {
  for (const b of backends()) {
    describe.skipIf(b.skip !== undefined)(
      `${title} on ${b.name}${b.skip ? ` — skipped: ${b.skip}` : ''}`,
      () => body(b),
    );
  }
}

/**
 * `it`, skipped on one backend with the reason in its title: `skipOn(b, 'tpm2', 'why')('title', fn)`.
 * For the tests that need a property that backend lacks (PIN flags, per-token lockout, speed).
 */
export function skipOn(
  b: BackendCase,
  name: BackendName,
  why: string,
): (title: string, fn: () => Promise<void> | void, timeout?: number) => void {
  const skipped = b.name === name;
  return (title, fn, timeout) =>
    it.skipIf(skipped)(skipped ? `${title} — skipped on ${name}: ${why}` : title, fn, timeout);
}
