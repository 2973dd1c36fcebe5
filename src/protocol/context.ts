import type { ConsentBroker } from '../consent/consent-broker.js';
import type { PinRulesView } from '../consent/consent-broker.js';
import type { AgentServices } from '../model/services.js';
import type { Tier } from '../model/types.js';

// What a method sees: the connection it was called on (origin and tier fixed at the handshake, the
// calls in flight), the call itself (id, abort signal, what to write in the audit line) and the agent
// facilities below the protocol layer.

export type JsonRpcId = string | number;

/** Fields of the audit line a method fills in as it learns them (PROTOCOL.md section 9). */
export interface AuditDetails {
  tokenSerial: string | null;
  keyId?: string;
  certificateSha256?: string;
  digestsSha256?: string;
}

export interface PendingCall {
  id: JsonRpcId;
  controller: AbortController;
  /** True while the call can still be withdrawn: waiting for consent, or a batch between items. */
  cancellable: boolean;
}

export interface ConnectionContext {
  /** Random id of this WebSocket connection (logs, consent bookkeeping). */
  readonly id: string;
  /** Normalized origin from the handshake. */
  readonly origin: string;
  /**
   * Tier from the handshake. It changes only through site access: `agent.requestAccess` approved
   * (unknown → site, this connection and the origin's other open ones) and `kelid sites revoke`
   * (site → unknown). `ra` and `console` never change.
   */
  tier: Tier;
  /** Calls in flight, keyed by {@link callKey}. */
  readonly calls: Map<string, PendingCall>;
  /** Aborts when the connection closes. */
  readonly closed: AbortSignal;
  /** Send a JSON-RPC notification to this connection. */
  notify(method: string, params: unknown): void;
}

/** Site approvals as the protocol layer needs them. */
export interface SiteAccess {
  isApproved(origin: string): boolean;
  /** Persist an approval and raise the origin's open `unknown` connections to `site`. */
  approve(origin: string): void;
}

export interface ProtocolEnv {
  services: AgentServices;
  consent: ConsentBroker;
  sites: SiteAccess;
  version: string;
  /** The configured PIN policy (consent UI rules when no token narrows them). */
  defaultPinRules: PinRulesView;
  /** Extension (issue 15): a newer version from the signed update manifest, for the console only. */
  updateAvailable?: () => { latest: string; download: string } | null;
}

export interface CallContext {
  readonly connection: ConnectionContext;
  readonly id: JsonRpcId;
  readonly method: string;
  /** Aborts on `request.cancel` for this id, or when the connection closes. */
  readonly signal: AbortSignal;
  readonly env: ProtocolEnv;
  readonly audit: AuditDetails;
  /** Mark whether `request.cancel` can still withdraw this call. */
  setCancellable(cancellable: boolean): void;
  /** The user saw this call's consent prompt (methods audited `always` are audited from here on). */
  markPrompted(): void;
}

/** Map key of a JSON-RPC id (`1` and `"1"` are different ids). */
export function callKey(id: JsonRpcId): string {
  return typeof id === 'number' ? `n:${id}` : `s:${id}`;
}
