// Test-only hooks: the crash points of the crash-consistency runs and the module host's hang.
// Production modules take them as an optional argument and never build them: only the process
// entries do, and only with KELID_TEST_HOOKS=1 (src/testing/crash-points.ts, loaded on demand), so a
// normal start does not even load that code.

/** Around each call to a module host, in the agent (sent) or in the host (run). */
export interface WriteHooks {
  /** Just before the call; returns its number among this process's token writes (0: not a write). */
  beforeWrite(method: string): number;
  /** Once the call returned (or failed), with what `beforeWrite` returned. */
  afterWrite(method: string, write: number): void;
}

/** In the module host process. */
export interface HostHooks extends WriteHooks {
  /** Block the host's event loop for `ms` (the `testHang` method: a module stuck in a call). */
  hang(ms: number): void;
}

/** In the audit log. */
export interface AuditHooks {
  /** An audit line is about to be appended to `fd`: may write part of it and kill the process. */
  tearAuditLine(fd: number, method: string, line: string): void;
}

/** Every hook a process can be given. */
export type TestHooks = HostHooks & AuditHooks;
