// Kelid extension background (service worker in Chromium, background script in Firefox). One native
// host (`kelid native-host`) per page connection. The origin given to the agent is the one the
// browser reports for the sending frame, never anything the page wrote; only top-level frames.
const api = globalThis.browser ?? globalThis.chrome;
const NATIVE_HOST = 'org.kelid.agent';
/** An answer longer than this (in parts from the host) is refused instead of joined. */
const MAX_ANSWER_CHARS = 256 * 1024 * 1024;
/** Messages from a page longer than this are refused before they reach the host. */
const MAX_PAGE_MESSAGE_CHARS = 64 * 1024 * 1024;

let open = 0;
function setBadge() {
  api.action?.setBadgeText?.({ text: open > 0 ? String(open) : '' });
  api.action?.setTitle?.({ title: open > 0 ? `Kelid: ${open} page connection(s)` : 'Kelid' });
}

/** The sender's origin as the browser reports it, or null (opaque, not http(s), not a top frame). */
function senderOrigin(sender) {
  if (sender.frameId !== 0 || sender.tab === undefined) return null;
  let origin = typeof sender.origin === 'string' ? sender.origin : null;
  if (origin === null && typeof sender.url === 'string') {
    try {
      origin = new URL(sender.url).origin;
    } catch {
      return null;
    }
  }
  if (origin === null || !/^https?:\/\//.test(origin)) return null;
  return origin;
}

api.runtime.onConnect.addListener((port) => {
  if (port.name !== 'kelid') return port.disconnect();
  const origin = senderOrigin(port.sender ?? {});
  if (origin === null) {
    port.postMessage({ t: 'close', code: 1008, reason: 'Kelid serves top-level http(s) pages only' });
    return port.disconnect();
  }
  let native;
  try {
    native = api.runtime.connectNative(NATIVE_HOST);
  } catch (e) {
    port.postMessage({ t: 'close', code: 1011, reason: `cannot start the Kelid native host: ${e.message}` });
    return port.disconnect();
  }
  open += 1;
  setBadge();
  let parts = [];
  let partChars = 0;
  let ended = false;
  const end = (code, reason) => {
    if (ended) return;
    ended = true;
    open -= 1;
    setBadge();
    try {
      port.postMessage({ t: 'close', code, reason });
      port.disconnect();
    } catch {
      // the page is gone
    }
    try {
      native.disconnect();
    } catch {
      // the host is gone
    }
  };
  native.onMessage.addListener((msg) => {
    if (typeof msg !== 'object' || msg === null) return;
    if (msg.t === 'part' && typeof msg.text === 'string') {
      partChars += msg.text.length;
      if (partChars > MAX_ANSWER_CHARS) return end(1009, 'answer too large');
      parts.push(msg.text);
    } else if (msg.t === 'rpc' && typeof msg.text === 'string') {
      const text = parts.length > 0 ? parts.join('') + msg.text : msg.text;
      parts = [];
      partChars = 0;
      port.postMessage({ t: 'rpc', text });
    } else if (msg.t === 'welcome') {
      port.postMessage({ t: 'welcome', tier: msg.tier });
    } else if (msg.t === 'close') {
      end(typeof msg.code === 'number' ? msg.code : 1011, String(msg.reason ?? ''));
    } else if (msg.t === 'error') {
      end(1011, `native host: ${String(msg.message ?? '')}`);
    }
  });
  native.onDisconnect.addListener(() => {
    const error = api.runtime.lastError?.message;
    end(1006, error ? `the Kelid native host is unavailable: ${error}` : 'the Kelid native host exited');
  });
  port.onMessage.addListener((msg) => {
    if (typeof msg !== 'object' || msg === null || msg.t !== 'rpc' || typeof msg.text !== 'string') return;
    if (msg.text.length > MAX_PAGE_MESSAGE_CHARS) return end(1009, 'message too big for the extension');
    native.postMessage({ t: 'rpc', text: msg.text });
  });
  port.onDisconnect.addListener(() => end(1000, 'page closed'));
  native.postMessage({ t: 'hello', origin });
});
