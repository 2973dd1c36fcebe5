import type { Tier, Token } from '../model/types.js';
import { asUint8Array, toBase64, toHex, utf8 } from './encoding.js';
import type { Bytes } from './encoding.js';
import { hashBlob } from './hash-blob.js';
import type { BlobLike } from './hash-blob.js';
import { detectExtension, extensionAnnounced, extensionSocketFactory } from './extension-socket.js';
import { KelidError } from './kelid-error.js';
import { RpcConnection } from './rpc-connection.js';
import type { CallOptions, ConsentPending, WebSocketFactory, WebSocketLike } from './rpc-connection.js';
import { digestLength } from './sha2.js';
import type {
  AgentInfo,
  AuthToken,
  Certificate,
  CertificateInput,
  CertificateStatusParams,
  CreateCsrParams,
  DeleteObjectsParams,
  GenerateKeyParams,
  GenerateKeyResult,
  ImportCertificateParams,
  Key,
  ListCertificatesParams,
  SignBatchParams,
  SignBatchResult,
  SignCmsParams,
  SignCmsResult,
  SignFileOptions,
  SignFileResult,
  SignRawParams,
  SignRawResult,
  Status,
  TokensChanged,
} from './types.js';

/** The agent's default address (PROTOCOL.md section 1). */
export const DEFAULT_AGENT_URL = 'wss://127.0.0.1:17443/v1';

/**
 * The URLs tried when no `url` is given: the agent's port range 17443–17447 (each user of a shared
 * machine runs an agent on the first free one), probed in parallel, the lowest answering port winning.
 */
export const DEFAULT_AGENT_URLS: readonly string[] = [17443, 17444, 17445, 17446, 17447].map(
  (port) => `wss://127.0.0.1:${port}/v1`,
);

/** Options of {@link KelidClient.connect}. */
export interface ConnectOptions {
  /** WebSocket URL of the agent. Default: the first of {@link DEFAULT_AGENT_URLS} that answers. */
  url?: string;
  /**
   * How long one connection attempt may take before it fails with `ERR_AGENT_UNREACHABLE`
   * (default 2000 ms). An absent agent is reported at once; this bounds the silent cases.
   */
  timeoutMs?: number;
  /**
   * While the browser shows its local-network-access prompt for this page (permission state
   * `prompt`), wait up to this long for the user's answer instead of `timeoutMs` (default 60 000 ms).
   */
  permissionPromptWaitMs?: number;
  /** Reconnect with backoff after the connection drops (default `true`). */
  reconnect?: boolean;
  /** Timeout of calls that do not wait for the user (default 30 000 ms; consent calls have none). */
  callTimeoutMs?: number;
  /** Opens the socket; default: the browser's `WebSocket`. */
  webSocket?: WebSocketFactory;
  /**
   * The oldest agent version this page works with (`major.minor.patch`). An older agent fails with
   * `ERR_AGENT_OUTDATED` as soon as its version is known: at connect when this site is approved, else
   * on `requestAccess` (the agent tells its version only to approved sites).
   */
  minimumAgentVersion?: string;
  /** Where users get a new agent; put in `ERR_AGENT_OUTDATED`'s `data.hint`. */
  downloadUrl?: string;
  /**
   * Which way to reach the agent (docs/extension.md): `auto` (default) uses the Kelid browser
   * extension when its content script is in this page (a synchronous check, no waiting when it is
   * not) and answers a ping within `extensionDetectMs`, else the WebSocket; `extension` and `wss`
   * force one. With `webSocket` given, `auto` means `wss`.
   */
  transport?: 'auto' | KelidTransport;
  /**
   * How long to wait for the extension's answer to a ping (default 100 ms), once its content script
   * is known to be in the page (`auto`) or when `transport` is `extension`. Without the extension,
   * `auto` does not wait at all.
   */
  extensionDetectMs?: number;
}

/** How a {@link KelidClient} reaches the agent: the browser extension, or the localhost WebSocket. */
export type KelidTransport = 'extension' | 'wss';

/** The events of {@link KelidClient.on} and their payloads. */
export interface KelidClientEvents {
  /** A token was plugged in or removed (`tokens.changed`). */
  tokensChanged: TokensChanged;
  /** A call waits for the user in Kelid's consent window (`consent.pending`). */
  consentPending: ConsentPending;
  /** The connection dropped; pending calls failed with `ERR_DISCONNECTED`. Reconnection follows if enabled. */
  disconnected: { code: number; reason: string };
  /** The connection is back after `disconnected`. */
  reconnected: { attempts: number };
}

/** Name of a {@link KelidClientEvents} event. */
export type KelidClientEvent = keyof KelidClientEvents;

/**
 * State of the browser's loopback-network (local network access) permission for this page:
 * `not-needed` when the page itself is served from this machine (localhost, 127.0.0.0/8, ::1), where
 * browsers ask nothing; `unsupported` when the browser has no such permission.
 */
export type LoopbackPermission = 'granted' | 'denied' | 'prompt' | 'not-needed' | 'unsupported';

const RECONNECT_DELAYS_MS = [250, 500, 1000, 2000, 4000, 8000];
const MAX_RECONNECT_DELAY_MS = 10_000;

type Listener<E extends KelidClientEvent> = (payload: KelidClientEvents[E]) => void;

/**
 * A connection to the local Kelid agent. Every method mirrors one method of the wire protocol
 * (PROTOCOL.md section 3) and returns a promise that rejects with a {@link KelidError}.
 *
 * Methods that sign, log in or write to a token open Kelid's own consent window, where the user sees
 * this page's origin and types the PIN; the promise stays pending until the user decides. No method
 * takes a PIN.
 *
 * @example
 * ```ts
 * const kelid = await KelidClient.connect();
 * if ((await kelid.info()).tier === 'unknown') await kelid.requestAccess('Sign your tax return');
 * const [cert] = await kelid.listCertificates({ filter: { keyUsage: ['nonRepudiation'], hasPrivateKey: true } });
 * const { cms } = await kelid.signFile(file, { certificateId: cert.certificateId });
 * ```
 */
export class KelidClient {
  private readonly urls: readonly string[];
  private readonly minimumVersion: string | undefined;
  private readonly downloadUrl: string | undefined;
  private connectedUrl: string | undefined;
  private timeoutMs: number;
  private readonly promptWaitMs: number;
  private readonly reconnectEnabled: boolean;
  private readonly callTimeoutMs: number;
  private factory: WebSocketFactory;
  private via: KelidTransport = 'wss';
  private connection: RpcConnection | undefined;
  private closed = false;
  private reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  private reconnectAttempts = 0;
  private readonly waiters = new Set<{ resolve(c: RpcConnection): void; reject(e: KelidError): void }>();
  private readonly listeners: { [E in KelidClientEvent]: Set<Listener<E>> } = {
    tokensChanged: new Set(),
    consentPending: new Set(),
    disconnected: new Set(),
    reconnected: new Set(),
  };
  private nextId = 1;

  private constructor(options: ConnectOptions) {
    this.urls = options.url !== undefined ? [options.url] : DEFAULT_AGENT_URLS;
    this.minimumVersion = options.minimumAgentVersion;
    this.downloadUrl = options.downloadUrl;
    this.timeoutMs = options.timeoutMs ?? 2000;
    this.promptWaitMs = options.permissionPromptWaitMs ?? 60_000;
    this.reconnectEnabled = options.reconnect ?? true;
    this.callTimeoutMs = options.callTimeoutMs ?? 30_000;
    this.factory = options.webSocket ?? browserWebSocket;
  }

  /**
   * Open a connection to the agent.
   *
   * Rejects with `ERR_AGENT_UNREACHABLE` when no connection can be made — at once when nothing listens,
   * after `timeoutMs` otherwise. The error's `data.hint` tells the user what to check (agent running,
   * certificate trusted, Chrome's local-network-access permission), and `data.permission` gives the
   * browser's loopback-network permission state where available.
   */
  static async connect(options: ConnectOptions = {}): Promise<KelidClient> {
    const client = new KelidClient(options);
    const choice = options.transport ?? (options.webSocket ? 'wss' : 'auto');
    if (choice !== 'wss') {
      // `auto` asks the content script synchronously first: without its answer the extension is not
      // in this page and the WebSocket is used at once. With it (or when forced), a ping confirms that
      // the extension's bridge works.
      const found =
        (choice === 'extension' || extensionAnnounced()) &&
        (await detectExtension(options.extensionDetectMs ?? 100));
      if (found) {
        client.factory = extensionSocketFactory;
        client.via = 'extension';
        // The native host may have to start the agent first.
        if (options.timeoutMs === undefined) client.timeoutMs = 25_000;
      } else if (choice === 'extension') {
        throw new KelidError(
          'ERR_AGENT_UNREACHABLE',
          'the Kelid browser extension is not installed in this browser',
          {
            data: {
              transport: 'extension',
              hint: 'Install the Kelid extension, or connect with transport "wss".',
            },
          },
        );
      }
    }
    try {
      client.connection = await client.openConnection();
    } catch (e) {
      // `auto`: the extension answered but cannot reach the agent (no native host installed, say):
      // the WebSocket may still work.
      if (choice !== 'auto' || client.via !== 'extension') throw e;
      client.via = 'wss';
      client.factory = options.webSocket ?? browserWebSocket;
      client.timeoutMs = options.timeoutMs ?? 2000;
      client.connection = await client.openConnection();
    }
    if (client.minimumVersion !== undefined) {
      try {
        await client.info();
      } catch (e) {
        client.close();
        throw e;
      }
    }
    return client;
  }

  /** The agent URL this client talks to (the one it connected to, of the probed range). */
  get url(): string {
    return this.connectedUrl ?? this.urls[0];
  }

  /** The transport this client uses: `extension` (native messaging) or `wss` (localhost WebSocket). */
  get transport(): KelidTransport {
    return this.via;
  }

  /** Whether the client has an open connection right now. */
  get connected(): boolean {
    return this.connection?.isOpen === true;
  }

  /**
   * Subscribe to an event; returns a function that unsubscribes. Listener exceptions are swallowed.
   */
  on<E extends KelidClientEvent>(event: E, listener: (payload: KelidClientEvents[E]) => void): () => void {
    const set = this.listeners[event] as Set<Listener<E>>;
    set.add(listener);
    return () => this.off(event, listener);
  }

  /** Remove a listener added with {@link KelidClient.on}. */
  off<E extends KelidClientEvent>(event: E, listener: (payload: KelidClientEvents[E]) => void): void {
    (this.listeners[event] as Set<Listener<E>>).delete(listener);
  }

  /** Close the connection and stop reconnecting. Pending calls reject with `ERR_CLOSED`. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.reconnectTimer !== undefined) clearTimeout(this.reconnectTimer);
    this.connection?.close('ERR_CLOSED');
    for (const w of this.waiters) w.reject(new KelidError('ERR_CLOSED', 'the Kelid client was closed'));
    this.waiters.clear();
  }

  /**
   * Send any protocol method. Prefer the typed methods; this exists for methods newer than this SDK.
   */
  async call<T = unknown>(
    method: string,
    params: Record<string, unknown> = {},
    options: CallOptions = {},
  ): Promise<T> {
    const connection = await this.ready();
    return (await connection.call(method, params, options, this.nextId++)) as T;
  }

  /**
   * Ask the agent to cancel the pending call with JSON-RPC id `id` (from `consentPending` or
   * `onPending`); the consent window closes. Resolves to whether the call was still pending.
   * Aborting a call's `signal` does the same.
   */
  async cancel(id: number): Promise<boolean> {
    const connection = await this.ready();
    return connection.cancel(id);
  }

  /** `agent.info`: the agent's version and this connection's origin and tier. Needs no consent. */
  async info(options?: CallOptions): Promise<AgentInfo> {
    const info = await this.call<AgentInfo>('agent.info', {}, this.quick(options));
    this.checkVersion(info.version);
    return info;
  }

  /** Fails with `ERR_AGENT_OUTDATED` when the agent's (known) version is below `minimumAgentVersion`. */
  private checkVersion(version: string | undefined): void {
    if (this.minimumVersion === undefined || version === undefined) return;
    if (compareVersions(version, this.minimumVersion) >= 0) return;
    throw new KelidError(
      'ERR_AGENT_OUTDATED',
      `the Kelid agent ${version} is older than ${this.minimumVersion}, which this page needs`,
      {
        retriable: false,
        data: {
          version,
          minimumVersion: this.minimumVersion,
          hint: `Install Kelid ${this.minimumVersion} or newer${this.downloadUrl ? ` from ${this.downloadUrl}` : ''}, then reload this page.`,
        },
      },
    );
  }

  /**
   * `agent.requestAccess`: ask the user to let this site use Kelid (`site` tier). Shows the origin and
   * `reason` in the consent window. Resolves to the new tier; rejects with `ERR_USER_CANCELLED` when
   * the user says no.
   */
  async requestAccess(reason?: string, options?: CallOptions): Promise<{ tier: Tier }> {
    const r = await this.call<{ tier: Tier }>(
      'agent.requestAccess',
      reason === undefined ? {} : { reason },
      options,
    );
    // Approved now: the agent tells its version, so `minimumAgentVersion` can be checked.
    if (this.minimumVersion !== undefined) await this.info();
    return r;
  }

  /**
   * `tokens.list`: the tokens present now. Their `tokenId`s (and `certificateId`s) are this origin's
   * own: keep them as long as needed, but they mean nothing to another origin.
   */
  async listTokens(options?: CallOptions): Promise<Token[]> {
    const r = await this.call<{ tokens: Token[] }>('tokens.list', {}, this.quick(options));
    return r.tokens;
  }

  /** `keys.list` (`ra` tier): the key pairs on a token. */
  async listKeys(tokenId: string, options?: CallOptions): Promise<Key[]> {
    const r = await this.call<{ keys: Key[] }>('keys.list', { tokenId }, this.quick(options));
    return r.keys;
  }

  /** `certificates.list`: certificates on all tokens (or one), optionally filtered. */
  async listCertificates(params: ListCertificatesParams = {}, options?: CallOptions): Promise<Certificate[]> {
    const r = await this.call<{ certificates: Certificate[] }>(
      'certificates.list',
      { ...params },
      this.quick(options),
    );
    return r.certificates;
  }

  /** `certificates.status`: revocation status by OCSP (CRL as fallback), checked by the agent. */
  async certificateStatus(params: CertificateStatusParams, options?: CallOptions): Promise<Status> {
    const wire: Record<string, unknown> =
      'certificateId' in params
        ? { certificateId: params.certificateId }
        : {
            certificate: certificateText(params.certificate),
            ...(params.issuer === undefined ? {} : { issuer: certificateText(params.issuer) }),
          };
    return this.call<Status>('certificates.status', wire, this.quick(options));
  }

  /** `sign.raw`: a plain signature over a digest. Needs the user's consent and PIN. */
  async signRaw(params: SignRawParams, options?: CallOptions): Promise<SignRawResult> {
    const digest = checkedDigest(params.digest, params.digestAlgorithm);
    return this.call<SignRawResult>(
      'sign.raw',
      {
        certificateId: params.certificateId,
        digest,
        digestAlgorithm: params.digestAlgorithm,
        ...(params.scheme === undefined ? {} : { scheme: params.scheme }),
        summary: params.summary,
      },
      options,
    );
  }

  /**
   * `sign.cms`: a CMS/CAdES signature over `content` (attached unless `detached`) or over a `digest`
   * (detached). Needs the user's consent and PIN.
   */
  async signCms(params: SignCmsParams, options?: CallOptions): Promise<SignCmsResult> {
    const digestAlgorithm = params.digestAlgorithm ?? 'SHA-256';
    if ((params.content === undefined) === (params.digest === undefined)) {
      throw new KelidError('ERR_INVALID_ARGUMENT', 'give exactly one of content and digest');
    }
    const wire: Record<string, unknown> = {
      certificateId: params.certificateId,
      digestAlgorithm,
      summary: params.summary,
    };
    if (params.content !== undefined) {
      wire['content'] = toBase64(typeof params.content === 'string' ? utf8(params.content) : params.content);
    } else if (params.digest !== undefined) {
      wire['digest'] = checkedDigest(params.digest, digestAlgorithm);
    }
    if (params.detached !== undefined) wire['detached'] = params.detached;
    if (params.includeChain !== undefined) wire['includeChain'] = params.includeChain;
    if (params.timestamp !== undefined) wire['timestamp'] = params.timestamp;
    return this.call<SignCmsResult>('sign.cms', wire, options);
  }

  /**
   * `sign.batch`: sign many digests with one consent and one PIN. The consent window lists every
   * item's summary.
   */
  async signBatch(params: SignBatchParams, options?: CallOptions): Promise<SignBatchResult> {
    const items = params.items.map((item) => ({
      digest: checkedDigest(item.digest, params.digestAlgorithm),
      summary: item.summary,
    }));
    return this.call<SignBatchResult>(
      'sign.batch',
      {
        certificateId: params.certificateId,
        format: params.format,
        digestAlgorithm: params.digestAlgorithm,
        ...(params.scheme === undefined ? {} : { scheme: params.scheme }),
        items,
      },
      options,
    );
  }

  /**
   * Sign a file of any size as a detached CMS (CAdES-B-B): the file is hashed here, in chunks read
   * with `Blob.slice` (memory stays bounded), and only the digest goes to the agent. Needs the user's
   * consent and PIN. Aborting `options.signal` stops hashing or cancels the signature request.
   */
  async signFile(
    file: BlobLike,
    params: SignFileOptions,
    options: CallOptions = {},
  ): Promise<SignFileResult> {
    const digestAlgorithm = params.digestAlgorithm ?? 'SHA-256';
    const digest = await hashBlob(file, digestAlgorithm, {
      chunkSize: params.chunkSize,
      onProgress: params.onProgress,
      signal: options.signal,
    });
    const summary = params.summary ?? fileSummary(file, digestAlgorithm, digest);
    const { cms } = await this.signCms(
      {
        certificateId: params.certificateId,
        digest,
        digestAlgorithm,
        detached: true,
        summary,
        ...(params.includeChain === undefined ? {} : { includeChain: params.includeChain }),
        ...(params.timestamp === undefined ? {} : { timestamp: params.timestamp }),
      },
      options,
    );
    return { cms, digest: toBase64(digest), digestAlgorithm, size: file.size };
  }

  /**
   * `auth.challenge`: sign `SHA-256(origin) ‖ SHA-256(nonce)` for a login (Web eID style). `nonce` is
   * 32–64 random bytes from the server, single-use. Needs the user's consent and PIN. Only a
   * certificate whose `allowedUses` include `authentication` logs in (else `ERR_KEY_PURPOSE`, before
   * any prompt); the server checks the token with `verifyAuthToken` and its trust anchors.
   */
  async authChallenge(
    nonce: Bytes,
    params: { certificateId?: string } = {},
    options?: CallOptions,
  ): Promise<AuthToken> {
    const r = await this.call<{ token: AuthToken }>(
      'auth.challenge',
      {
        nonce: toBase64(nonce),
        ...(params.certificateId === undefined ? {} : { certificateId: params.certificateId }),
      },
      options,
    );
    return r.token;
  }

  /**
   * `tokens.init` (`ra` tier): erase and initialize a token. The user types the new SO-PIN and user PIN
   * in the consent window. The token's `tokenId` changes; the new token is returned.
   */
  async initToken(params: { tokenId: string; label: string }, options?: CallOptions): Promise<Token> {
    const r = await this.call<{ token: Token }>(
      'tokens.init',
      { tokenId: params.tokenId, label: params.label },
      options,
    );
    return r.token;
  }

  /** `pin.change` (`ra` tier): the user types the old and the new PIN in the consent window. */
  async changePin(params: { tokenId: string; role: 'user' | 'so' }, options?: CallOptions): Promise<void> {
    await this.call('pin.change', { tokenId: params.tokenId, role: params.role }, options);
  }

  /** `pin.unblock` (`ra` tier): the SO-PIN and a new user PIN are typed in the consent window. */
  async unblockPin(params: { tokenId: string }, options?: CallOptions): Promise<void> {
    await this.call('pin.unblock', { tokenId: params.tokenId }, options);
  }

  /** `keys.generate` (`ra` tier): a key pair on the token, optionally with its CSR. */
  async generateKey(params: GenerateKeyParams, options?: CallOptions): Promise<GenerateKeyResult> {
    return this.call<GenerateKeyResult>('keys.generate', { ...params }, options);
  }

  /** `csr.create` (`ra` tier): a PKCS#10 request signed by a key on the token; resolves to PEM. */
  async createCsr(params: CreateCsrParams, options?: CallOptions): Promise<string> {
    const r = await this.call<{ csr: string }>('csr.create', { ...params }, options);
    return r.csr;
  }

  /** `certificates.import` (`ra` tier): store a certificate (and its CA chain) next to its key. */
  async importCertificate(params: ImportCertificateParams, options?: CallOptions): Promise<Certificate> {
    const wire: Record<string, unknown> = {
      tokenId: params.tokenId,
      certificate: certificateText(params.certificate),
    };
    if (params.chain !== undefined) wire['chain'] = params.chain.map(certificateText);
    if (params.label !== undefined) wire['label'] = params.label;
    const r = await this.call<{ certificate: Certificate }>('certificates.import', wire, options);
    return r.certificate;
  }

  /** `objects.delete` (`ra` tier): delete a key pair and/or its certificate; resolves to the count. */
  async deleteObjects(params: DeleteObjectsParams, options?: CallOptions): Promise<number> {
    const r = await this.call<{ deleted: number }>('objects.delete', { ...params }, options);
    return r.deleted;
  }

  private quick(options: CallOptions | undefined): CallOptions {
    return { timeoutMs: this.callTimeoutMs, ...options };
  }

  private emit<E extends KelidClientEvent>(event: E, payload: KelidClientEvents[E]): void {
    for (const listener of [...(this.listeners[event] as Set<Listener<E>>)]) {
      try {
        listener(payload);
      } catch {
        // a page's listener must not break the client
      }
    }
  }

  /** The open connection, or wait (up to `timeoutMs`) for a reconnection in progress. */
  private ready(): Promise<RpcConnection> {
    if (this.closed) return Promise.reject(new KelidError('ERR_CLOSED', 'the Kelid client was closed'));
    const c = this.connection;
    if (c?.isOpen) return Promise.resolve(c);
    if (!this.reconnectEnabled) {
      return Promise.reject(new KelidError('ERR_DISCONNECTED', 'not connected to the Kelid agent'));
    }
    return new Promise<RpcConnection>((resolve, reject) => {
      const waiter = {
        resolve: (conn: RpcConnection) => {
          clearTimeout(timer);
          resolve(conn);
        },
        reject: (e: KelidError) => {
          clearTimeout(timer);
          reject(e);
        },
      };
      const timer = setTimeout(() => {
        this.waiters.delete(waiter);
        reject(new KelidError('ERR_DISCONNECTED', 'not connected to the Kelid agent (reconnecting)'));
      }, this.timeoutMs);
      this.waiters.add(waiter);
    });
  }

  /**
   * Open a socket to every candidate URL at once and keep the lowest one that opens (the default port
   * first); the others are closed. A port held by another user's agent is refused at TCP level (the
   * peer-uid check) or fails TLS (its CA is not trusted by this user's browser): it is skipped.
   */
  private async openConnection(): Promise<RpcConnection> {
    let permission: LoopbackPermission = 'unsupported';
    const permissionKnown = loopbackPermission().then((p) => (permission = p));
    // Through the extension the URL means nothing: one session, not one per port of the range.
    const urls = this.via === 'extension' ? this.urls.slice(0, 1) : this.urls;
    const attempts = urls.map((url) => this.openSocket(url, () => permission));
    // Every attempt is awaited in order below; until then a rejection is not "unhandled".
    for (const a of attempts) a.catch(() => undefined);
    let firstReason = '';
    for (let i = 0; i < attempts.length; i++) {
      let socket: WebSocketLike;
      try {
        socket = await attempts[i];
      } catch (reason) {
        if (i === 0) firstReason = String(reason);
        continue;
      }
      for (const other of attempts.slice(i + 1))
        other.then(
          (s) => s.close(),
          () => undefined,
        );
      this.connectedUrl = urls[i];
      return new RpcConnection(socket, {
        onNotification: (method, params) => this.notification(method, params),
        onClose: (event) => this.lost(event),
      });
    }
    // The permission state decides the hint; the query answers within milliseconds.
    await Promise.race([permissionKnown, new Promise((r) => setTimeout(r, 300))]);
    if (this.via === 'extension') {
      throw new KelidError(
        'ERR_AGENT_UNREACHABLE',
        `cannot reach the Kelid agent through the extension: ${firstReason}`,
        {
          data: {
            transport: 'extension',
            hint: 'Is the native host installed (`kelid extension install`) and can it start the agent?',
          },
        },
      );
    }
    throw unreachable(urls[0], firstReason, permission);
  }

  /** One WebSocket to `url`: resolves when open, rejects with the reason it could not open. */
  private openSocket(url: string, permission: () => LoopbackPermission): Promise<WebSocketLike> {
    return new Promise<WebSocketLike>((resolve, reject) => {
      const started = Date.now();
      let socket: WebSocketLike;
      let done = false;
      let timer: ReturnType<typeof setTimeout> | undefined;
      const fail = (reason: string): void => {
        if (done) return;
        done = true;
        if (timer !== undefined) clearTimeout(timer);
        try {
          socket.onopen = socket.onclose = null;
          socket.onerror = () => undefined;
          socket.close();
        } catch {
          // never opened
        }
        reject(reason);
      };
      try {
        socket = this.factory(url);
      } catch (e) {
        reject(e instanceof Error ? e.message : 'invalid URL');
        return;
      }
      const arm = (ms: number): void => {
        timer = setTimeout(() => {
          // A pending browser permission prompt holds the connection until the user answers.
          const waited = Date.now() - started;
          if (permission() === 'prompt' && waited < this.promptWaitMs)
            arm(Math.min(1000, this.promptWaitMs - waited));
          else fail(`no answer within ${waited} ms`);
        }, ms);
      };
      arm(this.timeoutMs);
      socket.onopen = () => {
        if (done) return;
        done = true;
        if (timer !== undefined) clearTimeout(timer);
        resolve(socket);
      };
      socket.onerror = () => undefined;
      socket.onclose = (event) =>
        fail(`connection closed (code ${event.code}${event.reason ? `: ${event.reason}` : ''})`);
    });
  }

  private notification(method: string, params: unknown): void {
    if (typeof params !== 'object' || params === null) return;
    if (method === 'tokens.changed') {
      const p = params as Partial<TokensChanged>;
      this.emit('tokensChanged', {
        added: Array.isArray(p.added) ? p.added : [],
        removed: Array.isArray(p.removed) ? p.removed : [],
      });
    } else if (method === 'consent.pending') {
      const p = params as Partial<ConsentPending>;
      if (typeof p.id === 'number' && typeof p.requestId === 'string') {
        this.emit('consentPending', { id: p.id, requestId: p.requestId });
      }
    }
  }

  private lost(event: { code: number; reason: string }): void {
    this.emit('disconnected', event);
    if (this.closed || !this.reconnectEnabled) return;
    this.reconnectAttempts = 0;
    this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    const delay = RECONNECT_DELAYS_MS[this.reconnectAttempts] ?? MAX_RECONNECT_DELAY_MS;
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      if (this.closed) return;
      this.reconnectAttempts++;
      this.openConnection().then(
        (connection) => {
          if (this.closed) {
            connection.close('ERR_CLOSED');
            return;
          }
          this.connection = connection;
          for (const w of this.waiters) w.resolve(connection);
          this.waiters.clear();
          this.emit('reconnected', { attempts: this.reconnectAttempts });
        },
        () => {
          if (!this.closed) this.scheduleReconnect();
        },
      );
    }, delay);
  }
}

function browserWebSocket(url: string): WebSocketLike {
  const Ctor = (globalThis as unknown as { WebSocket?: new (url: string) => WebSocketLike }).WebSocket;
  if (Ctor === undefined) throw new KelidError('ERR_AGENT_UNREACHABLE', 'this environment has no WebSocket');
  return new Ctor(url);
}

/** Whether the page itself is on the loopback address space (no local-network-access check applies). */
function pageOnLoopback(): boolean {
  const host = (globalThis as unknown as { location?: { hostname?: string } }).location?.hostname;
  if (typeof host !== 'string') return false;
  return (
    host === 'localhost' ||
    host.endsWith('.localhost') ||
    /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host) ||
    host === '[::1]' ||
    host === '::1'
  );
}

async function loopbackPermission(): Promise<LoopbackPermission> {
  if (pageOnLoopback()) return 'not-needed';
  const nav = (
    globalThis as unknown as {
      navigator?: { permissions?: { query(d: { name: string }): Promise<{ state: string }> } };
    }
  ).navigator;
  if (nav?.permissions === undefined) return 'unsupported';
  // Chrome 142+ names it `loopback-network` (was `local-network-access` during the origin trial).
  for (const name of ['loopback-network', 'local-network-access']) {
    try {
      const { state } = await nav.permissions.query({ name });
      if (state === 'granted' || state === 'denied' || state === 'prompt') return state;
    } catch {
      // unknown permission name in this browser
    }
  }
  return 'unsupported';
}

function unreachable(url: string, reason: string, permission: LoopbackPermission): KelidError {
  const hints = [
    'Is the Kelid agent running (`kelid serve`)?',
    'Is its certificate trusted by this browser (`kelid ca install`, then restart the browser)?',
  ];
  if (permission === 'denied') {
    hints.unshift(
      'This site is blocked from apps on this device: allow "Apps on device" / local network access ' +
        '(loopback-network) in the site settings (the icon left of the address bar), then reload.',
    );
  } else if (permission === 'prompt') {
    hints.unshift('The browser is asking whether this site may access apps on this device: choose Allow.');
  } else if (permission !== 'not-needed') {
    hints.push(
      'In Chrome 142+ and Edge 143+, the site must be allowed to access apps on this device ' +
        '(local network access, "loopback-network" permission): answer the prompt or check the site settings.',
    );
  }
  hints.push('Is this site\u2019s origin allowed by the agent?');
  return new KelidError('ERR_AGENT_UNREACHABLE', `cannot reach the Kelid agent at ${url}: ${reason}`, {
    data: { url, permission, hint: hints.join(' ') },
  });
}

function checkedDigest(digest: Bytes, algorithm: SignRawParams['digestAlgorithm']): string {
  const bytes = asUint8Array(digest);
  const want = digestLength(algorithm);
  if (bytes.length !== want) {
    throw new KelidError(
      'ERR_INVALID_ARGUMENT',
      `a ${algorithm} digest has ${want} bytes, not ${bytes.length}`,
    );
  }
  return toBase64(bytes);
}

function certificateText(input: CertificateInput): string {
  return typeof input === 'string' ? input : toBase64(input);
}

function fileSummary(file: BlobLike, algorithm: string, digest: Uint8Array): string {
  const rawName = (file as { name?: unknown }).name;
  const name = typeof rawName === 'string' && rawName.length > 0 ? rawName : 'file';
  const shortName = name.length > 200 ? `${name.slice(0, 197)}...` : name;
  return `File "${shortName}" (${file.size} bytes, ${algorithm} ${toHex(digest).slice(0, 16)}…)`;
}

/** Compare `major.minor.patch` versions (a pre-release suffix sorts before its release). */
export function compareVersions(a: string, b: string): number {
  const parse = (v: string): [number[], string] => {
    const [core, pre = ''] = v.trim().replace(/^v/, '').split('-', 2);
    return [core.split('.').map((n) => Number.parseInt(n, 10) || 0), pre];
  };
  const [ca, pa] = parse(a);
  const [cb, pb] = parse(b);
  for (let i = 0; i < 3; i++) {
    const d = (ca[i] ?? 0) - (cb[i] ?? 0);
    if (d !== 0) return Math.sign(d);
  }
  if (pa === pb) return 0;
  if (pa === '') return 1;
  if (pb === '') return -1;
  return pa < pb ? -1 : 1;
}
