import type { ErrorCode } from '../model/types.js';

/** Error codes the agent sends (PROTOCOL.md section 6, `error.data.code`). */
export type AgentErrorCode = ErrorCode;

/**
 * Error codes raised by the SDK itself (never sent by the agent):
 *
 * - `ERR_AGENT_UNREACHABLE` — no WebSocket connection could be opened: the agent is not running, its
 *   certificate is not trusted by this browser, the browser's local-network-access ("loopback-network")
 *   permission was denied or is still waiting for an answer, or the agent refused this page's origin
 *   during the handshake (the browser does not tell those apart). `data.hint` says what to check and
 *   `data.permission` reports the loopback-network permission state where the browser exposes it.
 * - `ERR_DISCONNECTED` — the connection closed while the call was in flight (the call's outcome is
 *   unknown; a signature may or may not have been made).
 * - `ERR_TIMEOUT` — the call's own `timeoutMs` passed without an answer (a `request.cancel` is sent).
 * - `ERR_ABORTED` — the caller's `AbortSignal` fired (a `request.cancel` is sent).
 * - `ERR_CLOSED` — {@link KelidClient.close} was called, or a call was made after it.
 * - `ERR_PROTOCOL` — the agent answered with something that is not valid JSON-RPC.
 * - `ERR_PARSE_ERROR`, `ERR_INVALID_REQUEST`, `ERR_METHOD_NOT_FOUND`, `ERR_INVALID_PARAMS` — the
 *   JSON-RPC standard errors -32700, -32600, -32601 and -32602 from the agent.
 * - `ERR_INVALID_ARGUMENT` — the SDK refused the arguments before sending anything.
 * - `ERR_AGENT_OUTDATED` — the agent is older than `minimumAgentVersion` (checked once the agent tells
 *   this page its version: at connect for an approved site, else after `requestAccess`). `data.version`
 *   is the agent's version, `data.minimumVersion` the one needed, `data.hint` where to get a new one.
 */
export type SdkErrorCode =
  | 'ERR_AGENT_UNREACHABLE'
  | 'ERR_DISCONNECTED'
  | 'ERR_TIMEOUT'
  | 'ERR_ABORTED'
  | 'ERR_CLOSED'
  | 'ERR_PROTOCOL'
  | 'ERR_PARSE_ERROR'
  | 'ERR_INVALID_REQUEST'
  | 'ERR_METHOD_NOT_FOUND'
  | 'ERR_INVALID_PARAMS'
  | 'ERR_INVALID_ARGUMENT'
  | 'ERR_AGENT_OUTDATED';

/** Every code a {@link KelidError} can carry. Codes added by newer agents arrive unchanged. */
export type KelidErrorCode = AgentErrorCode | SdkErrorCode | (string & Record<never, never>);
