/**
 * Kelid: embed the agent, or use its services directly (provisioning, signing, status) in a Node
 * program. The wire contract is docs/PROTOCOL.md; the browser SDK is the `kelid/client` subpath.
 *
 * @packageDocumentation
 */

/** The agent: HTTPS + WebSocket server, consent, site access and audit, over the services below. */
export { Agent } from './agent/agent.js';
/** Config file loading and defaults (PROTOCOL.md section 8). */
export { DEFAULT_CONFIG, loadConfig, resolveConfig } from './config.js';
export type { KelidConfig } from './config.js';
/** Every failure crossing a layer boundary: a wire code of PROTOCOL.md section 6. */
export { KelidError, isKelidError } from './model/errors.js';
export type { ErrorCode } from './model/errors.js';
/** @deprecated The same type as {@link PinState}; kept so existing imports still compile. */
export type { PinState as PinFlags } from './model/types.js';
/** The wire objects of PROTOCOL.md section 4. */
export type * from './model/types.js';
/** The composition of module hosts, tokens, provisioning, signing and status. */
export { createAgentServices, createServices, moduleSpecs } from './services.js';
export type { RunningServices, ServiceOptions } from './services.js';
/** One PKCS#11 module per child process; the token service and hot-plug watcher on top. */
export { ModuleManager } from './pkcs11/module-manager.js';
export type { ModuleSpec, ModuleStatus } from './pkcs11/module-manager.js';
export { TokenService } from './tokens/token-service.js';
export { TokenWatcher } from './tokens/token-watcher.js';
/** Token initialization, PINs, on-token keys, CSRs and certificate write-back. */
export { ProvisioningService } from './tokens/provisioning-service.js';
/** Raw, CMS/CAdES, batch and login-token signatures with keys on tokens. */
export { SigningService } from './signing/signing-service.js';
/** For relying parties' servers: verify a `kelid-auth:1` login token (trust anchors required). */
export { verifyAuthToken } from './signing/auth-token.js';
export type { VerifyAuthTokenOptions, VerifiedAuthToken } from './signing/auth-token.js';
/** The key-purpose rule the agent and verifyAuthToken share (PROTOCOL.md section 4). */
export { keyPurposeOf } from './pki/key-purpose.js';
export type { DualUseMode } from './pki/key-purpose.js';
/** OCSP and CRL checking with caching. */
export { StatusService } from './status/status-service.js';
