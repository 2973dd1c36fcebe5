import type { AuditRecord } from '../audit/audit-log.js';
import { KelidError } from '../model/errors.js';
import type { ErrorCode } from '../model/errors.js';
import { silentLogger } from '../log.js';
import type { Logger } from '../log.js';
import { callKey } from './context.js';
import type {
  AuditDetails,
  CallContext,
  ConnectionContext,
  JsonRpcId,
  PendingCall,
  ProtocolEnv,
} from './context.js';
import type { MethodDefinition } from './method.js';
import { INTERNAL_IDS, idReplacer, mapIdMembers } from './origin-ids.js';
import type { IdCodec, OriginIds } from './origin-ids.js';
import { InvalidParams, validateParams } from './schema.js';

// JSON-RPC 2.0 over one WebSocket text frame per message (PROTOCOL.md sections 1, 3 and 6):
//   -32700 parse error; -32600 invalid request (batches, notifications, bad envelope or id);
//   -32601 unknown method (the list is closed: a Map, never a property lookup); -32602 invalid params;
//   -32000 every other failure, with data {code, retriable, ...}. ERR_INTERNAL carries no detail.
// Each request must carry an id: a call without one (a JSON-RPC notification) is refused with -32600,
// since every method has a result or error the page needs to see.
// Ids are per origin (origin-ids.ts), mapped here and nowhere else: `tokenId` and `certificateId`
// members of params on the way in, of results, error data and notifications on the way out. Methods,
// services, the consent UI and the audit log see only internal ids.

export const JSON_RPC = {
  PARSE_ERROR: -32700,
  INVALID_REQUEST: -32600,
  METHOD_NOT_FOUND: -32601,
  INVALID_PARAMS: -32602,
  SERVER_ERROR: -32000,
} as const;

export interface WireError {
  code: number;
  message: string;
  data?: Record<string, unknown>;
}

const ENVELOPE_KEYS = new Set(['jsonrpc', 'id', 'method', 'params']);
// Names that mean something to JavaScript objects: refused anywhere in a message.
const FORBIDDEN_KEYS = new Set(['__proto__', 'constructor', 'prototype']);
const MAX_DEPTH = 16;
const MAX_ID_LENGTH = 128;

export interface DispatcherOptions {
  env: ProtocolEnv;
  methods: readonly MethodDefinition[];
  /** Append one audit line (PROTOCOL.md section 9); the reply waits until it is on disk. */
  audit: (record: AuditRecord) => Promise<unknown> | void;
  /** Per-origin ids (PROTOCOL.md section 4). */
  ids: OriginIds;
  logger?: Logger;
  maxInFlight?: number;
}

export class Dispatcher {
  readonly #env: ProtocolEnv;
  readonly #methods: ReadonlyMap<string, MethodDefinition>;
  readonly #audit: (record: AuditRecord) => Promise<unknown> | void;
  readonly #log: Logger;
  readonly #maxInFlight: number;
  readonly #ids: OriginIds;

  constructor(options: DispatcherOptions) {
    this.#env = options.env;
    this.#ids = options.ids;
    this.#methods = new Map(options.methods.map((m) => [m.name, m]));
    this.#audit = options.audit;
    this.#log = options.logger ?? silentLogger;
    this.#maxInFlight = options.maxInFlight ?? 8;
  }

  get methodNames(): string[] {
    return [...this.#methods.keys()];
  }

  /** Send a notification to a connection, with ids in the connection's own form. */
  notify(connection: ConnectionContext, method: string, params: unknown): void {
    const codec = this.#codecFor(connection);
    let wire = JSON.parse(JSON.stringify(params, idReplacer(codec.toWire))) as unknown;
    wire = hideTokenIdentity(connection, wire);
    // `removed` lists the tokenIds of tokens that went away (PROTOCOL.md section 7).
    if (method === 'tokens.changed' && isRecord(wire) && Array.isArray(wire.removed))
      wire = { ...wire, removed: wire.removed.map((id) => (typeof id === 'string' ? codec.toWire(id) : id)) };
    connection.notify(method, wire);
  }

  /** Console connections are the agent's own page: internal ids, like the CLI. Everyone else: per origin. */
  #codecFor(connection: ConnectionContext): IdCodec {
    return connection.tier === 'console' ? INTERNAL_IDS : this.#ids.forOrigin(connection.origin);
  }

  /** Answer one text frame; resolves to the response text (every request gets exactly one). */
  async handle(connection: ConnectionContext, text: string): Promise<string> {
    let message: unknown;
    try {
      message = JSON.parse(text);
    } catch {
      return errorResponse(null, { code: JSON_RPC.PARSE_ERROR, message: 'parse error' });
    }
    if (Array.isArray(message)) {
      return errorResponse(null, {
        code: JSON_RPC.INVALID_REQUEST,
        message: 'batch requests are not supported',
      });
    }
    if (typeof message !== 'object' || message === null) {
      return errorResponse(null, {
        code: JSON_RPC.INVALID_REQUEST,
        message: 'a request must be a JSON object',
      });
    }
    const request = message as Record<string, unknown>;
    const id = isValidId(request.id) ? request.id : null;
    const problem = envelopeProblem(request) ?? inspect(request);
    if (problem !== null) return errorResponse(id, { code: JSON_RPC.INVALID_REQUEST, message: problem });
    if (id === null) {
      return errorResponse(null, {
        code: JSON_RPC.INVALID_REQUEST,
        message: 'id must be a string (1-128 characters) or an integer',
      });
    }

    const definition = this.#methods.get(request.method as string);
    if (definition === undefined)
      return errorResponse(id, { code: JSON_RPC.METHOD_NOT_FOUND, message: 'method not found' });
    const tier = connection.tier;
    if (!definition.tiers.includes(tier)) {
      return errorResponse(
        id,
        wireError(new KelidError('ERR_FORBIDDEN', `the ${tier} tier may not call ${definition.name}`)),
      );
    }
    const codec = this.#codecFor(connection);
    const wireParams = request.params === undefined ? {} : request.params;
    try {
      validateParams(definition.validate, wireParams);
    } catch (e) {
      return errorResponse(id, { code: JSON_RPC.INVALID_PARAMS, message: (e as Error).message });
    }
    const params = mapIdMembers(wireParams, codec.fromWire);
    const key = callKey(id);
    if (connection.calls.has(key)) {
      return errorResponse(id, {
        code: JSON_RPC.INVALID_REQUEST,
        message: 'a call with this id is already in flight',
      });
    }
    if (connection.calls.size >= this.#maxInFlight) {
      return errorResponse(
        id,
        wireError(new KelidError('ERR_BUSY', 'too many calls in flight on this connection')),
      );
    }

    const controller = new AbortController();
    const onClose = (): void => controller.abort();
    connection.closed.addEventListener('abort', onClose, { once: true });
    const pending: PendingCall = { id, controller, cancellable: false };
    connection.calls.set(key, pending);
    const audit: AuditDetails = { tokenSerial: null };
    let prompted = false;
    // Methods reach the page through this view: its notifications go out with the page's ids.
    const view: ConnectionContext = {
      id: connection.id,
      origin: connection.origin,
      get tier() {
        return connection.tier;
      },
      set tier(tier) {
        connection.tier = tier;
      },
      calls: connection.calls,
      closed: connection.closed,
      notify: (m, p) => this.notify(connection, m, p),
    };
    const ctx: CallContext = {
      connection: view,
      id,
      method: definition.name,
      signal: controller.signal,
      env: this.#env,
      audit,
      setCancellable: (c) => {
        pending.cancellable = c;
      },
      markPrompted: () => {
        prompted = true;
      },
    };
    const audited = (): boolean =>
      definition.audit !== 'never' &&
      (tier === 'ra' || tier === 'console' || (definition.audit === 'always' && prompted));
    this.#log.debug({ conn: connection.id, method: definition.name }, 'call');
    try {
      const result = await definition.run(ctx, params);
      if (audited()) await this.#writeAudit(connection.origin, definition.name, audit, null);
      const wire = hideTokenIdentity(connection, result ?? {});
      return JSON.stringify({ jsonrpc: '2.0', id, result: wire }, idReplacer(codec.toWire));
    } catch (e) {
      const error = wireError(e, this.#log, { conn: connection.id, method: definition.name });
      if (audited()) await this.#writeAudit(connection.origin, definition.name, audit, auditCode(e));
      return errorResponse(id, error, codec);
    } finally {
      connection.calls.delete(key);
      connection.closed.removeEventListener('abort', onClose);
    }
  }

  async #writeAudit(
    origin: string,
    method: string,
    details: AuditDetails,
    errorCode: ErrorCode | null,
  ): Promise<void> {
    try {
      await this.#audit({
        origin,
        method,
        tokenSerial: details.tokenSerial,
        ...(details.keyId !== undefined ? { keyId: details.keyId } : {}),
        ...(details.certificateSha256 !== undefined ? { certificateSha256: details.certificateSha256 } : {}),
        ...(details.digestsSha256 !== undefined ? { digestsSha256: details.digestsSha256 } : {}),
        result: errorCode === null ? 'ok' : 'error',
        ...(errorCode === null ? {} : { errorCode }),
      });
    } catch (e) {
      this.#log.error(
        { method, err: e instanceof Error ? e.message : String(e) },
        'cannot write the audit log',
      );
    }
  }
}

/**
 * The answer to a frame refused by the connection's request rate limit: ERR_RATE_LIMITED with
 * `data.retryAfterMs`, under the frame's id when it has a valid one (so the page can match it).
 */
export function rateLimitedResponse(text: string, retryAfterMs: number): string {
  let id: JsonRpcId | null = null;
  try {
    const message = JSON.parse(text) as unknown;
    if (typeof message === 'object' && message !== null && !Array.isArray(message)) {
      const candidate = (message as Record<string, unknown>).id;
      if (isValidId(candidate)) id = candidate;
    }
  } catch {
    // Not JSON: answered with id null.
  }
  return errorResponse(
    id,
    wireError(
      new KelidError('ERR_RATE_LIMITED', 'too many calls on this connection; slow down', {
        data: { retryAfterMs },
      }),
    ),
  );
}

function isValidId(id: unknown): id is JsonRpcId {
  if (typeof id === 'string') return id.length >= 1 && id.length <= MAX_ID_LENGTH;
  return typeof id === 'number' && Number.isSafeInteger(id);
}

function envelopeProblem(r: Record<string, unknown>): string | null {
  for (const k of Object.keys(r)) if (!ENVELOPE_KEYS.has(k)) return 'unknown member in the request object';
  if (r.jsonrpc !== '2.0') return 'jsonrpc must be "2.0"';
  if (!('id' in r)) return 'notifications are not accepted: every request needs an id';
  if (!isValidId(r.id)) return 'id must be a string (1-128 characters) or an integer';
  if (typeof r.method !== 'string' || r.method.length === 0 || r.method.length > 64)
    return 'method must be a string';
  if (
    r.params !== undefined &&
    (typeof r.params !== 'object' || r.params === null || Array.isArray(r.params))
  ) {
    return 'params must be an object';
  }
  return null;
}

/** Refuse prototype-polluting member names anywhere, and excessive nesting (iteratively: no recursion). */
function inspect(value: unknown): string | null {
  const stack: Array<{ v: object; depth: number }> = [{ v: value as object, depth: 0 }];
  while (stack.length > 0) {
    const { v, depth } = stack.pop() as { v: object; depth: number };
    if (depth > MAX_DEPTH) return 'the request is nested too deeply';
    if (Array.isArray(v)) {
      for (const x of v)
        if (typeof x === 'object' && x !== null) stack.push({ v: x as object, depth: depth + 1 });
      continue;
    }
    for (const k of Object.keys(v)) {
      if (FORBIDDEN_KEYS.has(k)) return 'member names __proto__, constructor and prototype are not allowed';
      const x = (v as Record<string, unknown>)[k];
      if (typeof x === 'object' && x !== null) stack.push({ v: x, depth: depth + 1 });
    }
  }
  return null;
}

function errorResponse(id: JsonRpcId | null, error: WireError, codec: IdCodec = INTERNAL_IDS): string {
  // Error data may name the id the page sent (ERR_TOKEN_NOT_FOUND): in the page's own form. Errors
  // answered before a method runs carry no id (the default codec).
  return JSON.stringify({ jsonrpc: '2.0', id, error }, idReplacer(codec.toWire));
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Token objects as the site tier sees them: without `serialNumber` and `slotDescription` (SoftHSM's
 * and many readers' slot descriptions carry a serial). Both are the same for every site and would
 * undo per-origin tokenIds; a signing page needs neither. RA and console pages keep them.
 */
function hideTokenIdentity(connection: ConnectionContext, value: unknown): unknown {
  if (connection.tier !== 'site' && connection.tier !== 'unknown') return value;
  const strip = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(strip);
    // Plain objects only: anything else (bytes, a class with toJSON) is left to JSON.stringify.
    if (!isRecord(v) || ![Object.prototype, null].includes(Object.getPrototypeOf(v) as object | null))
      return v;
    // A Token is the one wire object with a moduleId (PROTOCOL.md section 4).
    if ('moduleId' in v && 'tokenId' in v) return { ...v, serialNumber: '', slotDescription: '' };
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) out[k] = strip(x);
    return out;
  };
  return strip(value);
}

function auditCode(e: unknown): ErrorCode {
  if (e instanceof KelidError) return e.code;
  if (e instanceof InvalidParams) return 'ERR_INVALID_INPUT';
  return 'ERR_INTERNAL';
}

/**
 * The wire form of a failure (PROTOCOL.md section 6). Service input errors (ERR_INVALID_INPUT) and
 * InvalidParams are `-32602`; other KelidErrors are `-32000` with their code, retriable flag and safe
 * data; anything else is ERR_INTERNAL with no detail (the detail goes to the log only).
 */
export function wireError(
  e: unknown,
  log: Logger = silentLogger,
  context: Record<string, unknown> = {},
): WireError {
  if (e instanceof InvalidParams) return { code: JSON_RPC.INVALID_PARAMS, message: e.message };
  if (e instanceof KelidError && e.code !== 'ERR_INTERNAL') {
    if (e.code === 'ERR_INVALID_INPUT') {
      return { code: JSON_RPC.INVALID_PARAMS, message: e.message, data: { code: e.code, retriable: false } };
    }
    return {
      code: JSON_RPC.SERVER_ERROR,
      message: e.message,
      data: { ...safeData(e.data), code: e.code, retriable: e.retriable },
    };
  }
  log.error({ ...context, err: describeInternal(e) }, 'internal error');
  return {
    code: JSON_RPC.SERVER_ERROR,
    message: 'internal error',
    data: { code: 'ERR_INTERNAL', retriable: false },
  };
}

// Error data crosses to the page: only plain JSON values, and never anything called like a secret.
function safeData(data: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(data)) {
    if (/pin$|secret|password|puk/i.test(k) && (k !== 'pin' || typeof v !== 'object')) continue;
    if (v === undefined || typeof v === 'function' || typeof v === 'symbol' || typeof v === 'bigint')
      continue;
    out[k] = v;
  }
  return out;
}

function describeInternal(e: unknown): string {
  if (e instanceof Error) {
    const cause = e.cause instanceof Error ? `; cause: ${e.cause.message}` : '';
    return `${e.name}: ${e.message}${cause}`;
  }
  return String(e);
}
