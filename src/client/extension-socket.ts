// The extension transport of the SDK: the Kelid extension's content script, reached with
// window.postMessage, stands in for the WebSocket. ExtensionSocket has the WebSocketLike shape, so
// RpcConnection (ids, timeouts, cancel, notifications, reconnect) is the same on both transports.
// Only messages this window posted are read (event.source === window): a frame inside the page, or
// the window that opened it, cannot forge the extension's answers.

import type { WebSocketLike } from './rpc-connection.js';

/** The namespace of the page ↔ content script messages (docs/extension.md). */
export const EXTENSION_NAMESPACE = 'kelid-extension-v1';

interface PageWindow {
  location: { origin: string };
  postMessage(message: unknown, targetOrigin: string): void;
  addEventListener(type: 'message', listener: (event: MessageLike) => void): void;
  removeEventListener(type: 'message', listener: (event: MessageLike) => void): void;
}

interface MessageLike {
  source: unknown;
  data: unknown;
}

interface FromExtension {
  ns: string;
  to: 'page';
  type: 'pong' | 'open' | 'message' | 'close';
  sid: string;
  text?: unknown;
  code?: unknown;
  reason?: unknown;
}

function pageWindow(): PageWindow | undefined {
  const w = (globalThis as unknown as { window?: PageWindow }).window;
  return w !== undefined && typeof w.postMessage === 'function' ? w : undefined;
}

function randomId(): string {
  const bytes = new Uint8Array(16);
  (
    globalThis as unknown as { crypto: { getRandomValues(b: Uint8Array): Uint8Array } }
  ).crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

function listen(w: PageWindow, sid: string, handler: (m: FromExtension) => void): () => void {
  const listener = (event: MessageLike): void => {
    if (event.source !== w) return;
    const m = event.data as Partial<FromExtension> | null;
    if (
      typeof m !== 'object' ||
      m === null ||
      m.ns !== EXTENSION_NAMESPACE ||
      m.to !== 'page' ||
      m.sid !== sid
    )
      return;
    handler(m as FromExtension);
  };
  w.addEventListener('message', listener);
  return () => w.removeEventListener('message', listener);
}

/**
 * The DOM event the content script answers synchronously (docs/extension.md): the SDK dispatches it
 * cancelable on its window, and the content script's listener calls `preventDefault()`. Page and
 * content script share the DOM's event dispatch, so the answer is there when `dispatchEvent` returns.
 */
export const EXTENSION_PROBE_EVENT = `${EXTENSION_NAMESPACE}:probe`;

interface ProbeWindow {
  dispatchEvent(event: unknown): boolean;
}

/**
 * Whether the Kelid extension's content script runs in this window, asked synchronously: no message,
 * no timer. The content script is injected at `document_start`, before any script of the page runs,
 * and a browser does not inject it later into a page that was loaded without it (an extension
 * installed or enabled after the page loaded, a frame, a page its matches leave out): so when it does
 * not answer now, it will not answer at all, and there is nothing to wait for.
 */
export function extensionAnnounced(): boolean {
  const w = (globalThis as unknown as { window?: Partial<ProbeWindow> }).window;
  const EventCtor = (
    globalThis as unknown as { Event?: new (type: string, init: { cancelable: boolean }) => unknown }
  ).Event;
  if (w === undefined || typeof w.dispatchEvent !== 'function' || EventCtor === undefined) return false;
  try {
    // dispatchEvent returns false when a listener cancelled the event: the content script's answer.
    return !w.dispatchEvent(new EventCtor(EXTENSION_PROBE_EVENT, { cancelable: true }));
  } catch {
    return false;
  }
}

/** Whether the Kelid extension answers in this page within `timeoutMs`. */
export function detectExtension(timeoutMs: number): Promise<boolean> {
  const w = pageWindow();
  if (w === undefined) return Promise.resolve(false);
  return new Promise((resolve) => {
    const sid = randomId();
    const stop = listen(w, sid, (m) => {
      if (m.type !== 'pong') return;
      clearTimeout(timer);
      stop();
      resolve(true);
    });
    const timer = setTimeout(() => {
      stop();
      resolve(false);
    }, timeoutMs);
    w.postMessage({ ns: EXTENSION_NAMESPACE, to: 'extension', type: 'ping', sid }, w.location.origin);
  });
}

/** One connection to the agent through the extension, with the shape of a WebSocket. */
export class ExtensionSocket implements WebSocketLike {
  readyState = 0;
  onopen: ((event: unknown) => void) | null = null;
  onmessage: ((event: { data: unknown }) => void) | null = null;
  onclose: ((event: { code: number; reason: string }) => void) | null = null;
  onerror: ((event: unknown) => void) | null = null;
  private readonly sid = randomId();
  private readonly stop: () => void;

  constructor(private readonly w: PageWindow) {
    this.stop = listen(w, this.sid, (m) => this.receive(m));
    this.post('open');
  }

  send(data: string): void {
    if (this.readyState !== 1) throw new Error('the extension connection is not open');
    this.post('send', data);
  }

  close(code = 1000, reason = ''): void {
    if (this.readyState === 3) return;
    this.post('close');
    this.closed(code, reason);
  }

  private post(type: 'open' | 'send' | 'close', text?: string): void {
    this.w.postMessage(
      {
        ns: EXTENSION_NAMESPACE,
        to: 'extension',
        type,
        sid: this.sid,
        ...(text !== undefined ? { text } : {}),
      },
      this.w.location.origin,
    );
  }

  private receive(m: FromExtension): void {
    if (m.type === 'open' && this.readyState === 0) {
      this.readyState = 1;
      this.onopen?.({});
    } else if (m.type === 'message' && this.readyState === 1 && typeof m.text === 'string') {
      this.onmessage?.({ data: m.text });
    } else if (m.type === 'close') {
      this.closed(typeof m.code === 'number' ? m.code : 1006, typeof m.reason === 'string' ? m.reason : '');
    }
  }

  private closed(code: number, reason: string): void {
    if (this.readyState === 3) return;
    this.readyState = 3;
    this.stop();
    this.onclose?.({ code, reason });
  }
}

/** A WebSocketFactory whose sockets go through the extension (the URL is not used). */
export function extensionSocketFactory(): WebSocketLike {
  const w = pageWindow();
  if (w === undefined) throw new Error('no window: the extension transport works in web pages only');
  return new ExtensionSocket(w);
}
