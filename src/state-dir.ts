import envPaths from 'env-paths';
import * as path from 'node:path';

/**
 * The agent's state directory (TLS material, grants, audit log, control socket, `agent.json`):
 * the `--state-dir` flag, else `KELID_STATE_DIR`, else the per-user data directory
 * (`$XDG_DATA_HOME/kelid` or `~/.local/share/kelid` on Linux). Always returned as an absolute path;
 * an empty flag or variable counts as not given.
 */
export function resolveStateDir(flag?: string): string {
  const chosen =
    nonEmpty(flag) ?? nonEmpty(process.env.KELID_STATE_DIR) ?? envPaths('kelid', { suffix: '' }).data;
  return path.resolve(chosen);
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value === '' ? undefined : value;
}
