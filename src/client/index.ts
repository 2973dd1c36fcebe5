/**
 * Browser SDK of Kelid: talk to the local Kelid agent from a web page.
 *
 * ```ts
 * import { KelidClient, KelidError } from 'kelid/client';
 * const kelid = await KelidClient.connect();
 * ```
 *
 * The same module is served by the agent at `/sdk/kelid.js` (one ES module, no dependencies).
 * It uses only browser APIs (`WebSocket`, `Blob`, `TextEncoder`); no Node modules.
 *
 * @packageDocumentation
 */

export { KelidClient, DEFAULT_AGENT_URL, DEFAULT_AGENT_URLS } from './kelid-client.js';
export type {
  ConnectOptions,
  KelidClientEvents,
  KelidClientEvent,
  LoopbackPermission,
  KelidTransport,
} from './kelid-client.js';
export { KelidError } from './kelid-error.js';
export { EXTENSION_NAMESPACE, EXTENSION_PROBE_EVENT } from './extension-socket.js';
export type { UserMessageLanguage } from './user-messages.js';
export type { AgentErrorCode, SdkErrorCode, KelidErrorCode, KelidErrorOptions } from './kelid-error.js';
export type {
  AbortSignalLike,
  CallOptions,
  ConsentPending,
  WebSocketFactory,
  WebSocketLike,
} from './rpc-connection.js';
export { createHash, digestLength } from './sha2.js';
export type { IncrementalHash } from './sha2.js';
export { hashBlob, DEFAULT_CHUNK_SIZE } from './hash-blob.js';
export type { BlobLike, HashBlobOptions } from './hash-blob.js';
export { toBase64, fromBase64, toHex, fromHex, toPem, utf8 } from './encoding.js';
export type { Bytes } from './encoding.js';
export type * from './types.js';
