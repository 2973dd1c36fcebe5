// The agent's own files in its state directory: `agent.json` (how the CLI and the native host find a
// running agent) and `port` (the port of the range it got last time), written atomically.

import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { AGENT_PORT_RANGE } from '../platform-paths.js';

/** `<stateDir>/agent.json` (PROTOCOL.md section 8). */
export const AGENT_INFO_FILE = 'agent.json';

/** What `<stateDir>/agent.json` holds while the agent runs. */
export interface AgentInfoFile {
  pid: number;
  port: number;
  url: string;
  caCertificatePem: string;
  insecureWsPort?: number;
}

/** This state directory's `agent.json`, or null when there is none (or it does not parse). */
export function readAgentInfo(stateDir: string): AgentInfoFile | null {
  try {
    return JSON.parse(fs.readFileSync(path.join(stateDir, AGENT_INFO_FILE), 'utf8')) as AgentInfoFile;
  } catch {
    return null;
  }
}

/** `<stateDir>/port`: the port of the range this user's agent got last time (kept across restarts). */
export const PORT_FILE = 'port';

/** Write a whole file or nothing: a reader never sees half of it (a temporary file, then rename). */
export function writeFileAtomic(file: string, text: string): void {
  const tmp = `${file}.${randomBytes(6).toString('hex')}.tmp`;
  fs.writeFileSync(tmp, text, { mode: 0o600, flag: 'wx' });
  fs.renameSync(tmp, file);
}

/** The port this state directory's agent got last time, if it is one of the range. */
export function readRememberedPort(stateDir: string): number | null {
  try {
    const port = Number(fs.readFileSync(path.join(stateDir, PORT_FILE), 'utf8').trim());
    return AGENT_PORT_RANGE.includes(port) ? port : null;
  } catch {
    return null;
  }
}

/** Remember the port of the range the agent got (written only when it changed). */
export function rememberPort(stateDir: string, port: number): void {
  if (readRememberedPort(stateDir) === port) return;
  writeFileAtomic(path.join(stateDir, PORT_FILE), `${port}\n`);
}
