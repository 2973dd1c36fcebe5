// JSON-RPC 2.0 over one WebSocket: id correlation, per-call timeouts and aborts (each sends
// `request.cancel` for the pending id), notifications, and failing every pending call when the socket
// closes. Knows nothing about Kelid's methods.

import { KelidError, errorFromRpc } from './kelid-error.js';

/**
 * The part of the browser's `WebSocket` the SDK uses. Anything with this shape works (the browser's
 * `WebSocket`, or the `ws` package's client in Node).
 */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((event: unknown) => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onclose: ((event: { code: number; reason: string }) => void) | null;
  onerror: ((event: unknown) => void) | null;
}

/** Opens a WebSocket to `url`. */
export type WebSocketFactory = (url: string) => WebSocketLike;

/** Options of one call. */
export interface CallOptions {
  /**
   * Give up after this many milliseconds: the promise rejects with `ERR_TIMEOUT` and the SDK sends
   * `request.cancel`. Calls that wait for the user (consent) have no SDK timeout by default; the agent
   * ends them itself (`ERR_CONSENT_TIMEOUT`).
   */
  timeoutMs?: number;
  /** Aborting rejects the call with `ERR_ABORTED` and sends `request.cancel` to the agent. */
  signal?: AbortSignalLike;
  /** Called when the agent reports that this call waits for the user in Kelid's consent window. */
  onPending?: (pending: ConsentPending) => void;
}

/** The part of `AbortSignal` the SDK uses. */
export interface AbortSignalLike {
  readonly aborted: boolean;
  addEventListener(type: 'abort', listener: () => void, options?: { once?: boolean }): void;
  removeEventListener(type: 'abort', listener: () => void): void;
}

/** A `consent.pending` notification: call `id` waits for the user on consent request `requestId`. */
export interface ConsentPending {
  /** JSON-RPC id of the waiting call (pass it to {@link KelidClient.cancel}). */
  id: number;
  /** The agent's consent request id (shown in `kelid consent list`). */
  requestId: string;
}

interface Pending {
  method: string;
  resolve(value: unknown): void;
  reject(error: KelidError): void;
  cleanup(): void;
  onPending?: (pending: ConsentPending) => void;
}

/** Where an {@link RpcConnection} reports notifications and the socket's end. */
export interface RpcConnectionHandlers {
  onNotification(method: string, params: unknown): void;
  onClose(event: { code: number; reason: string }): void;
}

/** One open socket with JSON-RPC correlation. */
export class RpcConnection {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private closed = false;

  constructor(
    private readonly socket: WebSocketLike,
    private readonly handlers: RpcConnectionHandlers,
  ) {
    socket.onmessage = (event) => this.receive(event.data);
    socket.onclose = (event) => this.closedByPeer(event);
    socket.onerror = () => undefined;
  }

  get isOpen(): boolean {
    return !this.closed;
  }

  /** Number of calls waiting for an answer. */
  get pendingCount(): number {
    return this.pending.size;
  }

  /**
   * Send one request. `id` receives the JSON-RPC id before the request is sent (for cancellation).
   */
  call(method: string, params: unknown, options: CallOptions = {}, id = this.nextId++): Promise<unknown> {
    if (this.closed) {
      return Promise.reject(new KelidError('ERR_DISCONNECTED', 'not connected to the Kelid agent'));
    }
    const { signal, timeoutMs, onPending } = options;
    if (signal?.aborted) return Promise.reject(new KelidError('ERR_ABORTED', `${method} was aborted`));
    return new Promise<unknown>((resolve, reject) => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const abort = (): void => this.giveUp(id, new KelidError('ERR_ABORTED', `${method} was aborted`));
      const entry: Pending = {
        method,
        resolve,
        reject,
        onPending,
        cleanup: () => {
          if (timer !== undefined) clearTimeout(timer);
          signal?.removeEventListener('abort', abort);
        },
      };
      this.pending.set(id, entry);
      if (timeoutMs !== undefined && timeoutMs > 0) {
        timer = setTimeout(
          () =>
            this.giveUp(id, new KelidError('ERR_TIMEOUT', `${method} got no answer within ${timeoutMs} ms`)),
          timeoutMs,
        );
      }
      signal?.addEventListener('abort', abort, { once: true });
      try {
        this.socket.send(JSON.stringify({ jsonrpc: '2.0', id, method, params }));
      } catch (e) {
        this.settle(id)?.reject(
          new KelidError('ERR_DISCONNECTED', 'could not send to the Kelid agent', { cause: e }),
        );
      }
    });
  }

  /** Ask the agent to cancel pending call `id`; resolves to whether it was still pending there. */
  async cancel(id: number): Promise<boolean> {
    const result = await this.call('request.cancel', { id }, { timeoutMs: 10_000 });
    return (
      typeof result === 'object' && result !== null && (result as { cancelled?: unknown }).cancelled === true
    );
  }

  /** Close the socket; pending calls reject with `code`. */
  close(
    code: 'ERR_CLOSED' | 'ERR_DISCONNECTED' = 'ERR_CLOSED',
    message = 'the Kelid client was closed',
  ): void {
    if (this.closed) return;
    this.closed = true;
    this.failAll(new KelidError(code, message));
    try {
      this.socket.close(1000, 'client closed');
    } catch {
      // already closing
    }
  }

  private giveUp(id: number, error: KelidError): void {
    const entry = this.settle(id);
    if (!entry) return;
    entry.reject(error);
    // Tell the agent too, so the consent window closes; the answer (if any) is ignored.
    if (!this.closed && entry.method !== 'request.cancel') {
      this.cancel(id).catch(() => undefined);
    }
  }

  private settle(id: number): Pending | undefined {
    const entry = this.pending.get(id);
    if (!entry) return undefined;
    this.pending.delete(id);
    entry.cleanup();
    return entry;
  }

  private receive(data: unknown): void {
    if (typeof data !== 'string') return;
    let msg: unknown;
    try {
      msg = JSON.parse(data);
    } catch {
      return;
    }
    if (typeof msg !== 'object' || msg === null || Array.isArray(msg)) return;
    const m = msg as { id?: unknown; method?: unknown; params?: unknown; result?: unknown; error?: unknown };
    if (typeof m.method === 'string' && m.id === undefined) {
      this.notification(m.method, m.params);
      return;
    }
    if (typeof m.id !== 'number') return;
    const entry = this.settle(m.id);
    if (!entry) return;
    if (m.error !== undefined) entry.reject(errorFromRpc(m.error));
    else if ('result' in m) entry.resolve(m.result);
    else entry.reject(new KelidError('ERR_PROTOCOL', 'the agent sent an answer without result or error'));
  }

  private notification(method: string, params: unknown): void {
    if (method === 'consent.pending' && typeof params === 'object' && params !== null) {
      const p = params as { id?: unknown; requestId?: unknown };
      if (typeof p.id === 'number' && typeof p.requestId === 'string') {
        const info: ConsentPending = { id: p.id, requestId: p.requestId };
        try {
          this.pending.get(p.id)?.onPending?.(info);
        } catch {
          // a page's callback must not break the connection
        }
      }
    }
    this.handlers.onNotification(method, params);
  }

  private closedByPeer(event: { code: number; reason: string }): void {
    if (this.closed) return;
    this.closed = true;
    this.failAll(new KelidError('ERR_DISCONNECTED', 'the connection to the Kelid agent was lost'));
    this.handlers.onClose({ code: event.code, reason: event.reason });
  }

  private failAll(error: KelidError): void {
    const entries = [...this.pending.keys()];
    for (const id of entries) this.settle(id)?.reject(error);
  }
}
